// LLaVA-UHD slicing as MiniCPM-V 2.0 does it (modeling_minicpmv.py at 651ed08: slice_image, find_best_resize,
// get_refine_size, ensure_divide, split_to_patches). Planning is a pure function of the image size that refuses a
// slice too large for the vision tower; sliceImage then executes the plan with the Pillow-exact resize.
//
//   original W×H ──resize──► overview `source` (always)
//        │
//        └──resize──► `refine` ──cut──► rows × cols equal patches, row-major (only when `grid` is not null)

import { ImageError } from '../errors.js';
import { resizeBicubic } from './resize.js';
import { cropImage, type RgbImage } from './rgb.js';

export type Size = [width: number, height: number];

export interface SliceOptions {
  /** Side of the square area one slice should cover (448 for MiniCPM-V 2.0). */
  scaleResolution: number;
  /** ViT patch side; every slice side is a multiple of it (14). */
  patchSize: number;
  /** Most patches an image may be cut into (9). */
  maxSliceNums: number;
  /** Always one slice: the whole image resized (slice_image's `never_split`). */
  neverSplit?: boolean;
}

export interface SlicePlan {
  /** Size of the overview slice. */
  source: Size;
  /** `[cols, rows]` of the patch grid, or null when the image is not cut. */
  grid: [cols: number, rows: number] | null;
  /** Size the original is resized to before it is cut, or null. */
  refine: Size | null;
  /** Size of every patch: `rows` arrays of `cols` sizes (all equal), empty when not cut. */
  patches: Size[][];
}

/**
 * The most patches one slice may have, in MiniCPM-V 2.0 and 4.6 alike (both towers are SigLIP-400M: 16 heads). A slice
 * covers about scaleResolution² (1024 patches of 14 at 448), but the resize keeps each side at least one patch (2.0)
 * or four (4.6), so past that aspect ratio the slice grows with it, and the tower's attention with its square: one
 * layer's float32 scores take 16·n²·4 bytes, 4.3 GB at 8192 patches, 13 GB for 2.0's 1×200000 (14311 patches), in
 * our graphs as in the official eager attention, which builds the same slices. Past 8192 the plan is refused.
 */
const MAX_SLICE_PATCHES = 8192;
/** Attention heads of SigLIP-400M and SigLIP2-400M, for the message's memory figure. */
const VISION_HEADS = 16;

/** Refuses a `slice` (W, H) of `image` (W, H) that has more than MAX_SLICE_PATCHES patches: call it before resizing. */
export function refuseOversizedSlice(image: Size, slice: Size, patchSize: number): void {
  const patches = (slice[0] / patchSize) * (slice[1] / patchSize);
  if (patches <= MAX_SLICE_PATCHES) return;
  throw new ImageError(
    `the image is too narrow for the vision tower: ${image[0]}×${image[1]} becomes a ${slice[0]}×${slice[1]} slice of ` +
      `${patches} patches (at most ${MAX_SLICE_PATCHES}; its attention alone would need ` +
      `${((patches ** 2 * 4 * VISION_HEADS) / 1e9).toFixed(0)} GB): crop it, or pad it nearer to square`,
  );
}

/** Python 3 `round(x)` on a float: the nearest integer, halves to the even neighbour. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const frac = x - floor; // exact in float64
  if (frac > 0.5) return floor + 1;
  if (frac < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Port of `ensure_divide`: the nearest multiple of `patchSize` (half to even), at least `patchSize`. */
export function ensureDivide(length: number, patchSize: number): number {
  return Math.max(roundHalfEven(length / patchSize) * patchSize, patchSize);
}

/** Port of `find_best_resize`: keep the aspect ratio, cover about `scaleResolution²` pixels, sides multiples of `patchSize`. */
export function findBestResize(size: Size, scaleResolution: number, patchSize: number, allowUpscale = false): Size {
  let [width, height] = size;
  if (width * height > scaleResolution * scaleResolution || allowUpscale) {
    const r = width / height;
    height = Math.trunc(scaleResolution / Math.sqrt(r));
    width = Math.trunc(height * r);
  }
  return [ensureDivide(width, patchSize), ensureDivide(height, patchSize)];
}

/** Port of `get_refine_size`: the size whose `grid` cells each get `findBestResize` of the (float) cell size. */
export function getRefineSize(size: Size, grid: [number, number], scaleResolution: number, patchSize: number, allowUpscale = false): Size {
  const [cols, rows] = grid;
  const cellWidth = ensureDivide(size[0], cols) / cols;
  const cellHeight = ensureDivide(size[1], rows) / rows;
  const [bestWidth, bestHeight] = findBestResize([cellWidth, cellHeight], scaleResolution, patchSize, allowUpscale);
  return [bestWidth * cols, bestHeight * rows];
}

/** The grid `slice_image` picks: candidate patch counts around the area ratio, aspect ratio closest in log space. */
function bestGrid(size: Size, multiple: number, maxSliceNums: number): [number, number] {
  const logRatio = Math.log(size[0] / size[1]);
  let best: [number, number] = [1, 1];
  let minError = Infinity;
  for (const n of [multiple - 1, multiple, multiple + 1]) {
    if (n === 1 || n > maxSliceNums) continue;
    for (let m = 1; m <= n; m++) {
      if (n % m !== 0) continue;
      const error = Math.abs(logRatio - Math.log(m / (n / m)));
      // Strict `<`: on a tie the earlier candidate stays.
      if (error < minError) {
        best = [m, n / m];
        minError = error;
      }
    }
  }
  return best;
}

/** Port of `slice_image`'s decisions (no pixels): overview size, grid, refine size and patch sizes. */
export function planSlices(size: Size, options: SliceOptions): SlicePlan {
  const [width, height] = size;
  const { scaleResolution, patchSize, maxSliceNums } = options;
  for (const [name, value] of Object.entries({ width, height, scaleResolution, patchSize, maxSliceNums })) {
    if (!Number.isSafeInteger(value) || value < 1) throw new ImageError(`cannot plan slices: ${name} must be a positive whole number, got ${value}`);
  }
  const ratio = (width * height) / (scaleResolution * scaleResolution);
  const multiple = Math.min(Math.ceil(ratio), maxSliceNums);
  if (multiple <= 1 || options.neverSplit) {
    const source = findBestResize(size, scaleResolution, patchSize, true);
    refuseOversizedSlice(size, source, patchSize);
    return { source, grid: null, refine: null, patches: [] };
  }
  // A very wide image's overview collapses to one patch (int(448/√r) is 0, and so is the width), but its patches do not.
  const source = findBestResize(size, scaleResolution, patchSize);
  refuseOversizedSlice(size, source, patchSize);
  const grid = bestGrid(size, multiple, maxSliceNums);
  const refine = getRefineSize(size, grid, scaleResolution, patchSize, true);
  // split_to_patches: tiles of int(refine / grid); refine is a multiple of the grid, so they tile it exactly.
  const tile: Size = [Math.trunc(refine[0] / grid[0]), Math.trunc(refine[1] / grid[1])];
  refuseOversizedSlice(size, tile, patchSize);
  const patches = Array.from({ length: grid[1] }, () => Array.from({ length: grid[0] }, (): Size => [...tile]));
  return { source, grid, refine, patches };
}

/** Executes `planSlices`: the overview first, then the patches row by row (resized from the original, not the overview). */
export function sliceImage(img: RgbImage, options: SliceOptions): { plan: SlicePlan; slices: RgbImage[] } {
  const plan = planSlices([img.width, img.height], options);
  const slices = [resizeBicubic(img, ...plan.source)];
  if (plan.refine) {
    const refined = resizeBicubic(img, ...plan.refine);
    let y = 0;
    for (const row of plan.patches) {
      let x = 0;
      for (const [w, h] of row) {
        slices.push(cropImage(refined, x, y, w, h));
        x += w;
      }
      y += row[0]![1];
    }
  }
  return { plan, slices };
}
