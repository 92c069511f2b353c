// The safetensors reader (checkpoint/safetensors.ts): one .safetensors file, opened, every tensor read and widened.

import { SafetensorsFile } from '../../../src/checkpoint/safetensors.js';
import { CheckpointError } from '../../../src/errors.js';
import { joinSafetensors, splitSafetensors } from '../engine/formats.js';
import { mutateJson } from '../engine/json-mutate.js';
import { invariant, refusesOnlyWith, type FuzzTarget } from '../engine/target.js';
import { writeScratch } from '../engine/scratch.js';

export const target: FuzzTarget = {
  description: 'bytes of a .safetensors file → new SafetensorsFile(path), then float32()/raw() of every tensor',
  modules: ['checkpoint/safetensors.js', 'checkpoint/read-at.js'],
  dictionary: [
    '"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"F32"', '"F16"', '"BF16"', '"F64"', '"I64"', '"I32"',
    '"I16"', '"U16"', '"I8"', '"U8"', '"BOOL"', '"F8_E4M3"', '[]', '[0,0]', '{}', 'null', '"__proto__"', '"constructor"',
  ],
  maxLength: 16 * 1024,
  run(input) {
    const path = writeScratch('model.safetensors', input);
    return refusesOnlyWith(input, [CheckpointError], () => {
      const file = new SafetensorsFile(path);
      try {
        invariant(Object.getPrototypeOf(file.metadata) === Object.prototype, 'the metadata object has a replaced prototype');
        invariant(Object.values(file.metadata).every((v) => typeof v === 'string'), 'a metadata value is not a string');
        for (const [name, info] of file.tensors) {
          const raw = file.raw(name);
          invariant(raw.length === info.byteLength, `raw(${name}) has ${raw.length} bytes, info says ${info.byteLength}`);
          if (['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) {
            const values = file.float32(name);
            const count = info.shape.reduce((a, b) => a * b, 1);
            invariant(values.length === count, `float32(${name}) has ${values.length} values for shape [${info.shape}]`);
          }
        }
      } finally {
        file.close();
      }
    });
  },
  /** Mutates the JSON header and frames it again with its true length, so the mutation gets past the frame check. */
  mutate(input, rng, dictionary) {
    const parts = splitSafetensors(input);
    if (parts === null) return null;
    const header = mutateJson(Buffer.from(parts.header, 'utf8'), rng, dictionary);
    if (header === null) return null;
    return joinSafetensors(Buffer.from(header).toString('utf8'), parts.data);
  },
};
