// The 8-bit RGB image every preprocessing step works on, plus crop and the float pixel tensor.

import { ImageError } from '../errors.js';

/** An 8-bit RGB image, row-major HWC: pixel (x, y) channel c is `data[(y * width + x) * 3 + c]`. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A blank (black) image of the given size. */
export function createRgbImage(width: number, height: number): RgbImage {
  return { width, height, data: new Uint8Array(width * height * 3) };
}

/** The `w × h` rectangle whose top-left corner is (x, y), as a new image (PIL `Image.crop` inside the bounds). */
export function cropImage(img: RgbImage, x: number, y: number, w: number, h: number): RgbImage {
  const inside = [x, y, w, h].every(Number.isSafeInteger) && x >= 0 && y >= 0 && w > 0 && h > 0;
  if (!inside || x + w > img.width || y + h > img.height) {
    throw new ImageError(`cannot crop ${w}x${h} at (${x}, ${y}) from a ${img.width}x${img.height} image: the box must lie inside it`);
  }
  const out = createRgbImage(w, h);
  const rowBytes = w * 3;
  for (let row = 0; row < h; row++) {
    const from = ((y + row) * img.width + x) * 3;
    out.data.set(img.data.subarray(from, from + rowBytes), row * rowBytes);
  }
  return out;
}

/**
 * The float32 CHW tensor torchvision's `ToTensor()` + `Normalize(mean, std)` make of an 8-bit RGB image:
 * `(u8 / 255 − mean) / std`, every step rounded to float32 as torch does it in float32.
 */
export function toPixelValues(img: RgbImage, mean: readonly number[], std: readonly number[]): Float32Array {
  if (mean.length !== 3 || std.length !== 3) throw new ImageError(`mean and std need 3 values (R, G, B); got ${mean.length} and ${std.length}`);
  if (std.some((s) => s === 0)) throw new ImageError('std must not contain zeros (torchvision Normalize refuses them too)');
  const plane = img.width * img.height;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    // One lookup table per channel: there are only 256 possible inputs.
    const m = Math.fround(mean[c]!);
    const s = Math.fround(std[c]!);
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) table[v] = Math.fround(Math.fround(Math.fround(v / 255) - m) / s);
    const base = c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = table[img.data[i * 3 + c]!]!;
  }
  return out;
}
