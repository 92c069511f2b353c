// One decoded token's worth of each kind of decode kernel, in Node (onnxruntime-node) and in headless Chromium
// (onnxruntime-web, WASM, cross-origin isolated), the same graphs on the same machine: where the browser's decode
// loses against Node's, kernel by kernel.
//
//   node dist/scripts/web-microbench.js [--threads 2] [--rounds 5]
//
// Graphs (kernel-chains.ts): DynamicQuantizeMatMul int8 (export-web's default language-model kernel) and MatMulNBits
// int4, each at one row over 10 up/down pairs of MiniCPM-2.4B's MLP; and 1000 chained Adds of one [1, 2304] row (the
// small kernels). Node runs its rounds first, then the page; each figure is the median over rounds of the mean of 5
// runs, and the CPU that processes other than this one and Chromium took is printed for each side.

import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import type { Graph } from '../src/graph/builder.js';
import { NodeGraphSession, type HostTensor } from '../src/runtime/session.js';
import { StaticSite } from '../src/server/static-site.js';
import { showLoad, startBrowserPhase, startPhase, type PhaseLoad } from './cpu-load.js';
import { HIDDEN, linearChain, median, mlpShapes, randomMatrix, SMALL_KERNELS, smallKernelChain } from './kernel-chains.js';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '2' }, rounds: { type: 'string', default: '5' } } });
const threads = Number(values.threads);
const rounds = Number(values.rounds);
const RUNS_PER_ROUND = 5;

declare const window: { bench(names: string[], threads: number, rounds: number, runs: number): Promise<Record<string, number[]>> };

/** The page: onnxruntime-web's WASM bundle, each graph from its folder (model.onnx + weights.bin), timed in turn. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>web-microbench</title>
<script type="module">
import * as ort from './ort/ort.wasm.min.mjs';
ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
window.bench = async (names, threads, rounds, runs) => {
  ort.env.wasm.numThreads = threads;
  const out = {};
  for (const name of names) {
    const bytes = async (file) => { const r = await fetch(name + '/' + file); return r.ok ? new Uint8Array(await r.arrayBuffer()) : null; };
    const weights = await bytes('weights.bin');
    const session = await ort.InferenceSession.create(await bytes('model.onnx'), {
      executionProviders: ['wasm'], ...(weights && { externalData: [{ path: 'weights.bin', data: weights }] }),
    });
    const x = new ort.Tensor('float32', new Float32Array(${HIDDEN}).fill(0.01), [1, ${HIDDEN}]);
    await session.run({ x });
    out[name] = [];
    for (let r = 0; r < rounds; r++) {
      const start = performance.now();
      for (let i = 0; i < runs; i++) await session.run({ x });
      out[name].push((performance.now() - start) / runs);
    }
    await session.release();
  }
  out.crossOriginIsolated = [crossOriginIsolated ? 1 : 0];
  return out;
};
</script>`;

interface Case {
  name: string;
  label: string;
  graph: Graph;
  /** Weight bytes a run reads (0 for the small kernels). */
  bytes: number;
  kernels: number;
}

async function main(): Promise<void> {
  const site = mkdtempSync(join(tmpdir(), 'omnilmm-web-microbench-'));
  try {
    const dq = linearChain('dq-int8', mlpShapes(10));
    const nbits = linearChain('nbits-int4', mlpShapes(10));
    const cases: Case[] = [
      { name: 'dq-int8', label: 'DynamicQuantizeMatMul int8, 1 row, MLP', graph: dq.graph, bytes: dq.bytes, kernels: dq.layers },
      { name: 'nbits-int4', label: 'MatMulNBits int4, 1 row, MLP', graph: nbits.graph, bytes: nbits.bytes, kernels: nbits.layers },
      { name: 'small', label: `Add of a [1, ${HIDDEN}] row`, graph: smallKernelChain(), bytes: 0, kernels: SMALL_KERNELS },
    ];
    for (const c of cases) {
      const serialized = c.graph.serialize();
      if (serialized.weights) serialized.weights.moveTo(join(site, c.name));
      else mkdirSync(join(site, c.name));
      writeFileSync(join(site, c.name, 'model.onnx'), serialized.model);
    }
    writeFileSync(join(site, 'index.html'), PAGE);
    symlinkSync(dirname(createRequire(import.meta.url).resolve('onnxruntime-web/wasm')), join(site, 'ort'));

    const nodeTimes: Record<string, number[]> = {};
    const feeds: Record<string, HostTensor> = { x: { type: 'float32', data: randomMatrix(HIDDEN, 3), dims: [1, HIDDEN] } };
    const nodeEnd = startPhase();
    for (const c of cases) {
      const session = await NodeGraphSession.fromFile(c.name, join(site, c.name, 'model.onnx'), { threads });
      await session.run(feeds);
      nodeTimes[c.name] = [];
      for (let r = 0; r < rounds; r++) {
        const start = performance.now();
        for (let i = 0; i < RUNS_PER_ROUND; i++) await session.run(feeds);
        nodeTimes[c.name]!.push((performance.now() - start) / RUNS_PER_ROUND);
      }
      await session.release();
    }
    const nodeLoad = nodeEnd();

    const server = await StaticSite.start(site);
    const profile = mkdtempSync(join(tmpdir(), 'omnilmm-web-microbench-profile-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium', headless: true, args: ['--headless', '--no-sandbox', '--no-first-run'],
    });
    context.setDefaultTimeout(1_800_000);
    let webTimes: Record<string, number[]>;
    let webLoad: PhaseLoad;
    try {
      const page = await context.newPage();
      await page.goto(`${server.url}/index.html`);
      await page.waitForFunction(() => typeof window.bench === 'function');
      // Ended while Chromium still runs: the CPU of its processes is read from /proc, which forgets ended ones.
      const webEnd = startBrowserPhase();
      webTimes = await page.evaluate(
        ([names, t, r, n]) => window.bench(names, t, r, n),
        [cases.map((c) => c.name), threads, rounds, RUNS_PER_ROUND] as [string[], number, number, number],
      );
      webLoad = webEnd();
    } finally {
      await context.close();
      await server.close();
      rmSync(profile, { recursive: true, force: true });
    }
    if (webTimes.crossOriginIsolated?.[0] !== 1) throw new Error('the page was not cross-origin isolated: WASM ran on one thread');

    const rate = (c: Case, ms: number) => (c.bytes > 0 ? `${(c.bytes / 1e6 / ms).toFixed(1)} GB/s` : `${((1000 * ms) / c.kernels).toFixed(2)} µs each`);
    process.stdout.write(
      `${threads} threads, median of ${rounds} rounds × ${RUNS_PER_ROUND} runs; others took ${showLoad(nodeLoad)} (Node), ` +
        `${showLoad(webLoad)} (Chromium, its own CPU not counted)\n`,
    );
    process.stdout.write('| kernel | kernels | Node ms | Node rate | Chromium WASM ms | WASM rate | WASM ÷ Node |\n|---|---|---|---|---|---|---|\n');
    for (const c of cases) {
      const n = median(nodeTimes[c.name]!);
      const w = median(webTimes[c.name]!);
      process.stdout.write(`| ${c.label} | ${c.kernels} | ${n.toFixed(2)} | ${rate(c, n)} | ${w.toFixed(2)} | ${rate(c, w)} | ${(w / n).toFixed(1)} |\n`);
    }
  } finally {
    rmSync(site, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`web-microbench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
