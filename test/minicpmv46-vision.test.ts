// MiniCPM-V 4.6 image encoder (SigLIP2 tower, vit_merger, merger) against the minicpmv46-tiny vision goldens
// (fixture README §3.4, §4.3; tolerance §5: abs 1e-4·max(1, |x|)), stage by stage, both downsample modes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test, type TestContext } from 'node:test';
import { folderFiles } from '../src/checkpoint/folder-files.js';
import { SafetensorsCheckpoint } from '../src/checkpoint/safetensors.js';
import { ImageError, UnsupportedModelError } from '../src/errors.js';
import { decodeImage } from '../src/image/index.js';
import {
  mergeOrder, minicpmv46VisionDims, nearestPositionIds, patchOrder, type MiniCPMV46VisionDims,
} from '../src/models/minicpmv46/vision.js';
import { parseMiniCPMV46Config } from '../src/models/minicpmv46/config.js';
import type { DownsampleMode } from '../src/models/messages.js';
import {
  MiniCPMV46VisionEncoder, type MiniCPMV46Slice, type MiniCPMV46VisionStages,
} from '../src/models/minicpmv46/vision-encoder.js';
import { fixturePath, openGolden, readFixtureJson } from './helpers/fixtures.js';
import { assertQuantisedClose } from './helpers/quantised.js';

const FIXTURE = 'minicpmv46-tiny';

interface VisionCase {
  preprocess: string;
  downsample_mode: DownsampleMode;
  target_sizes_hw: [number, number][];
  tokens_per_slice: number[];
  stored_stages: string[];
}
interface PreprocessCase {
  slices: { png: string; target_size_hw: [number, number] }[];
}

const CASES = ['grad_100x80_16x', 'grad_100x80_4x', 'shapes_448x448_16x', 'wide_1000x300_16x', 'wide_1000x300_4x'];

const MODEL_DIR = fixturePath(FIXTURE, 'model');
const config = readFixtureJson<Record<string, unknown>>(FIXTURE, 'model', 'config.json');
const parse = (dict: Record<string, unknown>) => parseMiniCPMV46Config({ files: folderFiles(MODEL_DIR), file: 'config.json', config: dict });
const dims = minicpmv46VisionDims(parse(config));
let checkpoint: SafetensorsCheckpoint;
let encoder: MiniCPMV46VisionEncoder;

before(async () => {
  checkpoint = new SafetensorsCheckpoint(fixturePath(FIXTURE, 'model'));
  encoder = await MiniCPMV46VisionEncoder.create(checkpoint, dims, { runtime: { threads: 1 } });
});

after(async () => {
  await encoder.release();
  checkpoint.close();
});

/** A stored slice PNG (the default backend's uint8 slice) as float32((float32(u8) − 127.5) / 127.5), CHW (README §3.0). */
async function loadSlice(png: string): Promise<MiniCPMV46Slice> {
  const image = await decodeImage(readFileSync(fixturePath(FIXTURE, png)));
  const { width, height, data } = image;
  const plane = width * height;
  const pixels = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) pixels[c * plane + i] = Math.fround((data[i * 3 + c]! - 127.5) / 127.5);
  return { pixels, height, width };
}

async function loadCase(name: string): Promise<{ meta: VisionCase; slices: MiniCPMV46Slice[] }> {
  const meta = readFixtureJson<VisionCase>(FIXTURE, 'vision', `${name}.json`);
  const pre = readFixtureJson<PreprocessCase>(FIXTURE, meta.preprocess);
  return { meta, slices: await Promise.all(pre.slices.map((s) => loadSlice(s.png))) };
}

/** The golden tensor name of each stage (`encoder_layer_XX_out` names the insert layer). */
function stageOf(golden: string): keyof MiniCPMV46VisionStages {
  const insertLayer = `encoder_layer_${String(dims.insertLayerId).padStart(2, '0')}_out`;
  const names: Record<string, keyof MiniCPMV46VisionStages> = {
    embeddings: 'embeddings', [insertLayer]: 'insertLayerOut', after_vit_merger: 'afterVitMerger',
    before_post_layernorm: 'beforePostLayernorm', vision_last_hidden_state: 'lastHiddenState', image_features: 'imageFeatures',
  };
  const stage = names[golden];
  assert.ok(stage, `golden tensor ${golden} has no stage here`);
  return stage;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Largest |ours − golden| and largest |ours − golden| / max(1, |golden|) (README §5 allows 1e-4 of the latter). */
function errors(ours: Float32Array, golden: Float32Array): { abs: number; scaled: number } {
  assert.equal(ours.length, golden.length);
  let abs = 0;
  let scaled = 0;
  for (let i = 0; i < golden.length; i++) {
    const d = Math.abs(ours[i]! - golden[i]!);
    if (!(d <= abs)) abs = Number.isNaN(d) ? Infinity : d;
    const s = d / Math.max(1, Math.abs(golden[i]!));
    if (!(s <= scaled)) scaled = Number.isNaN(s) ? Infinity : s;
  }
  return { abs, scaled };
}

test('config.json gives the tiny vision dims of README §2.1 (insert_layer_id from the top level)', () => {
  const expected: MiniCPMV46VisionDims = {
    hiddenSize: 64, numHeads: 4, numLayers: 4, intermediateSize: 160, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh',
    patchSize: 14, positionGridSide: 70, insertLayerId: 0, textHiddenSize: 128,
  };
  assert.deepEqual(dims, expected);
  assert.equal(minicpmv46VisionDims(parse({ ...config, insert_layer_id: 2 })).insertLayerId, 2);
  assert.throws(() => parse({ ...config, insert_layer_id: 4 }), UnsupportedModelError);
  assert.throws(() => parse({ ...config, merger_times: 2 }), UnsupportedModelError);
});

test('nearest position ids: bucket of float32(i/h) on the 70-grid (hand-computed rows and columns)', () => {
  // h = 2: 0/2 → bucket 0; 1/2 = 0.5 equals the 35th boundary float32(35/70) exactly, and right=True counts it → 35.
  assert.deepEqual([...nearestPositionIds(2, 1, 70)], [0, 35 * 70]);
  const cols = nearestPositionIds(1, 4, 70);
  // w = 4: 0, 0.25 → 17 boundaries ≤ 0.25 (17/70 = 0.243 ≤ 0.25 < 18/70), 0.5 → 35, 0.75 → 52 (52/70 = 0.743).
  assert.deepEqual([...cols], [0, 17, 35, 52]);
});

test('merge order: 2×2 windows (4x) and 4×4 blocks of 2×2 windows (16x), quadrants (0,0),(0,1),(1,0),(1,1)', () => {
  // 2×4 grid, one level: window (0,0) = patches 0,1,4,5; window (0,1) = 2,3,6,7.
  assert.deepEqual([...mergeOrder(2, 4, 1)], [0, 1, 4, 5, 2, 3, 6, 7]);
  // 4×4 grid, two levels: the windows in row-major window order, each window's patches row-major.
  assert.deepEqual([...mergeOrder(4, 4, 2)], [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]);
  assert.throws(() => patchOrder(28, 30, '16x'), ImageError);
  assert.doesNotThrow(() => patchOrder(28, 30, '4x'));
});

for (const name of CASES) {
  test(`${name}: every stored stage within abs 1e-4·max(1, |x|) of the official values`, async (t: TestContext) => {
    const { meta, slices } = await loadCase(name);
    const mode = meta.downsample_mode;
    assert.deepEqual(slices.map((s) => [s.height / 14, s.width / 14]), meta.target_sizes_hw);
    const stages: MiniCPMV46VisionStages[] = [];
    for (const slice of slices) stages.push(await encoder.encodeStages(slice, mode));
    const golden = openGolden(FIXTURE, 'vision', `${name}.safetensors`);
    try {
      const names = [...golden.tensors.keys()].sort();
      assert.deepEqual(names, [...meta.stored_stages].sort());
      const report: string[] = [];
      for (const tensor of names) {
        const stage = stageOf(tensor);
        const ours = concat(stages.map((s) => {
          const value = s[stage];
          assert.ok(value, `${name}: no ${stage} in ${mode} mode`);
          return value;
        }));
        const { abs, scaled } = errors(ours, golden.float32(tensor));
        report.push(`${tensor} max |Δ| ${abs.toExponential(2)} (scaled ${scaled.toExponential(2)})`);
        assert.ok(scaled <= 1e-4, `${name} ${tensor}: error ${scaled} over 1e-4·max(1, |x|)`);
      }
      t.diagnostic(`${name}: ${report.join(', ')}`);

      // The production path (encode) gives the same rows, split per slice as the placeholders count them.
      const encoded = await encoder.encode(slices, mode);
      assert.deepEqual(encoded.map((rows) => rows.length / dims.textHiddenSize), meta.tokens_per_slice);
      assert.ok(errors(concat(encoded), golden.float32('image_features')).scaled <= 1e-4);
    } finally {
      golden.close();
    }
  });
}

test('a slice whose sides are not multiples of the patch, or whose grid cannot merge, is refused', async () => {
  const pixels = (h: number, w: number) => new Float32Array(3 * h * w);
  await assert.rejects(encoder.encode([{ pixels: pixels(100, 112), height: 100, width: 112 }], '4x'), ImageError);
  await assert.rejects(encoder.encode([{ pixels: pixels(14 * 6, 14 * 8), height: 14 * 6, width: 14 * 8 }], '16x'), ImageError);
  await assert.rejects(encoder.encode([{ pixels: pixels(28, 28), height: 28, width: 29 }], '4x'), ImageError);
});

test('int8 and int4 towers stay within the quantisation bound of the official features', async (t: TestContext) => {
  // Quantised: q/k/v/out/fc1/fc2 of the 4 encoder layers and q/k/v/out/linear_1/linear_2 of the vit_merger.
  const linears = 6 * dims.numLayers + 6;
  for (const [precision, bits] of [['int8', 8], ['int4', 4], ['int8-dq', 8]] as const) {
    const quantised = await MiniCPMV46VisionEncoder.create(checkpoint, dims, { runtime: { threads: 1 }, precision });
    try {
      for (const name of ['grad_100x80_16x', 'wide_1000x300_4x']) {
        const { meta, slices } = await loadCase(name);
        const stages: MiniCPMV46VisionStages[] = [];
        for (const slice of slices) stages.push(await quantised.encodeStages(slice, meta.downsample_mode));
        const golden = openGolden(FIXTURE, 'vision', `${name}.safetensors`);
        try {
          t.diagnostic(assertQuantisedClose(`${precision} ${name}`, bits, linears, [
            ['vision_last_hidden_state', concat(stages.map((s) => s.lastHiddenState)), golden.float32('vision_last_hidden_state')],
            ['image_features', concat(stages.map((s) => s.imageFeatures)), golden.float32('image_features')],
          ]));
        } finally {
          golden.close();
        }
      }
    } finally {
      await quantised.release();
    }
  }
});
