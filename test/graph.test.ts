import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Graph, WeightFile, f } from '../src/graph/builder.js';
import { RuntimeError } from '../src/errors.js';
import { NodeGraphSession } from '../src/runtime/session.js';

// Every graph here puts its weight folder under this one, so the tests can see what is left behind: nothing.
const tempDir = mkdtempSync(join(tmpdir(), 'omnilmm-graph-test-'));
after(() => {
  const left = readdirSync(tempDir);
  rmSync(tempDir, { recursive: true, force: true });
  assert.deepEqual(left, [], 'every weight folder was removed');
});

test('a built graph runs on ONNX Runtime: external weights, shared constants, float and int attributes', async () => {
  // y = LayerNorm(x @ W + b) over the last axis, then Softmax; values checked by hand below.
  const g = new Graph('tiny', { tempDir });
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
  assert.ok(serialized.weights);
  assert.equal(statSync(serialized.weights.path).size, 2 * 300 * 4);
  const session = await NodeGraphSession.create('tiny', serialized, { threads: 1 });
  const out = await session.run({ x: { type: 'float32', data: Float32Array.from([3, 5, 0, 0]), dims: [2, 2] } });
  // Row 0: x@W column 0 = 3+5 = 8, column 1 = 0 → +2 → [10, 2] → layer norm → [1, -1]. Row 1: [2, 2] → [0, 0].
  assert.deepEqual([...out.y!.data].map((v) => Math.round(Number(v) * 1e5) / 1e5), [1, -1, 0, 0]);
  await session.release();
});

/** A graph whose outputs are rows of three weights, picked by an index input: Gather reads each weight as stored. */
function rowsGraph(weights: { name: string; rows: number; cols: number; data: Float32Array }[]): Graph {
  const g = new Graph('rows', { tempDir });
  const index = g.input('index', 'int64', [1]);
  for (const w of weights) {
    const stored = g.weight(w.name, w.data, [w.rows, w.cols]);
    g.output(g.op('Gather', [stored, index], `/${w.name}/Gather`, { axis: 0 }), `${w.name}_row`, 'float32', [1, w.cols]);
  }
  return g;
}

test('file-backed weights: spilled at once to one page-aligned file, read back exactly, the folder removed after creation', async () => {
  const make = (name: string, rows: number, cols: number) => ({
    name, rows, cols, data: Float32Array.from({ length: rows * cols }, (_, i) => Math.fround(Math.sin(i + name.length) * 100)),
  });
  // 3·50·4 = 600 bytes stay inline; 7·301·4 = 8428 and 5·1000·4 = 20000 bytes go to the file at offsets 0 and 12288.
  const weights = [make('small', 3, 50), make('odd', 7, 301), make('large', 5, 1000)];
  const g = rowsGraph(weights);
  const folders = readdirSync(tempDir);
  assert.equal(folders.length, 1, 'the weight folder exists as soon as a large weight was added');
  const serialized = g.serialize();
  const file = serialized.weights!;
  assert.equal(file.dir, join(tempDir, folders[0]!));
  assert.equal(file.byteLength, 12288 + 20000);
  const bytes = readFileSync(file.path);
  assert.equal(bytes.length, 12288 + 20000);
  assert.deepEqual(new Float32Array(bytes.buffer, bytes.byteOffset, 7 * 301), weights[1]!.data);
  assert.deepEqual(new Float32Array(bytes.buffer, bytes.byteOffset + 12288, 5 * 1000), weights[2]!.data);

  const session = await NodeGraphSession.create('rows', serialized, { threads: 1 });
  try {
    assert.equal(existsSync(file.dir), false, 'the folder is removed once the session exists');
    for (let row = 0; row < 3; row++) {
      const out = await session.run({ index: { type: 'int64', data: BigInt64Array.from([BigInt(row)]), dims: [1] } });
      for (const w of weights) {
        assert.deepEqual(out[`${w.name}_row`]!.data, w.data.subarray(row * w.cols, (row + 1) * w.cols), `${w.name} row ${row}`);
      }
    }
  } finally {
    await session.release();
  }
});

test('a graph whose weights are all small has no weight file and is loaded from memory', async () => {
  const g = rowsGraph([{ name: 'w', rows: 2, cols: 3, data: Float32Array.from([1, 2, 3, 4, 5, 6]) }]);
  const serialized = g.serialize();
  assert.equal(serialized.weights, null);
  const session = await NodeGraphSession.create('small', serialized, { threads: 1 });
  const out = await session.run({ index: { type: 'int64', data: BigInt64Array.from([1n]), dims: [1] } });
  assert.deepEqual([...(out.w_row!.data as Float32Array)], [4, 5, 6]);
  await session.release();
});

test('a session from a file suspends until its next run, which reads the file again; others ignore suspend', async () => {
  const rowOne = async (session: NodeGraphSession) =>
    [...((await session.run({ index: { type: 'int64', data: BigInt64Array.from([1n]), dims: [1] } })).w_row!.data as Float32Array)];
  const modelFile = (values: number[]) => rowsGraph([{ name: 'w', rows: 2, cols: 3, data: Float32Array.from(values) }]).serialize().model;
  const path = join(tempDir, 'suspended.onnx');
  writeFileSync(path, modelFile([1, 2, 3, 4, 5, 6]));
  const fromFile = await NodeGraphSession.fromFile('suspended', path, { threads: 1 });
  try {
    assert.deepEqual(await rowOne(fromFile), [4, 5, 6]);
    await fromFile.suspend();
    // The next run opens the file again: it now holds other weights.
    writeFileSync(path, modelFile([1, 2, 3, 7, 8, 9]));
    assert.deepEqual(await rowOne(fromFile), [7, 8, 9]);
    assert.deepEqual(fromFile.inputNames, ['index']);
  } finally {
    await fromFile.release();
    rmSync(path);
  }
  await assert.rejects(rowOne(fromFile), (err: Error) => err instanceof RuntimeError && /already released/.test(err.message));

  const inMemory = await NodeGraphSession.create('in memory', rowsGraph([{ name: 'w', rows: 2, cols: 3, data: Float32Array.from([1, 2, 3, 4, 5, 6]) }]).serialize(), { threads: 1 });
  await inMemory.suspend();
  assert.deepEqual(await rowOne(inMemory), [4, 5, 6]);
  await inMemory.release();
});

test('a session that cannot be created still removes the weight folder', async () => {
  const g = new Graph('broken', { tempDir });
  const x = g.input('x', 'float32', [1, 400]);
  g.output(g.op('NoSuchOperator', [x, g.weight('w', new Float32Array(400), [400])], '/bad'), 'y', 'float32', [1, 400]);
  const serialized = g.serialize();
  await assert.rejects(NodeGraphSession.create('broken', serialized, { threads: 1 }), RuntimeError);
  assert.equal(existsSync(serialized.weights!.dir), false);
});

test('a graph serializes once and takes no weights afterwards', () => {
  const g = new Graph('once', { tempDir });
  g.weight('w', new Float32Array(1000), [1000]);
  const serialized = g.serialize();
  assert.throws(() => g.serialize(), /already serialized/);
  assert.throws(() => g.weight('v', new Float32Array(4), [4]), /already serialized/);
  serialized.weights!.remove();
  assert.equal(existsSync(serialized.weights!.dir), false);
});

test('a weight file that cannot be created fails with a RuntimeError that names the folder', () => {
  const missing = join(tempDir, 'no', 'such', 'folder');
  assert.throws(() => new WeightFile(missing), (err: unknown) => err instanceof RuntimeError && err.message.includes(missing));
});

test('a new weight file first removes the folders that dead processes left behind, and only those', () => {
  const parent = join(tempDir, 'sweep');
  const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
  const dead = join(parent, `omnilmm-graph-${deadPid}-abc123`);
  const live = join(parent, `omnilmm-graph-${process.ppid}-def456`);
  const other = join(parent, 'omnilmm-graph-notapid');
  for (const dir of [dead, live, other]) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'weights.bin'), 'x');
  }
  const file = new WeightFile(parent);
  assert.equal(existsSync(dead), false);
  assert.equal(existsSync(live), true);
  assert.equal(existsSync(other), true);
  assert.match(file.dir, new RegExp(`omnilmm-graph-${process.pid}-`));
  file.remove();
  rmSync(parent, { recursive: true });
});

test('the folder of a graph dropped before serialize() (a builder that threw) goes when the graph is collected', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const before = new Set(readdirSync(tempDir));
  (() => {
    const g = new Graph('dropped', { tempDir });
    g.weight('w', new Float32Array(1000), [1000]);
  })();
  const created = readdirSync(tempDir).filter((entry) => !before.has(entry));
  assert.equal(created.length, 1);
  const dir = join(tempDir, created[0]!);
  for (let tries = 0; tries < 50 && existsSync(dir); tries++) {
    gc();
    await sleep(20);
  }
  assert.equal(existsSync(dir), false);
});
