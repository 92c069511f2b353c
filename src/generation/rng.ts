// A seeded random stream for sampling: xoshiro128** (Blackman & Vigna), seeded by SplitMix64.
// Seeds reproduce our own samples only: torch.multinomial draws from torch's Philox/MT stream in its own way,
// so a transformers run with the same seed picks different tokens, and no seed here can match it bit for bit.

import { RuntimeError } from '../errors.js';

const MASK_64 = (1n << 64n) - 1n;

export class Xoshiro128StarStar {
  private constructor(
    private s0: number,
    private s1: number,
    private s2: number,
    private s3: number,
  ) {}

  /** The raw 128-bit state, four 32-bit words (not all zero). */
  static fromState(s0: number, s1: number, s2: number, s3: number): Xoshiro128StarStar {
    if ((s0 | s1 | s2 | s3) === 0) throw new RangeError('xoshiro128** needs a state that is not all zero');
    return new Xoshiro128StarStar(s0 >>> 0, s1 >>> 0, s2 >>> 0, s3 >>> 0);
  }

  /**
   * The state from two SplitMix64 outputs of `seed` (any safe integer, taken modulo 2^64): words 0 and 1 are the
   * low and high halves of the first output, words 2 and 3 those of the second.
   */
  static fromSeed(seed: number): Xoshiro128StarStar {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`the seed must be a safe integer, got ${seed}`);
    let x = BigInt.asUintN(64, BigInt(seed));
    const words: number[] = [];
    for (let i = 0; i < 2; i++) {
      x = (x + 0x9e3779b97f4a7c15n) & MASK_64;
      let z = x;
      z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
      z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
      z ^= z >> 31n;
      words.push(Number(z & 0xffffffffn), Number(z >> 32n));
    }
    const [s0, s1, s2, s3] = words as [number, number, number, number];
    return Xoshiro128StarStar.fromState(s0, s1, s2, s3);
  }

  /** The next 32-bit output, as an unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotateLeft(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotateLeft(this.s3, 11);
    return result;
  }

  /** A uniform float in [0, 1) with 53 random bits (two outputs). */
  nextFloat(): number {
    const high = this.nextUint32() >>> 5;
    const low = this.nextUint32() >>> 6;
    return (high * 67108864 + low) / 9007199254740992;
  }
}

function rotateLeft(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A random seed for requests that do not give one. */
export function randomSeed(): number {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/**
 * Draws one index with probability proportional to `probs` (torch.multinomial with one sample): the inverse of the
 * cumulative sum at a uniform point. Indices with probability 0 are never drawn.
 */
export function sampleIndex(probs: Float32Array, rng: Xoshiro128StarStar): number {
  let total = 0;
  for (let i = 0; i < probs.length; i++) total += probs[i]!;
  if (!(total > 0 && Number.isFinite(total))) {
    throw new RuntimeError('cannot sample: the probabilities are all zero or not finite (the model returned NaN or infinite logits?)');
  }
  const target = rng.nextFloat() * total;
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i]!;
    if (!(p > 0)) continue;
    cumulative += p;
    last = i;
    if (target < cumulative) return i;
  }
  return last;
}
