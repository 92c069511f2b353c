// The transformers side of a slow LlamaTokenizer: tokenizer_config.json, special_tokens_map.json and
// added_tokens.json, read the way transformers 4.36 `PreTrainedTokenizerBase._from_pretrained` reads them.
//
// * With an `added_tokens_decoder` in tokenizer_config.json (the 4.34+ format) that table is the added vocabulary,
//   and the special tokens come from tokenizer_config.json alone.
// * Without one (older checkpoints) special_tokens_map.json overrides the special tokens, and added_tokens.json
//   ({content: id}) lists the added tokens.
//
// Only what the slow tokenizer with `legacy: true` (the default) and `clean_up_tokenization_spaces: false` (the
// LlamaTokenizer default) does is supported; other settings are refused with a TokenizerError.

import type { ModelFiles } from '../checkpoint/model-files.js';
import { readJsonFile } from '../config/json.js';
import { TokenizerError } from '../errors.js';

/** One entry of transformers' added vocabulary (an `AddedToken`). */
export interface AddedTokenSpec {
  id: number;
  content: string;
  special: boolean;
  /** Strip the whitespace on the left/right of the token from the neighbouring text when splitting. */
  lstrip: boolean;
  rstrip: boolean;
}

/** The special-token attributes of a transformers tokenizer (`SPECIAL_TOKENS_ATTRIBUTES`). */
export const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
export type SpecialTokenKey = (typeof SPECIAL_TOKEN_KEYS)[number];

export interface LlamaTokenizerConfig {
  addBosToken: boolean;
  addEosToken: boolean;
  specialTokens: Partial<Record<SpecialTokenKey, string>>;
  additionalSpecialTokens: string[];
  /** Added tokens declared by the files (special tokens that are missing here are added by the tokenizer). */
  addedTokens: AddedTokenSpec[];
}

/** LlamaTokenizer's constructor defaults. */
const LLAMA_DEFAULT_SPECIAL_TOKENS: Partial<Record<SpecialTokenKey, string>> = {
  bos_token: '<s>',
  eos_token: '</s>',
  unk_token: '<unk>',
};

type Json = Record<string, unknown>;

/** Reads the tokenizer JSON files of a checkpoint folder. tokenizer_config.json is required, the others optional. */
export function readLlamaTokenizerConfig(files: ModelFiles): LlamaTokenizerConfig {
  const configFile = files.describe('tokenizer_config.json');
  if (!files.has('tokenizer_config.json')) {
    throw new TokenizerError(`${configFile} is missing: the tokenizer needs it next to tokenizer.model (download it again)`);
  }
  const config = readJsonObject(files, 'tokenizer_config.json');
  const specialTokensMap = files.has('special_tokens_map.json') ? readJsonObject(files, 'special_tokens_map.json') : null;
  const addedFile = files.describe('added_tokens.json');

  const legacyFormat = config['added_tokens_decoder'] === undefined;
  const source: Json = legacyFormat && specialTokensMap ? { ...config, ...specialTokensMap } : config;
  const sourceName = legacyFormat && specialTokensMap ? `${configFile} + special_tokens_map.json` : configFile;

  const specialTokens: Partial<Record<SpecialTokenKey, string>> = { ...LLAMA_DEFAULT_SPECIAL_TOKENS };
  for (const key of SPECIAL_TOKEN_KEYS) {
    if (!(key in source)) continue;
    const value = tokenContent(source[key], `${sourceName}: ${key}`);
    if (value === null) delete specialTokens[key];
    else specialTokens[key] = value;
  }
  const additional = source['additional_special_tokens'] ?? [];
  if (!Array.isArray(additional)) throw bad(sourceName, 'additional_special_tokens is not a list');
  const additionalSpecialTokens = additional.map((t, i) => {
    const content = tokenContent(t, `${sourceName}: additional_special_tokens[${i}]`);
    if (content === null) throw bad(sourceName, `additional_special_tokens[${i}] is null`);
    return content;
  });

  let addedTokens: AddedTokenSpec[];
  if (!legacyFormat) {
    addedTokens = readAddedTokensDecoder(config['added_tokens_decoder'], configFile);
  } else if (files.has('added_tokens.json')) {
    const specials = new Set([...Object.values(specialTokens), ...additionalSpecialTokens]);
    addedTokens = Object.entries(readJsonObject(files, 'added_tokens.json')).map(([content, id]) => {
      if (!Number.isSafeInteger(id) || (id as number) < 0) throw bad(addedFile, `the id of ${JSON.stringify(content)} is not a token id`);
      return { id: id as number, content, special: specials.has(content), lstrip: false, rstrip: false };
    });
  } else {
    addedTokens = [];
  }

  if (!optionalBoolean(config, 'legacy', true, configFile)) {
    throw new TokenizerError(`${configFile} sets "legacy": false; only the legacy LlamaTokenizer behaviour is supported so far`);
  }
  if (optionalBoolean(config, 'clean_up_tokenization_spaces', false, configFile)) {
    throw new TokenizerError(`${configFile} sets "clean_up_tokenization_spaces": true, which is not supported so far`);
  }
  return {
    addBosToken: optionalBoolean(config, 'add_bos_token', true, configFile),
    addEosToken: optionalBoolean(config, 'add_eos_token', false, configFile),
    specialTokens,
    additionalSpecialTokens,
    addedTokens,
  };
}

function readAddedTokensDecoder(value: unknown, file: string): AddedTokenSpec[] {
  if (!isObject(value)) throw bad(file, 'added_tokens_decoder is not an object');
  return Object.entries(value).map(([key, entry]) => {
    const id = Number(key);
    if (!/^\d+$/.test(key) || !Number.isSafeInteger(id)) throw bad(file, `added_tokens_decoder has a key ${JSON.stringify(key)} that is not a token id`);
    if (!isObject(entry) || typeof entry['content'] !== 'string' || entry['content'] === '') {
      throw bad(file, `added_tokens_decoder[${key}] has no "content" string`);
    }
    if (entry['single_word'] === true) {
      throw new TokenizerError(`${file}: added token ${JSON.stringify(entry['content'])} is single_word, which is not supported`);
    }
    return {
      id,
      content: entry['content'],
      special: optionalBoolean(entry, 'special', false, file),
      lstrip: optionalBoolean(entry, 'lstrip', false, file),
      rstrip: optionalBoolean(entry, 'rstrip', false, file),
    };
  });
}

/** A special token written as a string, as {"content": …} (an AddedToken), or null. */
function tokenContent(value: unknown, where: string): string | null {
  if (value === null) return null;
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value['content'] === 'string') {
    if (value['single_word'] === true) throw new TokenizerError(`${where} is single_word, which is not supported`);
    return value['content'];
  }
  throw new TokenizerError(`${where} is neither a string nor {"content": string}; download the tokenizer files again`);
}

function optionalBoolean(obj: Json, key: string, fallback: boolean, file: string): boolean {
  const value = obj[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw bad(file, `"${key}" is not true or false`);
  return value;
}

function readJsonObject(files: ModelFiles, name: string): Json {
  const value = readJsonFile(files, name, TokenizerError);
  if (!isObject(value)) throw bad(files.describe(name), 'it is not a JSON object');
  return value;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function bad(file: string, why: string): TokenizerError {
  return new TokenizerError(`${file} is malformed: ${why}; download the tokenizer files again`);
}
