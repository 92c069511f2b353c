// MiniCPM-V 4.6 (model_type "minicpmv4_6", transformers 5.18 `MiniCPMV4_6Config`): config.json → typed configs of its
// parts (the Qwen3.5 text model, the SigLIP2 tower with its window-attention merger, the merger into the text model)
// and processor_config.json → the image and video processors' settings. Defaults are the transformers class defaults
// (`MiniCPMV4_6Config`, `MiniCPMV4_6VisionConfig`, `Qwen3_5TextConfig`, `MiniCPMV4_6ImageProcessor`,
// `MiniCPMV4_6VideoProcessor`); keys the 5.18 code does not read (drop_vision_last_layer, patch_size at the top level,
// attn_output_gate, mtp_*, …) are not read here either.

import type { ModelFiles } from '../../checkpoint/model-files.js';
import {
  asDict, boolean, fromDict, integer, integers, number, numbers, optional, string, strings, type Origin,
} from '../../config/fromDict.js';
import { readJsonFile } from '../../config/json.js';
import { CheckpointError, UnsupportedModelError } from '../../errors.js';
import type { CheckpointConfig } from '../family.js';
import type { DownsampleMode } from '../messages.js';

export type LayerType = 'linear_attention' | 'full_attention';

/** The Qwen3.5 hybrid text model (`text_config`, model_type "qwen3_5_text"). */
export interface Qwen35TextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  /** Per layer: a gated delta net ("linear_attention") or gated softmax attention ("full_attention"). */
  layerTypes: LayerType[];
  rmsNormEps: number;
  maxPositionEmbeddings: number;
  /** Full-attention layers: query heads (q_proj gives query and gate per head), key/value heads, head size. */
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  ropeTheta: number;
  partialRotaryFactor: number;
  /** int(head_dim · partial_rotary_factor): the leading dims of each head that RoPE rotates. */
  rotaryDim: number;
  /** rope_parameters.mrope_section (how M-RoPE interleaves its 3 position rows; equal rows for text and images). */
  mropeSection: number[];
  /** Linear-attention layers: causal conv kernel, key/value heads and head sizes. */
  linearConvKernelDim: number;
  linearNumKeyHeads: number;
  linearKeyHeadDim: number;
  linearNumValueHeads: number;
  linearValueHeadDim: number;
}

/** The SigLIP2 vision tower (`vision_config`, model_type "minicpmv4_6_vision"). */
export interface MiniCPMV46VisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** hidden_size / num_attention_heads. */
  headDim: number;
  numChannels: number;
  imageSize: number;
  patchSize: number;
  /** image_size // patch_size: the side of the position-embedding table (positionGrid² rows). */
  positionGrid: number;
  layerNormEps: number;
  /** `gelu_pytorch_tanh`: the tanh approximation of GELU (the merger's MLP uses the exact one). */
  hiddenAct: 'gelu_pytorch_tanh';
  /** Windows of the window-attention merger (16x), [h, w]. */
  windowKernelSize: [number, number];
}

/** One processor's settings (processor_config.json `image_processor`). */
export interface MiniCPMV46ImageProcessorConfig {
  sliceMode: boolean;
  maxSliceNums: number;
  scaleResolution: number;
  patchSize: number;
  downsampleMode: DownsampleMode;
  /** Prefix each image's placeholder with `<image_id>k</image_id>`. */
  useImageId: boolean;
  /** pixel = (u8 · rescaleFactor − mean) / std per channel. */
  rescaleFactor: number;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

/** processor_config.json `video_processor`: the image settings per frame, and how frames are sampled. */
export interface MiniCPMV46VideoProcessorConfig extends MiniCPMV46ImageProcessorConfig {
  doSampleFrames: boolean;
  maxNumFrames: number;
  /** Sub-frames per second composited into one frame; 1 = no stacking. */
  stackFrames: number;
}

export interface MiniCPMV46ProcessorConfig {
  image: MiniCPMV46ImageProcessorConfig;
  video: MiniCPMV46VideoProcessorConfig;
}

export interface MiniCPMV46Config {
  modelType: 'minicpmv4_6';
  text: Qwen35TextConfig;
  vision: MiniCPMV46VisionConfig;
  /** The vision layer (0-based) after which the window-attention merger runs in 16x mode (also vision_config's). */
  insertLayerId: number;
  /** config.json's top-level image_size (not read by the 5.18 processing, which uses scale_resolution). */
  imageSize: number;
  /** `<|image_pad|>` / `<|video_pad|>`: the prompt rows that receive image / video features. */
  imageTokenId: number;
  videoTokenId: number | undefined;
  /** lm_head = embed_tokens (read at the top level, as PreTrainedModel ties weights). */
  tieWordEmbeddings: boolean;
  /** The model's default visual token downsampling. */
  downsampleMode: DownsampleMode;
  mergeKernelSize: [number, number];
  mergerTimes: number;
  processor: MiniCPMV46ProcessorConfig;
}

const DOWNSAMPLE_MODES: readonly string[] = ['16x', '4x'];
const DOWNSAMPLE_WHY = '"16x" (window-attention merger + merger) and "4x" (merger only) are the two modes';
/** find_best_resize sizes images in multiples of patch_size · 4: exactly two 2×2 merges (16x). */
const TWO_BY_TWO_WHY = 'the processor sizes images for two 2×2 merges (find_best_resize: multiples of patch_size · 4)';
const LAYER_TYPES: readonly string[] = ['linear_attention', 'full_attention'];

const fixedTrue = (why: string) => boolean({ default: true, oneOf: [true], why });

const MINICPMV46_FIELDS = {
  insertLayerId: integer({ min: 0, default: 6 }),
  imageSize: integer({ min: 1, default: 448 }),
  imageTokenId: integer({ min: 0 }),
  videoTokenId: optional(integer({ min: 0 })),
  tieWordEmbeddings: boolean({ default: false }),
  downsampleMode: string({ default: '16x', oneOf: DOWNSAMPLE_MODES, why: DOWNSAMPLE_WHY }),
  mergeKernelSize: integers({ min: 1, default: [2, 2], oneOf: [[2, 2]], why: TWO_BY_TWO_WHY }),
  mergerTimes: integer({ min: 1, default: 1, oneOf: [1], why: `one merge round: ${TWO_BY_TWO_WHY}` }),
};

const TEXT_FIELDS = {
  modelType: string({ oneOf: ['qwen3_5_text'], why: 'MiniCPM-V 4.6 is built on the Qwen3.5 text model' }),
  vocabSize: integer({ min: 1, default: 248320 }),
  hiddenSize: integer({ min: 1, default: 4096 }),
  intermediateSize: integer({ min: 1, default: 12288 }),
  numHiddenLayers: integer({ min: 1, default: 32 }),
  numAttentionHeads: integer({ min: 1, default: 16 }),
  numKeyValueHeads: integer({ min: 1, default: 4 }),
  headDim: integer({ min: 1, default: 256 }),
  hiddenAct: string({ default: 'silu', oneOf: ['silu'], why: 'the MLP is built as down(silu(gate(x)) * up(x))' }),
  maxPositionEmbeddings: integer({ min: 1, default: 32768 }),
  rmsNormEps: number({ min: 0, default: 1e-6 }),
  attentionBias: boolean({ default: false, oneOf: [false], why: 'the attention projections are built without bias' }),
  linearConvKernelDim: integer({ min: 1, default: 4 }),
  linearKeyHeadDim: integer({ min: 1, default: 128 }),
  linearValueHeadDim: integer({ min: 1, default: 128 }),
  linearNumKeyHeads: integer({ min: 1, default: 16 }),
  linearNumValueHeads: integer({ min: 1, default: 32 }),
  /** Absent: every full_attention_interval-th layer is full attention (Qwen3_5TextConfig.__post_init__). */
  layerTypes: optional(strings()),
  fullAttentionInterval: integer({ min: 1, default: 4 }),
  /** Older spellings next to rope_parameters; rope_parameters wins (convert_rope_params_to_dict). */
  ropeTheta: optional(number({ min: 0 })),
  partialRotaryFactor: optional(number({ min: 0 })),
};

const ROPE_FIELDS = {
  ropeType: string({ default: 'default', oneOf: ['default'], why: 'only unscaled RoPE is implemented' }),
  ropeTheta: optional(number({ min: 0 })),
  partialRotaryFactor: optional(number({ min: 0 })),
  mropeSection: integers({ min: 0, default: [11, 11, 10] }),
};
/** RotaryEmbeddingConfigMixin.default_theta; Qwen3_5TextConfig's default partial_rotary_factor. */
const DEFAULT_ROPE_THETA = 10000;
const DEFAULT_PARTIAL_ROTARY_FACTOR = 0.25;

const VISION_FIELDS = {
  hiddenSize: integer({ min: 1, default: 768 }),
  intermediateSize: integer({ min: 1, default: 3072 }),
  numHiddenLayers: integer({ min: 1, default: 12 }),
  numAttentionHeads: integer({ min: 1, default: 12 }),
  numChannels: integer({ default: 3, oneOf: [3], why: 'images are RGB' }),
  imageSize: integer({ min: 1, default: 224 }),
  patchSize: integer({ min: 1, default: 16 }),
  hiddenAct: string({ default: 'gelu_pytorch_tanh', oneOf: ['gelu_pytorch_tanh'], why: 'the tower is built with the tanh GELU' }),
  layerNormEps: number({ min: 0, default: 1e-6 }),
  windowKernelSize: integers({ min: 1, default: [2, 2], oneOf: [[2, 2]], why: TWO_BY_TWO_WHY }),
};

const IMAGE_PROCESSOR_FIELDS = {
  doConvertRgb: fixedTrue('images are converted to RGB'),
  doRescale: fixedTrue('pixels are rescaled before they are normalised'),
  doNormalize: fixedTrue('pixels are normalised'),
  resample: integer({ default: 3, oneOf: [3], why: 'only bicubic resizing (PIL resample 3) is implemented' }),
  rescaleFactor: number({ min: 0, default: 1 / 255 }),
  imageMean: numbers({ default: [0.5, 0.5, 0.5] }),
  imageStd: numbers({ default: [0.5, 0.5, 0.5] }),
  sliceMode: boolean({ default: true }),
  maxSliceNums: integer({ min: 1, default: 9 }),
  scaleResolution: integer({ min: 1, default: 448 }),
  patchSize: integer({ min: 1, default: 14 }),
  downsampleMode: string({ default: '16x', oneOf: DOWNSAMPLE_MODES, why: DOWNSAMPLE_WHY }),
  useImageId: boolean({ default: true }),
};

const VIDEO_PROCESSOR_FIELDS = {
  ...IMAGE_PROCESSOR_FIELDS,
  doSampleFrames: boolean({ default: true }),
  maxNumFrames: integer({ min: 1, default: 128 }),
  stackFrames: integer({ min: 1, default: 1 }),
};

/** config.json (and processor_config.json beside it) of a MiniCPM-V 4.6 checkpoint, validated. */
export function parseMiniCPMV46Config({ files, file, config }: CheckpointConfig): MiniCPMV46Config {
  const top = fromDict(config, MINICPMV46_FIELDS, { file });
  const text = parseQwen35TextConfig(config['text_config'], { file, prefix: 'text_config' });
  const vision = parseVisionConfig(config['vision_config'], { file, prefix: 'vision_config' });
  if (top.insertLayerId >= vision.numHiddenLayers) {
    throw new UnsupportedModelError(
      `${file}: "insert_layer_id" is ${top.insertLayerId}, but the vision tower has layers 0..${vision.numHiddenLayers - 1}: ` +
        'the window-attention merger must run after one of them',
    );
  }
  const processor = readProcessorConfig(files, vision.patchSize);
  for (const [name, p] of [['image_processor', processor.image], ['video_processor', processor.video]] as const) {
    if (p.downsampleMode !== top.downsampleMode) {
      throw new CheckpointError(
        `${files.describe('processor_config.json')}: "${name}.downsample_mode" is "${p.downsampleMode}" but ${file} says ` +
          `"${top.downsampleMode}": the processor's image tokens would not match the model's`,
      );
    }
  }
  return {
    modelType: 'minicpmv4_6',
    text,
    vision,
    insertLayerId: top.insertLayerId,
    imageSize: top.imageSize,
    imageTokenId: top.imageTokenId,
    videoTokenId: top.videoTokenId,
    tieWordEmbeddings: top.tieWordEmbeddings,
    downsampleMode: top.downsampleMode as DownsampleMode,
    mergeKernelSize: pair(top.mergeKernelSize),
    mergerTimes: top.mergerTimes,
    processor,
  };
}

function parseQwen35TextConfig(raw: unknown, origin: Origin): Qwen35TextConfig {
  const t = fromDict(raw, TEXT_FIELDS, origin);
  const bad = (why: string) => new CheckpointError(`${origin.file}: "${origin.prefix}" ${why}`);
  const ropeOrigin = { ...origin, prefix: `${origin.prefix}.rope_parameters` };
  const ropeDict = asDict(asDict(raw, origin)['rope_parameters'] ?? {}, ropeOrigin);
  if (LAYER_TYPES.some((type) => Object.hasOwn(ropeDict, type))) {
    throw new UnsupportedModelError(`${origin.file}: "${ropeOrigin.prefix}" is given per layer type; only one set for all layers is supported`);
  }
  const rope = fromDict(ropeDict, ROPE_FIELDS, ropeOrigin);
  if (t.numAttentionHeads % t.numKeyValueHeads !== 0) {
    throw bad(`num_attention_heads ${t.numAttentionHeads} is not a multiple of num_key_value_heads ${t.numKeyValueHeads}`);
  }
  if (t.linearNumValueHeads % t.linearNumKeyHeads !== 0) {
    throw bad(`linear_num_value_heads ${t.linearNumValueHeads} is not a multiple of linear_num_key_heads ${t.linearNumKeyHeads}`);
  }
  const layerTypes = t.layerTypes ?? Array.from({ length: t.numHiddenLayers },
    (_, i) => ((i + 1) % t.fullAttentionInterval === 0 ? 'full_attention' : 'linear_attention'));
  if (layerTypes.length !== t.numHiddenLayers) {
    throw bad(`has ${layerTypes.length} layer_types for num_hidden_layers ${t.numHiddenLayers}`);
  }
  const unknown = layerTypes.find((type) => !LAYER_TYPES.includes(type));
  if (unknown !== undefined) {
    throw new UnsupportedModelError(`${origin.file}: "${origin.prefix}.layer_types" has "${unknown}"; supported: ${LAYER_TYPES.map((l) => `"${l}"`).join(', ')}`);
  }
  const ropeTheta = rope.ropeTheta ?? t.ropeTheta ?? DEFAULT_ROPE_THETA;
  const partialRotaryFactor = rope.partialRotaryFactor ?? t.partialRotaryFactor ?? DEFAULT_PARTIAL_ROTARY_FACTOR;
  const rotaryDim = Math.trunc(t.headDim * partialRotaryFactor);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0 || rotaryDim > t.headDim) {
    throw bad(`rotates int(head_dim ${t.headDim} · partial_rotary_factor ${partialRotaryFactor}) = ${rotaryDim} dims; RoPE needs an even number ≥ 2, at most head_dim`);
  }
  return {
    vocabSize: t.vocabSize, hiddenSize: t.hiddenSize, intermediateSize: t.intermediateSize, numHiddenLayers: t.numHiddenLayers,
    layerTypes: layerTypes as LayerType[], rmsNormEps: t.rmsNormEps, maxPositionEmbeddings: t.maxPositionEmbeddings,
    numAttentionHeads: t.numAttentionHeads, numKeyValueHeads: t.numKeyValueHeads, headDim: t.headDim,
    ropeTheta, partialRotaryFactor, rotaryDim, mropeSection: rope.mropeSection,
    linearConvKernelDim: t.linearConvKernelDim, linearNumKeyHeads: t.linearNumKeyHeads, linearKeyHeadDim: t.linearKeyHeadDim,
    linearNumValueHeads: t.linearNumValueHeads, linearValueHeadDim: t.linearValueHeadDim,
  };
}

function parseVisionConfig(raw: unknown, origin: Origin): MiniCPMV46VisionConfig {
  const v = fromDict(raw, VISION_FIELDS, origin);
  const where = `${origin.file}: "${origin.prefix}"`;
  if (v.hiddenSize % v.numAttentionHeads !== 0) {
    throw new CheckpointError(`${where}: hidden_size ${v.hiddenSize} is not a multiple of num_attention_heads ${v.numAttentionHeads}`);
  }
  const positionGrid = Math.floor(v.imageSize / v.patchSize);
  if (positionGrid < 1) throw new CheckpointError(`${where}: image_size ${v.imageSize} is smaller than patch_size ${v.patchSize}`);
  return {
    hiddenSize: v.hiddenSize, intermediateSize: v.intermediateSize, numHiddenLayers: v.numHiddenLayers,
    numAttentionHeads: v.numAttentionHeads, headDim: v.hiddenSize / v.numAttentionHeads, numChannels: v.numChannels,
    imageSize: v.imageSize, patchSize: v.patchSize, positionGrid, layerNormEps: v.layerNormEps, hiddenAct: 'gelu_pytorch_tanh',
    windowKernelSize: pair(v.windowKernelSize),
  };
}

/** The model folder's processor_config.json: the image and video processors, whose patch size must be the tower's. */
export function readProcessorConfig(files: ModelFiles, visionPatchSize: number): MiniCPMV46ProcessorConfig {
  const file = files.describe('processor_config.json');
  if (!files.has('processor_config.json')) {
    throw new CheckpointError(`${file} is missing: MiniCPM-V 4.6 reads its image and video processing settings from it (download it again)`);
  }
  const json = asDict(readJsonFile(files, 'processor_config.json'), { file });
  const image = fromDict(json['image_processor'], IMAGE_PROCESSOR_FIELDS, { file, prefix: 'image_processor' });
  const video = fromDict(json['video_processor'], VIDEO_PROCESSOR_FIELDS, { file, prefix: 'video_processor' });
  const settings = (p: typeof image, prefix: string): MiniCPMV46ImageProcessorConfig => {
    if (p.patchSize !== visionPatchSize) {
      throw new CheckpointError(`${file}: "${prefix}.patch_size" is ${p.patchSize}, but the vision tower's patch_size is ${visionPatchSize}`);
    }
    return {
      sliceMode: p.sliceMode, maxSliceNums: p.maxSliceNums, scaleResolution: p.scaleResolution, patchSize: p.patchSize,
      downsampleMode: p.downsampleMode as DownsampleMode, useImageId: p.useImageId, rescaleFactor: p.rescaleFactor,
      imageMean: perChannel(p.imageMean, `${prefix}.image_mean`, file), imageStd: perChannel(p.imageStd, `${prefix}.image_std`, file),
    };
  };
  return {
    image: settings(image, 'image_processor'),
    video: {
      ...settings(video, 'video_processor'),
      doSampleFrames: video.doSampleFrames, maxNumFrames: video.maxNumFrames, stackFrames: video.stackFrames,
    },
  };
}

/** One value per RGB channel (a single value applies to all three); a standard deviation must not be 0. */
function perChannel(values: number[], key: string, file: string): [number, number, number] {
  if (values.length !== 1 && values.length !== 3) {
    throw new CheckpointError(`${file}: "${key}" must have one value or one per RGB channel, got ${values.length}`);
  }
  if (key.endsWith('_std') && values.some((v) => v <= 0)) throw new CheckpointError(`${file}: "${key}" must be > 0, got [${values.join(', ')}]`);
  return values.length === 1 ? [values[0]!, values[0]!, values[0]!] : [values[0]!, values[1]!, values[2]!];
}

/** A [h, w] pair (the oneOf checks above already fixed its length). */
function pair(values: number[]): [number, number] {
  return [values[0]!, values[1]!];
}
