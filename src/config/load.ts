// A model folder's config.json, read and checked to be a JSON object; which family interprets it is the model
// registry's business (models/registry.ts `loadModelConfig`).

import type { ModelFiles } from '../checkpoint/model-files.js';
import { CheckpointError } from '../errors.js';
import { asDict } from './fromDict.js';
import { readJsonFile } from './json.js';

/** The model folder's config.json as a JSON object, with the path of the file for messages. */
export function readConfigJson(files: ModelFiles): { file: string; config: Record<string, unknown> } {
  const file = files.describe('config.json');
  if (!files.has('config.json')) throw new CheckpointError(`no config.json in ${files.where}: pass the folder that holds the model's config.json`);
  return { file, config: asDict(readJsonFile(files, 'config.json'), { file }) };
}
