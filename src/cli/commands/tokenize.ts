// `omnilmm tokenize`: the token ids the model's chat path feeds it for a text given as the prompt.

import { familyOf, loadModelConfig } from '../../models/registry.js';
import { parseCommandArgs, requireOne } from '../args.js';
import { resolveModelOption, type Command } from './common.js';

const USAGE = 'omnilmm tokenize --model <dir|org/name> [--json] <text>';

export const tokenizeCommand: Command = {
  name: 'tokenize',
  summary: 'print the token ids of a text as the model sees it as a prompt',
  help: `usage: ${USAGE}

Encodes the text as the model's official chat path encodes a prompt: split on the tokenizer's added tokens first
(<image>, </s>, <|im_start|>, …), the rest encoded with the model's own tokenizer. MiniCPM-V 1.0 and 2.0 and
OmniLMM-12B: SentencePiece (tokenizer.model), BOS first; MiniCPM-V 1.0 and 2.0 keep at most 2048 ids, as their
chat does. MiniCPM-V 4.6: byte-level BPE (tokenizer.json), no BOS. Text that starts with "-" goes after "--"
(omnilmm tokenize --model M -- --help).

  --model <dir|org/name>   checkpoint folder or hub id (default openbmb/MiniCPM-V-2)
  --json                   print {"ids": [...]} instead of one id per line`,
  async run(argv) {
    const { values, positionals } = parseCommandArgs('tokenize', argv, { model: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
    const text = requireOne(positionals, 'text', USAGE);
    const dir = await resolveModelOption(values);
    const ids = familyOf(loadModelConfig(dir)).tokenize(dir, text);
    process.stdout.write(values.json ? `${JSON.stringify({ ids })}\n` : `${ids.join('\n')}\n`);
  },
};
