// A model folder's config.json, read and checked to be a JSON object; which family interprets it is the model
// registry's business (models/registry.ts `loadModelConfig`).

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, FileNotFoundError } from '../errors.js';
import { asDict } from './fromDict.js';
import { readJsonFile } from './json.js';

/** `dir/config.json` as a JSON object, with the path of the file for messages. */
export function readConfigJson(dir: string): { file: string; config: Record<string, unknown> } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new FileNotFoundError(`model folder not found: ${dir}`);
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new CheckpointError(`no config.json in ${dir}: pass the folder that holds the model's config.json`);
  return { file, config: asDict(readJsonFile(file), { file }) };
}
