// Side by side with llama.cpp, round by round: this machine's speed drifts by up to 2× within a minute, so figures
// taken minutes apart do not compare. Each round runs llama-bench once (flash attention off and on) and at once the
// same work here, and the result is the per-round ratio to llama.cpp's better figure.
//
//   node dist/scripts/pair-llama.js --model <dir> --llama-bench <path> --gguf <file> [--work decode|prefill]
//     [--precision int4] [--threads 2] [--rounds 8] [--tokens N] [--depth N] [--json]
//
// decode: llama-bench `-p 0 -n <tokens> -d <depth>` (tokens 32 by default) against <tokens> greedy steps here after a
// text prompt of <depth> tokens (a one-word prompt for depth 0). prefill: `-p <tokens> -n 0` (512 by default) against
// a text prompt of at least <tokens> tokens, each round's starting with its own number so that nothing but the chat
// template's first tokens is reused. The CPU other processes took is measured for each side (llama-bench's own time
// left out); the JSON has every round.
// The model runs in a child process of this one, and llama-bench is started from this one: starting a process forks
// the one that starts it, which write-protects all its memory, and on this machine writing it again afterwards costs
// about 3.7 ms per MB (a prefill after a fork of the model's process ran some 20 % slower).

import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { resolveModel } from '../src/checkpoint/resolve.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../src/graph/quantize.js';
import { withDefaultPrecisions } from '../src/models/family.js';
import { familyOf, loadModelConfig, type LoadedModel } from '../src/models/registry.js';
import { defaultThreads } from '../src/runtime/session.js';
import { depthPrompt, PREFILL_TOKENS, timeDecode, timeTextPrefill } from './bench-inputs.js';
import { QUIET_LIMIT_CORES, startPhase } from './cpu-load.js';

const USAGE =
  'node dist/scripts/pair-llama.js --model <dir> --llama-bench <path> --gguf <file> [--work decode|prefill] ' +
  '[--precision int4|int8|fp32|int8-dq] [--threads N] [--rounds N] [--tokens N] [--depth N] [--json]';
const DECODE_TOKENS = 32;
/** Greedy steps before the timed ones of a decode round (llama-bench warms up likewise). */
const WARMUP_STEPS = 2;

interface Round {
  llama_fa0_tok_s: number;
  llama_fa1_tok_s: number;
  omnilmm_tok_s: number;
  /** omnilmm ÷ the better of llama.cpp's two. */
  ratio: number;
  llama_others_cores: number | null;
  omnilmm_others_cores: number | null;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' }, 'llama-bench': { type: 'string' }, gguf: { type: 'string' },
      work: { type: 'string', default: 'decode' }, precision: { type: 'string', default: 'int4' },
      threads: { type: 'string' }, rounds: { type: 'string', default: '8' }, tokens: { type: 'string' },
      depth: { type: 'string', default: '0' }, json: { type: 'boolean' }, 'model-process': { type: 'boolean' },
    },
  });
  const work = values.work;
  const precision = values.precision as WeightPrecision;
  const threads = values.threads ? Number(values.threads) : defaultThreads();
  const rounds = Number(values.rounds);
  const tokens = Number(values.tokens ?? (work === 'prefill' ? PREFILL_TOKENS : DECODE_TOKENS));
  const depth = Number(values.depth);
  const counts = [threads, rounds, tokens];
  if (!values.model || !values['llama-bench'] || !values.gguf || (work !== 'decode' && work !== 'prefill') ||
      !WEIGHT_PRECISIONS.includes(precision) || !counts.every((n) => Number.isInteger(n) && n >= 1) ||
      !Number.isInteger(depth) || depth < 0 || (work === 'prefill' && depth > 0)) {
    throw new Error(`usage: ${USAGE} (counts are whole numbers ≥ 1; --depth is for decode)`);
  }
  if (values['model-process']) {
    await serveRounds(values.model, work, precision, threads, tokens, depth);
    return;
  }
  const llamaArgs = [
    '-m', values.gguf, '-t', String(threads), '-r', '1', '-fa', '0,1', '-o', 'json',
    ...(work === 'prefill' ? ['-p', String(tokens), '-n', '0'] : ['-p', '0', '-n', String(tokens), '-d', String(depth)]),
  ];
  const model = await ModelProcess.start([...process.argv.slice(2), '--model-process']);
  const results: Round[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      const llama = runLlamaBench(values['llama-bench'], llamaArgs);
      const ours = await model.round(round);
      results.push({
        llama_fa0_tok_s: llama.fa0, llama_fa1_tok_s: llama.fa1, omnilmm_tok_s: ours.rate,
        ratio: ours.rate / Math.max(llama.fa0, llama.fa1),
        llama_others_cores: llama.othersCores, omnilmm_others_cores: ours.othersCores,
      });
      if (!values.json) process.stderr.write(`${showRound(round, results.at(-1)!)}\n`);
    }
  } finally {
    model.stop();
  }
  const ratios = results.map((r) => r.ratio).sort((a, b) => a - b);
  const summary = {
    model: values.model, work, precision, threads, tokens, depth, rounds: results,
    ratio_median: ratios[Math.floor(ratios.length / 2)]!, ratio_min: ratios[0]!, ratio_max: ratios.at(-1)!,
    others_max_cores: Math.max(...results.flatMap((r) => [r.llama_others_cores ?? 0, r.omnilmm_others_cores ?? 0])),
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return;
  }
  const disturbed = summary.others_max_cores > QUIET_LIMIT_CORES ? ' (disturbed)' : '';
  process.stdout.write(
    `${work} ${work === 'decode' ? `${tokens} tokens at depth ${depth}` : `${tokens} tokens`}, ${precision}, ${threads} threads, ` +
      `${rounds} rounds: omnilmm ÷ llama.cpp's better = ${summary.ratio_median.toFixed(2)} median ` +
      `(${summary.ratio_min.toFixed(2)}–${summary.ratio_max.toFixed(2)}); others ≤ ${summary.others_max_cores.toFixed(2)} cores${disturbed}\n`,
  );
}

/** What the model's process answers: its rate for a round and the CPU others took meanwhile, or why it failed. */
type Reply = { type: 'ready' } | { type: 'round'; rate: number; othersCores: number | null } | { type: 'error'; message: string };

/** The model's side, in a process of its own: loads, runs one untimed round, then one round per request. */
async function serveRounds(modelArg: string, work: string, precision: WeightPrecision, threads: number, tokens: number, depth: number): Promise<void> {
  const send = (reply: Reply) => process.send!(reply);
  try {
    const dir = await resolveModel(modelArg);
    const config = loadModelConfig(dir);
    const model = await familyOf(config).load(dir, config, withDefaultPrecisions({ threads, precision, maxBeams: 1 }));
    const run = (round: number) => (work === 'prefill' ? prefillRate(model, tokens, round) : decodeRate(model, depth, tokens));
    // The first run also maps the weights in (llama-bench warms up in every run).
    await run(0);
    process.on('message', (round: number) => {
      const end = startPhase();
      run(round).then(
        (rate) => send({ type: 'round', rate, othersCores: end().othersAvgCores }),
        (err: Error) => send({ type: 'error', message: err.message }),
      );
    });
    process.on('disconnect', () => void model.release().then(() => process.exit(0)));
    send({ type: 'ready' });
  } catch (err) {
    send({ type: 'error', message: (err as Error).message });
  }
}

/** This script again with --model-process: the model's side of the rounds. */
class ModelProcess {
  private constructor(private readonly child: ChildProcess) {}

  static async start(args: string[]): Promise<ModelProcess> {
    const model = new ModelProcess(fork(fileURLToPath(import.meta.url), args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
    await model.next();
    return model;
  }

  async round(round: number): Promise<{ rate: number; othersCores: number | null }> {
    this.child.send(round);
    const reply = await this.next();
    if (reply.type !== 'round') throw new Error('the model process answered out of turn');
    return reply;
  }

  stop(): void {
    if (this.child.connected) this.child.disconnect();
  }

  private next(): Promise<Exclude<Reply, { type: 'error' }>> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the model process exited (${code}) before it answered`));
      this.child.once('exit', onExit);
      this.child.once('message', (reply: Reply) => {
        this.child.off('exit', onExit);
        if (reply.type === 'error') reject(new Error(reply.message));
        else resolve(reply);
      });
    });
  }
}

/** One llama-bench run: tok/s with flash attention off and on, and the CPU others took (its own left out). */
function runLlamaBench(binary: string, args: string[]): { fa0: number; fa1: number; othersCores: number | null } {
  const childBefore = childCpuSeconds();
  const end = startPhase();
  const result = spawnSync(binary, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  const load = end(childCpuSeconds() - childBefore);
  if (result.error) throw new Error(`could not run ${binary}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`${binary} exited with ${result.status}: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  let tests: { flash_attn?: unknown; avg_ts?: unknown }[];
  try {
    tests = JSON.parse(result.stdout) as typeof tests;
  } catch {
    throw new Error(`${binary} did not print JSON (is it llama-bench?): ${result.stdout.slice(0, 200)}`);
  }
  const rate = (fa: number): number => {
    const test = tests.find((t) => Number(t.flash_attn) === fa);
    if (typeof test?.avg_ts !== 'number') throw new Error(`${binary} printed no result with flash_attn ${fa}`);
    return test.avg_ts;
  };
  return { fa0: rate(0), fa1: rate(1), othersCores: load.othersAvgCores };
}

/** CPU seconds of this process's finished children (user + system, from /proc/self/stat); 0 where it is absent. */
function childCpuSeconds(): number {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(fields[13]) + Number(fields[14])) / 100;
  } catch {
    return 0;
  }
}

async function prefillRate(model: LoadedModel, tokens: number, round: number): Promise<number> {
  const { tokens: prefilled, seconds } = await timeTextPrefill(model, `${round}. `, tokens);
  return prefilled / seconds;
}

/** Greedy steps per second after a text prompt of `depth` tokens; the prompt's prefill is not timed. */
async function decodeRate(model: LoadedModel, depth: number, steps: number): Promise<number> {
  return steps / await timeDecode(model, depthPrompt(model, depth), steps, WARMUP_STEPS);
}

function showRound(round: number, r: Round): string {
  const others = (cores: number | null) => (cores === null ? 'n/a' : cores.toFixed(2));
  return `round ${round}: llama.cpp ${r.llama_fa0_tok_s.toFixed(2)} / ${r.llama_fa1_tok_s.toFixed(2)} tok/s (fa off / on), ` +
    `omnilmm ${r.omnilmm_tok_s.toFixed(2)} tok/s, ratio ${r.ratio.toFixed(2)}; ` +
    `others ${others(r.llama_others_cores)} / ${others(r.omnilmm_others_cores)} cores`;
}

main().catch((err: unknown) => {
  process.stderr.write(`pair-llama failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
