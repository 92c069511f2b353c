// The OpenAI-compatible server on the tiny fixture model, driven by the official `openai` client (and by raw
// fetch where a client would refuse to send the request): answers token-exact with the fixture's greedy and beam
// runs, streaming, the error shapes, the API key, the queue (429, order, disconnects). Several images, system
// messages and the extension fields reach the engine as they were sent; an answer's think part comes back as
// reasoning_content (a scripted engine supplies such answers).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import sharp from 'sharp';
import { LocalEngine } from '../src/chat/local-engine.js';
import { WorkerEngine } from '../src/chat/worker-engine.js';
import { GenerationQueue } from '../src/server/queue.js';
import { isPublicAddress } from '../src/server/remote-image.js';
import { ChatServer, type ServerOptions } from '../src/server/server.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';
import { ScriptedEngine } from './helpers/scripted-engine.js';

const FIXTURE = 'minicpmv2-tiny';

interface Run {
  chat_kwargs: { sampling: boolean; num_beams?: number; max_new_tokens: number };
  new_token_ids: number[];
  text: string;
}
interface LlmCase {
  input: { file: string };
  msgs: { role: 'user' | 'assistant'; content: string }[];
  input_ids: number[];
  runs: Record<string, Run>;
}

const grad = readFixtureJson<LlmCase>(FIXTURE, 'llm', 'single_turn_grad.json');

function dataUrl(file: string): string {
  return `data:image/png;base64,${readFileSync(fixturePath(FIXTURE, file)).toString('base64')}`;
}

/** A fixture case as OpenAI messages: the image goes with the first (user) message. */
function wireMessages(c: LlmCase, image = dataUrl(c.input.file)): OpenAI.ChatCompletionMessageParam[] {
  return c.msgs.map((m, i) =>
    i === 0
      ? { role: 'user', content: [{ type: 'image_url', image_url: { url: image } }, { type: 'text', text: m.content }] }
      : m.role === 'user' ? { role: 'user', content: m.content } : { role: 'assistant', content: m.content });
}

/** A text-only question the tiny model answers for thousands of tokens (no EOS): a long-running generation. */
const LONG: OpenAI.ChatCompletionCreateParamsStreaming = {
  model: 'tiny',
  messages: [{ role: 'user', content: 'What is in the image?' }],
  temperature: 0,
  max_tokens: 3000,
  stream: true,
};

let engine: LocalEngine;
const servers: ChatServer[] = [];

before(async () => {
  engine = await LocalEngine.start(fixturePath(FIXTURE, 'model'), { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
});
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await engine.close();
});

async function startServer(options: Partial<ServerOptions> = {}): Promise<ChatServer> {
  const server = await ChatServer.start({ engine, port: 0, log: () => {}, ...options });
  servers.push(server);
  return server;
}

function client(server: ChatServer, apiKey = 'unused'): OpenAI {
  return new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0 });
}

async function postRaw(server: ChatServer, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as { error: Record<string, unknown> } };
}

/** Runs the request and returns the API error it must fail with. */
async function apiError(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, `expected an API error, got ${String(err)}`);
    assert.ok(!/\n\s+at /.test(err.message), 'no stack trace reaches the client');
    return err;
  }
  assert.fail('the request should have failed');
}

async function health(server: ChatServer): Promise<{ generating: boolean; waiting: number }> {
  return (await (await fetch(`${server.url}/health`)).json()) as { generating: boolean; waiting: number };
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<number> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now() - start;
}

/** Waits until the socket takes more data; a server that stopped reading fails the test after a minute. */
async function drained(socket: Socket): Promise<void> {
  const done = new AbortController();
  const stalled = sleep(60_000, undefined, { signal: done.signal }).then(() => assert.fail('the server stopped reading the body'));
  try {
    await Promise.race([once(socket, 'drain', { signal: done.signal }), stalled]);
  } finally {
    done.abort();
  }
}

/** Starts a long streamed generation and resolves once its first text has arrived (so it holds the engine). */
async function startLongStream(openai: OpenAI) {
  const controller = new AbortController();
  const stream = await openai.chat.completions.create(LONG, { signal: controller.signal });
  const chunks = stream[Symbol.asyncIterator]();
  for (;;) {
    const next = await chunks.next();
    if (next.value?.choices[0]?.delta.content) break;
  }
  // After an abort the client's iterator either ends or throws; both mean the stream is over.
  const finished = (async () => {
    try {
      while (!(await chunks.next()).done);
    } catch {
      // aborted
    }
  })();
  return { abort: () => controller.abort(), finished };
}

describe('answers equal the fixture', () => {
  let server: ChatServer;
  before(async () => {
    server = await startServer();
  });

  test('non-streaming greedy: token-exact text, usage and finish reason of single_turn_grad', async () => {
    const run = grad.runs.greedy!;
    const completion = await client(server).chat.completions.create({
      model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24,
    });
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.choices.length, 1);
    assert.equal(completion.choices[0]!.message.role, 'assistant');
    assert.equal(completion.choices[0]!.message.content, run.text);
    assert.equal(completion.choices[0]!.finish_reason, 'stop');
    assert.equal(completion.usage!.prompt_tokens, grad.input_ids.length);
    assert.equal(completion.usage!.completion_tokens, run.new_token_ids.length);
    assert.equal(completion.usage!.total_tokens, grad.input_ids.length + run.new_token_ids.length);
    assert.equal(completion.model, fixturePath(FIXTURE, 'model'));
  });

  test('streaming: chunks add up to the same answer, then finish_reason, usage and [DONE]', async () => {
    const run = grad.runs.greedy!;
    const stream = await client(server).chat.completions.create({
      model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24, stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks[0]!.object, 'chat.completion.chunk');
    assert.equal(chunks[0]!.choices[0]!.delta.role, 'assistant');
    const contents = chunks.flatMap((c) => c.choices.map((choice) => choice.delta.content ?? ''));
    assert.equal(contents.join(''), run.text);
    assert.ok(contents.filter(Boolean).length > 1, 'the answer arrives in several chunks');
    const finishes = chunks.flatMap((c) => c.choices.map((choice) => choice.finish_reason).filter(Boolean));
    assert.deepEqual(finishes, ['stop']);
    const usage = chunks.at(-1)!.usage!;
    assert.equal(usage.prompt_tokens, grad.input_ids.length);
    assert.equal(usage.completion_tokens, run.new_token_ids.length);
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
  });

  test('a multi-turn conversation (two_turn_wide) and a Chinese one (zh_plain_gray), greedy', async () => {
    for (const name of ['two_turn_wide', 'zh_plain_gray']) {
      const c = readFixtureJson<LlmCase>(FIXTURE, 'llm', `${name}.json`);
      const run = c.runs.greedy!;
      const completion = await client(server).chat.completions.create({
        model: 'tiny', messages: wireMessages(c), temperature: 0, max_tokens: run.chat_kwargs.max_new_tokens,
      });
      assert.equal(completion.choices[0]!.message.content, run.text, name);
      assert.equal(completion.usage!.prompt_tokens, c.input_ids.length, name);
      assert.equal(completion.usage!.completion_tokens, run.new_token_ids.length, name);
      assert.equal(completion.choices[0]!.finish_reason, 'length', name);
    }
  });

  test('num_beams 3 (an extension field) is beam search: the fixture beam run, streamed as one chunk', async () => {
    const run = grad.runs['beam3_rp1.2']!;
    const body = { model: 'tiny', messages: wireMessages(grad), max_tokens: 24, num_beams: 3 };
    const completion = await client(server).chat.completions.create(body);
    assert.equal(completion.choices[0]!.message.content, run.text);
    assert.equal(completion.usage!.completion_tokens, run.new_token_ids.length);
    assert.equal(completion.choices[0]!.finish_reason, 'length');
    const stream = await client(server).chat.completions.create({ ...body, stream: true });
    const contents: string[] = [];
    for await (const chunk of stream) contents.push(...chunk.choices.map((c) => c.delta.content ?? '').filter(Boolean));
    assert.deepEqual(contents, [run.text]);
  });

  test('stop: the answer ends before the first stop string, with finish_reason "stop"', async () => {
    const run = grad.runs.greedy!;
    const stop = ' first';
    const expected = run.text.slice(0, run.text.indexOf(stop));
    const completion = await client(server).chat.completions.create({
      model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24, stop: [stop, 'never appears'],
    });
    assert.equal(completion.choices[0]!.message.content, expected);
    assert.equal(completion.choices[0]!.finish_reason, 'stop');
    assert.ok(completion.usage!.completion_tokens < run.new_token_ids.length);
  });

  test('GET /v1/models lists the model; /health answers; the page is served', async () => {
    const models = await client(server).models.list();
    assert.deepEqual(models.data.map((m) => m.id), [fixturePath(FIXTURE, 'model')]);
    const status = await (await fetch(`${server.url}/health`)).json();
    assert.equal((status as { status: string }).status, 'ok');
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /^text\/html/);
    assert.match(page.headers.get('content-security-policy')!, /default-src 'none'/);
  });

  test('GET /v1/models/{id} is the listed model for its id, and a 404 naming "model" for any other', async () => {
    const id = fixturePath(FIXTURE, 'model');
    const listed = (await client(server).models.list()).data;
    // The client percent-encodes the id's slashes; curl sends them as they are.
    assert.deepEqual(await client(server).models.retrieve(id), listed[0]);
    assert.deepEqual(await (await fetch(`${server.url}/v1/models/${id}`)).json(), { id, object: 'model', created: 0, owned_by: 'omnilmm' });
    for (const other of ['gpt-4o', `${id}x`, '%E0%A4%A']) {
      const err = await apiError(client(server).models.retrieve(other));
      assert.equal(err.status, 404, other);
      assert.equal(err.type, 'invalid_request_error');
      assert.equal(err.param, 'model');
      assert.equal(err.code, 'model_not_found');
    }
  });

  test('HEAD is answered wherever GET is: the same status and headers, no body', async () => {
    for (const path of ['/', '/app.js', '/health', '/v1/models', `/v1/models/${encodeURIComponent(fixturePath(FIXTURE, 'model'))}`]) {
      const get = await fetch(`${server.url}${path}`);
      const getBody = Buffer.from(await get.arrayBuffer());
      const head = await fetch(`${server.url}${path}`, { method: 'HEAD' });
      assert.equal(head.status, 200, path);
      assert.equal(head.headers.get('content-type'), get.headers.get('content-type'), path);
      assert.equal(head.headers.get('content-length'), String(getBody.length), path);
      assert.equal((await head.arrayBuffer()).byteLength, 0, path);
    }
    const post = await fetch(`${server.url}/v1/chat/completions`, { method: 'HEAD' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'POST');
  });
});

describe('bad requests get OpenAI error objects with the right status', () => {
  let server: ChatServer;
  before(async () => {
    server = await startServer();
  });

  test('malformed JSON, a non-object body and a wrong content type are 400', async () => {
    for (const body of ['{"messages": [', '[1, 2]', '']) {
      const res = await postRaw(server, body);
      assert.equal(res.status, 400, body);
      assert.deepEqual(Object.keys(res.body.error).sort(), ['code', 'message', 'param', 'type']);
      assert.equal(res.body.error.type, 'invalid_request_error');
    }
    const res = await postRaw(server, '{}', { 'content-type': 'text/plain' });
    assert.equal(res.status, 400);
  });

  test('wrong types and unsupported values are 400 and name the field', async () => {
    const openai = client(server);
    const messages = wireMessages(grad);
    const cases: [Record<string, unknown>, string][] = [
      [{ messages: 'hello' }, 'messages'],
      [{ messages: [] }, 'messages'],
      [{ messages, max_tokens: 'ten' }, 'max_tokens'],
      [{ messages, max_tokens: 0 }, 'max_tokens'],
      [{ messages, temperature: -1 }, 'temperature'],
      [{ messages, top_p: 1.5 }, 'top_p'],
      [{ messages, n: 2 }, 'n'],
      [{ messages, stream: 'yes' }, 'stream'],
      [{ messages, stop: [1] }, 'stop'],
      [{ messages, num_beams: 0 }, 'num_beams'],
      [{ messages: [{ role: 'user', content: 42 }] }, 'messages[0].content'],
      [{ messages: [{ role: 'robot', content: 'hi' }] }, 'messages[0].role'],
      [{ messages: [{ role: 'user', content: [{ type: 'audio', data: '' }] }] }, 'messages[0].content[0].type'],
    ];
    for (const [body, param] of cases) {
      const err = await apiError(openai.chat.completions.create({ model: 'tiny', ...body } as never));
      assert.equal(err.status, 400, JSON.stringify(body));
      assert.equal(err.param, param, JSON.stringify(body));
    }
  });

  test('more beams than the model was loaded for (3, the default) is 400 naming "num_beams"', async () => {
    const err = await apiError(client(server).chat.completions.create({ model: 'tiny', messages: wireMessages(grad), num_beams: 4 } as never));
    assert.equal(err.status, 400);
    assert.equal(err.param, 'num_beams');
    assert.match(err.message, /at most 3\b/);
  });

  test('a max_tokens beyond the context is 400, and an overflowing number is shown as it was read', async () => {
    const messages = [{ role: 'user', content: 'Hi' }];
    const huge = await postRaw(server, JSON.stringify({ messages, max_tokens: 1e9 }));
    assert.equal(huge.status, 400);
    assert.equal(huge.body.error.param, 'max_tokens');
    assert.match(huge.body.error.message as string, /"max_tokens" is 1000000000, more than the model's context of 4096 tokens/);
    const completion = await postRaw(server, JSON.stringify({ messages, max_completion_tokens: 5000 }));
    assert.equal(completion.body.error.param, 'max_completion_tokens');
    // JSON.parse reads 1e400 as Infinity.
    const overflow = await postRaw(server, `{"messages": ${JSON.stringify(messages)}, "temperature": 1e400}`);
    assert.equal(overflow.status, 400);
    assert.match(overflow.body.error.message as string, /"temperature" must be a number, got Infinity/);
  });

  test('a system message is refused with a message that says why', async () => {
    const err = await apiError(client(server).chat.completions.create({
      model: 'tiny', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }],
    }));
    assert.equal(err.status, 400);
    assert.match(err.message, /no system prompt/);
  });

  test('two images, or an image after the first message, are 400', async () => {
    const image = { type: 'image_url' as const, image_url: { url: dataUrl(grad.input.file) } };
    const two = await apiError(client(server).chat.completions.create({
      model: 'tiny', messages: [{ role: 'user', content: [image, image, { type: 'text', text: 'Compare' }] }],
    }));
    assert.equal(two.status, 400);
    assert.match(two.message, /one image/);
    const late = await apiError(client(server).chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: [image] }],
    }));
    assert.equal(late.status, 400);
    assert.match(late.message, /first message/);
  });

  test('data that is not an image is 400', async () => {
    const notAnImage = `data:image/png;base64,${Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>').toString('base64')}`;
    const text = `data:text/plain;base64,${Buffer.from('hello').toString('base64')}`;
    for (const [url, pattern] of [[notAnImage, /SVG/], [text, /not an image/], ['data:image/png;base64,@@@', /base64/]] as const) {
      const err = await apiError(client(server).chat.completions.create({
        model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }],
      }));
      assert.equal(err.status, 400, url.slice(0, 30));
      assert.match(err.message, pattern);
    }
  });

  test('an image too narrow for the vision tower is 400, naming the slice it would make', async () => {
    // 1×65546 would become one 14×114702 slice of 8193 patches, one past the limit (worked out in image-slice.test.ts).
    const strip = await sharp({ create: { width: 1, height: 65546, channels: 3, background: '#808080' } }).png().toBuffer();
    const err = await apiError(client(server).chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${strip.toString('base64')}` } }] }],
    }));
    assert.equal(err.status, 400);
    assert.match(err.message, /1×65546 becomes a 14×114702 slice of 8193 patches .*crop it/);
  });

  test('a 50 MB body is 413, and so is an image of too many pixels', async () => {
    const huge = await apiError(client(server).chat.completions.create({
      model: 'tiny', messages: [{ role: 'user', content: 'x'.repeat(50 << 20) }],
    }));
    const cause = (huge as { cause?: { message?: string; cause?: unknown } }).cause;
    assert.equal(huge.status, 413, `${huge.constructor.name}: ${huge.message}; cause: ${cause?.message} ${String(cause?.cause)}`);
    // The body holds no image: the message is about the body, with the 20 MiB default limit.
    assert.match(huge.message, /the request body is over 20 MiB/);
    assert.doesNotMatch(huge.message, /send a smaller image/);
    // 8000 × 6000 of one colour: a few kilobytes of PNG, 48 million pixels (the default limit is 40 million).
    const bomb = await sharp({ create: { width: 8000, height: 6000, channels: 3, background: '#808080' } }).png().toBuffer();
    assert.ok(bomb.length < 1 << 20);
    const big = await apiError(client(server).chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${bomb.toString('base64')}` } }] }],
    }));
    assert.equal(big.status, 413);
    assert.match(big.message, /8000x6000/);
  });

  test('a body declared too large is refused before it is sent: no 100 Continue, then 413', async () => {
    const outcome = await new Promise<{ status: number | undefined; continued: boolean; body: string }>((resolve, reject) => {
      let continued = false;
      const req = httpRequest(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(50 << 20), expect: '100-continue' },
      });
      req.on('continue', () => (continued = true));
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode, continued, body }));
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    assert.equal(outcome.status, 413);
    assert.equal(outcome.continued, false);
    assert.equal((JSON.parse(outcome.body) as { error: { code: string } }).error.code, 'payload_too_large');
  });

  test('a 60 MB body sent without Expect over a slow link gets its 413 after it is sent, not a broken pipe', async () => {
    // A raw-socket client that writes its whole body before it reads, as simple clients do, at about 20 MB/s (a
    // remote client on a fast link): the server must read on, throwing the bytes away, for the writes to finish.
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    await once(socket, 'connect');
    let response = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (response += chunk));
    const size = 60_000_000;
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`);
    const chunk = Buffer.alloc(1 << 20, 0x20);
    for (let sent = 0; sent < size; sent += chunk.length) {
      const part = sent + chunk.length <= size ? chunk : chunk.subarray(0, size - sent);
      // An EPIPE or ECONNRESET here rejects the wait and fails the test.
      if (!socket.write(part)) await drained(socket);
      await sleep(50);
    }
    await new Promise<void>((resolve, reject) => {
      const check = () => (/\r\n\r\n[^]*payload_too_large[^]*\}\}$/.test(response) ? resolve() : undefined);
      check();
      socket.on('data', check).once('error', reject).once('close', () => reject(new Error(`closed after: ${response}`)));
    });
    assert.match(response, /^HTTP\/1\.1 413 /);
    // The body was read to its end: the same connection takes the next request.
    response = '';
    socket.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await new Promise<void>((resolve, reject) => {
      socket.on('data', () => (/"status":"ok"/.test(response) ? resolve() : undefined)).once('error', reject);
    });
    assert.match(response, /^HTTP\/1\.1 200 /);
    socket.destroy();
  });

  test('a client that pauses longer than the keep-alive timeout in the middle of a refused body may still finish it', async () => {
    // node:http arms its 5 s keep-alive timeout once the 413 is sent; the drain must not close the connection on it
    // while the body is still to come (a busy client saw EPIPE in the soak test).
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    await once(socket, 'connect');
    let response = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (response += chunk));
    const size = 21 << 20;
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`);
    socket.write(Buffer.alloc(1 << 20, 0x20));
    await waitFor(async () => /payload_too_large[^]*\}\}$/.test(response), 'the 413', 60_000);
    await sleep(6500);
    const rest = Buffer.alloc(size - (1 << 20), 0x20);
    // An EPIPE or ECONNRESET here rejects the wait and fails the test.
    if (!socket.write(rest)) await drained(socket);
    response = '';
    socket.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await new Promise<void>((resolve, reject) => {
      socket.on('data', () => (/"status":"ok"/.test(response) ? resolve() : undefined)).once('error', reject);
      socket.once('close', () => reject(new Error(`closed after: ${response}`)));
    });
    assert.match(response, /^HTTP\/1\.1 200 /);
    socket.destroy();
  });

  test('an http(s) image URL is 400 unless the server allows remote images', async () => {
    const err = await apiError(client(server).chat.completions.create({
      model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }],
    }));
    assert.equal(err.status, 400);
    assert.match(err.message, /--allow-remote-images/);
  });

  test('unknown paths are 404 and wrong methods 405, as JSON errors', async () => {
    const missing = await fetch(`${server.url}/v1/completions`, { method: 'POST' });
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'not_found');
    const wrongMethod = await fetch(`${server.url}/v1/chat/completions`);
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
  });

  test('a request addressed to another host name is refused (DNS rebinding)', async () => {
    const port = server.port;
    const statusFor = (host: string) => new Promise<number | undefined>((resolve, reject) => {
      const req = httpRequest(`${server.url}/v1/models`, { headers: { host } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject).end();
    });
    const refused = [
      'attacker.example', `127.0.0.1.evil.example:${port}`, '127.evil.example', `127.0.0.256:${port}`, '127.1', '128.0.0.1',
      'localhost.evil.example', `[::2]:${port}`,
    ];
    for (const host of refused) assert.equal(await statusFor(host), 403, host);
    const loopback = [`127.0.0.1:${port}`, '127.255.10.1', `localhost:${port}`, 'LocalHost', 'app.localhost', `[::1]:${port}`];
    for (const host of loopback) assert.equal(await statusFor(host), 200, host);
  });
});

describe('remote images', () => {
  let server: ChatServer;
  let imageHost: Server;
  let hits = 0;
  before(async () => {
    server = await startServer({ allowRemoteImages: true });
    const png = readFileSync(fixturePath(FIXTURE, grad.input.file));
    imageHost = createServer((_req, res) => {
      hits++;
      res.writeHead(200, { 'content-type': 'image/png' }).end(png);
    });
    await new Promise<void>((resolve) => imageHost.listen(0, '127.0.0.1', resolve));
  });
  after(() => new Promise<void>((resolve) => imageHost.close(() => resolve())));

  test('URLs that point at loopback addresses are refused before any connection is made', async () => {
    const { port } = imageHost.address() as AddressInfo;
    for (const url of [`http://127.0.0.1:${port}/grad.png`, `http://localhost:${port}/grad.png`, `http://[::1]:${port}/grad.png`]) {
      const err = await apiError(client(server).chat.completions.create({
        model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'Hi' }] }],
      }));
      assert.equal(err.status, 400, url);
      assert.match(err.message, /refusing to fetch/, url);
    }
    assert.equal(hits, 0, 'the image host was never contacted');
  });

  test('private, loopback, link-local and special addresses are not public', () => {
    for (const address of [
      '127.0.0.1', '10.1.2.3', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1',
      '255.255.255.255', '::1', '::', 'fe80::1', 'fc00::1', 'fd12:3456::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1',
      '64:ff9b::a00:1', '2001:db8::1', '2002:7f00:1::1', 'ff02::1', 'not an address',
    ]) {
      assert.equal(isPublicAddress(address), false, address);
    }
    for (const address of ['8.8.8.8', '1.1.1.1', '93.184.216.34', '2606:4700:4700::1111', '2a00:1450:4001:81d::200e']) {
      assert.equal(isPublicAddress(address), true, address);
    }
  });
});

describe('API key', () => {
  let server: ChatServer;
  before(async () => {
    server = await startServer({ apiKey: 'sekret-key' });
  });

  test('/v1 needs the key (401 without it or with a wrong one); the page and /health do not', async () => {
    for (const key of ['unused', 'sekret-key2']) {
      const err = await apiError(client(server, key).models.list());
      assert.equal(err.status, 401);
      assert.equal(err.code, 'invalid_api_key');
    }
    const bare = await fetch(`${server.url}/v1/models`);
    assert.equal(bare.status, 401);
    assert.equal(bare.headers.get('www-authenticate'), 'Bearer');
    assert.equal((await client(server, 'sekret-key').models.list()).data.length, 1);
    const completion = await client(server, 'sekret-key').chat.completions.create({
      model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24,
    });
    assert.equal(completion.choices[0]!.message.content, grad.runs.greedy!.text);
    assert.equal((await fetch(`${server.url}/`)).status, 200);
    assert.equal((await fetch(`${server.url}/app.js`)).status, 200);
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
  });
});

describe('one generation at a time', () => {
  const short = (): OpenAI.ChatCompletionCreateParamsNonStreaming => ({
    model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24,
  });

  test('past --max-queue a request gets 429 with Retry-After; the queued one is answered after the running one', async () => {
    const server = await startServer({ maxQueue: 1 });
    const openai = client(server);
    const running = await startLongStream(openai);
    const queued = openai.chat.completions.create(short());
    await waitFor(async () => (await health(server)).waiting === 1, 'the second request to wait');
    const err = await apiError(openai.chat.completions.create(short()));
    assert.equal(err.status, 429);
    assert.equal(err.code, 'queue_full');
    assert.match(err.headers!.get('retry-after') ?? '', /^\d+$/);
    running.abort();
    await running.finished;
    assert.equal((await queued).choices[0]!.message.content, grad.runs.greedy!.text);
  });

  test('a client that disconnects stops its generation at once and frees the engine', async () => {
    const server = await startServer();
    const running = await startLongStream(client(server));
    assert.equal((await health(server)).generating, true);
    running.abort();
    const ms = await waitFor(async () => !(await health(server)).generating, 'the generation to stop', 2000);
    assert.ok(ms < 2000, `stopped after ${ms} ms`);
    const completion = await client(server).chat.completions.create(short());
    assert.equal(completion.choices[0]!.message.content, grad.runs.greedy!.text);
  });

  test('a waiting client that disconnects frees its place in the queue', async () => {
    const server = await startServer({ maxQueue: 1 });
    const openai = client(server);
    const running = await startLongStream(openai);
    const leaving = new AbortController();
    const queued = openai.chat.completions.create(short(), { signal: leaving.signal }).catch((err: unknown) => err);
    await waitFor(async () => (await health(server)).waiting === 1, 'the second request to wait');
    leaving.abort();
    assert.ok((await queued) instanceof OpenAI.APIUserAbortError);
    await waitFor(async () => (await health(server)).waiting === 0, 'the place to be freed');
    const next = openai.chat.completions.create(short());
    await waitFor(async () => (await health(server)).waiting === 1, 'the third request to wait');
    running.abort();
    assert.equal((await next).choices[0]!.message.content, grad.runs.greedy!.text);
  });

  test('waiting requests are answered in the order they arrived', async () => {
    const server = await startServer();
    const openai = client(server);
    const running = await startLongStream(openai);
    const order: number[] = [];
    const waiting: Promise<unknown>[] = [];
    for (let i = 0; i < 3; i++) {
      waiting.push(openai.chat.completions.create(short()).then(() => order.push(i)));
      await waitFor(async () => (await health(server)).waiting === i + 1, `request ${i} to wait`);
    }
    running.abort();
    await Promise.all(waiting);
    assert.deepEqual(order, [0, 1, 2]);
  });

  test('a client still sending its body holds no place: a later request is answered before it', async () => {
    const server = await startServer();
    const body = JSON.stringify(short());
    const req = httpRequest(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
    });
    const slow = new Promise<number | undefined>((resolve, reject) => {
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
    });
    await new Promise<void>((resolve) => req.write(body.slice(0, 10), () => resolve()));
    const completion = await client(server).chat.completions.create(short());
    assert.equal(completion.choices[0]!.message.content, grad.runs.greedy!.text);
    req.end(body.slice(10));
    assert.equal(await slow, 200);
  });
});

describe('GenerationQueue', () => {
  const signal = new AbortController().signal;

  test('the line follows the places: one whose image is still being checked goes before later ones', async () => {
    const queue = new GenerationQueue(4);
    const endFirst = await queue.join().turn(signal);
    const [a, b] = [queue.join(), queue.join()];
    const order: string[] = [];
    const bDone = b.turn(signal).then((end) => (order.push('b'), end));
    await new Promise((resolve) => setImmediate(resolve));
    const aDone = a.turn(signal).then((end) => (order.push('a'), end));
    endFirst();
    (await aDone)();
    (await bDone)();
    assert.deepEqual(order, ['a', 'b']);
  });

  test('the engine waits for an earlier place under check, and goes on when that place is given up', async () => {
    const queue = new GenerationQueue(4);
    const [a, b] = [queue.join(), queue.join()];
    let started = false;
    const bDone = b.turn(signal).then((end) => ((started = true), end));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(started, false, 'b waits for a, which is still being checked');
    a.leave();
    (await bDone)();
    assert.equal(queue.busy, false);
  });

  test('past the limit a request gets 429; leave() after asking for the turn changes nothing', async () => {
    const queue = new GenerationQueue(1);
    const endFirst = await queue.join().turn(signal);
    const waiting = queue.join();
    const waitingDone = waiting.turn(signal);
    await assert.rejects(queue.join().turn(signal), (err: { status?: number }) => err.status === 429);
    waiting.leave();
    assert.equal(queue.waitingCount, 1);
    endFirst();
    (await waitingDone)();
    assert.equal(queue.busy, false);
  });
});

test('LocalEngine.close() stops the running request and refuses the waiting ones', async () => {
  const own = await LocalEngine.start(fixturePath(FIXTURE, 'model'), { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
  const request = { messages: [{ role: 'user' as const, content: 'What is in the image?' }], image: null, decoding: 'greedy' as const, maxNewTokens: 3000 };
  const running = own.stream(request);
  const waiting = own.stream(request);
  assert.equal(typeof (await running.next()).value, 'string');
  const waitingResult = waiting.next().then(() => 'answered', (err: Error) => err.name);
  await own.close();
  await assert.rejects(running.next(), { name: 'AbortError' });
  assert.equal(await waitingResult, 'AbortError');
});

test('with the worker-thread engine (what serve runs) num_beams 3 is the fixture beam run, and 4 is over the limit', async () => {
  const worker = await WorkerEngine.start(fixturePath(FIXTURE, 'model'), { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
  const server = await ChatServer.start({ engine: worker, port: 0, log: () => {} });
  try {
    const body = { model: 'tiny', messages: wireMessages(grad), max_tokens: 24 };
    const completion = await client(server).chat.completions.create({ ...body, num_beams: 3 } as never) as OpenAI.ChatCompletion;
    assert.equal(completion.choices[0]!.message.content, grad.runs['beam3_rp1.2']!.text);
    const err = await apiError(client(server).chat.completions.create({ ...body, num_beams: 4 } as never));
    assert.equal(err.status, 400);
    assert.equal(err.param, 'num_beams');
  } finally {
    await server.close();
    await worker.close();
  }
});

describe('several images, system messages, downsample_mode and thinking', () => {
  const png = (file: string) => readFileSync(fixturePath(FIXTURE, 'images', file));
  const urlOf = (bytes: Buffer) => `data:image/png;base64,${bytes.toString('base64')}`;

  test('image_url parts reach the engine in order, each as an image part where it was sent', async () => {
    const engine = new ScriptedEngine(['Two pictures.']);
    const server = await ChatServer.start({ engine, port: 0, log: () => {} });
    try {
      const [a, b, c] = [png('grad_100x80.png'), png('shapes_448x448.png'), png('gray_500x375.png')];
      const completion = await client(server).chat.completions.create({
        model: 'scripted',
        messages: [
          { role: 'developer', content: 'Be brief.' },
          { role: 'user', content: [{ type: 'image_url', image_url: { url: urlOf(a) } }, { type: 'text', text: 'and' }, { type: 'image_url', image_url: { url: urlOf(b) } }] },
          { role: 'assistant', content: 'Two.' },
          { role: 'user', content: [{ type: 'text', text: 'And this?' }, { type: 'image_url', image_url: { url: urlOf(c) } }] },
        ],
        downsample_mode: '4x',
        thinking: true,
      } as never) as OpenAI.ChatCompletion;
      // Thinking was asked for and the answer never closed its think part: all of it is reasoning.
      assert.deepEqual(completion.choices[0]!.message, { role: 'assistant', content: '', reasoning_content: 'Two pictures.' });
      const request = engine.requests[0]!;
      assert.deepEqual(request.messages, [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'and' }, { type: 'image' }] },
        { role: 'assistant', content: 'Two.' },
        { role: 'user', content: [{ type: 'text', text: 'And this?' }, { type: 'image' }] },
      ]);
      assert.deepEqual(request.images!.map((bytes) => Buffer.from(bytes)), [a, b, c]);
      assert.equal(request.downsampleMode, '4x');
      assert.equal(request.thinking, true);
      // vLLM's form of the switch.
      await client(server).chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'Hi' }], chat_template_kwargs: { enable_thinking: true } } as never);
      assert.equal(engine.requests[1]!.thinking, true);
      assert.equal(engine.requests[1]!.downsampleMode, undefined);
    } finally {
      await server.close();
    }
  });

  test('a data: URL in any case is read: URL schemes and media types are case-insensitive', async () => {
    const engine = new ScriptedEngine(['A gradient.']);
    const server = await ChatServer.start({ engine, port: 0, log: () => {} });
    try {
      const bytes = png('grad_100x80.png');
      const base64 = bytes.toString('base64');
      for (const url of [`DATA:IMAGE/PNG;BASE64,${base64}`, `Data:Image/Png;Base64,${base64}`]) {
        await client(server).chat.completions.create({
          model: 'scripted', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }],
        });
        assert.deepEqual(engine.requests.map((r) => r.images!.map((image) => Buffer.from(image))).at(-1), [bytes], url.slice(0, 24));
      }
    } finally {
      await server.close();
    }
  });

  test('no tools, "tool_choice": "none" and text-only "modalities" ask for nothing more and are answered; real asks are 400', async () => {
    const engine = new ScriptedEngine(['Hello.']);
    const server = await ChatServer.start({ engine, port: 0, log: () => {} });
    try {
      const messages = [{ role: 'user', content: 'Hi' }];
      const answered: Record<string, unknown>[] = [
        { tools: [] }, { tools: [], tool_choice: 'none' }, { functions: [] }, { modalities: ['text'] },
      ];
      for (const fields of answered) {
        const completion = await client(server).chat.completions.create({ model: 'scripted', messages, ...fields } as never) as OpenAI.ChatCompletion;
        assert.equal(completion.choices[0]!.message.content, 'Hello.', JSON.stringify(fields));
      }
      const tool = { type: 'function', function: { name: 'now', parameters: { type: 'object', properties: {} } } };
      const refused: [Record<string, unknown>, string][] = [
        [{ tools: [tool] }, 'tools'], [{ tools: {} }, 'tools'], [{ tool_choice: 'auto' }, 'tool_choice'],
        [{ modalities: ['text', 'audio'] }, 'modalities'], [{ modalities: ['audio'] }, 'modalities'], [{ modalities: [] }, 'modalities'],
      ];
      for (const [fields, param] of refused) {
        const err = await apiError(client(server).chat.completions.create({ model: 'scripted', messages, ...fields } as never));
        assert.equal(err.status, 400, JSON.stringify(fields));
        assert.equal(err.param, param, JSON.stringify(fields));
      }
    } finally {
      await server.close();
    }
  });

  test('bad extension fields and misplaced system messages are 400 and name the field', async () => {
    const server = await startServer();
    const image = { type: 'image_url', image_url: { url: dataUrl(grad.input.file) } };
    const cases: [Record<string, unknown>, string][] = [
      [{ messages: wireMessages(grad), downsample_mode: '8x' }, 'downsample_mode'],
      [{ messages: wireMessages(grad), thinking: 'yes' }, 'thinking'],
      [{ messages: wireMessages(grad), chat_template_kwargs: { enable_thinking: 1 } }, 'chat_template_kwargs.enable_thinking'],
      [{ messages: [{ role: 'user', content: 'Hi' }, { role: 'system', content: 'Late.' }] }, 'messages[1].role'],
      [{ messages: [{ role: 'system', content: [image] }, { role: 'user', content: 'Hi' }] }, 'messages[0].content[0].type'],
    ];
    for (const [body, param] of cases) {
      const err = await apiError(client(server).chat.completions.create({ model: 'tiny', ...body } as never));
      assert.equal(err.status, 400, JSON.stringify(body).slice(0, 80));
      assert.equal(err.param, param);
    }
  });

  test('MiniCPM-V 2.0 answers with 16x as without it, and refuses 4x, thinking and a system message by name', async () => {
    const server = await startServer();
    const completion = await client(server).chat.completions.create({
      model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24, downsample_mode: '16x', thinking: false,
    } as never) as OpenAI.ChatCompletion;
    assert.equal(completion.choices[0]!.message.content, grad.runs.greedy!.text);
    assert.equal('reasoning_content' in completion.choices[0]!.message, false);
    const refusals: [Record<string, unknown>, RegExp][] = [
      [{ downsample_mode: '4x' }, /MiniCPM-V 2\.0 has no 4x downsample mode/],
      [{ thinking: true }, /MiniCPM-V 2\.0 has no thinking mode/],
      [{ messages: [{ role: 'developer', content: 'Be brief.' }, ...wireMessages(grad)] }, /MiniCPM-V 2\.0 has no system prompt/],
      [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(grad.input.file) } }, { type: 'image_url', image_url: { url: dataUrl('images/gray_500x375.png') } }, { type: 'text', text: 'Compare' }] }] },
        /MiniCPM-V 2\.0 takes one image per conversation, got 2/],
    ];
    for (const [body, pattern] of refusals) {
      const err = await apiError(client(server).chat.completions.create({ model: 'tiny', messages: wireMessages(grad), max_tokens: 4, ...body } as never));
      assert.equal(err.status, 400);
      assert.match(err.message, pattern);
    }
  });

  test('an answer\'s think part comes back as reasoning_content, whole and streamed', async () => {
    const cases = [
      { chunks: ['<think>\nThe picture', ' is dark.\n</th', 'ink>\n\nIt is ', 'night.'], thinking: false, reasoning: 'The picture is dark.', content: 'It is night.' },
      { chunks: ['Dark', ' sky', '.</think>', '\n\nNight.'], thinking: true, reasoning: 'Dark sky.', content: 'Night.' },
      { chunks: ['It is ', 'night.'], thinking: false, reasoning: undefined, content: 'It is night.' },
    ];
    for (const c of cases) {
      const engine = new ScriptedEngine(c.chunks);
      const server = await ChatServer.start({ engine, port: 0, log: () => {} });
      try {
        const body = { model: 'scripted', messages: [{ role: 'user', content: 'What time is it?' }], thinking: c.thinking };
        const completion = await client(server).chat.completions.create(body as never) as OpenAI.ChatCompletion;
        const message = completion.choices[0]!.message as { content: string; reasoning_content?: string };
        assert.equal(message.content, c.content);
        assert.equal(message.reasoning_content, c.reasoning);
        const stream = await client(server).chat.completions.create({ ...body, stream: true } as never) as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>;
        let reasoning = '';
        let content = '';
        for await (const chunk of stream) {
          const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
          reasoning += delta?.reasoning_content ?? '';
          content += delta?.content ?? '';
        }
        assert.equal(reasoning, c.reasoning ?? '');
        assert.equal(content, c.content);
      } finally {
        await server.close();
      }
    }
  });
});
