// Times one linear layer at the shapes that matter, float32 against the quantised kernels ONNX Runtime offers:
//
//   node dist/scripts/int8-microbench.js [--threads 2] [--rounds 5]
//
// Kernels: FusedMatMul (fp32), MatMulNBits int4 and int8 (block 128, accuracy_level 4: what --precision int4/int8
// build), DynamicQuantizeMatMul (int8 weights per column, activations quantised per tensor at each run), and
// DynamicQuantizeLinear → MatMulInteger → scale (the same arithmetic from standard ONNX ops). Shapes: fc1 and qkv of
// the SigLIP-400M tower (MiniCPM-V 2.0) and of the MiniCPM-2.4B decoder, at 1 row (a decoded token) and 512 rows
// (prompt or image tokens). Kernels run interleaved round by round, so a busy machine disturbs them alike; each
// cell is the median over rounds, and the load (cores other processes took) is printed per shape.

import { parseArgs } from 'node:util';
import { Graph } from '../src/graph/builder.js';
import { dynamicQuantizeMatMul, matMulNBits, quantizeColumnsInt8, quantizeMatrix, quantizeOptionsFor } from '../src/graph/quantize.js';
import { NodeGraphSession } from '../src/runtime/session.js';
import { showLoad, startPhase } from './cpu-load.js';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '2' }, rounds: { type: 'string', default: '5' } } });
const threads = Number(values.threads);
const rounds = Number(values.rounds);

const SHAPES = [
  { name: 'SigLIP fc1', in: 1152, out: 4304 },
  { name: 'SigLIP qkv', in: 1152, out: 3456 },
  { name: 'MiniCPM-2.4B fc1 (gate)', in: 2304, out: 5760 },
  { name: 'MiniCPM-2.4B qkv', in: 2304, out: 6912 },
];
const KERNELS = ['fp32', 'nbits-int4', 'nbits-int8', 'dq-matmul', 'matmul-integer'] as const;
type Kernel = (typeof KERNELS)[number];

function randomMatrix(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
  return out;
}

function build(kernel: Kernel, w: Float32Array, out: number, inp: number): Graph {
  const g = new Graph('microbench');
  const x = g.input('x', 'float32', ['rows', inp]);
  let y: string;
  if (kernel === 'fp32') {
    y = g.op('FusedMatMul', [x, g.weight('w', w, [out, inp])], '/FusedMatMul', { transB: 1 }, 'com.microsoft');
  } else if (kernel === 'nbits-int4' || kernel === 'nbits-int8') {
    y = matMulNBits(g, x, quantizeMatrix(w, out, inp, quantizeOptionsFor(kernel === 'nbits-int4' ? 'int4' : 'int8')), 'w', '/l');
  } else if (kernel === 'dq-matmul') {
    y = dynamicQuantizeMatMul(g, x, quantizeColumnsInt8(w, out, inp), 'w', '/l');
  } else {
    const q = quantizeColumnsInt8(w, out, inp);
    const [xq, xScale, xZero] = g.node('DynamicQuantizeLinear', [x], { name: '/dql', outputs: 3 });
    const acc = g.op('MatMulInteger', [xq!, g.weight('w.i8', q.codes, [inp, out], 'int8'), xZero!], '/MatMulInteger');
    const scaled = g.op('Mul', [g.op('Cast', [acc], '/Cast', { to: 1 }), g.weight('w.scales', q.scales, [out])], '/Mul');
    y = g.op('Mul', [scaled, xScale!], '/Mul2');
  }
  g.output(y, 'y', 'float32', ['rows', out]);
  return g;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log(`threads ${threads}, ${rounds} rounds, median ms per run (speed-up over nbits-int4 in brackets)\n`);
console.log(`| shape | rows | ${KERNELS.join(' | ')} | load (cores) |`);
console.log(`|---|---|${KERNELS.map(() => '---').join('|')}|---|`);
for (const shape of SHAPES) {
  const w = randomMatrix(shape.out * shape.in, 7);
  const sessions = new Map<Kernel, NodeGraphSession>();
  for (const k of KERNELS) sessions.set(k, await NodeGraphSession.create(k, build(k, w, shape.out, shape.in).serialize(), { threads, cache: false }));
  for (const rows of [1, 512]) {
    const x = randomMatrix(rows * shape.in, 11);
    const feeds = { x: { type: 'float32' as const, data: x, dims: [rows, shape.in] } };
    const times = new Map<Kernel, number[]>(KERNELS.map((k) => [k, []]));
    const repeat = rows === 1 ? 50 : 3;
    for (const k of KERNELS) await sessions.get(k)!.run(feeds); // warm-up
    const phase = startPhase();
    for (let r = 0; r < rounds; r++) {
      for (const k of KERNELS) {
        const t0 = performance.now();
        for (let i = 0; i < repeat; i++) await sessions.get(k)!.run(feeds);
        times.get(k)!.push((performance.now() - t0) / repeat);
      }
    }
    const load = phase();
    const base = median(times.get('nbits-int4')!);
    const cells = KERNELS.map((k) => {
      const m = median(times.get(k)!);
      return `${m.toFixed(rows === 1 ? 3 : 1)} (${(base / m).toFixed(2)}×)`;
    });
    console.log(`| ${shape.name} [${shape.in}→${shape.out}] | ${rows} | ${cells.join(' | ')} | ${showLoad(load)} |`);
  }
  for (const s of sessions.values()) await s.release();
}
