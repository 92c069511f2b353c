// The CLI contract, driven in a subprocess as users and other checks drive it.

import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { SafetensorsFile } from '../src/checkpoint/safetensors.js';
import { fixturePath, maxAbsDiff, readFixtureJson, repoRoot } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
const MODEL = fixturePath(FIXTURE, 'model');
const CLI = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-cli-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

interface Outcome { code: number; stdout: string; stderr: string }

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Outcome> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], {
      env: { ...process.env, HF_HUB_OFFLINE: '1', HF_HOME: join(scratch, 'hf'), ...env },
      maxBuffer: 64 * 1024 * 1024,
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout: string; stderr: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A clean failure: non-zero exit, one line on stderr starting with "error:", no stack trace, nothing on stdout. */
function assertCleanError(out: Outcome, pattern: RegExp): void {
  assert.notEqual(out.code, 0, `expected a failure, got stdout ${out.stdout}`);
  assert.match(out.stderr, /^error: /);
  assert.match(out.stderr, pattern);
  assert.doesNotMatch(out.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(out.stdout, '');
}

interface EncodeCase { text: string; input_ids: number[] }

test('tokenize --json prints the official prompt ids', async () => {
  const { encode } = readFixtureJson<{ encode: EncodeCase[] }>(FIXTURE, 'tokenizer', 'cases.json');
  for (const c of encode.filter((_, i) => i % 8 === 0)) {
    const out = await cli(['tokenize', '--model', MODEL, '--json', c.text]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), { ids: c.input_ids });
  }
});

interface PreprocessCase {
  input: { file: string; decoded_png?: string };
  best_grid: [number, number] | null;
  source_size_wh: [number, number];
  patches_size_wh: [number, number][][];
  n_slices: number;
  placeholder: string;
}

test('inspect-image --json reports the official slice plan and placeholder for every image', async () => {
  for (const file of readdirSync(fixturePath(FIXTURE, 'preprocess')).filter((f) => f.endsWith('.json'))) {
    const c = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', file);
    const out = await cli(['inspect-image', '--model', MODEL, '--json', fixturePath(FIXTURE, c.input.file)]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), {
      source: c.source_size_wh,
      grid: c.best_grid,
      slices: c.patches_size_wh.flat(),
      placeholder: c.placeholder,
      image_tokens: c.n_slices * 16,
    }, file);
  }
});

test('inspect-image --pixels writes every slice\'s normalised pixels', async () => {
  const c = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', 'wide_1000x300.json');
  const path = join(scratch, 'pixels.safetensors');
  const out = await cli(['inspect-image', '--model', MODEL, '--json', '--pixels', path, fixturePath(FIXTURE, c.input.file)]);
  assert.equal(out.code, 0, out.stderr);
  const pixels = new SafetensorsFile(path);
  const golden = new SafetensorsFile(fixturePath(FIXTURE, 'preprocess', 'wide_1000x300.safetensors'));
  try {
    assert.deepEqual([...pixels.tensors.keys()], ['slice_00', 'slice_01', 'slice_02', 'slice_03']);
    for (const name of pixels.tensors.keys()) {
      const [, h, w] = pixels.info(name).shape as [number, number, number];
      const full = pixels.float32(name);
      const crop = new Float32Array(3 * 28 * 42);
      for (let ch = 0; ch < 3; ch++) for (let y = 0; y < 28; y++) for (let x = 0; x < 42; x++) {
        crop[(ch * 28 + y) * 42 + x] = full[(ch * h + y) * w + x]!;
      }
      assert.ok(maxAbsDiff(crop, golden.float32(`${name}.pixel_values_crop`)) <= 1e-6, name);
    }
  } finally {
    pixels.close();
    golden.close();
  }
});

test('chat --json answers token-exact (greedy) with prompt and output ids', async () => {
  const c = readFixtureJson<{ msgs: { content: string }[]; input: { file: string }; input_ids: number[]; runs: Record<string, { new_token_ids: number[]; text: string }> }>(
    FIXTURE, 'llm', 'single_turn_grad.json');
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy',
    '--max-new-tokens', '24', '--precision', 'fp32', '--vision-precision', 'fp32', '--json', c.msgs[0]!.content]);
  assert.equal(out.code, 0, out.stderr);
  const greedy = c.runs.greedy!;
  // The official answer ends with its EOS after 10 of the 24 tokens allowed: it stopped, nothing was cut.
  assert.deepEqual(JSON.parse(out.stdout), { text: greedy.text, prompt_ids: c.input_ids, output_ids: greedy.new_token_ids, finish_reason: 'stop' });
  assert.doesNotMatch(out.stderr, /note:/);
});

test('chat --messages with --decoding beam follows the official non-sampling defaults', async () => {
  const c = readFixtureJson<{ msgs: unknown[]; input: { file: string }; runs: Record<string, { new_token_ids: number[]; text: string }> }>(
    FIXTURE, 'llm', 'two_turn_wide.json');
  const messages = join(scratch, 'msgs.json');
  writeFileSync(messages, JSON.stringify(c.msgs));
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--messages', messages,
    '--decoding', 'beam', '--max-new-tokens', '24', '--precision', 'fp32', '--vision-precision', 'fp32', '--json']);
  assert.equal(out.code, 0, out.stderr);
  const beam = c.runs['beam3_rp1.2']!;
  assert.deepEqual(JSON.parse(out.stdout).output_ids, beam.new_token_ids);
});

/** A writable copy of a fixture checkpoint (default MiniCPM-V 2.0's), to break or change in one way. */
function copyModel(name: string, from = MODEL): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(from)) copyFileSync(join(from, f), join(dir, f));
  return dir;
}

const IMAGE = fixturePath(FIXTURE, 'images', 'grad_100x80.png');

test('bad checkpoints get a one-line error and a non-zero exit', async () => {
  assertCleanError(await cli(['inspect-image', '--model', join(scratch, 'nope'), '--json', IMAGE]), /not found|no such folder/i);

  const truncated = copyModel('truncated');
  const shard = join(truncated, 'model-00002-of-00002.safetensors');
  writeFileSync(shard, readFileSync(shard).subarray(0, 5000));
  assertCleanError(await cli(['chat', '--model', truncated, '--image', IMAGE, '--json', 'hi']), /truncated/);

  const corrupt = copyModel('corrupt');
  writeFileSync(join(corrupt, 'model-00001-of-00002.safetensors'), Buffer.alloc(4096, 0xff));
  assertCleanError(await cli(['chat', '--model', corrupt, '--image', IMAGE, '--json', 'hi']), /safetensors/);

  const missing = copyModel('missing-shard');
  rmSync(join(missing, 'model-00002-of-00002.safetensors'));
  assertCleanError(await cli(['chat', '--model', missing, '--image', IMAGE, '--json', 'hi']), /missing/);

  const other = copyModel('other-type');
  const config = JSON.parse(readFileSync(join(other, 'config.json'), 'utf8'));
  writeFileSync(join(other, 'config.json'), JSON.stringify({ ...config, model_type: 'llama' }));
  assertCleanError(await cli(['tokenize', '--model', other, '--json', 'hi']), /model_type "llama" is not supported/);
});

test('bad images get a one-line error and a non-zero exit', async () => {
  const empty = join(scratch, 'empty.png');
  writeFileSync(empty, Buffer.alloc(0));
  assertCleanError(await cli(['inspect-image', '--model', MODEL, '--json', empty]), /empty|zero/i);

  const corrupt = join(scratch, 'corrupt.jpg');
  writeFileSync(corrupt, readFileSync(fixturePath(FIXTURE, 'images', 'hk_OCR.jpg')).subarray(0, 300));
  assertCleanError(await cli(['inspect-image', '--model', MODEL, '--json', corrupt]), /image/i);

  const text = join(scratch, 'notes.txt');
  writeFileSync(text, 'not an image');
  assertCleanError(await cli(['inspect-image', '--model', MODEL, '--json', text]), /image/i);

  const bomb = join(scratch, 'bomb.png');
  await sharp({ create: { width: 30000, height: 30000, channels: 3, background: '#000' }, limitInputPixels: false })
    .png({ compressionLevel: 9 }).toFile(bomb);
  for (const args of [['inspect-image', '--model', MODEL, '--json', bomb], ['chat', '--model', MODEL, '--image', bomb, '--json', 'hi']]) {
    const out = await cli(args);
    // Advice the command line can follow: the library's maxPixels option is no flag of the CLI.
    assertCleanError(out, /30000x30000 = 900000000 pixels, more than the limit .*; shrink it first/);
    assert.doesNotMatch(out.stderr, /maxPixels/);
  }

  // 1×65546 would become one 14×114702 slice of 8193 patches, one past the limit (worked out in image-slice.test.ts).
  const strip = join(scratch, 'strip.png');
  await sharp({ create: { width: 1, height: 65546, channels: 3, background: '#000' } }).png().toFile(strip);
  for (const args of [['inspect-image', '--model', MODEL, '--json', strip], ['chat', '--model', MODEL, '--image', strip, '--json', 'hi']]) {
    const out = await cli(args);
    assertCleanError(out, /too narrow for the vision tower: 1×65546 becomes a 14×114702 slice of 8193 patches/);
    assert.equal(out.code, 1, 'the exit code of every bad image');
  }

  assertCleanError(await cli(['inspect-image', '--model', MODEL, '--json', join(scratch, 'absent.png')]), /not found/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--image', join(scratch, 'absent.png'), '--json', 'hi']), /not found/);
});

test('bad chat requests get a one-line error and a non-zero exit', async () => {
  const bad = join(scratch, 'bad.json');
  writeFileSync(bad, '[{"role": "user", "content": ');
  assertCleanError(await cli(['chat', '--model', MODEL, '--messages', bad, '--json']), /not valid JSON/);
  writeFileSync(bad, JSON.stringify([{ role: 'assistant', content: 'hello' }]));
  assertCleanError(await cli(['chat', '--model', MODEL, '--messages', bad, '--json']), /first message/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--image', IMAGE, '--json', '   ']), /empty/);
  const long = 'word '.repeat(3000);
  assertCleanError(await cli(['chat', '--model', MODEL, '--json', long]), /tokens/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--decoding', 'nucleus', 'hi']), /--decoding/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--top-p', 'x', 'hi']), /--top-p/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--bogus', 'hi']), /bogus/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--vision-precision', 'int2', 'hi']), /--vision-precision must be one of fp32, int8, int4/);
  assertCleanError(await cli(['convert', '--model', MODEL, '--vision-precision', 'fp16']), /--vision-precision/);
});

test('--vision-precision: convert caches the quantised tower as its own entry, and chat answers from it', async () => {
  const model = fixturePath('omnilmm12b-tiny', 'model');
  const cacheDir = join(scratch, 'vision-precision-cache');
  // convert prints one line per graph: "  <part> <size>  built|already converted".
  const parts = (out: Outcome) =>
    Object.fromEntries([...out.stdout.matchAll(/^ {2}(\S+) +\S+ \S+ {2}(built|already converted)$/gm)].map((m) => [m[1], m[2]]));
  const convert = async (...args: string[]) => {
    const out = await cli(['convert', '--model', model, '--cache-dir', cacheDir, '--threads', '1', '--precision', 'fp32', ...args]);
    assert.equal(out.code, 0, out.stderr);
    return parts(out);
  };
  const built = { 'eva-vision': 'built', resampler: 'built', decoder: 'built' };
  assert.deepEqual(await convert('--vision-precision', 'int8'), built);
  assert.deepEqual(await convert('--vision-precision', 'int8'), { 'eva-vision': 'already converted', resampler: 'already converted', decoder: 'already converted' });
  // Another tower precision is another tower graph; the resampler and the decoder do not depend on it.
  assert.deepEqual(await convert('--vision-precision', 'int4'), { ...built, resampler: 'already converted', decoder: 'already converted' });
  assert.deepEqual(await convert('--vision-precision', 'fp32'), { ...built, resampler: 'already converted', decoder: 'already converted' });
  assert.deepEqual(await convert('--vision-precision', 'fp32'), { 'eva-vision': 'already converted', resampler: 'already converted', decoder: 'already converted' });

  const out = await cli(['chat', '--model', model, '--image', fixturePath('omnilmm12b-tiny', 'images', 'grad_100x80.png'), '--vision-precision', 'int8', '--precision', 'fp32',
    '--decoding', 'greedy', '--max-new-tokens', '4', '--threads', '1', '--json', 'What is in the image?'], { OMNILMM_CACHE: cacheDir });
  assert.equal(out.code, 0, out.stderr);
  assert.equal(JSON.parse(out.stdout).output_ids.length, 4);
  assert.equal(readdirSync(readdirSync(cacheDir).map((key) => join(cacheDir, key))[0]!).filter((f) => f.startsWith('eva-vision-')).length, 3,
    'chat used the converted int8 tower instead of building another');
});

test('convert refuses a cache folder it cannot write, before building; chat builds without it, with one warning line a part', async () => {
  const file = join(scratch, 'cache-is-a-file');
  writeFileSync(file, 'not a folder');
  const under = join(file, 'sub');
  assertCleanError(await cli(['convert', '--model', MODEL, '--cache-dir', under, '--threads', '1']), /the cache folder .*cache-is-a-file\/sub cannot be written \(ENOTDIR\): choose another with --cache-dir/);
  assertCleanError(await cli(['convert', '--model', MODEL, '--cache-dir', '', '--threads', '1']), /--cache-dir must name a folder/);
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, 'images', 'grad_100x80.png'), '--precision', 'fp32', '--vision-precision', 'fp32',
    '--decoding', 'greedy', '--max-new-tokens', '2', '--threads', '1', '--json', 'What is in the image?'], { OMNILMM_CACHE: under });
  assert.equal(out.code, 0, out.stderr);
  const warnings = out.stderr.split('\n').filter((line) => line.includes('is not writable'));
  assert.ok(warnings.length >= 1 && warnings.every((line) => line.startsWith('warning: the model cache ')), out.stderr);
  assert.doesNotMatch(out.stderr, /\(node:\d+\)|--trace-warnings/);
});

test('chat --help tells about several images, video, the downsample mode, thinking and content parts', async () => {
  const out = await cli(['chat', '--help']);
  assert.equal(out.code, 0, out.stderr);
  for (const text of ['[--image <path>]...', '--video <folder|file>', '--video-fps F', '--downsample-mode 16x|4x', '--thinking', '"system"', '[{"type":"image"},{"type":"video"},{"type":"text","text":"…"}]']) {
    assert.ok(out.stdout.includes(text), text);
  }
  const inspect = await cli(['inspect-image', '--help']);
  assert.ok(inspect.stdout.includes('--downsample-mode 16x|4x'));
});

test('chat --messages with content parts: the --image file fills the image part, token-exact', async () => {
  const c = readFixtureJson<{ msgs: { content: string }[]; input: { file: string }; input_ids: number[]; runs: Record<string, { new_token_ids: number[]; text: string }> }>(
    FIXTURE, 'llm', 'single_turn_grad.json');
  const messages = join(scratch, 'parts.json');
  writeFileSync(messages, JSON.stringify([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: c.msgs[0]!.content }] }]));
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--messages', messages, '--decoding', 'greedy',
    '--max-new-tokens', '24', '--downsample-mode', '16x', '--precision', 'fp32', '--vision-precision', 'fp32', '--json']);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout), {
    text: c.runs.greedy!.text, prompt_ids: c.input_ids, output_ids: c.runs.greedy!.new_token_ids, finish_reason: 'stop',
  });
});

test('bad media flags get a one-line error before the model loads', async () => {
  const messages = join(scratch, 'two-image-parts.json');
  writeFileSync(messages, JSON.stringify([{ role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Compare.' }] }]));
  // A model that does not exist: these requests fail before it would be loaded. A --video is read after the model's
  // config (its family says which frames it keeps), still before the model loads: those cases name a model folder.
  const neverLoaded = join(scratch, 'never-loaded');
  const model46 = fixturePath('minicpmv46-tiny', 'model');
  const cases: [string, string[], RegExp, number][] = [
    [neverLoaded, ['--image', IMAGE, '--messages', messages], /the messages have 2 image parts but 1 image was given/, 2],
    [neverLoaded, ['--downsample-mode', '8x', 'hi'], /--downsample-mode must be one of 16x, 4x, got "8x"/, 2],
    [neverLoaded, ['--video-fps', '2', 'hi'], /--video-fps goes with --video/, 2],
    [model46, ['--video', join(scratch, 'no-such-video'), 'hi'], /video not found/, 1],
    [model46, ['--video', IMAGE, 'hi'], /needs ffmpeg, which is not installed/, 1],
  ];
  for (const [model, args, pattern, code] of cases) {
    const out = await cli(['chat', '--model', model, ...args, '--json'], { OMNILMM_FFMPEG: join(scratch, 'no-ffmpeg') });
    assertCleanError(out, pattern);
    assert.equal(out.code, code, args.join(' '));
  }
  const inspect = await cli(['inspect-image', '--model', MODEL, '--json', '--downsample-mode', '4x', IMAGE]);
  assertCleanError(inspect, /MiniCPM-V 2\.0 has no 4x downsample mode/);
  assert.equal(inspect.code, 2);
  const plain = await cli(['inspect-image', '--model', MODEL, '--json', IMAGE]);
  const sixteen = await cli(['inspect-image', '--model', MODEL, '--json', '--downsample-mode', '16x', IMAGE]);
  assert.equal(sixteen.code, 0, sixteen.stderr);
  assert.equal(sixteen.stdout, plain.stdout);
});

test('MiniCPM-V 2.0 refuses several images, video, thinking, 4x and a system message: one line, exit code 2', async () => {
  const system = join(scratch, 'system.json');
  writeFileSync(system, JSON.stringify([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]));
  const cases: [string[], RegExp][] = [
    [['--image', IMAGE, '--image', IMAGE, 'Compare.'], /MiniCPM-V 2\.0 takes one image per conversation, got 2/],
    [['--video', fixturePath('minicpmv46-tiny', 'images', 'video_bars_96x72'), '--video-fps', '8', 'Describe.'], /MiniCPM-V 2\.0 takes no video/],
    [['--thinking', 'Why?'], /MiniCPM-V 2\.0 has no thinking mode/],
    [['--image', IMAGE, '--downsample-mode', '4x', 'What?'], /MiniCPM-V 2\.0 has no 4x downsample mode/],
    [['--messages', system], /MiniCPM-V 2\.0 has no system prompt/],
  ];
  for (const [args, pattern] of cases) {
    const out = await cli(['chat', '--model', MODEL, '--max-new-tokens', '2', '--json', ...args]);
    assertCleanError(out, pattern);
    assert.equal(out.code, 2, args.join(' '));
    assert.equal(out.stderr.trim().split('\n').length, 1, 'one line');
  }
});

/** Runs `use` with a stand-in hub at its URL that answers every request 404 and keeps their paths in `requests`. */
async function withRecordingHub(use: (url: string, requests: string[]) => Promise<void>): Promise<void> {
  const requests: string[] = [];
  const hub = createHttpServer((req, res) => {
    requests.push(req.url ?? '');
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => hub.listen(0, '127.0.0.1', () => resolve()));
  try {
    await use(`http://127.0.0.1:${(hub.address() as AddressInfo).port}`, requests);
  } finally {
    await new Promise<void>((resolve) => hub.close(() => resolve()));
  }
}

/** The one-image fixture models and their names in messages. */
const ONE_IMAGE_MODELS: [string, string][] = [
  [MODEL, 'MiniCPM-V 2.0'],
  [fixturePath('minicpmv1-tiny', 'model'), 'MiniCPM-V 1.0'],
  [fixturePath('omnilmm12b-tiny', 'model'), 'OmniLMM-12B'],
];

const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('a --video for a model that takes none is refused before the video is read: one line, exit code 2', async () => {
  const dir = join(scratch, 'no-video');
  mkdirSync(dir);
  // A stand-in ffmpeg that notes every run of it; a video file; a folder whose one frame is no image.
  const ffmpeg = join(dir, 'ffmpeg');
  const runs = join(dir, 'ffmpeg-runs');
  writeFileSync(ffmpeg, `#!/bin/sh\necho "$@" >> '${runs}'\n`);
  chmodSync(ffmpeg, 0o755);
  const clip = join(dir, 'clip.mp4');
  writeFileSync(clip, 'not really a video');
  const frames = join(dir, 'frames');
  mkdirSync(frames);
  writeFileSync(join(frames, 'frame_0.png'), 'not an image');
  for (const [model, name] of ONE_IMAGE_MODELS) {
    for (const video of [clip, frames]) {
      const out = await cli(['chat', '--model', model, '--video', video, '--json', 'Describe.'], { OMNILMM_FFMPEG: ffmpeg });
      assertCleanError(out, new RegExp(`^error: ${escaped(name)} takes no video: video is a MiniCPM-V 4\\.6 feature\n$`));
      assert.equal(out.code, 2, `${name}, ${video}`);
    }
  }
  assert.equal(existsSync(runs), false, 'ffmpeg never ran');
});

test('a second --image for a one-image model is refused before any image is decoded, where the model is at hand', async () => {
  const notAnImage = join(scratch, 'second-image.png');
  writeFileSync(notAnImage, 'not an image');
  // A hub model complete in the cache, in huggingface_hub's layout: refs/main names the commit, whose snapshot holds the files.
  const hfHome = join(scratch, 'hf-cached');
  const commit = '0123456789abcdef0123456789abcdef01234567';
  const repo = join(hfHome, 'hub', 'models--tiny--minicpmv2');
  copyModel(join('hf-cached', 'hub', 'models--tiny--minicpmv2', 'snapshots', commit));
  mkdirSync(join(repo, 'refs'));
  writeFileSync(join(repo, 'refs', 'main'), commit);
  const compare = (model: string, env: NodeJS.ProcessEnv = {}) =>
    cli(['chat', '--model', model, '--image', IMAGE, '--image', notAnImage, '--json', 'Compare.'], env);
  for (const [model, name, env] of [...ONE_IMAGE_MODELS, ['tiny/minicpmv2', 'MiniCPM-V 2.0', { HF_HOME: hfHome }] as const]) {
    const out = await compare(model, env);
    assertCleanError(out, new RegExp(`^error: ${escaped(name)} takes one image per conversation, got 2: send one image\n$`));
    assert.equal(out.code, 2, model);
  }
  // A hub model not in the cache is not fetched to count the images: they are read first, and the second is no image.
  await withRecordingHub(async (url, requests) => {
    const out = await compare('tiny/not-cached', { HF_HUB_OFFLINE: '', HF_ENDPOINT: url });
    assertCleanError(out, /image/);
    assert.equal(out.code, 1);
    assert.deepEqual(requests, []);
  });
});

test('a --video file without ffmpeg is refused before the hub model is fetched', async () => {
  const clip = join(scratch, 'clip-without-ffmpeg.mp4');
  writeFileSync(clip, 'not really a video');
  await withRecordingHub(async (url, requests) => {
    const out = await cli(['chat', '--model', 'tiny/not-downloaded', '--video', clip, '--json', 'Describe.'],
      { HF_HUB_OFFLINE: '', HF_ENDPOINT: url, OMNILMM_FFMPEG: join(scratch, 'no-ffmpeg') });
    assertCleanError(out, /^error: decoding the video file \S+clip-without-ffmpeg\.mp4 needs ffmpeg, which is not installed .*: install ffmpeg/);
    assert.equal(out.code, 1);
    assert.deepEqual(requests, [], 'nothing asked of the hub');
  });
});

test('with no network the default hub model fails with a clear message', async () => {
  const out = await cli(['chat', '--image', IMAGE, 'hi'], { HF_HUB_OFFLINE: '', HF_ENDPOINT: 'http://127.0.0.1:9' });
  assertCleanError(out, /cannot reach|--model/);
});

test('a closed stdout (`| head -c 20`) ends chat at once and quietly with status 141, streamed or --json', async () => {
  for (const json of [false, true]) {
    const child = spawn(process.execPath, [CLI, 'chat', '--model', MODEL, '--decoding', 'greedy', '--max-new-tokens', json ? '300' : '1500',
      '--threads', '1', ...(json ? ['--json'] : []), 'Tell me a story.'], { env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // As `head -c 20` does: read a little, then close the pipe (--json writes once, at the end: close it at once).
    if (json) child.stdout.destroy();
    else child.stdout.once('data', () => child.stdout.destroy());
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(stderr, '', json ? '--json' : 'streamed');
    assert.equal(code, 141, json ? '--json' : 'streamed');
  }
});

test('flag and setting mistakes get a clear error, not an internal one or Node\'s parser message', async () => {
  const file = join(scratch, 'not-a-folder');
  writeFileSync(file, 'x');
  const cache = await cli(['chat', '--model', MODEL, '--json', 'hi'], { OMNILMM_CACHE: file });
  assertCleanError(cache, /the model cache .*not-a-folder is a file, not a folder: point OMNILMM_CACHE/);
  assert.equal(cache.code, 2);
  assertCleanError(await cli(['chat', '--model', MODEL, '--max-new-tokens', '-5', 'hi']), /^error: --max-new-tokens must be at least 1, got -5\n$/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--temperature', '-0.5', 'hi']), /^error: --temperature must be above 0, got -0\.5\n$/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--decoding', 'beam', '--temperature', '0.5', 'hi']),
    /--temperature is a sampling setting, and --decoding beam does not sample/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--decoding', 'greedy', '--top-k', '5', 'hi']), /--top-k is a sampling setting/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--decoding', 'sample', '--num-beams', '4', 'hi']), /--num-beams is for --decoding beam/);
  assertCleanError(await cli(['chat', '--model', MODEL, '--max-new-tokens', '1000000000', '--json', 'hi']),
    /at most 4096 new tokens fit the model's context/);
});

/** Runs the CLI with its stdin fed from `input` (a pipe), as `echo … | omnilmm …` does. */
async function cliWithInput(args: string[], input: string): Promise<Outcome> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, HF_HUB_OFFLINE: '1' } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.end(input);
  const [code] = (await once(child, 'exit')) as [number];
  return { code, stdout, stderr };
}

test('a question piped into chat is asked; an empty pipe says how to give one', async () => {
  const c = readFixtureJson<{ msgs: { content: string }[]; input: { file: string }; runs: Record<string, { new_token_ids: number[] }> }>(
    FIXTURE, 'llm', 'single_turn_grad.json');
  const out = await cliWithInput(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy',
    '--max-new-tokens', '24', '--threads', '1', '--precision', 'fp32', '--vision-precision', 'fp32', '--json'], `${c.msgs[0]!.content}\n`);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout).output_ids, c.runs.greedy!.new_token_ids);
  assertCleanError(await cliWithInput(['chat', '--model', MODEL, '--json'], '  \n'), /^error: no question: .*pipe it in/);
});

/** What readline draws before its "> " prompt. */
const PROMPT = '\x1b[0J> ';

/**
 * Runs a shell command on a pseudo-terminal of 80 columns (util-linux `script`), typing the lines of `input` one at
 * a time, each once the session shows its next prompt; resolves with everything the terminal showed.
 */
async function inTerminal(command: string, input: string[] = []): Promise<string> {
  const child = spawn('script', ['-qec', `stty cols 80 rows 24; ${command}`, '/dev/null'],
    { env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['pipe', 'pipe', 'inherit'] });
  let shown = '';
  let typed = 0;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    shown += chunk;
    // stdin stays open after the last line: its end would hang up the terminal.
    if (typed < input.length && shown.split(PROMPT).length - 1 > typed) child.stdin.write(`${input[typed++]}\n`);
  });
  const [code] = (await once(child, 'exit')) as [number];
  child.stdin.destroy();
  assert.equal(code, 0, shown);
  return shown;
}

const quoted = (path: string) => `'${path}'`;
const cliCommand = (...args: string[]) => [process.execPath, CLI, ...args].map(quoted).join(' ');

test('on a terminal: beam search says it is thinking, then clears the note for the answer', async () => {
  const shown = await inTerminal(cliCommand('chat', '--model', MODEL, '--decoding', 'beam', '--max-new-tokens', '8', '--threads', '1', 'hi'));
  assert.match(shown, /^thinking… \(beam search shows the answer when it is complete\)\r\x1b\[K[^\r\n]+\r?\n/);
});

test('on a terminal: an unknown /command in a session is refused, not sent to the model; // asks literally', async () => {
  const shown = await inTerminal(cliCommand('chat', '--model', MODEL, '--decoding', 'greedy', '--max-new-tokens', '4', '--threads', '1'),
    ['/bogus now', '//etc what is it', '/exit']);
  assert.match(shown, /unknown command \/bogus: \/image <path>, \/reset, \/exit/);
  // One answer only: the literal question's (the model's answer is followed by the next prompt).
  const afterLiteral = shown.slice(shown.indexOf('//etc what is it'));
  assert.doesNotMatch(afterLiteral, /unknown command/);
  assert.equal(shown.split('unknown command').length, 2);
});

test('on a terminal: the convert bar fits 80 columns and ends at 100 %', async () => {
  const shown = await inTerminal(cliCommand('convert', '--model', MODEL, '--cache-dir', join(scratch, 'progress-cache'), '--threads', '1'));
  const frames = shown.split(/\r\n?|\n/).flatMap((line) => line.split('\r')).map((frame) => frame.replace('\x1b[K', ''));
  const bars = frames.filter((frame) => / \[[#-]+\] +\d+%/.test(frame));
  assert.ok(bars.length > 0, shown);
  for (const bar of bars) assert.ok(bar.length <= 79, `${bar.length} columns: ${bar}`);
  assert.match(bars.at(-1)!, /\] 100% 9\.5 MB\/9\.5 MB/);
});

test('serve knows --keep-vision-loaded as a flag, and refuses it with --web (which serves static files only)', async () => {
  assertCleanError(await cli(['serve', '--web', scratch, '--keep-vision-loaded']), /--keep-vision-loaded does not apply to it/);
  assertCleanError(await cli(['serve', '--keep-vision-loaded=yes']), /'--keep-vision-loaded' does not take an argument/);
});

test('--version prints the package version', async () => {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-v']) {
    const out = await cli([flag]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, `omnilmm ${version}\n`);
  }
});

test('serve refuses a port in use before it loads the model', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
  try {
    const port = (taken.address() as AddressInfo).port;
    // The model folder does not exist: had serve loaded first, that would be the error.
    const out = await cli(['serve', '--model', join(scratch, 'no-such-model'), '--port', String(port)]);
    assertCleanError(out, new RegExp(`port ${port} is in use: pick another with --port`));
  } finally {
    await new Promise<void>((resolve) => taken.close(() => resolve()));
  }
});

type GreedyChat = { msgs: { content: string }[]; input: { file: string }; input_ids: number[]; runs: Record<string, { new_token_ids: number[] }> };

test('an answer cut short says which limit cut it: a note on stderr, and finish_reason "length" in --json', async () => {
  // The official greedy answer is 10 tokens long (EOS last): 5 tokens, or a context with room for 3, cut it short.
  const c = readFixtureJson<GreedyChat>(FIXTURE, 'llm', 'single_turn_grad.json');
  const official = c.runs.greedy!.new_token_ids;
  const ask = (model: string, ...args: string[]) => cli(['chat', '--model', model, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy',
    '--precision', 'fp32', '--vision-precision', 'fp32', '--threads', '1', ...args, c.msgs[0]!.content]);
  const limited = await ask(MODEL, '--max-new-tokens', '5', '--json');
  assert.equal(limited.code, 0, limited.stderr);
  const report = JSON.parse(limited.stdout);
  assert.deepEqual([report.prompt_ids, report.output_ids, report.finish_reason], [c.input_ids, official.slice(0, 5), 'length']);
  assert.equal(limited.stderr, 'note: the answer was cut short at --max-new-tokens 5: raise it for a longer answer\n');
  const streamed = await ask(MODEL, '--max-new-tokens', '5');
  assert.equal(streamed.code, 0, streamed.stderr);
  assert.notEqual(streamed.stdout.trim(), '');
  assert.equal(streamed.stderr, limited.stderr);

  const small = copyModel('small-context');
  const context = c.input_ids.length + 3;
  const config = JSON.parse(readFileSync(join(small, 'config.json'), 'utf8'));
  writeFileSync(join(small, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: context }));
  const full = await ask(small, '--max-new-tokens', '24', '--json');
  assert.equal(full.code, 0, full.stderr);
  assert.deepEqual(JSON.parse(full.stdout).output_ids, official.slice(0, 3));
  assert.equal(JSON.parse(full.stdout).finish_reason, 'length');
  assert.equal(full.stderr, `note: the answer was cut short where the model's ${context}-token context is full ` +
    `(a ${c.input_ids.length}-token prompt and 3 new tokens): ask in a shorter conversation for a longer answer\n`);
});

test('MiniCPM-V 4.6: an answer cut at the default limit (generation_config\'s max_new_tokens) says so; one that ends does not', async () => {
  // The official greedy answer: 13 tokens, the last one <|endoftext|>.
  const c = readFixtureJson<{ images: { file: string }[]; messages: { content: { type: string; text?: string }[] }[]; runs: { greedy: { new_token_ids: number[] } } }>(
    'minicpmv46-tiny', 'llm', 'eos_stop.json');
  const official = c.runs.greedy.new_token_ids;
  const model46 = fixturePath('minicpmv46-tiny', 'model');
  const capped = copyModel('minicpmv46-capped', model46);
  const generation = JSON.parse(readFileSync(join(capped, 'generation_config.json'), 'utf8'));
  writeFileSync(join(capped, 'generation_config.json'), JSON.stringify({ ...generation, max_new_tokens: 3 }));
  const ask = (model: string) => cli(['chat', '--model', model, '--image', fixturePath('minicpmv46-tiny', c.images[0]!.file), '--decoding', 'greedy',
    '--precision', 'fp32', '--vision-precision', 'fp32', '--threads', '1', '--json', c.messages[0]!.content.find((p) => p.type === 'text')!.text!]);
  const cut = await ask(capped);
  assert.equal(cut.code, 0, cut.stderr);
  assert.deepEqual([JSON.parse(cut.stdout).output_ids, JSON.parse(cut.stdout).finish_reason], [official.slice(0, 3), 'length']);
  assert.equal(cut.stderr, 'note: the answer was cut short at the model\'s default limit of 3 new tokens: raise it with --max-new-tokens\n');
  const whole = await ask(model46);
  assert.equal(whole.code, 0, whole.stderr);
  assert.deepEqual([JSON.parse(whole.stdout).output_ids, JSON.parse(whole.stdout).finish_reason], [official, 'stop']);
  assert.doesNotMatch(whole.stderr, /note:/);
});

test('chat --help gives each model family\'s own decoding defaults', async () => {
  const help = (await cli(['chat', '--help'])).stdout.replace(/\s+/g, ' ');
  // The official chat()s' settings (the fixtures' READMEs quote them), and MiniCPM-V 4.6's generation_config.json.
  const official = [
    'MiniCPM-V 2.0 sample: temperature 0.7, top_p 0.8, top_k 100, repetition penalty 1.05 beam: 3 beams, repetition penalty 1.2; --max-new-tokens 1024',
    'MiniCPM-V 1.0 sample: temperature 0.6, top_p 0.8, top_k 100, repetition penalty 1.0 beam: 3 beams, repetition penalty 1.2; --max-new-tokens 2048',
    'OmniLMM-12B sample: temperature 0.6, top_p 0.9, top_k 30, repetition penalty 1.1',
  ];
  for (const line of official) assert.ok(help.includes(line), line);
  const g = JSON.parse(readFileSync(fixturePath('minicpmv46-tiny', 'model', 'generation_config.json'), 'utf8'));
  const released = `temperature ${g.temperature}, top_p ${g.top_p.toFixed(1)}, top_k ${g.top_k} (off), repetition penalty ${g.repetition_penalty.toFixed(1)}`;
  assert.ok(help.includes(`MiniCPM-V 4.6 the checkpoint's generation_config.json`) && help.includes(released), released);
  assert.doesNotMatch(help, /sample \(default: top_p 0\.8/, 'no one family\'s settings given as everyone\'s');
});

test('tokenize --help is true for every family; help <command> is that command\'s help; after -- nothing is an option', async () => {
  const help = await cli(['tokenize', '--help']);
  assert.equal(help.code, 0);
  assert.doesNotMatch(help.stdout, /BOS comes first/);
  assert.match(help.stdout.replace(/\s+/g, ' '), /MiniCPM-V 4\.6: byte-level BPE \(tokenizer\.json\), no BOS/);
  // As the help says: MiniCPM-V 4.6's ids have no BOS (the official tokenizer's ids for a case).
  const { encode } = readFixtureJson<{ encode: EncodeCase[] }>('minicpmv46-tiny', 'tokenizer', 'cases.json');
  const ids = await cli(['tokenize', '--model', fixturePath('minicpmv46-tiny', 'model'), '--json', encode[0]!.text]);
  assert.deepEqual(JSON.parse(ids.stdout), { ids: encode[0]!.input_ids });

  for (const command of ['chat', 'tokenize', 'export-web']) {
    const viaHelp = await cli(['help', command]);
    assert.equal(viaHelp.code, 0, command);
    assert.equal(viaHelp.stdout, (await cli([command, '--help'])).stdout, command);
  }
  assertCleanError(await cli(['help', 'bogus']), /unknown command "bogus"/);

  const bos = readFixtureJson<{ special_ids: { bos_id: number } }>(FIXTURE, 'tokenizer', 'cases.json').special_ids.bos_id;
  for (const text of ['--help', '-h']) {
    const out = await cli(['tokenize', '--model', MODEL, '--json', '--', text]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).ids[0], bos, text);
    assert.ok(JSON.parse(out.stdout).ids.length > 1, text);
  }
});

test('an output path that cannot be written gets a one-line error naming it, and leaves nothing behind', async () => {
  const where = join(scratch, 'outputs');
  mkdirSync(where);
  const aFile = join(where, 'a-file');
  writeFileSync(aFile, 'x');
  const aFolder = join(where, 'a-folder');
  mkdirSync(aFolder);
  const aPipe = join(where, 'a-pipe');
  execFileSync('mkfifo', [aPipe]);
  const pixels = (path: string) => cli(['inspect-image', '--model', MODEL, '--pixels', path, IMAGE]);
  const cases: [() => Promise<Outcome>, RegExp][] = [
    [() => pixels(join(where, 'missing', 'px.safetensors')), /cannot write --pixels .*missing\/px\.safetensors: its folder does not exist/],
    [() => pixels(join(aFile, 'px.safetensors')), /cannot write --pixels .*a-file\/px\.safetensors: a part of the path is a file, not a folder/],
    [() => pixels(aFolder), /a-folder is a folder, not a regular file/],
    [() => pixels(aPipe), /a-pipe is a named pipe, not a regular file/],
    [() => pixels(''), /--pixels must name a file, got an empty path/],
    [() => cli(['export-web', '--model', MODEL, '--out', join(aFile, 'web')]), /cannot write --out .*a-file\/web: a part of the path is a file, not a folder/],
    [() => cli(['export-web', '--model', MODEL, '--out', '']), /--out must name a folder, got an empty path/],
    [() => cli(['export-web', '--model', MODEL, '--out', '/sys/omnilmm-web']), /cannot write --out \/sys\/omnilmm-web: /],
  ];
  for (const [run, pattern] of cases) {
    const out = await run();
    assertCleanError(out, pattern);
    assert.equal(out.stderr.split('\n').length, 2, `one line: ${out.stderr}`);
    assert.doesNotMatch(out.stderr, /internal error/);
  }
  assert.deepEqual(readdirSync(where).sort(), ['a-file', 'a-folder', 'a-pipe'], 'no .partial file, nothing created');
  assert.ok(lstatSync(aPipe).isFIFO(), 'the pipe is still a pipe');
  assert.deepEqual(readdirSync(aFolder), []);
  assert.equal(existsSync('/sys/omnilmm-web'), false);
});

test('--threads above the machine\'s cores is allowed with a warning; the help says so', async () => {
  const cores = availableParallelism();
  const out = await cli(['chat', '--model', MODEL, '--threads', String(cores + 1), '--decoding', 'greedy', '--max-new-tokens', '2', '--json', 'hi']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, new RegExp(`^warning: --threads ${cores + 1} is more than this machine's ${cores} cores: .*leave --threads out for one per core\n`));
  for (const command of ['chat', 'serve', 'convert']) {
    assert.match((await cli([command, '--help'])).stdout.replace(/\s+/g, ' '), /more than the cores are allowed, with a warning/, command);
  }
});

test('an empty question is refused for every family; a --messages file may start with a byte order mark', async () => {
  for (const model of [MODEL, fixturePath('minicpmv46-tiny', 'model')]) {
    const out = await cli(['chat', '--model', model, '--json', ' \t ']);
    assertCleanError(out, /^error: the question is empty: ask something\n$/);
    assert.equal(out.code, 2);
  }
  const c = readFixtureJson<GreedyChat & { runs: Record<string, { text: string }> }>(FIXTURE, 'llm', 'single_turn_grad.json');
  const messages = join(scratch, 'bom.json');
  writeFileSync(messages, `\uFEFF${JSON.stringify(c.msgs)}`);
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--messages', messages, '--decoding', 'greedy',
    '--max-new-tokens', '24', '--precision', 'fp32', '--vision-precision', 'fp32', '--json']);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout).output_ids, c.runs.greedy!.new_token_ids);
});

test('on a terminal: /image without a path says that it needs one', async () => {
  const shown = await inTerminal(cliCommand('chat', '--model', MODEL, '--decoding', 'greedy', '--max-new-tokens', '4', '--threads', '1'), ['/image', '/exit']);
  assert.match(shown, /error: \/image needs the path of an image: \/image <path>/);
  assert.doesNotMatch(shown, /image not found/);
});

test('on a terminal: a turn that no longer fits the context says to type /reset; a one-shot chat does not', async () => {
  // The fixture question's official prompt leaves 3 positions: the first answer fits (cut short), the second turn's
  // prompt (the first turn, its answer and a new question) does not.
  const c = readFixtureJson<GreedyChat>(FIXTURE, 'llm', 'single_turn_grad.json');
  const small = copyModel('context-full');
  const context = c.input_ids.length + 3;
  const config = JSON.parse(readFileSync(join(small, 'config.json'), 'utf8'));
  writeFileSync(join(small, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: context }));
  const args = ['chat', '--model', small, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy', '--max-new-tokens', '24', '--threads', '1'];
  const shown = await inTerminal(cliCommand(...args), [c.msgs[0]!.content, 'and then?', '/reset', 'hi', '/exit']);
  const full = `the prompt has \\d+ tokens and fills the ${context}-token context`;
  assert.match(shown, new RegExp(`error: ${full}: type /reset to start a new conversation\\r?\\n`));
  assert.equal(shown.split('error:').length, 2, 'after /reset the question is answered');

  const messages = join(scratch, 'grown.json');
  writeFileSync(messages, JSON.stringify([c.msgs[0], { role: 'assistant', content: 'a long answer '.repeat(8) }, { role: 'user', content: 'and then?' }]));
  assertCleanError(await cli([...args, '--messages', messages]), new RegExp(`^error: ${full}\\n$`));
});

test('on a terminal: an answer cut short because the conversation filled the context says to type /reset; a one-shot chat does not', async () => {
  // In fp32 the first answer is the official one, 10 tokens ending in EOS; the second turn's prompt (the first turn, its
  // answer and a new question) is shorter than the context but leaves less room than --max-new-tokens.
  const c = readFixtureJson<GreedyChat & { runs: Record<string, { text: string }> }>(FIXTURE, 'llm', 'single_turn_grad.json');
  const small = copyModel('context-fills');
  const context = c.input_ids.length + c.runs.greedy!.new_token_ids.length + 16;
  const config = JSON.parse(readFileSync(join(small, 'config.json'), 'utf8'));
  writeFileSync(join(small, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: context }));
  const args = ['chat', '--model', small, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy', '--max-new-tokens', '24',
    '--precision', 'fp32', '--vision-precision', 'fp32', '--threads', '1'];
  const shown = await inTerminal(cliCommand(...args), [c.msgs[0]!.content, 'and then?', '/exit']);
  const full = `note: the answer was cut short where the model's ${context}-token context is full \\(a \\d+-token prompt and \\d+ new tokens\\)`;
  assert.match(shown, new RegExp(`${full}: type /reset to start a new conversation for a longer answer\\r?\\n`));
  assert.equal(shown.split('note:').length, 2, 'the first answer came to its end');

  const messages = join(scratch, 'filling.json');
  writeFileSync(messages, JSON.stringify([c.msgs[0], { role: 'assistant', content: c.runs.greedy!.text }, { role: 'user', content: 'and then?' }]));
  const oneShot = await cli([...args, '--messages', messages]);
  assert.equal(oneShot.code, 0, oneShot.stderr);
  assert.match(oneShot.stderr, new RegExp(`^${full}: ask in a shorter conversation for a longer answer\\n$`));
});
