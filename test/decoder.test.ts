import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { SafetensorsCheckpoint, type TensorInfo, type TensorSource } from '../src/checkpoint/safetensors.js';
import { CheckpointError, InvalidRequestError } from '../src/errors.js';
import { buildDecoder, type MiniCPMTextDims } from '../src/models/parts/decoder.js';
import { attentionBias, DecoderRunner } from '../src/runtime/decoder-runner.js';
import { NodeGraphSession } from '../src/runtime/session.js';
import { fixturePath, maxAbsDiff, readFixtureJson, readGoldenTensors } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
const LOGITS_TOLERANCE = 2e-3; // README §5

interface LlmCase {
  name: string;
  seq_len: number;
  prompt_logits_top5: { ids: number[]; values: number[] }[];
  runs: { greedy: { new_token_ids: number[] } };
}

const config = readFixtureJson<Record<string, number>>(FIXTURE, 'model', 'config.json');
const dims: MiniCPMTextDims = {
  hiddenSize: config.hidden_size!,
  numLayers: config.num_hidden_layers!,
  numHeads: config.num_attention_heads!,
  numKvHeads: config.num_key_value_heads!,
  intermediateSize: config.intermediate_size!,
  rmsNormEps: config.rms_norm_eps!,
  ropeTheta: config.rope_theta!,
  vocabSize: config.vocab_size!,
  scaleEmb: config.scale_emb!,
  dimModelBase: config.dim_model_base!,
  scaleDepth: config.scale_depth!,
};
const headDim = dims.hiddenSize / dims.numHeads;
const caseNames = readdirSync(fixturePath(FIXTURE, 'llm'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort();

let checkpoint: SafetensorsCheckpoint;
let runner: DecoderRunner;
let allPositions: NodeGraphSession;

before(async () => {
  checkpoint = new SafetensorsCheckpoint(fixturePath(FIXTURE, 'model'));
  runner = await DecoderRunner.create(checkpoint, dims, { maxSeq: 320, maxRows: 3, threads: 1 });
  const graph = buildDecoder(checkpoint, dims, { prefix: 'llm.', logits: 'all' });
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

/** Logits [seq, vocab] of one sequence run at once, without a cache (empty past). */
async function logitsWithoutCache(embeds: Float32Array, seq: number): Promise<Float32Array> {
  const feeds: Parameters<NodeGraphSession['run']>[0] = {
    inputs_embeds: { type: 'float32', data: embeds, dims: [1, seq, dims.hiddenSize] },
    position_ids: { type: 'int64', data: BigInt64Array.from({ length: seq }, (_, i) => BigInt(i)), dims: [1, seq] },
    attention_bias: { type: 'float32', data: attentionBias(1, seq, 0), dims: [1, 1, seq, seq] },
  };
  for (let i = 0; i < dims.numLayers; i++) {
    for (const kind of ['key', 'value']) {
      feeds[`past_${kind}_${i}`] = { type: 'float32', data: new Float32Array(0), dims: [1, dims.numKvHeads, 0, headDim] };
    }
  }
  const out = await allPositions.run(feeds, ['logits']);
  return out.logits!.data as Float32Array;
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

function row(m: Float32Array, r: number, width = dims.vocabSize): Float32Array {
  return m.subarray(r * width, (r + 1) * width);
}

function top5(logits: Float32Array): number[] {
  return [...logits.keys()].sort((a, b) => logits[b]! - logits[a]! || a - b).slice(0, 5);
}

test('prompt logits match the fixture for every chat: last position with the cache, every position without', async () => {
  assert.ok(caseNames.length >= 5, `expected the 5 llm cases, found ${caseNames}`);
  for (const name of caseNames) {
    const { json, tensors } = golden(name);
    const L = json.seq_len;
    const last = await runner.start(tensors.inputs_embeds!, L).prefill();
    const lastDiff = maxAbsDiff(last, tensors.logits_last!);
    assert.ok(lastDiff <= LOGITS_TOLERANCE, `${name}: logits_last differs by ${lastDiff}`);

    const all = await logitsWithoutCache(tensors.inputs_embeds!, L);
    assert.equal(all.length, L * dims.vocabSize);
    if (tensors.logits) {
      const allDiff = maxAbsDiff(all, tensors.logits);
      assert.ok(allDiff <= LOGITS_TOLERANCE, `${name}: logits [L, vocab] differ by ${allDiff}`);
    }
    json.prompt_logits_top5.forEach((expected, p) => {
      const got = row(all, p);
      assert.deepEqual(top5(got), expected.ids, `${name}: top-5 ids at position ${p}`);
      const valueDiff = maxAbsDiff(expected.ids.map((id) => got[id]!), expected.values);
      assert.ok(valueDiff <= LOGITS_TOLERANCE, `${name}: top-5 values at position ${p} differ by ${valueDiff}`);
    });
  }
});

test('a prompt prefilled in parts (prefillChunk) gives the fixture logits, and the cache after it the greedy steps', async () => {
  const chunked = await DecoderRunner.create(checkpoint, dims, { maxSeq: 320, threads: 1, prefillChunk: 13 });
  let checkedSteps = 0;
  try {
    for (const name of caseNames) {
      const { json, tensors } = golden(name);
      assert.ok(json.seq_len > 13, `${name}: the prompt must need more than one part`);
      let pauses = 0;
      const ids = Array.from({ length: json.seq_len }, (_, i) => i);
      const sequence = chunked.start(tensors.inputs_embeds!, json.seq_len, { ids, pause: async () => void pauses++ });
      const last = await sequence.prefill();
      assert.equal(pauses, Math.ceil(json.seq_len / 13) - 1, `${name}: one pause between each two parts`);
      const diff = maxAbsDiff(last, tensors.logits_last!);
      assert.ok(diff <= LOGITS_TOLERANCE, `${name}: logits_last differs by ${diff}`);
      const expected = tensors.greedy_teacher_forced_logits;
      if (!expected) continue;
      const [first] = await sequence.step([json.runs.greedy.new_token_ids[0]!]);
      const stepDiff = maxAbsDiff(first!, row(expected, 1));
      assert.ok(stepDiff <= LOGITS_TOLERANCE, `${name}: the first step after the parts differs by ${stepDiff}`);
      checkedSteps++;
    }
    assert.ok(checkedSteps >= 2, 'the fixture has teacher-forced logits for at least two chats');
  } finally {
    await chunked.release();
  }
});

for (const name of ['single_turn_grad', 'two_turn_wide']) {
  test(`${name}: the greedy tokens fed one by one through the cache give the teacher-forced logits`, async () => {
    const { json, tensors } = golden(name);
    const expected = tensors.greedy_teacher_forced_logits!;
    const tokens = json.runs.greedy.new_token_ids;
    const sequence = runner.start(tensors.inputs_embeds!, json.seq_len);
    let logits = await sequence.prefill();
    for (let k = 0; k < tokens.length; k++) {
      const diff = maxAbsDiff(logits, row(expected, k));
      assert.ok(diff <= LOGITS_TOLERANCE, `${name}: step ${k} (position ${json.seq_len + k - 1}) differs by ${diff}`);
      if (k + 1 < tokens.length) [logits] = (await sequence.step([tokens[k]!])) as [Float32Array];
    }
  });
}

test('step with parents fans out, reorders, duplicates and drops rows like independent sequences', async () => {
  const { json, tensors } = golden('single_turn_grad');
  const L = json.seq_len;
  const greedy = json.runs.greedy.new_token_ids;
  const teacher = tensors.greedy_teacher_forced_logits!;
  const sequence = runner.start(tensors.inputs_embeds!, L);
  await sequence.prefill();

  // Each step: tokens, parents, and the token history every row must have afterwards. Row histories follow the
  // greedy path where marked, so those rows are also checked against the fixture's teacher-forced logits.
  const [g0, g1, g2, g3] = greedy as [number, number, number, number];
  const steps: { tokens: number[]; parents?: number[]; histories: number[][]; greedyRow?: number }[] = [
    { tokens: [500, g0, 900], parents: [0, 0, 0], histories: [[500], [g0], [900]], greedyRow: 1 },
    { tokens: [g1, 501, 777], parents: [1, 0, 1], histories: [[g0, g1], [500, 501], [g0, 777]], greedyRow: 0 },
    { tokens: [g2, 502, 778], histories: [[g0, g1, g2], [500, 501, 502], [g0, 777, 778]], greedyRow: 0 },
    { tokens: [1234, g3], parents: [2, 0], histories: [[g0, 777, 778, 1234], [g0, g1, g2, g3]], greedyRow: 1 },
  ];
  for (const [s, { tokens, parents, histories, greedyRow }] of steps.entries()) {
    const rows = await sequence.step(tokens, parents);
    assert.equal(rows.length, tokens.length);
    for (const [r, history] of histories.entries()) {
      const alone = await logitsWithoutCache(concat(tensors.inputs_embeds!, runner.embed(history)), L + history.length);
      const diff = maxAbsDiff(rows[r]!, row(alone, L + history.length - 1));
      assert.ok(diff <= LOGITS_TOLERANCE, `step ${s} row ${r}: differs from the sequence run on its own by ${diff}`);
    }
    if (greedyRow !== undefined) {
      const diff = maxAbsDiff(rows[greedyRow]!, row(teacher, s + 1));
      assert.ok(diff <= LOGITS_TOLERANCE, `step ${s} row ${greedyRow}: differs from the fixture's teacher-forced row by ${diff}`);
    }
  }
});

test('the KV cache holds only the rows and positions in use, and a new prompt gives back what an answer grew', async () => {
  // layers × (keys, values) × rows × kv_heads × capacity × head_dim float32 values.
  const bytes = (rows: number, capacity: number) => dims.numLayers * 2 * rows * dims.numKvHeads * capacity * headDim * 4;
  const { json, tensors } = golden('single_turn_grad');
  const L = json.seq_len;
  const capacityFor = (positions: number) => Math.ceil(positions / 64) * 64;
  const greedy = runner.start(tensors.inputs_embeds!, L);
  await greedy.prefill();
  assert.equal(runner.kvCacheBytes, bytes(1, capacityFor(L)), 'one row after a prefill, though the runner allows 3');
  await greedy.step([json.runs.greedy.new_token_ids[0]!]);
  assert.equal(runner.kvCacheBytes, bytes(1, capacityFor(L + 1)));

  const beams = runner.start(tensors.inputs_embeds!, L);
  await beams.prefill();
  await beams.step([5, 6, 7], [0, 0, 0]);
  for (let k = 0; k < 80; k++) await beams.step([5, 6, 7]);
  assert.equal(runner.kvCacheBytes, bytes(3, capacityFor(L + 81)), 'three beam rows, grown with the answer');

  const short = runner.start(runner.embed([1, 2, 3]), 3);
  await short.prefill();
  assert.equal(runner.kvCacheBytes, bytes(1, 64), 'a new prompt that reuses nothing starts from the smallest cache');
});

type Replacements = Map<string, { shape: number[]; data: Float32Array }>;

/** A view of a checkpoint with some tensors replaced or hidden. */
function overlay(base: TensorSource, replaced: Replacements, hidden = new Set<string>()): TensorSource {
  return {
    names: () => base.names().filter((n) => !hidden.has(n)),
    has: (name) => !hidden.has(name) && base.has(name),
    info: (name): TensorInfo => ({ ...base.info(name), shape: replaced.get(name)?.shape ?? base.info(name).shape }),
    float32: (name) => replaced.get(name)?.data ?? base.float32(name),
    close: () => {},
  };
}

test('grouped-query attention: 4 key/value heads equal 8 heads whose pairs share weights', async () => {
  // Key/value head j of the grouped model is head 2j of the original; the 8-head model repeats it for head 2j+1.
  // Both must compute the same logits (upstream repeat_kv), through the prompt and the cache.
  const rowsPerHead = headDim * dims.hiddenSize;
  const grouped: Replacements = new Map();
  const paired: Replacements = new Map();
  for (let i = 0; i < dims.numLayers; i++) {
    for (const proj of ['k_proj', 'v_proj']) {
      const name = `llm.model.layers.${i}.self_attn.${proj}.weight`;
      const w = checkpoint.float32(name);
      const kv = new Float32Array(w.length / 2);
      const pairs = new Float32Array(w.length);
      for (let j = 0; j < dims.numHeads / 2; j++) {
        const head = w.subarray(2 * j * rowsPerHead, (2 * j + 1) * rowsPerHead);
        kv.set(head, j * rowsPerHead);
        pairs.set(head, 2 * j * rowsPerHead);
        pairs.set(head, (2 * j + 1) * rowsPerHead);
      }
      grouped.set(name, { shape: [dims.hiddenSize / 2, dims.hiddenSize], data: kv });
      paired.set(name, { shape: [dims.hiddenSize, dims.hiddenSize], data: pairs });
    }
  }
  const { json, tensors } = golden('single_turn_grad');
  const run = async (source: TensorSource, numKvHeads: number) => {
    const model = await DecoderRunner.create(source, { ...dims, numKvHeads }, { maxSeq: 64, threads: 1 });
    try {
      const sequence = model.start(tensors.inputs_embeds!, json.seq_len);
      const out = [await sequence.prefill()];
      for (const token of json.runs.greedy.new_token_ids.slice(0, 3)) out.push(...(await sequence.step([token])));
      return out;
    } finally {
      await model.release();
    }
  };
  const gqa = await run(overlay(checkpoint, grouped), dims.numHeads / 2);
  const mha = await run(overlay(checkpoint, paired), dims.numHeads);
  for (const [k, logits] of gqa.entries()) {
    const diff = maxAbsDiff(logits, mha[k]!);
    assert.ok(diff <= 1e-4, `position ${json.seq_len - 1 + k}: grouped and repeated heads differ by ${diff}`);
  }
});

test('a checkpoint without a decoder tensor, or with one of the wrong shape, is refused with a clear error', async () => {
  const missing = 'llm.model.layers.1.mlp.up_proj.weight';
  const incomplete = overlay(checkpoint, new Map(), new Set([missing]));
  await assert.rejects(DecoderRunner.create(incomplete, dims, { maxSeq: 8 }), (err: Error) => {
    assert.ok(err instanceof CheckpointError);
    assert.match(err.message, /lacks 1 tensor.*llm\.model\.layers\.1\.mlp\.up_proj\.weight.*incomplete/);
    return true;
  });
  const wrongDims = { ...dims, intermediateSize: 500 };
  assert.throws(() => buildDecoder(checkpoint, wrongDims, { prefix: 'llm.', logits: 'last' }), (err: Error) => {
    assert.ok(err instanceof CheckpointError);
    assert.match(err.message, /config\.json does not match.*gate_proj\.weight is \[512,256\], expected \[500,256\]/);
    return true;
  });
  const wrongPrefix = /lacks \d+ tensor\(s\).*prefix "model\."/;
  assert.throws(() => buildDecoder(checkpoint, dims, { prefix: 'model.', logits: 'last' }), wrongPrefix);
});

test('misuse of a sequence fails with clear errors', async () => {
  const embeds = runner.embed([1, 113, 500, 114]);
  const sequence = runner.start(embeds, 4);
  await assert.rejects(sequence.step([5]), /call prefill\(\)/);
  await sequence.prefill();
  await assert.rejects(sequence.step([5, 6]), /2 tokens for 1 cached rows; pass parents/);
  await assert.rejects(sequence.step([5, 6, 7, 8], [0, 0, 0, 0]), /set up for 1 to 3 rows/);
  await assert.rejects(sequence.step([5, 6], [0, 1]), /must name one of the 1 cached rows/);
  await assert.rejects(sequence.step([4000]), InvalidRequestError);
  assert.throws(() => runner.start(embeds, 5), /expected 5 positions × 256/);
  assert.throws(() => runner.start(new Float32Array(321 * dims.hiddenSize), 321), /raise maxSeq/);
  runner.start(embeds, 4);
  await assert.rejects(sequence.step([5]), /replaced by a later start/);
  const full = runner.start(new Float32Array(320 * dims.hiddenSize), 320);
  await full.prefill();
  await assert.rejects(full.step([5]), /would reach 321 positions, more than maxSeq 320/);
});
