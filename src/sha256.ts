// SHA-256 (FIPS 180-4) in plain TypeScript, for what must run on every host: the keys that tell one image's pixels
// from another's (a browser's crypto.subtle is asynchronous only). Node installs node:crypto's instead (sha256-node.ts).

import { describeJson, InvalidRequestError } from './errors.js';

// The round constants, as signed 32-bit words (all arithmetic below stays in int32).
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const utf8 = new TextEncoder();

/** An incremental SHA-256: `update` with bytes or text (UTF-8) any number of times, then `hex`. */
export class Sha256 {
  private readonly state = new Int32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  /** The bytes of a block not yet complete, and a view that reads them as words. */
  private readonly block = new Uint8Array(64);
  private readonly blockView = new DataView(this.block.buffer);
  private readonly words = new Int32Array(64);
  private filled = 0;
  private length = 0;

  update(data: Uint8Array | string): this {
    const bytes = typeof data === 'string' ? utf8.encode(data) : data;
    this.length += bytes.length;
    let i = 0;
    if (this.filled > 0) {
      const take = Math.min(64 - this.filled, bytes.length);
      this.block.set(bytes.subarray(0, take), this.filled);
      this.filled += take;
      i = take;
      if (this.filled < 64) return this;
      this.compress(this.blockView, 0);
      this.filled = 0;
    }
    if (i + 64 <= bytes.length) {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
      for (; i + 64 <= bytes.length; i += 64) this.compress(view, i);
    }
    this.block.set(bytes.subarray(i), 0);
    this.filled = bytes.length - i;
    return this;
  }

  /** The digest as 64 hex digits; the hash takes no more data afterwards. */
  hex(): string {
    const bits = this.length * 8;
    const tail = new Uint8Array(this.filled < 56 ? 64 - this.filled : 128 - this.filled);
    tail[0] = 0x80;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(tail.length - 4, bits >>> 0);
    this.update(tail);
    return Array.from(this.state, (w) => (w >>> 0).toString(16).padStart(8, '0')).join('');
  }

  /** One block (FIPS 180-4 §6.2.2): the 64 bytes at `at`, as 16 big-endian words (DataView's default order). */
  private compress(bytes: DataView, at: number): void {
    const w = this.words;
    for (let t = 0; t < 16; t++) w[t] = bytes.getInt32(at + 4 * t);
    for (let t = 16; t < 64; t++) {
      const a = w[t - 15]!;
      const b = w[t - 2]!;
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[t] = (w[t - 16]! + s0 + w[t - 7]! + s1) | 0;
    }
    const s = this.state;
    let a = s[0]!, b = s[1]!, c = s[2]!, d = s[3]!, e = s[4]!, f = s[5]!, g = s[6]!, h = s[7]!;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[t]! + w[t]!) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    s[0] = (s[0]! + a) | 0; s[1] = (s[1]! + b) | 0; s[2] = (s[2]! + c) | 0; s[3] = (s[3]! + d) | 0;
    s[4] = (s[4]! + e) | 0; s[5] = (s[5]! + f) | 0; s[6] = (s[6]! + g) | 0; s[7] = (s[7]! + h) | 0;
  }
}

type Pixels = { width: number; height: number; data: Uint8Array };

/**
 * The keys of pixels the library read itself (rememberImageKey), by their pixel array: a video's frames, sent again
 * with every turn of a session, are then hashed once. An entry is right only while the array's bytes stay as they
 * were hashed, and a caller's pixels may change between turns (a reused buffer, a SharedArrayBuffer that another
 * thread writes); so entries are made only for frames the library read itself and that nothing writes afterwards
 * (readVideoPath's `shared` frames, which the CLI holds read-only, and their clones in a WorkerEngine's thread). Any
 * other image is hashed every time. An entry dies with its array.
 */
const rememberedKeys = new WeakMap<Uint8Array, { width: number; height: number; key: string }>();

/** SHA-256 of pieces of data one after the other (text as UTF-8), as 64 hex digits. */
export type Sha256Digest = (pieces: readonly (Uint8Array | string)[]) => string;

/**
 * The digest imageKey hashes with: this file's Sha256, unless the host installed a faster one (installSha256Digest;
 * Node's modules that lead to imageKey import sha256-node.ts, which installs node:crypto's, many times faster).
 */
let imageDigest: Sha256Digest = (pieces) => pieces.reduce((hash, piece) => hash.update(piece), new Sha256()).hex();

/** Makes imageKey hash with `digest`, which must compute SHA-256 as Sha256 does; returns the digest it replaces. */
export function installSha256Digest(digest: Sha256Digest): Sha256Digest {
  const replaced = imageDigest;
  imageDigest = digest;
  return replaced;
}

/**
 * SHA-256 of an image's size (`<width>x<height>:`) and then its pixels, by the installed digest: equal keys mean the
 * same picture (a prompt's cached positions stay valid). A remembered key (rememberImageKey) is not computed again.
 * Every family keys an image before it reads its pixels otherwise, so pixels whose size and data disagree are refused
 * here.
 */
export function imageKey(image: Pixels): string {
  const { width, height, data } = image;
  if (!(Number.isSafeInteger(width) && width > 0 && Number.isSafeInteger(height) && height > 0 && data instanceof Uint8Array && data.length === width * height * 3)) {
    throw new InvalidRequestError(
      `an image's RGB pixels must have a positive whole width and height and width × height × 3 bytes of data (a Uint8Array), ` +
        `got ${describeJson(width)}x${describeJson(height)} with ${data instanceof Uint8Array ? `${data.length} bytes` : describeJson(data)}`,
    );
  }
  return rememberedImageKey(image) ?? imageDigest([`${width}x${height}:`, data]);
}

/**
 * Notes imageKey's value for pixels that the library read and that no one writes afterwards (see rememberedKeys):
 * computed by the reader, or sent along with a copy of the pixels to another thread.
 */
export function rememberImageKey(image: Pixels, key: string): void {
  rememberedKeys.set(image.data, { width: image.width, height: image.height, key });
}

/** The key rememberImageKey noted for these pixels at this size, or null. */
export function rememberedImageKey(image: Pixels): string | null {
  const remembered = rememberedKeys.get(image.data);
  return remembered && remembered.width === image.width && remembered.height === image.height ? remembered.key : null;
}
