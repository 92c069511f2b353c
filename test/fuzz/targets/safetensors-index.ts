// The sharded-checkpoint index (checkpoint/sharded.ts): model.safetensors.index.json beside two small valid shards,
// opened as a SafetensorsCheckpoint, every tensor listed and read.

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsCheckpoint, writeSafetensors } from '../../../src/checkpoint/safetensors.js';
import { CheckpointError, FileNotFoundError } from '../../../src/errors.js';
import { scratchDir, writeScratch } from '../engine/scratch.js';
import { invariant, refusesOnlyWith, type FuzzTarget } from '../engine/target.js';

/** The shards every index input is read against (names and tensors as the seeds' indexes list them). */
export const SHARDS: Record<string, { name: string; shape: number[] }[]> = {
  'model-00001-of-00002.safetensors': [{ name: 'llm.embed.weight', shape: [4, 2] }, { name: 'llm.norm.weight', shape: [2] }],
  'model-00002-of-00002.safetensors': [{ name: 'vpm.proj.weight', shape: [2, 3] }, { name: 'vpm.proj.bias', shape: [3] }],
};

function folder(): string {
  const dir = join(scratchDir(), 'sharded');
  for (const [file, tensors] of Object.entries(SHARDS)) {
    const path = join(dir, file);
    if (existsSync(path)) continue;
    mkdirSync(dir, { recursive: true });
    writeSafetensors(path, tensors.map((t) => ({ ...t, data: new Float32Array(t.shape.reduce((a, b) => a * b, 1)).fill(0.5) })));
  }
  return dir;
}

export const target: FuzzTarget = {
  description: 'bytes of model.safetensors.index.json (beside two fixed shards) → new SafetensorsCheckpoint(dir), every tensor read',
  modules: ['checkpoint/sharded.js'],
  dictionary: [
    '"weight_map"', '"metadata"', '"total_size"', ...Object.keys(SHARDS).map((s) => `"${s}"`),
    ...Object.values(SHARDS).flat().map((t) => `"${t.name}"`), '"../model.safetensors"', '"model.safetensors"', '"__proto__"',
  ],
  maxLength: 8 * 1024,
  run(input) {
    const dir = folder();
    writeScratch(join('sharded', 'model.safetensors.index.json'), input);
    return refusesOnlyWith(input, [CheckpointError, FileNotFoundError], () => {
      const checkpoint = new SafetensorsCheckpoint(dir);
      try {
        for (const name of checkpoint.names()) {
          invariant(checkpoint.has(name), `names() lists ${name} but has() denies it`);
          const values = checkpoint.float32(name);
          const count = checkpoint.info(name).shape.reduce((a, b) => a * b, 1);
          invariant(values.length === count, `${name}: ${values.length} values for ${count} elements`);
        }
      } finally {
        checkpoint.close();
      }
    });
  },
};
