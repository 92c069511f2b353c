// Opens a local checkpoint folder in whichever weight format it ships: safetensors first, then PyTorch zips.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FileNotFoundError } from '../errors.js';
import { PytorchCheckpoint } from './pytorch.js';
import { SafetensorsCheckpoint, type TensorSource } from './safetensors.js';

/** Weight files looked for, in order of preference; the first two are read as safetensors. */
export const CHECKPOINT_FILES = [
  'model.safetensors.index.json',
  'model.safetensors',
  'pytorch_model.bin.index.json',
  'pytorch_model.bin',
] as const;

/** The tensors of a checkpoint folder: safetensors when present (single or sharded), else pytorch_model.bin. */
export function openCheckpoint(dir: string): TensorSource {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new FileNotFoundError(`checkpoint folder not found: ${dir}`);
  const found = CHECKPOINT_FILES.find((file) => existsSync(join(dir, file)));
  if (found === undefined) {
    throw new FileNotFoundError(`no weights in ${dir}: looked for ${CHECKPOINT_FILES.join(', ')}; download the model's weight files into it`);
  }
  return found.startsWith('model.safetensors') ? new SafetensorsCheckpoint(dir) : new PytorchCheckpoint(dir);
}
