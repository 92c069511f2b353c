// Pieces every command shares: the Command shape and the --model option.

import { resolveModel } from '../../checkpoint/resolve.js';
import { stringOption, type Parsed } from '../args.js';

export interface Command {
  name: string;
  summary: string;
  help: string;
  run(argv: string[]): Promise<void>;
}

/** The checkpoint the README's main command uses when --model is not given. */
export const DEFAULT_MODEL = 'openbmb/MiniCPM-V-2';

/** Resolves --model (a folder or a hub id, downloaded into the Hugging Face cache) to a local folder. */
export function resolveModelOption(values: Parsed['values']): Promise<string> {
  return resolveModel(stringOption(values, 'model') ?? DEFAULT_MODEL);
}
