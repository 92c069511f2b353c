// Byte-level mutations in the manner of libFuzzer and AFL: bit flips, interesting integers, arithmetic, block
// insert/delete/copy, dictionary tokens, decimal numbers in text, and splicing two corpus entries.

import type { Rng } from './target.js';

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40];
const INTERESTING_32 = [0, 1, 2, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe];
const INTERESTING_DECIMALS = [
  '0', '-0', '1', '-1', '2', '255', '256', '65535', '65536', '2147483647', '2147483648', '4294967295', '4294967296',
  '9007199254740991', '9007199254740993', '18446744073709551615', '1e308', '1e309', '-1e309', '0.5', '1.5', '-2',
  '1e-400', '100000000000',
];

/** One random byte-level mutation of `data`; `others` are corpus entries to splice with. */
export function mutateBytes(
  data: Uint8Array,
  rng: Rng,
  dictionary: readonly Uint8Array[],
  others: readonly Uint8Array[],
  maxLength: number,
): Uint8Array {
  const out = mutateOnce(data, rng, dictionary, others);
  return out.length > maxLength ? out.subarray(0, maxLength) : out;
}

function mutateOnce(data: Uint8Array, rng: Rng, dictionary: readonly Uint8Array[], others: readonly Uint8Array[]): Uint8Array {
  const n = data.length;
  if (n === 0) return rng.chance(0.5) && dictionary.length > 0 ? rng.pick(dictionary).slice() : randomBytes(rng, rng.small(64));
  switch (rng.below(14)) {
    case 0: { // flip one bit
      const out = data.slice();
      out[rng.below(n)]! ^= 1 << rng.below(8);
      return out;
    }
    case 1: { // set one byte to a random or interesting value
      const out = data.slice();
      out[rng.below(n)] = rng.chance(0.5) ? rng.below(256) : rng.pick(INTERESTING_8);
      return out;
    }
    case 2: { // overwrite with an interesting 16/32/64-bit integer, little- or big-endian
      const width = rng.pick([2, 4, 8]);
      if (n < width) return data.slice();
      const out = data.slice();
      writeInt(out, rng.below(n - width + 1), width, interesting(rng, width), rng.chance(0.7));
      return out;
    }
    case 3: { // add or subtract a small amount from an integer field
      const width = rng.pick([1, 2, 4]);
      if (n < width) return data.slice();
      const out = data.slice();
      const at = rng.below(n - width + 1);
      const little = rng.chance(0.7);
      const value = readInt(out, at, width, little) + (rng.chance(0.5) ? 1 : -1) * rng.small(35);
      writeInt(out, at, width, BigInt.asUintN(8 * width, BigInt(value)), little);
      return out;
    }
    case 4: { // delete a block
      const length = rng.small(Math.max(1, Math.min(n, 256)));
      const at = rng.below(n - length + 1);
      return concat(data.subarray(0, at), data.subarray(at + length));
    }
    case 5: { // insert random bytes or a run of one byte
      const length = rng.small(128);
      const block = rng.chance(0.5) ? randomBytes(rng, length) : new Uint8Array(length).fill(rng.pick(INTERESTING_8));
      const at = rng.below(n + 1);
      return concat(data.subarray(0, at), block, data.subarray(at));
    }
    case 6: { // copy a block elsewhere (inserted or overwriting)
      const length = rng.small(Math.min(n, 1024));
      const from = rng.below(n - length + 1);
      const block = data.slice(from, from + length);
      const to = rng.below(n + 1);
      if (rng.chance(0.5)) return concat(data.subarray(0, to), block, data.subarray(to));
      const out = data.slice();
      out.set(block.subarray(0, Math.max(0, n - to)), Math.min(to, n));
      return out;
    }
    case 7:
    case 8: { // insert or overwrite a dictionary token
      if (dictionary.length === 0) return mutateOnce(data, rng, dictionary, others);
      const token = rng.pick(dictionary);
      const at = rng.below(n + 1);
      if (rng.chance(0.5)) return concat(data.subarray(0, at), token, data.subarray(at));
      const out = data.slice();
      out.set(token.subarray(0, Math.max(0, n - at)), Math.min(at, n));
      return out;
    }
    case 9: { // splice: a prefix of this entry with a suffix of another
      if (others.length === 0) return mutateOnce(data, rng, dictionary, others);
      const other = rng.pick(others);
      return concat(data.subarray(0, rng.below(n + 1)), other.subarray(rng.below(other.length + 1)));
    }
    case 10: // truncate
      return data.slice(0, rng.below(n));
    case 11: { // replace a decimal number in text by an interesting one
      const text = Buffer.from(data).toString('latin1');
      const numbers = [...text.matchAll(/-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?/g)];
      if (numbers.length === 0) return mutateOnce(data, rng, dictionary, others);
      const m = rng.pick(numbers);
      const replacement = Buffer.from(rng.pick(INTERESTING_DECIMALS), 'latin1');
      return concat(data.subarray(0, m.index), replacement, data.subarray(m.index + m[0].length));
    }
    case 12: { // shuffle a few bytes
      const out = data.slice();
      const length = Math.min(n, rng.small(8) + 1);
      const at = rng.below(n - length + 1);
      for (let i = length - 1; i > 0; i--) {
        const j = rng.below(i + 1);
        [out[at + i], out[at + j]] = [out[at + j]!, out[at + i]!];
      }
      return out;
    }
    default: { // swap two blocks' order around a random cut
      const cut = rng.below(n + 1);
      return concat(data.subarray(cut), data.subarray(0, cut));
    }
  }
}

/** Applies 1 to 16 stacked mutations (fewer more often). */
export function mutateStacked(
  data: Uint8Array,
  rng: Rng,
  dictionary: readonly Uint8Array[],
  others: readonly Uint8Array[],
  maxLength: number,
): Uint8Array {
  let out = data;
  const rounds = 1 << rng.below(5);
  for (let i = 0; i < rounds; i++) out = mutateBytes(out, rng, dictionary, others, maxLength);
  return out;
}

function interesting(rng: Rng, width: number): bigint {
  const base = BigInt(rng.pick(INTERESTING_32));
  if (width === 8 && rng.chance(0.5)) return rng.pick([0xffffffffffffffffn, 0x7fffffffffffffffn, 1n << 53n, (1n << 53n) + 1n, 1n << 40n]);
  const value = rng.chance(0.3) ? BigInt.asUintN(8 * width, -base) : base;
  return BigInt.asUintN(8 * width, value);
}

function writeInt(out: Uint8Array, at: number, width: number, value: bigint, little: boolean): void {
  for (let i = 0; i < width; i++) {
    const byte = Number((value >> BigInt(8 * i)) & 0xffn);
    out[little ? at + i : at + width - 1 - i] = byte;
  }
}

function readInt(data: Uint8Array, at: number, width: number, little: boolean): number {
  let value = 0;
  for (let i = 0; i < width; i++) value += data[little ? at + i : at + width - 1 - i]! * 2 ** (8 * i);
  return value;
}

function randomBytes(rng: Rng, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = rng.below(256);
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
