// The requests of the soak test (soak.ts), one kind at a time, each with the outcome it expects: answers to images of
// many sizes (single and multi-turn, streamed or not, greedy, sampled or beam), fixture questions whose answers must
// equal the official ones, streams cancelled after their first chunks, bodies over the size limit, malformed
// requests and unknown routes. Every request goes to the server's own 127.0.0.1 URL and has a time limit.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { postChat } from './server-process.js';

export const KINDS = [
  'single', 'stream', 'multi-turn', 'multi-image', 'beam', 'golden', 'cancel', 'oversized', 'malformed', 'bad-route',
] as const;
export type Kind = (typeof KINDS)[number];

/** How often each kind is picked (relative weights). */
const WEIGHTS: Record<Kind, number> = {
  single: 14, stream: 14, 'multi-turn': 10, 'multi-image': 6, beam: 8, golden: 8, cancel: 12, oversized: 3, malformed: 15, 'bad-route': 10,
};

/** One request's result. `error` is set (a short class such as "status 500") when the outcome was not the expected one. */
export interface Outcome {
  kind: Kind;
  /** The HTTP status, or "aborted" (the client cancelled, as planned), "timeout", "connection" (a network error). */
  status: number | 'aborted' | 'timeout' | 'connection';
  ms: number;
  /** Which request of its kind it was, where a kind has several (e.g. "oversized: chunked"). */
  variant?: string;
  error?: string;
  detail?: string;
}

export interface MixContext {
  url: string;
  images: PoolImage[];
  /** Whether the model answers requests with several images (MiniCPM-V 4.6) or refuses them with a 400. */
  severalImages: boolean;
  timeoutMs: number;
}

export interface PoolImage {
  width: number;
  height: number;
  dataUrl: string;
}

const FIXTURE = fileURLToPath(new URL('../../test/fixtures/minicpmv2-tiny/', import.meta.url));
/** The model whose official answers the `golden` kind knows. */
export const GOLDEN_MODEL = `${FIXTURE}model`;
const MAX_BODY_BYTES = 20 << 20;
const QUESTIONS = ['What is in the image?', 'Describe the picture.', '图中有什么？', 'What colours do you see?', 'Read the text, if any.'];
const FOLLOW_UPS = ['And what else?', 'Say it in fewer words.', '再详细一点。', 'Which colour is on the left?'];

/** A small deterministic random source (mulberry32), so that a run's mix can be repeated. */
export function randomSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One of the given kinds, by weight. */
export function pickKind(kinds: readonly Kind[], random: () => number): Kind {
  const total = kinds.reduce((sum, kind) => sum + WEIGHTS[kind], 0);
  let r = random() * total;
  for (const kind of kinds) if ((r -= WEIGHTS[kind]) < 0) return kind;
  return kinds[kinds.length - 1]!;
}

/** Images from 16×16 to 2000×1500, PNG and JPEG, colour and grey, some with alpha: gradients with a little noise. */
export async function makeImagePool(): Promise<PoolImage[]> {
  const specs: [number, number, 'png' | 'jpeg', 1 | 3 | 4][] = [
    [16, 16, 'png', 3], [24, 300, 'jpeg', 3], [64, 64, 'png', 4], [100, 80, 'jpeg', 1], [224, 224, 'png', 3],
    [300, 1200, 'jpeg', 3], [448, 448, 'png', 3], [640, 480, 'jpeg', 3], [800, 600, 'png', 1], [1000, 300, 'jpeg', 3],
    [1024, 768, 'png', 4], [1344, 1344, 'jpeg', 3], [1600, 900, 'png', 3], [1920, 1080, 'jpeg', 3], [2000, 1500, 'jpeg', 3],
  ];
  const random = randomSource(7);
  return Promise.all(specs.map(async ([width, height, format, channels]) => {
    const pixels = Buffer.alloc(width * height * channels);
    for (let y = 0, i = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        for (let c = 0; c < channels; c++, i++) {
          const ramp = c % 3 === 0 ? x / width : c % 3 === 1 ? y / height : (x + y) / (width + height);
          pixels[i] = c === 3 ? 128 + ((x ^ y) & 127) : Math.min(255, Math.floor(ramp * 230 + random() * 25));
        }
      }
    }
    const image = sharp(pixels, { raw: { width, height, channels } });
    const bytes = format === 'png' ? await image.png().toBuffer() : await image.jpeg({ quality: 85 }).toBuffer();
    return { width, height, dataUrl: `data:image/${format};base64,${bytes.toString('base64')}` };
  }));
}

/** Runs one request (two for multi-turn) of the given kind. */
export async function runKind(kind: Kind, ctx: MixContext, random: () => number): Promise<Outcome[]> {
  switch (kind) {
    case 'single':
    case 'stream':
      return [await timed(kind, () => answer(ctx, imageQuestion(ctx, random, kind === 'stream')))];
    case 'multi-turn':
      return multiTurn(ctx, random);
    case 'multi-image':
      return [await timed(kind, () => severalImages(ctx, random))];
    case 'beam':
      return [await timed(kind, () => answer(ctx, { ...imageQuestion(ctx, random, random() < 0.5), num_beams: 3, temperature: 0, max_tokens: 12 }))];
    case 'golden':
      return [await timed(kind, (label) => golden(ctx, random, label))];
    case 'cancel':
      return [await timed(kind, (label) => cancel(ctx, random, label))];
    case 'oversized':
      return [await timed(kind, (label) => oversized(ctx, random, label))];
    case 'malformed':
      return [await timed(kind, (label) => malformed(ctx, random, label))];
    case 'bad-route':
      return [await timed(kind, (label) => badRoute(ctx, random, label))];
  }
}

type Result = Pick<Outcome, 'status' | 'error' | 'detail'> & { text?: string };

/** Where a request names its variant before it is sent. */
interface Label {
  variant?: string;
}

/** Runs a request and classifies what went wrong on the client's side (a timeout or a network error). */
async function timed(kind: Kind, send: (label: Label) => Promise<Result>): Promise<Outcome & { text?: string }> {
  const start = performance.now();
  const label: Label = {};
  try {
    const result = await send(label);
    return { kind, ...label, ...result, ms: performance.now() - start };
  } catch (err) {
    const ms = performance.now() - start;
    const name = (err as Error).name;
    if (name === 'TimeoutError') return { kind, ...label, status: 'timeout', error: 'timeout', ms };
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const code = cause?.code ?? name;
    return { kind, ...label, status: 'connection', error: `connection ${code}`, detail: cause?.message ?? String(err), ms };
  }
}

type Body = Record<string, unknown>;

function pickImage(ctx: MixContext, random: () => number, maxPixels = Infinity): PoolImage {
  const fitting = ctx.images.filter((image) => image.width * image.height <= maxPixels);
  return fitting[Math.floor(random() * fitting.length)]!;
}

function pick<T>(list: readonly T[], random: () => number): T {
  return list[Math.floor(random() * list.length)]!;
}

/** A question about one image of the pool, greedy or sampled. */
function imageQuestion(ctx: MixContext, random: () => number, stream: boolean): Body {
  const image = pickImage(ctx, random);
  const sampled = random() < 0.5;
  return {
    model: 'soak',
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: image.dataUrl } }, { type: 'text', text: pick(QUESTIONS, random) }] }],
    max_tokens: 4 + Math.floor(random() * 28),
    ...(sampled ? { temperature: 0.7, seed: Math.floor(random() * 1e6) } : { temperature: 0 }),
    stream,
    ...(stream && random() < 0.5 ? { stream_options: { include_usage: true } } : {}),
  };
}

/** Sends a request that must be answered (200) and checks the answer's form; returns its text. */
async function answer(ctx: MixContext, body: Body): Promise<Result> {
  const res = await postChat(ctx.url, body, { timeoutMs: ctx.timeoutMs });
  const raw = await res.text();
  if (res.status !== 200) return { status: res.status, error: `status ${res.status}`, detail: raw.slice(0, 200) };
  const parsed = body.stream ? parseStream(raw) : parseCompletion(raw);
  if ('error' in parsed) return { status: 200, error: parsed.error, detail: raw.slice(0, 200) };
  return { status: 200, text: parsed.text };
}

function parseCompletion(raw: string): { text: string } | { error: string } {
  try {
    const body = JSON.parse(raw) as { choices?: { message?: { content?: unknown }; finish_reason?: unknown }[] };
    const choice = body.choices?.[0];
    if (typeof choice?.message?.content !== 'string' || !['stop', 'length'].includes(String(choice.finish_reason))) return { error: 'malformed answer' };
    return { text: choice.message.content };
  } catch {
    return { error: 'malformed answer' };
  }
}

/** A finished stream: JSON events, no error event, a finish_reason, then `data: [DONE]`. */
function parseStream(raw: string): { text: string } | { error: string } {
  const events = raw.split('\n\n').filter((e) => e.trim() !== '');
  if (events.at(-1) !== 'data: [DONE]') return { error: 'stream without [DONE]' };
  let text = '';
  let finished = false;
  for (const event of events.slice(0, -1)) {
    if (!event.startsWith('data: ')) return { error: 'malformed stream' };
    let data: { error?: unknown; choices?: { delta?: { content?: string }; finish_reason?: string | null }[] };
    try {
      data = JSON.parse(event.slice(6));
    } catch {
      return { error: 'malformed stream' };
    }
    if (data.error !== undefined) return { error: 'error event in stream' };
    const choice = data.choices?.[0];
    text += choice?.delta?.content ?? '';
    if (choice?.finish_reason) finished = true;
  }
  return finished ? { text } : { error: 'stream without finish_reason' };
}

/** A question about an image, then a follow-up that repeats the conversation with the answer (the cached prompt). */
async function multiTurn(ctx: MixContext, random: () => number): Promise<Outcome[]> {
  const first = imageQuestion(ctx, random, false);
  const firstOutcome = await timed('multi-turn', () => answer(ctx, first));
  if (firstOutcome.error || firstOutcome.text === undefined) return [firstOutcome];
  const messages = [...(first.messages as Body[]), { role: 'assistant', content: firstOutcome.text }, { role: 'user', content: pick(FOLLOW_UPS, random) }];
  const stream = random() < 0.5;
  const second = await timed('multi-turn', () => answer(ctx, { ...first, messages, stream }));
  return [firstOutcome, second];
}

/** Two or three images in one message: answered where the model takes several images, else a 400. */
async function severalImages(ctx: MixContext, random: () => number): Promise<Result> {
  const count = 2 + Math.floor(random() * 2);
  const parts: Body[] = Array.from({ length: count }, () => ({ type: 'image_url', image_url: { url: pickImage(ctx, random, 640 * 480).dataUrl } }));
  const body = { model: 'soak', messages: [{ role: 'user', content: [...parts, { type: 'text', text: 'Compare the images.' }] }], temperature: 0, max_tokens: 8 };
  if (ctx.severalImages) return answer(ctx, body);
  return expectError(await postChat(ctx.url, body, { timeoutMs: ctx.timeoutMs }), 400);
}

interface GoldenCase {
  name: string;
  msgs: { role: 'user' | 'assistant'; content: string }[];
  input: { file: string };
  runs: Record<string, { text: string; chat_kwargs: { max_new_tokens: number } }>;
}

let goldenCases: { name: string; body: Body; text: string }[] | undefined;

/**
 * The fixture's recorded questions (the official code's answers): greedy on one image, greedy on a two-turn
 * conversation (streamed), beam search with 3 beams. Only for the tiny MiniCPM-V 2 fixture model.
 */
function goldenRequests(): { name: string; body: Body; text: string }[] {
  const load = (name: string) => JSON.parse(readFileSync(`${FIXTURE}llm/${name}.json`, 'utf8')) as GoldenCase;
  const request = (c: GoldenCase, run: string, extra: Body) => {
    const image = `data:image/png;base64,${readFileSync(FIXTURE + c.input.file).toString('base64')}`;
    const messages = c.msgs.map((m, i) =>
      i === 0 ? { role: 'user', content: [{ type: 'image_url', image_url: { url: image } }, { type: 'text', text: m.content }] } : m);
    return { name: `${c.name} ${run}`, body: { model: 'soak', messages, max_tokens: c.runs[run]!.chat_kwargs.max_new_tokens, ...extra }, text: c.runs[run]!.text };
  };
  const grad = load('single_turn_grad');
  const wide = load('two_turn_wide');
  return [
    request(grad, 'greedy', { temperature: 0 }),
    request(wide, 'greedy', { temperature: 0, stream: true }),
    request(grad, 'beam3_rp1.2', { num_beams: 3 }),
  ];
}

async function golden(ctx: MixContext, random: () => number, label: Label): Promise<Result> {
  goldenCases ??= goldenRequests();
  const { name, body, text } = pick(goldenCases, random);
  label.variant = name;
  const result = await answer(ctx, body);
  if (result.error || result.text === text) return result;
  return { status: result.status, error: 'wrong answer', detail: `${JSON.stringify(result.text)} ≠ fixture ${JSON.stringify(text)}` };
}

/** A long streamed answer that the client drops after its first 1–3 chunks (or, one time in four, before any). */
async function cancel(ctx: MixContext, random: () => number, label: Label): Promise<Result> {
  const body = { ...imageQuestion(ctx, random, true), max_tokens: 2000 };
  const controller = new AbortController();
  const early = random() < 0.25;
  const keep = 1 + Math.floor(random() * 3);
  label.variant = early ? 'before the answer' : `after ${keep} chunks`;
  const timer = early ? setTimeout(() => controller.abort(), Math.floor(random() * 300)) : undefined;
  try {
    const res = await postChat(ctx.url, body, { signal: controller.signal, timeoutMs: ctx.timeoutMs });
    if (res.status !== 200) return { status: res.status, error: `status ${res.status}`, detail: (await res.text()).slice(0, 200) };
    const reader = res.body!.getReader();
    for (let chunks = 0; chunks < keep; chunks++) {
      const { done } = await reader.read();
      if (done) return { status: 200 };
    }
    controller.abort();
    await reader.cancel().catch(() => {});
    return { status: 'aborted' };
  } catch (err) {
    if (controller.signal.aborted && (err as Error).name === 'AbortError') return { status: 'aborted' };
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

let hugeImageUrl: string | undefined;
let pixelBomb: string | undefined;

/**
 * A body over the 20 MiB limit, sent whole (with its length), in chunks (no length), or as a small image with too
 * many pixels (8000×6000): a 413 every time.
 */
async function oversized(ctx: MixContext, random: () => number, label: Label): Promise<Result> {
  const variant = Math.floor(random() * 3);
  label.variant = ['with its length', 'chunked', 'too many pixels'][variant];
  if (variant === 2) {
    pixelBomb ??= `data:image/png;base64,${(await sharp({ create: { width: 8000, height: 6000, channels: 3, background: '#808080' } }).png().toBuffer()).toString('base64')}`;
    const body = { model: 'soak', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: pixelBomb } }, { type: 'text', text: 'Hi' }] }] };
    return expectError(await postChat(ctx.url, body, { timeoutMs: ctx.timeoutMs }), 413);
  }
  hugeImageUrl ??= `data:image/png;base64,${'A'.repeat(MAX_BODY_BYTES + (1 << 20))}`;
  const json = JSON.stringify({ model: 'soak', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: hugeImageUrl } }] }] });
  if (variant === 0) return expectError(await postChat(ctx.url, json, { timeoutMs: ctx.timeoutMs }), 413);
  const bytes = Buffer.from(json);
  const chunk = 1 << 20;
  let offset = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.subarray(offset, (offset += chunk)));
    },
  });
  const res = await fetch(`${ctx.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: stream,
    duplex: 'half',
    signal: AbortSignal.timeout(ctx.timeoutMs),
  } as RequestInit);
  return expectError(res, 413);
}

/** Requests the server must refuse with a 400 and an OpenAI-style error, each for a different reason. */
const MALFORMED: { body: string; type?: string }[] = [
  { body: '{"messages": [' },
  { body: '' },
  { body: 'null' },
  { body: '[1, 2]' },
  { body: '{"messages": []}' },
  { body: JSON.stringify({ messages: [{ role: 'robot', content: 'Hi' }] }) },
  { body: JSON.stringify({ messages: [{ role: 'user', content: 42 }] }) },
  { body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 'many' }) },
  { body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], temperature: 5 }) },
  { body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], n: 2 }) },
  { body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], tools: [{ type: 'function' }] }) },
  { body: JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,aGVsbG8=' } }] }] }) },
  { body: JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:text/plain;base64,aGVsbG8=' } }] }] }) },
  { body: JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,@@@' } }] }] }) },
  { body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }] }), type: 'text/plain' },
];

async function malformed(ctx: MixContext, random: () => number, label: Label): Promise<Result> {
  const index = Math.floor(random() * (MALFORMED.length + 1));
  label.variant = index === MALFORMED.length ? 'truncated image' : `#${index}`;
  if (index === MALFORMED.length) {
    // A PNG cut off half-way: its header is fine, its pixels are missing.
    const full = pickImage(ctx, random, 640 * 480).dataUrl;
    const truncated = full.slice(0, full.indexOf(',') + 1 + Math.floor((full.length - full.indexOf(',')) / 8) * 4);
    const body = { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: truncated } }, { type: 'text', text: 'Hi' }] }] };
    return expectError(await postChat(ctx.url, body, { timeoutMs: ctx.timeoutMs }), 400);
  }
  const { body, type } = MALFORMED[index]!;
  return expectError(await postChat(ctx.url, body, { timeoutMs: ctx.timeoutMs, headers: type ? { 'content-type': type } : {} }), 400);
}

const BAD_ROUTES: { method: string; path: string; status: number }[] = [
  { method: 'GET', path: '/v1/nothing', status: 404 },
  { method: 'POST', path: '/v1/completions', status: 404 },
  { method: 'GET', path: '/no-such-page.html', status: 404 },
  { method: 'GET', path: '/v1/chat/completions', status: 405 },
  { method: 'DELETE', path: '/v1/models', status: 405 },
];

async function badRoute(ctx: MixContext, random: () => number, label: Label): Promise<Result> {
  const { method, path, status } = pick(BAD_ROUTES, random);
  label.variant = `${method} ${path}`;
  return expectError(await fetch(`${ctx.url}${path}`, { method, signal: AbortSignal.timeout(ctx.timeoutMs) }), status);
}

/** The expected error status with an OpenAI-style error body (`{"error": {"message": …}}`). */
async function expectError(res: Response, status: number): Promise<Result> {
  const raw = await res.text();
  if (res.status !== status) return { status: res.status, error: `status ${res.status} (expected ${status})`, detail: raw.slice(0, 200) };
  try {
    if (typeof (JSON.parse(raw) as { error?: { message?: unknown } }).error?.message === 'string') return { status: res.status };
  } catch {
    // falls through
  }
  return { status: res.status, error: 'error body not in the OpenAI form', detail: raw.slice(0, 200) };
}
