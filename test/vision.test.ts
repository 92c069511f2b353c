import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { SafetensorsCheckpoint } from '../src/checkpoint/safetensors.js';
import { CheckpointError } from '../src/errors.js';
import { buildVisionGraph, readVisionPosEmbed } from '../src/models/minicpmv/vision.js';
import type { VisionDims } from '../src/models/parts/layers.js';
import { buildResamplerGraph, type ResamplerDims } from '../src/models/parts/resampler.js';
import { get2dSinCosPosEmbed, patchGrid, patchify, resamplePosEmbed } from '../src/models/parts/position-embedding.js';
import { VisionEncoder, type SliceInput } from '../src/models/minicpmv/vision-encoder.js';
import { NodeGraphSession } from '../src/runtime/session.js';
import { fixturePath, maxAbsDiff, openGolden, readFixtureJson } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
// Sizes of the tiny checkpoint (README §2.2, §2.4).
const VISION: VisionDims = { patchSize: 14, embedDim: 96, depthUsed: 3, numHeads: 4, mlpHidden: 358, normEps: 1e-6, posGrid: [7, 7] };
const RESAMPLER: ResamplerDims = { queryNum: 16, embedDim: 256, numHeads: 2, kvDim: 96, normEps: 1e-6 };
const CASES = ['grad_100x80', 'thin_30x900', 'wide_1000x300'] as const;

interface VisionCase {
  n_slices: number;
  preprocess: string;
  slices: { index: number; pixel_values_shape: [number, number, number]; tgt_size_hw: [number, number] }[];
}
interface PreprocessCase {
  slices: { png: string }[];
}

let checkpoint: SafetensorsCheckpoint;
let encoder: VisionEncoder;

before(async () => {
  checkpoint = new SafetensorsCheckpoint(fixturePath(FIXTURE, 'model'));
  encoder = await VisionEncoder.create(checkpoint, { vision: VISION, resampler: RESAMPLER });
});

after(async () => {
  await encoder.release();
  checkpoint.close();
});

/** The exact slice PNG, normalised like torchvision ToTensor + Normalize(0.5, 0.5) in float32 (README §3.1.8). */
async function loadSlice(png: string): Promise<SliceInput> {
  const { data, info } = await sharp(fixturePath(FIXTURE, png)).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  const { width, height } = info;
  const pixels = new Float32Array(3 * height * width);
  const fr = Math.fround;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        pixels[(c * height + y) * width + x] = fr(fr(fr(data[(y * width + x) * 3 + c]! / 255) - 0.5) / 0.5);
      }
    }
  }
  return { pixels, height, width };
}

async function loadCase(stem: string): Promise<{ meta: VisionCase; slices: SliceInput[] }> {
  const meta = readFixtureJson<VisionCase>(FIXTURE, 'vision', `${stem}.json`);
  const pre = readFixtureJson<PreprocessCase>(FIXTURE, meta.preprocess);
  const slices = await Promise.all(pre.slices.map((s) => loadSlice(s.png)));
  return { meta, slices };
}

const sliceKey = (i: number) => `slice_${String(i).padStart(2, '0')}`;

test('2-D sin-cos table: first half encodes the column, second half the row (hand-computed entries)', () => {
  const e = 256;
  const quarter = e / 4;
  const table = get2dSinCosPosEmbed(e, [3, 5]);
  assert.equal(table.length, 15 * e);
  // Position (row 2, col 3) is row 2·5 + 3 = 13. For k = 0, ω = 1; for k = 32, ω = 10000^-0.5 = 0.01.
  const at = (pos: number, i: number) => table[pos * e + i]!;
  assert.ok(Math.abs(at(13, 0) - Math.sin(3)) < 1e-7);
  assert.ok(Math.abs(at(13, quarter) - Math.cos(3)) < 1e-7);
  assert.ok(Math.abs(at(13, 2 * quarter) - Math.sin(2)) < 1e-7);
  assert.ok(Math.abs(at(13, 3 * quarter) - Math.cos(2)) < 1e-7);
  assert.ok(Math.abs(at(13, 32) - Math.sin(0.03)) < 1e-7);
  assert.ok(Math.abs(at(13, 3 * quarter + 32) - Math.cos(0.02)) < 1e-7);
  // Origin: sines 0, cosines 1.
  assert.deepEqual([at(0, 5), at(0, quarter + 5), at(0, 2 * quarter + 5), at(0, 3 * quarter + 5)], [0, 1, 0, 1]);
});

test('the stored resampler pos_embed is the sin-cos table of the 4×4 query grid', () => {
  const stored = checkpoint.float32('resampler.pos_embed');
  const table = get2dSinCosPosEmbed(RESAMPLER.embedDim, [4, 4]);
  // Stored as bf16: 8 mantissa bits, so compare to bf16 precision.
  assert.ok(maxAbsDiff(stored, table) <= 2 ** -8);
});

test('patchify: row-major patches in (channel, ky, kx) order, zero padding right and bottom', () => {
  const height = 3;
  const width = 5;
  const pixels = Float32Array.from({ length: 3 * height * width }, (_, i) => i + 1);
  const patches = patchify(pixels, height, width, 2);
  assert.deepEqual(patchGrid(height, width, 2), [2, 3]);
  assert.equal(patches.length, 6 * 12);
  // Patch (row 0, col 1): channel 0 rows 0-1, cols 2-3 → pixels 3,4 / 8,9; channel 1 adds 15.
  assert.deepEqual([...patches.subarray(12, 24)], [3, 4, 8, 9, 18, 19, 23, 24, 33, 34, 38, 39]);
  // Patch (row 1, col 2): only pixel (y 2, x 4) exists per channel; the rest is padding.
  assert.deepEqual([...patches.subarray(60, 72)], [15, 0, 0, 0, 30, 0, 0, 0, 45, 0, 0, 0]);
});

test('resamplePosEmbed matches timm (up-sampling 7×7→29×36, down-sampling 7×7→6×175) and skips a same-size square grid', () => {
  const stored = readVisionPosEmbed(checkpoint, VISION);
  for (const stem of ['grad_100x80', 'thin_30x900']) {
    const meta = readFixtureJson<VisionCase>(FIXTURE, 'vision', `${stem}.json`);
    const golden = openGolden(FIXTURE, 'vision', `${stem}.safetensors`);
    try {
      const ours = resamplePosEmbed(stored, VISION.posGrid, meta.slices[0]!.tgt_size_hw);
      const diff = maxAbsDiff(ours, golden.float32('slice_00.pos_embed_resampled'));
      assert.ok(diff <= 1e-5, `${stem}: pos_embed_resampled differs by ${diff}`);
    } finally {
      golden.close();
    }
  }
  assert.equal(resamplePosEmbed(stored, [7, 7], [7, 7]), stored);
});

test('patch embedding (the conv as a MatMul over patchified pixels) matches timm on grad_100x80', async () => {
  const { meta, slices } = await loadCase('grad_100x80');
  const slice = slices[0]!;
  const grid = meta.slices[0]!.tgt_size_hw;
  const n = grid[0] * grid[1];
  const session = await NodeGraphSession.create('vision', buildVisionGraph(checkpoint, VISION, { withPatchEmbed: true }).serialize());
  const golden = openGolden(FIXTURE, 'vision', 'grad_100x80.safetensors');
  try {
    const out = await session.run({
      pixel_patches: { type: 'float32', data: patchify(slice.pixels, slice.height, slice.width, 14), dims: [1, n, 588] },
      pos_embed: { type: 'float32', data: encoder.gridTables(grid).visionPosEmbed, dims: [n, 96] },
    });
    const diff = maxAbsDiff(out.patch_embed!.data as Float32Array, golden.float32('slice_00.patch_embed'));
    assert.ok(diff <= 1e-5, `patch_embed differs by ${diff}`);
  } finally {
    golden.close();
    await session.release();
  }
});

for (const stem of CASES) {
  test(`vision features and resampler outputs match the official code: ${stem}`, async (t) => {
    const { meta, slices } = await loadCase(stem);
    assert.equal(slices.length, meta.n_slices);
    const golden = openGolden(FIXTURE, 'vision', `${stem}.safetensors`);
    try {
      const started = performance.now();
      const encoded = await encoder.encode(slices, { keepFeatures: true });
      const perSlice = (performance.now() - started) / slices.length;
      const all = new Float32Array(slices.length * RESAMPLER.queryNum * RESAMPLER.embedDim);
      encoded.forEach((s, i) => {
        const key = sliceKey(i);
        assert.deepEqual([slices[i]!.height, slices[i]!.width], meta.slices[i]!.pixel_values_shape.slice(1));
        const featureDiff = maxAbsDiff(s.features!, golden.float32(`${key}.vision_features`));
        assert.ok(featureDiff <= 1e-4, `${key}.vision_features differs by ${featureDiff}`);
        const outDiff = maxAbsDiff(s.embeds, golden.float32(`${key}.resampler_out`));
        assert.ok(outDiff <= 1e-4, `${key}.resampler_out differs by ${outDiff}`);
        all.set(s.embeds, i * s.embeds.length);
      });
      const allDiff = maxAbsDiff(all, golden.float32('resampler_out_all'));
      assert.ok(allDiff <= 1e-4, `resampler_out_all differs by ${allDiff}`);
      t.diagnostic(`${stem}: ${slices.length} slice(s), ${perSlice.toFixed(1)} ms per slice`);
    } finally {
      golden.close();
    }
  });
}

test('a batch of two equal-size slices gives the same result as two single runs', async () => {
  const { slices } = await loadCase('wide_1000x300');
  const pair = [slices[1]!, slices[2]!];
  assert.equal(pair[0]!.height, pair[1]!.height);
  assert.equal(pair[0]!.width, pair[1]!.width);
  const batched = await encoder.encodeBatch(pair, { keepFeatures: true });
  for (const [k, slice] of pair.entries()) {
    const [single] = await encoder.encodeBatch([slice], { keepFeatures: true });
    assert.ok(maxAbsDiff(batched[k]!.features!, single!.features!) <= 1e-6);
    assert.ok(maxAbsDiff(batched[k]!.embeds, single!.embeds) <= 1e-6);
  }
  await assert.rejects(encoder.encodeBatch([slices[0]!, slices[1]!]), /one size/);
});

test('encode splits same-size slices into runs of at most maxBatch and keeps the input order', async () => {
  const { slices } = await loadCase('wide_1000x300');
  const small = await VisionEncoder.create(checkpoint, { vision: VISION, resampler: RESAMPLER }, { maxBatch: 2 });
  try {
    const reordered = [slices[3]!, slices[0]!, slices[2]!, slices[1]!];
    const [chunked, whole] = [await small.encode(reordered), await encoder.encode(reordered)];
    chunked.forEach((s, i) => assert.ok(maxAbsDiff(s.embeds, whole[i]!.embeds) <= 1e-6));
    const single = await encoder.encode([slices[0]!]);
    assert.ok(maxAbsDiff(chunked[1]!.embeds, single[0]!.embeds) <= 1e-6);
  } finally {
    await small.release();
  }
});

test('sizes that do not fit the checkpoint fail with a CheckpointError naming the tensor', () => {
  assert.throws(() => buildVisionGraph(checkpoint, { ...VISION, mlpHidden: 384 }), (err: unknown) => {
    return err instanceof CheckpointError && /vpm\.blocks\.0\.mlp\.fc1\.weight has shape \[358,96\]/.test(err.message);
  });
  assert.throws(() => buildResamplerGraph(checkpoint, RESAMPLER, { prefix: 'resampler2.' }), CheckpointError);
});
