// What the Node bench (bench.ts) and the browser bench (bench-web.ts) feed the model, so their figures compare.

import { readFileSync } from 'node:fs';
import type { RgbImage } from '../src/image/index.js';

/** Prompt tokens of the timed chat turn: a question repeated until the prompt reaches this length. */
export const PREFILL_TOKENS = 512;
export const QUESTION = 'What is in the picture? Describe every object, its colour and where it is.';

/** A size×size image: the given file resized (sharp), or a colour gradient with a grid of lines. */
export async function benchImage(file: string | undefined, size: number): Promise<RgbImage> {
  if (file) {
    const { default: sharp } = await import('sharp');
    const data = await sharp(readFileSync(file)).resize(size, size, { fit: 'fill' }).removeAlpha().raw().toBuffer();
    return { width: size, height: size, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  }
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const line = x % 64 === 0 || y % 64 === 0 ? 255 : 0;
      data.set([(x * 255) / size, (y * 255) / size, line], (y * size + x) * 3);
    }
  }
  return { width: size, height: size, data };
}
