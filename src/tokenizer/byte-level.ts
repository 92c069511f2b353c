// GPT-2's byte ↔ character mapping (`bytes_to_unicode`), which byte-level BPE tokenizers use to write any byte
// sequence as printable characters: printable Latin-1 bytes stand for themselves, the other 68 get U+0100 onwards.

const utf8Encoder = new TextEncoder();

/** The character that stands for each byte, indexed by byte. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** The byte each of the 256 byte-level characters stands for. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((char, byte) => [char, byte]));

// Port of GPT-2's `bytes_to_unicode`.
function buildByteToChar(): string[] {
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const chars: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) chars.push(String.fromCharCode(printable(b) ? b : next++));
  return chars;
}

/** The byte-level form of some bytes (what the ByteLevel pre-tokenizer makes of a piece's UTF-8). */
export function bytesToByteLevel(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += BYTE_TO_CHAR[b]!;
  return out;
}

/**
 * The bytes a token stands for, as tokenizers' ByteLevel decoder reads it: each character's byte when every
 * character is a byte-level one, else (an added token such as "é x") the token's own UTF-8.
 */
export function tokenToBytes(token: string): Uint8Array {
  const bytes = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const byte = CHAR_TO_BYTE.get(token[i]!);
    if (byte === undefined) return utf8Encoder.encode(token);
    bytes[i] = byte;
  }
  return bytes;
}
