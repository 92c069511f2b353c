// OmniLMM-12B (model_type "omnilmm", official `OmniLMMConfig(MistralConfig)`): config.json → typed configs per part.
// The language model is Mistral (Zephyr-7B-β); the vision tower is timm's `eva02_enormous_patch14_clip_224`, which
// the official code builds by that hard-coded name (config.json names it in mm_vision_tower but its value is never
// read); a `vision_config` object may spell out other sizes of the same timm code path (the tiny fixture does).

import { CheckpointError, UnsupportedModelError } from '../../errors.js';
import { checkStatedGeometry, checkVitLayers, vitGeometry, vitMlpHidden } from '../../config/vision.js';
import {
  boolean, fromDict, integer, integers, keyPath, number, optional, string, type FromSchema, type Origin,
} from '../../config/fromDict.js';

/** Mistral's hyper-parameters (transformers 4.36 `MistralConfig`; defaults are its defaults). */
export interface MistralTextConfig {
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  /** hidden_size / num_attention_heads. */
  headDim: number;
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Keys a query sees (itself included); null = no window. */
  slidingWindow: number | null;
  maxPositionEmbeddings: number;
  vocabSize: number;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number | undefined;
}

/** The timm `Eva` tower as `eva02_enormous_patch14_clip_224` configures it (post-norm blocks, class token, no RoPE). */
export interface EvaVisionConfig {
  timmEntrypoint: string;
  /** Only fixes the stored position-embedding grid: img_size // patch_size. */
  imgSize: number;
  patchSize: number;
  inChans: number;
  embedDim: number;
  /** Blocks timm builds. */
  depth: number;
  /** Blocks in the checkpoint and run: the official code replaces the last one by an Identity. */
  usedDepth: number;
  numHeads: number;
  headDim: number;
  /** int(embed_dim · mlp_ratio), as timm computes it. */
  mlpHiddenDim: number;
  /** LayerNorm epsilon of norm1, norm2 and the final norm. */
  normEps: number;
  /** [rows, cols] of the stored `pos_embed` grid (its class-token row comes first, outside the grid). */
  posEmbedGrid: [number, number];
}

/** The resampler (`omnilmm/model/resampler.py` `Resampler`, not adaptive): num_query tokens per image. */
export interface OmniLMMResamplerConfig {
  queryNum: number;
  /** sqrt(num_query): the grid of the stored `resampler.pos_embed`. */
  gridSize: number;
  /** = hidden_size. */
  embedDim: number;
  /** hidden_size // 128 (`create_vision_module`). */
  numHeads: number;
  /** = the vision tower's embed_dim. */
  kvDim: number;
  normEps: number;
}

export interface OmniLMMConfig {
  modelType: 'omnilmm';
  text: MistralTextConfig;
  vision: EvaVisionConfig;
  resampler: OmniLMMResamplerConfig;
  /** Every image is squashed to imageSize × imageSize (`build_transform(is_train=False)`). */
  imageSize: number;
}

const TEXT_FIELDS = {
  hiddenSize: integer({ min: 1, default: 4096 }),
  numHiddenLayers: integer({ min: 1, default: 32 }),
  numAttentionHeads: integer({ min: 1, default: 32 }),
  numKeyValueHeads: integer({ min: 1, default: 8 }),
  intermediateSize: integer({ min: 1, default: 14336 }),
  rmsNormEps: number({ min: 0, default: 1e-6 }),
  ropeTheta: number({ min: 0, default: 10000 }),
  maxPositionEmbeddings: integer({ min: 1, default: 4096 * 32 }),
  vocabSize: integer({ min: 1, default: 32000 }),
  hiddenAct: string({ default: 'silu', oneOf: ['silu'], why: 'the MLP is built as down(silu(gate(x)) * up(x))' }),
  tieWordEmbeddings: boolean({ default: false, oneOf: [false], why: 'OmniLMM keeps a separate lm_head' }),
  bosTokenId: integer({ min: 0, default: 1 }),
  eosTokenId: integer({ min: 0, default: 2 }),
  padTokenId: optional(integer({ min: 0 })),
};

const OMNILMM_FIELDS = {
  numQuery: integer({ min: 1 }),
  imageSize: integer({ min: 1 }),
  /** `hasattr(config, "mm_vision_tower")` decides whether the model has a vision tower at all. */
  mmVisionTower: string(),
  mmUseImStartEnd: boolean({ default: false, oneOf: [true], why: 'init_omni_lmm asserts it (<im_start>/<im_end> frame the image)' }),
};

/** `omnilmm/model/resampler.py`: `partial(nn.LayerNorm, eps=1e-6)`; timm's Eva norms are also eps 1e-6. */
const NORM_EPS = 1e-6;
/** `create_vision_module`: num_heads = embed_dim // 128. */
const RESAMPLER_HEAD_WIDTH = 128;
/** The one timm code path the official code builds. */
export const EVA_ENTRYPOINT = 'eva02_enormous_patch14_clip_224';

/**
 * timm 0.9.10 `eva02_enormous_patch14_clip_224`: img_size 224, patch 14, embed 1792, depth 64, heads 16,
 * mlp_ratio 15360/1792, use_post_norm True, global_pool 'token'; every other `Eva` argument is its default
 * (class token, qkv_bias, no RoPE, no SwiGLU, LayerNorm eps 1e-6, GELU).
 */
const EVA02_ENORMOUS = { imgSize: 224, patchSize: 14, inChans: 3, embedDim: 1792, depth: 64, numHeads: 16, mlpHiddenDim: 15360 };

const fixed = (value: boolean, why: string) => boolean({ default: value, oneOf: [value], why });

/** Keys of a `vision_config` object; the flags must describe the Eva code path we implement. */
const VISION_CONFIG_FIELDS = {
  timmEntrypoint: string({ default: EVA_ENTRYPOINT, oneOf: [EVA_ENTRYPOINT], why: 'the official code builds only this timm model' }),
  imgSize: integer({ min: 1 }),
  patchSize: integer({ min: 1 }),
  inChans: integer({ min: 1, default: 3, oneOf: [3], why: 'images are RGB' }),
  embedDim: integer({ min: 1 }),
  depth: integer({ min: 2 }),
  numHeads: integer({ min: 1 }),
  mlpRatio: optional(number({ min: 0 })),
  mlpHiddenDim: optional(integer({ min: 1 })),
  depthUsed: optional(integer({ min: 1 })),
  headDim: optional(integer({ min: 1 })),
  posEmbedGrid: optional(integers({ min: 1 })),
  normEps: optional(number({ min: 0 })),
  actLayer: string({ default: 'gelu' }),
  normLayer: string({ default: 'layernorm' }),
  classToken: fixed(true, 'the tower is built with a class token'),
  numPrefixTokens: integer({ default: 1, oneOf: [1], why: 'the class token is the only prefix token' }),
  useAbsPosEmb: fixed(true, 'the tower adds an absolute position table'),
  useRotPosEmb: fixed(false, 'rotary position embeddings are not implemented'),
  usePostNorm: fixed(true, 'only the post-norm block (x + norm(attn(x))) is implemented'),
  qkvFused: fixed(true, 'only the fused qkv projection is implemented'),
  qkvBias: fixed(true, 'the fused qkv has q_bias and v_bias'),
  swigluMlp: fixed(false, 'the SwiGLU MLP is not implemented'),
  scaleMlp: fixed(false, 'the scaled MLP is not implemented'),
  scaleAttnInner: fixed(false, 'the inner attention norm is not implemented'),
  fcNorm: fixed(false, 'fc_norm is not implemented'),
  patchEmbedBias: fixed(true, 'the patch embedding has a bias'),
};

export function parseOmniLMMConfig(config: Record<string, unknown>, file: string): OmniLMMConfig {
  const origin = { file };
  const o = fromDict(config, OMNILMM_FIELDS, origin);
  const text = parseMistralTextConfig(config, origin);
  const explicit = config['vision_config'];
  const vision = explicit === undefined || explicit === null
    ? finishVision({ timmEntrypoint: EVA_ENTRYPOINT, ...EVA02_ENORMOUS, normEps: NORM_EPS }, origin)
    : parseVisionConfig(explicit, { file, prefix: 'vision_config' });

  const gridSize = Math.round(Math.sqrt(o.numQuery));
  if (gridSize * gridSize !== o.numQuery) {
    throw new CheckpointError(`${file}: "num_query" ${o.numQuery} is not a square number (the resampler's queries form a square grid)`);
  }
  const numHeads = Math.floor(text.hiddenSize / RESAMPLER_HEAD_WIDTH);
  if (numHeads < 1 || text.hiddenSize % numHeads !== 0) {
    throw new UnsupportedModelError(
      `${file}: hidden_size ${text.hiddenSize} does not give a usable resampler head count (hidden_size // ${RESAMPLER_HEAD_WIDTH} = ${numHeads})`,
    );
  }
  return {
    modelType: 'omnilmm',
    text,
    vision,
    resampler: { queryNum: o.numQuery, gridSize, embedDim: text.hiddenSize, numHeads, kvDim: vision.embedDim, normEps: NORM_EPS },
    imageSize: o.imageSize,
  };
}

function parseMistralTextConfig(config: Record<string, unknown>, origin: Origin): MistralTextConfig {
  const t: FromSchema<typeof TEXT_FIELDS> = fromDict(config, TEXT_FIELDS, origin);
  const bad = (why: string) => new CheckpointError(`${origin.file}: ${why}`);
  if (t.hiddenSize % t.numAttentionHeads !== 0) {
    throw bad(`hidden_size ${t.hiddenSize} is not a multiple of num_attention_heads ${t.numAttentionHeads}`);
  }
  if (t.numAttentionHeads % t.numKeyValueHeads !== 0) {
    throw bad(`num_attention_heads ${t.numAttentionHeads} is not a multiple of num_key_value_heads ${t.numKeyValueHeads}`);
  }
  const headDim = t.hiddenSize / t.numAttentionHeads;
  if (headDim % 2 !== 0) throw bad(`the attention head size ${headDim} must be even for rotary embeddings`);
  return {
    hiddenSize: t.hiddenSize, numHiddenLayers: t.numHiddenLayers, numAttentionHeads: t.numAttentionHeads,
    numKeyValueHeads: t.numKeyValueHeads, headDim, intermediateSize: t.intermediateSize, rmsNormEps: t.rmsNormEps,
    ropeTheta: t.ropeTheta, slidingWindow: readSlidingWindow(config, origin), maxPositionEmbeddings: t.maxPositionEmbeddings,
    vocabSize: t.vocabSize, bosTokenId: t.bosTokenId, eosTokenId: t.eosTokenId, padTokenId: t.padTokenId,
  };
}

/** MistralConfig: absent → 4096; an explicit null turns the window off. */
function readSlidingWindow(config: Record<string, unknown>, origin: Origin): number | null {
  if (!Object.hasOwn(config, 'sliding_window')) return 4096;
  const value = config['sliding_window'];
  if (value === null) return null;
  if (!Number.isSafeInteger(value) || (value as number) < 1) {
    throw new CheckpointError(`${origin.file}: "sliding_window" must be an integer ≥ 1 or null, got ${JSON.stringify(value)}`);
  }
  return value as number;
}

function parseVisionConfig(raw: unknown, origin: Origin): EvaVisionConfig {
  const v = fromDict(raw, VISION_CONFIG_FIELDS, origin);
  const at = (key: string) => `${origin.file}: "${keyPath(origin, key)}"`;
  checkVitLayers(v, at);
  const epsInName = /eps\s*=\s*([0-9.eE+-]+)/.exec(v.normLayer);
  const normEps = v.normEps ?? (epsInName ? Number(epsInName[1]) : NORM_EPS);
  if (!Number.isFinite(normEps) || normEps < 0) throw new CheckpointError(`${at('norm_layer')} names an invalid eps: "${v.normLayer}"`);

  const mlpHiddenDim = vitMlpHidden(v, at, origin);

  const config = finishVision({
    timmEntrypoint: v.timmEntrypoint, imgSize: v.imgSize, patchSize: v.patchSize, inChans: v.inChans,
    embedDim: v.embedDim, depth: v.depth, numHeads: v.numHeads, mlpHiddenDim, normEps,
  }, origin);
  if (v.depthUsed !== undefined && v.depthUsed !== config.usedDepth) {
    throw new CheckpointError(`${at('depth_used')} is ${v.depthUsed}, but the official code runs depth − 1 = ${config.usedDepth} blocks`);
  }
  checkStatedGeometry(v, config, at);
  return config;
}

type EvaSizes = Omit<EvaVisionConfig, 'headDim' | 'usedDepth' | 'posEmbedGrid'>;

/** Derives head size, blocks run and position grid, and checks that the sizes fit together. */
function finishVision(sizes: EvaSizes, origin: Origin): EvaVisionConfig {
  const where = origin.prefix ? `${origin.file} ("${origin.prefix}")` : `${origin.file} (timm ${sizes.timmEntrypoint})`;
  return { ...sizes, usedDepth: sizes.depth - 1, ...vitGeometry(sizes, where) };
}
