// The tokenizer.json loader: a folder holding the input as tokenizer.json (and a fixed tokenizer_config.json), loaded,
// then sample texts encoded and decoded through the Tokenizer interface.
//
// The loader is looked up at run time from LOADER below, so that this target builds before the loader exists; until
// then it reports itself unavailable (the replay test skips it). Point LOADER at the loader when it lands.

import { join } from 'node:path';
import { TokenizerError } from '../../../src/errors.js';
import type { Tokenizer } from '../../../src/tokenizer/tokenizer.js';
import { scratchDir, writeScratch } from '../engine/scratch.js';
import { invariant, refusesOnlyWith, type FuzzTarget } from '../engine/target.js';

/** The module and export that load a tokenizer folder: `<exportName>.fromDir(dir)`, or `<exportName>(dir)`. */
const LOADER = { module: '../../../src/tokenizer/load-folder.js', exportName: 'tokenizerJsonFromDir' };

type LoadDir = (dir: string) => Tokenizer;

let loader: LoadDir | null | undefined;

async function loadDirFunction(): Promise<LoadDir | null> {
  if (loader !== undefined) return loader;
  try {
    const exported = ((await import(LOADER.module)) as Record<string, unknown>)[LOADER.exportName] as
      | ((dir: string) => Tokenizer)
      | { fromDir?: (dir: string) => Tokenizer }
      | undefined;
    if (typeof exported === 'function' && !('fromDir' in exported)) loader = exported as LoadDir;
    else if (exported && typeof exported.fromDir === 'function') loader = exported.fromDir.bind(exported);
    else loader = null;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    loader = null;
  }
  return loader ?? null;
}

const CONFIG = JSON.stringify({
  add_bos_token: false, add_prefix_space: false, bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>',
  unk_token: null, model_max_length: 262144, tokenizer_class: 'Qwen2Tokenizer', clean_up_tokenization_spaces: false,
  added_tokens_decoder: {},
});

const TEXTS = ['', 'Hello world', ' leading space', 'naïve café 東京 🙂', '<|im_start|>user\nhi<|im_end|>', "it's 12345", 'a\u0000b\ud800c'];

export const target: FuzzTarget = {
  description: `bytes of tokenizer.json → ${LOADER.exportName}(dir), encode() and decode() of sample texts`,
  modules: ['tokenizer/tokenizer-json.js', 'tokenizer/tokenizer-json-spec.js', 'tokenizer/byte-level-bpe.js', 'tokenizer/byte-level.js',
    'tokenizer/added-tokens.js', 'tokenizer/onig-regex.js'],
  dictionary: [
    '"model"', '"type"', '"BPE"', '"vocab"', '"merges"', '"added_tokens"', '"normalizer"', '"pre_tokenizer"', '"post_processor"',
    '"decoder"', '"ByteLevel"', '"Sequence"', '"Split"', '"Regex"', '"NFC"', '"special"', '"content"', '"id"', '"single_word"',
    '"lstrip"', '"rstrip"', '"normalized"', '"behavior"', '"Isolated"', '"add_prefix_space"', '"trim_offsets"', '"use_regex"',
    '"ignore_merges"', '"byte_fallback"', '"unk_token"', '"dropout"', '"pretokenizers"', '"pattern"', '"(?i:\'s|\'t)"', '"\\\\p{L}+"',
    '"[^\\\\s]"', '"(a|b)*c"', '"\\u0120"', '"<|im_end|>"',
  ],
  maxLength: 64 * 1024,
  async unavailable() {
    return (await loadDirFunction()) === null ? `no ${LOADER.exportName} in ${LOADER.module} on this branch` : null;
  },
  async run(input) {
    const load = await loadDirFunction();
    if (load === null) return;
    const dir = join(scratchDir(), 'tokenizer');
    writeScratch(join('tokenizer', 'tokenizer_config.json'), Buffer.from(CONFIG));
    writeScratch(join('tokenizer', 'tokenizer.json'), input);
    await refusesOnlyWith(input, [TokenizerError], () => {
      const tokenizer = load(dir);
      for (const text of TEXTS) {
        const ids = tokenizer.encode(text);
        invariant(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tokenizer.size), `encode(${JSON.stringify(text)}) gave an id outside 0..${tokenizer.size - 1}`);
        tokenizer.decode(ids);
      }
      tokenizer.decode(Array.from({ length: Math.min(tokenizer.size, 300) }, (_, id) => id));
    });
  },
};
