// config.json → typed configs: the tiny fixture against its README (§2.1, §2.2), the real MiniCPM-V 2.0 sizes implied
// by the timm name, MiniCPM-V 1.0 (no slice_mode), and refusals with messages that name the file and the key.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { folderFiles } from '../src/checkpoint/folder-files.js';
import { boolean, fromDict, integer, integers, numbers, optional, string, strings } from '../src/config/fromDict.js';
import { loadModelConfig, SUPPORTED_MODEL_TYPES, type ConfigOf, type ModelConfig } from '../src/models/registry.js';
import { CheckpointError, FileNotFoundError, UnsupportedModelError } from '../src/errors.js';
import { parseMiniCPMV46Config, type MiniCPMV46Config } from '../src/models/minicpmv46/config.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';

/** Narrows a loaded config to MiniCPM-V (the tests below use MiniCPM-V checkpoints). */
function minicpmv(config: ModelConfig): ConfigOf<'minicpmv'> {
  assert.equal(config.modelType, 'minicpmv');
  return config as ConfigOf<'minicpmv'>;
}

const TINY_DIR = fixturePath('minicpmv2-tiny', 'model');
const tinyConfig = () => readFixtureJson<Record<string, unknown>>('minicpmv2-tiny', 'model', 'config.json');

const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A model folder holding just these JSON files (strings are written verbatim). */
function modelDir(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'omnilmm-config-'));
  tempDirs.push(dir);
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

/** The tiny config with some keys replaced (undefined deletes a key). */
function variant(changes: Record<string, unknown>, base = tinyConfig()): Record<string, unknown> {
  const config = { ...base };
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete config[key];
    else config[key] = value;
  }
  return config;
}

function variantVision(changes: Record<string, unknown>): Record<string, unknown> {
  return variant({ vision_config: variant(changes, tinyConfig()['vision_config'] as Record<string, unknown>) });
}

/** Asserts that loading `config` throws `type` with a message matching `pattern` and naming config.json's path. */
function assertRefused(config: unknown, type: typeof CheckpointError | typeof UnsupportedModelError, pattern: RegExp): void {
  const dir = modelDir({ 'config.json': config });
  assert.throws(() => loadModelConfig(dir), (err: Error) => {
    assert.ok(err instanceof type, `${err.name}: ${err.message}`);
    assert.match(err.message, pattern);
    assert.ok(err.message.includes(join(dir, 'config.json')), `names the file: ${err.message}`);
    return true;
  });
}

describe('MiniCPM-V configs', () => {
  it('parses the tiny fixture to the README values (§2.1, §2.2)', () => {
    const config = loadModelConfig(TINY_DIR);
    assert.equal(config.modelType, 'minicpmv');
    assert.equal(config.version, 2);
    assert.equal(config.dir, TINY_DIR);
    assert.equal(config.dropVisionLastLayer, true);
    assert.deepEqual(config.text, {
      hiddenSize: 256, numHiddenLayers: 3, numAttentionHeads: 8, numKeyValueHeads: 8, headDim: 32, intermediateSize: 512,
      rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null, maxPositionEmbeddings: 4096, vocabSize: 4000, scaleEmb: 12,
      dimModelBase: 32, scaleDepth: 1.4, tieWordEmbeddings: false, attentionBias: false, hiddenAct: 'silu',
      bosTokenId: 1, eosTokenId: 2,
    });
    assert.deepEqual(config.vision, {
      timmModel: 'vit_minicpmv2_tiny_patch14_siglip_98', imgSize: 98, posEmbedGrid: [7, 7], patchSize: 14, inChans: 3,
      embedDim: 96, depth: 4, usedDepth: 3, numHeads: 4, headDim: 24, mlpHiddenDim: 358, qkvBias: true, normEps: 1e-6,
      activation: 'gelu',
    });
    assert.deepEqual(config.resampler, { queryNum: 16, gridSize: 4, embedDim: 256, numHeads: 2, kvDim: 96, adaptive: true, normEps: 1e-6 });
    assert.deepEqual(config.slice, { sliceMode: true, imageSize: 448, scaleResolution: 448, patchSize: 14, maxSliceNums: 9 });
    assert.deepEqual(config.generation, { bosTokenId: 1, eosTokenIds: [2], padTokenId: undefined, doSample: undefined,
      temperature: undefined, topK: undefined, topP: undefined, repetitionPenalty: undefined, numBeams: undefined, maxNewTokens: undefined });
  });

  it('derives the real MiniCPM-V 2.0 tower from the timm name vit_so400m_patch14_siglip_384 (timm 0.9.10)', () => {
    // openbmb/MiniCPM-V-2 config.json values (README §2.1 "real" column); no vision_config.
    const real = variant({
      vision_config: undefined, vocab_size: 122753, hidden_size: 2304, num_hidden_layers: 40, num_attention_heads: 36,
      num_key_value_heads: 36, intermediate_size: 5760, dim_model_base: 256, query_num: 64,
    });
    for (const name of ['vit_so400m_patch14_siglip_384.webli', 'vit_so400m_patch14_siglip_384']) {
      const config = minicpmv(loadModelConfig(modelDir({ 'config.json': { ...real, vision_encoder: name } })));
      assert.deepEqual(config.vision, {
        timmModel: name, imgSize: 384, posEmbedGrid: [27, 27], patchSize: 14, inChans: 3, embedDim: 1152, depth: 27,
        usedDepth: 26, numHeads: 16, headDim: 72, mlpHiddenDim: 4304, qkvBias: true, normEps: 1e-6, activation: 'gelu',
      });
      assert.deepEqual(config.resampler, { queryNum: 64, gridSize: 8, embedDim: 2304, numHeads: 18, kvDim: 1152, adaptive: true, normEps: 1e-6 });
      assert.equal(config.text.headDim, 64);
      assert.equal(config.generation, null);
    }
  });

  it('reads a MiniCPM-V 1.0 config (no slice keys) as version 1 without slicing', () => {
    const v1 = variant({ slice_mode: undefined, max_slice_nums: undefined, scale_resolution: undefined, patch_size: undefined, mm_use_im_start_end: undefined });
    const config = minicpmv(loadModelConfig(modelDir({ 'config.json': v1 })));
    assert.equal(config.version, 1);
    assert.equal(config.slice.sliceMode, false);
    assert.equal(config.slice.imageSize, 448);
    assert.equal(config.resampler.adaptive, false);
  });

  it('accepts the descriptive act_layer / norm_layer spellings of the 1.0 fixture and a null num_key_value_heads', () => {
    const config = minicpmv(loadModelConfig(modelDir({
      'config.json': variant({
        num_key_value_heads: null,
        vision_config: variant({ act_layer: 'torch.nn.GELU() (exact erf)', norm_layer: 'torch.nn.LayerNorm, eps=1e-6', norm_eps: undefined, head_dim: 24 },
          tinyConfig()['vision_config'] as Record<string, unknown>),
      }),
    })));
    assert.equal(config.text.numKeyValueHeads, 8);
    assert.equal(config.vision.activation, 'gelu');
    assert.equal(config.vision.normEps, 1e-6);
  });

  it('refuses missing folders, missing or broken config.json, and unsupported model types', () => {
    assert.throws(() => loadModelConfig(join(tmpdir(), 'omnilmm-no-such-dir')), FileNotFoundError);
    const empty = modelDir({});
    assert.throws(() => loadModelConfig(empty), (err: Error) => err instanceof CheckpointError && err.message === `no config.json in ${empty}: pass the folder that holds the model's config.json`);
    const broken = modelDir({ 'config.json': '{"model_type": "minicpmv",' });
    assert.throws(() => loadModelConfig(broken), (err: Error) => err instanceof CheckpointError && err.message.startsWith(`${join(broken, 'config.json')} is not valid JSON`));
    assertRefused('[1, 2]', CheckpointError, /the file must be a JSON object, got \[1,2\]/);
    assert.deepEqual(SUPPORTED_MODEL_TYPES, ['minicpmv', 'omnilmm', 'minicpmv4_6']);
    assertRefused(variant({ model_type: 'llava' }), UnsupportedModelError, /model_type "llava" is not supported; supported: "minicpmv" \(MiniCPM-V 1\.0 and 2\.0\), "omnilmm" \(OmniLMM-12B\), "minicpmv4_6" \(MiniCPM-V 4\.6\)/);
    assertRefused(variant({ model_type: undefined }), CheckpointError, /"model_type" must be a string naming the model family, got nothing; supported: "minicpmv"/);
  });

  it('refuses missing keys, wrong types and unsupported values, naming the key', () => {
    assertRefused(variant({ hidden_size: undefined }), CheckpointError, /"hidden_size" is missing; it is required \(an integer ≥ 1\)/);
    assertRefused(variant({ hidden_size: '256' }), CheckpointError, /"hidden_size" must be an integer ≥ 1, got "256"/);
    assertRefused(variant({ rms_norm_eps: true }), CheckpointError, /"rms_norm_eps" must be a number ≥ 0, got true/);
    assertRefused(variant({ tie_word_embeddings: 'no' }), CheckpointError, /"tie_word_embeddings" must be true or false, got "no"/);
    assertRefused(variant({ hidden_act: 'gelu' }), UnsupportedModelError, /"hidden_act" is "gelu"; supported: "silu"/);
    assertRefused(variant({ rope_scaling: { type: 'linear', factor: 2 } }), UnsupportedModelError, /"rope_scaling" is \{"type":"linear","factor":2\}, but only null is supported/);
    assertRefused(variant({ num_attention_heads: 7 }), CheckpointError, /hidden_size 256 is not a multiple of num_attention_heads 7/);
    assertRefused(variant({ query_num: 15 }), CheckpointError, /"query_num" 15 is not a square number/);
    assertRefused(variant({ vision_encoder: undefined }), CheckpointError, /"vision_encoder" is missing/);
  });

  it('refuses an unknown vision encoder without vision_config, and vision_config values it cannot run', () => {
    assertRefused(variant({ vision_config: undefined, vision_encoder: 'vit_huge_patch14_224' }), UnsupportedModelError,
      /unknown vision_encoder "vit_huge_patch14_224" and no "vision_config" describing it; supported timm models: vit_so400m_patch14_siglip_384/);
    assertRefused(variantVision({ embed_dim: undefined }), CheckpointError, /"vision_config\.embed_dim" is missing/);
    assertRefused(variantVision({ class_token: true }), UnsupportedModelError, /"vision_config\.class_token" is true; supported: false: the tower is built without a class token/);
    assertRefused(variantVision({ act_layer: 'gelu_tanh' }), UnsupportedModelError, /"vision_config\.act_layer" is "gelu_tanh"; only the exact \(erf\) GELU/);
    assertRefused(variantVision({ init_values: 1e-5 }), UnsupportedModelError, /"vision_config\.init_values" is 0\.00001, but only null is supported/);
    assertRefused(variantVision({ pos_embed_grid: [8, 8] }), CheckpointError, /"vision_config\.pos_embed_grid" is \[8, 8\], but img_size \/\/ patch_size gives \[7, 7\]/);
    assertRefused(variantVision({ mlp_hidden_dim: 384 }), CheckpointError, /"vision_config\.mlp_hidden_dim" is 384, but int\(embed_dim · mlp_ratio\) = 358/);
    assertRefused(variantVision({ depth_used: 4 }), CheckpointError, /"vision_config\.depth_used" is 4, but depth 4 with drop_vision_last_layer=true gives 3/);
    assertRefused(variant({ vision_config: 'siglip' }), CheckpointError, /"vision_config" must be a JSON object, got "siglip"/);
  });

  it('refuses a broken generation_config.json, naming it', () => {
    const dir = modelDir({ 'config.json': tinyConfig(), 'generation_config.json': { eos_token_id: [2, 'x'] } });
    assert.throws(() => loadModelConfig(dir), (err: Error) => err instanceof CheckpointError &&
      err.message === `${join(dir, 'generation_config.json')}: "eos_token_id" must be an integer or a list of integers ≥ 0, got [2,"x"]`);
  });
});

/**
 * config.json of later checkpoints of the MiniCPM-V line, with the keys the published files carry (model_type,
 * architectures, version, the LLM and SigLIP sizes, query_num, slice keys). The Hugging Face repos could not be read
 * here: keys and values follow the readers of these files in vLLM / SGLang (`get_version_by_config`), llama.cpp's
 * converters, and transformers 5.18's `MiniCPMV4_7Config` for 4.7.
 */
const SIGLIP_VISION = { hidden_size: 1152, image_size: 980, intermediate_size: 4304, model_type: 'siglip', num_attention_heads: 16, num_hidden_layers: 27, patch_size: 14 };
const REMOTE_CODE_MAP = { AutoConfig: 'configuration_minicpm.MiniCPMVConfig', AutoModel: 'modeling_minicpmv.MiniCPMV', AutoModelForCausalLM: 'modeling_minicpmv.MiniCPMV' };
const LLAMA3_V_2_5 = {
  _name_or_path: 'openbmb/MiniCPM-Llama3-V-2_5', architectures: ['MiniCPMV'], auto_map: REMOTE_CODE_MAP, model_type: 'minicpmv',
  version: 2.5, batch_vision_input: true, drop_vision_last_layer: false, hidden_act: 'silu', hidden_size: 4096, image_size: 448,
  intermediate_size: 14336, max_position_embeddings: 8192, mm_use_im_start_end: true, num_attention_heads: 32,
  num_hidden_layers: 32, num_key_value_heads: 8, patch_size: 14, query_num: 96, rms_norm_eps: 1e-5, rope_theta: 500000,
  slice_config: { max_slice_nums: 9, model_type: 'minicpmv', patch_size: 14, scale_resolution: 448 }, slice_mode: true,
  bos_token_id: 128000, eos_token_id: 128001, vision_config: { ...SIGLIP_VISION, model_type: 'idefics2' }, vocab_size: 128256,
};
const QWEN2_V_2_6 = {
  _name_or_path: 'openbmb/MiniCPM-V-2_6', architectures: ['MiniCPMV'], auto_map: REMOTE_CODE_MAP, model_type: 'minicpmv',
  version: 2.6, batch_vision_input: true, drop_vision_last_layer: false, hidden_act: 'silu', hidden_size: 3584, image_size: 448,
  intermediate_size: 18944, max_position_embeddings: 32768, num_attention_heads: 28, num_hidden_layers: 28,
  num_key_value_heads: 4, patch_size: 14, query_num: 64, rms_norm_eps: 1e-6, rope_theta: 1000000, use_image_id: true,
  slice_config: { max_slice_nums: 9, model_type: 'minicpmv', patch_size: 14, scale_resolution: 448 }, slice_mode: true,
  bos_token_id: 151643, eos_token_id: 151645, vision_config: SIGLIP_VISION, vocab_size: 151666,
};
/** MiniCPM-V 4.0's LLM is MiniCPM4 (scale_emb / dim_model_base / scale_depth, like 2.0's): only `version` tells it apart. */
const MINICPM4_V_4_0 = {
  ...QWEN2_V_2_6, _name_or_path: 'openbmb/MiniCPM-V-4', version: 4.0, hidden_size: 2560, intermediate_size: 10240,
  num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 2, scale_emb: 12, dim_model_base: 256,
  scale_depth: 1.4, vocab_size: 73448, bos_token_id: 1, eos_token_id: 2, vision_config: { ...SIGLIP_VISION, model_type: 'siglip_vision_model' },
};
const QWEN3_V_4_5 = {
  ...QWEN2_V_2_6, _name_or_path: 'openbmb/MiniCPM-V-4_5', version: 4.5, hidden_size: 4096, intermediate_size: 12288, head_dim: 128,
  num_attention_heads: 32, num_hidden_layers: 36, num_key_value_heads: 8, max_position_embeddings: 40960, vocab_size: 151748,
};
const MINICPM_O_2_6 = {
  ...QWEN2_V_2_6, _name_or_path: 'openbmb/MiniCPM-o-2_6', architectures: ['MiniCPMO'], model_type: 'minicpmo',
  auto_map: { AutoConfig: 'configuration_minicpm.MiniCPMOConfig', AutoModel: 'modeling_minicpmo.MiniCPMO' },
  init_vision: true, init_audio: true, init_tts: true, audio_pool_step: 2, audio_config: { model_type: 'whisper', d_model: 1024 },
  tts_config: { model_type: 'conditional_chattts', llm_dim: 3584 },
};
const MINICPMV_4_7 = {
  architectures: ['MiniCPMV4_7ForConditionalGeneration'], model_type: 'minicpmv4_7', insert_layer_id: 6, image_size: 448,
  image_token_id: 248056, video_token_id: 248057, downsample_mode: '16x', merge_kernel_size: [2, 2], merger_times: 1,
  tie_word_embeddings: true, image_start_id: 248070, image_end_id: 248071, slice_start_id: 248072, slice_end_id: 248073, newline_id: 198,
  text_config: { model_type: 'qwen3_5_text', hidden_size: 1024, num_hidden_layers: 24, vocab_size: 248320 },
  vision_config: { model_type: 'minicpmv4_7_vision', hidden_size: 1152, num_hidden_layers: 27, patch_size: 14, window_kernel_size: [2, 2] },
};

/** Asserts that loading `config` is refused by the name of the model it is, listing what is supported. */
function assertRecognised(config: Record<string, unknown>, name: string): void {
  const dir = modelDir({ 'config.json': config });
  assert.throws(() => loadModelConfig(dir), (err: Error) => {
    assert.ok(err instanceof UnsupportedModelError, `${err.name}: ${err.message}`);
    assert.ok(err.message.startsWith(`${join(dir, 'config.json')}: this checkpoint is ${name} (model_type "${String(config['model_type'])}")`), err.message);
    assert.ok(err.message.endsWith('supported: "minicpmv" (MiniCPM-V 1.0 and 2.0), "omnilmm" (OmniLMM-12B), "minicpmv4_6" (MiniCPM-V 4.6)'), err.message);
    assert.doesNotMatch(err.message, /missing|download/i);
    return true;
  });
}

describe('known checkpoints this engine does not run', () => {
  it('refuses later model_type "minicpmv" versions by name', () => {
    assertRecognised(LLAMA3_V_2_5, 'MiniCPM-Llama3-V 2.5');
    assertRecognised(QWEN2_V_2_6, 'MiniCPM-V 2.6');
    assertRecognised(MINICPM4_V_4_0, 'MiniCPM-V 4.0');
    assertRecognised(QWEN3_V_4_5, 'MiniCPM-V 4.5');
    assertRecognised({ ...QWEN3_V_4_5, version: '4.5' }, 'MiniCPM-V 4.5');
    assertRecognised({ ...QWEN3_V_4_5, version: 4.7 }, 'MiniCPM-V 4.7');
  });

  it('recognises MiniCPM-Llama3-V 2.5 as first published, without "version"', () => {
    assertRecognised(variant({ version: undefined }, LLAMA3_V_2_5), 'MiniCPM-Llama3-V 2.5 (or a later MiniCPM-V: config.json has no "version")');
  });

  it('refuses MiniCPM-o, by model_type and by architectures', () => {
    assertRecognised(MINICPM_O_2_6, 'MiniCPM-o 2.6');
    assertRecognised({ ...MINICPM_O_2_6, version: 4.5 }, 'MiniCPM-o 4.5');
    assertRecognised({ ...MINICPM_O_2_6, model_type: 'minicpmv' }, 'MiniCPM-o 2.6');
  });

  it('refuses MiniCPM-V versions with a model_type of their own (4.7 and newer) by name', () => {
    assertRecognised(MINICPMV_4_7, 'MiniCPM-V 4.7');
    assertRecognised({ ...MINICPMV_4_7, model_type: 'minicpmv5_0', architectures: ['MiniCPMV5_0ForConditionalGeneration'] }, 'MiniCPM-V 5.0');
  });

  it('still reads MiniCPM-V 1.0 and 2.0 configs that state their version', () => {
    assert.equal(minicpmv(loadModelConfig(modelDir({ 'config.json': variant({ version: 2.0 }) }))).version, 2);
    assert.equal(minicpmv(loadModelConfig(modelDir({ 'config.json': variant({ version: '2.0' }) }))).version, 2);
  });
});

const V46_DIR = fixturePath('minicpmv46-tiny', 'model');
const v46Json = (name: string) => readFixtureJson<Record<string, unknown>>('minicpmv46-tiny', 'model', name);

/** parseMiniCPMV46Config on a folder with the fixture's config.json and processor_config.json, changed by `edit`. */
function parseV46(edit: (config: Record<string, unknown>, processor: Record<string, unknown>) => void = () => {}): MiniCPMV46Config {
  const config = v46Json('config.json');
  const processor = v46Json('processor_config.json');
  edit(config, processor);
  const dir = modelDir({ 'config.json': config, 'processor_config.json': processor });
  return parseMiniCPMV46Config({ files: folderFiles(dir), file: join(dir, 'config.json'), config });
}

function assertV46Refused(
  edit: (config: Record<string, unknown>, processor: Record<string, unknown>) => void,
  type: typeof CheckpointError | typeof UnsupportedModelError,
  pattern: RegExp,
): void {
  assert.throws(() => parseV46(edit), (err: Error) => {
    assert.ok(err instanceof type, `${err.name}: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

const textOf = (config: Record<string, unknown>) => config['text_config'] as Record<string, unknown>;
const visionOf = (config: Record<string, unknown>) => config['vision_config'] as Record<string, unknown>;
const L = 'linear_attention';
const F = 'full_attention';

describe('MiniCPM-V 4.6 config (minicpmv46-tiny)', () => {
  it('parses config.json and processor_config.json to the README §2.1 values', () => {
    const file = join(V46_DIR, 'config.json');
    const config = parseMiniCPMV46Config({ files: folderFiles(V46_DIR), file, config: v46Json('config.json') });
    assert.equal(config.modelType, 'minicpmv4_6');
    assert.equal(config.insertLayerId, 0);
    assert.equal(config.imageSize, 1120);
    assert.equal(config.imageTokenId, 3012);
    assert.equal(config.videoTokenId, 3013);
    assert.equal(config.tieWordEmbeddings, true);
    assert.equal(config.downsampleMode, '16x');
    assert.deepEqual(config.mergeKernelSize, [2, 2]);
    assert.equal(config.mergerTimes, 1);
    assert.deepEqual(config.text, {
      vocabSize: 3040, hiddenSize: 128, intermediateSize: 256, numHiddenLayers: 8, layerTypes: [L, L, L, F, L, L, L, F],
      rmsNormEps: 1e-6, maxPositionEmbeddings: 262144, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 32,
      ropeTheta: 1e7, partialRotaryFactor: 0.25, rotaryDim: 8, mropeSection: [11, 11, 10],
      linearConvKernelDim: 4, linearNumKeyHeads: 4, linearKeyHeadDim: 16, linearNumValueHeads: 4, linearValueHeadDim: 16,
    });
    assert.deepEqual(config.vision, {
      hiddenSize: 64, intermediateSize: 160, numHiddenLayers: 4, numAttentionHeads: 4, headDim: 16, numChannels: 3,
      imageSize: 980, patchSize: 14, positionGrid: 70, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh', windowKernelSize: [2, 2],
    });
    const image = {
      sliceMode: true, maxSliceNums: 9, scaleResolution: 448, patchSize: 14, downsampleMode: '16x', useImageId: true,
      rescaleFactor: 0.00392156862745098, imageMean: [0.5, 0.5, 0.5], imageStd: [0.5, 0.5, 0.5],
    };
    assert.deepEqual(config.processor, { image, video: { ...image, doSampleFrames: true, maxNumFrames: 128, stackFrames: 1 } });
  });

  it('derives the real sizes of the README §2.1 "real" column', () => {
    const config = parseV46((c) => {
      Object.assign(c, { insert_layer_id: 6, image_token_id: 248056, video_token_id: 248057 });
      const text = textOf(c);
      delete text['layer_types'];
      Object.assign(text, {
        vocab_size: 248094, hidden_size: 1024, intermediate_size: 3584, num_hidden_layers: 24, num_attention_heads: 8,
        num_key_value_heads: 2, head_dim: 256, linear_num_key_heads: 16, linear_num_value_heads: 16,
        linear_key_head_dim: 128, linear_value_head_dim: 128,
      });
      Object.assign(visionOf(c), { hidden_size: 1152, intermediate_size: 4304, num_hidden_layers: 27, num_attention_heads: 16, insert_layer_id: 6 });
    });
    assert.deepEqual(config.text.layerTypes, Array.from({ length: 6 }, () => [L, L, L, F]).flat());
    assert.equal(config.text.rotaryDim, 64);
    assert.equal(config.vision.headDim, 72);
    assert.equal(config.insertLayerId, 6);
  });

  it('takes RoPE settings from rope_parameters, then the older text_config keys, then the class defaults', () => {
    const older = parseV46((c) => {
      const text = textOf(c);
      delete text['rope_parameters'];
      Object.assign(text, { rope_theta: 5e6, partial_rotary_factor: 0.5 });
    });
    assert.deepEqual([older.text.ropeTheta, older.text.partialRotaryFactor, older.text.rotaryDim], [5e6, 0.5, 16]);
    const defaults = parseV46((c) => {
      const text = textOf(c);
      delete text['rope_parameters'];
      delete text['partial_rotary_factor'];
    });
    assert.deepEqual([defaults.text.ropeTheta, defaults.text.partialRotaryFactor, defaults.text.rotaryDim], [10000, 0.25, 8]);
  });

  it('refuses what it cannot run and broken files, naming the key', () => {
    assertV46Refused((c) => delete c['image_token_id'], CheckpointError, /"image_token_id" is missing/);
    assertV46Refused((c) => { textOf(c)['model_type'] = 'qwen3'; }, UnsupportedModelError, /"text_config\.model_type" is "qwen3"; supported: "qwen3_5_text"/);
    assertV46Refused((c) => { c['merge_kernel_size'] = [3, 3]; }, UnsupportedModelError, /"merge_kernel_size" is \[3,3\]; supported: \[2,2\]/);
    assertV46Refused((c) => { c['merger_times'] = 2; }, UnsupportedModelError, /"merger_times" is 2; supported: 1/);
    assertV46Refused((c) => { c['downsample_mode'] = '8x'; }, UnsupportedModelError, /"downsample_mode" is "8x"/);
    assertV46Refused((c) => { c['insert_layer_id'] = 4; }, UnsupportedModelError, /"insert_layer_id" is 4, but the vision tower has layers 0\.\.3/);
    assertV46Refused((c) => { visionOf(c)['hidden_act'] = 'gelu'; }, UnsupportedModelError, /"vision_config\.hidden_act" is "gelu"/);
    assertV46Refused((c) => { textOf(c)['layer_types'] = [L, F]; }, CheckpointError, /has 2 layer_types for num_hidden_layers 8/);
    assertV46Refused((c) => { textOf(c)['layer_types'] = [L, L, L, 'sliding_attention', L, L, L, F]; }, UnsupportedModelError, /"text_config\.layer_types" has "sliding_attention"/);
    assertV46Refused((c) => { textOf(c)['rope_parameters'] = { full_attention: { rope_theta: 1e7 } }; }, UnsupportedModelError, /per layer type/);
    assertV46Refused((c) => { textOf(c)['rope_parameters'] = { rope_type: 'yarn', factor: 4 }; }, UnsupportedModelError, /"text_config\.rope_parameters\.rope_type" is "yarn"/);
    assertV46Refused((c) => { textOf(c)['partial_rotary_factor'] = 0.1; delete textOf(c)['rope_parameters']; }, CheckpointError, /int\(head_dim 32 · partial_rotary_factor 0\.1\) = 3 dims/);
    assertV46Refused((_, p) => { (p['video_processor'] as Record<string, unknown>)['downsample_mode'] = '4x'; }, CheckpointError,
      /"video_processor\.downsample_mode" is "4x" but .*config\.json says "16x"/);
    assertV46Refused((_, p) => { (p['image_processor'] as Record<string, unknown>)['patch_size'] = 16; }, CheckpointError,
      /"image_processor\.patch_size" is 16, but the vision tower's patch_size is 14/);
    assertV46Refused((_, p) => { (p['image_processor'] as Record<string, unknown>)['resample'] = 2; }, UnsupportedModelError, /"image_processor\.resample" is 2; supported: 3/);
    assertV46Refused((_, p) => { delete p['video_processor']; }, CheckpointError, /"video_processor" must be a JSON object, got nothing/);
    const dir = modelDir({ 'config.json': v46Json('config.json') });
    assert.throws(() => parseMiniCPMV46Config({ files: folderFiles(dir), file: join(dir, 'config.json'), config: v46Json('config.json') }),
      (err: Error) => err instanceof CheckpointError && err.message.startsWith(`${join(dir, 'processor_config.json')} is missing`));
  });
});

describe('fromDict', () => {
  const schema = {
    hiddenSize: integer({ min: 1 }),
    name: string({ default: 'x' }),
    flag: optional(boolean()),
    eosIds: integers({ key: 'eos_token_id', default: [2] }),
  };

  it('keeps only the declared keys, fills defaults and leaves optional keys undefined', () => {
    const parsed = fromDict({ hidden_size: 8, extra: 1, eos_token_id: 7, flag: null }, schema, { file: 'c.json' });
    assert.deepEqual(parsed, { hiddenSize: 8, name: 'x', flag: undefined, eosIds: [7] });
    assert.ok(!('extra' in parsed));
  });

  it('names the file and the key path in its messages', () => {
    assert.throws(() => fromDict({ hidden_size: 0 }, schema, { file: 'c.json', prefix: 'text_config' }),
      { name: 'CheckpointError', message: 'c.json: "text_config.hidden_size" must be an integer ≥ 1, got 0' });
    assert.throws(() => fromDict({ hidden_size: 1.5 }, schema, { file: 'c.json' }),
      { name: 'CheckpointError', message: 'c.json: "hidden_size" must be an integer ≥ 1, got 1.5' });
  });

  it('reads lists of numbers (one number becomes a list) and lists of strings', () => {
    const lists = { mean: numbers({ default: [0.5] }), kinds: optional(strings()) };
    assert.deepEqual(fromDict({ mean: 0.25, kinds: ['a', 'b'] }, lists, { file: 'c.json' }), { mean: [0.25], kinds: ['a', 'b'] });
    assert.deepEqual(fromDict({ mean: [0.1, 0.2, 0.3] }, lists, { file: 'c.json' }), { mean: [0.1, 0.2, 0.3], kinds: undefined });
    assert.throws(() => fromDict({ mean: [0.1, '0.2'] }, lists, { file: 'c.json' }),
      { name: 'CheckpointError', message: 'c.json: "mean" must be a number or a list of numbers, got [0.1,"0.2"]' });
    assert.throws(() => fromDict({ kinds: 'a' }, lists, { file: 'c.json' }),
      { name: 'CheckpointError', message: 'c.json: "kinds" must be a list of strings, got "a"' });
  });
});

it('loadModelConfig dispatches a MiniCPM-V 4.6 checkpoint to its family by model_type', () => {
  const config = loadModelConfig(V46_DIR);
  assert.equal(config.modelType, 'minicpmv4_6');
  assert.deepEqual(config.generation?.eosTokenIds, [3000, 3002]);
});
