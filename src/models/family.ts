// What a model family is to the rest of the code: the one interface each `models/<family>/family.ts` implements and
// `models/registry.ts` lists, one line per family.

import type { ChatModel } from '../chat/chat.js';
import type { WeightPrecision } from '../graph/quantize.js';
import type { RgbImage } from '../image/index.js';
import type { InspectOptions } from './messages.js';
import type { RuntimeOptions } from '../runtime/session.js';

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

/** A model folder's config.json, read but not yet interpreted. */
export interface CheckpointConfig {
  /** The model folder (a family may read more files from it, e.g. processor_config.json). */
  dir: string;
  /** The path of config.json, for messages. */
  file: string;
  /** config.json's top-level object. */
  config: Record<string, unknown>;
}

/** Every family's typed config names its family by config.json's model_type. */
export interface FamilyConfigBase {
  modelType: string;
}

/** Everything of one model family; it only ever receives configs it parsed itself (C). */
export interface ModelFamily<C extends FamilyConfigBase = FamilyConfigBase> {
  /** config.json's `model_type` that selects this family; its configs carry it as `modelType`. */
  readonly modelType: C['modelType'];
  /** The models it runs, for messages ("MiniCPM-V 1.0 and 2.0"). */
  readonly description: string;
  /**
   * The name of a known member of the family that this code does not run (e.g. "MiniCPM-V 2.6" for model_type
   * "minicpmv" with version 2.6), recognised from config.json's keys (version, architectures, …); null for a
   * member it runs. Such a checkpoint is refused by that name before `parseConfig` sees it.
   */
  unsupportedMember(config: Record<string, unknown>): string | null;
  /** config.json (and the family's other JSON files) → the family's typed config, validated. */
  parseConfig(checkpoint: CheckpointConfig): C;
  /** Token ids of a text as the family's chat path feeds it to the model (BOS first where it adds one). */
  tokenize(dir: string, text: string): number[];
  /** How the model sees an image; options a family cannot honour (MiniCPM-V 2.0 has one downsample mode) are refused. */
  inspectImage(image: RgbImage, config: C, options?: InspectOptions): ImageInspection;
  load(dir: string, config: C, options: LoadOptions): Promise<LoadedModel>;
}
