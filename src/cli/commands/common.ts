// Pieces every command shares: the Command shape, the --model option and the --threads option.

import { availableParallelism } from 'node:os';
import type { HubOptions } from '../../checkpoint/hub.js';
import { resolveModel } from '../../checkpoint/resolve.js';
import { numberOption, stringOption, type Parsed } from '../args.js';

export interface Command {
  name: string;
  summary: string;
  help: string;
  run(argv: string[]): Promise<void>;
}

/** The checkpoint the README's main command uses when --model is not given. */
export const DEFAULT_MODEL = 'openbmb/MiniCPM-V-2';

/** Resolves --model (a folder or a hub id, downloaded into the Hugging Face cache) to a local folder. */
export function resolveModelOption(values: Parsed['values'], hub: HubOptions = {}): Promise<string> {
  return resolveModel(stringOption(values, 'model') ?? DEFAULT_MODEL, hub);
}

/** What --help says about --threads, for every command that takes it. */
export const THREADS_HELP = 'CPU threads (default: one per core); more than the cores are allowed, with a warning';

/**
 * `--threads`: a whole number of at least 1. More threads than the machine's cores are allowed (the count may be
 * wrong in a container) but warned about on stderr: they compete for the cores, and every answer gets slower.
 */
export function threadsOption(values: Parsed['values']): number | undefined {
  const threads = numberOption(values, 'threads', { integer: true, min: 1 });
  const cores = availableParallelism();
  if (threads !== undefined && threads > cores) {
    process.stderr.write(
      `warning: --threads ${threads} is more than this machine's ${cores} cores: the threads compete for them and answers ` +
        'get slower, not faster; leave --threads out for one per core\n',
    );
  }
  return threads;
}
