// Where a decode step's time goes, kernel by kernel, from ONNX Runtime's own trace of the decoder session:
//
//   node dist/scripts/profile-decode.js --model <dir> [--precision int4] [--threads 2] [--depth 512] [--steps 32] [--json]
//
// The prompt is a question about a 448×448 image long enough to reach --depth tokens (--depth 0: a one-word question,
// no image), then --steps greedy steps after 4 unprofiled-in-the-figures warm-up steps. Per step: the host's time
// (sequence.step: feeds, the run, the cache append, the logits), the session's run (model_run), the kernels' sum, and
// what lies between: the runtime's own time outside kernels (run − kernels) and the host's (step − run). Kernels are
// grouped by operator and, for MatMulNBits, by the weight they read, with the bytes each reads per step and the rate.
// Tracing slows every kernel a little, so the same steps run untraced first, in a load of their own: that is the
// step's real time, and the trace gives the shares.

import { readdirSync, readFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveModel } from '../src/checkpoint/resolve.js';
import { argmax } from '../src/generation/processors.js';
import { quantizeOptionsFor, WEIGHT_PRECISIONS, type WeightPrecision } from '../src/graph/quantize.js';
import { withDefaultPrecisions } from '../src/models/family.js';
import { familyOf, loadModelConfig, type LoadedModel } from '../src/models/registry.js';
import { defaultThreads } from '../src/runtime/session.js';
import { benchImage, depthPrompt } from './bench-inputs.js';
import { showLoad, startPhase, type PhaseLoad } from './cpu-load.js';

const USAGE = 'node dist/scripts/profile-decode.js --model <dir> [--precision int4|int8|fp32|int8-dq] [--threads N] [--depth N] [--steps N] [--json]';
const WARMUP_STEPS = 4;
const QUANT_BLOCK = quantizeOptionsFor('int4').blockSize;

/** One event of ONNX Runtime's trace (Chrome trace format; times in µs). */
interface TraceEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' }, precision: { type: 'string', default: 'int4' }, threads: { type: 'string' },
      depth: { type: 'string', default: '512' }, steps: { type: 'string', default: '32' }, json: { type: 'boolean' },
    },
  });
  const precision = values.precision as WeightPrecision;
  if (!values.model || !WEIGHT_PRECISIONS.includes(precision)) throw new Error(`usage: ${USAGE}`);
  const threads = values.threads ? Number(values.threads) : defaultThreads();
  const depth = Number(values.depth);
  const steps = Number(values.steps);
  const dir = await resolveModel(values.model);
  const config = loadModelConfig(dir);
  const traceDir = mkdtempSync(join(tmpdir(), 'omnilmm-profile-'));
  try {
    const load = (profile?: string) => familyOf(config).load(dir, config, withDefaultPrecisions({ threads, precision, maxBeams: 1, profile }));
    // The same steps without the trace first: tracing ~1900 kernels a step slows the step, so its times are shares.
    const plain = await decodeSteps(await load(), depth, steps);
    const traced = await decodeSteps(await load(`${traceDir}/`), depth, steps);
    const report = summarize(decoderTrace(traceDir), traced.hostMs, steps, quantizeOptionsFor(precision === 'int4' ? 'int4' : 'int8').bits);
    const untracedMs = plain.hostMs.reduce((a, b) => a + b, 0) / steps;
    const header = {
      model: dir, precision, threads, depth: plain.promptTokens, steps, untraced_ms_per_step: untracedMs, untraced_tok_s: 1000 / untracedMs,
      others_avg_cores: Math.max(plain.load.othersAvgCores ?? 0, traced.load.othersAvgCores ?? 0),
    };
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ ...header, ...report }, null, 2)}\n`);
    } else {
      process.stdout.write(
        `${dir}, ${precision}, ${threads} threads, ${plain.promptTokens} prompt tokens, ${steps} steps\n` +
        `untraced: ${untracedMs.toFixed(2)} ms/step (${(1000 / untracedMs).toFixed(2)} tok/s), others ${showLoad(plain.load)}\n` +
        `traced (others ${showLoad(traced.load)}):\n`,
      );
      process.stdout.write(formatReport(report));
    }
  } finally {
    rmSync(traceDir, { recursive: true, force: true });
  }
}

/** Prefills the depth prompt, then times WARMUP_STEPS + `steps` greedy steps; the model is released after. */
async function decodeSteps(model: LoadedModel, depth: number, steps: number): Promise<{ hostMs: number[]; promptTokens: number; load: PhaseLoad }> {
  try {
    const prompt = depthPrompt(model, depth, depth === 0 ? null : await benchImage(undefined, 448));
    const sequence = await model.startPrompt(prompt);
    let logits = await sequence.prefill();
    const hostMs: number[] = [];
    const end = startPhase();
    for (let k = 0; k < WARMUP_STEPS + steps; k++) {
      const start = performance.now();
      logits = (await sequence.step([argmax(logits)]))[0]!;
      hostMs.push(performance.now() - start);
    }
    return { hostMs: hostMs.slice(WARMUP_STEPS), promptTokens: prompt.ids.length, load: end() };
  } finally {
    await model.release();
  }
}

/** The decoder session's trace: the largest trace file (the decoder's runs outnumber every other graph's). */
function decoderTrace(folder: string): TraceEvent[] {
  const files = readdirSync(folder).filter((name) => name.endsWith('.json')).map((name) => join(folder, name));
  const decoder = files.filter((file) => /decoder/i.test(file)).sort((a, b) => statSync(b).size - statSync(a).size)[0];
  if (!decoder) throw new Error(`no decoder trace in ${folder}: ${files.join(', ')}`);
  return JSON.parse(readFileSync(decoder, 'utf8')) as TraceEvent[];
}

interface Group {
  name: string;
  msPerStep: number;
  kernelsPerStep: number;
  /** Weight bytes the group's kernels read per step (MatMulNBits groups only). */
  bytesPerStep?: number;
}

interface Report {
  host_ms_per_step: number;
  run_ms_per_step: number;
  kernels_ms_per_step: number;
  runtime_overhead_ms_per_step: number;
  host_overhead_ms_per_step: number;
  kernels_per_step: number;
  by_operator: Group[];
  matmul_nbits_by_weight: Group[];
}

/** Per-step figures over the last `steps` model runs of the trace. */
function summarize(trace: TraceEvent[], hostMs: number[], steps: number, bits: number): Report {
  const runs = trace.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts).slice(-steps);
  if (runs.length < steps) throw new Error(`the trace has ${runs.length} decoder runs, fewer than ${steps}`);
  const inRuns = (e: TraceEvent) => runs.some((r) => e.ts >= r.ts && e.ts + e.dur <= r.ts + r.dur);
  const kernels = trace.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && inRuns(e));
  const sum = (events: { dur: number }[]) => events.reduce((total, e) => total + e.dur, 0) / 1000;
  const perStep = (ms: number) => ms / steps;
  const runMs = perStep(sum(runs));
  const kernelMs = perStep(sum(kernels));
  const hostStepMs = hostMs.reduce((a, b) => a + b, 0) / hostMs.length;
  const groups = (key: (e: TraceEvent) => string | null, bytes?: (e: TraceEvent) => number): Group[] => {
    const map = new Map<string, { ms: number; n: number; bytes: number }>();
    for (const e of kernels) {
      const k = key(e);
      if (k === null) continue;
      const entry = map.get(k) ?? { ms: 0, n: 0, bytes: 0 };
      entry.ms += e.dur / 1000;
      entry.n++;
      entry.bytes += bytes?.(e) ?? 0;
      map.set(k, entry);
    }
    return [...map.entries()]
      .map(([name, v]) => ({ name, msPerStep: perStep(v.ms), kernelsPerStep: v.n / steps, ...(bytes && { bytesPerStep: v.bytes / steps }) }))
      .sort((a, b) => b.msPerStep - a.msPerStep);
  };
  return {
    host_ms_per_step: hostStepMs,
    run_ms_per_step: runMs,
    kernels_ms_per_step: kernelMs,
    runtime_overhead_ms_per_step: runMs - kernelMs,
    host_overhead_ms_per_step: hostStepMs - runMs,
    kernels_per_step: kernels.length / steps,
    by_operator: groups((e) => e.args?.op_name ?? 'unknown'),
    matmul_nbits_by_weight: groups(
      (e) => (e.args?.op_name === 'MatMulNBits' ? weightKind(e.name) : null),
      (e) => nbitsWeightBytes(e, bits),
    ),
  };
}

/**
 * The bytes a MatMulNBits kernel reads of its weight: K·N codes of `bits` and a float32 scale per block of
 * QUANT_BLOCK (src/graph/quantize.ts). The trace does not give them (the packed weight is no initializer any more):
 * K and N come from its input and output shapes.
 */
function nbitsWeightBytes(e: TraceEvent, bits: number): number {
  const last = (shapes: Record<string, number[]>[] | undefined) => Object.values(shapes?.[0] ?? {})[0]?.at(-1) ?? 0;
  const k = last(e.args?.input_type_shape);
  const n = last(e.args?.output_type_shape);
  return (n * k * bits) / 8 + n * Math.ceil(k / QUANT_BLOCK) * 4;
}

/** `/llm/layers.7/mlp/gate_proj/MatMulNBits_kernel_time` → `mlp/gate_proj`; the head and other weights by their node. */
function weightKind(name: string): string {
  const node = name.replace(/_kernel_time$/, '');
  const layer = /\/layers\.\d+\/(.+?)\/[^/]+$/.exec(node);
  return layer ? layer[1]! : node;
}

function formatReport(r: Report): string {
  const ms = (v: number) => v.toFixed(2).padStart(8);
  const lines = [
    `host step ${ms(r.host_ms_per_step)} ms = run ${ms(r.run_ms_per_step)} + host ${ms(r.host_overhead_ms_per_step)}`,
    `run       ${ms(r.run_ms_per_step)} ms = kernels ${ms(r.kernels_ms_per_step)} (${r.kernels_per_step.toFixed(0)} per step) + runtime ${ms(r.runtime_overhead_ms_per_step)}`,
    '',
    '| operator | ms/step | % of kernels | kernels/step |',
    '|---|---|---|---|',
    ...r.by_operator.map((g) => `| ${g.name} | ${g.msPerStep.toFixed(2)} | ${((100 * g.msPerStep) / r.kernels_ms_per_step).toFixed(1)} | ${g.kernelsPerStep} |`),
    '',
    '| MatMulNBits weight | ms/step | MB/step | GB/s |',
    '|---|---|---|---|',
    ...r.matmul_nbits_by_weight.map((g) => {
      const mb = (g.bytesPerStep ?? 0) / 1e6;
      return `| ${g.name} | ${g.msPerStep.toFixed(2)} | ${mb.toFixed(1)} | ${(mb / g.msPerStep).toFixed(1)} |`;
    }),
  ];
  return `${lines.join('\n')}\n`;
}

main().catch((err: unknown) => {
  process.stderr.write(`profile-decode failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
