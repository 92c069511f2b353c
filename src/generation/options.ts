// Validation and defaults of GenerationOptions (transformers 4.36 GenerationConfig defaults).

import { InvalidRequestError, RuntimeError } from '../errors.js';
import type { BeamSearchVersion, GenerationOptions } from './types.js';

export interface ResolvedOptions {
  maxNewTokens: number;
  /** The first EOS id (the one 4.36 beam search appends). */
  eosTokenId: number;
  /** Every id that ends an answer (eosTokenId first). */
  eosTokenIds: readonly number[];
  bosTokenId: number;
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  numBeams: number;
  seed: number | undefined;
  signal: AbortSignal | undefined;
  stopSequences: readonly (readonly number[])[];
  beamSearchVersion: BeamSearchVersion;
}

/** The most beams a beam search may keep (a model's maxBeams included). */
export const MAX_BEAMS = 1024;

function isIntegerIn(value: unknown, min: number, max: number): value is number {
  return Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max;
}

/** Checks every option against the model's vocabulary and fills in the defaults. */
export function resolveOptions(options: GenerationOptions, vocabSize: number): ResolvedOptions {
  const { maxNewTokens, eosTokenId, bosTokenId } = options;
  const { doSample = false, temperature = 1, topK = 50, topP = 1, repetitionPenalty = 1, numBeams = 1 } = options;
  if (!isIntegerIn(maxNewTokens, 1, Number.MAX_SAFE_INTEGER)) {
    throw new InvalidRequestError(`maxNewTokens must be a positive integer, got ${maxNewTokens}`);
  }
  const eosTokenIds: readonly number[] = typeof eosTokenId === 'number' ? [eosTokenId] : Array.isArray(eosTokenId) ? eosTokenId : [];
  const ids: [string, unknown][] = [...eosTokenIds.map((id) => ['eosTokenId', id] as [string, unknown]), ['bosTokenId', bosTokenId]];
  if (eosTokenIds.length === 0) ids.push(['eosTokenId', eosTokenId]);
  for (const [name, id] of ids) {
    if (!isIntegerIn(id, 0, vocabSize - 1)) {
      throw new InvalidRequestError(`${name} must be a token id in [0, ${vocabSize}) (or a non-empty list of them), got ${id}`);
    }
  }
  const beamSearchVersion = options.beamSearchVersion ?? '4.36';
  if (beamSearchVersion !== '4.36' && beamSearchVersion !== '5') {
    throw new InvalidRequestError(`beamSearchVersion must be '4.36' or '5', got ${String(beamSearchVersion)}`);
  }
  if (typeof doSample !== 'boolean') throw new InvalidRequestError(`doSample must be true or false, got ${doSample}`);
  if (!(Number.isFinite(temperature) && temperature > 0)) {
    throw new InvalidRequestError(`temperature must be a number above 0, got ${temperature}`);
  }
  if (!isIntegerIn(topK, 0, Number.MAX_SAFE_INTEGER)) {
    throw new InvalidRequestError(`topK must be an integer ≥ 0 (0 turns it off), got ${topK}`);
  }
  if (!(topP >= 0 && topP <= 1)) throw new InvalidRequestError(`topP must be in [0, 1] (1 turns it off), got ${topP}`);
  if (!(Number.isFinite(repetitionPenalty) && repetitionPenalty > 0)) {
    throw new InvalidRequestError(`repetitionPenalty must be a number above 0 (1 turns it off), got ${repetitionPenalty}`);
  }
  if (!isIntegerIn(numBeams, 1, MAX_BEAMS)) throw new InvalidRequestError(`numBeams must be an integer in [1, ${MAX_BEAMS}], got ${numBeams}`);
  if (options.seed !== undefined && !Number.isSafeInteger(options.seed)) {
    throw new InvalidRequestError(`seed must be an integer, got ${options.seed}`);
  }
  const stopSequences = options.stopSequences ?? [];
  for (const sequence of stopSequences) {
    if (!Array.isArray(sequence) || sequence.length === 0 || !sequence.every((id) => isIntegerIn(id, 0, vocabSize - 1))) {
      throw new InvalidRequestError(`each stop sequence must be a non-empty array of token ids in [0, ${vocabSize})`);
    }
  }
  return {
    maxNewTokens, eosTokenId: eosTokenIds[0]!, eosTokenIds, bosTokenId, doSample, temperature, topK, topP, repetitionPenalty,
    numBeams, seed: options.seed, signal: options.signal, stopSequences, beamSearchVersion,
  };
}

/** Rejects a logits row that the model returned with the wrong length. */
export function checkLogitsRow(row: Float32Array | undefined, vocabSize: number): Float32Array {
  if (!(row instanceof Float32Array) || row.length !== vocabSize) {
    throw new RuntimeError(`the model returned a logits row of length ${row?.length} instead of its vocabulary size ${vocabSize}`);
  }
  return row;
}
