import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SafetensorsCheckpoint, SafetensorsFile, writeSafetensors } from '../src/checkpoint/safetensors.js';
import { CheckpointError } from '../src/errors.js';
import { fixturePath } from './helpers/fixtures.js';

const modelDir = fixturePath('minicpmv2-tiny', 'model');

test('sharded checkpoint lists every tensor of the index with its shape', () => {
  const ckpt = new SafetensorsCheckpoint(modelDir);
  try {
    const index = JSON.parse(readFileSync(join(modelDir, 'model.safetensors.index.json'), 'utf8'));
    assert.deepEqual(ckpt.names().sort(), Object.keys(index.weight_map).sort());
    assert.deepEqual(ckpt.info('llm.model.embed_tokens.weight').shape, [4000, 256]);
    assert.deepEqual(ckpt.info('vpm.pos_embed').shape, [1, 49, 96]);
    assert.equal(ckpt.info('resampler.proj').dtype, 'BF16');
  } finally {
    ckpt.close();
  }
});

test('bf16 is widened exactly: every value is a float32 with a zero low half', () => {
  const ckpt = new SafetensorsCheckpoint(modelDir);
  try {
    const w = ckpt.float32('resampler.ln_q.weight');
    assert.equal(w.length, 256);
    const bits = new Uint32Array(w.buffer);
    assert.ok(bits.every((b) => (b & 0xffff) === 0));
    assert.ok(w.every((v) => Number.isFinite(v)));
  } finally {
    ckpt.close();
  }
});

test('writeSafetensors output reads back identically', () => {
  const dir = mkdtempSync(join(tmpdir(), 'omnilmm-st-'));
  try {
    const path = join(dir, 'x.safetensors');
    const a = Float32Array.from([1.5, -2, 3.25, 0, 7, 8]);
    writeSafetensors(path, [{ name: 'b', shape: [2, 3], data: a }, { name: 'a', shape: [1], data: Float32Array.of(9) }]);
    const f = new SafetensorsFile(path);
    assert.deepEqual([...f.tensors.keys()], ['a', 'b']);
    assert.deepEqual([...f.float32('b')], [...a]);
    assert.equal(readFileSync(path).readUInt32LE(0) % 8, 0);
    f.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('truncated, corrupt and incomplete checkpoints are refused with CheckpointError', () => {
  const dir = mkdtempSync(join(tmpdir(), 'omnilmm-st-'));
  try {
    for (const f of readdirSync(modelDir)) copyFileSync(join(modelDir, f), join(dir, f));
    const shard = join(dir, 'model-00002-of-00002.safetensors');
    const bytes = readFileSync(shard);
    writeFileSync(shard, bytes.subarray(0, bytes.length - 100));
    assert.throws(() => new SafetensorsCheckpoint(dir), (e) => e instanceof CheckpointError && /truncated/.test(e.message));
    writeFileSync(shard, Buffer.from('not a safetensors file at all'));
    assert.throws(() => new SafetensorsCheckpoint(dir), CheckpointError);
    rmSync(shard);
    assert.throws(() => new SafetensorsCheckpoint(dir), (e) => e instanceof CheckpointError && /missing/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
