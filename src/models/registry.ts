// Which code runs which checkpoint: model families by config.json's model_type, with explicit imports.

import type { ChatModel } from '../chat/chat.js';
import type { ModelConfig } from '../config/load.js';
import type { WeightPrecision } from '../graph/quantize.js';
import type { RgbImage } from '../image/index.js';
import type { RuntimeOptions } from '../runtime/session.js';
import { minicpmvFamily } from './minicpmv/family.js';
import { omnilmmFamily } from './omnilmm/family.js';

export interface LoadOptions extends RuntimeOptions {
  /** Most beams a request may use (default 3). */
  maxBeams?: number;
  /** How the language model's linear layers keep their weights: fp32 (default, the reference), int8 or int4. */
  precision?: WeightPrecision;
  /**
   * How the vision tower's linear layers (attention and MLP of every block) keep their weights: fp32 (default, the
   * reference), int8 or int4. The patch embedding, the norms and the resampler stay fp32.
   */
  visionPrecision?: WeightPrecision;
}

export interface LoadedModel extends ChatModel {
  release(): Promise<void>;
}

/** How a family shows an image to its model (for `inspect-image`). */
export interface ImageInspection {
  /** Every slice the model sees, the overview first. */
  slices: RgbImage[];
  grid: [number, number] | null;
  placeholder: string;
  imageTokens: number;
  /** The normalised float32 CHW tensor of one slice. */
  pixels(slice: RgbImage): Float32Array;
}

/** The loaded config of the family whose model_type is T. */
export type ConfigOf<T extends ModelConfig['modelType']> = Extract<ModelConfig, { modelType: T }>;

/** What a family offers; it only ever receives configs of its own model_type (C). */
export interface ModelFamily<C extends ModelConfig = ModelConfig> {
  /** Token ids of a text as the family's chat path feeds it to the model (BOS first). */
  tokenize(dir: string, text: string): number[];
  inspectImage(image: RgbImage, config: C): ImageInspection;
  load(dir: string, config: C, options: LoadOptions): Promise<LoadedModel>;
}

const FAMILIES: { [T in ModelConfig['modelType']]: ModelFamily<ConfigOf<T>> } = {
  minicpmv: minicpmvFamily,
  omnilmm: omnilmmFamily,
};

export function familyOf(config: ModelConfig): ModelFamily {
  return FAMILIES[config.modelType] as ModelFamily;
}
