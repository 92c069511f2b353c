// MiniCPM-V (model_type "minicpmv", versions 1.0 and 2.0): config.json → typed configs per part, and which later
// checkpoint of the same model_type a config.json is. 1.0 (openbmb/MiniCPM-V) has no slice_mode key: every image is
// squashed to image_size and the resampler interpolates its stored sin-cos table; 2.0 (openbmb/MiniCPM-V-2) slices
// images and recomputes the table per slice.

import { CheckpointError, UnsupportedModelError } from '../../errors.js';
import { boolean, fromDict, integer, optional, string } from '../../config/fromDict.js';
import { parseTextConfig, type TextConfig } from '../../config/text.js';
import { parseVisionConfig, type VisionConfig } from '../../config/vision.js';

/** The perceiver resampler (resampler.py `Resampler`) that turns one slice's features into query_num tokens. */
export interface ResamplerConfig {
  /** Learned queries = image tokens per slice; a square number. */
  queryNum: number;
  /** sqrt(query_num): the grid of the stored `resampler.pos_embed`. */
  gridSize: number;
  /** = the LLM's hidden_size. */
  embedDim: number;
  /** hidden_size // 128 (MiniCPMV.init_resampler). */
  numHeads: number;
  /** = the vision tower's embed_dim (input of kv_proj). */
  kvDim: number;
  /** 2.0: key position embeddings are the 2-D sin-cos table at each slice's grid; 1.0: the stored table interpolated. */
  adaptive: boolean;
  /** Epsilon of ln_q, ln_kv and ln_post. */
  normEps: number;
}

/** How an image becomes slices (modeling_minicpmv.py `slice_image`); with sliceMode false it is squashed to imageSize. */
export interface SliceConfig {
  sliceMode: boolean;
  /** 1.0: every image is resized to imageSize × imageSize. */
  imageSize: number;
  scaleResolution: number;
  patchSize: number;
  maxSliceNums: number;
}

export interface MiniCPMVConfig {
  modelType: 'minicpmv';
  /** 1 = MiniCPM-V 1.0 (config.json without slice_mode), 2 = MiniCPM-V 2.0. */
  version: 1 | 2;
  /** Keep blocks[:-1] of the vision tower (already reflected in vision.usedDepth). */
  dropVisionLastLayer: boolean;
  text: TextConfig;
  vision: VisionConfig;
  resampler: ResamplerConfig;
  slice: SliceConfig;
}

/** The model's name in messages: "MiniCPM-V 1.0" or "MiniCPM-V 2.0". */
export function modelName(config: MiniCPMVConfig): string {
  return `MiniCPM-V ${config.version}.0`;
}

// Defaults are MiniCPMVConfig's (configuration_minicpm.py); only slice_mode's absence is meaningful (→ 1.0).
const MINICPMV_FIELDS = {
  visionEncoder: string(),
  queryNum: integer({ min: 1 }),
  dropVisionLastLayer: boolean({ default: true }),
  imageSize: integer({ min: 1, default: 448 }),
  sliceMode: optional(boolean()),
  scaleResolution: integer({ min: 1, default: 448 }),
  patchSize: integer({ min: 1, default: 14 }),
  maxSliceNums: integer({ min: 1, default: 9 }),
};

/** The resampler LayerNorms are `partial(nn.LayerNorm, eps=1e-6)` in resampler.py. */
const RESAMPLER_NORM_EPS = 1e-6;
/** MiniCPMV.init_resampler: num_heads = embed_dim // 128. */
const RESAMPLER_HEAD_WIDTH = 128;

/**
 * Later checkpoints that share model_type "minicpmv", by config.json's `version` (read as vLLM's
 * `get_version_by_config` reads it: 2.5, 2.6, 4.0, 4.5). 1.0 and 2.0 carry no version.
 */
const LATER_VERSIONS: Record<string, string> = {
  '2.5': 'MiniCPM-Llama3-V 2.5',
  '2.6': 'MiniCPM-V 2.6',
  '4.0': 'MiniCPM-V 4.0',
  '4.5': 'MiniCPM-V 4.5',
};
const SUPPORTED_VERSIONS = ['1.0', '2.0'];

/** config.json's `version` as text ("2.6", "4.0"; JSON 4.0 reads as the number 4), or null when absent. */
export function versionText(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number') return Number.isInteger(value) ? value.toFixed(1) : String(value);
  if (typeof value === 'string' && /^\d+$/.test(value.trim())) return `${value.trim()}.0`;
  return typeof value === 'string' ? value.trim() : JSON.stringify(value);
}

/**
 * The name of a model_type "minicpmv" checkpoint that is not MiniCPM-V 1.0 or 2.0, or null for those two:
 * MiniCPM-o (architectures ["MiniCPMO"]), a later `version`, or MiniCPM-Llama3-V 2.5 as first published, without
 * a version: its config names no timm `vision_encoder` and has no MiniCPM `scale_emb` (its LLM is Llama 3), both of
 * which every 1.0/2.0 config has.
 */
export function unsupportedMiniCPMV(config: Record<string, unknown>): string | null {
  const version = versionText(config['version']);
  const architectures = config['architectures'];
  if (Array.isArray(architectures) && architectures.includes('MiniCPMO')) return version ? `MiniCPM-o ${version}` : 'MiniCPM-o';
  if (version === null) {
    const minicpmvKeys = Object.hasOwn(config, 'vision_encoder') || Object.hasOwn(config, 'scale_emb');
    return minicpmvKeys ? null : 'MiniCPM-Llama3-V 2.5 (or a later MiniCPM-V: config.json has no "version")';
  }
  if (SUPPORTED_VERSIONS.includes(version)) return null;
  return LATER_VERSIONS[version] ?? `MiniCPM-V ${version}`;
}

export function parseMiniCPMVConfig(config: Record<string, unknown>, file: string): MiniCPMVConfig {
  const origin = { file };
  const m = fromDict(config, MINICPMV_FIELDS, origin);
  const text = parseTextConfig(config, origin);
  const vision = parseVisionConfig(config, m.visionEncoder, m.dropVisionLastLayer, file);
  const version = m.sliceMode === undefined ? 1 : 2;

  const gridSize = Math.round(Math.sqrt(m.queryNum));
  if (gridSize * gridSize !== m.queryNum) {
    throw new CheckpointError(`${file}: "query_num" ${m.queryNum} is not a square number (the resampler's queries form a square grid)`);
  }
  const numHeads = Math.floor(text.hiddenSize / RESAMPLER_HEAD_WIDTH);
  if (numHeads < 1 || text.hiddenSize % numHeads !== 0) {
    throw new UnsupportedModelError(
      `${file}: hidden_size ${text.hiddenSize} does not give a usable resampler head count (hidden_size // ${RESAMPLER_HEAD_WIDTH} = ${numHeads})`,
    );
  }
  return {
    modelType: 'minicpmv',
    version,
    dropVisionLastLayer: m.dropVisionLastLayer,
    text,
    vision,
    resampler: {
      queryNum: m.queryNum, gridSize, embedDim: text.hiddenSize, numHeads, kvDim: vision.embedDim,
      adaptive: version === 2, normEps: RESAMPLER_NORM_EPS,
    },
    slice: {
      sliceMode: m.sliceMode ?? false, imageSize: m.imageSize, scaleResolution: m.scaleResolution,
      patchSize: m.patchSize, maxSliceNums: m.maxSliceNums,
    },
  };
}
