// Measures load time, memory, image encoding, prefill and decode speed of a chat model, e.g. the full-size random
// checkpoint that scripts/make-random-checkpoint.ts writes:
//
//   node dist/scripts/measure-chat.js --model /tmp/minicpmv2-full [--threads 2] [--new-tokens 32] [--cases text,448,1344]
//        [--precision fp32|int8|int4] [--prompt-tokens N]
//
// The model is loaded as loadModel() does it; each case (a text-only question, or the question with a synthetic
// square image of that size, or `long`: the question repeated to about --prompt-tokens tokens) is then timed step by step through the family's ChatModel interface: startPrompt (the
// vision tower and resampler for every slice, plus the token embeddings), prefill, and greedy decode steps. A final
// model.run() of the first case checks the public path end to end. Random weights give random ids (and CONTROL
// fillers decode to ""), so the script reports ids, not text. Memory is reported as the process's peak RSS
// (getrusage maxrss) and the system's MemAvailable after each phase. Prints a markdown table on stdout.

import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Model } from '../src/chat/engine.js';
import { argmax } from '../src/generation/processors.js';
import type { RgbImage } from '../src/image/index.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../src/graph/quantize.js';
import { familyOf, loadModelConfig, type LoadedModel } from '../src/models/registry.js';
import { QUESTION } from './bench-inputs.js';

interface Timed {
  wall: number;
  cpu: number;
}

const seconds = (since: number) => (performance.now() - since) / 1000;
const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(2);
/** cpu ÷ wall: near the thread count when the process had the cores to itself, near 1 when it shared them. */
const ratio = (t: Timed) => (t.cpu / t.wall).toFixed(2);

/** Starts a stopwatch for wall time and this process's CPU time (all threads). */
function stopwatch(): () => Timed {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { wall: seconds(wall), cpu: (used.user + used.system) / 1e6 };
  };
}

/** Peak resident set of this process so far, and the memory the system could still hand out. */
function memory(): { peakRss: string; available: string } {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const availableKib = Number(/MemAvailable:\s+(\d+)/.exec(meminfo)?.[1] ?? NaN);
  return { peakRss: gib(process.resourceUsage().maxRSS * 1024), available: gib(availableKib * 1024) };
}

function log(phase: string, details: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify({ phase, ...details, ...memory() })}\n`);
}

/** A smooth colour gradient with a few stripes, so the slices are not uniform. */
function syntheticImage(size: number): RgbImage {
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const at = (y * size + x) * 3;
      data[at] = (255 * x) / size;
      data[at + 1] = (255 * y) / size;
      data[at + 2] = ((x >> 5) + (y >> 5)) % 2 ? 200 : 40;
    }
  }
  return { width: size, height: size, data };
}

interface CaseResult {
  name: string;
  promptTokens: number;
  slices: number;
  embed: Timed;
  prefill: Timed;
  decodeTokens: number;
  decode: Timed;
  ids: number[];
}

async function measureCase(model: LoadedModel, name: string, question: string, image: RgbImage | null, newTokens: number): Promise<CaseResult> {
  const prompt = model.prepare([{ role: 'user', content: question }], image) as { ids: number[]; slices?: unknown[] };
  let stop = stopwatch();
  const sequence = await model.startPrompt(prompt);
  const embed = stop();
  if (sequence.reusedLength > 0) throw new Error(`${name}: ${sequence.reusedLength} prompt positions came from the cache; the timings would not be comparable`);
  stop = stopwatch();
  let logits = await sequence.prefill();
  const prefill = stop();
  const ids = [argmax(logits)];
  stop = stopwatch();
  while (ids.length < newTokens) {
    [logits] = await sequence.step([ids[ids.length - 1]!]);
    ids.push(argmax(logits!));
  }
  const decode = stop();
  const result = { name, promptTokens: prompt.ids.length, slices: prompt.slices?.length ?? 0, embed, prefill, decodeTokens: ids.length - 1, decode, ids };
  log(name, { ...result, ids: ids.join(' '), loadavg: loadavg() });
  return result;
}

/** The question of a case: `long` repeats QUESTION until the prompt has about `promptTokens` tokens. */
function questionOf(c: string, model: LoadedModel, promptTokens: number): string {
  if (c !== 'long') return QUESTION;
  const promptOf = (q: string) => (model.prepare([{ role: 'user', content: q }], null) as { ids: number[] }).ids.length;
  const perCopy = promptOf(`${QUESTION} ${QUESTION}`) - promptOf(QUESTION);
  const copies = Math.max(1, Math.round((promptTokens - promptOf(QUESTION)) / perCopy) + 1);
  return Array.from({ length: copies }, () => QUESTION).join(' ');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      threads: { type: 'string', default: '2' },
      'new-tokens': { type: 'string', default: '32' },
      cases: { type: 'string', default: 'text,448,1344' },
      precision: { type: 'string', default: 'fp32' },
      'prompt-tokens': { type: 'string', default: '512' },
    },
  });
  const threads = Number(values.threads);
  const newTokens = Number(values['new-tokens']);
  const cases = values.cases.split(',');
  const precision = values.precision as WeightPrecision;
  const promptTokens = Number(values['prompt-tokens']);
  if (!values.model || !Number.isInteger(threads) || threads < 1 || !Number.isInteger(newTokens) || newTokens < 2 ||
      cases.some((c) => c !== 'text' && c !== 'long' && !/^\d+$/.test(c)) || !WEIGHT_PRECISIONS.includes(precision) ||
      !Number.isInteger(promptTokens) || promptTokens < 1) {
    process.stderr.write(
      'usage: node dist/scripts/measure-chat.js --model <dir> [--threads N] [--new-tokens N≥2] [--cases text,long,448,1344] ' +
        '[--precision fp32|int8|int4] [--prompt-tokens N]\n',
    );
    process.exit(2);
  }

  // 1. Load, as loadModel() does for a local folder.
  log('start', { loadavg: loadavg() });
  const loadStop = stopwatch();
  const config = loadModelConfig(values.model);
  const loaded = await familyOf(config).load(values.model, config, { threads, maxBeams: 1, precision });
  const model = new Model(loaded, values.model);
  const load = loadStop();
  log('loaded', { load, loadavg: loadavg() });
  const afterLoad = memory();

  // 2. Each case step by step.
  const results: CaseResult[] = [];
  for (const c of cases) {
    const size = c === 'text' || c === 'long' ? 0 : Number(c);
    const name = size ? `image ${size}×${size}` : c;
    results.push(await measureCase(loaded, name, questionOf(c, loaded, promptTokens), size ? syntheticImage(size) : null, newTokens));
  }

  // 3. The public path once, on the first case (the KV cache holds the last one, so nothing is reused).
  const first = cases[0]!;
  const runStop = stopwatch();
  const run = await model.run({
    question: questionOf(first, loaded, promptTokens), image: first === 'text' || first === 'long' ? null : syntheticImage(Number(first)), decoding: 'greedy', maxNewTokens: newTokens,
  });
  const runTime = runStop();
  const firstIds = results[0]!.ids;
  const sameIds = run.outputIds.length === firstIds.length && run.outputIds.every((id, i) => id === firstIds[i]);
  log('model.run', { case: first, run: runTime, outputIds: run.outputIds.length, finishReason: run.finishReason, cachedTokens: run.cachedTokens, sameIds });
  await model.release();

  const end = memory();
  const lines = [
    `threads ${threads}, ${newTokens} new tokens (greedy), precision ${precision}, ${values.model}`,
    '',
    `load: ${load.wall.toFixed(1)} s (cpu ÷ wall ${ratio(load)}), peak RSS after load ${afterLoad.peakRss} GiB, ` +
      `MemAvailable ${afterLoad.available} GiB`,
    '',
    '| case | prompt tokens | slices | embed (vision) s | prefill s | prefill tok/s | decode tok/s | cpu ÷ wall (embed, prefill, decode) |',
    '|---|---|---|---|---|---|---|---|',
    ...results.map((r) =>
      `| ${r.name} | ${r.promptTokens} | ${r.slices} | ${r.embed.wall.toFixed(2)} | ${r.prefill.wall.toFixed(2)} | ` +
      `${(r.promptTokens / r.prefill.wall).toFixed(1)} | ${(r.decodeTokens / r.decode.wall).toFixed(2)} | ` +
      `${ratio(r.embed)}, ${ratio(r.prefill)}, ${ratio(r.decode)} |`),
    '',
    `model.run (${first}): ${runTime.wall.toFixed(1)} s, ${run.outputIds.length} ids, finish ${run.finishReason}, ` +
      `${run.cachedTokens} cached prompt tokens, ids ${sameIds ? 'equal' : 'DIFFER from'} the step-by-step run`,
    `peak RSS of the whole run: ${end.peakRss} GiB`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
