// A soak test of `omnilmm serve` (a child process on 127.0.0.1): several clients send a mixed load for a set time,
// then the run is judged and reported.
//
//   npm run soak -- [--model DIR] [--minutes 30] [--clients 4] [--out FOLDER] [--port N] [--seed 1] [--warmup 2]
//                   [--kinds single,cancel,…]   (only these kinds of requests; default all)
//
// The mix (soak-mix.ts): single and multi-turn questions about images from 16×16 to 2000×1500 (PNG and JPEG),
// streamed or not, greedy, sampled or beam search; several images in one message; the fixture's questions, whose
// answers must equal the official code's (tiny MiniCPM-V 2 model only); streams cancelled after their first chunks;
// bodies over the 20 MiB limit (413), malformed requests (400) and unknown routes (404/405). Every outcome is either
// expected (an answer, the expected 4xx, a cancellation) or not (a 5xx, a wrong status or answer, a connection error,
// a timeout, an "internal error" in the server's log, a server that does not come back to idle or exits).
// The server's RSS (/proc/<pid>/status) is sampled every few seconds.
//
// Writes to --out (default $TMPDIR/omnilmm-soak): soak-report.json (requests and errors by kind, p50/p95 latency
// per kind, the RSS samples (all of it, its anonymous and its file-backed part), RSS after the warm-up: min, max,
// slope in MiB per 10 minutes), rss.svg and rss.png.
// Exits 1 on any unexpected outcome.

import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { rssSvg, svgToPng } from './rss-plot.js';
import { postChat, readMemory, startServer, stopServer, waitForIdle, type ServerProcess } from './server-process.js';
import { GOLDEN_MODEL, KINDS, makeImagePool, pickKind, randomSource, runKind, type Kind, type MixContext, type Outcome } from './soak-mix.js';

const REQUEST_TIMEOUT_MS = 180_000;
const IDLE_TIMEOUT_MS = 30_000;
const MIB = 1 << 20;

const USAGE = 'usage: npm run soak -- [--model DIR] [--minutes 30] [--clients 4] [--out FOLDER] [--port N] [--seed 1] [--warmup 2] [--kinds a,b,…]';

/** The command line, checked before anything starts; a bad option ends the process with status 2. */
function readOptions() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: GOLDEN_MODEL },
      minutes: { type: 'string', default: '30' },
      clients: { type: 'string', default: '4' },
      out: { type: 'string', default: join(tmpdir(), 'omnilmm-soak') },
      port: { type: 'string' },
      seed: { type: 'string', default: '1' },
      warmup: { type: 'string', default: '2' },
      kinds: { type: 'string' },
    },
  });
  const number = (name: 'minutes' | 'clients' | 'warmup' | 'seed' | 'port', { integer = false, zero = false } = {}): number => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || value < 0 || (value === 0 && !zero) || (integer && !Number.isInteger(value))) {
      throw new RangeError(`--${name} must be a ${integer ? 'whole ' : ''}number ${zero ? 'of 0 or more' : 'above 0'}, got ${values[name]}`);
    }
    return value;
  };
  const kinds = values.kinds === undefined ? [...KINDS] : values.kinds.split(',').map((name) => name.trim()) as Kind[];
  for (const kind of kinds) if (!KINDS.includes(kind)) throw new RangeError(`--kinds: unknown kind "${kind}"; the kinds are ${KINDS.join(', ')}`);
  const minutes = number('minutes');
  const clients = number('clients', { integer: true });
  return {
    model: resolve(values.model!),
    outDir: resolve(values.out!),
    port: values.port === undefined ? undefined : number('port', { integer: true, zero: true }),
    minutes,
    clients,
    seed: number('seed', { integer: true, zero: true }),
    kinds,
    durationS: minutes * 60,
    /** The warm-up (at most half the run): what the engine sizes to the largest request so far settles in it. */
    warmupS: Math.min(number('warmup', { zero: true }) * 60, minutes * 30),
    /** RSS sampling period: 5 s, shorter for short runs (at least 20 samples). */
    sampleMs: Math.max(250, Math.min(5000, minutes * 3000)),
    maxQueue: Math.max(8, 2 * clients),
  };
}

function readOptionsOrExit(): ReturnType<typeof readOptions> {
  try {
    return readOptions();
  } catch (err) {
    console.error(`soak: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}

const { model, outDir, port, minutes, clients, seed, kinds: chosenKinds, durationS, warmupS, sampleMs, maxQueue } = readOptionsOrExit();

/** [seconds since the start of the load, RSS, its anonymous part, its file-backed part (MiB)] */
type Sample = [number, number, number, number];

interface TimedOutcome extends Outcome {
  /** Seconds since the start of the load when the request ended. */
  at: number;
}

async function main(): Promise<number> {
  mkdirSync(outDir, { recursive: true });
  const startedAt = new Date().toISOString();
  console.log(`soak: ${model}, ${minutes} min, ${clients} clients, seed ${seed}; making images…`);
  const images = await makeImagePool();
  const kinds = chosenKinds.filter((kind) => kind !== 'golden' || model === resolve(GOLDEN_MODEL));
  if (kinds.length === 0) throw new RangeError('--kinds: golden needs the tiny MiniCPM-V 2 fixture model');
  // The golden answers are the official code's, which the exact fp32 path reproduces (the default is int8-dq).
  const exact = kinds.includes('golden') ? ['--precision', 'fp32', '--vision-precision', 'fp32'] : [];
  const extra = ['--threads', '2', '--max-queue', String(maxQueue), ...exact, ...(port === undefined ? [] : ['--port', String(port)])];
  const server = await startServer(model, extra);
  const stopOnSignal = () => void stopServer(server).finally(() => process.exit(130));
  process.once('SIGINT', stopOnSignal).once('SIGTERM', stopOnSignal);
  const pid = server.process.pid!;
  const samples: Sample[] = [];
  let started = performance.now();
  const sample = () => {
    const { rss, anon, file } = readMemory(pid);
    samples.push([round((performance.now() - started) / 1000, 1), round(rss / MIB, 1), round(anon / MIB, 1), round(file / MIB, 1)]);
  };
  let sampler: NodeJS.Timeout | undefined;
  const outcomes: TimedOutcome[] = [];
  const serverProblems: string[] = [];
  let serverExit: number | null = null;
  try {
    const severalImages = await probeSeveralImages(server.url, images[0]!.dataUrl);
    const ctx: MixContext = { url: server.url, images, severalImages, timeoutMs: REQUEST_TIMEOUT_MS };
    console.log(`serving at ${server.url} (pid ${pid}); several images per message: ${severalImages ? 'answered' : 'refused (400)'}`);

    started = performance.now();
    sample();
    sampler = setInterval(sample, sampleMs);
    const progress = setInterval(() => console.log(progressLine(outcomes, samples)), 60_000);
    const deadline = started + durationS * 1000;
    await Promise.all(Array.from({ length: clients }, async (_, client) => {
      const random = randomSource(seed * 1000 + client);
      while (performance.now() < deadline) {
        for (const outcome of await runKind(pickKind(kinds, random), ctx, random)) {
          outcomes.push({ ...outcome, at: round((performance.now() - started) / 1000, 1) });
        }
      }
    }));
    clearInterval(progress);

    // The end: the server must come back to idle (cancelled requests gone from the line) and still be up.
    if (!(await waitForIdle(server.url, IDLE_TIMEOUT_MS).catch(() => false))) serverProblems.push('server not idle 30 s after the load');
    if (server.process.exitCode !== null) serverProblems.push(`server exited with code ${server.process.exitCode}`);
    sample();
  } finally {
    clearInterval(sampler);
    serverExit = await stopServer(server);
  }
  if (serverExit !== 0) serverProblems.push(`server exited with code ${serverExit} when asked to stop`);
  for (const line of server.logLines) if (/internal error|uncaught|unhandled/i.test(line)) serverProblems.push(`server log: ${line}`);

  const report = buildReport(startedAt, outcomes, samples, serverProblems, server);
  writeFileSync(join(outDir, 'soak-report.json'), `${JSON.stringify(report, null, 1)}\n`);
  const svg = rssSvg({
    series: [
      { name: 'RSS', points: samples.map(([t, rss]) => [t, rss]) },
      { name: 'anonymous', points: samples.map(([t, , anon]) => [t, anon]) },
    ],
    warmupSeconds: warmupS,
    title: `omnilmm serve RSS, ${minutes} min soak, ${clients} clients, ${report.requests.total} requests`,
    subtitle: report.rss.afterWarmup
      ? `after warm-up: ${report.rss.afterWarmup.minMiB}–${report.rss.afterWarmup.maxMiB} MiB, slope ${report.rss.afterWarmup.slopeMiBPer10Min} MiB / 10 min`
      : 'no samples after the warm-up',
  });
  writeFileSync(join(outDir, 'rss.svg'), svg);
  writeFileSync(join(outDir, 'rss.png'), await svgToPng(svg));
  printReport(report, outDir);
  return report.unexpected.total === 0 ? 0 : 1;
}

/** Whether the model answers two images in one message (200) or refuses them by name (400). */
async function probeSeveralImages(url: string, image: string): Promise<boolean> {
  const part = { type: 'image_url', image_url: { url: image } };
  const res = await postChat(url, { messages: [{ role: 'user', content: [part, part, { type: 'text', text: 'Hi' }] }], temperature: 0, max_tokens: 1 }, {
    timeoutMs: REQUEST_TIMEOUT_MS,
  });
  const body = await res.text();
  if (res.status === 200 || res.status === 400) return res.status === 200;
  throw new Error(`a request with two images got ${res.status}: ${body.slice(0, 200)}`);
}

function buildReport(startedAt: string, outcomes: TimedOutcome[], samples: Sample[], serverProblems: string[], server: ServerProcess) {
  const byKind: Record<string, { total: number; statuses: Record<string, number>; unexpected: number; p50Ms: number | null; p95Ms: number | null }> = {};
  const errorsByKind: Record<string, Record<string, number>> = {};
  for (const kind of KINDS) {
    const mine = outcomes.filter((o) => o.kind === kind);
    if (mine.length === 0) continue;
    const statuses: Record<string, number> = {};
    for (const o of mine) statuses[String(o.status)] = (statuses[String(o.status)] ?? 0) + 1;
    const times = mine.filter((o) => !o.error).map((o) => o.ms).sort((a, b) => a - b);
    const failed = mine.filter((o) => o.error);
    byKind[kind] = { total: mine.length, statuses, unexpected: failed.length, p50Ms: percentile(times, 0.5), p95Ms: percentile(times, 0.95) };
    for (const o of failed) (errorsByKind[kind] ??= {})[o.error!] = (errorsByKind[kind]?.[o.error!] ?? 0) + 1;
  }
  if (serverProblems.length > 0) errorsByKind.server = Object.fromEntries(serverProblems.map((p) => [p, 1]));
  const failures = outcomes.filter((o) => o.error);
  const after = samples.filter(([t]) => t >= warmupS);
  const bound = (column: 1 | 2) => {
    const values = after.map((s) => s[column]);
    return { minMiB: Math.min(...values), maxMiB: Math.max(...values), slopeMiBPer10Min: round(slope(after.map((s) => [s[0], s[column]])) * 600, 2) };
  };
  return {
    command: `npm run soak -- ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt,
    node: process.version,
    model,
    minutes,
    clients,
    seed,
    maxQueue,
    serverPid: server.process.pid,
    requests: { total: outcomes.length, byKind },
    unexpected: {
      total: failures.length + serverProblems.length,
      byKind: errorsByKind,
      examples: failures.slice(0, 20).map(({ kind, variant, status, error, detail, at, ms }) => ({ kind, variant, status, error, detail, at, ms: Math.round(ms) })),
    },
    rss: {
      unit: 'MiB',
      sampleSeconds: sampleMs / 1000,
      warmupSeconds: warmupS,
      startMiB: samples[0]?.[1] ?? null,
      peakMiB: samples.length ? Math.max(...samples.map(([, v]) => v)) : null,
      endMiB: samples.at(-1)?.[1] ?? null,
      afterWarmup: after.length >= 2 ? { samples: after.length, ...bound(1), anonymous: bound(2) } : null,
      columns: ['seconds', 'rss', 'anonymous', 'file-backed'],
      samples,
    },
    serverLog: server.logLines.slice(0, 50),
  };
}

type Report = ReturnType<typeof buildReport>;

function printReport(report: Report, outDir: string): void {
  console.log(`\n${report.requests.total} requests from ${clients} clients in ${minutes} min`);
  for (const [kind, k] of Object.entries(report.requests.byKind)) {
    const statuses = Object.entries(k.statuses).map(([s, n]) => `${s}: ${n}`).join(', ');
    console.log(`  ${kind.padEnd(12)} ${String(k.total).padStart(5)}  p50 ${ms(k.p50Ms)}  p95 ${ms(k.p95Ms)}  (${statuses})`);
  }
  const { rss } = report;
  console.log(`server RSS: ${rss.startMiB} MiB at the start, peak ${rss.peakMiB} MiB, ${rss.endMiB} MiB at the end`);
  if (rss.afterWarmup) {
    const a = rss.afterWarmup;
    console.log(`  after the ${rss.warmupSeconds / 60} min warm-up: ${a.minMiB}–${a.maxMiB} MiB, slope ${a.slopeMiBPer10Min} MiB per 10 min`);
  }
  console.log(`unexpected: ${report.unexpected.total}`);
  for (const [kind, errors] of Object.entries(report.unexpected.byKind)) {
    for (const [error, n] of Object.entries(errors)) console.log(`  ${kind}: ${error} × ${n}`);
  }
  for (const e of report.unexpected.examples.slice(0, 5)) console.log(`  e.g. ${e.kind}${e.variant ? ` (${e.variant})` : ''} at ${e.at} s: ${e.error} ${e.detail ?? ''}`);
  console.log(`report: ${join(outDir, 'soak-report.json')}, plot: ${join(outDir, 'rss.png')}`);
}

function progressLine(outcomes: TimedOutcome[], samples: Sample[]): string {
  const last = samples.at(-1);
  const failed = outcomes.filter((o) => o.error).length;
  return `  ${last?.[0] ?? 0} s: ${outcomes.length} requests, ${failed} unexpected, server RSS ${last?.[1] ?? '?'} MiB`;
}

/** Nearest-rank percentile of sorted values, rounded to whole milliseconds. */
function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!);
}

/** Least-squares slope of [x, y] points (y per unit of x). */
function slope(points: [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

function round(value: number, digits: number): number {
  return Number(value.toFixed(digits));
}

function ms(value: number | null): string {
  return value === null ? '     -' : `${String(value).padStart(6)} ms`;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
