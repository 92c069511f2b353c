// Reading a checkpoint's JSON files with errors that name the file.

import { readFileSync } from 'node:fs';
import { CheckpointError } from '../errors.js';

export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CheckpointError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CheckpointError(`${file} is not valid JSON (${(err as Error).message}); download it again`, { cause: err });
  }
}
