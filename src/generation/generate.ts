// Greedy search and sampling as an async iterator of token ids (transformers 4.36 `greedy_search` / `sample`).

import { InvalidRequestError, RuntimeError } from '../errors.js';
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
    scores.set(checkLogitsRow(logits, model.vocabSize));
    const token = nextToken(scores, penalized, options, rng);
    generated.push(token);
    penalized.add(token);
    yield token;
    if (eosTokenIds.includes(token) || generated.length >= maxNewTokens || endsWithStop(generated, options.stopSequences)) return;
    signal?.throwIfAborted();
    [logits] = await model.step([token]);
  }
}

/**
 * Processes one row of logits (in place) and picks the next token from it. When sampling, a penalty or temperature
 * so small that it takes a finite score to +Infinity is refused: the softmax of such a row is NaN (torch's
 * multinomial fails there too); greedy decoding is what such a value tends to.
 */
function nextToken(scores: Float32Array, penalized: ReadonlySet<number>, options: ResolvedOptions, rng?: Xoshiro128StarStar): number {
  if (!rng) {
    if (options.repetitionPenalty !== 1) applyRepetitionPenalty(scores, penalized, options.repetitionPenalty);
    return argmax(scores);
  }
  if (!belowInfinity(scores)) throw new RuntimeError('cannot sample: the model returned NaN or infinite logits');
  if (options.repetitionPenalty !== 1) {
    applyRepetitionPenalty(scores, penalized, options.repetitionPenalty);
    if (!belowInfinity(scores)) throw tooSmall('repetitionPenalty', options.repetitionPenalty);
  }
  if (options.temperature !== 1) {
    applyTemperature(scores, options.temperature);
    if (!belowInfinity(scores)) throw tooSmall('temperature', options.temperature);
  }
  if (options.topK !== 0) applyTopK(scores, options.topK);
  if (options.topP < 1) applyTopP(scores, options.topP);
  softmax(scores);
  return sampleIndex(scores, rng);
}

/** Whether every score is below +Infinity (and none is NaN). */
function belowInfinity(scores: Float32Array): boolean {
  for (let i = 0; i < scores.length; i++) if (!(scores[i]! < Infinity)) return false;
  return true;
}

function tooSmall(option: string, value: number): InvalidRequestError {
  return new InvalidRequestError(
    `${option} ${value} is too small to sample with: the scores divided by it overflow float32; use a larger value, or greedy decoding`,
  );
}

function endsWithStop(generated: readonly number[], stopSequences: readonly (readonly number[])[]): boolean {
  return stopSequences.some(
    (stop) => stop.length <= generated.length && stop.every((id, i) => generated[generated.length - stop.length + i] === id),
  );
}
