import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { ImageError, InvalidRequestError } from '../src/errors.js';
import { decodeImage } from '../src/image/decode.js';
import type { RgbImage } from '../src/image/rgb.js';
import { resizeBicubicTorch } from '../src/image/torch-resize.js';
import {
  getSlicedGrid,
  imagePlaceholder,
  packPatches,
  planImageSlices,
  preprocessImage,
  sliceTokens,
  type MiniCPMV46ImageOptions,
  type PreprocessedImage,
} from '../src/models/minicpmv46/image-processor.js';
import type { DownsampleMode } from '../src/models/messages.js';
import { preprocessVideo, sampleFrames, videoPlaceholder, type MiniCPMV46VideoOptions } from '../src/models/minicpmv46/video.js';
import { fixturePath, maxAbsDiff, openGolden, readFixtureJson } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv46-tiny';
const CROP_H = 28;
const CROP_W = 42;

type HW = [number, number];

interface PreprocessCase {
  input: { file: string; size: [number, number]; rgb_sha256: string };
  grid_rows_cols: HW;
  get_sliced_grid: HW | null;
  source_size_hw: HW;
  refine_size_hw: HW | null;
  target_sizes_hw: HW[];
  n_slices: number;
  packed_pixel_values_shape: number[];
  slices: {
    index: number;
    role: 'source' | 'slice';
    row: number | null;
    col: number | null;
    size_wh: [number, number];
    target_size_hw: HW;
    png: string | null;
    png_rgb_sha256: string;
    tokens_16x: number;
    tokens_4x: number;
  }[];
  num_image_tokens_16x: number;
  num_image_tokens_4x: number;
  placeholder_16x: string;
  placeholder_4x: string;
}

interface ProcessorSection {
  max_slice_nums: number;
  scale_resolution: number;
  patch_size: number;
  slice_mode: boolean;
  use_image_id: boolean;
  downsample_mode: DownsampleMode;
  image_mean: number[];
  image_std: number[];
  rescale_factor: number;
  resample: number;
}

const processorConfig = readFixtureJson<{ image_processor: ProcessorSection; video_processor: ProcessorSection & { max_num_frames: number; stack_frames: number; do_sample_frames: boolean } }>(
  FIXTURE,
  'model',
  'processor_config.json',
);

/** processor_config.json → options, the way the model family maps it. */
function imageOptions(section: ProcessorSection): MiniCPMV46ImageOptions {
  // What the fixed pixel formula assumes: bicubic, 1/255, mean = std = 0.5.
  assert.equal(section.resample, 3);
  assert.equal(section.rescale_factor, 1 / 255);
  assert.deepEqual([...section.image_mean, ...section.image_std], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
  return {
    maxSliceNums: section.max_slice_nums,
    scaleResolution: section.scale_resolution,
    patchSize: section.patch_size,
    sliceMode: section.slice_mode,
    useImageId: section.use_image_id,
    downsampleMode: section.downsample_mode,
  };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const pad2 = (i: number) => String(i).padStart(2, '0');

/** `values[:, :h, :w]` of a CHW tensor of an `img`-sized slice. */
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

/** `packed[0, :, :, :cols]` of a [3, 14, N] packed tensor. */
function firstColumns(packed: Float32Array, patchSize: number, cols: number): Float32Array {
  const rowLength = packed.length / (3 * patchSize);
  const out = new Float32Array(3 * patchSize * cols);
  for (let r = 0; r < 3 * patchSize; r++) out.set(packed.subarray(r * rowLength, r * rowLength + cols), r * cols);
  return out;
}

function withMode(image: PreprocessedImage, mode: DownsampleMode): PreprocessedImage {
  return { plan: image.plan, slices: image.slices.map((s) => ({ ...s, tokens: sliceTokens(s.patchGrid, mode) })) };
}

const stems = readdirSync(fixturePath(FIXTURE, 'preprocess'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort();

test('the fixture has the 12 preprocess cases of README §4.2', () => {
  assert.equal(stems.length, 12);
});

for (const stem of stems) {
  test(`preprocess ${stem}: plan, slice bytes, pixels, packing, tokens and placeholders match the official processor`, async () => {
    const golden = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', `${stem}.json`);
    const options = imageOptions(processorConfig.image_processor);
    const img = await decodeImage(readFileSync(fixturePath(FIXTURE, golden.input.file)));
    assert.deepEqual([img.width, img.height], golden.input.size);
    assert.equal(sha256(img.data), golden.input.rgb_sha256, 'RGB bytes after convert("RGB")');

    const image = preprocessImage(img, options);
    const { plan, slices } = image;
    assert.deepEqual(getSlicedGrid([img.height, img.width], options.maxSliceNums, options.scaleResolution), golden.get_sliced_grid);
    assert.deepEqual(plan.grid ?? [0, 0], golden.grid_rows_cols);
    assert.deepEqual(plan.source, golden.source_size_hw);
    assert.deepEqual(plan.refine, golden.refine_size_hw);
    assert.equal(slices.length, golden.n_slices);
    assert.deepEqual(slices.map((s) => s.patchGrid), golden.target_sizes_hw);

    const tensors = openGolden(FIXTURE, 'preprocess', `${stem}.safetensors`);
    try {
      for (const [i, slice] of slices.entries()) {
        const want = golden.slices[i]!;
        assert.deepEqual([slice.image.width, slice.image.height], want.size_wh, `slice ${i} size`);
        assert.deepEqual(slice.patchGrid, want.target_size_hw, `slice ${i} patch grid`);
        assert.equal(slice.tokens, want.tokens_16x, `slice ${i} 16x tokens`);
        assert.equal(sliceTokens(slice.patchGrid, '4x'), want.tokens_4x, `slice ${i} 4x tokens`);
        if (want.png) {
          const png = await decodeImage(readFileSync(fixturePath(FIXTURE, want.png)));
          assert.deepEqual([png.width, png.height], want.size_wh);
          assert.ok(Buffer.from(slice.image.data).equals(Buffer.from(png.data)), `slice ${i} uint8 bytes differ from ${want.png}`);
        }
        assert.equal(sha256(slice.image.data), want.png_rgb_sha256, `slice ${i} RGB bytes`);

        const name = `slice_${pad2(i)}.pixel_values_crop`;
        assert.deepEqual(tensors.info(name).shape, [3, CROP_H, CROP_W]);
        assert.equal(maxAbsDiff(cropChw(slice.pixels, slice.image, CROP_H, CROP_W), tensors.float32(name)), 0, `slice ${i} pixel_values_crop`);
      }

      const packed = packPatches(slices, options.patchSize);
      const [, , , packedCols] = golden.packed_pixel_values_shape;
      assert.equal(packed.length, 3 * options.patchSize * packedCols!);
      const first4 = tensors.float32('packed_pixel_values_first_4_patches');
      assert.deepEqual(tensors.info('packed_pixel_values_first_4_patches').shape, [3, options.patchSize, 4 * options.patchSize]);
      assert.equal(maxAbsDiff(firstColumns(packed, options.patchSize, 4 * options.patchSize), first4), 0, 'packed first 4 patches');
    } finally {
      tensors.close();
    }

    assert.equal(slices.reduce((n, s) => n + s.tokens, 0), golden.num_image_tokens_16x);
    assert.equal(imagePlaceholder(image, 0), golden.placeholder_16x);
    assert.equal(imagePlaceholder(withMode(image, '4x'), 0), golden.placeholder_4x);
  });
}

interface VideoCase {
  video: {
    frames: string[];
    video_metadata: { fps: number; duration: number; total_num_frames: number };
    processor_kwargs: { max_num_frames: number; stack_frames: number; max_slice_nums: number; use_image_id: boolean };
    sampled_frame_indices: number[];
    pixel_values_videos_shape: number[];
    target_sizes_videos_hw: HW[];
    units_rgb_sha256: string[];
    tokens_per_unit: number[];
  };
  downsample_mode: DownsampleMode;
  prompt: string;
  input_ids: number[];
  video_token_positions_count: number;
}

/** The ids of a text made only of added tokens (the placeholder markup), from the fixture's tokenizer.json. */
function addedTokenIds(text: string): number[] {
  const tokenizer = readFixtureJson<{ added_tokens: { id: number; content: string }[] }>(FIXTURE, 'model', 'tokenizer.json');
  const byContent = new Map(tokenizer.added_tokens.map((t) => [t.content, t.id]));
  const ids: number[] = [];
  for (let at = 0; at < text.length; ) {
    const end = text.indexOf('>', at) + 1;
    const id = byContent.get(text.slice(at, end));
    assert.ok(end > at && id !== undefined, `placeholder text at ${at} is not an added token: ${text.slice(at, at + 20)}`);
    ids.push(id);
    at = end;
  }
  return ids;
}

test('video_16x: sampled frames, unit sizes, bytes, pixels, tokens and the expanded <|video_pad|> match the official processor', async () => {
  const golden = readFixtureJson<VideoCase>(FIXTURE, 'llm', 'video_16x.json');
  const { video } = golden;
  const frames = await Promise.all(video.frames.map(async (f) => decodeImage(readFileSync(fixturePath(FIXTURE, f)))));
  assert.equal(frames.length, video.video_metadata.total_num_frames);
  const base = processorConfig.video_processor;
  const options: MiniCPMV46VideoOptions = {
    ...imageOptions(base),
    doSampleFrames: base.do_sample_frames,
    maxNumFrames: video.processor_kwargs.max_num_frames,
    stackFrames: video.processor_kwargs.stack_frames,
    maxSliceNums: video.processor_kwargs.max_slice_nums,
    useImageId: video.processor_kwargs.use_image_id,
    downsampleMode: golden.downsample_mode,
  };
  const result = preprocessVideo(frames, { fps: video.video_metadata.fps, duration: video.video_metadata.duration }, options);
  assert.deepEqual(result.frameIndices, video.sampled_frame_indices);
  // Without an explicit duration it is frames / fps = 2.5 s here, so the same frames.
  assert.deepEqual(preprocessVideo(frames, { fps: video.video_metadata.fps }, options).frameIndices, video.sampled_frame_indices);
  // Given only the sampled frames, with which of the 20 they are (as a reader keeps them): the same frames and units.
  const only = (indices: number[]) => [indices.map((i) => frames[i]!), { fps: video.video_metadata.fps }, options, { frameCount: 20, indices }] as const;
  const picked = preprocessVideo(...only(video.sampled_frame_indices));
  assert.deepEqual(picked.frameIndices, video.sampled_frame_indices);
  assert.deepEqual(picked.units.map((u) => sha256(u.image.data)), video.units_rgb_sha256);
  assert.throws(() => preprocessVideo(...only([0, 8, 15])), (err: Error) => err instanceof InvalidRequestError && /video frame 16 of 20 is kept/.test(err.message));
  assert.deepEqual(result.units.map((u) => u.patchGrid), video.target_sizes_videos_hw);
  assert.deepEqual(result.units.map((u) => sha256(u.image.data)), video.units_rgb_sha256);
  assert.deepEqual(result.units.map((u) => u.tokens), video.tokens_per_unit);

  const tensors = openGolden(FIXTURE, 'llm', 'video_16x.safetensors');
  try {
    for (const [i, unit] of result.units.entries()) {
      const crop = tensors.float32(`video.unit_${pad2(i)}.pixel_values_crop`);
      assert.equal(maxAbsDiff(cropChw(unit.pixels, unit.image, CROP_H, CROP_W), crop), 0, `unit ${i} pixel_values_crop`);
    }
    const packed = packPatches(result.units, options.patchSize);
    assert.equal(packed.length, 3 * options.patchSize * video.pixel_values_videos_shape[3]!);
    const first4 = tensors.float32('video.packed_pixel_values_first_4_patches');
    assert.equal(maxAbsDiff(firstColumns(packed, options.patchSize, 4 * options.patchSize), first4), 0, 'packed first 4 patches');
  } finally {
    tensors.close();
  }

  // The prompt holds one <|video_pad|>; its expansion is the run of ids from the first <image> on.
  assert.equal(golden.prompt.split('<|video_pad|>').length, 2);
  const text = videoPlaceholder(result, options.useImageId ? 0 : null);
  const ids = addedTokenIds(text);
  const start = golden.input_ids.indexOf(ids[0]!);
  assert.deepEqual(golden.input_ids.slice(start, start + ids.length), ids);
  assert.equal(golden.input_ids.filter((id) => id === ids[1]).length, golden.video_token_positions_count);
  // 3 unsliced frames of 28×36 patches → 1008 / 16 = 63 pads each, no separator, no image id (use_image_id false).
  assert.equal(text, ('<image>' + '<|video_pad|>'.repeat(63) + '</image>').repeat(3));
});

// Expectations below were worked out by hand from the upstream formulas, not by running our code.
test('getSlicedGrid: an exact tie between [1, 2] and [2, 1] goes to more rows', () => {
  // 500x500: ratio 1.245 → multiple 2; log(1) = 0, |log(2/1)| = |log(1/2)|: the 5.18 code keeps [2, 1].
  assert.deepEqual(getSlicedGrid([500, 500], 9, 448), [2, 1]);
  // 448x448 is exactly one slice's area: multiple 1, no grid; the source is resized to 448 (a multiple of 56).
  assert.equal(getSlicedGrid([448, 448], 9, 448), null);
});

test('planImageSlices: 500x500 cut into 2 rows, refine from the float cell (250, 500)', () => {
  // source: 500² > 448², r = 1 → h = w = 448 → ensure_divide(448, 56) = 448.
  // refine: ensure_divide(500, 2) = 500, ensure_divide(500, 1) = 500 → cell (250, 500), r = 2:
  // h = int(448/√2) = int(316.78) = 316 → round(5.64)·56 = 336; w = int(316·2) = 632 → round(11.29)·56 = 616.
  assert.deepEqual(planImageSlices([500, 500], { maxSliceNums: 9, scaleResolution: 448, patchSize: 14, sliceMode: true }), {
    grid: [2, 1],
    source: [448, 448],
    refine: [672, 616],
    tile: [336, 616],
  });
});

test('planImageSlices: a very narrow image grows a slice past 8192 patches and is refused before any resize', () => {
  const options = { maxSliceNums: 9, scaleResolution: 448, patchSize: 14, sliceMode: true };
  // 1×2000 (W×H): r = 1/2000, h = int(448/√r) = int(20035.2) = 20035 → round(357.8)·56 = 20048; w = int(20035/2000) = 10
  // → at least 56: 56×20048 = 4×1432 = 5728 patches, kept.
  assert.deepEqual(planImageSlices([2000, 1], options).source, [20048, 56]);
  // 1×20000: h = int(448·√20000) = 63356 → 63336 (1131·56), w 56: 4×4524 = 18096 patches.
  assert.throws(() => planImageSlices([20000, 1], options), (err: Error) => err instanceof ImageError && /too narrow.*56×63336 slice of 18096 patches \(at most 8192/.test(err.message));
});

test('planImageSlices: a very wide image\'s source collapses to 56×56, and its tiles are held to 8192 patches too', () => {
  const options = { maxSliceNums: 9, scaleResolution: 448, patchSize: 14, sliceMode: true };
  // 300000×1 (W×H): ratio 1.49 → multiple 2; log(300000) = 12.61: [1 row, 3 cols] has the least error (11.51).
  // source (no upscale, area > 448²): h = int(448/√300000) = int(0.82) = 0, w = int(0·r) = 0 → 56×56, 16 patches.
  // tile: cell (1, 100000), h = int(448/316.2) = 1 → 56, w = 100000 → round(1785.7)·56 = 100016: 4×7144 = 28576 patches.
  assert.throws(
    () => planImageSlices([1, 300000], options),
    (err: Error) => err instanceof ImageError && /300000×1 becomes a 100016×56 slice of 28576 patches \(at most 8192; .* 52 GB\)/.test(err.message),
  );
  // 2000000×1: ratio 9.96 → multiple 9, candidates 8 and 9 → [1, 9]; cell (1, 222222): int(448/471.4) = 0, so the
  // tiles collapse to 56×56 as the source does, and the image is kept.
  assert.deepEqual(planImageSlices([1, 2000000], options), { grid: [1, 9], source: [56, 56], refine: [56, 504], tile: [56, 56] });
});

test('sampleFrames: one frame per started second, and the 0.1 s + linspace branch for long videos', () => {
  // 2.5 s at 8 fps: seconds 0, 1, 2 → int(0), int(8), int(16).
  assert.deepEqual(sampleFrames({ fps: 8, duration: 2.5, totalNumFrames: 20 }, 128), [0, 8, 16]);
  // 1 s at 30 fps: just frame 0.
  assert.deepEqual(sampleFrames({ fps: 30, duration: 1, totalNumFrames: 30 }, 128), [0]);
  // 5 s > max 3: timestamps 0.0 … 4.9 (50) at 2 fps → int(t·2) capped at 9; linspace(0, 49, 3) = [0, 24.5, 49] → 0, 24, 49
  // → timestamps 0.0, 2.4, 4.9 → frames 0, 4, 9.
  assert.deepEqual(sampleFrames({ fps: 2, duration: 5, totalNumFrames: 10 }, 3), [0, 4, 9]);
  // 20 frames said to be taken at 1e-9 fps: 2e10 s, 2e11 timestamps i/10 → frame int(i·1e-10); linspace keeps 128:
  // the 1st at i = ⌊(2e11 − 1)/127⌋ ≈ 1.57e9 → frame 0, the 64th at ≈ 1.008e11 → 10, the last at 2e11 − 1 → 19.
  const slow = sampleFrames({ fps: 1e-9, duration: 2e10, totalNumFrames: 20 }, 128);
  assert.equal(slow.length, 128);
  assert.deepEqual([slow[0], slow[1], slow[64], slow[127]], [0, 0, 10, 19]);
  assert.throws(() => sampleFrames({ fps: 2, duration: 5, totalNumFrames: 10 }, 3, 2), InvalidRequestError);
});

test('resizeBicubicTorch: same size is a copy; a 2x1 → 1x1 downscale averages the two pixels', () => {
  const img: RgbImage = { width: 2, height: 1, data: Uint8Array.from([10, 20, 30, 110, 120, 130]) };
  const same = resizeBicubicTorch(img, 2, 1);
  assert.deepEqual(same.data, img.data);
  assert.notEqual(same.data, img.data);
  // scale 2, support 4, center 1: taps at x = 0, 1 both at distance 0.5 → cubic(0.25) each → weights 1/2, 1/2.
  assert.deepEqual(Array.from(resizeBicubicTorch(img, 1, 1).data), [60, 70, 80]);
});

test('resizeBicubicTorch with both passes: a 1-pixel-wide image gives the 1-D vertical resize in every column', () => {
  // From one pixel each horizontal output has the single tap 2^13 (weight 1 at 13 bits), so every column is a copy of
  // the input column and the vertical pass sees identical columns: row y is the 1-D resize's pixel y, repeated.
  const column: RgbImage = { width: 1, height: 3000, data: new Uint8Array(3000 * 3) };
  for (let i = 0; i < column.data.length; i++) column.data[i] = (i * 2654435761) >>> 24;
  for (const [outWidth, outHeight] of [[56, 504], [9, 3001], [3, 2]] as const) {
    const vertical = resizeBicubicTorch(column, 1, outHeight);
    const want = new Uint8Array(outWidth * outHeight * 3);
    for (let y = 0; y < outHeight; y++) {
      for (let x = 0; x < outWidth; x++) want.set(vertical.data.subarray(y * 3, y * 3 + 3), (y * outWidth + x) * 3);
    }
    assert.deepEqual(resizeBicubicTorch(column, outWidth, outHeight), { width: outWidth, height: outHeight, data: want }, `${outWidth}x${outHeight}`);
  }
});
