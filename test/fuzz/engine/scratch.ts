// A scratch folder per process for targets whose parser reads files: the input is written there before each run.
// The fuzzer puts it in memory (/dev/shm through OMNILMM_FUZZ_SCRATCH): rewriting a file on ext4 costs milliseconds.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let folder: string | null = null;

/** This process's scratch folder (removed when the process exits). */
export function scratchDir(): string {
  if (folder === null) {
    const dir = mkdtempSync(join(process.env.OMNILMM_FUZZ_SCRATCH ?? tmpdir(), 'omnilmm-fuzz-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    folder = dir;
  }
  return folder;
}

/** Writes `data` to `name` inside the scratch folder (or a subfolder of it) and returns the path. */
export function writeScratch(name: string, data: Uint8Array): string {
  const path = join(scratchDir(), name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, data);
  return path;
}
