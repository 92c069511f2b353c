// resolveModel: what the user named (--model) → a local model folder: an existing folder as is, or a Hugging Face hub
// id ("org/name") fetched into (or found in) the hub cache.

import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { FileNotFoundError } from '../errors.js';
import { downloadModel, isHubRepoId, type HubOptions } from './hub.js';

export async function resolveModel(idOrPath: string, options: HubOptions = {}): Promise<string> {
  const stat = statSync(idOrPath, { throwIfNoEntry: false });
  if (stat?.isDirectory()) return resolve(idOrPath);
  if (stat) {
    throw new FileNotFoundError(`${idOrPath} is a file; pass the model folder (the one holding config.json) or a hub id such as openbmb/MiniCPM-V-2`);
  }
  if (isHubRepoId(idOrPath)) return downloadModel(idOrPath, options);
  throw new FileNotFoundError(`no such folder ${idOrPath}, and not a hub id (org/name, such as openbmb/MiniCPM-V-2)`);
}
