// MiniCPM-V 4.6 image preprocessing, exact to the official default (torchvision) processor
// (transformers 5.18 image_processing_minicpmv4_6.py + processing_minicpmv4_6.py): the slice plan, the resized uint8
// slices, their normalised pixels and patch grids, and the placeholder text. Sizes here are (height, width).
//
//   original H×W ──resize──► source (always, sides multiples of 56)
//        │
//        └──resize──► refine ──cut──► rows × cols equal tiles, row-major (only with a grid)

import { ImageError } from '../../errors.js';
import { cropImage, type RgbImage } from '../../image/rgb.js';
import { ensureDivide, refuseOversizedSlice } from '../../image/slice.js';
import { resizeBicubicTorch } from '../../image/torch-resize.js';
import type { DownsampleMode } from '../messages.js';

export type HeightWidth = [height: number, width: number];

/** The processor settings that matter here (processor_config.json → image_processor, or video_processor). */
export interface MiniCPMV46ImageOptions {
  /** Most tiles an image may be cut into (`max_slice_nums`, 9). */
  maxSliceNums: number;
  /** Side of the square area one slice should cover (`scale_resolution`, 448). */
  scaleResolution: number;
  /** ViT patch side (`patch_size`, 14); slice sides are multiples of 4 patches (two 2×2 merges). */
  patchSize: number;
  /** Cut large images into a grid of tiles besides the source (`slice_mode`, true). */
  sliceMode: boolean;
  /** Prefix each image's text with `<image_id>k</image_id>` (`use_image_id`, true). */
  useImageId: boolean;
  /** Visual tokens per slice: patches / 16 ("16x") or patches / 4 ("4x") (`downsample_mode`). */
  downsampleMode: DownsampleMode;
}

/** The class defaults of MiniCPMV4_6ImageProcessor (equal to the released processor_config.json). */
export const MINICPMV46_IMAGE_DEFAULTS: Readonly<MiniCPMV46ImageOptions> = {
  maxSliceNums: 9,
  scaleResolution: 448,
  patchSize: 14,
  sliceMode: true,
  useImageId: true,
  downsampleMode: '16x',
};

export const IMAGE_MARKUP = {
  imageStart: '<image>',
  imageEnd: '</image>',
  sliceStart: '<slice>',
  sliceEnd: '</slice>',
  idStart: '<image_id>',
  idEnd: '</image_id>',
  imagePad: '<|image_pad|>',
  videoPad: '<|video_pad|>',
} as const;

/** The two 2×2 merges of the vision tower: every slice side is a multiple of 4 patches (find_best_resize's `patch_size * 4`). */
const MERGE_FACTOR = 4;

/** Port of `get_sliced_grid`: `[rows, cols]` whose aspect ratio is closest in log space (ties → more rows), or null. */
export function getSlicedGrid(size: HeightWidth, maxSliceNums: number, scaleResolution: number): [rows: number, cols: number] | null {
  const [height, width] = size;
  const logRatio = Math.log(width / height);
  const ratio = (width * height) / (scaleResolution * scaleResolution);
  const multiple = Math.min(Math.ceil(ratio), maxSliceNums);
  if (multiple <= 1) return null;
  let best: [number, number] = [1, 1];
  let minError = Infinity;
  for (const n of [multiple - 1, multiple, multiple + 1]) {
    if (n === 1 || n > maxSliceNums) continue;
    for (let rows = 1; rows <= n; rows++) {
      if (n % rows !== 0) continue;
      const cols = n / rows;
      const error = Math.abs(logRatio - Math.log(cols / rows));
      if (error < minError || (error === minError && rows > best[0])) {
        best = [rows, cols];
        minError = error;
      }
    }
  }
  return best;
}

/** Port of `find_best_resize`: keep the aspect ratio, cover about scaleResolution², sides multiples of 4 patches. */
export function findBestResize(size: HeightWidth, scaleResolution: number, patchSize: number, allowUpscale = false): HeightWidth {
  let [height, width] = size;
  if (height * width > scaleResolution * scaleResolution || allowUpscale) {
    const aspectRatio = width / height;
    height = Math.trunc(scaleResolution / Math.sqrt(aspectRatio));
    width = Math.trunc(height * aspectRatio);
  }
  const divisor = patchSize * MERGE_FACTOR;
  return [ensureDivide(height, divisor), ensureDivide(width, divisor)];
}

/** Port of `get_refine_size`: `find_best_resize` of the (float) grid cell, times the grid. */
export function getRefineSize(
  size: HeightWidth,
  grid: readonly [rows: number, cols: number],
  scaleResolution: number,
  patchSize: number,
  allowUpscale = false,
): HeightWidth {
  const [height, width] = size;
  const [rows, cols] = grid;
  const cell: HeightWidth = [ensureDivide(height, rows) / rows, ensureDivide(width, cols) / cols];
  const [bestHeight, bestWidth] = findBestResize(cell, scaleResolution, patchSize, allowUpscale);
  return [bestHeight * rows, bestWidth * cols];
}

/** What `_preprocess` decides for one image, before any pixel is touched. */
export interface ImageSlicePlan {
  /** `[rows, cols]` of the tile grid, or null when the image is not cut. */
  grid: [rows: number, cols: number] | null;
  /** Size of the source slice (the whole image resized). */
  source: HeightWidth;
  /** Size the original is resized to before it is cut, or null. */
  refine: HeightWidth | null;
  /** Size of every tile (refine / grid), or null. */
  tile: HeightWidth | null;
}

type PlanOptions = Pick<MiniCPMV46ImageOptions, 'maxSliceNums' | 'scaleResolution' | 'patchSize' | 'sliceMode'>;

/** The slice plan of `_preprocess` for an image of `size` (H, W). */
export function planImageSlices(size: HeightWidth, options: PlanOptions): ImageSlicePlan {
  const [height, width] = size;
  const { maxSliceNums, scaleResolution, patchSize } = options;
  for (const [name, value] of Object.entries({ height, width, maxSliceNums, scaleResolution, patchSize })) {
    if (!Number.isSafeInteger(value) || value < 1) throw new ImageError(`cannot plan slices: ${name} must be a positive whole number, got ${value}`);
  }
  const grid = options.sliceMode ? getSlicedGrid(size, maxSliceNums, scaleResolution) : null;
  const source = findBestResize(size, scaleResolution, patchSize, grid === null);
  refuseOversizedSlice([width, height], [source[1], source[0]], patchSize);
  if (grid === null) return { grid, source, refine: null, tile: null };
  const refine = getRefineSize(size, grid, scaleResolution, patchSize, true);
  const tile: HeightWidth = [Math.trunc(refine[0] / grid[0]), Math.trunc(refine[1] / grid[1])];
  // A very wide image's source collapses to 56×56 (int(448/√r) is 0, and so is the width), but its tiles do not.
  refuseOversizedSlice([width, height], [tile[1], tile[0]], patchSize);
  return { grid, source, refine, tile };
}

/** Executes a plan: the source first, then the tiles of the resized original row by row (`divide_to_patches`). */
export function cutImageSlices(img: RgbImage, plan: ImageSlicePlan): RgbImage[] {
  const slices = [resizeBicubicTorch(img, plan.source[1], plan.source[0])];
  if (plan.grid && plan.refine && plan.tile) {
    const refined = resizeBicubicTorch(img, plan.refine[1], plan.refine[0]);
    const [tileHeight, tileWidth] = plan.tile;
    for (let row = 0; row < plan.grid[0]; row++) {
      for (let col = 0; col < plan.grid[1]; col++) slices.push(cropImage(refined, col * tileWidth, row * tileHeight, tileWidth, tileHeight));
    }
  }
  return slices;
}

/** float32((float32(u8) − 127.5) / 127.5) for every byte value: torchvision's fused rescale (1/255) + normalise (0.5, 0.5). */
const PIXEL_TABLE = Float32Array.from({ length: 256 }, (_, v) => (v - 127.5) / 127.5);

/** The float32 CHW tensor [3, H, W] the default processor makes of a uint8 slice (`rescale_and_normalize`). */
export function normalizePixels(img: RgbImage): Float32Array {
  const plane = img.width * img.height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    out[i] = PIXEL_TABLE[img.data[i * 3]!]!;
    out[plane + i] = PIXEL_TABLE[img.data[i * 3 + 1]!]!;
    out[2 * plane + i] = PIXEL_TABLE[img.data[i * 3 + 2]!]!;
  }
  return out;
}

/** Visual tokens one slice of `patchGrid` (h, w) patches becomes: h·w // 16 ("16x") or h·w // 4 ("4x"). */
export function sliceTokens(patchGrid: HeightWidth, downsampleMode: DownsampleMode): number {
  return Math.floor((patchGrid[0] * patchGrid[1]) / (downsampleMode === '4x' ? 4 : 16));
}

/** One slice as the vision tower takes it. */
export interface VisionSlice {
  /** The resized uint8 slice. */
  image: RgbImage;
  /** Normalised float32 pixels, CHW [3, H, W]. */
  pixels: Float32Array;
  /** Patch grid (H / patchSize, W / patchSize): the processor's `target_sizes` row. */
  patchGrid: HeightWidth;
  /** Visual tokens this slice contributes to the prompt (for the options' downsample mode). */
  tokens: number;
}

export interface PreprocessedImage {
  plan: ImageSlicePlan;
  /** The source first, then the tiles row-major. */
  slices: VisionSlice[];
}

/** A slice as the prompt counts it, before any pixel is made: its patch grid and its visual tokens. */
export type SliceShape = Pick<VisionSlice, 'patchGrid' | 'tokens'>;

/** The shapes of the slices `cutImageSlices` makes of a plan (the source, then every tile), in that order. */
export function planSliceShapes(plan: ImageSlicePlan, options: Pick<MiniCPMV46ImageOptions, 'patchSize' | 'downsampleMode'>): SliceShape[] {
  const tiles = plan.grid && plan.refine && plan.tile ? Array.from({ length: plan.grid[0] * plan.grid[1] }, () => plan.tile!) : [];
  return [plan.source, ...tiles].map(([height, width]): SliceShape => {
    const patchGrid: HeightWidth = [Math.trunc(height / options.patchSize), Math.trunc(width / options.patchSize)];
    return { patchGrid, tokens: sliceTokens(patchGrid, options.downsampleMode) };
  });
}

/** The slices of an image's plan with their pixels, patch grids and tokens: the source first, then the tiles. */
export function sliceImage(img: RgbImage, plan: ImageSlicePlan, options: Pick<MiniCPMV46ImageOptions, 'patchSize' | 'downsampleMode'>): VisionSlice[] {
  const shapes = planSliceShapes(plan, options);
  return cutImageSlices(img, plan).map((image, i): VisionSlice => ({ image, pixels: normalizePixels(image), ...shapes[i]! }));
}

/** Slices, pixels, patch grids and token counts of one RGB image (`MiniCPMV4_6ImageProcessor._preprocess`). */
export function preprocessImage(img: RgbImage, options: MiniCPMV46ImageOptions): PreprocessedImage {
  const plan = planImageSlices([img.height, img.width], options);
  return { plan, slices: sliceImage(img, plan, options) };
}

/**
 * The text of one image or video frame (`replace_image_token` / `replace_video_token`): `<image>` + pad × source tokens
 * + `</image>`, then with a grid its rows joined by "\n", each `cols` × (`<slice>` + pad × tile tokens + `</slice>`).
 */
export function slicesPlaceholder(grid: readonly [number, number] | null, tokens: readonly number[], pad: string): string {
  const source = tokens[0];
  if (source === undefined) throw new ImageError('internal error: an image without slices has no placeholder');
  let text = IMAGE_MARKUP.imageStart + pad.repeat(source) + IMAGE_MARKUP.imageEnd;
  if (grid && grid[0] > 0 && grid[1] > 0) {
    const tile = IMAGE_MARKUP.sliceStart + pad.repeat(tokens[1] ?? 0) + IMAGE_MARKUP.sliceEnd;
    text += Array.from({ length: grid[0] }, () => tile.repeat(grid[1])).join('\n');
  }
  return text;
}

/** `<image_id>k</image_id>` (`_prepend_local_ids`), or "" for null. */
export function imageIdPrefix(id: number | null): string {
  return id === null ? '' : `${IMAGE_MARKUP.idStart}${id}${IMAGE_MARKUP.idEnd}`;
}

/**
 * What the processor puts in place of the `<|image_pad|>` of one image. `imageId` is the image's index among the
 * images of its sample (0, 1, …) when `use_image_id` is on, else null.
 */
export function imagePlaceholder(image: PreprocessedImage, imageId: number | null): string {
  const tokens = image.slices.map((s) => s.tokens);
  return imageIdPrefix(imageId) + slicesPlaceholder(image.plan.grid, tokens, IMAGE_MARKUP.imagePad);
}

/**
 * `reshape_by_patch` + concatenation: the slices' [3, h·p, w·p] pixels as one [3, p, Σ h·w·p] tensor, patch (r, c) of
 * a slice being the p×p block at columns (offset + r·w + c)·p. This is the processor's `pixel_values[0]`.
 */
export function packPatches(slices: readonly Pick<VisionSlice, 'pixels' | 'patchGrid'>[], patchSize: number): Float32Array {
  const totalPatches = slices.reduce((n, s) => n + s.patchGrid[0] * s.patchGrid[1], 0);
  const rowLength = totalPatches * patchSize;
  const out = new Float32Array(3 * patchSize * rowLength);
  let patchOffset = 0;
  for (const { pixels, patchGrid } of slices) {
    const [h, w] = patchGrid;
    const width = w * patchSize;
    const plane = h * patchSize * width;
    if (pixels.length !== 3 * plane) throw new ImageError(`internal error: ${pixels.length} pixel values do not fill a ${h}x${w}-patch slice`);
    for (let c = 0; c < 3; c++) {
      for (let r = 0; r < h; r++) {
        for (let y = 0; y < patchSize; y++) {
          const from = c * plane + (r * patchSize + y) * width;
          const to = (c * patchSize + y) * rowLength + (patchOffset + r * w) * patchSize;
          // A patch row of the slice is w patches side by side: exactly the packed layout's next w·p columns.
          out.set(pixels.subarray(from, from + width), to);
        }
      }
    }
    patchOffset += h * w;
  }
  return out;
}
