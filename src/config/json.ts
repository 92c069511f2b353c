// Reading a checkpoint's JSON files with errors that name the file.

import { readText, type LoaderError, type ModelFiles } from '../checkpoint/model-files.js';
import { CheckpointError } from '../errors.js';

/** The JSON file `name` of a model folder, parsed; `error` (a CheckpointError unless given) names the file when it cannot be read or parsed. */
export function readJsonFile(files: ModelFiles, name: string, error: LoaderError = CheckpointError): unknown {
  const text = readText(files, name, error);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new error(`${files.describe(name)} is not valid JSON (${(err as Error).message}); download it again`, { cause: err });
  }
}
