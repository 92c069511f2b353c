// Driving the built CLI in a subprocess, as the test/cli*.test.ts files do: running it, the clean failure every bad
// input gets, the tiny MiniCPM-V 2.0 fixture it runs, and a scratch folder per test file (removed after its tests).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { promisify } from 'node:util';
import { fixturePath, repoRoot } from './fixtures.js';

export const FIXTURE = 'minicpmv2-tiny';
export const MODEL = fixturePath(FIXTURE, 'model');
export const IMAGE = fixturePath(FIXTURE, 'images', 'grad_100x80.png');
export const CLI = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

/** What the test file writes, and the CLI's empty Hugging Face home: one folder per test file, removed after its tests. */
export const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-cli-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

export interface Outcome { code: number; stdout: string; stderr: string }

export async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Outcome> {
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
export function assertCleanError(out: Outcome, pattern: RegExp): void {
  assert.notEqual(out.code, 0, `expected a failure, got stdout ${out.stdout}`);
  assert.match(out.stderr, /^error: /);
  assert.match(out.stderr, pattern);
  assert.doesNotMatch(out.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(out.stdout, '');
}

/** A writable copy of a fixture checkpoint (default MiniCPM-V 2.0's), to break or change in one way. */
export function copyModel(name: string, from = MODEL): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(from)) copyFileSync(join(from, f), join(dir, f));
  return dir;
}

export type GreedyChat = { msgs: { content: string }[]; input: { file: string }; input_ids: number[]; runs: Record<string, { new_token_ids: number[] }> };
