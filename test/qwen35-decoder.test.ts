// The Qwen3.5 hybrid decoder of MiniCPM-V 4.6 (gated delta-net + gated full attention) against the official
// transformers 5.18 outputs of test/fixtures/minicpmv46-tiny (README §3.5, §3.6, §4.4, §5): logits, the cache after a
// prompt, greedy and beam ids, prefix reuse through state snapshots, beams reordering every kind of state, int8/int4.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, test, type TestContext } from 'node:test';
import { folderFiles } from '../src/checkpoint/folder-files.js';
import { SafetensorsCheckpoint, type TensorInfo, type TensorSource } from '../src/checkpoint/safetensors.js';
import { InvalidRequestError } from '../src/errors.js';
import { beamSearch } from '../src/generation/beam-search.js';
import { generate } from '../src/generation/generate.js';
import type { GenerationOptions, LogitsModel } from '../src/generation/types.js';
import { buildDecoder, type DecoderDims } from '../src/models/parts/decoder.js';
import { linearStateShapes } from '../src/models/parts/gated-delta-net.js';
import { parseMiniCPMV46Config } from '../src/models/minicpmv46/config.js';
import { TEXT_NAMES, textDims } from '../src/models/minicpmv46/text.js';
import { attentionBias, DecoderRunner, type DecoderSequence } from '../src/runtime/decoder-runner.js';
import { NodeGraphSession, type HostTensor } from '../src/runtime/session.js';
import { fixturePath, maxAbsDiff, readFixtureJson, readGoldenTensors } from './helpers/fixtures.js';
import { relativeRms } from './helpers/quantised.js';

const FIXTURE = 'minicpmv46-tiny';
const LOGITS_TOLERANCE = 5e-3; // README §5
const STATE_TOLERANCE = 1e-3; // README §5: linear-attention states (also used for the keys and values)
const IMAGE_PAD = 3012;
const VIDEO_PAD = 3013;

interface Run {
  new_token_ids: number[];
  stopped_on_eos?: boolean;
  sequences_score?: number;
  generate_kwargs: { max_new_tokens: number; num_beams?: number };
}
interface LlmCase {
  name: string;
  seq_len: number;
  input_ids: number[];
  downsample_mode: '16x' | '4x';
  target_sizes_hw: [number, number][] | null;
  video: { target_sizes_videos_hw: [number, number][] } | null;
  runs: { greedy: Run; beam3: Run };
}

const config = readFixtureJson<Record<string, unknown>>(FIXTURE, 'model', 'config.json');
const generationConfig = readFixtureJson<{ eos_token_id: number[]; bos_token_id: number }>(FIXTURE, 'model', 'generation_config.json');
const dims = textDims(parseMiniCPMV46Config({ files: folderFiles(fixturePath(FIXTURE, 'model')), file: 'config.json', config }));
const vocab = dims.vocabSize;
const caseNames = readdirSync(fixturePath(FIXTURE, 'llm'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort();
const generation = { eosTokenId: generationConfig.eos_token_id, bosTokenId: generationConfig.bos_token_id };

let checkpoint: SafetensorsCheckpoint;
let runner: DecoderRunner;
let allPositions: NodeGraphSession;

before(async () => {
  checkpoint = new SafetensorsCheckpoint(fixturePath(FIXTURE, 'model'));
  runner = await DecoderRunner.create(checkpoint, dims, { ...TEXT_NAMES, maxSeq: 2100, maxRows: 3, threads: 1 });
  // Logits of every position, one run of up to 128 positions (the runner's graph takes 64).
  const graph = buildDecoder(checkpoint, dims, { ...TEXT_NAMES, logits: 'all', linearChunk: 128 });
  allPositions = await NodeGraphSession.create('decoder (all positions)', graph.serialize(), { threads: 1 });
});

after(async () => {
  await runner.release();
  await allPositions.release();
  checkpoint.close();
});

function golden(name: string): { json: LlmCase; tensors: Record<string, Float32Array> } {
  return { json: readFixtureJson<LlmCase>(FIXTURE, 'llm', `${name}.json`), tensors: readGoldenTensors(FIXTURE, 'llm', `${name}.safetensors`) };
}

function row(m: Float32Array, r: number, width = vocab): Float32Array {
  return m.subarray(r * width, (r + 1) * width);
}

function concat(...parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One run of the all-positions graph over a whole prompt from an empty cache; returns every output. */
async function runWhole(graph: NodeGraphSession, d: DecoderDims, embeds: Float32Array, seq: number): Promise<Record<string, HostTensor>> {
  const feeds: Record<string, HostTensor> = {
    inputs_embeds: { type: 'float32', data: embeds, dims: [1, seq, d.hiddenSize] },
    position_ids: { type: 'int64', data: BigInt64Array.from({ length: seq }, (_, i) => BigInt(i)), dims: [1, seq] },
    attention_bias: { type: 'float32', data: attentionBias(1, seq, 0), dims: [1, 1, seq, seq] },
  };
  const shapes = linearStateShapes(d.linearAttention!);
  d.layerTypes!.forEach((type, i) => {
    if (type === 'linear_attention') {
      feeds[`past_conv_${i}`] = { type: 'float32', data: new Float32Array(shapes.conv[0] * shapes.conv[1]), dims: [1, ...shapes.conv] };
      const size = shapes.recurrent.reduce((a, b) => a * b);
      feeds[`past_recurrent_${i}`] = { type: 'float32', data: new Float32Array(size), dims: [1, ...shapes.recurrent] };
    } else {
      for (const kind of ['key', 'value']) {
        feeds[`past_${kind}_${i}`] = { type: 'float32', data: new Float32Array(0), dims: [1, d.numKvHeads, 0, d.headDim!] };
      }
    }
  });
  return graph.run(feeds);
}

test('text_only: logits at every position, and every layer\'s conv, recurrent and key/value state after the prompt', async () => {
  const { json, tensors } = golden('text_only');
  const out = await runWhole(allPositions, dims, tensors.inputs_embeds!, json.seq_len);
  const logitsDiff = maxAbsDiff(out.logits!.data as Float32Array, tensors.logits!);
  assert.ok(logitsDiff <= LOGITS_TOLERANCE, `logits [L, vocab] differ by ${logitsDiff}`);
  const kernel = dims.linearAttention!.convKernel;
  dims.layerTypes!.forEach((type, i) => {
    const layer = `layer_${String(i).padStart(2, '0')}`;
    if (type === 'linear_attention') {
      // The fixture keeps the last K inputs of the conv, the graph the last K−1 (all the next step reads).
      const expected = tensors[`${layer}.conv_state`]!;
      const conv = out[`conv_${i}`]!.data as Float32Array;
      const channels = conv.length / (kernel - 1);
      const kept = Float32Array.from({ length: conv.length }, (_, k) => expected[Math.floor(k / (kernel - 1)) * kernel + (k % (kernel - 1)) + 1]!);
      assert.equal(channels * kernel, expected.length);
      const convDiff = maxAbsDiff(conv, kept);
      const recurrentDiff = maxAbsDiff(out[`recurrent_${i}`]!.data as Float32Array, tensors[`${layer}.recurrent_state`]!);
      assert.ok(convDiff <= STATE_TOLERANCE, `${layer}: conv state differs by ${convDiff}`);
      assert.ok(recurrentDiff <= STATE_TOLERANCE, `${layer}: recurrent state differs by ${recurrentDiff}`);
    } else {
      const keyDiff = maxAbsDiff(out[`key_${i}`]!.data as Float32Array, tensors[`${layer}.key_cache`]!);
      const valueDiff = maxAbsDiff(out[`value_${i}`]!.data as Float32Array, tensors[`${layer}.value_cache`]!);
      assert.ok(keyDiff <= STATE_TOLERANCE && valueDiff <= STATE_TOLERANCE, `${layer}: keys differ by ${keyDiff}, values by ${valueDiff}`);
    }
  });
});

test('single_image_grad: logits at every position', async () => {
  const { json, tensors } = golden('single_image_grad');
  const out = await runWhole(allPositions, dims, tensors.inputs_embeds!, json.seq_len);
  const diff = maxAbsDiff(out.logits!.data as Float32Array, tensors.logits!);
  assert.ok(diff <= LOGITS_TOLERANCE, `logits [L, vocab] differ by ${diff}`);
});

/** A LogitsModel over a sequence that checks the prompt's logits against the fixture's as it prefills. */
function checkedPrefill(sequence: DecoderSequence, expected: Float32Array, label: string): LogitsModel {
  return {
    vocabSize: sequence.vocabSize,
    prefill: async () => {
      const logits = await sequence.prefill();
      const diff = maxAbsDiff(logits, expected);
      assert.ok(diff <= LOGITS_TOLERANCE, `${label}: logits_last differs by ${diff}`);
      return logits;
    },
    step: (tokens, parents) => sequence.step(tokens, parents),
  };
}

async function greedyIds(model: LogitsModel, maxNewTokens: number): Promise<number[]> {
  const ids: number[] = [];
  for await (const id of generate(model, { ...generation, maxNewTokens })) ids.push(id);
  return ids;
}

/**
 * The prompt that the official beam search runs on. transformers 5.18 `GenerationMixin._expand_multimodal_outputs`
 * repeats the list of per-slice features for the beams entry by entry ([s₀, s₀, s₀, s₁, s₁, s₁, …]) instead of
 * repeating the whole list, and the features are then scattered in order: beam row 0, the only one that counts (the
 * others start at −1e9 and take row 0's cache after the first step), gets the first N rows of that list at its N
 * image positions. With one slice (or unit of video) that is the right image; with several, it is not, and the
 * fixture's beam3 runs of such chats record this. Their greedy runs (no expansion) see the right image.
 */
function officialBeamEmbeds(json: LlmCase, embeds: Float32Array, beams: number): Float32Array {
  const sizes = json.video ? json.video.target_sizes_videos_hw : (json.target_sizes_hw ?? []);
  const tokensPerSlice = sizes.map(([h, w]) => (h * w) / (json.downsample_mode === '16x' ? 16 : 4));
  const pad = json.video ? VIDEO_PAD : IMAGE_PAD;
  const positions = json.input_ids.flatMap((id, p) => (id === pad ? [p] : []));
  assert.equal(tokensPerSlice.reduce((a, b) => a + b, 0), positions.length, `${json.name}: image positions`);
  const d = dims.hiddenSize;
  const features = positions.map((p) => embeds.subarray(p * d, (p + 1) * d));
  const repeated: Float32Array[] = [];
  let at = 0;
  for (const n of tokensPerSlice) {
    for (let b = 0; b < beams; b++) repeated.push(...features.slice(at, at + n));
    at += n;
  }
  const out = embeds.slice();
  positions.forEach((p, k) => out.set(repeated[k]!, p * d));
  return out;
}

for (const name of caseNames) {
  test(`${name}: logits_last after a prefill in parts, greedy ids (stopping on either EOS) and beam3 result`, async (t: TestContext) => {
    const { json, tensors } = golden(name);
    const { greedy, beam3 } = json.runs;
    const L = json.seq_len;
    const ids = await greedyIds(checkedPrefill(runner.start(tensors.inputs_embeds!, L), tensors.logits_last!, name), greedy.generate_kwargs.max_new_tokens);
    assert.deepEqual(ids, greedy.new_token_ids, `${name}: greedy ids`);
    assert.equal(generation.eosTokenId.includes(ids.at(-1)!), greedy.stopped_on_eos, `${name}: stopped on EOS`);

    const beamEmbeds = officialBeamEmbeds(json, tensors.inputs_embeds!, 3);
    for (const version of ['4.36', '5'] as const) {
      const options: GenerationOptions = { ...generation, maxNewTokens: beam3.generate_kwargs.max_new_tokens, numBeams: 3, beamSearchVersion: version };
      const result = await beamSearch(runner.start(beamEmbeds, L), options);
      assert.deepEqual(result.ids, beam3.new_token_ids, `${name}: beam3 ids (transformers ${version} beam search)`);
      const scoreDiff = Math.abs(result.score - beam3.sequences_score!);
      assert.ok(scoreDiff <= LOGITS_TOLERANCE, `${name}: beam3 score ${result.score}, fixture ${beam3.sequences_score}`);
    }
    t.diagnostic(`${name}: L = ${L}`);
  });
}

/** `embed(from)` for startPrompt: the fixture's prompt embeddings from position `from` (records every call). */
function fixtureEmbeds(embeds: Float32Array, calls: number[] = []): (from: number) => Promise<Float32Array> {
  return async (from) => {
    calls.push(from);
    return embeds.subarray(from * dims.hiddenSize);
  };
}

test('prefix reuse: a prompt resumes at the snapshot it shares, beam search after it gives the fixture result, and the end of an answer is a resume point too', async () => {
  const { json, tensors } = golden('text_only');
  const ids = json.input_ids;
  const L = json.seq_len;
  const assistantTurn = ids.lastIndexOf(3001); // `<|im_start|>` of the assistant turn: the shared part ends here
  // 1. Another prompt with the same first turn, kept at the start of its second turn.
  const other = [...ids.slice(0, assistantTurn), 500, 501, 502, 503, 504];
  const first = await runner.startPrompt(other, null, async (from) => runner.embed(other.slice(from)), undefined, [assistantTurn]);
  assert.equal(first.reusedLength, 0);
  await first.prefill();
  assert.deepEqual(runner.snapshotPositions, [assistantTurn]);
  assert.equal(runner.reusableLength(ids, null), assistantTurn, 'the longest resume point within the shared prefix');
  // 2. The fixture prompt resumes there: same logits and the same beam result as the official run.
  const calls: number[] = [];
  const reused = await runner.startPrompt(ids, null, fixtureEmbeds(tensors.inputs_embeds!, calls));
  assert.equal(reused.reusedLength, assistantTurn);
  assert.deepEqual(calls, [assistantTurn]);
  const beam3 = json.runs.beam3;
  const result = await beamSearch(checkedPrefill(reused, tensors.logits_last!, 'text_only after reuse'), {
    ...generation, maxNewTokens: beam3.generate_kwargs.max_new_tokens, numBeams: 3, beamSearchVersion: '5',
  });
  assert.deepEqual(result.ids, beam3.new_token_ids, 'beam3 ids after reuse');
  // 3. After a greedy answer of n tokens (n − 1 of them fed), the prompt extended by them resumes at its end.
  const greedy = json.runs.greedy.new_token_ids;
  const n = greedy.length - 1;
  const answered = await runner.startPrompt(ids, null, fixtureEmbeds(tensors.inputs_embeds!));
  assert.deepEqual(await greedyIds(answered, n), greedy.slice(0, n));
  const longer = [...ids, ...greedy.slice(0, n)];
  const embeds = concat(tensors.inputs_embeds!, runner.embed(greedy.slice(0, n)));
  const resumed = await runner.startPrompt(longer, null, fixtureEmbeds(embeds));
  assert.equal(resumed.reusedLength, L + n - 1, 'everything but the last position, from the live state');
  const teacher = tensors.greedy_teacher_forced_logits!;
  const diff = maxAbsDiff(await resumed.prefill(), row(teacher, n));
  assert.ok(diff <= LOGITS_TOLERANCE, `the position after ${n} answer tokens differs from the teacher-forced logits by ${diff}`);
});

test('prefix reuse with an image: the end of its span is kept, the same image resumes there, another image reuses nothing', async () => {
  const { json, tensors } = golden('single_image_grad');
  const ids = json.input_ids;
  const span = [ids.indexOf(IMAGE_PAD), ids.lastIndexOf(IMAGE_PAD) + 1] as const;
  const image = { key: 'grad_100x80', span };
  const d = dims.hiddenSize;
  const other = [...ids.slice(0, span[1]), 3031, 198, 500, 501, 502];
  const otherEmbeds = concat(tensors.inputs_embeds!.subarray(0, span[1] * d), runner.embed(other.slice(span[1])));
  await (await runner.startPrompt(other, image, fixtureEmbeds(otherEmbeds))).prefill();
  assert.ok(runner.snapshotPositions.includes(span[1]), `snapshots at ${runner.snapshotPositions}`);

  const calls: number[] = [];
  const reused = await runner.startPrompt(ids, image, fixtureEmbeds(tensors.inputs_embeds!, calls));
  assert.equal(reused.reusedLength, span[1]);
  assert.deepEqual(calls, [span[1]], 'the image is not embedded again');
  const greedy = json.runs.greedy.new_token_ids;
  const teacher = tensors.greedy_teacher_forced_logits!;
  let logits = await reused.prefill();
  for (let k = 0; k < 4; k++) {
    const diff = maxAbsDiff(logits, row(teacher, k));
    assert.ok(diff <= LOGITS_TOLERANCE, `step ${k} after reuse differs by ${diff}`);
    [logits] = (await reused.step([greedy[k]!])) as [Float32Array];
  }

  const another = await runner.startPrompt(ids, { key: 'another image', span }, fixtureEmbeds(tensors.inputs_embeds!));
  assert.equal(another.reusedLength, 0);
  assert.deepEqual(runner.snapshotPositions, [], 'the snapshots of the other image are gone');
  assert.throws(() => runner.start(tensors.inputs_embeds!.subarray(5 * d), json.seq_len, { ids, reuse: 5 }), InvalidRequestError);
});

test('snapshots asked at many positions (one per turn of a long conversation) cut the prefill only where the kept ones go', async () => {
  const { json, tensors } = golden('mixed_grid_16x');
  assert.equal(json.seq_len, 292);
  const asked = Array.from({ length: 29 }, (_, k) => 10 * (k + 1));
  let pauses = 0;
  runner.forgetCache();
  const sequence = await runner.startPrompt(json.input_ids, null, fixtureEmbeds(tensors.inputs_embeds!), async () => void pauses++, asked);
  assert.equal(sequence.reusedLength, 0);
  const diff = maxAbsDiff(await sequence.prefill(), tensors.logits_last!);
  assert.ok(diff <= LOGITS_TOLERANCE, `logits_last differs by ${diff}`);
  // Only the latest 6 snapshots are kept; runs end there, at the multiples of linearChunk (64) and at the end:
  // 64, 128, 192, 240, 250, 256, 260, 270, 280, 290, 292 — 11 runs, a pause before each but the first.
  assert.deepEqual(runner.snapshotPositions, [240, 250, 260, 270, 280, 290]);
  assert.equal(pauses, 10);
});

test('beams: step with parents fans out, reorders, duplicates and drops rows of every kind of state', async () => {
  const { json, tensors } = golden('text_only');
  const L = json.seq_len;
  const greedy = json.runs.greedy.new_token_ids;
  const teacher = tensors.greedy_teacher_forced_logits!;
  const sequence = runner.start(tensors.inputs_embeds!, L);
  await sequence.prefill();
  const [g0, g1, g2, g3] = greedy as [number, number, number, number];
  const steps: { tokens: number[]; parents?: number[]; histories: number[][]; greedyRow: number }[] = [
    { tokens: [500, g0, 900], parents: [0, 0, 0], histories: [[500], [g0], [900]], greedyRow: 1 },
    { tokens: [g1, 501, 777], parents: [1, 0, 1], histories: [[g0, g1], [500, 501], [g0, 777]], greedyRow: 0 },
    { tokens: [g2, 502, 778], histories: [[g0, g1, g2], [500, 501, 502], [g0, 777, 778]], greedyRow: 0 },
    { tokens: [1234, g3], parents: [2, 0], histories: [[g0, 777, 778, 1234], [g0, g1, g2, g3]], greedyRow: 1 },
  ];
  for (const [s, { tokens, parents, histories, greedyRow }] of steps.entries()) {
    const rows = await sequence.step(tokens, parents);
    for (const [r, history] of histories.entries()) {
      const seq = L + history.length;
      const alone = await runWhole(allPositions, dims, concat(tensors.inputs_embeds!, runner.embed(history)), seq);
      const diff = maxAbsDiff(rows[r]!, row(alone.logits!.data as Float32Array, seq - 1));
      assert.ok(diff <= LOGITS_TOLERANCE, `step ${s} row ${r}: differs from the sequence run on its own by ${diff}`);
    }
    const diff = maxAbsDiff(rows[greedyRow]!, row(teacher, s + 1));
    assert.ok(diff <= LOGITS_TOLERANCE, `step ${s} row ${greedyRow}: differs from the fixture's teacher-forced row by ${diff}`);
  }
});

type Replacements = Map<string, { shape: number[]; data: Float32Array }>;

/** A view of a checkpoint with some tensors replaced or added. */
function overlay(base: TensorSource, replaced: Replacements): TensorSource {
  return {
    names: () => [...new Set([...base.names(), ...replaced.keys()])],
    has: (name) => replaced.has(name) || base.has(name),
    info: (name): TensorInfo => {
      const added = replaced.get(name);
      if (!added) return base.info(name);
      return { name, dtype: 'F32', shape: added.shape, offset: 0, byteLength: added.data.byteLength, file: '(in memory)' };
    },
    float32: (name) => replaced.get(name)?.data ?? base.float32(name),
    close: () => {},
  };
}

/** Prefill of a chat and three greedy steps through a runner over `source` (logits of each position). */
async function firstSteps(source: TensorSource, modelDims: DecoderDims, name: string): Promise<Float32Array[]> {
  const { json, tensors } = golden(name);
  const model = await DecoderRunner.create(source, modelDims, { ...TEXT_NAMES, maxSeq: 128, threads: 1, cache: false });
  try {
    const sequence = model.start(tensors.inputs_embeds!, json.seq_len);
    const out = [await sequence.prefill()];
    for (const token of json.runs.greedy.new_token_ids.slice(0, 3)) out.push(...(await sequence.step([token])));
    return out;
  } finally {
    await model.release();
  }
}

test('linear attention with fewer key heads than value heads equals repeated key heads (upstream repeat_interleave)', async () => {
  // Model "repeated": 4 key heads, heads 2j and 2j+1 both the original key head j (queries, keys and their conv
  // taps). Model "grouped": 2 key heads (the original 0 and 1) serving 4 value heads. Both compute the same.
  const l = dims.linearAttention!;
  const { keyHeadDim: dk, numKeyHeads: hk } = l;
  const d = dims.hiddenSize;
  const repeated: Replacements = new Map();
  const grouped: Replacements = new Map();
  // Channel rows of the original in_proj_qkv / conv1d for q head h, k head h, and the value channels.
  const qRows = (h: number) => Array.from({ length: dk }, (_, i) => h * dk + i);
  const kRows = (h: number) => Array.from({ length: dk }, (_, i) => hk * dk + h * dk + i);
  const vRows = Array.from({ length: l.numValueHeads * l.valueHeadDim }, (_, i) => 2 * hk * dk + i);
  const pick = (w: Float32Array, width: number, rows: number[]) => {
    const out = new Float32Array(rows.length * width);
    rows.forEach((r, k) => out.set(w.subarray(r * width, (r + 1) * width), k * width));
    return out;
  };
  const heads = { repeated: [0, 0, 1, 1], grouped: [0, 1] };
  dims.layerTypes!.forEach((type, i) => {
    if (type !== 'linear_attention') return;
    for (const [tensor, width] of [['in_proj_qkv.weight', d], ['conv1d.weight', l.convKernel]] as const) {
      const name = `model.language_model.layers.${i}.linear_attn.${tensor}`;
      const w = checkpoint.float32(name);
      for (const [variant, target] of [['repeated', repeated], ['grouped', grouped]] as const) {
        const rows = [...heads[variant].flatMap(qRows), ...heads[variant].flatMap(kRows), ...vRows];
        const shape = tensor === 'conv1d.weight' ? [rows.length, 1, l.convKernel] : [rows.length, d];
        target.set(name, { shape, data: pick(w, width, rows) });
      }
    }
  });
  const a = await firstSteps(overlay(checkpoint, repeated), dims, 'text_only');
  const b = await firstSteps(overlay(checkpoint, grouped), { ...dims, linearAttention: { ...l, numKeyHeads: 2 } }, 'text_only');
  for (const [k, logits] of a.entries()) {
    const diff = maxAbsDiff(logits, b[k]!);
    assert.ok(diff <= 1e-4, `position ${k}: 4 repeated and 2 grouped key heads differ by ${diff}`);
  }
});

test('q/k/v biases (attention_bias): zero biases leave the logits as they are', async () => {
  const zeros: Replacements = new Map();
  const hd = dims.headDim!;
  dims.layerTypes!.forEach((type, i) => {
    if (type !== 'full_attention') return;
    const attn = `model.language_model.layers.${i}.self_attn`;
    zeros.set(`${attn}.q_proj.bias`, { shape: [2 * dims.numHeads * hd], data: new Float32Array(2 * dims.numHeads * hd) });
    for (const p of ['k_proj', 'v_proj']) zeros.set(`${attn}.${p}.bias`, { shape: [dims.numKvHeads * hd], data: new Float32Array(dims.numKvHeads * hd) });
  });
  const { tensors } = golden('text_only');
  const [logits] = await firstSteps(overlay(checkpoint, zeros), { ...dims, attentionBias: true }, 'text_only');
  const diff = maxAbsDiff(logits!, tensors.logits_last!);
  assert.ok(diff <= LOGITS_TOLERANCE, `logits_last with zero biases differs by ${diff}`);
  await assert.rejects(firstSteps(checkpoint, { ...dims, attentionBias: true }, 'text_only'), /lacks 6 tensor\(s\).*q_proj\.bias/);
});

test('int8 and int4: every linear layer, the linear-attention projections included, runs as MatMulNBits', async (t: TestContext) => {
  const linears = [
    ...['in_proj_qkv', 'in_proj_z', 'in_proj_b', 'in_proj_a', 'out_proj'].map((p) => `/llm/layers.0/linear_attn/${p}`),
    ...['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `/llm/layers.3/attn/${p}`),
    ...['gate_proj', 'up_proj', 'down_proj'].map((p) => `/llm/layers.0/mlp/${p}`),
    '/llm/lm_head',
  ];
  const { tensors } = golden('text_only');
  const errors: Record<string, number> = {};
  for (const precision of ['int8', 'int4'] as const) {
    const model = buildDecoder(checkpoint, dims, { ...TEXT_NAMES, logits: 'last', precision }).serialize();
    const bytes = Buffer.from(model.model.buffer, model.model.byteOffset, model.model.byteLength);
    model.weights?.remove();
    for (const node of linears) {
      assert.ok(bytes.includes(`${node}/MatMulNBits`), `${precision}: ${node} is not a MatMulNBits`);
      assert.ok(!bytes.includes(`${node}/FusedMatMul`), `${precision}: ${node} still has a float32 FusedMatMul`);
    }
    const quantised = await DecoderRunner.create(checkpoint, dims, { ...TEXT_NAMES, maxSeq: 64, threads: 1, precision });
    try {
      const logits = await quantised.start(tensors.inputs_embeds!, 25).prefill();
      assert.ok(logits.every(Number.isFinite), `${precision}: logits are finite`);
      errors[precision] = relativeRms(logits, tensors.logits_last!);
    } finally {
      await quantised.release();
    }
  }
  // On this random-weight model rounding the weights moves the logits a lot (the official code with int8-rounded
  // weights moves them by 19–41 %); int8 must still be the closer of the two, and both must really be quantised.
  t.diagnostic(`relative RMS error of logits_last: int8 ${errors.int8!.toFixed(3)}, int4 ${errors.int4!.toFixed(3)}`);
  assert.ok(errors.int8! > 1e-4 && errors.int8! < errors.int4!, `int8 ${errors.int8}, int4 ${errors.int4}`);
});
