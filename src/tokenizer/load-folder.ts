// The tokenizer loaders over a model folder on disk (Node): each checks that the folder exists, then reads it
// through folderFiles.

import { folderFiles, isFolder } from '../checkpoint/folder-files.js';
import type { ModelFiles } from '../checkpoint/model-files.js';
import { TokenizerError } from '../errors.js';
import { ChatTemplate } from './chat-template.js';
import { LlamaTokenizer } from './llama.js';
import { tokenizerFromFiles, type TokenizerFormat } from './load.js';
import type { Tokenizer } from './tokenizer.js';
import { TokenizerJson } from './tokenizer-json.js';

/** The tokenizer of the model folder `dir`, read from the files of `format`. */
export function loadTokenizer(dir: string, format: TokenizerFormat): Tokenizer {
  return tokenizerFromFiles(tokenizerFolder(dir), format);
}

/** The slow LlamaTokenizer of the folder `dir` (LlamaTokenizer.fromFiles). */
export function llamaTokenizerFromDir(dir: string): LlamaTokenizer {
  return LlamaTokenizer.fromFiles(tokenizerFolder(dir));
}

/** The tokenizer.json tokenizer of the folder `dir` (TokenizerJson.fromFiles). */
export function tokenizerJsonFromDir(dir: string): TokenizerJson {
  return TokenizerJson.fromFiles(tokenizerFolder(dir));
}

/** The chat template of the folder `dir` (ChatTemplate.fromFiles). */
export function chatTemplateFromDir(dir: string, name?: string): ChatTemplate {
  return ChatTemplate.fromFiles(tokenizerFolder(dir), name);
}

/** The files of `dir`; a TokenizerError when there is no such folder. */
function tokenizerFolder(dir: string): ModelFiles {
  if (!isFolder(dir)) throw new TokenizerError(`tokenizer folder not found: ${dir}`);
  return folderFiles(dir);
}
