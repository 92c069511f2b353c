// MiniCPM-V 4.6's prompt embeddings on the minicpmv46-tiny fixture: every visual chat's against the official
// inputs_embeds, each slice's vision rows let go once written; and the prompt-reuse key of a video read once and sent
// with every turn, which is hashed when it is read, not on every turn (in this thread or in a WorkerEngine's).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { toChatInput } from '../src/chat/chat-input.js';
import { readVideoPath } from '../src/chat/media-source.js';
import { WorkerEngine } from '../src/chat/worker-engine.js';
import { InvalidRequestError } from '../src/errors.js';
import { decodeImage, type RgbImage } from '../src/image/index.js';
import type { MiniCPMV46Model } from '../src/models/minicpmv46/model.js';
import { familyOf, loadModelConfig } from '../src/models/registry.js';
import { installSha256Digest, rememberImageKey, rememberedImageKey } from '../src/sha256.js';
import { fixturePath, openGolden } from './helpers/fixtures.js';
import { chatCase, videoOptionsOf } from './helpers/minicpmv46-chats.js';

const FIXTURE = 'minicpmv46-tiny';
const MODEL = fixturePath(FIXTURE, 'model');
const VIDEO_FOLDER = fixturePath(FIXTURE, 'images', 'video_bars_96x72');
const VIDEO_PAD = 3013;

const chat = chatCase;
const videoCase = chat('video_16x');
const videoOptions = videoOptionsOf(videoCase);

/** SHA-256 of `<width>x<height>:` and the pixels, by node:crypto: the prompt-reuse key of a picture. */
const digestOf = (image: RgbImage) => createHash('sha256').update(`${image.width}x${image.height}:`).update(image.data).digest('hex');

/** Counts the pixel arrays imageKey's digest (node:crypto's, as Node installs it) takes in, until `stop`. */
function countHashedPixels(): { arrays: Uint8Array[]; stop(): void } {
  const arrays: Uint8Array[] = [];
  const installed = installSha256Digest((pieces) => {
    for (const piece of pieces) if (typeof piece !== 'string') arrays.push(piece);
    return installed(pieces);
  });
  return { arrays, stop: () => void installSha256Digest(installed) };
}

let model: MiniCPMV46Model;
before(async () => {
  const config = loadModelConfig(MODEL);
  model = await familyOf(config).load(MODEL, config, { threads: 1, precision: 'fp32', visionPrecision: 'fp32' }) as unknown as MiniCPMV46Model;
});
after(async () => model.release());

test('every visual chat\'s prompt embeddings are the official inputs_embeds (image slices and video frames scattered in place)', async (t) => {
  for (const name of ['single_image_grad', 'multi_image_uniform', 'multi_turn_system', 'long_prompt_hk_4x', 'mixed_grid_16x', 'mixed_grid_two_images_16x', 'eos_stop', 'video_16x']) {
    const c = chat(name);
    const images = await Promise.all(c.images.map((image) => decodeImage(readFileSync(fixturePath(FIXTURE, image.file)))));
    const video = c.video && {
      ...videoOptionsOf(c),
      frames: await Promise.all(c.video.frames.map((frame) => decodeImage(readFileSync(fixturePath(FIXTURE, frame))))),
      fps: c.video.video_metadata.fps,
    };
    const input = toChatInput(c.messages as never, { images, video, downsampleMode: c.downsample_mode, thinking: c.chat_template_kwargs.enable_thinking ?? false });
    const prompt = model.prepare(input);
    assert.deepEqual(prompt.ids, c.input_ids, name);
    const ours = await model.embed(prompt);
    const golden = openGolden(FIXTURE, 'llm', `${name}.safetensors`);
    const official = golden.float32('inputs_embeds');
    golden.close();
    assert.equal(ours.length, official.length, name);
    let worst = 0;
    for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - official[i]!) / Math.max(1, Math.abs(official[i]!)));
    t.diagnostic(`${name}: ${c.input_ids.length} positions within ${worst.toExponential(2)}·max(1, |x|)`);
    // Fixture README §5: inputs_embeds abs 1e-4·max(1, |x|).
    assert.ok(worst <= 1e-4, `${name}: inputs_embeds differ by ${worst}·max(1, |x|)`);
  }
});

test('a prompt holds no slice\'s vision rows once they are written into its embeddings', async () => {
  setFlagsFromString('--expose-gc');
  const collectGarbage = runInNewContext('gc') as () => void;
  const c = chat('mixed_grid_two_images_16x');
  const images = await Promise.all(c.images.map((image) => decodeImage(readFileSync(fixturePath(FIXTURE, image.file)))));
  const prompt = model.prepare(toChatInput(c.messages as never, { images, downsampleMode: c.downsample_mode }));
  // Each slice's rows, as the vision encoder's run (a private part of the model) returns them.
  const vision = (model as unknown as { vision: { run: (...args: unknown[]) => Promise<{ imageFeatures: Float32Array }> } }).vision;
  const run = vision.run.bind(vision);
  const rows: WeakRef<Float32Array>[] = [];
  vision.run = async (...args) => {
    const out = await run(...args);
    rows.push(new WeakRef(out.imageFeatures));
    return out;
  };
  const heldBeforeRuns: number[] = [];
  try {
    // Before each slice's run (after a turn of the event loop, so that no job keeps a WeakRef's target), the rows
    // of the slices before it that are still reachable.
    await model.embed(prompt, 0, async () => {
      await new Promise((resolve) => setImmediate(resolve));
      collectGarbage();
      heldBeforeRuns.push(rows.filter((ref) => ref.deref() !== undefined).length);
    });
  } finally {
    delete (vision as { run?: unknown }).run;
  }
  assert.ok(rows.length >= 3, `${rows.length} slices`);
  assert.deepEqual(heldBeforeRuns, rows.map(() => 0));
});

test('a video read with `shared` is hashed as it is read: two turns about it hash no pixel again and reuse the first\'s rows; other pixels are hashed', async () => {
  const read = await readVideoPath(VIDEO_FOLDER, { fps: videoCase.video!.video_metadata.fps, pickFrames: model.videoFramePicker!(videoOptions), shared: true });
  assert.deepEqual(read.picked?.indices, [0, 8, 16]);
  // The keys noted at reading are the SHA-256 of each frame's size and pixels.
  assert.deepEqual(read.frames.map((frame) => rememberedImageKey(frame)), read.frames.map(digestOf));
  const inputOf = (frames: readonly RgbImage[]) => toChatInput(videoCase.messages as never, {
    video: { ...videoOptions, frames, fps: read.fps, picked: read.picked! },
    downsampleMode: videoCase.downsample_mode,
  });
  const hashed = countHashedPixels();
  try {
    const first = model.prepare(inputOf(read.frames));
    assert.deepEqual(first.ids, videoCase.input_ids);
    const sequence = await model.startPrompt(first);
    const logits = await sequence.prefill();
    assert.equal(logits.indexOf(Math.max(...logits)), videoCase.runs.greedy.new_token_ids[0], 'the official first greedy token');
    const second = model.prepare(inputOf(read.frames));
    const resumed = await model.startPrompt(second);
    assert.ok(resumed.reusedLength > videoCase.input_ids.lastIndexOf(VIDEO_PAD), `reused ${resumed.reusedLength} positions`);
    assert.equal(hashed.arrays.length, 0, 'no pixel hashed on either turn');

    // The same pixels in arrays the library did not read: hashed on every turn, to the same key.
    const copies = read.frames.map((frame) => ({ ...frame, data: frame.data.slice() }));
    const copied = model.prepare(inputOf(copies));
    assert.deepEqual(hashed.arrays, copies.map((frame) => frame.data));
    assert.equal(copied.visualKey, first.visualKey);
    // One pixel changed: another key, and the cached rows are not reused.
    copies[1]!.data[5]! ^= 0x40;
    const changed = model.prepare(inputOf(copies));
    assert.equal(hashed.arrays.length, 2 * copies.length);
    assert.notEqual(changed.visualKey, first.visualKey);
    const restarted = await model.startPrompt(changed);
    assert.ok(restarted.reusedLength <= videoCase.input_ids.indexOf(VIDEO_PAD), `reused ${restarted.reusedLength} positions of another video`);
  } finally {
    hashed.stop();
  }
});

test('WorkerEngine sends the keys of a `shared` video\'s frames with them, and its thread takes them instead of hashing', async () => {
  const read = await readVideoPath(VIDEO_FOLDER, { fps: videoCase.video!.video_metadata.fps, pickFrames: model.videoFramePicker!(videoOptions), shared: true });
  const engine = await WorkerEngine.start(MODEL, { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
  try {
    const request = (frames: readonly RgbImage[]) => ({
      messages: videoCase.messages as never,
      video: { ...videoOptions, frames, fps: read.fps, picked: read.picked! },
      downsampleMode: videoCase.downsample_mode,
      decoding: 'greedy' as const,
      maxNewTokens: 1,
    });
    // Frames that are not a list are the worker's to refuse.
    await assert.rejects(drain(engine.stream({ ...request(read.frames), video: { frames: 'frames' as never } })), InvalidRequestError);
    const first = await drain(engine.stream(request(read.frames)));
    assert.deepEqual(first.outputIds, videoCase.runs.greedy.new_token_ids.slice(0, 1), 'the official first greedy token');
    // Other pixels, noted under the first frames' keys (a lie only the test tells): the worker thread, taking the
    // keys sent along instead of hashing the pixels, reuses the first video's rows.
    const others = read.frames.map((frame) => ({ ...frame, data: frame.data.map((v) => 255 - v) }));
    others.forEach((frame, i) => rememberImageKey(frame, rememberedImageKey(read.frames[i]!)!));
    const second = await drain(engine.stream(request(others)));
    assert.ok(second.cachedTokens > videoCase.input_ids.lastIndexOf(VIDEO_PAD), `reused ${second.cachedTokens} positions`);
  } finally {
    await engine.close();
  }
});

async function drain<T>(stream: AsyncGenerator<string, T, undefined>): Promise<T> {
  for (;;) {
    const next = await stream.next();
    if (next.done) return next.value;
  }
}
