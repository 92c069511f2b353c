// TensorRows reads one row of a checkpoint tensor from its file: every row must equal the same row of the whole
// tensor as the checkpoint readers convert it, for safetensors shards and for pytorch_model.bin.

import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openCheckpoint } from '../src/checkpoint/open.js';
import { TensorRows } from '../src/checkpoint/rows.js';
import { CheckpointError } from '../src/errors.js';
import { fixturePath } from './helpers/fixtures.js';

const cases = [
  ['minicpmv2-tiny', 'model', 'llm.model.embed_tokens.weight'],
  ['omnilmm12b-tiny', 'model', 'model.embed_tokens.weight'],
  ['omnilmm12b-tiny', 'model-pt', 'model.embed_tokens.weight'],
] as const;

for (const [fixture, folder, name] of cases) {
  test(`every row of ${name} in ${fixture}/${folder} equals the row of the whole tensor`, () => {
    const checkpoint = openCheckpoint(fixturePath(fixture, folder));
    try {
      const whole = checkpoint.float32(name);
      const rows = new TensorRows(checkpoint.info(name));
      try {
        const [count, cols] = checkpoint.info(name).shape as [number, number];
        assert.equal(rows.rows, count);
        for (let r = 0; r < count; r++) assert.deepEqual(rows.read(r), whole.subarray(r * cols, (r + 1) * cols), `row ${r}`);
        assert.throws(() => rows.read(count), RangeError);
      } finally {
        rows.close();
      }
    } finally {
      checkpoint.close();
    }
  });
}

test('a checkpoint file cut short after loading gives a clear error, not garbage rows', () => {
  const dir = mkdtempSync(join(tmpdir(), 'omnilmm-rows-'));
  try {
    const source = fixturePath('omnilmm12b-tiny', 'model-pt', 'pytorch_model.bin');
    const copy = join(dir, 'pytorch_model.bin');
    copyFileSync(source, copy);
    const checkpoint = openCheckpoint(fixturePath('omnilmm12b-tiny', 'model-pt'));
    const info = { ...checkpoint.info('model.embed_tokens.weight'), file: copy };
    checkpoint.close();
    const rows = new TensorRows(info);
    truncateSync(copy, info.offset + 10);
    assert.throws(() => rows.read(1), (err: Error) => err instanceof CheckpointError && /changed on disk.*load the model again/.test(err.message));
    rows.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
