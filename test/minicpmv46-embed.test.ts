// MiniCPM-V 4.6's prompt embeddings on the minicpmv46-tiny fixture: every visual chat's against the official
// inputs_embeds, each slice's vision rows let go once written.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { toChatInput } from '../src/chat/chat-input.js';
import { decodeImage } from '../src/image/index.js';
import type { MiniCPMV46Model } from '../src/models/minicpmv46/model.js';
import { familyOf, loadModelConfig } from '../src/models/registry.js';
import { fixturePath, openGolden, readFixtureJson } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv46-tiny';
const MODEL = fixturePath(FIXTURE, 'model');

interface ChatCase {
  messages: { role: string; content: unknown }[];
  chat_template_kwargs: { enable_thinking?: boolean };
  downsample_mode: '16x' | '4x';
  input_ids: number[];
  images: { file: string }[];
  video: { frames: string[]; video_metadata: { fps: number }; processor_kwargs: Record<string, number | boolean> } | null;
}

const chat = (name: string) => readFixtureJson<ChatCase>(FIXTURE, 'llm', `${name}.json`);
/** A video case's processor kwargs (the model card's video settings), as a request gives them. */
const videoOptionsOf = (c: ChatCase) => ({
  maxNumFrames: c.video!.processor_kwargs['max_num_frames'] as number,
  stackFrames: c.video!.processor_kwargs['stack_frames'] as number,
  maxSliceNums: c.video!.processor_kwargs['max_slice_nums'] as number,
  useImageId: c.video!.processor_kwargs['use_image_id'] as boolean,
});

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
