// The converted-model cache (src/runtime/model-cache.ts), `omnilmm convert` and `npm run bench` on the tiny
// MiniCPM-V 2.0 fixture: a warm load builds nothing and answers token-exact as the fixture; keys follow the options
// and the checkpoint's files; incomplete entries are rebuilt.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, utimesSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { runChat } from '../src/chat/chat.js';
import { openCheckpoint } from '../src/checkpoint/open.js';
import { Graph, type SerializedModel } from '../src/graph/builder.js';
import { dequantizeMatrix, matMulNBits, quantizeMatrix, quantizeOptionsFor } from '../src/graph/quantize.js';
import { RuntimeError } from '../src/errors.js';
import { decodeImage } from '../src/image/index.js';
import { familyOf, loadModelConfig } from '../src/models/registry.js';
import { cachedSession, checkpointCacheFolder, onModelCacheEvent, type ModelCacheEvent } from '../src/runtime/model-cache.js';
import { NodeGraphSession, type RuntimeOptions } from '../src/runtime/session.js';
import { fixturePath, maxAbsDiff, readFixtureJson, repoRoot } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-model-cache-'));
const CACHE = join(scratch, 'cache');
/** A copy of the fixture checkpoint, so that a test may change its files. */
const MODEL = join(scratch, 'model');
cpSync(fixturePath(FIXTURE, 'model'), MODEL, { recursive: true });
// The families forward threads, precision and the like to the graph builders; the cache root comes from here.
process.env.OMNILMM_CACHE = CACHE;
after(() => rmSync(scratch, { recursive: true, force: true }));

interface Run {
  chat_kwargs: { repetition_penalty?: number; max_new_tokens: number };
  new_token_ids: number[];
}
interface LlmCase {
  input: { file: string };
  msgs: { role: 'user' | 'assistant'; content: string }[];
  runs: Record<string, Run>;
}
const grad = readFixtureJson<LlmCase>(FIXTURE, 'llm', 'single_turn_grad.json');
const shapes = readFixtureJson<LlmCase>(FIXTURE, 'llm', 'repeat_rp_shapes.json');

/**
 * Loads the copied checkpoint and answers two fixture cases' greedy runs, each with its own image (the vision
 * sessions, suspended after the first image, open again for the second); returns the cache events of the load.
 */
async function loadAndAnswer(): Promise<{ events: ModelCacheEvent[]; outputIds: number[][] }> {
  const events: ModelCacheEvent[] = [];
  const stop = onModelCacheEvent((event) => events.push(event));
  const config = loadModelConfig(MODEL);
  let model;
  try {
    model = await familyOf(config).load(MODEL, config, { threads: 1 });
  } finally {
    stop();
  }
  try {
    const outputIds: number[][] = [];
    for (const llmCase of [grad, shapes]) {
      const run = llmCase.runs.greedy!;
      const image = await decodeImage(readFileSync(fixturePath(FIXTURE, llmCase.input.file)));
      const result = await runChat(model, {
        messages: llmCase.msgs, image, decoding: 'greedy',
        repetitionPenalty: run.chat_kwargs.repetition_penalty, maxNewTokens: run.chat_kwargs.max_new_tokens,
      });
      outputIds.push(result.outputIds);
    }
    return { events, outputIds };
  } finally {
    await model.release();
  }
}

const goldenIds = [grad, shapes].map((llmCase) => llmCase.runs.greedy!.new_token_ids);

const ofType = <T extends ModelCacheEvent['type']>(events: ModelCacheEvent[], type: T) =>
  events.filter((e): e is Extract<ModelCacheEvent, { type: T }> => e.type === type);

test('the first load builds and writes every part; the second builds nothing; both answer two images token-exact', async () => {
  const first = await loadAndAnswer();
  assert.deepEqual(ofType(first.events, 'build').map((e) => e.part).sort(), ['decoder', 'resampler', 'vision']);
  assert.equal(ofType(first.events, 'written').length, 3);
  assert.deepEqual(first.outputIds, goldenIds);

  const second = await loadAndAnswer();
  assert.deepEqual(ofType(second.events, 'build'), []);
  assert.deepEqual(ofType(second.events, 'hit').map((e) => e.part).sort(), ['decoder', 'resampler', 'vision']);
  assert.deepEqual(second.outputIds, goldenIds);
  // An entry is ONNX Runtime's optimised model, with a weights.bin beside it when it has tensors over 1 MiB.
  for (const hit of ofType(second.events, 'hit')) {
    const files = readdirSync(hit.folder).sort();
    assert.deepEqual(files.filter((name) => name !== 'weights.bin'), ['manifest.json', 'model.onnx'], files.join(', '));
  }
  // Nothing but complete entries is left behind.
  const key = checkpointCacheFolder(CACHE, MODEL);
  assert.ok(readdirSync(key).every((name) => !name.includes('.partial-')), readdirSync(key).join(', '));
});

/** A one-weight graph y = x + w, cached under the copied checkpoint with `key` and `options`. */
async function tinyGraphFolder(key: unknown, options: RuntimeOptions): Promise<string> {
  const events: ModelCacheEvent[] = [];
  const stop = onModelCacheEvent((event) => events.push(event));
  const source = openCheckpoint(MODEL);
  try {
    const session = await cachedSession({
      part: 'probe', label: 'probe', source, key,
      build: () => {
        const g = new Graph('probe');
        const x = g.input('x', 'float32', [512]);
        g.output(g.op('Add', [x, g.weight('w', new Float32Array(512).fill(1), [512])], '/probe/Add'), 'y', 'float32', [512]);
        return g.serialize();
      },
    }, { threads: 1, ...options });
    const y = await session.run({ x: { type: 'float32', data: new Float32Array(512).fill(2), dims: [512] } });
    assert.equal((y.y!.data as Float32Array)[511], 3);
    await session.release();
  } finally {
    stop();
    source.close();
  }
  const folder = events.find((e) => e.type === 'hit' || e.type === 'written');
  assert.ok(folder && 'folder' in folder);
  return folder.folder;
}

test('the vision sessions from the cache are suspended after each image, unless keepVisionLoaded', async () => {
  const suspended: string[] = [];
  const original = NodeGraphSession.prototype.suspend;
  NodeGraphSession.prototype.suspend = async function (this: NodeGraphSession) {
    suspended.push(this.label);
    return original.call(this);
  };
  try {
    const config = loadModelConfig(MODEL);
    const image = await decodeImage(readFileSync(fixturePath(FIXTURE, grad.input.file)));
    for (const keepVisionLoaded of [undefined, true]) {
      suspended.length = 0;
      const model = await familyOf(config).load(MODEL, config, { threads: 1, keepVisionLoaded });
      try {
        await runChat(model, { messages: grad.msgs, image, decoding: 'greedy', maxNewTokens: 2 });
      } finally {
        await model.release();
      }
      assert.deepEqual(suspended.sort(), keepVisionLoaded ? [] : ['resampler', 'vision tower'], `keepVisionLoaded: ${keepVisionLoaded}`);
    }
  } finally {
    NodeGraphSession.prototype.suspend = original;
  }
});

test('options that reach the builders change the key; run-time options do not', async () => {
  const plain = await tinyGraphFolder({ dims: 1 }, {});
  assert.equal(await tinyGraphFolder({ dims: 1 }, { threads: 2, executionProvider: 'cpu', cache: CACHE }), plain);
  const int8 = await tinyGraphFolder({ dims: 1 }, { precision: 'int8' } as RuntimeOptions);
  const int4 = await tinyGraphFolder({ dims: 1 }, { precision: 'int4' } as RuntimeOptions);
  const otherDims = await tinyGraphFolder({ dims: 2 }, {});
  assert.equal(new Set([plain, int8, int4, otherDims]).size, 4);
  // An option added later (here an invented one) is part of the key without any change to the cache.
  assert.notEqual(await tinyGraphFolder({ dims: 1 }, { someFutureOption: true } as RuntimeOptions), plain);
});

test('weights over 1 MiB are kept packed in weights.bin; a session from the entry computes the linear layers', async () => {
  // y = x·W (MatMul, packed by ONNX Runtime) and z = x·dequant(Q)ᵀ (MatMulNBits, repacked), checked against sums
  // computed here in float64 from the same values.
  const [k, n] = [1024, 512];
  const w = Float32Array.from({ length: k * n }, (_, i) => Math.sin(i * 0.37) * 0.05);
  const q = quantizeMatrix(Float32Array.from({ length: n * k }, (_, i) => Math.cos(i * 0.11) * 0.05), n, k, quantizeOptionsFor('int4'));
  const x = Float32Array.from({ length: k }, (_, i) => ((i % 17) - 8) / 8);
  const build = (): SerializedModel => {
    const g = new Graph('packed');
    const input = g.input('x', 'float32', [1, k]);
    g.output(g.op('MatMul', [input, g.weight('w', w, [k, n])], '/packed/MatMul'), 'y', 'float32', [1, n]);
    g.output(matMulNBits(g, input, q, 'q', '/packed/q'), 'z', 'float32', [1, n]);
    return g.serialize();
  };
  const dequantized = dequantizeMatrix(q);
  const expectY = Array.from({ length: n }, (_, j) => x.reduce((sum, v, i) => sum + v * w[i * n + j]!, 0));
  const expectZ = Array.from({ length: n }, (_, j) => x.reduce((sum, v, i) => sum + v * dequantized[j * k + i]!, 0));
  const source = openCheckpoint(MODEL);
  try {
    for (const expected of ['written', 'hit'] as const) {
      const events: ModelCacheEvent[] = [];
      const stop = onModelCacheEvent((event) => events.push(event));
      const session = await cachedSession({ part: 'packed', label: 'packed', source, key: null, build }, { threads: 1 });
      stop();
      const entry = events.find((e) => e.type === expected);
      assert.ok(entry && 'folder' in entry, events.map((e) => e.type).join(', '));
      assert.deepEqual(readdirSync(entry.folder).sort(), ['manifest.json', 'model.onnx', 'weights.bin']);
      const out = await session.run({ x: { type: 'float32', data: x, dims: [1, k] } });
      await session.release();
      // MatMul in float32: ~1e-6 of the sums' scale; MatMulNBits quantises x to int8 (accuracy level 4): ~1 %.
      assert.ok(maxAbsDiff(out.y!.data as Float32Array, expectY) < 1e-4, `MatMul after ${expected}`);
      assert.ok(maxAbsDiff(out.z!.data as Float32Array, expectZ) < 0.02 * Math.max(...expectZ.map(Math.abs)), `MatMulNBits after ${expected}`);
    }
  } finally {
    source.close();
  }
});

test('a graph ONNX Runtime refuses fails with its own error, not blamed on the disk, and leaves no entry', async () => {
  const build = (): SerializedModel => {
    const g = new Graph('refused');
    g.output(g.op('NoSuchOperator', [g.input('x', 'float32', [1])], '/refused/op'), 'y', 'float32', [1]);
    return g.serialize();
  };
  const source = openCheckpoint(MODEL);
  try {
    for (const cache of [CACHE, false] as const) {
      await assert.rejects(
        cachedSession({ part: 'refused', label: 'refused graph', source, key: null, build }, { threads: 1, cache }),
        (err: Error) => err instanceof RuntimeError && /could not create the refused graph session/.test(err.message) &&
          !/disk/.test(err.message),
      );
    }
  } finally {
    source.close();
  }
  const keyFolder = checkpointCacheFolder(CACHE, MODEL);
  const left = existsSync(keyFolder) ? readdirSync(keyFolder).filter((name) => name.startsWith('refused')) : [];
  assert.deepEqual(left, []);
});

/** y = x, a graph without weights. */
function identityGraph(): SerializedModel {
  const g = new Graph('identity');
  g.output(g.input('x', 'float32', [1]), 'y', 'float32', [1]);
  return g.serialize();
}

test('a changed checkpoint file gives another key; stale keys are swept; the cache option and OMNILMM_CACHE=off work', async () => {
  const before = checkpointCacheFolder(CACHE, MODEL);
  const removedModel = join(scratch, 'removed-model');
  cpSync(MODEL, removedModel, { recursive: true });
  const removedKey = checkpointCacheFolder(CACHE, removedModel);
  const source = openCheckpoint(removedModel);
  await (await cachedSession({ part: 'probe', label: 'probe', source, key: null, build: identityGraph })).release();
  source.close();
  rmSync(removedModel, { recursive: true });
  assert.ok(existsSync(removedKey));
  const shard = readdirSync(MODEL).find((name) => name.endsWith('.safetensors'))!;
  const later = new Date(Date.now() + 60_000);
  utimesSync(join(MODEL, shard), later, later);
  assert.notEqual(checkpointCacheFolder(CACHE, MODEL), before);
  assert.ok(existsSync(before));
  const probe = await tinyGraphFolder({ dims: 1 }, {});
  assert.ok(probe.startsWith(checkpointCacheFolder(CACHE, MODEL)), probe);
  assert.ok(!existsSync(before), 'the entries of the checkpoint\'s old files are swept');
  assert.ok(!existsSync(removedKey), 'the entries of a deleted checkpoint are swept');

  const elsewhere = join(scratch, 'elsewhere');
  assert.ok((await tinyGraphFolder({ dims: 1 }, { cache: elsewhere })).startsWith(elsewhere));
  // A cache that cannot be written (here under a plain file) is skipped with a warning.
  const blocker = join(scratch, 'a-file');
  writeFileSync(blocker, '');
  const warnings: string[] = [];
  const onWarning = (warning: Error) => warnings.push(warning.message);
  process.on('warning', onWarning);
  const unwritable = openCheckpoint(MODEL);
  try {
    await (await cachedSession({ part: 'probe', label: 'probe', source: unwritable, key: null, build: identityGraph }, {
      cache: join(blocker, 'cache'),
    })).release();
  } finally {
    unwritable.close();
  }
  await new Promise((resolve) => setImmediate(resolve));
  process.off('warning', onWarning);
  assert.ok(warnings.some((w) => w.includes('is not writable')), warnings.join('; '));

  process.env.OMNILMM_CACHE = 'off';
  try {
    const events: ModelCacheEvent[] = [];
    const stop = onModelCacheEvent((event) => events.push(event));
    const source = openCheckpoint(MODEL);
    try {
      const session = await cachedSession({
        part: 'probe', label: 'probe', source, key: null, build: identityGraph,
      });
      await session.release();
    } finally {
      stop();
      source.close();
    }
    assert.deepEqual(events.map((e) => e.type), ['build']);
  } finally {
    process.env.OMNILMM_CACHE = CACHE;
  }
});

test('an incomplete or corrupt entry is rebuilt, and the model still answers token-exact', async () => {
  const loaded = await loadAndAnswer();
  const folders = new Map([...ofType(loaded.events, 'hit'), ...ofType(loaded.events, 'written')].map((e) => [e.part, e.folder]));
  truncateSync(join(folders.get('decoder')!, 'model.onnx'), 4096);
  rmSync(join(folders.get('vision')!, 'manifest.json'));
  // A staging folder of a killed conversion is never taken for an entry.
  mkdirSync(`${folders.get('resampler')!}.partial-99999-abc`);

  const repaired = await loadAndAnswer();
  assert.deepEqual(ofType(repaired.events, 'rebuild').map((e) => e.part).sort(), ['decoder', 'vision']);
  assert.deepEqual(ofType(repaired.events, 'build').map((e) => e.part).sort(), ['decoder', 'vision']);
  assert.deepEqual(repaired.outputIds, goldenIds);

  // A model file ONNX Runtime refuses (same size, garbage bytes) is rebuilt too.
  const model = join(folders.get('resampler')!, 'model.onnx');
  writeFileSync(model, readFileSync(model).fill(7));
  const again = await loadAndAnswer();
  assert.deepEqual(ofType(again.events, 'rebuild').map((e) => e.part), ['resampler']);
  assert.deepEqual(again.outputIds, goldenIds);
});

const run = promisify(execFile);
const CLI = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

test('a conversion that fails part-way takes back the parts it wrote', async () => {
  const broken = join(scratch, 'model-without-a-decoder-weight');
  cpSync(MODEL, broken, { recursive: true });
  // The vision tower and the resampler build; the decoder misses a weight.
  const index = join(broken, 'model.safetensors.index.json');
  const { weight_map: weights, ...rest } = JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> };
  delete weights['llm.model.layers.1.mlp.down_proj.weight'];
  writeFileSync(index, JSON.stringify({ ...rest, weight_map: weights }));
  const cacheDir = join(scratch, 'failed-convert-cache');
  await assert.rejects(run(process.execPath, [CLI, 'convert', '--model', broken, '--cache-dir', cacheDir, '--threads', '1']),
    (err: { stderr: string }) => /llm\.model\.layers\.1\.mlp\.down_proj\.weight/.test(err.stderr));
  assert.ok(!existsSync(checkpointCacheFolder(cacheDir, broken)), `left behind: ${readdirSync(cacheDir).join(', ')}`);
});

test('omnilmm convert fills a cache folder, says where and how big, and names a bad model clearly', async () => {
  const cacheDir = join(scratch, 'convert-cache');
  const first = await run(process.execPath, [CLI, 'convert', '--model', MODEL, '--cache-dir', cacheDir, '--threads', '1']);
  const key = checkpointCacheFolder(cacheDir, MODEL);
  assert.match(first.stdout, new RegExp(`^converted: ${key}\n`));
  assert.match(first.stdout, /total +\d+\.\d MB +\(3 of 3 parts built/);
  assert.deepEqual(readdirSync(key).map((name) => name.replace(/-.*/, '')).sort(), ['checkpoint.json', 'decoder', 'resampler', 'vision']);
  const second = await run(process.execPath, [CLI, 'convert', '--model', MODEL, '--cache-dir', cacheDir, '--threads', '1']);
  assert.match(second.stdout, /^already converted: .*\n[^]*\(0 of 3 parts built/);

  const missing = join(scratch, 'no-such-model');
  const convert = (model: string) => run(process.execPath, [CLI, 'convert', '--model', model, '--cache-dir', cacheDir]);
  await assert.rejects(convert(missing), (err: { code: number; stderr: string }) => {
    assert.notEqual(err.code, 0);
    assert.match(err.stderr, /^error: .*no-such-model/);
    return true;
  });
  const empty = join(scratch, 'empty-model');
  mkdirSync(empty);
  await assert.rejects(convert(empty), (err: { stderr: string }) => {
    assert.match(err.stderr, /^error: /);
    return true;
  });
  assert.ok(!existsSync(checkpointCacheFolder(cacheDir, empty)));
});

const BENCH_FIELDS = [
  'load_cold_s', 'load_warm_s', 'encode_448_s', 'encode_1344_s', 'encode_1344_per_slice_s', 'prefill_tok_s', 'prefill_text_tok_s', 'decode_tok_s', 'decode_d0_tok_s',
  'peak_rss_mb', 'bandwidth_gb_s', 'decode_bound_tok_s', 'decode_pct_of_bound',
];

test('npm run bench on the tiny model writes JSON with every figure', async () => {
  const out = join(scratch, 'bench.json');
  const bench = join(repoRoot, 'dist', 'scripts', 'bench.js');
  const { stdout } = await run(process.execPath, [bench, '--model', fixturePath(FIXTURE, 'model'), '--threads', '1', '--out', out]);
  assert.match(stdout, /\| load_warm_s +\| +\d/);
  const result = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
  for (const field of BENCH_FIELDS) {
    assert.equal(typeof result[field], 'number', field);
    assert.ok(Number.isFinite(result[field]) && (result[field] as number) > 0, `${field} = ${String(result[field])}`);
  }
  assert.equal(result.encode_1344_slices, 10);
  assert.ok((result.prefill_text_tokens as number) >= 512, `prefill_text_tokens = ${String(result.prefill_text_tokens)}`);
  assert.ok(!('encode_video_s' in result), 'MiniCPM-V 2.0 takes no video');
});

test('npm run bench times the video path for a family that takes video (MiniCPM-V 4.6)', async () => {
  const bench = join(repoRoot, 'dist', 'scripts', 'bench.js');
  const { stdout } = await run(process.execPath, [bench, '--model', fixturePath('minicpmv46-tiny', 'model'), '--threads', '1', '--json']);
  const result = JSON.parse(stdout) as Record<string, unknown>;
  assert.ok(typeof result.encode_video_s === 'number' && result.encode_video_s > 0, `encode_video_s = ${String(result.encode_video_s)}`);
  assert.equal(result.encode_video_frames, 4);
  assert.equal(typeof (result.load_by_phase as Record<string, unknown>).encode_video, 'number');
});
