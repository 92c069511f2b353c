// The fuzzing loop, run in a child process that scripts/fuzz.ts supervises: load the seed and working corpora,
// then mutate, run, keep inputs that reach new coverage, and record findings with their reproducer. The input
// being run is always also in `current-input` (a u32 length, then the bytes; never truncated, which is slow on
// ext4), so the supervisor can save it when the child hangs or dies.

import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { CounterCoverage, ModuleCoverage } from './counters.js';
import { mutateJson } from './json-mutate.js';
import { mutateStacked } from './mutate.js';
import { Rng } from './target.js';
import { loadTarget } from '../targets/index.js';

export interface LoopConfig {
  target: string;
  seconds: number;
  seed: number;
  /** Committed seeds (read only). */
  seedDir: string;
  /** Working folder: corpus/ (inputs that found new coverage), findings/, current-input. */
  outDir: string;
  /** An input slower than this is a finding (a hang is caught by the supervisor). */
  slowMs: number;
  /** A single Buffer allocation above this many bytes is a finding. */
  maxAllocBytes: number;
  /** An async run that has not settled after this long is a hang. */
  hangMs: number;
}

export interface LoopStats {
  execs: number;
  corpus: number;
  newEntries: number;
  features: number;
  findings: number;
  coverage: ModuleCoverage[];
}

export type ChildMessage =
  | { type: 'stats'; stats: LoopStats }
  | { type: 'finding'; kind: string; file: string; summary: string }
  | { type: 'done'; stats: LoopStats }
  | { type: 'unavailable'; why: string };

interface Entry {
  data: Uint8Array;
  name: string;
}

const send = (message: ChildMessage) => process.send?.(message);

export async function runFuzzLoop(config: LoopConfig, coverage: CounterCoverage): Promise<void> {
  const target = await loadTarget(config.target);
  const unavailable = (await target.unavailable?.()) ?? null;
  if (unavailable !== null) {
    send({ type: 'unavailable', why: unavailable });
    return;
  }
  const rng = new Rng(config.seed);
  const dictionary = (target.dictionary ?? []).map((d) => (typeof d === 'string' ? Buffer.from(d, 'utf8') : d));
  const maxLength = target.maxLength ?? 64 * 1024;
  const corpusDir = join(config.outDir, 'corpus');
  const findingsDir = join(config.outDir, 'findings');
  mkdirSync(corpusDir, { recursive: true });
  mkdirSync(findingsDir, { recursive: true });
  const current = openSync(join(config.outDir, 'current-input'), 'w');
  const lengthPrefix = Buffer.alloc(4);
  const allocations = watchAllocations();
  const corpus: Entry[] = [];
  const findingSignatures = new Set<string>();
  const stats = { execs: 0, newEntries: 0, findings: 0 };

  /** Runs one input; returns how many coverage features it showed first. */
  const execute = async (input: Uint8Array): Promise<number> => {
    lengthPrefix.writeUInt32LE(input.length, 0);
    writeSync(current, lengthPrefix, 0, 4, 0);
    writeSync(current, input, 0, input.length, 4);
    allocations.largest = 0;
    const started = performance.now();
    try {
      const result = target.run(input);
      if (result instanceof Promise) await withTimeout(result, config.hangMs);
    } catch (err) {
      record(input, err instanceof HangError ? 'hang' : 'error', err);
    }
    const elapsed = performance.now() - started;
    stats.execs++;
    if (elapsed > config.slowMs) record(input, 'slow', new Error(`one input took ${Math.round(elapsed)} ms`));
    if (allocations.largest > config.maxAllocBytes) {
      record(input, 'allocation', new Error(`one Buffer allocation of ${allocations.largest} bytes for an input of ${input.length} bytes`));
    }
    return coverage.take();
  };

  const record = (input: Uint8Array, kind: string, err: unknown): void => {
    const signature = `${kind}:${signatureOf(err)}`;
    if (findingSignatures.has(signature)) return;
    findingSignatures.add(signature);
    stats.findings++;
    const id = createHash('sha1').update(signature).digest('hex').slice(0, 10);
    const file = join(findingsDir, `${kind}-${id}`);
    writeFileSync(file, input);
    const detail = err instanceof Error ? `${err.stack ?? err.message}${err.cause ? `\ncause: ${String((err.cause as Error).stack ?? err.cause)}` : ''}` : String(err);
    writeFileSync(`${file}.txt`, `${kind} in target ${config.target}\n\n${detail}\n\nreproduce: npm run fuzz -- --target ${config.target} --replay ${file}\n`);
    send({ type: 'finding', kind, file, summary: (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).slice(0, 200) });
  };

  const addToCorpus = (data: Uint8Array, name: string, write: boolean): void => {
    corpus.push({ data, name });
    if (write) {
      writeFileSync(join(corpusDir, name), data);
      stats.newEntries++;
    }
  };

  const snapshot = (): LoopStats => ({
    ...stats, corpus: corpus.length, features: coverage.featureCount, coverage: coverage.summary(),
  });

  // 1. Seeds and the working corpus of earlier runs: each is kept when it adds coverage (seeds always).
  coverage.take();
  for (const [dir, always] of [[config.seedDir, true], [corpusDir, false]] as const) {
    for (const name of listFiles(dir)) {
      const data = new Uint8Array(readFileSync(join(dir, name)));
      if ((await execute(data)) > 0 || always) corpus.push({ data, name });
    }
  }
  if (corpus.length === 0) corpus.push({ data: new Uint8Array(0), name: 'empty' });

  // 2. Mutate, run, keep what reaches new coverage.
  const deadline = performance.now() + config.seconds * 1000;
  let nextReport = performance.now() + 5000;
  const others = () => corpus.map((e) => e.data);
  while (performance.now() < deadline) {
    const recent = corpus.length > 20 && rng.chance(0.3);
    const parent = recent ? corpus[corpus.length - 1 - rng.below(20)]! : rng.pick(corpus);
    let input: Uint8Array | null = null;
    if (rng.chance(0.4)) {
      try {
        input = target.mutate?.(parent.data, rng, dictionary) ?? mutateJson(parent.data, rng, dictionary);
      } catch {
        input = null; // a structure-aware mutator that cannot take this entry apart (too deep for structuredClone, …)
      }
    }
    if (input === null || rng.chance(0.2)) input = mutateStacked(input ?? parent.data, rng, dictionary, others(), maxLength);
    if ((await execute(input)) > 0) {
      addToCorpus(input, createHash('sha1').update(input).digest('hex').slice(0, 16), true);
    }
    if (performance.now() >= nextReport) {
      send({ type: 'stats', stats: snapshot() });
      nextReport = performance.now() + 5000;
    }
  }
  closeSync(current);
  send({ type: 'done', stats: snapshot() });
}

class HangError extends Error {}

async function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HangError(`the input did not finish within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Wraps Buffer's allocators to remember the largest single allocation of the current input. */
function watchAllocations(): { largest: number } {
  const watch = { largest: 0 };
  for (const method of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
    const original = Buffer[method] as (size: number, ...rest: unknown[]) => Buffer;
    (Buffer as unknown as Record<string, unknown>)[method] = (size: number, ...rest: unknown[]) => {
      if (size > watch.largest) watch.largest = size;
      return original.call(Buffer, size, ...rest);
    };
  }
  return watch;
}

/** Where a finding comes from: its error name and the first stack frame in our sources (numbers left out). */
function signatureOf(err: unknown): string {
  if (!(err instanceof Error)) return String(err).slice(0, 80);
  const frame = (err.stack ?? '').split('\n').find((line) => line.includes('/dist/src/')) ?? '';
  const where = frame.replace(/^.*\/dist\/src\//, '').replace(/\)$/, '');
  return `${err.name}@${where || err.message.replace(/\d+/g, 'N').slice(0, 80)}`;
}

function listFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((name) => !name.startsWith('.') && statSync(join(dir, name)).isFile()).sort();
  } catch {
    return [];
  }
}
