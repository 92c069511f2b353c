// generation_config.json: the checkpoint's generation defaults (transformers GenerationConfig keys we use).

import type { ModelFiles } from '../checkpoint/model-files.js';
import { boolean, fromDict, integer, integers, number, optional, type FromSchema } from './fromDict.js';
import { readJsonFile } from './json.js';

const GENERATION_FIELDS = {
  bosTokenId: optional(integer({ min: 0 })),
  /** `eos_token_id` may be one id or a list; always a list here. */
  eosTokenIds: optional(integers({ min: 0, key: 'eos_token_id' })),
  padTokenId: optional(integer({ min: 0 })),
  doSample: optional(boolean()),
  temperature: optional(number({ min: 0 })),
  topK: optional(integer({ min: 0 })),
  topP: optional(number({ min: 0 })),
  repetitionPenalty: optional(number({ min: 0 })),
  numBeams: optional(integer({ min: 1 })),
  maxNewTokens: optional(integer({ min: 1 })),
};

export type GenerationConfig = FromSchema<typeof GENERATION_FIELDS>;

/** Reads the model folder's generation_config.json; null when the checkpoint has none. */
export function readGenerationConfig(files: ModelFiles): GenerationConfig | null {
  const name = 'generation_config.json';
  if (!files.has(name)) return null;
  return fromDict(readJsonFile(files, name), GENERATION_FIELDS, { file: files.describe(name) });
}
