// This machine's memory bandwidth as STREAM's copy kernel measures it, for the benches' bounds (bench.ts,
// decode-microbench.ts).

import { Worker } from 'node:worker_threads';

const COPY_ELEMENTS = 32 * 1024 * 1024;
const COPY_PASSES = 5;

/**
 * The bandwidth probe run in each worker: STREAM's "copy" kernel done by memcpy (Buffer.copy), because a JavaScript
 * loop is bound by its own instructions, not by memory (a JS triad read ~9 GB/s where memcpy reads ~35 GB/s). It
 * waits on the shared gate, then times its passes.
 */
const COPY_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { n, passes, gate } = workerData;
const a = Buffer.alloc(n * 8), b = Buffer.alloc(n * 8, 1);
b.copy(a);
const flag = new Int32Array(gate);
Atomics.add(flag, 1, 1);
Atomics.wait(flag, 0, 0);
const times = [];
for (let p = 0; p < passes; p++) {
  const t = process.hrtime.bigint();
  b.copy(a);
  times.push(Number(process.hrtime.bigint() - t) / 1e9);
  Atomics.add(flag, 2, 1);
  while (Atomics.load(flag, 2) < (p + 1) * workerData.threads) {}
}
parentPort.postMessage({ times, check: a[a.length - 1] });
`;

/** GB/s of the copy on `threads` workers: per pass, all workers' bytes (read + write) over the slowest worker's time. */
export async function copyBandwidth(threads: number): Promise<number> {
  const gate = new SharedArrayBuffer(12);
  const flag = new Int32Array(gate);
  const workers = Array.from({ length: threads }, () =>
    new Worker(COPY_WORKER, { eval: true, workerData: { n: COPY_ELEMENTS, passes: COPY_PASSES, gate, threads: threads } }));
  const results = workers.map((w) => new Promise<{ times: number[] }>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  }));
  while (Atomics.load(flag, 1) < threads) await new Promise((resolve) => setTimeout(resolve, 5));
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
  const times = (await Promise.all(results)).map((r) => r.times);
  await Promise.all(workers.map((w) => w.terminate()));
  const bytesPerPass = threads * COPY_ELEMENTS * 8 * 2;
  const best = Math.min(...Array.from({ length: COPY_PASSES }, (_, p) => Math.max(...times.map((t) => t[p]!))));
  return bytesPerPass / best / 1e9;
}
