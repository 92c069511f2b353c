// End to end through the public API: every llm case of the fixture, greedy, beam search and greedy with a
// repetition penalty, token-exact with the official chat(). The richer inputs: content parts mapped to images,
// MiniCPM-V 2.0's refusals of what only 4.6 takes, reading a video (a folder of frames, ffmpeg's PPM stream), and
// the split of an answer's reasoning from its content. An image's prompt-reuse key is hashed by node:crypto.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { MessageChannel } from 'node:worker_threads';
import { InvalidRequestError, loadModel, VideoError, type Model } from '../src/index.js';
import type { DecodingSettings } from '../src/chat/decoding.js';
import { decodeWithFfmpeg, frameNameOrder, PpmStream, readVideoPath } from '../src/chat/media-source.js';
import { ReasoningStream, splitReasoning } from '../src/chat/reasoning.js';
import { decodeImage, type RgbImage } from '../src/image/index.js';
import { chatInputOf, parseConversation, placeMedia } from '../src/models/messages.js';
import { familyOf, loadModelConfig } from '../src/models/registry.js';
import { installSha256Digest, Sha256 } from '../src/sha256.js';
import { fixturePath, readFixtureJson, nonSamplingSettings } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';

interface Run {
  chat_kwargs: { sampling: boolean; num_beams?: number; repetition_penalty?: number; max_new_tokens: number };
  new_token_ids: number[];
  text: string;
  sequences_score?: number;
}
interface LlmCase {
  name: string;
  input: { file: string };
  msgs: { role: 'user' | 'assistant'; content: string }[];
  input_ids: number[];
  runs: Record<string, Run>;
}

/** chat(sampling=False, **kwargs) with only the keys chat() accepts for that mode. */
function settingsFor(run: Run): DecodingSettings {
  const k = run.chat_kwargs;
  assert.equal(k.sampling, false);
  return nonSamplingSettings(k);
}

let model: Model;
before(async () => {
  model = await loadModel(fixturePath(FIXTURE, 'model'), { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
});
after(() => model.release());

const cases = readdirSync(fixturePath(FIXTURE, 'llm')).filter((f) => f.endsWith('.json'));

test('the fixture has the five llm cases', () => assert.equal(cases.length, 5));

for (const file of cases) {
  const c = readFixtureJson<LlmCase>(FIXTURE, 'llm', file);
  for (const [runName, run] of Object.entries(c.runs)) {
    test(`${c.name} / ${runName}: prompt ids, output ids and text are the official ones`, async () => {
      const image = readFileSync(fixturePath(FIXTURE, c.input.file));
      const result = await model.run({ messages: c.msgs, image, ...settingsFor(run) });
      assert.deepEqual(result.promptIds, c.input_ids);
      assert.deepEqual(result.outputIds, run.new_token_ids);
      assert.equal(result.text, run.text);
    });
  }
}

test('streamed chunks add up to the final answer', async () => {
  const c = readFixtureJson<LlmCase>(FIXTURE, 'llm', 'zh_plain_gray.json');
  const image = readFileSync(fixturePath(FIXTURE, c.input.file));
  const stream = model.streamChat({ messages: c.msgs, image, decoding: 'greedy', maxNewTokens: 24 });
  let text = '';
  for (;;) {
    const next = await stream.next();
    if (next.done) {
      assert.equal(text, next.value.text);
      assert.equal(next.value.text, c.runs.greedy!.text);
      break;
    }
    text += next.value;
  }
});

// ---- richer inputs ------------------------------------------------------------------------------------------------

const grad = readFixtureJson<LlmCase>(FIXTURE, 'llm', 'single_turn_grad.json');
const gradImage = () => readFileSync(fixturePath(FIXTURE, grad.input.file));
const greedy = { decoding: 'greedy', maxNewTokens: 24 } as const;

test('content parts: an image part takes the image, and the answer is the official one', async () => {
  const question = grad.msgs[0]!.content;
  const parts = [{ role: 'user' as const, content: [{ type: 'image' as const }, { type: 'text' as const, text: question }] }];
  for (const request of [{ messages: parts, images: [gradImage()] }, { messages: parts, image: gradImage() }, { question, images: [gradImage()] }]) {
    const result = await model.run({ ...request, ...greedy, downsampleMode: '16x', thinking: false });
    assert.deepEqual(result.promptIds, grad.input_ids);
    assert.deepEqual(result.outputIds, grad.runs.greedy!.new_token_ids);
  }
});

test('an image\'s prompt-reuse key is node:crypto\'s SHA-256 of its size and pixels: the portable Sha256 hashes none of them', async () => {
  const image = await decodeImage(gradImage());
  // Pixel arrays the portable Sha256 takes in (its own padding is at most 128 bytes; the image's pixels are 24 000).
  const portablyHashed: Uint8Array[] = [];
  const portableUpdate = Sha256.prototype.update;
  Sha256.prototype.update = function (this: Sha256, data: Uint8Array | string) {
    if (typeof data !== 'string' && data.length > 128) portablyHashed.push(data);
    return portableUpdate.call(this, data);
  };
  const keys: string[] = [];
  const installed = installSha256Digest((pieces) => {
    const key = installed(pieces);
    keys.push(key);
    return key;
  });
  try {
    const result = await model.run({ messages: grad.msgs, image, ...greedy });
    assert.deepEqual(result.outputIds, grad.runs.greedy!.new_token_ids);
  } finally {
    Sha256.prototype.update = portableUpdate;
    installSha256Digest(installed);
  }
  assert.deepEqual(portablyHashed.map((pixels) => pixels.length), [], 'pixel arrays the portable Sha256 hashed');
  assert.deepEqual(keys, [createHash('sha256').update('100x80:').update(image.data).digest('hex')]);
});

test('MiniCPM-V 2.0 refuses what only MiniCPM-V 4.6 takes, naming itself', async () => {
  const image = gradImage();
  const ask = (request: Parameters<Model['run']>[0]) => model.run({ question: 'What is in the image?', ...greedy, ...request });
  const video = { file: fixturePath('minicpmv46-tiny', 'images', 'video_bars_96x72'), fps: 8 };
  const refusals: [Parameters<Model['run']>[0], RegExp][] = [
    [{ images: [image, image] }, /^MiniCPM-V 2\.0 takes one image per conversation, got 2/],
    [{ video }, /^MiniCPM-V 2\.0 takes no video/],
    [{ thinking: true }, /^MiniCPM-V 2\.0 has no thinking mode/],
    [{ downsampleMode: '4x' }, /^MiniCPM-V 2\.0 has no 4x downsample mode/],
    [{ messages: [{ role: 'system', content: 'Be brief.' }] }, /^MiniCPM-V 2\.0 has no system prompt/],
    [{ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: [{ type: 'image' }] }], image },
      /^MiniCPM-V 2\.0 takes its image in the first message/],
  ];
  for (const [request, pattern] of refusals) await assert.rejects(ask(request), (err: Error) => err instanceof InvalidRequestError && pattern.test(err.message));
  // Requests the chat layer itself refuses, whatever the model.
  const bad: [Parameters<Model['run']>[0], RegExp][] = [
    [{ image, images: [image] }, /either image or images/],
    [{ messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Compare' }] }], images: [image] }, /2 image parts but 1 image was given/],
    [{ downsampleMode: '8x' as never }, /downsample mode must be "16x" or "4x"/],
    [{ messages: [{ role: 'user', content: [{ type: 'audio' } as never] }] }, /"type" must be "text", "image" or "video"/],
    [{ video: { frames: [], fps: 1 } }, /no frames/],
  ];
  for (const [request, pattern] of bad) await assert.rejects(ask(request), (err: Error) => err instanceof InvalidRequestError && pattern.test(err.message));
});

test('placeMedia: without parts the images, then the video, go before the first user text; with parts the counts must match', () => {
  const conversation = parseConversation([
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Compare them.' },
    { role: 'assistant', content: 'They differ.' },
  ]);
  assert.deepEqual(placeMedia(conversation, 2, 1)[1], {
    role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'video' }, { type: 'text', text: 'Compare them.' }],
  });
  assert.deepEqual(placeMedia(conversation, 0, 0), conversation);
  const withParts = parseConversation([{ role: 'user', content: [{ type: 'text', text: 'A' }, { type: 'image' }, { type: 'video' }] }]);
  assert.deepEqual(placeMedia(withParts, 1, 1), withParts);
  assert.throws(() => placeMedia(withParts, 1, 0), /1 video part but 0 videos were given/);
  assert.throws(() => placeMedia(withParts, 2, 1), /1 image part but 2 images were given/);
  assert.throws(() => parseConversation([{ role: 'user', content: 'hi' }, { role: 'system', content: 'late' }]), /system message must be the first/);
  assert.throws(() => parseConversation([{ role: 'assistant', content: [{ type: 'image' }] }]), /belong in user messages/);
  assert.throws(() => parseConversation([{ role: 'user', content: [{ type: 'video' }, { type: 'video' }] }]), /more than one video/);
  assert.throws(() => parseConversation([{ role: 'user', content: [{ type: 'text', text: 3 }] }]), /"text" must be a string/);
  // The upstream form (text messages, the image before the first one) as a ChatInput.
  const image = { width: 1, height: 1, data: new Uint8Array(3) };
  assert.deepEqual(chatInputOf([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }], image), {
    messages: [
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Hi' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'Hello' }] },
    ],
    images: [image],
    video: null,
    thinking: false,
  });
});

test('a folder of frames is read in name order at the given fps (default 1)', async () => {
  const folder = fixturePath('minicpmv46-tiny', 'images', 'video_bars_96x72');
  const names = readdirSync(folder).sort();
  const video = await readVideoPath(folder, { fps: 8 });
  assert.equal(video.fps, 8);
  assert.equal(video.frames.length, 20);
  for (const i of [0, 7, 19]) {
    const expected = await decodeImage(readFileSync(join(folder, names[i]!)));
    assert.deepEqual([video.frames[i]!.width, video.frames[i]!.height], [96, 72]);
    assert.deepEqual(video.frames[i]!.data, expected.data, names[i]);
  }
  assert.equal((await readVideoPath(folder)).fps, 1);
  await assert.rejects(readVideoPath(join(folder, 'absent')), /video not found/);
});

test('frame names sort as a numbered sequence: digit runs by value, zero-padded names as text', () => {
  const sorted = (names: string[]) => [...names].sort(frameNameOrder);
  assert.deepEqual(sorted(['10.jpg', '2.jpg', '1.png']), ['1.png', '2.jpg', '10.jpg']);
  assert.deepEqual(sorted(['frame_10.png', 'frame_9.png', 'frame_100.png', 'frame_1.png']), ['frame_1.png', 'frame_9.png', 'frame_10.png', 'frame_100.png']);
  assert.deepEqual(sorted(['f_002.png', 'f_010.png', 'f_001.png']), ['f_001.png', 'f_002.png', 'f_010.png']);
  assert.deepEqual(sorted(['b1.png', 'a2.png', 'a10.png', 'a1b.png', 'a1.png']), ['a1.png', 'a1b.png', 'a2.png', 'a10.png', 'b1.png']);
  // equal values with different padding still get one order
  assert.deepEqual(sorted(['x01.png', 'x1.png']), ['x01.png', 'x1.png']);
});

test('PpmStream cuts a PPM stream into RGB frames, however it is chunked', () => {
  const bytes = Buffer.concat([
    Buffer.from('P6\n2 1\n255\n'), Buffer.from([1, 2, 3, 4, 5, 6]),
    Buffer.from('P6 1 2 255 '), Buffer.from([10, 20, 30, 40, 50, 60]),
  ]);
  const keepAll = { wants: () => true, receive: () => {} };
  for (const size of [1, 3, 7, bytes.length]) {
    const frames: RgbImage[] = [];
    const stream = new PpmStream({ wants: () => true, receive: (_, frame) => frames.push(frame) });
    for (let at = 0; at < bytes.length; at += size) stream.push(bytes.subarray(at, at + size));
    assert.ok(stream.complete);
    assert.equal(stream.count, 2);
    assert.deepEqual(frames.map((f) => [f.width, f.height, [...f.data]]), [[2, 1, [1, 2, 3, 4, 5, 6]], [1, 2, [10, 20, 30, 40, 50, 60]]]);
  }
  // A frame not wanted is counted and its pixels skipped.
  const kept: [number, number[]][] = [];
  const second = new PpmStream({ wants: (index) => index === 1, receive: (index, frame) => kept.push([index, [...frame.data]]) });
  second.push(bytes);
  assert.equal(second.count, 2);
  assert.deepEqual(kept, [[1, [10, 20, 30, 40, 50, 60]]]);
  assert.throws(() => new PpmStream(keepAll).push(Buffer.from('GIF89a')), VideoError);
  assert.throws(() => new PpmStream(keepAll).push(Buffer.from('P6 2 2 65535 ')), /8-bit RGB/);
});

test('a video file is decoded by ffmpeg at the fps asked for; without ffmpeg the error names it', async () => {
  const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-ffmpeg-'));
  const saved = process.env.OMNILMM_FFMPEG;
  try {
    // A stand-in for ffmpeg: records its arguments and prints two 1×1 frames.
    const fake = join(scratch, 'ffmpeg');
    writeFileSync(fake, `#!/bin/sh\necho "$@" > "${join(scratch, 'args')}"\nprintf 'P6\\n1 1\\n255\\n\\001\\002\\003P6\\n1 1\\n255\\n\\004\\005\\006'\n`);
    chmodSync(fake, 0o755);
    const clip = join(scratch, 'clip.mp4');
    writeFileSync(clip, 'not really a video');
    process.env.OMNILMM_FFMPEG = fake;
    const { frames } = await decodeWithFfmpeg(clip, 2);
    assert.deepEqual(frames.map((f) => [...f.data]), [[1, 2, 3], [4, 5, 6]]);
    const args = readFileSync(join(scratch, 'args'), 'utf8');
    assert.match(args, /-i \S+clip\.mp4 /);
    assert.match(args, /-vf fps=2:eof_action=pass /);
    assert.match(args, /-pix_fmt rgb24/);
    assert.deepEqual((await readVideoPath(clip)).fps, 1);
    await assert.rejects(decodeWithFfmpeg(clip, 1e9), (err: Error) => err instanceof InvalidRequestError && /up to 120 frames a second/.test(err.message));
    process.env.OMNILMM_FFMPEG = join(scratch, 'no-such-ffmpeg');
    await assert.rejects(decodeWithFfmpeg(clip, 1), (err: Error) => err instanceof VideoError && /needs ffmpeg, which is not installed/.test(err.message));
  } finally {
    if (saved === undefined) delete process.env.OMNILMM_FFMPEG;
    else process.env.OMNILMM_FFMPEG = saved;
    rmSync(scratch, { recursive: true, force: true });
  }
});

test('a video file is read for the frames MiniCPM-V 4.6 keeps: one pass for a short clip, two for a long one', async () => {
  const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-ffmpeg-'));
  const saved = process.env.OMNILMM_FFMPEG;
  try {
    // A stand-in for ffmpeg: the clip file holds its frame count; frame i is one pixel whose RGB spells i (i >> 16,
    // i >> 8 & 255, i & 255); every run adds a line to runs.log.
    const fake = join(scratch, 'ffmpeg');
    writeFileSync(fake, `#!${process.execPath}
const fs = require('node:fs');
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(join(scratch, 'runs.log'))}, args.join(' ') + '\\n');
const count = Number(fs.readFileSync(args[args.indexOf('-i') + 1], 'utf8'));
const out = [];
for (let i = 0; i < count; i++) out.push(Buffer.from('P6\\n1 1\\n255\\n'), Buffer.from([i >> 16, (i >> 8) & 255, i & 255]));
process.stdout.write(Buffer.concat(out));
`);
    chmodSync(fake, 0o755);
    process.env.OMNILMM_FFMPEG = fake;
    const clip = (name: string, frames: number) => {
      const path = join(scratch, name);
      writeFileSync(path, String(frames));
      return path;
    };
    const runs = () => readFileSync(join(scratch, 'runs.log'), 'utf8').trim().split('\n').length;
    const labels = (frames: readonly RgbImage[]) => frames.map(({ data }) => (data[0]! << 16) | (data[1]! << 8) | data[2]!);
    const config = loadModelConfig(fixturePath('minicpmv46-tiny', 'model'));
    const pickFrames = familyOf(config).videoFramePicker!(config, {});

    // An hour at 1 fps: 3600 frames, 10 800 bytes of pixels, over a 1000-byte limit when every frame is held.
    const hour = clip('hour.mp4', 3600);
    await assert.rejects(decodeWithFfmpeg(hour, 1, { maxBytes: 1000 }), (err: Error) => err instanceof VideoError && /hold more than 1\.0 kB/.test(err.message));
    rmSync(join(scratch, 'runs.log'));
    const long = await readVideoPath(hour, { pickFrames, maxBytes: 1000 });
    // 3600 s > max_num_frames (128): a timestamp every 0.1 s, 36 000 of them, the j-th at frame int(j / 10); of those,
    // np.linspace(0, 35999, 128, dtype=int) keeps j = int(i · 35999 / 127) for i = 0 … 127 (35999 / 127 = 283.46…):
    // i = 1 → j 283 → frame 28, i = 2 → 566 → 56, i = 64 → 18141 → 1814, i = 126 → 35715 → 3571, i = 127 → 3599.
    const expected = Array.from({ length: 128 }, (_, i) => Math.floor(Math.floor((i * 35999) / 127) / 10));
    assert.deepEqual([0, 1, 2, 64, 126, 127].map((i) => expected[i]), [0, 28, 56, 1814, 3571, 3599]);
    assert.equal(long.fps, 1);
    assert.deepEqual(long.picked, { frameCount: 3600, indices: expected });
    assert.deepEqual(labels(long.frames), expected);
    assert.equal(runs(), 2, 'a first pass to count the frames, a second to keep the sampled ones');
    // The limit applies to the frames kept: 128 · 3 bytes.
    await assert.rejects(readVideoPath(hour, { pickFrames, maxBytes: 383 }), /hold more than 383 B of pixels/);

    // 5 s at 1 fps: every frame, in one pass.
    rmSync(join(scratch, 'runs.log'));
    const short = await readVideoPath(clip('short.mp4', 5), { pickFrames });
    assert.deepEqual(short.picked, { frameCount: 5, indices: [0, 1, 2, 3, 4] });
    assert.deepEqual(labels(short.frames), [0, 1, 2, 3, 4]);
    // 2.5 s at 8 fps: one frame per started second, int(i · 8) for i = 0, 1, 2; in the same pass, the others unheld.
    const quick = await readVideoPath(clip('quick.mp4', 20), { fps: 8, pickFrames });
    assert.deepEqual(quick.picked, { frameCount: 20, indices: [0, 8, 16] });
    assert.deepEqual(labels(quick.frames), [0, 8, 16]);
    assert.equal(runs(), 2, 'one run for each short clip');
    // Without a picker every frame is held.
    assert.deepEqual(labels((await decodeWithFfmpeg(clip('five.mp4', 5), 1)).frames), [0, 1, 2, 3, 4]);
  } finally {
    if (saved === undefined) delete process.env.OMNILMM_FFMPEG;
    else process.env.OMNILMM_FFMPEG = saved;
    rmSync(scratch, { recursive: true, force: true });
  }
});

test('a folder of frames is read for the frames MiniCPM-V 4.6 keeps only', async () => {
  const folder = fixturePath('minicpmv46-tiny', 'images', 'video_bars_96x72');
  const names = readdirSync(folder).sort();
  const config = loadModelConfig(fixturePath('minicpmv46-tiny', 'model'));
  const video = await readVideoPath(folder, { fps: 8, pickFrames: familyOf(config).videoFramePicker!(config, {}) });
  // 20 frames at 8 fps (2.5 s): frames int(i · 8) for i = 0, 1, 2 (the fixture's video_16x keeps [0, 8, 16]).
  assert.deepEqual(video.picked, { frameCount: 20, indices: [0, 8, 16] });
  assert.equal(video.frames.length, 3);
  for (const [i, index] of [0, 8, 16].entries()) {
    assert.deepEqual(video.frames[i]!.data, (await decodeImage(readFileSync(join(folder, names[index]!)))).data, names[index]);
  }
});

test('with `shared`, a video folder\'s or file\'s frames are held in shared memory: posted to a thread, they are not copied', async () => {
  const folder = fixturePath('minicpmv46-tiny', 'images', 'video_bars_96x72');
  const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-ffmpeg-'));
  const saved = process.env.OMNILMM_FFMPEG;
  const { port1, port2 } = new MessageChannel();
  try {
    // A stand-in for ffmpeg that prints two 1×1 frames.
    const fake = join(scratch, 'ffmpeg');
    writeFileSync(fake, `#!/bin/sh\nprintf 'P6\\n1 1\\n255\\n\\001\\002\\003P6\\n1 1\\n255\\n\\004\\005\\006'\n`);
    chmodSync(fake, 0o755);
    const clip = join(scratch, 'clip.mp4');
    writeFileSync(clip, 'not really a video');
    process.env.OMNILMM_FFMPEG = fake;
    for (const path of [folder, clip]) {
      const plain = await readVideoPath(path, { fps: 8 });
      const shared = await readVideoPath(path, { fps: 8, shared: true });
      assert.deepEqual(shared.frames.map((f) => [f.width, f.height, Buffer.from(f.data).toString('hex')]), plain.frames.map((f) => [f.width, f.height, Buffer.from(f.data).toString('hex')]));
      assert.ok(shared.frames.every((f) => f.data.buffer instanceof SharedArrayBuffer), path);
      assert.ok(!(plain.frames[0]!.data.buffer instanceof SharedArrayBuffer));
      // What postMessage delivers to the other side (the engine's worker thread) writes into the same pixels.
      port1.postMessage(shared.frames[0]);
      const [received] = (await once(port2, 'message')) as [RgbImage];
      received.data[0] ^= 0xff;
      assert.equal(shared.frames[0]!.data[0], plain.frames[0]!.data[0]! ^ 0xff, path);
    }
  } finally {
    port1.close();
    if (saved === undefined) delete process.env.OMNILMM_FFMPEG;
    else process.env.OMNILMM_FFMPEG = saved;
    rmSync(scratch, { recursive: true, force: true });
  }
});

/** Answers written by hand, with the split the official chat template makes of such an assistant message. */
const REASONING_CASES: { answer: string; thinking: boolean; reasoning: string | null; content: string }[] = [
  { answer: '<think>\nI look at the colours.\n</think>\n\nIt is red.', thinking: false, reasoning: 'I look at the colours.', content: 'It is red.' },
  { answer: 'The sky is clear.\n</think>\n\nBlue.', thinking: true, reasoning: 'The sky is clear.', content: 'Blue.' },
  { answer: '先看颜色。</think>\n红色。', thinking: true, reasoning: '先看颜色。', content: '红色。' },
  { answer: 'Blue.', thinking: false, reasoning: null, content: 'Blue.' },
  { answer: 'A </think> B', thinking: false, reasoning: null, content: 'A </think> B' },
  { answer: 'Still weighing the', thinking: true, reasoning: 'Still weighing the', content: '' },
  { answer: '\n</think>\n\nShort.', thinking: true, reasoning: '', content: 'Short.' },
  { answer: '<think>a  \n</think>b </think> c', thinking: false, reasoning: 'a', content: 'b </think> c' },
  { answer: '<thi', thinking: false, reasoning: null, content: '<thi' },
  { answer: 'x </thi', thinking: true, reasoning: 'x </thi', content: '' },
];

test('splitReasoning: the think part apart from the content', () => {
  for (const c of REASONING_CASES) {
    assert.deepEqual(splitReasoning(c.answer, c.thinking), { reasoning: c.reasoning, content: c.content }, JSON.stringify(c.answer));
  }
});

test('ReasoningStream: the deltas add up to the same split, wherever the chunks break', () => {
  for (const c of REASONING_CASES) {
    const cuts = [[...c.answer].map((_, i) => i), [], [1, 5], [3, 9, 14], [c.answer.length - 2]];
    for (const at of cuts) {
      const stream = new ReasoningStream(c.thinking);
      let reasoning = '';
      let content = '';
      const bounds = [0, ...at.filter((i) => i > 0 && i < c.answer.length), c.answer.length];
      for (let k = 0; k + 1 < bounds.length; k++) {
        const delta = stream.push(c.answer.slice(bounds[k], bounds[k + 1]));
        reasoning += delta.reasoning;
        content += delta.content;
      }
      const rest = stream.flush();
      reasoning += rest.reasoning;
      content += rest.content;
      assert.deepEqual({ reasoning, content }, { reasoning: c.reasoning ?? '', content: c.content }, `${JSON.stringify(c.answer)} cut at ${at}`);
    }
  }
});
