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

/** One row of the horizontal pass: the `first.length` outputs of the row starting at `pix[rowStart]`, into `dst[dstStart…]`. */
function resampleRowHorizontal(
  pix: Uint8Array,
  rowStart: number,
  dst: Uint8ClampedArray,
  dstStart: number,
  coefficients: FixedCoefficients,
): void {
  const { first, count, tapStride, taps, precisionBits } = coefficients;
  const outWidth = first.length;
  const half = 1 << (precisionBits - 1);
  let o = dstStart;
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

/**
 * Horizontal pass (`ImagingResampleHorizontal_8bpc`, 3 bands): every row, new width `first.length`. Each output is
 * `clamp((half + Σ tap·pixel) >> precisionBits, 0, 255)` with `half = 1 << (precisionBits − 1)`.
 */
function resampleHorizontal(src: RgbImage, coefficients: FixedCoefficients): RgbImage {
  const out = createRgbImage(coefficients.first.length, src.height);
  // A clamped view does Pillow's clip8 for us: values below 0 store 0, above 255 store 255.
  const dst = new Uint8ClampedArray(out.data.buffer, out.data.byteOffset, out.data.length);
  const inStride = src.width * 3;
  const outStride = out.width * 3;
  for (let y = 0; y < src.height; y++) resampleRowHorizontal(src.data, y * inStride, dst, y * outStride, coefficients);
  return out;
}

/** Vertical pass (`ImagingResampleVertical_8bpc`, 3 bands): every column, new height `first.length`; whole rows at a time. */
function resampleVertical(src: RgbImage, coefficients: FixedCoefficients): RgbImage {
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

/**
 * Both passes at once, with the same bytes as the horizontal pass into an 8-bit image followed by the vertical pass,
 * but without that intermediate (a 1×2,000,000 image widened to 448 would need 2.7 GB): each source row is widened
 * into one 8-bit row, clipped as the whole pass would clip it, and added at once to the sums of the output rows whose
 * window holds it. Windows only move forward (their start and end grow with the output row), so the open sums fit
 * in a ring of `openRowsAtMost` rows and each output row is written as soon as its window has been read.
 */
function resampleBothPasses(src: RgbImage, horizontal: FixedCoefficients, vertical: FixedCoefficients): RgbImage {
  const { first, count, tapStride, taps, precisionBits } = vertical;
  const outHeight = first.length;
  const half = 1 << (precisionBits - 1);
  const out = createRgbImage(horizontal.first.length, outHeight);
  const dst = new Uint8ClampedArray(out.data.buffer, out.data.byteOffset, out.data.length);
  const rowBytes = out.width * 3;
  const inStride = src.width * 3;
  const windowEnd = (y: number) => first[y]! + count[y]!;
  // While output row y is the oldest open one, the rows up to the first one whose window starts past y's are open too.
  let openRowsAtMost = 1;
  for (let y = 0, next = 0; y < outHeight; y++) {
    while (next < outHeight && first[next]! < windowEnd(y)) next++;
    openRowsAtMost = Math.max(openRowsAtMost, next - y);
  }
  const sums = new Int32Array(openRowsAtMost * rowBytes);
  const widenedRow = new Uint8Array(rowBytes);
  const widenedRowClamped = new Uint8ClampedArray(widenedRow.buffer);
  let opened = 0; // output rows [closed, opened) have windows that started and have not ended
  let closed = 0;
  const lastSourceRow = windowEnd(outHeight - 1);
  for (let row = first[0]!; row < lastSourceRow; row++) {
    for (; opened < outHeight && first[opened]! <= row; opened++) {
      const slot = (opened % openRowsAtMost) * rowBytes;
      sums.fill(half, slot, slot + rowBytes);
    }
    resampleRowHorizontal(src.data, row * inStride, widenedRowClamped, 0, horizontal);
    for (let y = closed; y < opened; y++) {
      const k = taps[y * tapStride + row - first[y]!]!;
      const slot = (y % openRowsAtMost) * rowBytes;
      for (let i = 0; i < rowBytes; i++) sums[slot + i] += widenedRow[i]! * k;
    }
    for (; closed < opened && windowEnd(closed) <= row + 1; closed++) {
      const slot = (closed % openRowsAtMost) * rowBytes;
      const o = closed * rowBytes;
      for (let i = 0; i < rowBytes; i++) dst[o + i] = sums[slot + i]! >> precisionBits;
    }
  }
  return out;
}

/**
 * A separable resize as Pillow's `ImagingResampleInner` (and torch's uint8 path) runs it: the horizontal pass into
 * 8 bits, then the vertical pass, each only when its coefficients are given (the size changes along that axis); a
 * copy when neither is.
 */
export function resampleSeparable(
  src: RgbImage,
  horizontal: FixedCoefficients | undefined,
  vertical: FixedCoefficients | undefined,
): RgbImage {
  if (horizontal && vertical) return resampleBothPasses(src, horizontal, vertical);
  if (horizontal) return resampleHorizontal(src, horizontal);
  if (vertical) return resampleVertical(src, vertical);
  return { width: src.width, height: src.height, data: src.data.slice() };
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
  return resampleSeparable(
    img,
    width !== img.width ? precomputeCoefficients(img.width, width) : undefined,
    height !== img.height ? precomputeCoefficients(img.height, height) : undefined,
  );
}
