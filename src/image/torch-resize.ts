// Bit-exact port of what torchvision v2 `resize(uint8 tensor, (h, w), BICUBIC, antialias=True)` computes on the CPU:
// torch's `_upsample_bicubic2d_aa` on uint8 (aten/src/ATen/native/cpu/UpSampleKernel.cpp: HelperInterpCubic,
// `_compute_indices_min_size_weights_aa`, `_compute_index_ranges_int16_weights`; the AVX2 kernels of
// UpSampleKernelAVXAntialias.h and the generic `basic_loop_aa_*<uint8_t>` loops compute the same integers).
// Like Pillow it is separable (horizontal pass, uint8 in between, then vertical), but the cubic is evaluated in a
// different operation order and the taps are int16 with a precision chosen per pass, so the bytes differ from Pillow's.

import { checkResizeSizes, resampleSeparable, type FixedCoefficients } from './resize.js';
import type { RgbImage } from './rgb.js';

/** torch's uint8 taps must fit an int16 (`1 << 15`); their precision never exceeds 22 bits. */
const INT16_LIMIT = 1 << 15;
const MAX_PRECISION_BITS = 22;
/** Bicubic reads 4 inputs per output before the antialias widening (`HelperInterpCubic::interp_size`). */
const CUBIC_INTERP_SIZE = 4;

/**
 * `HelperInterpCubic::aa_filter<double, true>`: Keys' cubic with a = −0.5 (antialias=True uses −0.5 for Pillow
 * compatibility; −0.75 is only for antialias=False), with the operation order of `cubic_convolution1/2` (UpSample.h).
 */
function cubicFilter(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/**
 * Port of `_compute_index_ranges_int16_weights` with the antialiased cubic: double weights per output
 * (`_compute_indices_min_size_weights_aa`), normalised to sum 1, then scaled by 2^precision and rounded half away
 * from zero into int16 range, where the precision is the largest that keeps round(max weight · 2^(p+1)) < 2^15.
 */
export function torchCubicCoefficients(inSize: number, outSize: number): FixedCoefficients {
  const scale = inSize / outSize; // area_pixel_compute_scale without align_corners or an explicit scale factor
  const support = scale >= 1 ? CUBIC_INTERP_SIZE * 0.5 * scale : CUBIC_INTERP_SIZE * 0.5;
  const tapStride = Math.ceil(support) * 2 + 1; // max_interp_size
  const invScale = scale >= 1 ? 1 / scale : 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * tapStride);
  let maxWeight = 0;
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    // static_cast<int64_t> truncates toward zero; the start is then clamped at 0, the count at [0, tapStride].
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xsize = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - xmin, 0), tapStride);
    const row = i * tapStride;
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      const w = cubicFilter((j + xmin - center + 0.5) * invScale);
      weights[row + j] = w;
      total += w;
    }
    if (total !== 0) {
      for (let j = 0; j < xsize; j++) {
        weights[row + j]! /= total;
        maxWeight = Math.max(maxWeight, weights[row + j]!);
      }
    }
    first[i] = xmin;
    count[i] = xsize;
  }
  let precisionBits = 0;
  for (; precisionBits < MAX_PRECISION_BITS; precisionBits++) {
    if (Math.trunc(0.5 + maxWeight * 2 ** (precisionBits + 1)) >= INT16_LIMIT) break;
  }
  const taps = new Int32Array(outSize * tapStride);
  const unit = 2 ** precisionBits;
  for (let k = 0; k < taps.length; k++) {
    const v = weights[k]! * unit;
    taps[k] = v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
  }
  return { first, count, tapStride, taps, precisionBits };
}

/**
 * torchvision v2 `resize(img, [height, width], InterpolationMode.BICUBIC, antialias=True)` of a uint8 RGB image on
 * the CPU, bit for bit: the same size returns a copy; otherwise a horizontal pass (if the width changes) into uint8,
 * then a vertical pass (if the height changes), each `clamp((2^(p−1) + Σ tap·pixel) >> p, 0, 255)`.
 */
export function resizeBicubicTorch(img: RgbImage, width: number, height: number): RgbImage {
  checkResizeSizes(img, width, height);
  return resampleSeparable(
    img,
    width !== img.width ? torchCubicCoefficients(img.width, width) : undefined,
    height !== img.height ? torchCubicCoefficients(img.height, height) : undefined,
  );
}
