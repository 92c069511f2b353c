// VisionConfig: hyper-parameters of the timm VisionTransformer (SigLIP layout) that config.json's `vision_encoder`
// names. A checkpoint may spell them out in a `vision_config` object (the tiny fixtures do); otherwise they come from
// the small table below, checked against timm 0.9.10 `timm/models/vision_transformer.py`.

import { CheckpointError, UnsupportedModelError } from '../errors.js';
import {
  boolean, fromDict, integer, integers, keyPath, mustBeNull, number, optional, string, type Origin,
} from './fromDict.js';

export interface VisionConfig {
  /** The timm model name from `vision_encoder`, pretrained tag included (e.g. "vit_so400m_patch14_siglip_384.webli"). */
  timmModel: string;
  /** Only fixes the stored position-embedding grid: posEmbedGrid = img_size // patch_size. */
  imgSize: number;
  patchSize: number;
  inChans: number;
  embedDim: number;
  /** Blocks timm builds. */
  depth: number;
  /** Blocks in the checkpoint and run: depth − 1 when drop_vision_last_layer. */
  usedDepth: number;
  numHeads: number;
  headDim: number;
  /** int(embed_dim · mlp_ratio), as timm computes it. */
  mlpHiddenDim: number;
  qkvBias: boolean;
  /** LayerNorm epsilon of norm1, norm2 and the final norm. */
  normEps: number;
  /** `nn.GELU()`: the exact erf GELU, not the tanh approximation. */
  activation: 'gelu';
  /** [rows, cols] of the stored `vpm.pos_embed` table (no class-token row). */
  posEmbedGrid: [number, number];
}

interface VitPreset {
  imgSize: number;
  patchSize: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
}

/**
 * timm model names (without the ".tag") whose sizes we know. timm 0.9.10 `vit_so400m_patch14_siglip_384`:
 * patch 14, embed 1152, depth 27, heads 16, mlp_ratio 3.7362, class_token False, global_pool 'map'; img_size 384
 * comes from the ".webli" pretrained cfg's input_size (fixed_input_size). Everything else is the VisionTransformer
 * default: qkv_bias True, LayerNorm eps 1e-6, nn.GELU, no LayerScale, no pre-norm.
 */
const TIMM_VIT_PRESETS: Record<string, VitPreset> = {
  vit_so400m_patch14_siglip_384: { imgSize: 384, patchSize: 14, embedDim: 1152, depth: 27, numHeads: 16, mlpRatio: 3.7362 },
};

export const KNOWN_VISION_ENCODERS = Object.keys(TIMM_VIT_PRESETS);

const fixedFlag = (value: boolean, why: string) => boolean({ default: value, oneOf: [value], why });

/** Keys of a `vision_config` object; the flags must have the values of the SigLIP layout we implement. */
const VISION_CONFIG_FIELDS = {
  imgSize: integer({ min: 1 }),
  patchSize: integer({ min: 1 }),
  inChans: integer({ min: 1, default: 3 }),
  embedDim: integer({ min: 1 }),
  depth: integer({ min: 1 }),
  numHeads: integer({ min: 1 }),
  mlpHiddenDim: optional(integer({ min: 1 })),
  mlpRatio: optional(number({ min: 0 })),
  qkvBias: boolean({ default: true }),
  normEps: number({ min: 0, default: 1e-6 }),
  actLayer: string({ default: 'gelu' }),
  normLayer: string({ default: 'layernorm' }),
  posEmbedGrid: optional(integers({ min: 1 })),
  headDim: optional(integer({ min: 1 })),
  depthUsed: optional(integer({ min: 0 })),
  classToken: fixedFlag(false, 'the tower is built without a class token'),
  regTokens: integer({ default: 0, oneOf: [0], why: 'register tokens are not implemented' }),
  numPrefixTokens: integer({ default: 0, oneOf: [0], why: 'prefix tokens are not implemented' }),
  qkNorm: fixedFlag(false, 'q/k normalisation is not implemented'),
  preNorm: fixedFlag(false, 'a pre-norm before the blocks is not implemented'),
  fcNorm: fixedFlag(false, 'fc_norm is not implemented'),
  finalNorm: fixedFlag(true, 'the final norm is always applied'),
  initValues: mustBeNull('LayerScale (init_values) is not implemented'),
};

/**
 * The vision tower of a MiniCPM-V config.json: from `vision_config` when present, else from the timm name in
 * `vision_encoder`. `dropLastLayer` is config.json's `drop_vision_last_layer`.
 */
export function parseVisionConfig(config: Record<string, unknown>, timmModel: string, dropLastLayer: boolean, file: string): VisionConfig {
  const explicit = config['vision_config'];
  if (explicit !== undefined && explicit !== null) {
    return fromVisionConfigDict(explicit, timmModel, dropLastLayer, { file, prefix: 'vision_config' });
  }
  const preset = TIMM_VIT_PRESETS[timmModel.split('.')[0]!];
  if (!preset) {
    throw new UnsupportedModelError(
      `${file}: unknown vision_encoder "${timmModel}" and no "vision_config" describing it; ` +
      `supported timm models: ${KNOWN_VISION_ENCODERS.join(', ')} (with or without a ".tag")`,
    );
  }
  const { mlpRatio, ...sizes } = preset;
  return finish({
    ...sizes, timmModel, inChans: 3, qkvBias: true, normEps: 1e-6,
    mlpHiddenDim: Math.trunc(preset.embedDim * mlpRatio),
    usedDepth: preset.depth - (dropLastLayer ? 1 : 0),
  }, { file });
}

function fromVisionConfigDict(raw: unknown, timmModel: string, dropLastLayer: boolean, origin: Origin): VisionConfig {
  const v = fromDict(raw, VISION_CONFIG_FIELDS, origin);
  const at = (key: string) => `${origin.file}: "${keyPath(origin, key)}"`;
  checkVitLayers(v, at);
  const mlpHiddenDim = vitMlpHidden(v, at, origin);
  const usedDepth = v.depth - (dropLastLayer ? 1 : 0);
  if (v.depthUsed !== undefined && v.depthUsed !== usedDepth) {
    throw new CheckpointError(`${at('depth_used')} is ${v.depthUsed}, but depth ${v.depth} with drop_vision_last_layer=${dropLastLayer} gives ${usedDepth}`);
  }
  const config = finish({
    timmModel, imgSize: v.imgSize, patchSize: v.patchSize, inChans: v.inChans, embedDim: v.embedDim, depth: v.depth,
    usedDepth, numHeads: v.numHeads, mlpHiddenDim, qkvBias: v.qkvBias, normEps: v.normEps,
  }, origin);
  checkStatedGeometry(v, config, at);
  return config;
}

type VisionSizes = Omit<VisionConfig, 'headDim' | 'activation' | 'posEmbedGrid'>;

/** Derives head size and position grid, and checks that the sizes fit together. */
function finish(sizes: VisionSizes, origin: Origin): VisionConfig {
  const where = origin.prefix ? `${origin.file} ("${origin.prefix}")` : `${origin.file} (vision_encoder "${sizes.timmModel}")`;
  if (sizes.usedDepth < 1) throw new CheckpointError(`${where}: no vision block is left to run (depth ${sizes.depth})`);
  return { ...sizes, ...vitGeometry(sizes, where), activation: 'gelu' };
}

// Checks and derived sizes that every timm ViT config shares (SigLIP here, EVA02 in models/omnilmm/config.ts).

/** Refuses activations and norms other than the exact (erf) GELU and LayerNorm. */
export function checkVitLayers(v: { actLayer: string; normLayer: string }, at: (key: string) => string): void {
  const act = v.actLayer.toLowerCase();
  if (!act.includes('gelu') || act.includes('tanh')) {
    throw new UnsupportedModelError(`${at('act_layer')} is "${v.actLayer}"; only the exact (erf) GELU is supported`);
  }
  if (!/layer_?norm/i.test(v.normLayer)) {
    throw new UnsupportedModelError(`${at('norm_layer')} is "${v.normLayer}"; only LayerNorm is supported`);
  }
}

/** The MLP width: `mlp_hidden_dim`, or timm's int(embed_dim · mlp_ratio); both must agree when both are given. */
export function vitMlpHidden(
  v: { embedDim: number; mlpRatio?: number; mlpHiddenDim?: number },
  at: (key: string) => string,
  origin: Origin,
): number {
  let mlpHiddenDim = v.mlpHiddenDim;
  if (v.mlpRatio !== undefined) {
    const fromRatio = Math.trunc(v.embedDim * v.mlpRatio);
    if (mlpHiddenDim !== undefined && mlpHiddenDim !== fromRatio) {
      throw new CheckpointError(`${at('mlp_hidden_dim')} is ${mlpHiddenDim}, but int(embed_dim · mlp_ratio) = ${fromRatio}`);
    }
    mlpHiddenDim = fromRatio;
  }
  if (mlpHiddenDim === undefined) throw new CheckpointError(`${origin.file}: "${origin.prefix}" needs "mlp_hidden_dim" or "mlp_ratio"`);
  return mlpHiddenDim;
}

/** Head size and the stored position grid (img_size // patch_size, square), checked to fit. */
export function vitGeometry(
  sizes: { embedDim: number; numHeads: number; imgSize: number; patchSize: number },
  where: string,
): { headDim: number; posEmbedGrid: [number, number] } {
  if (sizes.embedDim % sizes.numHeads !== 0) {
    throw new CheckpointError(`${where}: embed_dim ${sizes.embedDim} is not a multiple of num_heads ${sizes.numHeads}`);
  }
  const grid = Math.floor(sizes.imgSize / sizes.patchSize);
  if (grid < 1) throw new CheckpointError(`${where}: img_size ${sizes.imgSize} is smaller than patch_size ${sizes.patchSize}`);
  return { headDim: sizes.embedDim / sizes.numHeads, posEmbedGrid: [grid, grid] };
}

/** A config may also state head_dim and pos_embed_grid: they must equal what the sizes give. */
export function checkStatedGeometry(
  v: { headDim?: number; posEmbedGrid?: number[] },
  derived: { headDim: number; posEmbedGrid: [number, number] },
  at: (key: string) => string,
): void {
  if (v.headDim !== undefined && v.headDim !== derived.headDim) {
    throw new CheckpointError(`${at('head_dim')} is ${v.headDim}, but embed_dim / num_heads = ${derived.headDim}`);
  }
  if (v.posEmbedGrid !== undefined && v.posEmbedGrid.join('x') !== derived.posEmbedGrid.join('x')) {
    throw new CheckpointError(
      `${at('pos_embed_grid')} is [${v.posEmbedGrid.join(', ')}], but img_size // patch_size gives [${derived.posEmbedGrid.join(', ')}]`,
    );
  }
}

