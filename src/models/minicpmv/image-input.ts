// How MiniCPM-V turns one RGB image into model inputs: the slices (overview first, then patches row-major), their
// normalised pixels and the placeholder text. 2.0 slices (get_slice_image_placeholder); 1.0 squashes every image to
// image_size × image_size (init_transform's Resize) and uses a single placeholder.

import { resizeBicubic } from '../../image/resize.js';
import { toPixelValues, type RgbImage } from '../../image/rgb.js';
import { sliceImage } from '../../image/slice.js';
import type { MiniCPMVConfig } from './config.js';
import { imagePlaceholder } from './prompt.js';

/** IMAGENET_INCEPTION_MEAN / STD, the normalisation of MiniCPMV.transform. */
export const PIXEL_MEAN = [0.5, 0.5, 0.5] as const;
export const PIXEL_STD = [0.5, 0.5, 0.5] as const;

export interface ImageInput {
  /** Every slice the model sees: the overview first, then the patches row by row. */
  slices: RgbImage[];
  /** `[cols, rows]` of the patch grid, or null when the image is not cut. */
  grid: [number, number] | null;
  /** The image's text in the prompt (before "\n" and the question). */
  placeholder: string;
  /** Positions that receive image features: slices × query_num. */
  imageTokens: number;
}

export function prepareImageInput(image: RgbImage, config: MiniCPMVConfig): ImageInput {
  const queryNum = config.resampler.queryNum;
  if (!config.slice.sliceMode) {
    const side = config.slice.imageSize;
    const slices = [resizeBicubic(image, side, side)];
    return { slices, grid: null, placeholder: imagePlaceholder(null, queryNum), imageTokens: queryNum };
  }
  const { plan, slices } = sliceImage(image, config.slice);
  return { slices, grid: plan.grid, placeholder: imagePlaceholder(plan.grid, queryNum), imageTokens: slices.length * queryNum };
}

/** The normalised float32 CHW tensor of one slice (torchvision ToTensor + Normalize). */
export function slicePixels(slice: RgbImage): Float32Array {
  return toPixelValues(slice, PIXEL_MEAN, PIXEL_STD);
}
