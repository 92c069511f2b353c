import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { SafetensorsCheckpoint } from '../src/checkpoint/safetensors.js';
import { loadModelConfig } from '../src/models/registry.js';
import { Graph } from '../src/graph/builder.js';
import { dequantizeMatrix, matMulNBits, quantizeMatrix } from '../src/graph/quantize.js';
import { decodeImage, toPixelValues } from '../src/image/index.js';
import { PIXEL_MEAN, PIXEL_STD, prepareImageInput, slicePixels } from '../src/models/minicpmv/image-input.js';
import { VisionEncoder } from '../src/models/minicpmv/vision-encoder.js';
import { imagePixels, resizeImage } from '../src/models/omnilmm/image-input.js';
import { OmniLMMVisionEncoder } from '../src/models/omnilmm/vision-encoder.js';
import { vitDims } from '../src/models/parts/layers.js';
import { NodeGraphSession } from '../src/runtime/session.js';
import { fixturePath, openGolden, readFixtureJson } from './helpers/fixtures.js';
import { assertQuantisedClose } from './helpers/quantised.js';

/** A deterministic pseudo-random stream in [-1, 1) (xorshift32). */
function randomValues(n: number, seed: number): Float32Array {
  let state = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    out[i] = state / 2 ** 31 - 1;
  }
  return out;
}

test('int4 symmetric: one block of 16 by hand', () => {
  // The largest magnitude is −8 → scale −8 / −8 = 1, code = round(w) + 8; codes pack low nibble first.
  const w = Float32Array.from([0, 1, -1, 7, -8, 2.4, -2.6, 3, 0, 0, 0, 0, 0, 0, 0, 0.5]);
  const q = quantizeMatrix(w, 1, 16, { bits: 4, blockSize: 16, symmetric: true });
  assert.deepEqual([...q.scales], [1]);
  assert.equal(q.zeroPoints, null);
  // codes: 8, 9, 7, 15, 0, 10, 5, 11, 8, 8, 8, 8, 8, 8, 8, 9 (0.5 rounds half up to 1)
  assert.deepEqual([...q.codes], [0x98, 0xf7, 0xa0, 0xb5, 0x88, 0x88, 0x88, 0x98]);
  assert.deepEqual([...dequantizeMatrix(q)], [0, 1, -1, 7, -8, 2, -3, 3, 0, 0, 0, 0, 0, 0, 0, 1]);
});

test('int8 symmetric: two rows, a positive extreme, a padded last block', () => {
  // K = 20 in blocks of 16: block 1 of each row holds 4 values and 12 zeros of padding (code 128).
  // Row 0, block 0: −128 → scale 1, code k + 128 and 0 for −128.
  //        block 1 (16, −5, 18, 19): 19 → scale 19 / −128 = −0.1484375; 16 → round(−107.8) + 128 = 20,
  //        −5 → round(33.7) + 128 = 162, 18 → round(−121.3) + 128 = 7, 19 → 0.
  // Row 1, block 0 (−256, 3, 5, …): scale 2; −256 → 0, 3 → round(1.5) + 128 = 130, 5 → round(2.5) + 128 = 131.
  //        block 1 (33, 35, 37, 254): scale 254 / −128 = −1.984375; 33 → round(−16.6) + 128 = 111, 35 → 110, 37 → 109, 254 → 0.
  const row0 = Array.from({ length: 20 }, (_, k) => (k === 3 ? -128 : k === 17 ? -5 : k));
  const row1 = Array.from({ length: 20 }, (_, k) => (k === 0 ? -256 : k === 19 ? 254 : 2 * k + 1));
  const q = quantizeMatrix(Float32Array.from([...row0, ...row1]), 2, 20, { bits: 8, blockSize: 16, symmetric: true });
  assert.equal(q.blocksPerRow, 2);
  assert.deepEqual([...q.scales], [1, -0.1484375, 2, -1.984375]);
  assert.equal(q.codes.length, 2 * 2 * 16);
  assert.deepEqual([...q.codes.subarray(0, 5)], [128, 129, 130, 0, 132]);
  assert.deepEqual([...q.codes.subarray(16, 21)], [20, 162, 7, 0, 128]);
  assert.ok(q.codes.subarray(20, 32).every((c) => c === 128), 'padding is code 128 (zero)');
  assert.deepEqual([...q.codes.subarray(32, 35)], [0, 130, 131]);
  assert.deepEqual([...q.codes.subarray(48, 53)], [111, 110, 109, 0, 128]);
});

test('int4 with zero points: one block by hand', () => {
  // min −3, max 12 → scale 15/15 = 1, zero point round(3) = 3, code = round(w) + 3; zero points pack like codes.
  const w = Float32Array.from([-3, 12, 0, 1.4, 5, -1, 2, 11, 0, 0, 0, 0, 0, 0, 0, 0]);
  const q = quantizeMatrix(w, 1, 16, { bits: 4, blockSize: 16, symmetric: false });
  assert.deepEqual([...q.scales], [1]);
  assert.deepEqual([...q.zeroPoints!], [3]);
  assert.deepEqual([...q.codes], [0xf0, 0x43, 0x28, 0xe5, 0x33, 0x33, 0x33, 0x33]);
  assert.deepEqual([...dequantizeMatrix(q)], [-3, 12, 0, 1, 5, -1, 2, 11, 0, 0, 0, 0, 0, 0, 0, 0]);
});

test('quantisation error of random weights: half a step, one step where symmetric codes clamp', () => {
  const w = randomValues(64 * 256, 7);
  for (const bits of [4, 8] as const) {
    for (const symmetric of [true, false]) {
      const q = quantizeMatrix(w, 64, 256, { bits, blockSize: 32, symmetric });
      const back = dequantizeMatrix(q);
      for (let i = 0; i < w.length; i++) {
        // Symmetric codes end one step short on the side opposite the extreme: such a value may lose a whole step.
        const step = Math.abs(q.scales[Math.floor(i / 32)]!);
        const bound = symmetric ? step : step / 2;
        assert.ok(Math.abs(back[i]! - w[i]!) <= bound + 1e-6, `bits ${bits} symmetric ${symmetric} at ${i}`);
      }
    }
  }
});

/** Y = X · Wᵀ in float64, for X [m, k] and W [n, k]. */
function referenceMatMul(x: Float32Array, w: Float32Array, m: number, n: number, k: number): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let t = 0; t < k; t++) sum += x[i * k + t]! * w[j * k + t]!;
      y[i * n + j] = sum;
    }
  }
  return y;
}

async function runMatMulNBits(x: Float32Array, q: ReturnType<typeof quantizeMatrix>, m: number, accuracyLevel: number): Promise<Float32Array> {
  const g = new Graph('matmul_nbits');
  const input = g.input('x', 'float32', [1, m, q.cols]);
  g.output(matMulNBits(g, input, q, 'w', '/test', accuracyLevel), 'y', 'float32', [1, m, q.rows]);
  const session = await NodeGraphSession.create('MatMulNBits test', g.serialize(), { threads: 1 });
  try {
    const out = await session.run({ x: { type: 'float32', data: x, dims: [1, m, q.cols] } });
    return out.y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

test('MatMulNBits reproduces the dequantised float32 matmul', async () => {
  const [m, n, k] = [5, 48, 320];
  const x = randomValues(m * k, 11);
  const w = randomValues(n * k, 13);
  for (const bits of [4, 8] as const) {
    for (const blockSize of [32, 64, 128]) {
      for (const symmetric of [true, false]) {
        const q = quantizeMatrix(w, n, k, { bits, blockSize, symmetric });
        const expected = referenceMatMul(x, dequantizeMatrix(q), m, n, k);
        const label = `bits ${bits} block ${blockSize} symmetric ${symmetric}`;
        // accuracy_level 0: float32 arithmetic on the dequantised weights; |y| ≲ 10 over k = 320 terms.
        const exact = await runMatMulNBits(x, q, m, 0);
        for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(exact[i]! - expected[i]!) < 1e-4, `${label} level 0 at ${i}`);
        // accuracy_level 4 also rounds the activations to int8 per block: an error of about Σ|w|·step/2, well under 0.1 here.
        const fast = await runMatMulNBits(x, q, m, 4);
        for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(fast[i]! - expected[i]!) < 0.1, `${label} level 4 at ${i}`);
      }
    }
  }
});

test('OmniLMM: the int8, int8-dq and int4 Eva towers stay within the quantisation bound of the official features', async (t: TestContext) => {
  const fixture = 'omnilmm12b-tiny';
  const dir = fixturePath(fixture, 'model');
  const config = loadModelConfig(dir);
  assert.equal(config.modelType, 'omnilmm');
  if (config.modelType !== 'omnilmm') return;
  const checkpoint = new SafetensorsCheckpoint(dir);
  const resampler = { queryNum: 64, embedDim: 256, numHeads: 2, kvDim: 96, normEps: 1e-6 };
  try {
    for (const [precision, bits] of [['int8', 8], ['int4', 4], ['int8-dq', 8]] as const) {
      const encoder = await OmniLMMVisionEncoder.create(checkpoint, { vision: vitDims(config.vision), resampler }, { threads: 1 }, precision);
      try {
        for (const stem of ['grad_100x80', 'worldmap_ck']) {
          const resized = await decodeImage(readFileSync(fixturePath(fixture, 'preprocess', `${stem}.resized.png`)));
          const encoded = await encoder.encode(imagePixels(resizeImage(resized, 448)), 448, 448, { keepFeatures: true });
          const golden = openGolden(fixture, 'vision', `${stem}.safetensors`);
          try {
            t.diagnostic(assertQuantisedClose(`${precision} ${stem}`, bits, 4 * config.vision.usedDepth, [
              ['vision_features', encoded.features!, golden.float32('vision_features')],
              ['resampler_out', encoded.embeds, golden.float32('resampler_out')],
            ]));
          } finally {
            golden.close();
          }
        }
      } finally {
        await encoder.release();
      }
    }
  } finally {
    checkpoint.close();
  }
});

test('MiniCPM-V 2.0: the int8, int8-dq and int4 SigLIP towers stay within the quantisation bound of the official features', async (t: TestContext) => {
  const fixture = 'minicpmv2-tiny';
  const dir = fixturePath(fixture, 'model');
  const config = loadModelConfig(dir);
  assert.equal(config.modelType, 'minicpmv');
  if (config.modelType !== 'minicpmv') return;
  const checkpoint = new SafetensorsCheckpoint(dir);
  const resampler = { queryNum: 16, embedDim: 256, numHeads: 2, kvDim: 96, normEps: 1e-6 };
  const stem = 'grad_100x80';
  const image = await decodeImage(readFileSync(fixturePath(fixture, 'images', `${stem}.png`)));
  const slices = prepareImageInput(image, config).slices.map((s) => ({ pixels: slicePixels(s), height: s.height, width: s.width }));
  assert.equal(slices.length, readFixtureJson<{ n_slices: number }>(fixture, 'vision', `${stem}.json`).n_slices);
  try {
    for (const [precision, bits] of [['int8', 8], ['int4', 4], ['int8-dq', 8]] as const) {
      const encoder = await VisionEncoder.create(checkpoint, { vision: vitDims(config.vision), resampler }, { runtime: { threads: 1 }, precision });
      const golden = openGolden(fixture, 'vision', `${stem}.safetensors`);
      try {
        const encoded = await encoder.encode(slices, { keepFeatures: true });
        const outputs = encoded.flatMap((s, i): [string, Float32Array, Float32Array][] => {
          const key = `slice_${String(i).padStart(2, '0')}`;
          return [
            [`${key}.vision_features`, s.features!, golden.float32(`${key}.vision_features`)],
            [`${key}.resampler_out`, s.embeds, golden.float32(`${key}.resampler_out`)],
          ];
        });
        t.diagnostic(assertQuantisedClose(precision, bits, 4 * config.vision.usedDepth, outputs));
      } finally {
        golden.close();
        await encoder.release();
      }
    }
  } finally {
    checkpoint.close();
  }
});

test('MiniCPM-V 1.0: the int8, int8-dq and int4 SigLIP towers stay within the quantisation bound of the official features', async (t: TestContext) => {
  const fixture = 'minicpmv1-tiny';
  const dir = fixturePath(fixture, 'model');
  const config = loadModelConfig(dir);
  assert.equal(config.modelType, 'minicpmv');
  if (config.modelType !== 'minicpmv') return;
  const checkpoint = new SafetensorsCheckpoint(dir);
  // README §5.3 of the fixture: 4×4 queries, a fixed (not adaptive) key position table.
  const resampler = { queryNum: 16, embedDim: 256, numHeads: 2, kvDim: 96, normEps: 1e-6, adaptive: false };
  try {
    for (const [precision, bits] of [['int8', 8], ['int4', 4], ['int8-dq', 8]] as const) {
      const encoder = await VisionEncoder.create(checkpoint, { vision: vitDims(config.vision), resampler }, { runtime: { threads: 1 }, precision });
      try {
        for (const stem of ['grad_100x80', 'worldmap_ck']) {
          // The official preprocessing's resized image (README §5.1), normalised as (u8/255 − 0.5)/0.5.
          const png = await decodeImage(readFileSync(fixturePath(fixture, 'preprocess', `${stem}.resized.png`)));
          const slice = { pixels: toPixelValues(png, PIXEL_MEAN, PIXEL_STD), height: png.height, width: png.width };
          const [encoded] = await encoder.encode([slice], { keepFeatures: true });
          const golden = openGolden(fixture, 'vision', `${stem}.safetensors`);
          try {
            t.diagnostic(assertQuantisedClose(`${precision} ${stem}`, bits, 4 * config.vision.usedDepth, [
              ['vision_features', encoded!.features!, golden.float32('vision_features')],
              ['resampler_out', encoded!.embeds, golden.float32('resampler_out')],
            ]));
          } finally {
            golden.close();
          }
        }
      } finally {
        await encoder.release();
      }
    }
  } finally {
    checkpoint.close();
  }
});
