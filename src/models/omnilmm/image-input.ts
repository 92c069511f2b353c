// How OmniLMM-12B sees an image: `build_transform(is_train=False, input_size=image_size, std_mode='OPENAI_CLIP')`,
// i.e. a squash to image_size × image_size with PIL's bicubic (no crop, no slices), ToTensor, CLIP normalisation.

import { resizeBicubic, toPixelValues, type RgbImage } from '../../image/index.js';
import type { ImageInspection } from '../family.js';
import type { OmniLMMConfig } from './config.js';
import { imagePlaceholder } from './prompt.js';

/** timm.data.constants OPENAI_CLIP_MEAN / OPENAI_CLIP_STD. */
export const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** torchvision `Resize((size, size), BICUBIC)` on a PIL image (unchanged when it already has that size). */
export function resizeImage(image: RgbImage, imageSize: number): RgbImage {
  return resizeBicubic(image, imageSize, imageSize);
}

/** `ToTensor()` + `Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)`: the float32 CHW tensor. */
export function imagePixels(resized: RgbImage): Float32Array {
  return toPixelValues(resized, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD);
}

export function inspectImage(image: RgbImage, config: OmniLMMConfig): ImageInspection {
  const queryNum = config.resampler.queryNum;
  return {
    slices: [resizeImage(image, config.imageSize)],
    grid: null,
    placeholder: imagePlaceholder(queryNum),
    imageTokens: queryNum,
    pixels: imagePixels,
  };
}
