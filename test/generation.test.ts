import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidRequestError } from '../src/errors.js';
import { beamSearch } from '../src/generation/beam-search.js';
import { generate } from '../src/generation/generate.js';
import {
  applyRepetitionPenalty, applyTemperature, applyTopK, applyTopP, argmax, logSoftmax, softmax, topKIndices,
} from '../src/generation/processors.js';
import { sampleIndex, Xoshiro128StarStar } from '../src/generation/rng.js';
import type { GenerationOptions, LogitsModel } from '../src/generation/types.js';
import { maxAbsDiff, openGolden, readFixtureJson } from './helpers/fixtures.js';

const f32 = (values: number[]) => Float32Array.from(values);
const close = (actual: ArrayLike<number>, expected: number[], tolerance = 1e-6) =>
  assert.ok(maxAbsDiff(actual, expected) <= tolerance, `${Array.from(actual)} vs ${expected}`);

// ---- processors, against hand arithmetic -------------------------------------------------------------------

test('repetition penalty divides positive and multiplies negative scores, once per distinct id', () => {
  const scores = f32([2, -1, 0.5, 3]);
  applyRepetitionPenalty(scores, new Set([0, 1, 1]), 2);
  assert.deepEqual(Array.from(scores), [1, -2, 0.5, 3]); // 2/2, -1·2, untouched, untouched
});

test('temperature divides every score', () => {
  const scores = f32([1, -2, 0.5]);
  applyTemperature(scores, 0.5);
  assert.deepEqual(Array.from(scores), [2, -4, 1]);
});

test('top-k keeps the k largest and every tie of the k-th; min_tokens_to_keep raises k', () => {
  const scores = f32([1, 5, 3, 5, 2]);
  applyTopK(scores, 2); // k-th largest is 5 (twice): both stay
  assert.deepEqual(Array.from(scores), [-Infinity, 5, -Infinity, 5, -Infinity]);
  const three = f32([1, 5, 3, 5, 2]);
  applyTopK(three, 3); // threshold 3
  assert.deepEqual(Array.from(three), [-Infinity, 5, 3, 5, -Infinity]);
  const raised = f32([1, 4, 3]);
  applyTopK(raised, 1, 2); // k = max(1, 2)
  assert.deepEqual(Array.from(raised), [-Infinity, 4, 3]);
  const all = f32([1, 4, 3]);
  applyTopK(all, 10);
  assert.deepEqual(Array.from(all), [1, 4, 3]);
});

test('top-p removes tokens whose ascending cumulative probability is ≤ 1 − p and keeps the crossing token', () => {
  // probabilities 0.1 0.2 0.3 0.4 → ascending cumulative 0.1, 0.3, 0.6, 1.0
  const logits = () => f32([0.3, 0.1, 0.4, 0.2].map(Math.log));
  const run = (p: number, keep = 1) => {
    const s = logits();
    applyTopP(s, p, keep);
    return Array.from(s, (v) => v > -Infinity);
  };
  assert.deepEqual(run(0.75), [true, false, true, true]); // 1 − p = 0.25: only 0.1 (cum 0.1) goes
  assert.deepEqual(run(0.5), [true, false, true, false]); // 0.5: 0.1 and 0.2 go; 0.3 crosses (cum 0.6) and stays
  assert.deepEqual(run(0.3), [false, false, true, false]); // 0.7: only 0.4 stays
  assert.deepEqual(run(0.3, 2), [true, false, true, false]); // the two best always stay
  assert.deepEqual(run(1), [true, true, true, true]);
  // 4096 equal logits: each probability is exactly 2^-12, so the rank-r token's ascending cumulative probability is
  // exactly 1 − r/4096; it goes when that is ≤ 1 − p (≤, not <): p = 1/2 keeps 2048, 1/16 keeps 256, 1/128 keeps 32,
  // the lowest indices first on these ties.
  for (const [p, kept] of [[0.5, 2048], [1 / 16, 256], [1 / 128, 32]] as const) {
    const s = new Float32Array(4096);
    applyTopP(s, p);
    assert.deepEqual([s.indexOf(-Infinity), s.lastIndexOf(0)], [kept, kept - 1]);
  }
  // After top-k, the -Infinity tokens have probability 0: {0.3, 0.4} renormalise to 3/7, 4/7 and p = 0.5 keeps 4/7.
  const cut = logits();
  applyTopK(cut, 2);
  applyTopP(cut, 0.5);
  assert.deepEqual(Array.from(cut, (v) => v > -Infinity), [false, false, true, false]);
});

test('log-softmax and softmax: hand values, shift invariance, -Infinity', () => {
  const a = f32([0, 0, Math.log(2)]); // probabilities 1/4, 1/4, 1/2
  logSoftmax(a);
  close(a, [-Math.log(4), -Math.log(4), -Math.log(2)]);
  const b = f32([1000, 1000]);
  logSoftmax(b);
  close(b, [-Math.log(2), -Math.log(2)]);
  const c = f32([-Infinity, 0, Math.log(3)]);
  softmax(c);
  close(c, [0, 0.25, 0.75]);
});

test('log-softmax of real logits stays within 1e-5 of the float64 formula', () => {
  const golden = openGolden('minicpmv2-tiny', 'llm', 'single_turn_grad.safetensors');
  const logits = golden.float32('logits_last');
  golden.close();
  const max = Math.max(...logits);
  const logSum = Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
  const ours = Float32Array.from(logits);
  logSoftmax(ours);
  assert.ok(maxAbsDiff(ours, Array.from(logits, (x) => x - max - logSum)) <= 1e-5);
});

test('topKIndices and argmax: largest first, lower index first on ties', () => {
  const v = f32([3, 7, 7, -1, 9, 3]);
  assert.deepEqual(Array.from(topKIndices(v, 4)), [4, 1, 2, 0]);
  assert.deepEqual(Array.from(topKIndices(v, 10)), [4, 1, 2, 0, 5, 3]);
  assert.equal(argmax(f32([1, 5, 5])), 1);
  // against a full sort, on many ties (values (i·7919) mod 13)
  for (const [n, k] of [[50, 7], [300, 64], [1000, 999], [40, 0]] as const) {
    const values = Float32Array.from({ length: n }, (_, i) => (i * 7919) % 13);
    const sorted = [...values.keys()].sort((a, b) => values[b]! - values[a]! || a - b);
    assert.deepEqual(Array.from(topKIndices(values, k)), sorted.slice(0, k));
  }
});

// ---- random stream -------------------------------------------------------------------------------------------

test('xoshiro128** gives the published output for state (1, 2, 3, 4) and is seeded by SplitMix64', () => {
  const rng = Xoshiro128StarStar.fromState(1, 2, 3, 4);
  // Reference sequence of the algorithm (Blackman & Vigna), as in the rand_xoshiro crate's tests.
  assert.deepEqual(Array.from({ length: 10 }, () => rng.nextUint32()), [
    11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804,
  ]);
  // SplitMix64 from seed 0 outputs 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4 (its well-known first values).
  const seeded = Xoshiro128StarStar.fromSeed(0);
  const fromWords = Xoshiro128StarStar.fromState(0x7b1dcdaf, 0xe220a839, 0xa1b965f4, 0x6e789e6a);
  for (let i = 0; i < 5; i++) assert.equal(seeded.nextUint32(), fromWords.nextUint32());
  const floats = Array.from({ length: 1000 }, () => seeded.nextFloat());
  assert.ok(floats.every((x) => x >= 0 && x < 1));
});

test('sampleIndex never draws a zero-probability index', () => {
  const rng = Xoshiro128StarStar.fromSeed(5);
  for (let i = 0; i < 200; i++) assert.equal(sampleIndex(f32([0, 0, 1, 0]), rng), 2);
});

// ---- a toy model whose logits depend on what each row has been fed -------------------------------------------

const [BOS, EOS, A, B, C, D, E, F] = [1, 2, 3, 4, 5, 6, 7, 8];
const VOCAB = 9;

/** Logits with the given values; every other token gets `rest`. */
function logitsOf(entries: [number, number][], rest = -30): Float32Array {
  const row = new Float32Array(VOCAB).fill(rest);
  for (const [token, value] of entries) row[token] = value;
  return row;
}
/** Logits whose softmax is (almost exactly: the rest get e^-30) the given probabilities. */
const probsOf = (entries: [number, number][]) => logitsOf(entries.map(([t, p]) => [t, Math.log(p)]));

class ToyModel implements LogitsModel {
  readonly vocabSize = VOCAB;
  readonly steps: { tokens: number[]; parents?: number[] }[] = [];
  private rows: number[][] = [];
  /** `table` maps the last fed token (or 'prompt') to that row's next logits; the arrays are shared, never copied. */
  constructor(readonly table: Map<number | 'prompt', Float32Array>) {}

  private next(history: number[]): Float32Array {
    const row = this.table.get(history.length === 0 ? 'prompt' : history[history.length - 1]!);
    if (!row) throw new Error(`no logits after ${history}`);
    return row;
  }
  async prefill() {
    this.rows = [[]];
    return this.next([]);
  }
  async step(tokens: number[], parents?: number[]) {
    this.steps.push({ tokens: [...tokens], ...(parents && { parents: [...parents] }) });
    const base = parents ? parents.map((p) => this.rows[p]!) : this.rows;
    assert.equal(base.length, tokens.length);
    this.rows = base.map((h, i) => [...h, tokens[i]!]);
    return this.rows.map((h) => this.next(h));
  }
}

const toy = (rows: [number | 'prompt', Float32Array][]) => new ToyModel(new Map(rows));
const base: GenerationOptions = { maxNewTokens: 10, eosTokenId: EOS, bosTokenId: BOS };
async function collect(it: AsyncIterable<number>): Promise<number[]> {
  const ids: number[] = [];
  for await (const id of it) ids.push(id);
  return ids;
}

// ---- greedy and sampling -------------------------------------------------------------------------------------

const chain = () =>
  toy([
    ['prompt', logitsOf([[A, 3], [B, 2], [EOS, 1]])],
    [A, logitsOf([[B, 4], [A, 1]])],
    [B, logitsOf([[EOS, 5], [A, 4.9]])],
  ]);

test('greedy follows the argmax, yields the final EOS, and stops at maxNewTokens', async () => {
  const model = chain();
  assert.deepEqual(await collect(generate(model, base)), [A, B, EOS]);
  assert.deepEqual(model.steps, [{ tokens: [A] }, { tokens: [B] }]); // prefill gives A; no call after EOS
  const short = chain();
  assert.deepEqual(await collect(generate(short, { ...base, maxNewTokens: 2 })), [A, B]);
  assert.equal(short.steps.length, 1);
});

test('greedy yields each id before the next model call and honours stop sequences', async () => {
  const model = chain();
  const it = generate(model, base);
  assert.deepEqual(await it.next(), { value: A, done: false });
  assert.equal(model.steps.length, 0);
  await it.return();
  assert.deepEqual(await collect(generate(chain(), { ...base, stopSequences: [[B, A], [A, B]] })), [A, B]);
});

test('repetition penalty acts on {bos} ∪ generated, on the raw logits', async () => {
  const rows: [number | 'prompt', Float32Array][] = [
    ['prompt', logitsOf([[BOS, 4], [A, 3]])], // BOS 4/2 = 2 < A 3 → A (without the penalty: BOS)
    [BOS, logitsOf([[EOS, 1]])],
    [A, logitsOf([[A, 4], [C, 3]])], // A 4/2 = 2 < C 3 → C
    [C, logitsOf([[EOS, -1], [A, -0.6]])], // A −0.6·2 = −1.2 < EOS −1 → EOS
  ];
  const model = toy(rows);
  const shared = rows.map(([, r]) => Float32Array.from(r));
  assert.deepEqual(await collect(generate(model, { ...base, repetitionPenalty: 2 })), [A, C, EOS]);
  assert.deepEqual(await collect(generate(toy(rows), base)), [BOS, EOS]);
  rows.forEach(([, r], i) => assert.deepEqual(r, shared[i])); // the model's arrays are left alone
});

/** A model whose next-token distribution never changes: a .1, b .2, c .3, d .4, nothing else. */
function stationary(): ToyModel {
  const row = logitsOf([[A, Math.log(0.1)], [B, Math.log(0.2)], [C, Math.log(0.3)], [D, Math.log(0.4)]], -Infinity);
  return toy([['prompt', row], [A, row], [B, row], [C, row], [D, row]]);
}
async function shares(options: Partial<GenerationOptions>): Promise<number[]> {
  const ids = await collect(generate(stationary(), { ...base, maxNewTokens: 4000, doSample: true, seed: 7, ...options }));
  return [A, B, C, D].map((t) => ids.filter((id) => id === t).length / ids.length);
}

test('sampling: a seed reproduces its draws, top-k 1 is greedy', async () => {
  const run = (seed: number) => collect(generate(stationary(), { ...base, maxNewTokens: 64, doSample: true, seed }));
  assert.deepEqual(await run(1), await run(1));
  assert.notDeepEqual(await run(1), await run(2));
  for (const seed of [1, 2, 3]) {
    assert.deepEqual(await collect(generate(chain(), { ...base, doSample: true, topK: 1, seed })), [A, B, EOS]);
  }
});

test('sampling follows the warped distribution (4000 draws, ±0.03 ≈ 4σ)', async () => {
  const near = (got: number[], want: number[]) => got.forEach((g, i) => assert.ok(Math.abs(g - want[i]!) <= 0.03, `${got}`));
  near(await shares({ topK: 0 }), [0.1, 0.2, 0.3, 0.4]);
  // top-p 0.5: 0.1 and 0.2 go (cumulative 0.1, 0.3 ≤ 0.5), c and d stay in the ratio 3 : 4
  const topP = await shares({ topP: 0.5 });
  assert.deepEqual(topP.slice(0, 2), [0, 0]);
  near(topP, [0, 0, 3 / 7, 4 / 7]);
  // temperature 0.5 squares the probabilities, top-k 2 keeps c, d: 0.09 : 0.16
  near(await shares({ temperature: 0.5, topK: 2 }), [0, 0, 0.09 / 0.25, 0.16 / 0.25]);
});

test('an aborted signal stops generation between steps', async () => {
  const controller = new AbortController();
  const model = chain();
  const it = generate(model, { ...base, signal: controller.signal });
  await it.next();
  controller.abort();
  await assert.rejects(it.next(), { name: 'AbortError' });
  assert.equal(model.steps.length, 0);
  await assert.rejects(beamSearch(chain(), { ...base, numBeams: 2, signal: AbortSignal.abort() }), { name: 'AbortError' });
});

test('invalid options are rejected with InvalidRequestError', async () => {
  assert.throws(() => generate(chain(), { ...base, numBeams: 3 }), InvalidRequestError);
  assert.throws(() => generate(chain(), { ...base, maxNewTokens: 0 }), InvalidRequestError);
  assert.throws(() => generate(chain(), { ...base, topP: 1.5 }), InvalidRequestError);
  assert.throws(() => generate(chain(), { ...base, eosTokenId: VOCAB }), InvalidRequestError);
  await assert.rejects(beamSearch(chain(), base), InvalidRequestError);
  await assert.rejects(beamSearch(chain(), { ...base, numBeams: 2, doSample: true }), InvalidRequestError);
});

test('sampling refuses a temperature or repetition penalty that overflows float32 scores; greedy and a small value still work', async () => {
  // logits 3, 2, 1: 3 / 1e-40 is beyond float32's 3.4e38; 3 / 1e-20 = 3e20 is not
  const sample = (options: Partial<GenerationOptions>) => collect(generate(chain(), { ...base, doSample: true, seed: 1, ...options }));
  await assert.rejects(sample({ temperature: 1e-40 }), (err: Error) => err instanceof InvalidRequestError && /^temperature 1e-40 is too small/.test(err.message));
  assert.deepEqual(await sample({ temperature: 1e-20 }), [A, B, EOS]);
  // the penalty divides BOS's score; give BOS a positive logit so that 1 / 1e-40 overflows
  const bosFirst = toy([['prompt', logitsOf([[BOS, 1], [A, 3]])], [A, logitsOf([[EOS, 5]])]]);
  const penalized = generate(bosFirst, { ...base, doSample: true, seed: 1, repetitionPenalty: 1e-40 });
  await assert.rejects(collect(penalized), (err: Error) => err instanceof InvalidRequestError && /^repetitionPenalty 1e-40 is too small/.test(err.message));
  const greedy = generate(toy([['prompt', logitsOf([[BOS, 1], [A, 3]])], [A, logitsOf([[EOS, 5]])], [BOS, logitsOf([[EOS, 5]])]]), { ...base, repetitionPenalty: 1e-40 });
  assert.deepEqual(await collect(greedy), [BOS, EOS]);
});

// ---- beam search (BeamSearchScorer), derived by hand with probabilities: a beam's sum is ln(product) ----------

test('beam: EOS in the top ranks closes a hypothesis; finalize lets the unfinished beams compete', async () => {
  const model = toy([
    ['prompt', probsOf([[A, 0.5], [B, 0.4], [EOS, 0.1]])],
    [A, probsOf([[A, 0.5], [B, 0.2], [EOS, 0.3]])],
    [B, probsOf([[A, 0.35], [B, 0.25], [EOS, 0.4]])],
  ]);
  // step 1: a .5, b .4 become the beams (the walk stops before EOS at rank 2).
  // step 2: aa .25, b·EOS .16, a·EOS .15, ba .14 | ab .10 … → b·EOS (rank 1) closes [b]: ln .16 / 2 = −0.916;
  //         a·EOS is rank 2 ≥ numBeams: skipped; beams aa, ba.
  // step 3: aaa .125, aa·EOS .075, baa .07 | aab .05 … → aa·EOS closes [a a]: ln .075 / 3 = −0.863;
  //         done? worst −0.916 ≥ ln .125 / 3 = −0.693: no. max length: finalize adds aaa (ln .125/3 = −0.693,
  //         evicting [b]) and tries baa (ln .07/3 = −0.886 < worst −0.863: refused). The longer aaa wins although
  //         its sum ln .125 is below [b]'s ln .16: the division by the length decides. No EOS at max_length.
  const result = await beamSearch(model, { ...base, maxNewTokens: 3, numBeams: 2 });
  assert.deepEqual(result.ids, [A, A, A]);
  assert.ok(Math.abs(result.score - Math.log(0.125) / 3) < 1e-5);
  // the first step fans the prompt row out; the second keeps aa from beam 0 and ba from beam 1
  assert.deepEqual(model.steps, [{ tokens: [A, B], parents: [0, 0] }, { tokens: [A, A], parents: [0, 1] }]);
});

test('beam: an EOS ranked at numBeams or lower is skipped, so it cannot fill the hypotheses and stop the search', async () => {
  const model = toy([
    ['prompt', probsOf([[A, 0.5], [B, 0.45], [EOS, 0.05]])],
    [A, probsOf([[EOS, 0.5], [C, 0.48], [E, 0.02]])],
    [B, probsOf([[EOS, 0.52], [D, 0.48]])],
    [C, probsOf([[E, 0.45], [F, 0.4], [EOS, 0.15]])],
    [D, probsOf([[E, 0.44], [F, 0.41], [EOS, 0.15]])],
    [E, probsOf([[A, 0.9], [EOS, 0.1]])],
    [F, probsOf([[A, 0.8], [EOS, 0.2]])],
  ]);
  // step 2: a·EOS .25, aC .24, b·EOS .234, bD .216 → [a] closes (ln .25 / 2 = −0.693); b·EOS is rank 2: skipped.
  // step 3: aCE .108, aCF .096, bDE .095 … → beams aCE, aCF (both from beam 0). One hypothesis: not done.
  //   (Had b·EOS been kept, ln .234 / 2 = −0.726 ≥ ln .108 / 3 = −0.742 would end the search here with [a, EOS].)
  // step 4: aCEA .0972, aCFA .0768 → max length; finalize: ln .0972 / 4 = −0.583 beats [a] (−0.693).
  const result = await beamSearch(model, { ...base, maxNewTokens: 4, numBeams: 2 });
  assert.deepEqual(result.ids, [A, C, E, A]);
  assert.ok(Math.abs(result.score - Math.log(0.0972) / 4) < 1e-5);
  assert.deepEqual(model.steps.slice(1), [{ tokens: [C, D], parents: [0, 1] }, { tokens: [E, F], parents: [0, 0] }]);
});

test('beam: the done condition stops early and the shorter hypothesis gets its EOS back', async () => {
  const model = toy([
    ['prompt', probsOf([[A, 0.6], [B, 0.35], [EOS, 0.05]])],
    [A, probsOf([[EOS, 0.8], [A, 0.15], [B, 0.05]])],
    [B, probsOf([[EOS, 0.7], [A, 0.2], [B, 0.1]])],
  ]);
  // step 2: a·EOS .48, b·EOS .245, aa .09, ba .07 → hypotheses [a] ln .48/2 = −0.367, [b] ln .245/2 = −0.703;
  //         done? worst −0.703 ≥ ln .48 / 2: no.
  // step 3: aa·EOS .072, ba·EOS .056, aaa .0135, baa .0105 → ln .072/3 = −0.877 and ln .056/3 = −0.961 are not
  //         above the worst −0.703: refused. done? −0.703 ≥ ln .072 / 3 = −0.877: yes, stop (no third model call).
  const result = await beamSearch(model, { ...base, maxNewTokens: 5, numBeams: 2 });
  assert.deepEqual(result.ids, [A, EOS]);
  assert.ok(Math.abs(result.score - Math.log(0.48) / 2) < 1e-5);
  assert.equal(model.steps.length, 2);
});

test('two EOS ids: greedy stops on either; beam search 4.36 and 5 differ in the early stop and the EOS they append', async () => {
  const eos = { eosTokenId: [EOS, F] };
  const greedy = toy([['prompt', logitsOf([[A, 3]])], [A, logitsOf([[F, 4], [B, 1]])]]);
  assert.deepEqual(await collect(generate(greedy, { ...base, ...eos })), [A, F]);
  const rows: [number | 'prompt', Float32Array][] = [
    ['prompt', probsOf([[A, 0.5], [B, 0.45], [EOS, 0.05]])],
    [A, probsOf([[F, 0.6], [A, 0.3], [B, 0.1]])],
    [B, probsOf([[EOS, 0.5], [A, 0.45], [B, 0.05]])],
  ];
  // Top 3·2 candidates (two EOS ids). step 2: a·F .30, b·EOS .225, bA .2025, aA .15 → [a] closes with F (ln .3 / 2 =
  //   −0.602), [b] with EOS (ln .225 / 2 = −0.746); beams bA, aA. Done? 4.36 compares the worst −0.746 with the best
  //   of all candidates, ln .30 / 2 = −0.602: no; 5 with the best beam, ln .2025 / 2 = −0.799: yes, it stops.
  // 4.36, step 3: bA·F .1215 (ln / 3 = −0.703) replaces [b]; aA·F .09 (−0.803) is refused; done: −0.703 ≥ ln .1215 / 3.
  // Both return [a], 4.36 with the first EOS id, 5 with the F it generated.
  for (const [version, ending, calls] of [['4.36', EOS, 2], ['5', F, 1]] as const) {
    const model = toy(rows);
    const result = await beamSearch(model, { ...base, ...eos, maxNewTokens: 6, numBeams: 2, beamSearchVersion: version });
    assert.deepEqual(result.ids, [A, ending], `transformers ${version}`);
    assert.ok(Math.abs(result.score - Math.log(0.3) / 2) < 1e-5);
    assert.equal(model.steps.length, calls, `transformers ${version}: model steps`);
  }
});

test('beam: the first step scores only the prompt row (beam scores [0, −1e9, −1e9]); penalty on log-probs', async () => {
  const next = probsOf([[A, 0.55], [B, 0.25], [C, 0.15], [EOS, 0.05]]);
  const model = toy([['prompt', probsOf([[A, 0.4], [B, 0.3], [C, 0.2], [EOS, 0.1]])], [A, next], [B, next], [C, next]]);
  // step 1: beams a, b, c (three distinct tokens: identical rows with scores 0, 0, 0 would give a, a, a).
  // step 2, penalty 2 doubles the log-prob of a beam's own token: a·a = ln .4 + 2 ln .55 = −2.112,
  //   b·a = ln .3 + ln .55 = −1.802, c·a = ln .2 + ln .55 = −2.207, a·b = ln .4 + ln .25 = −2.303 …
  //   → beams ba, aa, ca; finalize: ba −0.901 best. Without the penalty aa (ln .22 = −1.514) would win.
  const result = await beamSearch(model, { ...base, maxNewTokens: 2, numBeams: 3, repetitionPenalty: 2 });
  assert.deepEqual(result.ids, [B, A]);
  assert.ok(Math.abs(result.score - Math.log(0.3 * 0.55) / 2) < 1e-5);
  assert.deepEqual(model.steps, [{ tokens: [A, B, C], parents: [0, 0, 0] }]);
  assert.deepEqual((await beamSearch(toy([...model.table]), { ...base, maxNewTokens: 2, numBeams: 3 })).ids, [A, A]);
});

// ---- the fixture: replaying the logits the official run saw --------------------------------------------------

interface GreedyStep { top5_ids: number[]; top5_scores: number[]; penalized_ids?: number[]; penalized_scores?: number[] }
interface LlmCase { runs: Record<string, { new_token_ids: number[]; steps?: GreedyStep[]; chat_kwargs: { max_new_tokens: number } }> }
const RUNS = [['greedy', 1], ['greedy_rp1.05', 1.05]] as const;

/** Replays recorded logits rows: prefill gives row 0, step k gives row k once fed the recorded token k − 1. */
function replay(rows: Float32Array[], ids: number[]): LogitsModel {
  let k = 0;
  return {
    vocabSize: rows[0]!.length,
    prefill: async () => rows[(k = 0)]!,
    step: async (tokens) => {
      assert.deepEqual(tokens, [ids[k]], 'the replay is only valid along the recorded tokens');
      k++;
      if (!rows[k]) throw new Error(`no recorded logits for step ${k}`);
      return [rows[k]!];
    },
  };
}

/** Checks the recorded top-5 and penalized scores of step k (the rows are bit-identical to the run's logits). */
function checkStep(row: Float32Array, step: GreedyStep, generated: number[], penalty: number): void {
  const scores = Float32Array.from(row);
  const ids = new Set([BOS, ...generated]);
  if (penalty !== 1) applyRepetitionPenalty(scores, ids, penalty);
  const top5 = Array.from(topKIndices(scores, 5));
  assert.deepEqual(top5, step.top5_ids);
  assert.ok(maxAbsDiff(top5.map((i) => scores[i]!), step.top5_scores) <= 2e-3);
  if (penalty === 1) return;
  const sorted = [...ids].sort((a, b) => a - b);
  assert.deepEqual(sorted, step.penalized_ids);
  assert.equal(maxAbsDiff(sorted.map((i) => scores[i]!), step.penalized_scores!), 0);
}

const options = (penalty: number, maxNewTokens: number): GenerationOptions =>
  ({ maxNewTokens, eosTokenId: EOS, bosTokenId: BOS, repetitionPenalty: penalty });

for (const name of ['single_turn_grad', 'two_turn_wide']) {
  test(`fixture ${name}: replayed teacher-forced logits reproduce greedy and rp1.05 ids and every step`, async () => {
    const data = readFixtureJson<LlmCase>('minicpmv2-tiny', 'llm', `${name}.json`);
    const golden = openGolden('minicpmv2-tiny', 'llm', `${name}.safetensors`);
    const all = golden.float32('greedy_teacher_forced_logits');
    const last = golden.float32('logits_last');
    golden.close();
    const vocab = last.length;
    const rows = Array.from({ length: all.length / vocab }, (_, k) => all.subarray(k * vocab, (k + 1) * vocab));
    assert.equal(maxAbsDiff(rows[0]!, last), 0);
    for (const [run, penalty] of RUNS) {
      const { new_token_ids: ids, steps, chat_kwargs } = data.runs[run]!;
      // rp1.05 chose the greedy tokens in both cases, so the greedy rows are its inputs too
      assert.deepEqual(ids, data.runs.greedy!.new_token_ids);
      assert.deepEqual(await collect(generate(replay(rows, ids), options(penalty, chat_kwargs.max_new_tokens))), ids);
      steps!.forEach((step, k) => checkStep(rows[k]!, step, ids.slice(0, k), penalty));
    }
  });
}

test('fixture: the first step of every chat (logits_last) matches greedy and rp1.05', async () => {
  for (const name of ['single_turn_grad', 'two_turn_wide', 'zh_plain_gray', 'long_prompt_hk', 'repeat_rp_shapes']) {
    const data = readFixtureJson<LlmCase>('minicpmv2-tiny', 'llm', `${name}.json`);
    const golden = openGolden('minicpmv2-tiny', 'llm', `${name}.safetensors`);
    const last = golden.float32('logits_last');
    golden.close();
    for (const [run, penalty] of RUNS) {
      const { new_token_ids: ids, steps } = data.runs[run]!;
      checkStep(last, steps![0]!, [], penalty);
      assert.deepEqual(await collect(generate(replay([last], ids), options(penalty, 1))), [ids[0]]);
    }
  }
});
