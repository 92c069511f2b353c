// The image layer: read headers, decode, plan and cut slices, Pillow-exact and torch-exact resize, normalise.

export { decodeImage, DEFAULT_MAX_PIXELS, readImageHeader, type DecodeOptions } from './decode.js';
export { resizeBicubic } from './resize.js';
export { resizeBicubicTorch } from './torch-resize.js';
export { createRgbImage, cropImage, toPixelValues, type RgbImage } from './rgb.js';
export { planSlices, sliceImage, type Size, type SliceOptions, type SlicePlan } from './slice.js';
