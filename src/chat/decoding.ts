// Decoding presets with the official `MiniCPMV.chat` semantics: `sampling=True` → top_p 0.8, top_k 100,
// temperature 0.7, repetition_penalty 1.05; `sampling=False` → 3 beams, repetition_penalty 1.2. As in chat(), a
// preset only takes the overrides that belong to it (temperature means nothing to beam search).

import { InvalidRequestError } from '../errors.js';
import type { GenerationOptions } from '../generation/types.js';

export type Decoding = 'sample' | 'greedy' | 'beam';
export const DECODINGS: readonly Decoding[] = ['sample', 'greedy', 'beam'];

export interface DecodingSettings {
  decoding?: Decoding;
  numBeams?: number;
  repetitionPenalty?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  maxNewTokens?: number;
}

/** A model family's chat() defaults. */
export interface ChatDefaults {
  sample: { topP: number; topK: number; temperature: number; repetitionPenalty: number };
  beam: { numBeams: number; repetitionPenalty: number };
  maxNewTokens: number;
}

export type ResolvedDecoding = Omit<GenerationOptions, 'eosTokenId' | 'bosTokenId' | 'signal'> & { numBeams: number };

export function resolveDecoding(settings: DecodingSettings, defaults: ChatDefaults): ResolvedDecoding {
  const decoding = settings.decoding ?? 'sample';
  const maxNewTokens = settings.maxNewTokens ?? defaults.maxNewTokens;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new InvalidRequestError('max new tokens must be a positive integer');
  switch (decoding) {
    case 'sample':
      return {
        doSample: true,
        numBeams: 1,
        maxNewTokens,
        topP: settings.topP ?? defaults.sample.topP,
        topK: settings.topK ?? defaults.sample.topK,
        temperature: settings.temperature ?? defaults.sample.temperature,
        repetitionPenalty: settings.repetitionPenalty ?? defaults.sample.repetitionPenalty,
        seed: settings.seed,
      };
    case 'beam':
      return {
        doSample: false,
        numBeams: settings.numBeams ?? defaults.beam.numBeams,
        maxNewTokens,
        repetitionPenalty: settings.repetitionPenalty ?? defaults.beam.repetitionPenalty,
      };
    case 'greedy':
      return { doSample: false, numBeams: 1, maxNewTokens, repetitionPenalty: settings.repetitionPenalty ?? 1 };
    default:
      throw new InvalidRequestError(`unknown decoding "${String(decoding)}": use ${DECODINGS.join(', ')}`);
  }
}
