// What a model family is to the rest of the code: the one interface each `models/<family>/family.ts` implements and
// `models/registry.ts` lists, one line per family.

import type { ChatModel } from '../chat/chat.js';
import type { ChatDefaults } from '../chat/decoding.js';
import { describeJson, InvalidRequestError } from '../errors.js';
import type { ModelFiles } from '../checkpoint/model-files.js';
import { MAX_BEAMS } from '../generation/options.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../graph/quantize.js';
import type { RgbImage } from '../image/index.js';
import type { InspectOptions, MediaCount, VideoFramePicker, VideoOptions } from './messages.js';
import type { RuntimeOptions } from '../runtime/graph-session.js';

export interface LoadOptions extends RuntimeOptions {
  /** Most beams a request may use (default 3). */
  maxBeams?: number;
  /**
   * How the language model's linear layers keep their weights: fp32 (the reference), int8, int4 or int8-dq (see
   * WeightPrecision). A family's `load` takes absent as fp32; loadModel, the engines, the CLI and the bench fill in
   * DEFAULT_PRECISION first.
   */
  precision?: WeightPrecision;
  /**
   * How the vision tower's linear layers (attention and MLP of every block) keep their weights, as `precision`
   * (absent: as `precision` says for a family's `load`, DEFAULT_VISION_PRECISION elsewhere). The patch embedding,
   * the norms and the resampler stay fp32.
   */
  visionPrecision?: WeightPrecision;
  /**
   * Keep the vision tower's sessions open between images (MiniCPM-V 1.0, 2.0 and 4.6). By default they are suspended
   * after each image where they can be reopened (GraphSession.suspend), so that the tower's memory is not held while
   * the decoder answers; a new image then waits for them (README "Server and web page" has the cost per model).
   */
  keepVisionLoaded?: boolean;
}

/**
 * The language model's precision when none is asked for: int8 weights with int8 compute (DynamicQuantizeMatMul), a
 * quarter of fp32's memory; on a full-size MiniCPM-V 2.0 its prompts ran 1.9× and its decoding 1.1–1.2× as fast as
 * MatMulNBits int8 blocks, in 240 MiB less (README "Performance"), at the same error on the fixtures ("Precision").
 */
export const DEFAULT_PRECISION: WeightPrecision = 'int8-dq';

/**
 * The vision tower's precision when none is asked for: int8 weights with int8 compute (DynamicQuantizeMatMul), the
 * fastest kernel on the ~1024 rows of a slice (scripts/int8-microbench.ts); its error is in README "Precision".
 */
export const DEFAULT_VISION_PRECISION: WeightPrecision = 'int8-dq';

/** The options with the default precisions where none is given (fp32 must be asked for by name). */
export function withDefaultPrecisions<T extends LoadOptions>(options: T): T & { precision: WeightPrecision; visionPrecision: WeightPrecision } {
  return { ...options, precision: options.precision ?? DEFAULT_PRECISION, visionPrecision: options.visionPrecision ?? DEFAULT_VISION_PRECISION };
}

/**
 * The runtime part of load options, which every graph session of a model gets. Every family's load calls it first, so
 * a bad thread count, precision, beam count or keepVisionLoaded is refused here, before anything is built.
 */
export function runtimeOptions(options: LoadOptions): RuntimeOptions {
  const { threads, executionProvider, cache, openGraph, profile } = options;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
    throw new InvalidRequestError(`threads must be a whole number of at least 1 (or left out for one per core), got ${describeJson(threads)}`);
  }
  for (const name of ['precision', 'visionPrecision'] as const) {
    const precision = options[name];
    if (precision !== undefined && !WEIGHT_PRECISIONS.includes(precision)) {
      throw new InvalidRequestError(`${name} must be one of ${WEIGHT_PRECISIONS.join(', ')}, got ${describeJson(precision)}`);
    }
  }
  const { maxBeams } = options;
  if (maxBeams !== undefined && !(Number.isInteger(maxBeams) && maxBeams >= 1 && maxBeams <= MAX_BEAMS)) {
    throw new InvalidRequestError(`maxBeams must be a whole number from 1 to ${MAX_BEAMS} (or left out for 3), got ${describeJson(maxBeams)}`);
  }
  if (options.keepVisionLoaded !== undefined && typeof options.keepVisionLoaded !== 'boolean') {
    throw new InvalidRequestError(`keepVisionLoaded must be true or false, got ${describeJson(options.keepVisionLoaded)}`);
  }
  return { threads, executionProvider, cache, openGraph, profile };
}

export interface LoadedModel extends ChatModel {
  release(): Promise<void>;
  /**
   * Which frames of a video the model keeps, under a request's video options, so that a video file or folder is read
   * for those only; absent, or undefined, where it keeps every frame (or takes no video).
   */
  videoFramePicker?(options: VideoOptions): VideoFramePicker | undefined;
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
  /** The model folder's files (a family may read more of them, e.g. processor_config.json). */
  files: ModelFiles;
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
  /**
   * What the family refuses of a request's media whatever else it asks (a video, more images than it takes), with the
   * message its model gives; null when it takes them. Known from the config: the CLI says it before it reads a file.
   */
  mediaRefusal(config: C, media: MediaCount): string | null;
  /** LoadedModel.videoFramePicker before the model is loaded (the CLI reads a video before it loads the model). */
  videoFramePicker?(config: C, options: VideoOptions): VideoFramePicker | undefined;
  /**
   * Its entries in `chat --help`'s list of decoding defaults, one a model it runs (decodingDefaultsEntry), made from the
   * defaults its chat uses.
   */
  decodingDefaultsHelp(): string[];
}

/** The column where the text of an entry in `chat --help`'s decoding defaults starts, after the model's name. */
const DEFAULTS_HELP_COLUMN = 18;

/** One model's entry in `chat --help`'s decoding defaults: its name, then `lines`, each under the one before. */
export function decodingDefaultsEntry(model: string, lines: readonly string[]): string {
  return lines.map((line, i) => (i === 0 ? `  ${model}`.padEnd(DEFAULTS_HELP_COLUMN) : ' '.repeat(DEFAULTS_HELP_COLUMN)) + line).join('\n');
}

/**
 * A model's decodingDefaultsEntry for its chat defaults: the sampling settings, then beam search's and
 * --max-new-tokens, then `note` if given (where the defaults differ from what the official chat has).
 */
export function chatDefaultsEntry(model: string, defaults: ChatDefaults, note?: string): string {
  const real = (n: number) => (Number.isInteger(n) ? n.toFixed(1) : String(n));
  const { sample, beam, maxNewTokens } = defaults;
  return decodingDefaultsEntry(model, [
    `sample: temperature ${real(sample.temperature)}, top_p ${real(sample.topP)}, top_k ${sample.topK}, repetition penalty ${real(sample.repetitionPenalty)}`,
    `beam: ${beam.numBeams} beams, repetition penalty ${real(beam.repetitionPenalty)}; --max-new-tokens ${maxNewTokens}`,
    ...(note ? [note] : []),
  ]);
}
