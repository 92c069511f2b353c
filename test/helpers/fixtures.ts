// Paths and readers for the golden fixtures copied verbatim from ../shared/fixtures into test/fixtures.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../src/checkpoint/safetensors.js';
import type { DecodingSettings } from '../../src/chat/decoding.js';

/** The repository root (tests run from dist/test/..., fixtures live in test/fixtures). */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export function fixturePath(fixture: string, ...parts: string[]): string {
  return join(repoRoot, 'test', 'fixtures', fixture, ...parts);
}

export function readFixtureJson<T = unknown>(fixture: string, ...parts: string[]): T {
  return JSON.parse(readFileSync(fixturePath(fixture, ...parts), 'utf8')) as T;
}

/** Opens a golden .safetensors file of a fixture (caller closes it). */
export function openGolden(fixture: string, ...parts: string[]): SafetensorsFile {
  return new SafetensorsFile(fixturePath(fixture, ...parts));
}

/** Every tensor of a golden .safetensors file of a fixture, as float32. */
export function readGoldenTensors(fixture: string, ...parts: string[]): Record<string, Float32Array> {
  const file = openGolden(fixture, ...parts);
  try {
    return Object.fromEntries([...file.tensors.keys()].map((name) => [name, file.float32(name)]));
  } finally {
    file.close();
  }
}

/** Largest absolute difference between two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/**
 * Our decoding settings for a fixture run recorded without sampling (chat(sampling=False, **kw) or
 * generate(do_sample=False, …)): one beam is greedy, more is beam search; the penalty and length as recorded.
 */
export function nonSamplingSettings(k: { num_beams?: number; repetition_penalty?: number; max_new_tokens: number }): DecodingSettings {
  return k.num_beams === 1
    ? { decoding: 'greedy', repetitionPenalty: k.repetition_penalty, maxNewTokens: k.max_new_tokens }
    : { decoding: 'beam', numBeams: k.num_beams, repetitionPenalty: k.repetition_penalty, maxNewTokens: k.max_new_tokens };
}
