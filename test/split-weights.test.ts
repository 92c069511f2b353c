// export-web's weight splitting: a graph's external-data file cut into pieces under a size limit, the model's
// locations and offsets rewritten; ONNX Runtime loads the pieces and every weight reads back as it was written.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { splitExternalData } from '../src/export/split-weights.js';
import { Graph } from '../src/graph/builder.js';
import { NodeGraphSession } from '../src/runtime/session.js';

const folder = mkdtempSync(join(tmpdir(), 'omnilmm-split-'));
after(() => rmSync(folder, { recursive: true, force: true }));

test('the pieces stay under the limit, and every weight (and the inline one) reads back exactly', async () => {
  const weights = [[3, 50], [7, 301], [5, 1000], [9, 700], [2, 2000]].map(([rows, cols], k) => ({
    name: `w${k}`, rows: rows!, cols: cols!, data: Float32Array.from({ length: rows! * cols! }, (_, i) => Math.fround(Math.cos(i * (k + 1)) * 50)),
  }));
  const g = new Graph('rows', { tempDir: folder });
  const index = g.input('index', 'int64', [1]);
  for (const w of weights) {
    const stored = g.weight(w.name, w.data, [w.rows, w.cols]);
    g.output(g.op('Gather', [stored, index], `/${w.name}/Gather`, { axis: 0 }), `${w.name}_row`, 'float32', [1, w.cols]);
  }
  const serialized = g.serialize();
  const target = join(folder, 'split');
  mkdirSync(target);
  const limit = 30_000;
  const split = splitExternalData(serialized.model, serialized.weights!.path, limit, (i) => `piece-${i}.bin`, (i) => join(target, `piece-${i}.bin`));
  serialized.weights!.remove();
  assert.ok(split.files.length >= 3, `${split.files.length} pieces`);
  for (const file of split.files) assert.ok(statSync(join(target, file)).size <= limit, `${file} is within the limit`);
  writeFileSync(join(target, 'model.onnx'), split.model);
  assert.deepEqual(readdirSync(target).sort(), ['model.onnx', ...split.files].sort());

  const session = await NodeGraphSession.fromFile('split', join(target, 'model.onnx'), { threads: 1 });
  try {
    for (const row of [0, 1]) {
      const out = await session.run({ index: { type: 'int64', data: BigInt64Array.from([BigInt(row)]), dims: [1] } });
      for (const w of weights) assert.deepEqual(out[`${w.name}_row`]!.data, w.data.subarray(row * w.cols, (row + 1) * w.cols), `${w.name} row ${row}`);
    }
  } finally {
    await session.release();
  }
  assert.ok(existsSync(join(target, split.files[0]!)));
});
