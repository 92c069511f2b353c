// Reading a tokenizer.json (the Hugging Face `tokenizers` format) and its tokenizer_config.json into a checked,
// typed description of the pipeline. Only the byte-level BPE pipeline of Qwen2 / Qwen3.5 is supported; any other
// component type or setting is refused with a TokenizerError that names it.
//
//   normalizer      null | NFC
//   pre_tokenizer   Sequence[Split(Regex, Isolated)…, ByteLevel(add_prefix_space=false, use_regex=false)]
//   model           BPE (no dropout, unk_token, byte_fallback, subword prefix or word suffix)
//   post_processor  null | ByteLevel (adds nothing); tokenizer_config's add_bos_token / add_eos_token as transformers
//   decoder         ByteLevel

import { describeJson, TokenizerError } from '../errors.js';
import type { AddedToken } from './added-tokens.js';

type Json = Record<string, unknown>;

export interface TokenizerJsonSpec {
  vocab: Map<string, number>;
  merges: [string, string][];
  ignoreMerges: boolean;
  normalizer: 'NFC' | null;
  /** The Split patterns, applied in order (each isolates its matches). */
  splitPatterns: string[];
  addedTokens: AddedToken[];
  /** transformers' special-token attributes from tokenizer_config.json: `bos_token` → its text, … */
  specialTokens: Record<string, string>;
  /** Further special tokens (tokenizer_config's extra_special_tokens / additional_special_tokens as a list). */
  extraSpecialTokens: string[];
  /** What encoding adds around the ids (transformers' TemplateProcessing when add_bos_token / add_eos_token is set). */
  addBos: boolean;
  addEos: boolean;
}

/** Checks tokenizer.json (`source` names it in errors) and the optional tokenizer_config.json. */
export function parseTokenizerJson(json: unknown, config: unknown, source: string): TokenizerJsonSpec {
  const bad = (why: string): TokenizerError => new TokenizerError(`${source} is malformed: ${why}; download the tokenizer files again`);
  const unsupported = (what: string): TokenizerError =>
    new TokenizerError(`${source}: ${what} is not supported (only the byte-level BPE pipeline of Qwen2 / Qwen3.5 tokenizers is)`);
  if (!isObject(json)) throw bad('it is not a JSON object');
  const cfg = config === undefined || config === null ? {} : config;
  if (!isObject(cfg)) throw new TokenizerError(`tokenizer_config.json next to ${source} is not a JSON object; download it again`);

  // 1. Normalizer.
  const normalizer = json['normalizer'] ?? null;
  if (normalizer !== null && componentType(normalizer, 'normalizer', bad) !== 'NFC') {
    throw unsupported(`the normalizer ${componentType(normalizer, 'normalizer', bad)}`);
  }

  // 2. Pre-tokenizer: Splits, then a ByteLevel that only maps bytes.
  const pre = json['pre_tokenizer'];
  if (pre === undefined || pre === null) throw unsupported('a tokenizer without a pre-tokenizer');
  const steps = componentType(pre, 'pre_tokenizer', bad) === 'Sequence' ? (pre as Json)['pretokenizers'] : [pre];
  if (!Array.isArray(steps) || steps.length === 0) throw bad('pre_tokenizer.pretokenizers is not a non-empty list');
  const splitPatterns: string[] = [];
  steps.forEach((step: unknown, i) => {
    const type = componentType(step, `pre_tokenizer ${i}`, bad);
    const s = step as Json;
    if (type !== 'Split' && type !== 'ByteLevel') throw unsupported(`the pre-tokenizer ${type}`);
    if (i === steps.length - 1) {
      if (type !== 'ByteLevel') throw unsupported('a pre-tokenizer sequence that does not end with ByteLevel');
      if (s['add_prefix_space'] === true) throw unsupported('the ByteLevel pre-tokenizer with add_prefix_space=true');
      if (s['use_regex'] !== false) throw unsupported('the ByteLevel pre-tokenizer with use_regex=true');
      return;
    }
    if (type !== 'Split') throw unsupported('a ByteLevel pre-tokenizer before the end of the sequence');
    const pattern = s['pattern'];
    if (!isObject(pattern) || typeof pattern['Regex'] !== 'string') throw unsupported('a Split pre-tokenizer whose pattern is not {"Regex": …}');
    if (s['behavior'] !== 'Isolated') {
      throw unsupported(s['behavior'] === undefined ? 'a Split without a behavior' : `the Split behaviour ${describeJson(s['behavior'])}`);
    }
    if (s['invert'] === true) throw unsupported('an inverted Split pre-tokenizer');
    splitPatterns.push(pattern['Regex']);
  });

  // 3. Model.
  const model = json['model'];
  if (componentType(model, 'model', bad) !== 'BPE') throw unsupported(`the model ${componentType(model, 'model', bad)}`);
  const m = model as Json;
  if (m['dropout'] !== undefined && m['dropout'] !== null) throw unsupported('BPE dropout');
  if (m['unk_token'] !== undefined && m['unk_token'] !== null) throw unsupported('a BPE unk_token');
  if (m['byte_fallback'] === true) throw unsupported('BPE byte_fallback');
  for (const key of ['continuing_subword_prefix', 'end_of_word_suffix']) {
    if (m[key] !== undefined && m[key] !== null && m[key] !== '') throw unsupported(`the BPE ${key}`);
  }
  const vocab = readVocab(m['vocab'], bad);
  const merges = readMerges(m['merges'], bad);

  // 4. Post-processor and decoder.
  const post = json['post_processor'] ?? null;
  const explicitBosEos = 'add_bos_token' in cfg || 'add_eos_token' in cfg;
  if (post !== null && !explicitBosEos && componentType(post, 'post_processor', bad) !== 'ByteLevel') {
    throw unsupported(`the post-processor ${componentType(post, 'post_processor', bad)}`);
  }
  const decoder = json['decoder'] ?? null;
  if (decoder === null) throw unsupported('a tokenizer without a decoder');
  if (componentType(decoder, 'decoder', bad) !== 'ByteLevel') throw unsupported(`the decoder ${componentType(decoder, 'decoder', bad)}`);

  // 5. Added tokens, and the special tokens tokenizer_config.json names.
  const added = json['added_tokens'] ?? [];
  if (!Array.isArray(added)) throw bad('added_tokens is not a list');
  const addedTokens = added.map((entry: unknown, i) => readAddedToken(entry, i, bad));
  if (cfg['split_special_tokens'] === true) throw new TokenizerError(`tokenizer_config.json next to ${source}: split_special_tokens=true is not supported`);
  const { specialTokens, extraSpecialTokens } = readSpecialTokens(cfg);

  return {
    vocab,
    merges,
    ignoreMerges: m['ignore_merges'] === true,
    normalizer: normalizer === null ? null : 'NFC',
    splitPatterns,
    addedTokens,
    specialTokens,
    extraSpecialTokens,
    // transformers replaces the post-processor when add_bos_token / add_eos_token is given (or there is none);
    // both default to false.
    addBos: cfg['add_bos_token'] === true,
    addEos: cfg['add_eos_token'] === true,
  };
}

function componentType(value: unknown, where: string, bad: (why: string) => TokenizerError): string {
  if (!isObject(value) || typeof value['type'] !== 'string') throw bad(`${where} has no "type"`);
  return value['type'];
}

/** The largest token id a tokenizer may use: ids are kept in 32-bit tables, and no vocabulary comes near it. */
const MAX_TOKEN_ID = 2 ** 31 - 2;

function isTokenId(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= MAX_TOKEN_ID;
}

function readVocab(value: unknown, bad: (why: string) => TokenizerError): Map<string, number> {
  if (!isObject(value)) throw bad('model.vocab is not an object');
  const vocab = new Map<string, number>();
  // for…in: Object.entries of a 250k-key object costs twice as much.
  for (const token in value) {
    const id = value[token];
    if (!isTokenId(id)) throw bad(`the vocabulary id of ${JSON.stringify(token)} is not a token id (an integer 0 … ${MAX_TOKEN_ID})`);
    vocab.set(token, id as number);
  }
  return vocab;
}

/** Merges as "left right" strings (older files) or [left, right] pairs. */
function readMerges(value: unknown, bad: (why: string) => TokenizerError): [string, string][] {
  if (!Array.isArray(value)) throw bad('model.merges is not a list');
  return value.map((merge: unknown, i): [string, string] => {
    if (typeof merge === 'string') {
      const space = merge.indexOf(' ');
      if (space <= 0 || space === merge.length - 1 || merge.indexOf(' ', space + 1) !== -1) throw bad(`merge ${i} ${JSON.stringify(merge)} is not two tokens`);
      return [merge.slice(0, space), merge.slice(space + 1)];
    }
    if (Array.isArray(merge) && merge.length === 2 && typeof merge[0] === 'string' && typeof merge[1] === 'string') return [merge[0], merge[1]];
    throw bad(`merge ${i} is neither "left right" nor [left, right]`);
  });
}

function readAddedToken(entry: unknown, index: number, bad: (why: string) => TokenizerError): AddedToken {
  if (!isObject(entry) || typeof entry['content'] !== 'string' || !isTokenId(entry['id'])) {
    throw bad(`added_tokens[${index}] needs an "id" (an integer 0 … ${MAX_TOKEN_ID}) and a "content"`);
  }
  const flag = (key: string, fallback: boolean): boolean => {
    const v = entry[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw bad(`added_tokens[${index}].${key} is not true or false`);
    return v;
  };
  return {
    id: entry['id'] as number,
    content: entry['content'],
    special: flag('special', false),
    singleWord: flag('single_word', false),
    lstrip: flag('lstrip', false),
    rstrip: flag('rstrip', false),
    normalized: flag('normalized', true),
  };
}

/**
 * transformers' special tokens: the standard attributes (bos_token … mask_token), every other `*_token` key with a
 * token value, `model_specific_special_tokens`, and `extra_special_tokens` / `additional_special_tokens` (a dict of
 * named tokens or a list).
 */
function readSpecialTokens(cfg: Json): { specialTokens: Record<string, string>; extraSpecialTokens: string[] } {
  const specialTokens: Record<string, string> = {};
  const extraSpecialTokens: string[] = [];
  const content = (value: unknown): string | null =>
    typeof value === 'string' ? value : isObject(value) && typeof value['content'] === 'string' ? value['content'] : null;
  for (const [key, value] of Object.entries(cfg)) {
    const text = content(value);
    if (key.endsWith('_token') && text !== null) specialTokens[key] = text;
  }
  for (const key of ['model_specific_special_tokens', 'extra_special_tokens', 'additional_special_tokens']) {
    const value = cfg[key];
    if (isObject(value)) {
      for (const [name, token] of Object.entries(value)) {
        const text = content(token);
        if (text !== null) specialTokens[name] = text;
      }
    } else if (Array.isArray(value)) {
      for (const token of value) {
        const text = content(token);
        if (text !== null) extraSpecialTokens.push(text);
      }
    }
  }
  return { specialTokens, extraSpecialTokens };
}

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
