// UTF-8 decoding of byte-fallback pieces exactly as sentencepiece 0.1.97 does it (util.cc `DecodeUTF8`): a
// character is valid when its lead byte announces n bytes, n bytes are there, the others are trail bytes, and the
// code point is neither overlong nor a surrogate nor above U+10FFFF; anything else consumes ONE byte and becomes
// U+FFFD. So "F0 9F" alone decodes to two U+FFFD, not one.

export const REPLACEMENT_CHARACTER = '\ufffd';

/** Bytes a character needs, judged by its lead byte (0 for a byte that cannot start one). */
function sequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if ((lead & 0xe0) === 0xc0) return 2;
  if ((lead & 0xf0) === 0xe0) return 3;
  if ((lead & 0xf8) === 0xf0) return 4;
  return 0;
}

const MIN_CODE_POINT = [0, 0, 0x80, 0x800, 0x10000];
const LEAD_MASK = [0, 0x7f, 0x1f, 0x0f, 0x07];

function isTrailByte(b: number): boolean {
  return (b & 0xc0) === 0x80;
}

function isValidCodePoint(cp: number): boolean {
  return cp < 0xd800 || (cp >= 0xe000 && cp <= 0x10ffff);
}

/** The code point of the valid character at `bytes[offset]` (reading no further than `end`) and its length. */
export function decodeUtf8Char(bytes: ArrayLike<number>, offset: number, end: number): { codePoint: number; length: number } | null {
  const lead = bytes[offset]!;
  const n = sequenceLength(lead);
  if (n === 0 || end - offset < n) return null;
  let cp = lead & LEAD_MASK[n]!;
  for (let i = 1; i < n; i++) {
    const b = bytes[offset + i]!;
    if (!isTrailByte(b)) return null;
    cp = cp * 64 + (b & 0x3f);
  }
  if (cp < MIN_CODE_POINT[n]! || !isValidCodePoint(cp)) return null;
  return { codePoint: cp, length: n };
}

/**
 * True when the bytes from `offset` to `end` are the start of a character that later bytes could still complete
 * into a valid one — a streaming decoder must hold such bytes back instead of printing U+FFFD.
 */
export function couldBecomeValid(bytes: ArrayLike<number>, offset: number, end: number): boolean {
  const lead = bytes[offset]!;
  const n = sequenceLength(lead);
  const have = end - offset;
  if (n <= 1 || have >= n) return false;
  let lo = lead & LEAD_MASK[n]!;
  for (let i = 1; i < have; i++) {
    const b = bytes[offset + i]!;
    if (!isTrailByte(b)) return false;
    lo = lo * 64 + (b & 0x3f);
  }
  const missingBits = 6 * (n - have);
  lo *= 2 ** missingBits;
  const hi = lo + 2 ** missingBits - 1;
  // Is some code point in [max(lo, min), min(hi, 0x10FFFF)] outside the surrogate block?
  const from = Math.max(lo, MIN_CODE_POINT[n]!);
  const to = Math.min(hi, 0x10ffff);
  if (from > to) return false;
  return from < 0xd800 || to > 0xdfff;
}

const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;

/** The byte a `<0xNN>` piece stands for (upper-case hex, as sentencepiece's PieceToByte), or -1. */
export function pieceToByte(piece: string): number {
  const m = BYTE_PIECE.exec(piece);
  return m === null ? -1 : parseInt(m[1]!, 16);
}

/** The `<0xNN>` piece of a byte (sentencepiece's ByteToPiece). */
export function byteToPiece(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}
