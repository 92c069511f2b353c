import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { ImageError } from '../src/errors.js';
import { decodeImage } from '../src/image/decode.js';
import { resizeBicubic } from '../src/image/resize.js';
import { cropImage, toPixelValues, type RgbImage } from '../src/image/rgb.js';
import { ensureDivide, planSlices, roundHalfEven, sliceImage, type Size, type SliceOptions } from '../src/image/slice.js';
import { fixturePath, maxAbsDiff, openGolden, readFixtureJson } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
const MINICPMV2: SliceOptions = { scaleResolution: 448, patchSize: 14, maxSliceNums: 9 };
const MEAN = [0.5, 0.5, 0.5];
const STD = [0.5, 0.5, 0.5];

interface PreprocessCase {
  input: { file: string; rgb_sha256: string; size: [number, number]; decoded_png?: string };
  best_grid: [number, number] | null;
  source_size_wh: [number, number];
  refine_size_wh: [number, number] | null;
  patches_size_wh: [number, number][][];
  n_slices: number;
  slices: {
    index: number;
    size_wh: [number, number];
    png_rgb_sha256: string;
    pixel_values_shape: [number, number, number];
    pixel_values_stats: { sum: number; abs_sum: number; min: number; max: number };
  }[];
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const stems = readdirSync(fixturePath(FIXTURE, 'preprocess'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort();

test('the fixture has the 12 preprocess cases of README §4.2', () => {
  assert.equal(stems.length, 12);
});

for (const stem of stems) {
  test(`preprocess ${stem}: plan, slice bytes and pixel tensors match the official code`, async () => {
    const golden = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', `${stem}.json`);
    // The JPEG case starts from PIL's own decode (README §3.1.7); decoding the JPEG is checked in image-decode.test.ts.
    const img = await decodeImage(readFileSync(fixturePath(FIXTURE, golden.input.decoded_png ?? golden.input.file)));
    assert.deepEqual([img.width, img.height], golden.input.size);
    assert.equal(sha256(img.data), golden.input.rgb_sha256, 'RGB bytes after convert("RGB")');

    const { plan, slices } = sliceImage(img, MINICPMV2);
    assert.deepEqual(plan.grid, golden.best_grid);
    assert.deepEqual(plan.source, golden.source_size_wh);
    assert.deepEqual(plan.refine, golden.refine_size_wh);
    assert.deepEqual(plan.patches, golden.patches_size_wh);
    assert.equal(slices.length, golden.n_slices);

    const tensors = openGolden(FIXTURE, 'preprocess', `${stem}.safetensors`);
    try {
      for (const [i, slice] of slices.entries()) {
        const want = golden.slices[i]!;
        assert.deepEqual([slice.width, slice.height], want.size_wh, `slice ${i} size`);
        assert.equal(sha256(slice.data), want.png_rgb_sha256, `slice ${i} RGB bytes`);

        const values = toPixelValues(slice, MEAN, STD);
        assert.deepEqual([3, slice.height, slice.width], want.pixel_values_shape);
        const name = `slice_${String(i).padStart(2, '0')}.pixel_values_crop`;
        const crop = tensors.float32(name);
        assert.deepEqual(tensors.info(name).shape, [3, 28, 42]);
        assert.ok(maxAbsDiff(cropChw(values, slice, 28, 42), crop) <= 1e-6, `slice ${i} pixel_values_crop`);

        const stats = tensorStats(values);
        const ws = want.pixel_values_stats;
        assert.ok(Math.abs(stats.sum - ws.sum) <= 1e-6 * Math.max(Math.abs(ws.sum), 1), `slice ${i} sum ${stats.sum} vs ${ws.sum}`);
        assert.ok(Math.abs(stats.absSum - ws.abs_sum) <= 1e-6 * ws.abs_sum, `slice ${i} abs_sum ${stats.absSum} vs ${ws.abs_sum}`);
        assert.ok(Math.abs(stats.min - ws.min) <= 1e-6 && Math.abs(stats.max - ws.max) <= 1e-6, `slice ${i} min/max`);
      }
    } finally {
      tensors.close();
    }
  });
}

/** `values[:, :h, :w]` of a CHW tensor laid out for `img`. */
function cropChw(values: Float32Array, img: RgbImage, h: number, w: number): Float32Array {
  const out = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      const from = (c * img.height + y) * img.width;
      out.set(values.subarray(from, from + w), (c * h + y) * w);
    }
  }
  return out;
}

function tensorStats(values: Float32Array): { sum: number; absSum: number; min: number; max: number } {
  let sum = 0;
  let absSum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    sum += v;
    absSum += Math.abs(v);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { sum, absSum, min, max };
}

// Expectations below were worked out by hand from the upstream formulas (README §3.1 steps 1–5), not by running our code.
test('planSlices: 449x448 is cut into [2, 1] and ensure_divide(449, 2) rounds 224.5 to the even 224', () => {
  // ratio = 449·448/448² = 1.0022 → multiple 2; candidates 2 and 3 → grids [1,2] [2,1] [1,3] [3,1];
  // log(449/448) = 0.0022: errors 0.6954, 0.6909, 1.1008, 1.0964 → [2, 1].
  // source: r = 449/448, h = int(448/√r) = int(447.50) = 447, w = int(447·r) = int(447.998) = 447 → 32·14 = 448 each.
  // refine: ensure_divide(449, 2) = round(224.5)·2 = 448, ensure_divide(448, 1) = 448 → cell (224, 448), r = 0.5:
  // h = int(448/√0.5) = int(633.57) = 633 → round(45.21) = 45 → 630; w = int(633·0.5) = 316 → round(22.57) = 23 → 322.
  assert.deepEqual(planSlices([449, 448], MINICPMV2), {
    source: [448, 448],
    grid: [2, 1],
    refine: [644, 630],
    patches: [[[322, 630], [322, 630]]],
  });
});

test('planSlices: a 500x500 square ties [1,2] with [2,1] and keeps the earlier [1,2]', () => {
  // ratio = 250000/200704 = 1.25 → multiple 2; log_ratio 0: |log(1/2)| = |log(2/1)| exactly, strict < keeps [1, 2].
  // source: r = 1 → 448x448. refine: cell (500/1, 500/2) = (500, 250), r = 2: h = int(448/√2) = int(316.78) = 316
  // → round(22.57) = 23 → 322; w = int(316·2) = 632 → round(45.14) = 45 → 630; refine = (630·1, 322·2).
  assert.deepEqual(planSlices([500, 500], MINICPMV2), {
    source: [448, 448],
    grid: [1, 2],
    refine: [630, 644],
    patches: [[[630, 322]], [[630, 322]]],
  });
});

test('planSlices: a 4000x100 strip picks [3, 1] and keeps its extreme aspect ratio', () => {
  // ratio = 400000/200704 = 1.99 → multiple 2; log(40) = 3.689: errors 4.382 ([1,2]), 2.996 ([2,1]),
  // 4.787 ([1,3]), 2.590 ([3,1]) → [3, 1]. source: r = 40, h = int(448/√40) = int(70.83) = 70, w = 2800 → (2800, 70).
  // refine: ensure_divide(4000, 3) = round(1333.33)·3 = 3999 → cell (1333, 100), r = 13.33:
  // h = int(448/√13.33) = int(122.71) = 122 → round(8.71) = 9 → 126; w = int(122·13.33) = int(1626.26) = 1626
  // → round(116.14) = 116 → 1624. refine = (1624·3, 126).
  assert.deepEqual(planSlices([4000, 100], MINICPMV2), {
    source: [2800, 70],
    grid: [3, 1],
    refine: [4872, 126],
    patches: [[[1624, 126], [1624, 126], [1624, 126]]],
  });
});

test('planSlices: maxSliceNums caps the candidates (3000x3000 with at most 4 patches → [2, 2])', () => {
  // ratio = 9e6/200704 = 44.8 → ceil 45 → min(45, 4) = 4; candidates 3, 4 (5 > 4 dropped); [2, 2] has error 0.
  // source: r = 1 → 448. refine: cell (1500, 1500) → upscale to 448 → (896, 896).
  assert.deepEqual(planSlices([3000, 3000], { ...MINICPMV2, maxSliceNums: 4 }), {
    source: [448, 448],
    grid: [2, 2],
    refine: [896, 896],
    patches: [
      [[448, 448], [448, 448]],
      [[448, 448], [448, 448]],
    ],
  });
});

test('planSlices: neverSplit and small images give one upscaled slice', () => {
  // 2000x1000 with neverSplit: r = 2, h = int(448/√2) = 316 → 322, w = int(632) → 630 (the same as the fixture's
  // overview of wide_2000x1000). 1x1: r = 1 → 448x448. 1x1000: r = 0.001, h = int(448/√0.001) = int(14166.9) = 14166
  // → round(1011.86) = 1012 → 14168; w = int(14.166) = 14 → 14.
  assert.deepEqual(planSlices([2000, 1000], { ...MINICPMV2, neverSplit: true }), { source: [630, 322], grid: null, refine: null, patches: [] });
  assert.deepEqual(planSlices([1, 1], MINICPMV2), { source: [448, 448], grid: null, refine: null, patches: [] });
  assert.deepEqual(planSlices([1, 1000], MINICPMV2), { source: [14, 14168], grid: null, refine: null, patches: [] });
});

test('planSlices: a tall strip keeps its one slice up to 8192 patches and is refused past it, before any resize', () => {
  // One slice (area < 448²), upscaled: h = int(448/√r), w = int(h·r) → 1 → one patch of 14.
  // 1×65536: r = 2⁻¹⁶, h = int(448·256) = 114688 = 8192·14 → 14×114688, 8192 patches: kept.
  assert.deepEqual(planSlices([1, 65536], MINICPMV2), { source: [14, 114688], grid: null, refine: null, patches: [] });
  // 1×65545: h = int(448·256.01758) = int(114695.87) = 114695 → round(8192.5) = 8192 (half to even): the same slice.
  assert.deepEqual(planSlices([1, 65545], MINICPMV2), { source: [14, 114688], grid: null, refine: null, patches: [] });
  // 1×65546: h = int(448·256.01953) = int(114696.75) = 114696 → round(8192.57) = 8193 → 114702: 8193 patches,
  // whose attention takes 16·8193²·4 bytes = 4.3 GB a layer. 1×200000 (the reported image): h = int(448·447.2136)
  // = 200351 → round(14310.8) = 14311 → 200354: 16·14311²·4 bytes = 13.1 GB.
  const refused = (size: Size, message: RegExp) =>
    assert.throws(() => planSlices(size, MINICPMV2), (err: Error) => err instanceof ImageError && message.test(err.message));
  refused([1, 65546], /^the image is too narrow for the vision tower: 1×65546 becomes a 14×114702 slice of 8193 patches \(at most 8192; its attention alone would need 4 GB\): crop it, or pad it nearer to square$/);
  refused([1, 200000], /1×200000 becomes a 14×200354 slice of 14311 patches \(at most 8192; .* 13 GB\)/);
});

test('planSlices: a wide strip\'s overview collapses to one patch, but its patches are held to 8192 too', () => {
  // 344064×1: ratio = 344064/200704 = 1.71 → multiple 2; log(344064) = 12.749: errors 13.44 ([1,2]), 12.06 ([2,1]),
  // 13.85 ([1,3]), 11.65 ([3,1]) → [3, 1]. source: h = int(448/√344064) = int(0.76) = 0, w = int(0·r) = 0 → 14×14.
  // refine: ensure_divide(344064, 3) = 344064 → cell (114688, 1), r = 114688: h = int(448/338.65) = int(1.32) = 1,
  // w = 114688 = 8192·14 → tiles 114688×14 of 8192 patches: kept.
  assert.deepEqual(planSlices([344064, 1], MINICPMV2), {
    source: [14, 14],
    grid: [3, 1],
    refine: [344064, 14],
    patches: [[[114688, 14], [114688, 14], [114688, 14]]],
  });
  // 344088×1: the same grid and overview; cell (114696, 1), h = 1, w = 114696 → round(8192.57) = 8193 → 114702.
  assert.throws(
    () => planSlices([344088, 1], MINICPMV2),
    (err: Error) => err instanceof ImageError && /344088×1 becomes a 114702×14 slice of 8193 patches \(at most 8192/.test(err.message),
  );
});

test('Python round: halves go to the even neighbour', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 16.5, 17.5, 2.4999, 2.5001].map(roundHalfEven), [0, 2, 2, 16, 18, 2, 3]);
  assert.equal(ensureDivide(231, 14), 224); // tie_1125x300: 231/14 = 16.5 → 16 (Math.round would give 17 → 238)
  assert.equal(ensureDivide(3, 14), 14); // never below one patch
});

test('planSlices refuses sizes that are not positive whole numbers', () => {
  assert.throws(() => planSlices([0, 10], MINICPMV2), ImageError);
  assert.throws(() => planSlices([10.5, 10], MINICPMV2), ImageError);
  assert.throws(() => planSlices([10, 10], { ...MINICPMV2, patchSize: 0 }), ImageError);
});

/** An image whose every channel of pixel i is `values[i]`. */
function grey(width: number, height: number, values: number[]): RgbImage {
  return { width, height, data: Uint8Array.from(values.flatMap((v) => [v, v, v])) };
}

test('resizeBicubic reproduces hand-computed Pillow coefficients (2 → 4 pixels, both passes)', () => {
  // scale 0.5, support 2. Output 0: center 0.25, inputs 0..1, K(0.25) = 0.8671875, K(1.25) = −0.0703125, sum 0.796875
  // → fixed point (4564390, −370086); (2²¹ + 100·4564390 − 200·370086) >> 22 = 91. Output 1: center 0.75,
  // K(0.25), K(0.75) = 0.2265625 → (3325484, 868820) → 121. Outputs 2 and 3 mirror these: 179, 209.
  const want = [91, 121, 179, 209];
  assert.deepEqual(resizeBicubic(grey(2, 1, [100, 200]), 4, 1), grey(4, 1, want));
  assert.deepEqual(resizeBicubic(grey(1, 2, [100, 200]), 1, 4), grey(1, 4, want));
  // The negative lobes overshoot; Pillow clips to 0…255: [0, 255] → output 0 = (2²¹ − 255·370086) >> 22 < 0 → 0.
  assert.equal(resizeBicubic(grey(2, 1, [0, 255]), 4, 1).data[0], 0);
  assert.equal(resizeBicubic(grey(2, 1, [255, 0]), 4, 1).data[0], 255);
});

test('resizeBicubic keeps flat colours flat, copies on the same size, and refuses bad sizes', () => {
  const flat: RgbImage = { width: 37, height: 23, data: new Uint8Array(37 * 23 * 3) };
  for (let i = 0; i < flat.data.length; i += 3) flat.data.set([255, 7, 128], i);
  for (const [w, h] of [[5, 3], [100, 64], [37, 90], [12, 23]] as const) {
    const out = resizeBicubic(flat, w, h);
    assert.deepEqual([out.width, out.height], [w, h]);
    for (let i = 0; i < out.data.length; i += 3) assert.deepEqual([...out.data.subarray(i, i + 3)], [255, 7, 128]);
  }
  const copy = resizeBicubic(flat, 37, 23);
  assert.deepEqual(copy, flat);
  assert.notEqual(copy.data, flat.data);
  assert.throws(() => resizeBicubic(flat, 0, 5), ImageError);
  assert.throws(() => resizeBicubic(flat, 5.5, 5), ImageError);
});

test('resizeBicubic is fast: 1344x1344 → 448x448 in under a second', () => {
  const img: RgbImage = { width: 1344, height: 1344, data: new Uint8Array(1344 * 1344 * 3) };
  for (let i = 0; i < img.data.length; i++) img.data[i] = (i * 2654435761) >>> 24;
  resizeBicubic(img, 448, 448);
  // About 50 ms on an idle machine: the bound leaves room for one ten times slower (a busy one); best of three.
  let ms = Infinity;
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    resizeBicubic(img, 448, 448);
    ms = Math.min(ms, performance.now() - start);
  }
  assert.ok(ms < 1000, `took ${ms.toFixed(0)} ms`);
});

/** `img` (one pixel wide) with each row's pixel repeated `width` times. */
function widenColumn(img: RgbImage, width: number): RgbImage {
  const data = new Uint8Array(width * img.height * 3);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < width; x++) data.set(img.data.subarray(y * 3, y * 3 + 3), (y * width + x) * 3);
  }
  return { width, height: img.height, data };
}

/** `img` (one pixel tall) stacked `height` times. */
function stackRow(img: RgbImage, height: number): RgbImage {
  const data = new Uint8Array(img.data.length * height);
  for (let y = 0; y < height; y++) data.set(img.data, y * img.data.length);
  return { width: img.width, height, data };
}

/** A 1-pixel-wide (`vertical`) or 1-pixel-tall line of `length` pixels: noise in red, 0/255 runs in green, a ramp in blue. */
function line(length: number, vertical: boolean): RgbImage {
  const data = new Uint8Array(length * 3);
  for (let i = 0; i < length; i++) data.set([(i * 2654435761) >>> 24, (i >> 2) % 3 === 0 ? 255 : 0, i % 256], i * 3);
  return vertical ? { width: 1, height: length, data } : { width: length, height: 1, data };
}

test('resizeBicubic with both passes: a 1-pixel-wide image gives the 1-D vertical resize in every column', () => {
  // Pillow's horizontal pass from one pixel has a single tap of exactly 2²² per output, so it copies the pixel into
  // every column; the vertical pass then sees identical columns. Hand case: [100, 200] → 4 rows is 91, 121, 179, 209.
  assert.deepEqual(resizeBicubic(grey(1, 2, [100, 200]), 4, 4), widenColumn(grey(1, 4, [91, 121, 179, 209]), 4));
  assert.deepEqual(resizeBicubic(grey(1, 1, [77]), 448, 448), grey(448, 448, new Array(448 * 448).fill(77)));
  // Shrinking by 11 (windows of ~45 rows, clipped at both borders), growing 3 → 448 (each source row in ~750 output
  // windows), nearly the same height, and 2 output rows whose windows hold almost the whole 20000-row column.
  for (const [height, outWidth, outHeight] of [[5000, 448, 448], [3, 5, 448], [449, 7, 448], [20000, 3, 2]] as const) {
    const column = line(height, true);
    assert.deepEqual(resizeBicubic(column, outWidth, outHeight), widenColumn(resizeBicubic(column, 1, outHeight), outWidth), `1x${height}`);
  }
});

test('resizeBicubic with both passes: a 1-pixel-tall image gives the 1-D horizontal resize in every row', () => {
  // The vertical pass from one row has a single tap of exactly 2²², so every output row is the horizontal pass's row.
  assert.deepEqual(resizeBicubic(grey(2, 1, [100, 200]), 4, 3), stackRow(grey(4, 1, [91, 121, 179, 209]), 3));
  for (const [width, outWidth, outHeight] of [[5000, 448, 448], [3, 448, 5], [20000, 2, 3]] as const) {
    const row = line(width, false);
    assert.deepEqual(resizeBicubic(row, outWidth, outHeight), stackRow(resizeBicubic(row, outWidth, 1), outHeight), `${width}x1`);
  }
});

test('resizeBicubic never holds the whole widened image: 1x300000 → 448x448 peaks far below its 403 MB', () => {
  // Pillow widens all 300000 rows to 448 before shrinking them (448·300000·3 bytes); the port must not need that.
  const resizeUrl = new URL('../src/image/resize.js', import.meta.url).href;
  const script = `
    const { resizeBicubic } = await import(${JSON.stringify(resizeUrl)});
    const data = new Uint8Array(300000 * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
    resizeBicubic({ width: 1, height: 300000, data }, 448, 448);
    process.stdout.write(String(process.resourceUsage().maxRSS));`;
  const peakKiB = Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
  assert.ok(peakKiB < 200 * 1024, `peak RSS ${Math.round(peakKiB / 1024)} MiB`);
});

test('cropImage cuts the right rectangle and refuses boxes outside the image', () => {
  const img = grey(4, 3, [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]);
  assert.deepEqual(cropImage(img, 1, 1, 2, 2), grey(2, 2, [11, 12, 21, 22]));
  assert.throws(() => cropImage(img, 3, 0, 2, 1), ImageError);
  assert.throws(() => cropImage(img, 0, 0, 0, 1), ImageError);
});

test('toPixelValues: float32 CHW, (u8/255 − 0.5)/0.5', () => {
  const img: RgbImage = { width: 2, height: 1, data: Uint8Array.from([0, 255, 51, 255, 0, 204]) };
  const v = toPixelValues(img, MEAN, STD);
  // Planes R, G, B of 2 pixels. 51/255 = 0.2 → −0.6 and 204/255 = 0.8 → 0.6, each rounded to float32 on the way.
  assert.deepEqual([...v], [-1, 1, 1, -1, Math.fround(-0.6), Math.fround(0.6)]);
  assert.throws(() => toPixelValues(img, [0.5], STD), ImageError);
});
