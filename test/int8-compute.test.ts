// int8 compute (precision 'int8-dq', src/graph/quantize.ts): the per-channel int8 weights by hand, ONNX Runtime's
// DynamicQuantizeMatMul against an independent float64 model of its arithmetic, and the default precisions:
// loadModel with nothing asked builds the int8 / int8-dq graphs, and fp32 asked by name stays token-exact.
// The int8-dq towers' errors against the official features are checked in test/quantize.test.ts and
// test/minicpmv46-vision.test.ts.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Graph } from '../src/graph/builder.js';
import { dynamicQuantizeMatMul, quantizeColumnsInt8 } from '../src/graph/quantize.js';
import { loadModel } from '../src/index.js';
import { DEFAULT_PRECISION, DEFAULT_VISION_PRECISION, withDefaultPrecisions } from '../src/models/family.js';
import { onModelCacheEvent, type ModelCacheEvent } from '../src/runtime/model-cache.js';
import { NodeGraphSession } from '../src/runtime/session.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';

const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-int8-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

test('per-channel int8 codes by hand: scale max|w| / 127, stored transposed', () => {
  // Row 0: max |w| = 127 → scale 1, codes = round(w). Row 1: max |w| = 2.54 → scale 0.02; 1.01 / 0.02 = 50.5 → 51,
  // −2.54 → −127, 0.3 → 15. Row 2 is all zeros: scale 0, codes 0.
  const w = Float32Array.from([127, -3.4, 0.5, 1.01, -2.54, 0.3, 0, 0, 0]);
  const q = quantizeColumnsInt8(w, 3, 3);
  assert.deepEqual([...q.scales], [1, Math.fround(2.54 / 127), 0]);
  // [K = 3, N = 3]: column n holds row n of w.
  assert.deepEqual([...q.codes], [127, 51, 0, -3, -127, 0, 1, 15, 0]);
});

test('DynamicQuantizeMatMul: activations per tensor to uint8, int8 weights per column, like a float64 model of it', async () => {
  const [m, n, k] = [6, 40, 96];
  let state = 12345;
  const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const x = Float32Array.from({ length: m * k }, () => 3 * random() + 0.5);
  const w = Float32Array.from({ length: n * k }, () => random() / 10);
  const q = quantizeColumnsInt8(w, n, k);

  // DynamicQuantizeLinear: the range [min(0, min x), max(0, max x)] on 0..255, zero point round(−min / scale).
  let lo = 0;
  let hi = 0;
  for (const v of x) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  const scale = Math.fround((hi - lo) / 255);
  const zero = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  const xq = Array.from(x, (v) => Math.min(255, Math.max(0, Math.round(v / scale) + zero)));
  const expected = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let t = 0; t < k; t++) sum += (xq[i * k + t]! - zero) * q.codes[t * n + j]!;
      expected[i * n + j] = sum * scale * q.scales[j]!;
    }
  }

  const g = new Graph('dq_matmul');
  const input = g.input('x', 'float32', [m, k]);
  g.output(dynamicQuantizeMatMul(g, input, q, 'w', '/test'), 'y', 'float32', [m, n]);
  const session = await NodeGraphSession.create('DynamicQuantizeMatMul test', g.serialize(), { threads: 1 });
  try {
    const y = (await session.run({ x: { type: 'float32', data: x, dims: [m, k] } })).y!.data as Float32Array;
    // Integer sums are exact; only the final float32 scaling rounds (|y| ≲ 3, so 1e-4 is many ulps); a value rounded
    // half the other way would move y by scale · |w| ≈ 0.003.
    for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(y[i]! - expected[i]!) < 1e-4, `at ${i}: ${y[i]} vs ${expected[i]}`);
  } finally {
    await session.release();
  }
});

test('the defaults are int8-dq for the language model and the vision tower; what is asked is kept', () => {
  assert.equal(DEFAULT_PRECISION, 'int8-dq');
  assert.equal(DEFAULT_VISION_PRECISION, 'int8-dq');
  assert.deepEqual(withDefaultPrecisions({ threads: 1 }), { threads: 1, precision: 'int8-dq', visionPrecision: 'int8-dq' });
  assert.deepEqual(withDefaultPrecisions({ precision: 'fp32', visionPrecision: 'fp32' }), { precision: 'fp32', visionPrecision: 'fp32' });
  assert.deepEqual(withDefaultPrecisions({ visionPrecision: 'int4' }), { precision: 'int8-dq', visionPrecision: 'int4' });
});

/** The cache events of one load (the model released at once), by part. */
async function loadEvents(options: Parameters<typeof loadModel>[1]): Promise<Map<string, ModelCacheEvent>> {
  const events = new Map<string, ModelCacheEvent>();
  const stop = onModelCacheEvent((event) => void ((event.type === 'hit' || event.type === 'written') && events.set(event.part, event)));
  try {
    const model = await loadModel(fixturePath('minicpmv2-tiny', 'model'), { threads: 1, cache: join(scratch, 'cache'), ...options });
    await model.release();
  } finally {
    stop();
  }
  return events;
}

test('loadModel with no precision builds the int8-dq language model and tower; fp32 asked by name is exact', async () => {
  const byDefault = await loadEvents({});
  assert.ok(byDefault.size >= 2, 'the load built its graphs into the cache');
  for (const event of byDefault.values()) assert.equal(event.type, 'written');
  // The same graphs again, asked for by name: every part is found in the cache, in the same folders.
  const named = await loadEvents({ precision: 'int8-dq', visionPrecision: 'int8-dq' });
  for (const [part, event] of byDefault) {
    assert.equal(named.get(part)?.type, 'hit', part);
    assert.equal((named.get(part) as { folder: string }).folder, (event as { folder: string }).folder, part);
  }
  // fp32 is other graphs (the vision tower and the decoder are built anew) and answers token-exact.
  const fp32 = await loadEvents({ precision: 'fp32', visionPrecision: 'fp32' });
  for (const part of ['decoder', 'vision']) assert.equal(fp32.get(part)?.type, 'written', part);

  const c = readFixtureJson<{ msgs: { role: 'user' | 'assistant'; content: string }[]; input: { file: string }; runs: { greedy: { new_token_ids: number[] } } }>(
    'minicpmv2-tiny', 'llm', 'single_turn_grad.json');
  const model = await loadModel(fixturePath('minicpmv2-tiny', 'model'), { threads: 1, cache: join(scratch, 'cache'), precision: 'fp32', visionPrecision: 'fp32' });
  try {
    const result = await model.run({ messages: c.msgs, image: readFileSync(fixturePath('minicpmv2-tiny', c.input.file)), decoding: 'greedy', maxNewTokens: 24 });
    assert.deepEqual(result.outputIds, c.runs.greedy.new_token_ids);
  } finally {
    await model.release();
  }
});
