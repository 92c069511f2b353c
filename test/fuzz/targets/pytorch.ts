// A whole PyTorch checkpoint file (checkpoint/pytorch.ts: zip + restricted unpickler + tensor layout checks), every
// tensor read and widened.

import { PytorchFile } from '../../../src/checkpoint/pytorch.js';
import { CheckpointError } from '../../../src/errors.js';
import { writeScratch } from '../engine/scratch.js';
import { invariant, refusesOnlyWith, type FuzzTarget } from '../engine/target.js';
import { PICKLE_DICTIONARY } from './pickle.js';
import { mutateZipMember, ZIP_DICTIONARY } from './zip.js';

export const target: FuzzTarget = {
  description: 'bytes of a pytorch_model.bin → new PytorchFile(path), then float32() of every floating-point tensor',
  modules: ['checkpoint/pytorch.js', 'checkpoint/zip.js', 'checkpoint/pickle.js'],
  dictionary: [...PICKLE_DICTIONARY, ...ZIP_DICTIONARY],
  maxLength: 32 * 1024,
  run(input) {
    const path = writeScratch('pytorch_model.bin', input);
    return refusesOnlyWith(input, [CheckpointError], () => {
      const file = new PytorchFile(path);
      try {
        for (const [name, info] of file.tensors) {
          const raw = file.raw(name);
          invariant(raw.length === info.byteLength, `raw(${name}) has ${raw.length} bytes, info says ${info.byteLength}`);
          if (['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) {
            const count = info.shape.reduce((a, b) => a * b, 1);
            invariant(file.float32(name).length === count, `float32(${name}) length differs from shape [${info.shape}]`);
          }
        }
      } finally {
        file.close();
      }
    });
  },
  mutate: mutateZipMember,
};
