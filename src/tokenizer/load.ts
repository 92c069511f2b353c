// The one place that turns a model folder's tokenizer files into a Tokenizer: a family names the format its upstream
// code reads, and gets the interface back (no code outside tokenizer/ constructs a concrete tokenizer class).

import type { ModelFiles } from '../checkpoint/model-files.js';
import { TokenizerError } from '../errors.js';
import { LlamaTokenizer } from './llama.js';
import type { Tokenizer } from './tokenizer.js';
import { TokenizerJson } from './tokenizer-json.js';

/**
 * Which tokenizer files a family's official code reads. 'sentencepiece': tokenizer.model + tokenizer_config.json
 * through transformers' slow LlamaTokenizer (MiniCPM-V 1.0/2.0, OmniLMM-12B), even where a folder also holds a
 * tokenizer.json; 'tokenizer.json': the Hugging Face tokenizers pipeline (MiniCPM-V 4.6's byte-level BPE).
 */
export type TokenizerFormat = 'sentencepiece' | 'tokenizer.json';

const TOKENIZER_LOADERS: Record<TokenizerFormat, (files: ModelFiles) => Tokenizer> = {
  sentencepiece: (files) => LlamaTokenizer.fromFiles(files),
  'tokenizer.json': (files) => TokenizerJson.fromFiles(files),
};

/** The tokenizer of a model folder's files, read from the files of `format`. */
export function tokenizerFromFiles(files: ModelFiles, format: TokenizerFormat): Tokenizer {
  return TOKENIZER_LOADERS[format](files);
}

/** The tokenizer's bos or eos id where a family's code needs one; a TokenizerError names the folder (`dir`) when it has none. */
export function requiredTokenId(tokenizer: Tokenizer, which: 'bosId' | 'eosId', dir: string): number {
  const id = tokenizer[which];
  if (id === null) {
    const token = which === 'bosId' ? 'bos_token' : 'eos_token';
    throw new TokenizerError(`the tokenizer in ${dir} defines no ${token}, which this model needs (check tokenizer_config.json)`);
  }
  return id;
}
