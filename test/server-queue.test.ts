// One generation at a time on the OpenAI-compatible server (tiny fixture model): past --max-queue a request gets
// 429, waiting requests are answered in order, a client that disconnects stops its generation or frees its place;
// the GenerationQueue's places and LocalEngine.close() on their own.

import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { describe, test } from 'node:test';
import OpenAI from 'openai';
import { LocalEngine } from '../src/chat/local-engine.js';
import { GenerationQueue } from '../src/server/queue.js';
import { apiError, client, health, waitFor, withEngineServer } from './helpers/server.js';
import { FP32, grad, serveTinyModel, TINY_MODEL, wireMessages } from './helpers/tiny-model.js';
import { WatchedEngine } from './helpers/watched-engine.js';

const startServer = serveTinyModel();

/** A text-only question the tiny model answers for thousands of tokens (no EOS): a long-running generation. */
const LONG: OpenAI.ChatCompletionCreateParamsStreaming = {
  model: 'tiny',
  messages: [{ role: 'user', content: 'What is in the image?' }],
  temperature: 0,
  max_tokens: 3000,
  stream: true,
};

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

  test('a client that disconnects stops its generation at once and frees the engine', async (t) => {
    const watchedTinyModel = async () => new WatchedEngine(await LocalEngine.start(TINY_MODEL, FP32));
    await withEngineServer(watchedTinyModel, async (server, engine) => {
      const running = await startLongStream(client(server));
      assert.equal((await health(server)).generating, true);
      const generation = engine.streams[0]!;
      const chunksBefore = generation.chunks;
      running.abort();
      // The timeout only guards against a hang: how far the generation got shows whether it stopped at once.
      await waitFor(() => generation.ending !== undefined, 'the generation to end', 60_000);
      assert.deepEqual(generation.ending, { error: 'AbortError' }, 'the abort ended it, not its last token');
      const asked = LONG.max_tokens!;
      const chunksAfter = generation.chunks - chunksBefore;
      t.diagnostic(`the engine generated ${chunksBefore} chunks before the client left and ${chunksAfter} after`);
      assert.ok(chunksAfter < (asked - chunksBefore) / 10, `${chunksAfter} chunks after the client left, of ${asked - chunksBefore} still to come`);
      await waitFor(async () => !(await health(server)).generating, 'the engine to be free');
      const completion = await client(server).chat.completions.create(short());
      assert.equal(completion.choices[0]!.message.content, grad.runs.greedy!.text);
    });
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
  const own = await LocalEngine.start(TINY_MODEL, FP32);
  const request = { messages: [{ role: 'user' as const, content: 'What is in the image?' }], image: null, decoding: 'greedy' as const, maxNewTokens: 3000 };
  const running = own.stream(request);
  const waiting = own.stream(request);
  assert.equal(typeof (await running.next()).value, 'string');
  const waitingResult = waiting.next().then(() => 'answered', (err: Error) => err.name);
  await own.close();
  await assert.rejects(running.next(), { name: 'AbortError' });
  assert.equal(await waitingResult, 'AbortError');
});

