// MiniCPM-V 1.0 against the minicpmv1-tiny fixture (official HF remote code): tokenizer, the 448×448 squash,
// the vision tower and the resampler (key positions interpolated from its stored table), the LLM's embeddings and
// logits, and every recorded chat through the public API, token-exact.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { SafetensorsCheckpoint, SafetensorsFile } from '../src/checkpoint/safetensors.js';
import { loadModelConfig } from '../src/models/registry.js';
import type { DecodingSettings } from '../src/chat/decoding.js';
import { InvalidRequestError } from '../src/errors.js';
import { beamSearch } from '../src/generation/beam-search.js';
import { createRgbImage, decodeImage, toPixelValues, type RgbImage } from '../src/image/index.js';
import { loadModel, type Model } from '../src/index.js';
import { PIXEL_MEAN, PIXEL_STD, prepareImageInput } from '../src/models/minicpmv/image-input.js';
import { minicpmvFamily } from '../src/models/minicpmv/family.js';
import { MINICPMV1_CHAT_DEFAULTS, MiniCPMVModel } from '../src/models/minicpmv/model.js';
import { get2dSinCosPosEmbed, getAbsPos, patchify, resamplePosEmbed } from '../src/models/parts/position-embedding.js';
import type { ResamplerDims } from '../src/models/parts/resampler.js';
import { decodeText, EmptyAnswerError, imageBound } from '../src/models/minicpmv/tokens.js';
import { VisionEncoder, type SliceInput } from '../src/models/minicpmv/vision-encoder.js';
import { buildVisionGraph, readVisionPosEmbed } from '../src/models/minicpmv/vision.js';
import type { VisionDims } from '../src/models/parts/layers.js';
import { NodeGraphSession } from '../src/runtime/session.js';
import { llamaTokenizerFromDir } from '../src/tokenizer/load-folder.js';
import { fixturePath, maxAbsDiff, openGolden, readFixtureJson, repoRoot, nonSamplingSettings } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv1-tiny';
const MODEL_DIR = fixturePath(FIXTURE, 'model');
// Sizes of the tiny checkpoint (README §2, §5.2, §5.3): 7×7 stored vision grid, 4×4 resampler queries, 2 heads.
const VISION: VisionDims = { patchSize: 14, embedDim: 96, depthUsed: 3, numHeads: 4, mlpHidden: 358, normEps: 1e-6, posGrid: [7, 7] };
const RESAMPLER: ResamplerDims = { queryNum: 16, embedDim: 256, numHeads: 2, kvDim: 96, normEps: 1e-6, adaptive: false };
const GRID: [number, number] = [32, 32];
const N_PATCHES = GRID[0] * GRID[1];
const LOGITS_RELATIVE_TOLERANCE = 1e-3;

/** The fixture's config.json, as the MiniCPM-V family's config. */
function minicpmvConfig() {
  const config = loadModelConfig(MODEL_DIR);
  if (config.modelType !== 'minicpmv') throw new Error(`${MODEL_DIR} should be a MiniCPM-V checkpoint, got ${config.modelType}`);
  return config;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function withGolden<T>(parts: string[], use: (file: SafetensorsFile) => T): T {
  const file = openGolden(FIXTURE, ...parts);
  try {
    return use(file);
  } finally {
    file.close();
  }
}

/** An exact PNG of the fixture as RGB bytes. */
async function readPng(path: string): Promise<RgbImage> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3, `${path} is RGB`);
  const img = createRgbImage(info.width, info.height);
  img.data.set(data);
  return img;
}

/** `x[:, y0:y0+h, x0:x0+w]` of a CHW tensor. */
function cropChw(values: Float32Array, height: number, width: number, y0: number, x0: number, h: number, w: number): Float32Array {
  const out = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      const from = (c * height + y0 + y) * width + x0;
      out.set(values.subarray(from, from + w), (c * h + y) * w);
    }
  }
  return out;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** README §3: |ours − golden| relative to the golden row's max |logit|, and the same argmax. */
function assertLogitsRow(ours: Float32Array, golden: Float32Array, what: string): number {
  let scale = 0;
  for (const v of golden) scale = Math.max(scale, Math.abs(v));
  const relative = maxAbsDiff(ours, golden) / scale;
  assert.ok(relative <= LOGITS_RELATIVE_TOLERANCE, `${what}: logits differ by ${relative} of the row's max |logit|`);
  assert.equal(argmax(ours), argmax(golden), `${what}: argmax`);
  return relative;
}

describe('config', () => {
  test('config.json without slice_mode is MiniCPM-V 1.0: squash to 448, non-adaptive resampler (README §2)', () => {
    const config = minicpmvConfig();
    assert.equal(config.version, 1);
    assert.equal(config.slice.sliceMode, false);
    assert.equal(config.slice.imageSize, 448);
    assert.equal(config.resampler.adaptive, false);
    assert.deepEqual(
      [config.resampler.queryNum, config.resampler.gridSize, config.resampler.embedDim, config.resampler.numHeads],
      [16, 4, 256, 2],
    );
    assert.deepEqual([config.vision.embedDim, config.vision.usedDepth, config.vision.mlpHiddenDim], [96, 3, 358]);
    assert.deepEqual(config.vision.posEmbedGrid, [7, 7]);
    assert.equal(config.text.dimModelBase, 32);
  });
});

describe('tokenizer (tokenizer/cases.json)', () => {
  interface EncodeCase {
    text: string;
    input_ids: number[];
    pieces: string[];
    image_bound?: [number, number][];
    image_bound_error?: string;
    decode: string;
    decode_without_bos: string;
    decode_text: string | null;
    decode_text_error?: string;
  }
  interface DecodeCase { ids: number[]; pieces: string[]; decode: string; decode_text?: string; decode_text_error?: string }
  interface Cases { special_ids: Record<string, number>; encode: EncodeCase[]; decode: DecodeCase[] }

  const cases = readFixtureJson<Cases>(FIXTURE, 'tokenizer', 'cases.json');
  const tokenizer = llamaTokenizerFromDir(MODEL_DIR);
  const { im_start_id: imStart, im_end_id: imEnd } = cases.special_ids;

  const decodeTextOrError = (ids: readonly number[]): string => {
    try {
      return decodeText(tokenizer, ids);
    } catch (err) {
      if (err instanceof EmptyAnswerError) return 'EmptyAnswerError';
      throw err;
    }
  };

  test('special ids', () => {
    const s = cases.special_ids;
    assert.deepEqual(
      [tokenizer.bosId, tokenizer.eosId, tokenizer.unkId, tokenizer.padId, tokenizer.vocabSize],
      [s['bos_id'], s['eos_id'], s['unk_id'], s['pad_token_id'], s['vocab_size']],
    );
    assert.deepEqual(['<image>', '</image>', '<用户>', '<AI>'].map((p) => tokenizer.pieceToId(p)), [imStart, imEnd, s['user_tag_id'], s['ai_tag_id']]);
  });

  test('every encode case: ids, pieces, image_bound, decode, decode_without_bos, decode_text', () => {
    assert.equal(cases.encode.length, 40);
    for (const c of cases.encode) {
      const what = JSON.stringify(c.text);
      const ids = tokenizer.encode(c.text);
      assert.deepEqual(ids, c.input_ids, `${what}: input_ids`);
      assert.deepEqual(ids.map((id) => tokenizer.idToPiece(id)), c.pieces, `${what}: pieces`);
      if (c.image_bound_error !== undefined) {
        // The official code fails in torch.hstack; we refuse the unbalanced markup with a clear error.
        assert.throws(() => imageBound(ids, imStart!, imEnd!), InvalidRequestError, what);
      } else {
        assert.deepEqual(imageBound(ids, imStart!, imEnd!), c.image_bound, `${what}: image_bound`);
      }
      assert.equal(tokenizer.decode(ids), c.decode, `${what}: decode`);
      assert.equal(tokenizer.decode(ids.slice(1)), c.decode_without_bos, `${what}: decode_without_bos`);
      if (c.decode_text_error !== undefined) assert.equal(decodeTextOrError(ids), 'EmptyAnswerError', `${what}: decode_text raises`);
      else assert.equal(decodeText(tokenizer, ids), c.decode_text, `${what}: decode_text`);
    }
  });

  test('every decode case: pieces, decode, decode_text', () => {
    assert.equal(cases.decode.length, 13);
    for (const c of cases.decode) {
      const what = JSON.stringify(c.ids);
      assert.deepEqual(c.ids.map((id) => tokenizer.idToPiece(id)), c.pieces, `${what}: pieces`);
      assert.equal(tokenizer.decode(c.ids), c.decode, `${what}: decode`);
      if (c.decode_text_error !== undefined) assert.equal(decodeTextOrError(c.ids), 'EmptyAnswerError', what);
      else assert.equal(decodeText(tokenizer, c.ids), c.decode_text, `${what}: decode_text`);
    }
  });
});

describe('preprocess: every image squashed to 448×448 (README §5.1)', () => {
  interface PreprocessCase {
    input: { file: string; rgb_sha256: string; size_wh: [number, number]; decoded_png?: string };
    resized_png: string;
    resized_size_wh: [number, number];
    resized_rgb_sha256: string;
    pixel_values_shape: [number, number, number];
    pixel_values_stats: { sum: number; abs_sum: number; min: number; max: number };
    crops: Record<string, string>;
  }
  const config = minicpmvConfig();
  const stems = readdirSync(fixturePath(FIXTURE, 'preprocess'))
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();

  test('the fixture has the 11 preprocess cases', () => assert.equal(stems.length, 11));

  for (const stem of stems) {
    test(`${stem}: one 448×448 slice with the official bytes and pixel values`, async () => {
      const golden = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', `${stem}.json`);
      // worldmap_ck starts from PIL's decoded PNG; hk_OCR.jpg is decoded here and pinned by its RGB hash.
      const image = await decodeImage(readFileSync(fixturePath(FIXTURE, golden.input.decoded_png ?? golden.input.file)));
      assert.deepEqual([image.width, image.height], golden.input.size_wh);
      assert.equal(sha256(image.data), golden.input.rgb_sha256, 'RGB bytes after convert("RGB")');

      const input = prepareImageInput(image, config);
      assert.equal(input.slices.length, 1);
      assert.equal(input.grid, null);
      assert.equal(input.imageTokens, 16);
      assert.equal(input.placeholder, `<image>${'<unk>'.repeat(16)}</image>`);
      const slice = input.slices[0]!;
      assert.deepEqual([slice.width, slice.height], golden.resized_size_wh);
      assert.equal(sha256(slice.data), golden.resized_rgb_sha256, 'resized RGB bytes');
      const png = await readPng(fixturePath(FIXTURE, golden.resized_png));
      assert.ok(Buffer.from(slice.data).equals(Buffer.from(png.data)), 'resized pixels equal the fixture PNG');

      const values = toPixelValues(slice, PIXEL_MEAN, PIXEL_STD);
      assert.deepEqual([3, slice.height, slice.width], golden.pixel_values_shape);
      withGolden(['preprocess', `${stem}.safetensors`], (tensors) => {
        const tl = cropChw(values, 448, 448, 0, 0, 28, 42);
        const br = cropChw(values, 448, 448, 420, 406, 28, 42);
        assert.equal(maxAbsDiff(tl, tensors.float32('pixel_values_crop_tl')), 0, 'top-left crop is bit-exact');
        assert.equal(maxAbsDiff(br, tensors.float32('pixel_values_crop_br')), 0, 'bottom-right crop is bit-exact');
      });
      let [sum, absSum, min, max] = [0, 0, Infinity, -Infinity];
      for (const v of values) {
        sum += v;
        absSum += Math.abs(v);
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      const s = golden.pixel_values_stats;
      assert.ok(Math.abs(sum - s.sum) <= 1e-6 * Math.max(1, Math.abs(s.sum)), `sum ${sum} vs ${s.sum}`);
      assert.ok(Math.abs(absSum - s.abs_sum) <= 1e-6 * s.abs_sum, `abs_sum ${absSum} vs ${s.abs_sum}`);
      assert.deepEqual([min, max], [s.min, s.max]);
    });
  }
});

describe('vision tower and resampler (README §5.2–5.3)', () => {
  let checkpoint: SafetensorsCheckpoint;
  let encoder: VisionEncoder;
  before(async () => {
    checkpoint = new SafetensorsCheckpoint(MODEL_DIR);
    encoder = await VisionEncoder.create(checkpoint, { vision: VISION, resampler: RESAMPLER }, { runtime: { threads: 1 } });
  });
  after(async () => {
    await encoder.release();
    checkpoint.close();
  });

  /** The fixture's resized PNG normalised as `(u8/255 − 0.5)/0.5` in float32 (README §5.1). */
  async function sliceOf(stem: string): Promise<SliceInput> {
    const png = await readPng(fixturePath(FIXTURE, 'preprocess', `${stem}.resized.png`));
    return { pixels: toPixelValues(png, PIXEL_MEAN, PIXEL_STD), height: png.height, width: png.width };
  }

  test('resampler_key_pos_embed: get_abs_pos interpolates the stored 4×4 table to 32×32 (plain bicubic)', () => {
    const stored = checkpoint.float32('resampler.pos_embed');
    const golden = withGolden(['vision', 'worldmap_ck.safetensors'], (t) => t.float32('resampler_key_pos_embed'));
    const ours = getAbsPos(stored, [4, 4], GRID);
    const diff = maxAbsDiff(ours, golden);
    assert.ok(diff <= 1e-5, `resampler_key_pos_embed differs by ${diff}`);
    assert.equal(maxAbsDiff(encoder.gridTables(GRID).resamplerPosEmbed, golden), diff, 'the encoder feeds this table');
    // Neither the antialiased kernel nor a sin-cos table at 32×32 would do (README §5.3, §9.4).
    assert.ok(maxAbsDiff(resamplePosEmbed(stored, [4, 4], GRID), golden) > 1e-3);
    assert.ok(maxAbsDiff(get2dSinCosPosEmbed(256, GRID), golden) > 1e-1);
    assert.equal(getAbsPos(stored, [4, 4], [4, 4]), stored, 'equal grids return the table');
  });

  test('getAbsPos: a constant table stays constant, borders clamp (a = −0.75 weights sum to 1)', () => {
    const table = new Float32Array(3 * 2 * 5).fill(0.25);
    const resized = getAbsPos(table, [3, 2], [7, 4]);
    assert.equal(resized.length, 7 * 4 * 5);
    assert.ok(resized.every((v) => Math.abs(v - 0.25) < 1e-7));
    assert.throws(() => getAbsPos(new Float32Array(7), [2, 2], [3, 3]), RangeError);
  });

  test('worldmap_ck: patch_embed, pos_embed_resampled and block_00_out match timm', async () => {
    const slice = await sliceOf('worldmap_ck');
    const graph = buildVisionGraph(checkpoint, VISION, { withPatchEmbed: true });
    // The first block's residual output, named by the graph builder's `<node>/output_0` convention.
    graph.output('/vision/blocks.0/mlp/residual/Add/output_0', 'block_00_out', 'float32', ['batch', 'n_patches', VISION.embedDim]);
    const session = await NodeGraphSession.create('vision (parity)', graph.serialize(), { threads: 1 });
    try {
      const posEmbed = resamplePosEmbed(readVisionPosEmbed(checkpoint, VISION), VISION.posGrid, GRID);
      const out = await session.run({
        pixel_patches: { type: 'float32', data: patchify(slice.pixels, 448, 448, 14), dims: [1, N_PATCHES, 588] },
        pos_embed: { type: 'float32', data: posEmbed, dims: [N_PATCHES, VISION.embedDim] },
      });
      withGolden(['vision', 'worldmap_ck.safetensors'], (golden) => {
        const checks: [string, Float32Array][] = [
          ['patch_embed', out.patch_embed!.data as Float32Array],
          ['pos_embed_resampled', posEmbed],
          ['block_00_out', out.block_00_out!.data as Float32Array],
          ['vision_features', out.features!.data as Float32Array],
        ];
        for (const [name, ours] of checks) {
          const diff = maxAbsDiff(ours, golden.float32(name));
          assert.ok(diff <= 1e-4, `${name} differs by ${diff}`);
        }
      });
    } finally {
      await session.release();
    }
  });

  for (const stem of ['worldmap_ck', 'grad_100x80']) {
    test(`${stem}: vision_features and resampler_out match the official code`, async () => {
      const [encoded] = await encoder.encode([await sliceOf(stem)], { keepFeatures: true });
      withGolden(['vision', `${stem}.safetensors`], (golden) => {
        const featureDiff = maxAbsDiff(encoded!.features!, golden.float32('vision_features'));
        assert.ok(featureDiff <= 1e-4, `vision_features differs by ${featureDiff}`);
        const outDiff = maxAbsDiff(encoded!.embeds, golden.float32('resampler_out'));
        assert.ok(outDiff <= 1e-4, `resampler_out differs by ${outDiff}`);
      });
    });
  }
});

interface Run {
  chat_kwargs: { sampling: boolean; num_beams?: number; repetition_penalty?: number; max_new_tokens: number };
  generation_config: { num_beams: number; repetition_penalty: number };
  new_token_ids: number[];
  text: string;
  sequences_score?: number;
}
interface LlmCase {
  name: string;
  input: { file: string };
  msgs: { role: 'user' | 'assistant'; content: string }[];
  prompt: string;
  input_ids: number[];
  seq_len: number;
  image_bound: [number, number][];
  prompt_logits_top5: { ids: number[] };
  runs: Record<string, Run>;
}
const llmCases = readdirSync(fixturePath(FIXTURE, 'llm'))
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => readFixtureJson<LlmCase>(FIXTURE, 'llm', f));

/** chat(sampling=False, **kwargs): only num_beams and repetition_penalty can be overridden (README §7). */
function settingsFor(run: Run): DecodingSettings {
  const k = run.chat_kwargs;
  assert.equal(k.sampling, false);
  return nonSamplingSettings(k);
}

describe('LLM: embeddings, logits and beam scores (README §5.4, §6)', () => {
  const config = minicpmvConfig();
  let model: MiniCPMVModel;
  before(async () => {
    model = (await minicpmvFamily.load(MODEL_DIR, config, { threads: 1 })) as MiniCPMVModel;
  });
  after(() => model.release());

  test('the fixture has the 4 llm cases', () => assert.equal(llmCases.length, 4));

  test('chat defaults are 1.0\'s: beam 3 with repetition penalty 1.2, sampling at temperature 0.6', () => {
    assert.equal(model.chatDefaults, MINICPMV1_CHAT_DEFAULTS);
    const defaults = llmCases[0]!.runs['beam3_rp1.2_chat_default']!.generation_config;
    assert.deepEqual([model.chatDefaults.beam.numBeams, model.chatDefaults.beam.repetitionPenalty], [defaults.num_beams, defaults.repetition_penalty]);
  });

  for (const c of llmCases) {
    test(`${c.name}: prompt ids, image_bound, inputs_embeds, vision_hidden_states, last logits`, async () => {
      const image = await decodeImage(readFileSync(fixturePath(FIXTURE, c.input.file)));
      const prompt = model.prepare(c.msgs, image);
      assert.deepEqual(prompt.ids, c.input_ids);
      assert.deepEqual(prompt.imageBound, c.image_bound);
      const embeds = await model.embed(prompt);
      const golden = withGolden(['llm', `${c.name}.safetensors`], (t) => ({
        embeds: t.float32('inputs_embeds'),
        vision: t.float32('vision_hidden_states'),
        last: t.float32('logits_last'),
      }));
      const embedDiff = maxAbsDiff(embeds, golden.embeds);
      assert.ok(embedDiff <= 1e-4, `inputs_embeds differs by ${embedDiff}`);
      const [start, end] = c.image_bound[0]!;
      const visionDiff = maxAbsDiff(embeds.subarray(start * 256, end * 256), golden.vision);
      assert.ok(visionDiff <= 1e-4, `vision_hidden_states differs by ${visionDiff}`);
      const last = await model.startDecoding(embeds, c.seq_len).prefill();
      assertLogitsRow(last, golden.last, 'logits_last');
      const top5 = [...last.keys()].sort((a, b) => last[b]! - last[a]!).slice(0, 5);
      assert.deepEqual(top5, c.prompt_logits_top5.ids);
    });

    for (const [runName, run] of Object.entries(c.runs)) {
      if (run.sequences_score === undefined) continue;
      test(`${c.name} / ${runName}: beam search ids and sequences_score`, async () => {
        const prompt = model.prepare(c.msgs, await decodeImage(readFileSync(fixturePath(FIXTURE, c.input.file))));
        const sequence = model.startDecoding(await model.embed(prompt), prompt.ids.length);
        const result = await beamSearch(sequence, {
          maxNewTokens: run.chat_kwargs.max_new_tokens,
          numBeams: run.generation_config.num_beams,
          repetitionPenalty: run.generation_config.repetition_penalty,
          bosTokenId: model.bosTokenId,
          eosTokenId: model.eosTokenId,
        });
        assert.deepEqual(result.ids, run.new_token_ids);
        assert.ok(Math.abs(result.score - run.sequences_score!) <= 1e-4, `sequences_score ${result.score} vs ${run.sequences_score}`);
      });
    }
  }

  test('single_turn_worldmap: logits of every prompt position and teacher-forced greedy logits', async () => {
    const c = llmCases.find((x) => x.name === 'single_turn_worldmap')!;
    const golden = withGolden(['llm', 'single_turn_worldmap.safetensors'], (t) => ({
      embeds: t.float32('inputs_embeds'),
      logits: t.float32('logits'),
      forced: t.float32('greedy_teacher_forced_logits'),
    }));
    const vocab = config.text.vocabSize;
    const row = (m: Float32Array, r: number) => m.subarray(r * vocab, (r + 1) * vocab);
    // Every prompt position: the last-position logits of each prefix.
    for (let len = 1; len <= c.seq_len; len++) {
      const logits = await model.startDecoding(golden.embeds.slice(0, len * 256), len).prefill();
      assertLogitsRow(logits, row(golden.logits, len - 1), `prompt position ${len - 1}`);
    }
    const greedy = c.runs['greedy']!.new_token_ids;
    const sequence = model.startDecoding(golden.embeds, c.seq_len);
    let logits = await sequence.prefill();
    for (let k = 0; k < greedy.length; k++) {
      assertLogitsRow(logits, row(golden.forced, k), `greedy step ${k}`);
      if (k + 1 < greedy.length) logits = (await sequence.step([greedy[k]!]))[0]!;
    }
  });
});

describe('chat through the public API: every recorded run, token-exact (README §7)', () => {
  let model: Model;
  before(async () => {
    model = await loadModel(MODEL_DIR, { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
  });
  after(() => model.release());

  for (const c of llmCases) {
    for (const [runName, run] of Object.entries(c.runs)) {
      test(`${c.name} / ${runName}: prompt ids, output ids and text are the official ones`, async () => {
        const image = readFileSync(fixturePath(FIXTURE, c.input.file));
        const result = await model.run({ messages: c.msgs, image, ...settingsFor(run) });
        assert.deepEqual(result.promptIds, c.input_ids);
        assert.deepEqual(result.outputIds, run.new_token_ids);
        assert.equal(result.text, run.text);
      });
    }
  }
});

describe('CLI', () => {
  const CLI = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-v1-cli-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  const cli = async (args: string[]) =>
    (await promisify(execFile)(process.execPath, [CLI, ...args], { env: { ...process.env, HF_HUB_OFFLINE: '1' }, timeout: 60_000 })).stdout;

  test('tokenize --json prints the official prompt ids', async () => {
    const c = llmCases[0]!;
    assert.deepEqual(JSON.parse(await cli(['tokenize', '--model', MODEL_DIR, '--json', c.prompt])), { ids: c.input_ids });
  });

  test('inspect-image: one 448×448 squash, no grid, no patches; --pixels writes the official tensor', async () => {
    const pixels = join(scratch, 'pixels.safetensors');
    const out = await cli(['inspect-image', '--model', MODEL_DIR, '--json', '--pixels', pixels, fixturePath(FIXTURE, 'images', 'wide_1000x300.png')]);
    assert.deepEqual(JSON.parse(out), {
      source: [448, 448], grid: null, slices: [], placeholder: `<image>${'<unk>'.repeat(16)}</image>`, image_tokens: 16,
    });
    const file = new SafetensorsFile(pixels);
    try {
      assert.deepEqual(file.info('slice_00').shape, [3, 448, 448]);
      const values = file.float32('slice_00');
      const crop = withGolden(['preprocess', 'wide_1000x300.safetensors'], (t) => t.float32('pixel_values_crop_br'));
      assert.equal(maxAbsDiff(cropChw(values, 448, 448, 420, 406, 28, 42), crop), 0);
    } finally {
      file.close();
    }
  });
});
