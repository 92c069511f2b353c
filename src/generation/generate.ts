// Greedy search and sampling as an async iterator of token ids (transformers 4.36 `greedy_search` / `sample`).

import { InvalidRequestError } from '../errors.js';
import { checkLogitsRow, resolveOptions, type ResolvedOptions } from './options.js';
import { applyRepetitionPenalty, applyTemperature, applyTopK, applyTopP, argmax, softmax } from './processors.js';
import { randomSeed, sampleIndex, Xoshiro128StarStar } from './rng.js';
import type { GenerationOptions, LogitsModel } from './types.js';

/**
 * Generates up to maxNewTokens ids, yielding each as soon as it is chosen; the last one is EOS when the model
 * ended the answer. The next model call runs only when the caller asks for the next id. Each step:
 *   logits → repetition penalty on {bos} ∪ generated → argmax (greedy), or
 *   → temperature → top-k → top-p → softmax → one draw (sampling; min_tokens_to_keep 1).
 * Options are checked here, before the first call; an aborted signal makes the pending `next()` reject.
 */
export function generate(model: LogitsModel, options: GenerationOptions): AsyncGenerator<number, void, undefined> {
  const resolved = resolveOptions(options, model.vocabSize);
  if (resolved.numBeams > 1) {
    throw new InvalidRequestError(`numBeams is ${resolved.numBeams}: beam search cannot stream, call beamSearch instead`);
  }
  return run(model, resolved);
}

async function* run(model: LogitsModel, options: ResolvedOptions): AsyncGenerator<number, void, undefined> {
  const { maxNewTokens, eosTokenIds, signal } = options;
  const rng = options.doSample ? Xoshiro128StarStar.fromSeed(options.seed ?? randomSeed()) : undefined;
  const scores = new Float32Array(model.vocabSize);
  const penalized = new Set<number>([options.bosTokenId]);
  const generated: number[] = [];
  signal?.throwIfAborted();
  let logits: Float32Array | undefined = await model.prefill();
  for (;;) {
    signal?.throwIfAborted();
    const row = checkLogitsRow(logits, model.vocabSize);
    scores.set(row);
    const token = nextToken(scores, penalized, options, rng, row);
    generated.push(token);
    penalized.add(token);
    yield token;
    if (eosTokenIds.includes(token) || generated.length >= maxNewTokens || endsWithStop(generated, options.stopSequences)) return;
    signal?.throwIfAborted();
    [logits] = await model.step([token]);
  }
}

/**
 * Processes one row of logits (in place) and picks the next token from it. When a draw fails (the row's softmax is
 * NaN), `logits` (the model's row, untouched) tells whose fault it is: see overflowingOption.
 */
function nextToken(
  scores: Float32Array, penalized: ReadonlySet<number>, options: ResolvedOptions, rng: Xoshiro128StarStar | undefined, logits: Float32Array,
): number {
  if (options.repetitionPenalty !== 1) applyRepetitionPenalty(scores, penalized, options.repetitionPenalty);
  if (!rng) return argmax(scores);
  if (options.temperature !== 1) applyTemperature(scores, options.temperature);
  if (options.topK !== 0) applyTopK(scores, options.topK);
  if (options.topP < 1) applyTopP(scores, options.topP);
  softmax(scores);
  try {
    return sampleIndex(scores, rng);
  } catch (err) {
    throw overflowingOption(logits, penalized, options) ?? err;
  }
}

/**
 * After a failed draw: a penalty or temperature so small that it took one of the model's finite scores to +Infinity
 * is the user's value (torch's multinomial fails there too; greedy decoding is what such a value tends to), refused
 * by name; null otherwise (the model's row itself held NaN or +Infinity, or neither option overflows).
 */
function overflowingOption(logits: Float32Array, penalized: ReadonlySet<number>, options: ResolvedOptions): InvalidRequestError | null {
  const belowInfinity = (row: Float32Array) => row.every((s) => s < Infinity);
  if (!belowInfinity(logits)) return null;
  const scores = Float32Array.from(logits);
  applyRepetitionPenalty(scores, penalized, options.repetitionPenalty);
  let option: 'repetitionPenalty' | 'temperature' = 'repetitionPenalty';
  if (belowInfinity(scores)) {
    applyTemperature(scores, options.temperature);
    if (belowInfinity(scores)) return null;
    option = 'temperature';
  }
  const value = options[option];
  return new InvalidRequestError(
    `${option} ${value} is too small to sample with: the scores divided by it overflow float32; use a larger value, or greedy decoding`,
  );
}

function endsWithStop(generated: readonly number[], stopSequences: readonly (readonly number[])[]): boolean {
  return stopSequences.some(
    (stop) => stop.length <= generated.length && stop.every((id, i) => generated[generated.length - stop.length + i] === id),
  );
}
