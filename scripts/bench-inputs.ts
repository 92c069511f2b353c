// What the Node bench (bench.ts) and the browser bench (bench-web.ts) feed the model, so their figures compare.

import { readFileSync } from 'node:fs';
import { argmax } from '../src/generation/processors.js';
import { InvalidRequestError } from '../src/errors.js';
import type { RgbImage } from '../src/image/index.js';
import type { PartsMessage, VideoFrames } from '../src/models/messages.js';
import type { LoadedModel } from '../src/models/registry.js';

/** Prompt tokens of the timed chat turn: a question repeated until the prompt reaches this length. */
export const PREFILL_TOKENS = 512;
export const QUESTION = 'What is in the picture? Describe every object, its colour and where it is.';

/** A size×size image: the given file resized (sharp), or syntheticImage. */
export async function benchImage(file: string | undefined, size: number): Promise<RgbImage> {
  if (file) {
    const { default: sharp } = await import('sharp');
    const data = await sharp(readFileSync(file)).resize(size, size, { fit: 'fill' }).removeAlpha().raw().toBuffer();
    return { width: size, height: size, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  }
  return syntheticImage(size, size);
}

/** A colour gradient with a grid of lines every 64 pixels, the grid moved `shift` pixels right and down. */
function syntheticImage(width: number, height: number, shift = 0): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const line = (x - shift) % 64 === 0 || (y - shift) % 64 === 0 ? 255 : 0;
      data.set([(x * 255) / width, (y * 255) / height, line], (y * width + x) * 3);
    }
  }
  return { width, height, data };
}

/** Frames of the bench's video clip. */
const VIDEO_FRAMES = 4;

/** The bench's video clip: VIDEO_FRAMES 640×480 syntheticImages taken one a second, the grid moving 8 pixels a frame. */
export function benchVideo(): VideoFrames {
  return { frames: Array.from({ length: VIDEO_FRAMES }, (_, i) => syntheticImage(640, 480, 8 * i)), fps: 1 };
}

/** The prompt of a question about `video`, or null for a family that takes no video. */
export function videoPrompt(model: LoadedModel, video: VideoFrames): Prompt | null {
  const messages: PartsMessage[] = [{ role: 'user', content: [{ type: 'video' }, { type: 'text', text: 'What happens in the video?' }] }];
  try {
    return model.prepare({ messages, images: [], video, thinking: false });
  } catch (err) {
    if (err instanceof InvalidRequestError) return null;
    throw err;
  }
}

/** `lead`, then QUESTION repeated until `tokensOf(text)` (the prompt it makes) reaches `tokens`. */
export function longQuestion(tokensOf: (text: string) => number, tokens = PREFILL_TOKENS, lead = ''): { text: string; tokens: number } {
  for (let copies = 1; ; copies++) {
    const text = lead + Array.from({ length: copies }, () => QUESTION).join(' ');
    const count = tokensOf(text);
    if (count >= tokens) return { text, tokens: count };
  }
}

/**
 * A text prompt of at least `tokens` tokens through the decoder (by default llama-bench's pp512): a longPrompt
 * after `lead`. Returns the tokens it ran (those not reused from the cache) and the seconds.
 */
export async function timeTextPrefill(model: LoadedModel, lead = '', tokens = PREFILL_TOKENS): Promise<{ tokens: number; seconds: number }> {
  const prompt = longPrompt(model, tokens, null, lead);
  const sequence = await model.startPrompt(prompt);
  const start = performance.now();
  await sequence.prefill();
  return { tokens: prompt.ids.length - sequence.reusedLength, seconds: (performance.now() - start) / 1000 };
}

type Prompt = ReturnType<LoadedModel['prepare']>;

/** A chat prompt of at least `tokens` tokens: `lead`, then QUESTION repeated, about `image` where one is given. */
export function longPrompt(model: LoadedModel, tokens: number, image: RgbImage | null = null, lead = ''): Prompt {
  const prepare = (text: string) => model.prepare([{ role: 'user', content: text }], image);
  return prepare(longQuestion((text) => prepare(text).ids.length, tokens, lead).text);
}

/** The prompt before decode steps at `depth`: a one-word question for 0 (decode from an empty context), else a longPrompt. */
export function depthPrompt(model: LoadedModel, depth: number, image: RgbImage | null = null): Prompt {
  return depth === 0 ? model.prepare([{ role: 'user', content: 'Hello' }], null) : longPrompt(model, depth, image);
}

/** Seconds of `steps` greedy steps after `prompt` (its prefill and `warmup` steps before them not timed). */
export async function timeDecode(model: LoadedModel, prompt: Prompt, steps: number, warmup = 0): Promise<number> {
  const sequence = await model.startPrompt(prompt);
  let logits = await sequence.prefill();
  for (let k = 0; k < warmup; k++) logits = (await sequence.step([argmax(logits)]))[0]!;
  const start = performance.now();
  for (let k = 0; k < steps; k++) logits = (await sequence.step([argmax(logits)]))[0]!;
  return (performance.now() - start) / 1000;
}
