// A bounded load test of `omnilmm serve` (a separate process, on 127.0.0.1 only):
//
//   npm run build && node dist/scripts/load-test.js [--model DIR] [--clients 16] [--rounds 8] [--duration 90]
//
// Each of the concurrent clients sends `rounds` requests, one after the other, of these kinds in turn:
//   answer      the fixture's greedy question (non-streaming), must equal the fixture's answer, or get a 429
//   stream      the same, streamed
//   disconnect  a long streamed answer that the client drops after its first text (or while it waits in line)
//   bad         a malformed or invalid request (bad JSON, not an image, a wrong type, a system message, a 25 MB body),
//               which must get its 4xx at once, whatever the load
// Then it checks: well-formed requests were answered in the order they arrived (any two that were sent at least
// 50 ms apart and both answered finished in that order) or got a 429 with Retry-After; the dropped ones freed their
// places (the line empties, a queue filled with clients that then leave is usable again); the server process is
// still up; and its memory (RSS) came back to its starting level. Exits 1 if a check fails.
//
// "Sent" is when the request had left this process in full (undici's `undici:request:bodySent` diagnostics event),
// not when fetch() was called: on a busy machine this process can take hundreds of milliseconds to write a request
// (it also sends the 25 MB bodies), and a request that leaves later reaches the server later.
// The starting level is the server's RSS after a warm-up that runs every code path the measured part runs, once:
// one round of the mix at full concurrency, then one long answer dropped by its client while the line fills and
// empties (as at the end). What the engine sizes to the longest answer so far (the KV cache, ONNX Runtime's
// buffers) is then in the baseline; what the measured rounds leave behind is not.

import diagnostics from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { health, postChat, readRss, sleep, startServer, streamedText, until, waitForIdle } from './server-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = `${root}test/fixtures/minicpmv2-tiny`;
const ORDER_MARGIN_MS = 50;
const ID_HEADER = 'x-load-test-id';

type Kind = 'answer' | 'stream' | 'disconnect' | 'bad';
const KINDS: Kind[] = ['answer', 'stream', 'disconnect', 'answer', 'bad', 'stream'];

interface Outcome {
  kind: Kind;
  status: number | 'dropped' | 'failed';
  sentAt: number;
  doneAt: number;
  ok: boolean;
  detail?: string;
}

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: `${FIXTURE}/model` },
    clients: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '8' },
    duration: { type: 'string', default: '90' },
  },
});
const clients = Number(values.clients);
const rounds = Number(values.rounds);
const deadline = Date.now() + Number(values.duration) * 1000;

const golden = JSON.parse(readFileSync(`${FIXTURE}/llm/single_turn_grad.json`, 'utf8')) as {
  msgs: { content: string }[];
  runs: { greedy: { text: string } };
};
const image = `data:image/png;base64,${readFileSync(`${FIXTURE}/images/grad_100x80.png`).toString('base64')}`;
const goodBody = {
  model: 'tiny',
  messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: image } }, { type: 'text', text: golden.msgs[0]!.content }] }],
  temperature: 0,
  max_tokens: 24,
};
const longBody = { model: 'tiny', messages: [{ role: 'user', content: 'What is in the image?' }], temperature: 0, max_tokens: 3000, stream: true };
const BAD_BODIES = [
  '{"messages": [',
  JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,aGVsbG8=' } }] }] }),
  JSON.stringify({ ...goodBody, max_tokens: 'many' }),
  JSON.stringify({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }] }),
  JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(25 << 20) }] }),
];

/** When each request with an id had been handed in full to the operating system (performance.now()). */
const bodySentAt = new Map<string, number>();
diagnostics.subscribe('undici:request:bodySent', (message) => {
  const id = headerValue((message as { request: { headers: unknown } }).request.headers, ID_HEADER);
  if (id !== null) bodySentAt.set(id, performance.now());
});
let nextRequestId = 0;

async function main(): Promise<number> {
  const server = await startServer(values.model!, ['--threads', '2']);
  const rss = { cold: readRss(server.process.pid!), baseline: 0, peak: 0, final: 0 };
  const sampler = setInterval(() => (rss.peak = Math.max(rss.peak, readRss(server.process.pid!))), 100);
  try {
    // Warm up (see the top of this file): one round of the mix, then one long answer dropped while the line fills.
    await Promise.all(Array.from({ length: clients }, (_, c) => runClient(server.url, c, 1)));
    await waitForIdle(server.url);
    await fillAndLeave(server.url);
    await waitForIdle(server.url);
    await sleep(1000);
    rss.baseline = readRss(server.process.pid!);
    rss.peak = rss.baseline;

    const started = Date.now();
    const outcomes = (await Promise.all(Array.from({ length: clients }, (_, c) => runClient(server.url, c)))).flat();
    const elapsed = (Date.now() - started) / 1000;
    const emptied = await waitForIdle(server.url);
    const refilled = await fillAndLeave(server.url);
    await sleep(2000);
    rss.final = readRss(server.process.pid!);
    const alive = server.process.exitCode === null && (await fetch(`${server.url}/health`)).ok;

    const failures = outcomes.filter((o) => !o.ok);
    const violations = orderViolations(outcomes);
    const memoryOk = rss.final <= Math.max(rss.baseline * 1.2, rss.baseline + (64 << 20));
    report(outcomes, elapsed, rss, violations);
    const checks: [string, boolean][] = [
      ['every request got the answer its kind expects', failures.length === 0],
      ['well-formed requests were answered in arrival order', violations === 0],
      ['dropped requests freed their places (the line emptied)', emptied],
      ['a queue filled by clients that then left is usable again', refilled],
      ['the server process is still up', alive],
      ['memory came back to the starting level (≤ +20% or +64 MiB)', memoryOk],
    ];
    for (const [what, ok] of checks) console.log(`${ok ? 'PASS' : 'FAIL'}  ${what}`);
    for (const f of failures.slice(0, 10)) console.log(`  failed ${f.kind}: ${f.status} ${f.detail ?? ''}`);
    return checks.every(([, ok]) => ok) ? 0 : 1;
  } finally {
    clearInterval(sampler);
    server.process.kill('SIGTERM');
  }
}

async function runClient(url: string, client: number, roundCount = rounds): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (let round = 0; round < roundCount && Date.now() < deadline; round++) {
    const kind = KINDS[(client + round) % KINDS.length]!;
    const id = String(nextRequestId++);
    const calledAt = performance.now();
    const outcome = await runOne(url, kind, client + round, id).catch((err: unknown) => ({
      status: 'failed' as const, ok: false, detail: String(err),
    }));
    // A body that was not sent in full (a request dropped or refused while sending) counts from the call.
    const sentAt = bodySentAt.get(id) ?? calledAt;
    bodySentAt.delete(id);
    outcomes.push({ kind, sentAt, doneAt: performance.now(), ...outcome });
  }
  return outcomes;
}

async function runOne(url: string, kind: Kind, n: number, id: string): Promise<Pick<Outcome, 'status' | 'ok' | 'detail'>> {
  if (kind === 'bad') {
    const res = await post(url, BAD_BODIES[n % BAD_BODIES.length]!, { id });
    const body = (await res.json()) as { error?: { message?: string } };
    return { status: res.status, ok: (res.status === 400 || res.status === 413) && typeof body.error?.message === 'string' };
  }
  if (kind === 'disconnect') {
    const controller = new AbortController();
    const leave = setTimeout(() => controller.abort(), 30 + (n % 5) * 40);
    try {
      const res = await post(url, longBody, { id, signal: controller.signal });
      if (res.status === 429) return { status: 429, ok: true };
      const reader = res.body!.getReader();
      await reader.read();
      controller.abort();
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    } finally {
      clearTimeout(leave);
    }
    return { status: 'dropped', ok: true };
  }
  const res = await post(url, { ...goodBody, stream: kind === 'stream' }, { id });
  if (res.status === 429) return { status: 429, ok: /^\d+$/.test(res.headers.get('retry-after') ?? '') };
  const text = kind === 'stream' ? streamedText(await res.text()) : ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
  const ok = res.status === 200 && text === golden.runs.greedy.text;
  return { status: res.status, ok, detail: ok ? undefined : text.slice(0, 80) };
}

function post(url: string, body: unknown, { id, signal }: { id?: string; signal?: AbortSignal } = {}): Promise<Response> {
  return postChat(url, body, { signal, headers: id === undefined ? {} : { [ID_HEADER]: id } });
}

/** A request header's value as undici keeps it: a flat [name, value, …] array, or "name: value\r\n" lines. */
function headerValue(headers: unknown, name: string): string | null {
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1]);
    return null;
  }
  return new RegExp(`^${name}:\\s*(\\S+)`, 'im').exec(String(headers))?.[1] ?? null;
}

/** Pairs of answered well-formed requests sent ORDER_MARGIN_MS or more apart that finished the other way round. */
function orderViolations(outcomes: Outcome[]): number {
  const answered = outcomes.filter((o) => (o.kind === 'answer' || o.kind === 'stream') && o.status === 200);
  let violations = 0;
  for (const a of answered) {
    for (const b of answered) if (b.sentAt - a.sentAt >= ORDER_MARGIN_MS && b.doneAt < a.doneAt) violations++;
  }
  return violations;
}

/** Fills the line behind a long answer, drops every one of them, then checks that a new request is answered. */
async function fillAndLeave(url: string): Promise<boolean> {
  const { max_queue: maxQueue } = await health(url);
  const controllers = Array.from({ length: maxQueue + 1 }, () => new AbortController());
  const pending = [post(url, longBody, { signal: controllers[0]!.signal }).catch(() => null)];
  if (!(await until(async () => (await health(url)).generating))) return false;
  for (const c of controllers.slice(1)) pending.push(post(url, goodBody, { signal: c.signal }).catch(() => null));
  if (!(await until(async () => (await health(url)).waiting === maxQueue))) return false;
  for (const c of controllers) c.abort();
  await Promise.all(pending);
  if (!(await waitForIdle(url))) return false;
  const res = await post(url, goodBody);
  return res.status === 200 && ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content === golden.runs.greedy.text;
}

function report(outcomes: Outcome[], elapsed: number, rss: { cold: number; baseline: number; peak: number; final: number }, violations: number): void {
  const mib = (bytes: number) => `${(bytes / (1 << 20)).toFixed(0)} MiB`;
  console.log(`${outcomes.length} requests from ${clients} clients in ${elapsed.toFixed(1)} s`);
  for (const kind of new Set(KINDS)) {
    const mine = outcomes.filter((o) => o.kind === kind);
    const counts = new Map<string, number>();
    for (const o of mine) counts.set(String(o.status), (counts.get(String(o.status)) ?? 0) + 1);
    const times = mine.filter((o) => o.status === 200).map((o) => o.doneAt - o.sentAt).sort((a, b) => a - b);
    const latency = times.length
      ? `  latency p50 ${times[Math.floor(times.length / 2)]!.toFixed(0)} ms, p95 ${times[Math.floor(times.length * 0.95)]!.toFixed(0)} ms`
      : '';
    console.log(`  ${kind.padEnd(10)} ${[...counts].map(([s, n]) => `${s}: ${n}`).join(', ')}${latency}`);
  }
  console.log(`order violations: ${violations}`);
  console.log(`server RSS: ${mib(rss.cold)} before any request, starting level ${mib(rss.baseline)}, peak ${mib(rss.peak)}, after ${mib(rss.final)}`);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
