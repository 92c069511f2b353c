// `omnilmm tokenize`: the token ids the model's chat path feeds it for a text given as the prompt.

import { familyOf, loadModelConfig } from '../../models/registry.js';
import { parseCommandArgs, requireOne } from '../args.js';
import { resolveModelOption, type Command } from './common.js';

const USAGE = 'omnilmm tokenize --model <dir|org/name> [--json] <text>';

export const tokenizeCommand: Command = {
  name: 'tokenize',
  summary: 'print the token ids of a text as the model sees it as a prompt (BOS first)',
  help: `usage: ${USAGE}

Splits the text on the tokenizer's added tokens (<image>, </s>, …) first and encodes the rest with the model's
SentencePiece model, exactly as the official chat path does; BOS comes first.

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
