// What bounds a decode step on this CPU, one kind of kernel at a time, beside the memory's own rate:
//
//   node dist/scripts/decode-microbench.js [--threads 2] [--rounds 5]
//
// - memcpy: STREAM's copy on `threads` workers (bandwidth.ts), the ceiling of any kernel that streams weights;
// - MatMulNBits int4 (block 128, accuracy_level 4: what --precision int4 builds) at one row, as a chain over
//   MiniCPM-2.4B's shapes: 10 up/down pairs of the MLP (2304 → 5760 → 2304) and 60 square attention projections
//   (2304 → 2304), distinct weights far beyond the caches; the GB/s of weights each reads; and one 14336 → 4096
//   weight run 100 times, the shape of llama.cpp's `test-backend-ops perf -o MUL_MAT` (q4_0, n = 1) for comparison;
// - one small kernel: a chain of 1000 Adds of a [1, 2304] row, the size of the norms, rotary, reshapes and residual
//   adds that make up most of a decode step's kernels (scripts/profile-decode.ts counts them): µs per kernel.
// The three run interleaved round by round, so a busy machine disturbs them alike; each figure is the median over
// rounds, and the CPU other processes took is printed.

import { parseArgs } from 'node:util';
import { NodeGraphSession, type HostTensor } from '../src/runtime/session.js';
import { copyBandwidth } from './bandwidth.js';
import { showLoad, startPhase } from './cpu-load.js';
import { FFN, HIDDEN, linearChain, median, mlpShapes, randomMatrix, SMALL_KERNELS, smallKernelChain } from './kernel-chains.js';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '2' }, rounds: { type: 'string', default: '5' } } });
const threads = Number(values.threads);
const rounds = Number(values.rounds);
const RUNS_PER_ROUND = 5;
/** The shape of llama.cpp's `test-backend-ops perf -o MUL_MAT` case with n = 1 (m = 4096, k = 14336): its matching kernel. */
const GGML_M = 4096;
const GGML_K = 14336;

async function main(): Promise<void> {
  const mlp = linearChain('nbits-int4', mlpShapes(10));
  const attn = linearChain('nbits-int4', Array.from({ length: 60 }, (): [number, number] => [HIDDEN, HIDDEN]));
  const ggmlShape = linearChain('nbits-int4', [[GGML_M, GGML_K]], GGML_K);
  const sessions = {
    mlp: await NodeGraphSession.create('mlp chain', mlp.graph.serialize(), { threads }),
    attn: await NodeGraphSession.create('attention chain', attn.graph.serialize(), { threads }),
    small: await NodeGraphSession.create('small kernels', smallKernelChain().serialize(), { threads }),
    ggml: await NodeGraphSession.create('test-backend-ops shape', ggmlShape.graph.serialize(), { threads }),
  };
  const feeds: Record<string, HostTensor> = { x: { type: 'float32', data: randomMatrix(HIDDEN, 3), dims: [1, HIDDEN] } };
  const ggmlFeeds: Record<string, HostTensor> = { x: { type: 'float32', data: randomMatrix(GGML_K, 3), dims: [1, GGML_K] } };
  const timeRun = async (session: NodeGraphSession, runs = RUNS_PER_ROUND, input = feeds) => {
    await session.run(input);
    const start = performance.now();
    for (let r = 0; r < runs; r++) await session.run(input);
    return (performance.now() - start) / runs;
  };
  const times = { copy: [] as number[], mlp: [] as number[], attn: [] as number[], small: [] as number[], ggml: [] as number[] };
  const end = startPhase();
  for (let r = 0; r < rounds; r++) {
    times.copy.push(await copyBandwidth(threads));
    times.mlp.push(await timeRun(sessions.mlp));
    times.attn.push(await timeRun(sessions.attn));
    times.small.push(await timeRun(sessions.small));
    times.ggml.push(await timeRun(sessions.ggml, 100, ggmlFeeds));
  }
  const load = end();
  await Promise.all(Object.values(sessions).map((s) => s.release()));
  const rate = (bytes: number, ms: number) => bytes / 1e6 / ms;
  const rows = [
    ['memcpy, read + written', `${median(times.copy).toFixed(1)} GB/s`],
    [`MatMulNBits int4, 1 row, MLP ${HIDDEN}↔${FFN} (${(mlp.bytes / 1e6).toFixed(0)} MB)`, `${rate(mlp.bytes, median(times.mlp)).toFixed(1)} GB/s (${(median(times.mlp) / mlp.layers).toFixed(3)} ms each)`],
    [`MatMulNBits int4, 1 row, ${HIDDEN}→${HIDDEN} (${(attn.bytes / 1e6).toFixed(0)} MB)`, `${rate(attn.bytes, median(times.attn)).toFixed(1)} GB/s (${(median(times.attn) / attn.layers).toFixed(3)} ms each)`],
    [`MatMulNBits int4, 1 row, ${GGML_K}→${GGML_M}, one weight run 100 times (${(ggmlShape.bytes / 1e6).toFixed(0)} MB)`, `${rate(ggmlShape.bytes, median(times.ggml)).toFixed(1)} GB/s (${median(times.ggml).toFixed(3)} ms)`],
    [`Add of a [1, ${HIDDEN}] row, ${SMALL_KERNELS} chained`, `${((1000 * median(times.small)) / SMALL_KERNELS).toFixed(2)} µs per kernel`],
  ];
  process.stdout.write(`${threads} threads, median of ${rounds} rounds; others took ${showLoad(load)}\n`);
  process.stdout.write(`| kernel | rate |\n|---|---|\n${rows.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`decode-microbench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
