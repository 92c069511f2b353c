// The graphs the kernel micro-benchmarks time (decode-microbench.ts on Node, web-microbench.ts in Chromium): one
// decoded token's worth of one kind of kernel, over MiniCPM-2.4B's shapes, with distinct weights far beyond the caches.

import { Graph } from '../src/graph/builder.js';
import { dynamicQuantizeMatMul, matMulNBits, quantizeColumnsInt8, quantizeMatrix, quantizeOptionsFor } from '../src/graph/quantize.js';

export const HIDDEN = 2304;
export const FFN = 5760;
/** Adds in the small-kernel chain. */
export const SMALL_KERNELS = 1000;

export type LinearKernel = 'nbits-int4' | 'dq-int8';

export function randomMatrix(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
  return out;
}

/**
 * x [1, HIDDEN] through a chain of linear layers of `shapes` ([out, in] each, in order) with `kernel`: MatMulNBits
 * int4 (block 128, accuracy_level 4: --precision int4) or DynamicQuantizeMatMul (int8 per column: int8-dq, what
 * export-web builds by default); x has `inputSize` values. Returns the graph, the weight bytes a run reads, and the
 * layer count.
 */
export function linearChain(kernel: LinearKernel, shapes: [number, number][], inputSize = HIDDEN): { graph: Graph; bytes: number; layers: number } {
  const g = new Graph(`${kernel}_chain`);
  let x = g.input('x', 'float32', [1, inputSize]);
  let bytes = 0;
  shapes.forEach(([out, inp], k) => {
    const w = randomMatrix(out * inp, k + 1);
    if (kernel === 'nbits-int4') {
      const q = quantizeMatrix(w, out, inp, quantizeOptionsFor('int4'));
      bytes += q.codes.byteLength + q.scales.byteLength;
      x = matMulNBits(g, x, q, `w${k}`, `/l${k}`);
    } else {
      const q = quantizeColumnsInt8(w, out, inp);
      bytes += q.codes.byteLength + q.scales.byteLength;
      x = dynamicQuantizeMatMul(g, x, q, `w${k}`, `/l${k}`);
    }
  });
  g.output(x, 'y', 'float32', [1, shapes.at(-1)![0]]);
  return { graph: g, bytes, layers: shapes.length };
}

/** `pairs` up/down pairs of the MLP: HIDDEN → FFN → HIDDEN. */
export const mlpShapes = (pairs: number): [number, number][] =>
  Array.from({ length: 2 * pairs }, (_, k) => (k % 2 === 0 ? [FFN, HIDDEN] : [HIDDEN, FFN]));

/** SMALL_KERNELS chained Adds of a [1, HIDDEN] row: the size of a decode step's norms, rotary, reshapes and residual adds. */
export function smallKernelChain(): Graph {
  const g = new Graph('small_kernels');
  let x = g.input('x', 'float32', [1, HIDDEN]);
  const c = g.weight('c', randomMatrix(HIDDEN, 7), [HIDDEN]);
  for (let k = 0; k < SMALL_KERNELS; k++) x = g.op('Add', [x, c], `/add${k}`);
  g.output(x, 'y', 'float32', [1, HIDDEN]);
  return g;
}

export const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
