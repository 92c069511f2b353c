import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Graph, f } from '../src/graph/builder.js';
import { GraphSession } from '../src/runtime/session.js';

test('a built graph runs on ONNX Runtime: external weights, shared constants, float and int attributes', async () => {
  // y = LayerNorm(x @ W + b) over the last axis, then Softmax; values checked by hand below.
  const g = new Graph('tiny');
  const x = g.input('x', 'float32', ['batch', 2]);
  const w = g.weight('w', Float32Array.from({ length: 2 * 300 }, (_, i) => (i % 300 === 0 ? 1 : 0)), [2, 300]);
  const mm = g.op('MatMul', [x, w], '/mm/MatMul');
  const added = g.op('Add', [mm, g.scalar(1)], '/mm/Add');
  const again = g.op('Add', [added, g.scalar(1)], '/mm/Add_1');
  assert.equal(g.scalar(1), g.scalar(1));
  const sliced = g.op('Slice', [again, g.ints([0]), g.ints([2]), g.ints([1])], '/Slice');
  const ln = g.op('LayerNormalization', [sliced, g.constant('float32', [2], [1, 1]), g.constant('float32', [2], [0, 0])], '/ln', {
    axis: -1,
    epsilon: f(1e-5),
  });
  g.output(ln, 'y', 'float32', ['batch', 2]);
  const serialized = g.serialize();
  assert.equal(serialized.externalData.length, 1);
  const session = await GraphSession.create('tiny', serialized, { threads: 1 });
  const out = await session.run({ x: { type: 'float32', data: Float32Array.from([3, 5, 0, 0]), dims: [2, 2] } });
  // Row 0: x@W column 0 = 3+5 = 8, column 1 = 0 → +2 → [10, 2] → layer norm → [1, -1]. Row 1: [2, 2] → [0, 0].
  assert.deepEqual([...out.y!.data].map((v) => Math.round(Number(v) * 1e5) / 1e5), [1, -1, 0, 0]);
  await session.release();
});
