// The CLI's answer to bad input, driven in a subprocess: one line starting with "error:", nothing on stdout, and an
// exit code, said before the slow work (reading media, loading or fetching the model) where it can be.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { assertCleanError, cli, copyModel, FIXTURE, IMAGE, MODEL, scratch, type Outcome } from './helpers/cli.js';
import { fixturePath } from './helpers/fixtures.js';

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

test('an empty or blank flag value is refused by name, for every flag of every command; so is an empty OMNILMM_API_KEY', async () => {
  // A model that does not exist: each of these is refused before it would be looked for. Before, `chat --video ''`
  // chatted without the video and `serve --model ''` said "no such folder , and not a hub id".
  const neverLoaded = join(scratch, 'never-loaded');
  const flagsOf: Record<string, string[]> = {
    chat: ['model', 'image', 'video', 'video-fps', 'messages', 'downsample-mode', 'decoding', 'num-beams', 'repetition-penalty',
      'temperature', 'top-p', 'top-k', 'seed', 'max-new-tokens', 'threads', 'precision', 'vision-precision'],
    serve: ['model', 'web', 'host', 'port', 'api-key', 'max-queue', 'threads', 'precision', 'vision-precision'],
    tokenize: ['model'],
    'inspect-image': ['model', 'pixels', 'downsample-mode'],
    convert: ['model', 'precision', 'vision-precision', 'cache-dir', 'threads'],
    'export-web': ['model', 'out', 'precision', 'vision-precision'],
  };
  const rest: Record<string, string[]> = { chat: ['hi'], tokenize: ['hi'], 'inspect-image': [IMAGE], 'export-web': ['--out', join(scratch, 'web')] };
  for (const [command, flags] of Object.entries(flagsOf)) {
    for (const flag of flags) {
      const model = flag === 'model' ? [] : ['--model', neverLoaded];
      const out = await cli([command, ...model, ...(rest[command] ?? []), `--${flag}`, '']);
      assertCleanError(out, new RegExp(`^error: --${flag} needs a value, got an empty string\n$`));
      assert.equal(out.code, 2, `${command} --${flag}`);
    }
  }
  assertCleanError(await cli(['chat', '--model', neverLoaded, '--image', IMAGE, '--image', ' ', 'hi']), /^error: --image needs a value, got only whitespace \(" "\)\n$/);
  assertCleanError(await cli(['serve', '--model', '\t']), /^error: --model needs a value, got only whitespace \("\\t"\)\n$/);
  for (const key of ['', '  ']) {
    const out = await cli(['serve', '--model', neverLoaded, '--port', '0'], { OMNILMM_API_KEY: key });
    assertCleanError(out, /^error: the OMNILMM_API_KEY environment variable is set but empty: set it to the key, or unset it\n$/);
    assert.equal(out.code, 2);
  }
});

test('numeric flags take plain decimal notation only: hex, binary, octal, Infinity and padding are refused by name', async () => {
  const neverLoaded = join(scratch, 'never-loaded');
  const whole = 'a whole number in decimal digits \\(such as 8\\)';
  const decimal = 'a decimal number \\(such as 0\\.7 or 1e-3\\)';
  const cases: [string, string, string, string][] = [
    ['serve', 'port', '0x50', whole],
    ['serve', 'port', '0b1010000', whole],
    ['serve', 'port', '0o120', whole],
    ['serve', 'port', ' 80', whole],
    ['serve', 'port', '80 ', whole],
    ['serve', 'port', '-0x50', whole],
    ['serve', 'max-queue', 'Infinity', whole],
    ['chat', 'threads', '1e0', whole],
    ['chat', 'threads', '1.0', whole],
    ['chat', 'seed', '+0x7', whole],
    ['chat', 'temperature', '0x1', decimal],
    ['chat', 'temperature', 'Infinity', decimal],
    ['chat', 'top-p', '.5 ', decimal],
    ['chat', 'repetition-penalty', '1,2', decimal],
    ['chat', 'video-fps', '1e400', decimal],
  ];
  for (const [command, flag, value, kind] of cases) {
    const out = await cli([command, '--model', neverLoaded, `--${flag}`, value, ...(command === 'chat' ? ['hi'] : [])]);
    assertCleanError(out, new RegExp(`^error: --${flag} must be ${kind}, got ${escaped(JSON.stringify(value))}\n$`));
    assert.equal(out.code, 2, `${command} --${flag} ${value}`);
  }
  // A whole number a double cannot hold exactly (2^53 = 9007199254740992 and above) is refused, not rounded.
  for (const [flag, value] of [['seed', '9007199254740992'], ['top-k', '99999999999999999999'], ['max-new-tokens', '-9007199254740993']]) {
    const out = await cli(['chat', '--model', neverLoaded, `--${flag}`, value!, 'hi']);
    assertCleanError(out, new RegExp(`^error: --${flag} must be at most 9007199254740991 in size, got ${escaped(value!)}\n$`));
    assert.equal(out.code, 2, `chat --${flag} ${value}`);
  }
  // Plain decimal forms pass: the command goes on to look for the model.
  const plain = await cli(['chat', '--model', neverLoaded, '--temperature', '5e-1', '--top-p', '.5', '--repetition-penalty', '1.',
    '--seed', '+7', '--max-new-tokens', '012', '--threads', '1', '--json', 'hi']);
  assertCleanError(plain, /^error: no such folder .*never-loaded/);
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
    [() => pixels(''), /^error: --pixels needs a value, got an empty string\n$/],
    [() => cli(['export-web', '--model', MODEL, '--out', join(aFile, 'web')]), /cannot write --out .*a-file\/web: a part of the path is a file, not a folder/],
    [() => cli(['export-web', '--model', MODEL, '--out', '']), /^error: --out needs a value, got an empty string\n$/],
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
