// Bit-exact port of Pillow's BICUBIC resize for 8-bit RGB (src/libImaging/Resample.c: precompute_coeffs,
// normalize_coeffs_8bpc, ImagingResampleHorizontal_8bpc / ImagingResampleVertical_8bpc, ImagingResampleInner).
// The official MiniCPM-V preprocessing resizes with PIL, and the fixture requires the very same bytes.

import { ImageError } from '../errors.js';
import { createRgbImage, type RgbImage } from './rgb.js';

/** Pillow keeps 22 fraction bits: 8 bits of pixel, 2 bits of head-room for the negative lobes, in an int32. */
const PRECISION_BITS = 22;
const FIXED_ONE = 1 << PRECISION_BITS;
const BICUBIC_SUPPORT = 2;

/** Keys cubic convolution kernel with a = −0.5 (Pillow `bicubic_filter`, same operation order). */
function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/**
 * Integer filter taps of one pass: output index i reads `count[i]` inputs from `first[i]` with weights
 * `taps[i·tapStride …]`, which carry `precisionBits` fraction bits. Pillow and torch's uint8 path (torch-resize.ts)
 * both run their passes on such taps; only how they compute the taps differs.
 */
export interface FixedCoefficients {
  first: Int32Array;
  count: Int32Array;
  tapStride: number;
  taps: Int32Array;
  precisionBits: number;
}

/** Port of `precompute_coeffs` + `normalize_coeffs_8bpc` for the box (0, inSize): weights in double, then fixed point. */
function precomputeCoefficients(inSize: number, outSize: number): FixedCoefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const tapStride = Math.ceil(support) * 2 + 1;
  const invFilterScale = 1 / filterScale;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const taps = new Int32Array(outSize * tapStride);
  const weights = new Float64Array(tapStride);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    // C's (int) cast truncates toward zero; negative starts are clamped to 0 right after.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize);
    const n = xmax - xmin;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const w = bicubicFilter((j + xmin - center + 0.5) * invFilterScale);
      weights[j] = w;
      sum += w;
    }
    for (let j = 0; j < n; j++) {
      const w = sum !== 0 ? weights[j]! / sum : weights[j]!;
      taps[i * tapStride + j] = w < 0 ? Math.trunc(-0.5 + w * FIXED_ONE) : Math.trunc(0.5 + w * FIXED_ONE);
    }
    first[i] = xmin;
    count[i] = n;
  }
  return { first, count, tapStride, taps, precisionBits: PRECISION_BITS };
}

/**
 * Horizontal pass (`ImagingResampleHorizontal_8bpc`, 3 bands): every row, new width `first.length`. Each output is
 * `clamp((half + Σ tap·pixel) >> precisionBits, 0, 255)` with `half = 1 << (precisionBits − 1)`.
 */
export function resampleHorizontal(src: RgbImage, coefficients: FixedCoefficients): RgbImage {
  const { first, count, tapStride, taps, precisionBits } = coefficients;
  const outWidth = first.length;
  const half = 1 << (precisionBits - 1);
  const out = createRgbImage(outWidth, src.height);
  // A clamped view does Pillow's clip8 for us: values below 0 store 0, above 255 store 255.
  const dst = new Uint8ClampedArray(out.data.buffer, out.data.byteOffset, out.data.length);
  const pix = src.data;
  const inStride = src.width * 3;
  for (let y = 0; y < src.height; y++) {
    const rowStart = y * inStride;
    let o = y * outWidth * 3;
    for (let x = 0; x < outWidth; x++) {
      const k0 = x * tapStride;
      const n = count[x]!;
      let p = rowStart + first[x]! * 3;
      let r = half;
      let g = half;
      let b = half;
      for (let j = 0; j < n; j++, p += 3) {
        const k = taps[k0 + j]!;
        r += pix[p]! * k;
        g += pix[p + 1]! * k;
        b += pix[p + 2]! * k;
      }
      dst[o++] = r >> precisionBits;
      dst[o++] = g >> precisionBits;
      dst[o++] = b >> precisionBits;
    }
  }
  return out;
}

/** Vertical pass (`ImagingResampleVertical_8bpc`, 3 bands): every column, new height `first.length`; whole rows at a time. */
export function resampleVertical(src: RgbImage, coefficients: FixedCoefficients): RgbImage {
  const { first, count, tapStride, taps, precisionBits } = coefficients;
  const outHeight = first.length;
  const half = 1 << (precisionBits - 1);
  const out = createRgbImage(src.width, outHeight);
  const dst = new Uint8ClampedArray(out.data.buffer, out.data.byteOffset, out.data.length);
  const pix = src.data;
  const rowBytes = src.width * 3;
  const acc = new Int32Array(rowBytes);
  for (let y = 0; y < outHeight; y++) {
    acc.fill(half);
    const k0 = y * tapStride;
    const n = count[y]!;
    for (let j = 0; j < n; j++) {
      const k = taps[k0 + j]!;
      const rowStart = (first[y]! + j) * rowBytes;
      for (let i = 0; i < rowBytes; i++) acc[i] += pix[rowStart + i]! * k;
    }
    const o = y * rowBytes;
    for (let i = 0; i < rowBytes; i++) dst[o + i] = acc[i]! >> precisionBits;
  }
  return out;
}

/** Refuses a target size that is not two positive whole numbers, or an empty source image. */
export function checkResizeSizes(img: RgbImage, width: number, height: number): void {
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1) {
    throw new ImageError(`cannot resize to ${width}x${height}: the size must be positive whole numbers`);
  }
  if (img.width < 1 || img.height < 1) throw new ImageError(`cannot resize an empty ${img.width}x${img.height} image`);
}

/**
 * `PIL.Image.resize((width, height), BICUBIC)` of an 8-bit RGB image, bit for bit: the same size returns a copy;
 * otherwise a horizontal pass (if the width changes) into an 8-bit image, then a vertical pass (if the height changes).
 */
export function resizeBicubic(img: RgbImage, width: number, height: number): RgbImage {
  checkResizeSizes(img, width, height);
  if (width === img.width && height === img.height) return { width, height, data: img.data.slice() };
  let out = img;
  if (width !== img.width) out = resampleHorizontal(out, precomputeCoefficients(img.width, width));
  if (height !== img.height) out = resampleVertical(out, precomputeCoefficients(img.height, height));
  return out;
}
