// OmniLMM-12B against the omnilmm12b-tiny fixture (its README is the specification): config, tokenizer and prompt
// construction, image preprocessing, the Eva tower and the resampler, the Mistral decoder with its sliding window,
// and every chat run through the public API, token-exact.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, test, type TestContext } from 'node:test';
import { SafetensorsCheckpoint } from '../src/checkpoint/safetensors.js';
import type { OmniLMMConfig } from '../src/models/omnilmm/config.js';
import { CheckpointError, InvalidRequestError, UnsupportedModelError } from '../src/errors.js';
import { beamSearch } from '../src/generation/beam-search.js';
import { decodeImage, type RgbImage } from '../src/image/index.js';
import { loadModel, type Model } from '../src/index.js';
import { buildDecoder, type MiniCPMTextDims } from '../src/models/parts/decoder.js';
import { getAbsPos, patchify } from '../src/models/parts/position-embedding.js';
import { parseMessages, type ChatMessage } from '../src/models/messages.js';
import { omnilmmFamily } from '../src/models/omnilmm/family.js';
import { imagePixels, resizeImage } from '../src/models/omnilmm/image-input.js';
import { OmniLMMModel } from '../src/models/omnilmm/model.js';
import { resampleEvaPosEmbed } from '../src/models/omnilmm/position-embedding.js';
import { buildPrompt, expandQuestionIntoMultimodal } from '../src/models/omnilmm/prompt.js';
import { decodeResponse, imageFeatureRows } from '../src/models/omnilmm/tokens.js';
import { OmniLMMVisionEncoder } from '../src/models/omnilmm/vision-encoder.js';
import { buildEvaVisionGraph, readEvaPosEmbed } from '../src/models/omnilmm/vision.js';
import { familyOf, loadModelConfig, type ConfigOf, type ModelConfig } from '../src/models/registry.js';
import { attentionBias, DecoderRunner } from '../src/runtime/decoder-runner.js';
import { NodeGraphSession } from '../src/runtime/session.js';
import { llamaTokenizerFromDir } from '../src/tokenizer/load-folder.js';
import { fixturePath, maxAbsDiff, readFixtureJson, readGoldenTensors, nonSamplingSettings } from './helpers/fixtures.js';

const FIXTURE = 'omnilmm12b-tiny';
const MODEL_DIR = fixturePath(FIXTURE, 'model');
// README §3.
const PIXEL_TOLERANCE = 1e-5;
const VISION_TOLERANCE = 1e-4;
const KEY_POS_TOLERANCE = 1e-5;
const LOGITS_RELATIVE_TOLERANCE = 1e-3;
const SCORE_TOLERANCE = 1e-4;
const STATS_RELATIVE_TOLERANCE = 1e-3;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const jsonFiles = (folder: string) => readdirSync(fixturePath(FIXTURE, folder)).filter((f) => f.endsWith('.json')).sort();

const readGoldens = (...parts: string[]) => readGoldenTensors(FIXTURE, ...parts);

function omniConfig(config: ModelConfig): ConfigOf<'omnilmm'> {
  assert.equal(config.modelType, 'omnilmm');
  return config as ConfigOf<'omnilmm'>;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** README §3: |Δ| ≤ 1e-3 · max|row| and the same argmax; returns the relative difference. */
function assertLogitsClose(got: Float32Array, want: Float32Array, what: string): number {
  assert.equal(got.length, want.length, what);
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const relative = maxAbsDiff(got, want) / scale;
  assert.ok(relative <= LOGITS_RELATIVE_TOLERANCE, `${what}: logits differ by ${relative} of max|logit|`);
  assert.equal(argmax(got), argmax(want), `${what}: argmax`);
  return relative;
}

describe('config.json', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  const base = () => readFixtureJson<Record<string, unknown>>(FIXTURE, 'model', 'config.json');
  const withConfig = (changes: Record<string, unknown>, vision: Record<string, unknown> = {}) => {
    const config = { ...base(), ...changes };
    if (Object.keys(vision).length > 0) config['vision_config'] = { ...(config['vision_config'] as object), ...vision };
    for (const [key, value] of Object.entries(config)) if (value === undefined) delete config[key];
    const dir = mkdtempSync(join(tmpdir(), 'omnilmm-omni-config-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    return dir;
  };

  it('parses the tiny fixture to the README values (§2)', () => {
    const config = omniConfig(loadModelConfig(MODEL_DIR));
    assert.deepEqual(config.text, {
      hiddenSize: 256, numHiddenLayers: 3, numAttentionHeads: 8, numKeyValueHeads: 2, headDim: 32, intermediateSize: 512,
      rmsNormEps: 1e-5, ropeTheta: 10000, slidingWindow: 96, maxPositionEmbeddings: 32768, vocabSize: 3209,
      bosTokenId: 1, eosTokenId: 2, padTokenId: 2,
    });
    assert.deepEqual(config.vision, {
      timmEntrypoint: 'eva02_enormous_patch14_clip_224', imgSize: 224, patchSize: 14, inChans: 3, embedDim: 96, depth: 4,
      usedDepth: 3, numHeads: 4, headDim: 24, mlpHiddenDim: 384, normEps: 1e-6, posEmbedGrid: [16, 16],
    });
    assert.deepEqual(config.resampler, { queryNum: 64, gridSize: 8, embedDim: 256, numHeads: 2, kvDim: 96, normEps: 1e-6 });
    assert.equal(config.imageSize, 448);
  });

  it('uses the real eva02_enormous_patch14_clip_224 sizes when there is no vision_config (§5.2)', () => {
    const config = omniConfig(loadModelConfig(withConfig({ vision_config: undefined, hidden_size: 4096, num_attention_heads: 32, num_key_value_heads: 8 })));
    assert.deepEqual(config.vision, {
      timmEntrypoint: 'eva02_enormous_patch14_clip_224', imgSize: 224, patchSize: 14, inChans: 3, embedDim: 1792, depth: 64,
      usedDepth: 63, numHeads: 16, headDim: 112, mlpHiddenDim: 15360, normEps: 1e-6, posEmbedGrid: [16, 16],
    });
    assert.deepEqual(config.resampler, { queryNum: 64, gridSize: 8, embedDim: 4096, numHeads: 32, kvDim: 1792, normEps: 1e-6 });
    assert.equal(omniConfig(loadModelConfig(withConfig({ sliding_window: null }))).text.slidingWindow, null);
    assert.equal(omniConfig(loadModelConfig(withConfig({ sliding_window: undefined }))).text.slidingWindow, 4096);
  });

  it('refuses what the engine cannot run, naming the key', () => {
    const refused = (dir: string, type: typeof CheckpointError | typeof UnsupportedModelError, pattern: RegExp) =>
      assert.throws(() => loadModelConfig(dir), (err: Error) => err instanceof type && pattern.test(err.message));
    refused(withConfig({}, { use_rot_pos_emb: true }), UnsupportedModelError, /"vision_config\.use_rot_pos_emb" is true; supported: false/);
    refused(withConfig({}, { use_post_norm: false }), UnsupportedModelError, /use_post_norm/);
    refused(withConfig({}, { swiglu_mlp: true }), UnsupportedModelError, /swiglu_mlp/);
    refused(withConfig({}, { act_layer: 'gelu_tanh' }), UnsupportedModelError, /only the exact \(erf\) GELU/);
    refused(withConfig({}, { depth_used: 4 }), CheckpointError, /depth_used" is 4, but the official code runs depth − 1 = 3/);
    refused(withConfig({ mm_use_im_start_end: false }), UnsupportedModelError, /"mm_use_im_start_end" is false; supported: true/);
    refused(withConfig({ mm_vision_tower: undefined }), CheckpointError, /"mm_vision_tower" is missing/);
    refused(withConfig({ num_query: 60 }), CheckpointError, /"num_query" 60 is not a square number/);
    refused(withConfig({ num_key_value_heads: 3 }), CheckpointError, /num_attention_heads 8 is not a multiple of num_key_value_heads 3/);
    refused(withConfig({ tie_word_embeddings: true }), UnsupportedModelError, /tie_word_embeddings/);
    refused(withConfig({ sliding_window: 0 }), CheckpointError, /"sliding_window" must be an integer ≥ 1 or null/);
  });

  it('dispatches model_type "omnilmm" to the OmniLMM family', () => {
    const config = loadModelConfig(MODEL_DIR);
    assert.equal(familyOf(config), omnilmmFamily);
  });
});

interface TokenizerCases {
  special_ids: Record<string, number>;
  omni_preprocess_templates: { response_template: string; response_token_ids: number[]; instruction_template: string; instruction_token_ids: number[] };
  encode: { text: string; input_ids: number[]; input_ids_no_bos: number[]; decode: string; decode_skip_special: string }[];
  decode: { ids: number[]; decode: string; decode_skip_special: string; official_response: string }[];
  prompts: {
    name: string; msgs: unknown[]; expanded_msgs: unknown[]; prompt: string | null; input_ids?: number[]; error?: string;
    im_start_positions?: number[]; im_end_positions?: number[]; get_vllm_embedding_error?: string;
  }[];
}

describe('tokenizer and prompt (§4)', () => {
  const cases = readFixtureJson<TokenizerCases>(FIXTURE, 'tokenizer', 'cases.json');
  const tokenizer = llamaTokenizerFromDir(MODEL_DIR);
  const imageTokens = { patch: 3200, start: 3201, end: 3202 };

  it('encodes and decodes every case like the slow LlamaTokenizer', () => {
    assert.equal(tokenizer.size, cases.special_ids['len_tokenizer']);
    for (const [key, token] of [['im_patch', '<im_patch>'], ['im_start', '<im_start>'], ['im_end', '<im_end>']] as const) {
      assert.equal(tokenizer.pieceToId(token), cases.special_ids[key]);
    }
    for (const c of cases.encode) {
      assert.deepEqual(omnilmmFamily.tokenize(MODEL_DIR, c.text), c.input_ids, JSON.stringify(c.text));
      assert.deepEqual(tokenizer.encode(c.text, { addSpecialTokens: false }), c.input_ids_no_bos);
      assert.equal(tokenizer.decode(c.input_ids), c.decode);
      assert.equal(tokenizer.decode(c.input_ids, { skipSpecialTokens: true }), c.decode_skip_special);
    }
    const t = cases.omni_preprocess_templates;
    assert.deepEqual(tokenizer.encode(t.response_template, { addSpecialTokens: false }), t.response_token_ids);
    assert.deepEqual(tokenizer.encode(t.instruction_template, { addSpecialTokens: false }), t.instruction_token_ids);
  });

  it('answers decode(ids, skip_special_tokens=True).strip() for every decode case', () => {
    for (const c of cases.decode) {
      assert.equal(tokenizer.decode(c.ids), c.decode, JSON.stringify(c.ids));
      assert.equal(tokenizer.decode(c.ids, { skipSpecialTokens: true }), c.decode_skip_special);
      assert.equal(decodeResponse(tokenizer, c.ids), c.official_response);
    }
  });

  it('builds the official prompt, ids and image rows for every prompt case', () => {
    assert.equal(cases.prompts.length, 8);
    for (const c of cases.prompts) {
      if (c.error) {
        assert.throws(() => parseMessages(c.msgs), InvalidRequestError, c.name);
        continue;
      }
      const messages = parseMessages(c.msgs);
      assert.deepEqual(expandQuestionIntoMultimodal(messages, 64), c.expanded_msgs, c.name);
      const prompt = buildPrompt(messages, 64, '</s>');
      assert.equal(prompt, c.prompt, c.name);
      const ids = tokenizer.encode(prompt);
      assert.deepEqual(ids, c.input_ids, c.name);
      const starts = ids.flatMap((id, i) => (id === imageTokens.start ? [i] : []));
      assert.deepEqual(starts, c.im_start_positions, c.name);
      if (c.get_vllm_embedding_error) {
        assert.throws(() => imageFeatureRows(ids, imageTokens, 64), /2 image placeholders but there is one image/);
      } else {
        assert.deepEqual(imageFeatureRows(ids, imageTokens, 64), [starts[0]! + 1, c.im_end_positions![0]!], c.name);
      }
    }
  });

  it('refuses conversations the official code fails on', () => {
    const user = (content: string): ChatMessage => ({ role: 'user', content });
    assert.throws(() => buildPrompt([], 64, '</s>'), /conversation is empty/);
    assert.throws(() => buildPrompt([user('a'), user('b')], 64, '</s>'), /messages 0 and 1 are both from the user: user and assistant turns must alternate/);
    const ids = (messages: ChatMessage[]) => tokenizer.encode(buildPrompt(messages, 64, '</s>'));
    assert.throws(() => imageFeatureRows(ids([user('x'), { role: 'assistant', content: 'y' }, user('<im_end>')]), imageTokens, 64),
      /1 <im_start> and 2 <im_end>/);
    assert.throws(() => imageFeatureRows(ids([user('<im_start><im_end>')]), imageTokens, 64), /2 image placeholders/);
    assert.deepEqual(imageFeatureRows([1, 3200, 3201, 3200, 3200, 3202, 5], imageTokens, 2), [3, 5]);
    assert.throws(() => imageFeatureRows([1, 3201, 3200, 3200, 3202, 5], imageTokens, 3), /<im_end> must follow <im_start> after 3 <im_patch>/);
  });
});

interface PreprocessCase {
  input: { file: string; rgb_sha256: string };
  resized_png: string;
  resized_rgb_sha256: string;
  pixel_values_stats: { sum: number; abs_sum: number; min: number; max: number };
}

function crop(px: Float32Array, side: number, [y0, y1]: [number, number], [x0, x1]: [number, number]): Float32Array {
  const out: number[] = [];
  for (let c = 0; c < 3; c++) for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) out.push(px[(c * side + y) * side + x]!);
  return Float32Array.from(out);
}

test('preprocessing squashes to 448×448 with PIL bicubic and normalises with the CLIP mean/std, for every image (§5.1)', async () => {
  const files = jsonFiles('preprocess');
  assert.equal(files.length, 11);
  const config = omniConfig(loadModelConfig(MODEL_DIR));
  for (const file of files) {
    const c = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', file);
    const image = await decodeImage(readFileSync(fixturePath(FIXTURE, c.input.file)));
    assert.equal(sha256(image.data), c.input.rgb_sha256, `${file}: decoded RGB`);
    const inspection = omnilmmFamily.inspectImage(image, config);
    assert.equal(inspection.slices.length, 1);
    assert.equal(inspection.grid, null);
    assert.equal(inspection.imageTokens, 64);
    const resized = inspection.slices[0]!;
    const golden = await decodeImage(readFileSync(fixturePath(FIXTURE, c.resized_png)));
    assert.deepEqual([resized.width, resized.height], [448, 448]);
    assert.equal(sha256(resized.data), c.resized_rgb_sha256, `${file}: resized bytes`);
    assert.ok(Buffer.from(resized.data).equals(Buffer.from(golden.data)), `${file}: resized PNG`);

    const px = inspection.pixels(resized);
    const goldens = readGoldens('preprocess', file.replace(/\.json$/, '.safetensors'));
    assert.ok(maxAbsDiff(crop(px, 448, [0, 28], [0, 42]), goldens['pixel_values_crop_tl']!) <= PIXEL_TOLERANCE, `${file}: top-left crop`);
    assert.ok(maxAbsDiff(crop(px, 448, [420, 448], [406, 448]), goldens['pixel_values_crop_br']!) <= PIXEL_TOLERANCE, `${file}: bottom-right crop`);
    const stats = c.pixel_values_stats;
    const sum = px.reduce((s, v) => s + v, 0);
    const absSum = px.reduce((s, v) => s + Math.abs(v), 0);
    const min = px.reduce((m, v) => Math.min(m, v), Infinity);
    const max = px.reduce((m, v) => Math.max(m, v), -Infinity);
    assert.ok(Math.abs(sum - stats.sum) <= STATS_RELATIVE_TOLERANCE * Math.abs(stats.sum), `${file}: sum ${sum} vs ${stats.sum}`);
    assert.ok(Math.abs(absSum - stats.abs_sum) <= STATS_RELATIVE_TOLERANCE * stats.abs_sum, `${file}: abs_sum`);
    assert.ok(Math.abs(min - stats.min) <= PIXEL_TOLERANCE && Math.abs(max - stats.max) <= PIXEL_TOLERANCE, `${file}: min/max`);
  }
});

describe('vision tower and resampler (§5.2–§5.4)', () => {
  let checkpoint: SafetensorsCheckpoint;
  let config: OmniLMMConfig;
  before(() => {
    checkpoint = new SafetensorsCheckpoint(MODEL_DIR);
    config = omniConfig(loadModelConfig(MODEL_DIR));
  });
  after(() => checkpoint.close());

  const visionDims = () => ({
    patchSize: 14, embedDim: 96, depthUsed: config.vision.usedDepth, numHeads: 4, mlpHidden: 384, normEps: 1e-6,
    posGrid: config.vision.posEmbedGrid,
  });
  const pixelsOf = async (stem: string) =>
    imagePixels(resizeImage(await decodeImage(readFileSync(fixturePath(FIXTURE, 'preprocess', `${stem}.resized.png`))), 448));

  it('matches patch_embed, pos_embed_resampled, block_00_out, vision_features and resampler_key_pos_embed', async (t: TestContext) => {
    const goldens = readGoldens('vision', 'worldmap_ck.safetensors');
    const posEmbed = resampleEvaPosEmbed(readEvaPosEmbed(checkpoint, visionDims()), [16, 16], [32, 32]);
    const posDiff = maxAbsDiff(posEmbed, goldens['pos_embed_resampled']!);
    assert.ok(posDiff <= VISION_TOLERANCE, `pos_embed_resampled differs by ${posDiff}`);
    const keyPos = getAbsPos(checkpoint.float32('model.resampler.pos_embed'), [8, 8], [32, 32]);
    const keyDiff = maxAbsDiff(keyPos, goldens['resampler_key_pos_embed']!);
    assert.ok(keyDiff <= KEY_POS_TOLERANCE, `resampler_key_pos_embed differs by ${keyDiff}`);

    const graph = buildEvaVisionGraph(checkpoint, visionDims(), { withIntermediates: true });
    const session = await NodeGraphSession.create('vision (parity)', graph.serialize(), { threads: 1 });
    try {
      const out = await session.run({
        pixel_patches: { type: 'float32', data: patchify(await pixelsOf('worldmap_ck'), 448, 448, 14), dims: [1, 1024, 588] },
        pos_embed: { type: 'float32', data: posEmbed, dims: [1025, 96] },
      });
      const diffs: Record<string, number> = { pos_embed_resampled: posDiff, resampler_key_pos_embed: keyDiff };
      for (const [output, golden] of [['patch_embed', 'patch_embed'], ['block_00_out', 'block_00_out'], ['features', 'vision_features']]) {
        diffs[golden!] = maxAbsDiff(out[output!]!.data as Float32Array, goldens[golden!]!);
        assert.ok(diffs[golden!]! <= VISION_TOLERANCE, `${golden} differs by ${diffs[golden!]}`);
      }
      t.diagnostic(`max |Δ|: ${JSON.stringify(diffs)}`);
    } finally {
      await session.release();
    }
  });

  it('encodes both images to vision_features and resampler_out', async (t: TestContext) => {
    const encoder = await OmniLMMVisionEncoder.create(checkpoint, {
      vision: visionDims(), resampler: { queryNum: 64, embedDim: 256, numHeads: 2, kvDim: 96, normEps: 1e-6 },
    }, { threads: 1 });
    try {
      for (const stem of ['grad_100x80', 'worldmap_ck']) {
        const goldens = readGoldens('vision', `${stem}.safetensors`);
        const encoded = await encoder.encode(await pixelsOf(stem), 448, 448, { keepFeatures: true });
        const featureDiff = maxAbsDiff(encoded.features!, goldens['vision_features']!);
        const outDiff = maxAbsDiff(encoded.embeds, goldens['resampler_out']!);
        t.diagnostic(`${stem}: vision_features ${featureDiff}, resampler_out ${outDiff}`);
        assert.ok(featureDiff <= VISION_TOLERANCE, `${stem}: vision_features differ by ${featureDiff}`);
        assert.ok(outDiff <= VISION_TOLERANCE, `${stem}: resampler_out differs by ${outDiff}`);
      }
    } finally {
      await encoder.release();
    }
  });
});

interface Run {
  generate_kwargs: { do_sample: boolean; num_beams: number; repetition_penalty?: number; max_new_tokens: number };
  new_token_ids: number[];
  text: string;
  sequences_score?: number;
}
interface LlmCase {
  name: string;
  input: { file: string };
  msgs: ChatMessage[];
  prompt: string;
  input_ids: number[];
  seq_len: number;
  image_feature_rows: [number, number];
  prompt_logits_top5: { ids: number[]; values: number[] };
  logits_last_without_sliding_window: { top5: { ids: number[]; values: number[] } };
  runs: Record<string, Run>;
}

const llmCases = jsonFiles('llm').map((file) => readFixtureJson<LlmCase>(FIXTURE, 'llm', file));

/** generate(do_sample=False, …) as a chat request. */
function settingsFor(run: Run) {
  const k = run.generate_kwargs;
  assert.equal(k.do_sample, false);
  return nonSamplingSettings(k);
}

function top5(row: Float32Array): number[] {
  return [...row.keys()].sort((a, b) => row[b]! - row[a]! || a - b).slice(0, 5);
}

describe('Mistral decoder with the sliding window (§6)', () => {
  const dims: MiniCPMTextDims = {
    hiddenSize: 256, numLayers: 3, numHeads: 8, numKvHeads: 2, intermediateSize: 512, rmsNormEps: 1e-5, ropeTheta: 10000,
    vocabSize: 3209, scaleEmb: 1, slidingWindow: 96,
  };
  let checkpoint: SafetensorsCheckpoint;
  let runner: DecoderRunner;
  before(async () => {
    checkpoint = new SafetensorsCheckpoint(MODEL_DIR);
    runner = await DecoderRunner.create(checkpoint, dims, { prefix: '', maxSeq: 320, threads: 1 });
  });
  after(async () => {
    await runner.release();
    checkpoint.close();
  });

  it('gives logits_last for every case, and the top 5 without the window when it is removed', async (t: TestContext) => {
    const unwindowed = await DecoderRunner.create(checkpoint, { ...dims, slidingWindow: undefined }, { prefix: '', maxSeq: 320, threads: 1 });
    try {
      for (const c of llmCases) {
        const goldens = readGoldens('llm', `${c.name}.safetensors`);
        const last = await runner.start(goldens['inputs_embeds']!, c.seq_len).prefill();
        const relative = assertLogitsClose(last, goldens['logits_last']!, `${c.name} logits_last`);
        assert.deepEqual(top5(last), c.prompt_logits_top5.ids, c.name);
        const plain = await unwindowed.start(goldens['inputs_embeds']!, c.seq_len).prefill();
        const expected = c.logits_last_without_sliding_window.top5;
        assert.deepEqual(top5(plain), expected.ids, `${c.name}: top 5 without the window`);
        assert.ok(maxAbsDiff(expected.ids.map((id) => plain[id]!), expected.values) <= LOGITS_RELATIVE_TOLERANCE * Math.abs(expected.values[0]!));
        t.diagnostic(`${c.name}: logits_last relative |Δ| ${relative.toExponential(2)}`);
      }
    } finally {
      await unwindowed.release();
    }
  });

  it('gives the logits of every prompt position in one pass without a cache', async (t: TestContext) => {
    const c = llmCases.find((x) => x.name === 'single_turn_worldmap')!;
    const goldens = readGoldens('llm', `${c.name}.safetensors`);
    const graph = buildDecoder(checkpoint, dims, { prefix: '', logits: 'all' });
    const session = await NodeGraphSession.create('decoder (all positions)', graph.serialize(), { threads: 1 });
    try {
      const L = c.seq_len;
      const feeds: Parameters<NodeGraphSession['run']>[0] = {
        inputs_embeds: { type: 'float32', data: goldens['inputs_embeds']!, dims: [1, L, 256] },
        position_ids: { type: 'int64', data: BigInt64Array.from({ length: L }, (_, i) => BigInt(i)), dims: [1, L] },
        attention_bias: { type: 'float32', data: attentionBias(1, L, 0), dims: [1, 1, L, L] },
      };
      for (let i = 0; i < 3; i++) {
        for (const kind of ['key', 'value']) feeds[`past_${kind}_${i}`] = { type: 'float32', data: new Float32Array(0), dims: [1, 2, 0, 32] };
      }
      const all = (await session.run(feeds, ['logits'])).logits!.data as Float32Array;
      let worst = 0;
      for (let p = 0; p < L; p++) {
        const row = (m: Float32Array) => m.subarray(p * 3209, (p + 1) * 3209);
        worst = Math.max(worst, assertLogitsClose(row(all), row(goldens['logits']!), `position ${p}`));
      }
      t.diagnostic(`every position: relative |Δ| ≤ ${worst.toExponential(2)}`);
    } finally {
      await session.release();
    }
  });

  it('feeds the greedy tokens through the cache to the teacher-forced logits', async (t: TestContext) => {
    const c = llmCases.find((x) => x.name === 'single_turn_worldmap')!;
    const goldens = readGoldens('llm', `${c.name}.safetensors`);
    const expected = goldens['greedy_teacher_forced_logits']!;
    const tokens = c.runs['greedy']!.new_token_ids;
    const sequence = runner.start(goldens['inputs_embeds']!, c.seq_len);
    let logits = await sequence.prefill();
    let worst = 0;
    for (let k = 0; k < tokens.length; k++) {
      worst = Math.max(worst, assertLogitsClose(logits, expected.subarray(k * 3209, (k + 1) * 3209), `step ${k}`));
      if (k + 1 < tokens.length) [logits] = (await sequence.step([tokens[k]!])) as [Float32Array];
    }
    t.diagnostic(`teacher-forced: relative |Δ| ≤ ${worst.toExponential(2)}`);
  });
});

for (const [form, dir] of [['model/ (safetensors)', MODEL_DIR], ['model-pt/ (pytorch_model.bin)', fixturePath(FIXTURE, 'model-pt')]] as const) describe(`end to end (§7) from ${form}`, () => {
  let model: Model;
  before(async () => {
    model = await loadModel(dir, { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
  });
  after(() => model.release());

  it('has the four llm cases', () => assert.equal(llmCases.length, 4));

  for (const c of llmCases) {
    for (const [runName, run] of Object.entries(c.runs)) {
      it(`${c.name} / ${runName}: prompt ids, output ids and answer text are the official ones`, async () => {
        const image = readFileSync(fixturePath(FIXTURE, c.input.file));
        const result = await model.run({ messages: c.msgs, image, ...settingsFor(run) });
        assert.deepEqual(result.promptIds, c.input_ids);
        assert.deepEqual(result.outputIds, run.new_token_ids);
        assert.equal(result.text, run.text);
      });
    }
  }

  it('streams chunks that add up to the final answer', async () => {
    const c = llmCases.find((x) => x.name === 'zh_alpha')!;
    const image = readFileSync(fixturePath(FIXTURE, c.input.file));
    const stream = model.streamChat({ messages: c.msgs, image, decoding: 'greedy', repetitionPenalty: 1.1, maxNewTokens: 24 });
    let text = '';
    for (;;) {
      const next = await stream.next();
      if (next.done) {
        assert.equal(text, next.value.text);
        assert.equal(text, c.runs['greedy_rp1.1']!.text);
        break;
      }
      text += next.value;
    }
  });

  it('refuses a chat without an image and a second image placeholder', async () => {
    const image = readFileSync(fixturePath(FIXTURE, 'images', 'grad_100x80.png'));
    await assert.rejects(model.run({ question: 'Hello?', decoding: 'greedy', maxNewTokens: 2 }), /answers questions about an image: give one/);
    await assert.rejects(model.run({ question: '<image> and <image>', image, decoding: 'greedy', maxNewTokens: 2 }), /2 image placeholders/);
  });
});

test('the hostile pickle is refused by loadModel, and its payload never runs', async () => {
  const marker = '/tmp/omnilmm-pickle-ran';
  rmSync(marker, { force: true });
  await assert.rejects(loadModel(fixturePath(FIXTURE, 'model-pt-hostile'), { threads: 1 }), (err: Error) =>
    err instanceof CheckpointError && /posix\.system/.test(err.message));
  assert.equal(existsSync(marker), false);
});

describe('OmniLMMModel steps', () => {
  let model: OmniLMMModel;
  let images: Map<string, RgbImage>;
  before(async () => {
    const config = omniConfig(loadModelConfig(MODEL_DIR));
    model = await OmniLMMModel.load(MODEL_DIR, config, { threads: 1 });
    images = new Map();
    for (const c of llmCases) images.set(c.input.file, await decodeImage(readFileSync(fixturePath(FIXTURE, c.input.file))));
  });
  after(() => model.release());

  it('splices the resampler output over the <im_patch> rows of the token embeddings (inputs_embeds)', async (t: TestContext) => {
    for (const c of llmCases) {
      const goldens = readGoldens('llm', `${c.name}.safetensors`);
      const prompt = model.prepare(c.msgs, images.get(c.input.file)!);
      assert.deepEqual(prompt.imageRows, c.image_feature_rows, c.name);
      const embeds = await model.embed(prompt);
      const [first, end] = c.image_feature_rows;
      const visionDiff = maxAbsDiff(embeds.subarray(first * 256, end * 256), goldens['vision_hidden_states']!);
      const embedsDiff = maxAbsDiff(embeds, goldens['inputs_embeds']!);
      t.diagnostic(`${c.name}: vision_hidden_states ${visionDiff}, inputs_embeds ${embedsDiff}`);
      assert.ok(visionDiff <= VISION_TOLERANCE && embedsDiff <= VISION_TOLERANCE, `${c.name}: ${visionDiff}, ${embedsDiff}`);
    }
  });

  it('reaches the official sequences_score with beam search', async (t: TestContext) => {
    for (const c of llmCases) {
      const run = c.runs['beam3']!;
      const prompt = model.prepare(c.msgs, images.get(c.input.file)!);
      const result = await beamSearch(await model.startPrompt(prompt), {
        numBeams: 3, maxNewTokens: run.generate_kwargs.max_new_tokens, bosTokenId: model.bosTokenId, eosTokenId: model.eosTokenId,
      });
      assert.deepEqual(result.ids, run.new_token_ids, c.name);
      const diff = Math.abs(result.score - run.sequences_score!);
      t.diagnostic(`${c.name}: sequences_score ${result.score} vs ${run.sequences_score} (|Δ| ${diff.toExponential(2)})`);
      assert.ok(diff <= SCORE_TOLERANCE, `${c.name}: sequences_score differs by ${diff}`);
    }
  });
});
