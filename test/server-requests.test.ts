// Bad requests to the OpenAI-compatible server on the tiny fixture model get OpenAI error objects with the right
// status and field: wrong types, values the model cannot take, data that is no image, bodies and images too large
// (refused before or after they are sent, without breaking the connection), and image URLs that are not allowed.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { isPublicAddress } from '../src/server/remote-image.js';
import type { ChatServer } from '../src/server/server.js';
import { fixturePath } from './helpers/fixtures.js';
import { apiError, client, grayPng, pngDataUrl, postRaw, waitFor } from './helpers/server.js';
import { dataUrl, grad, serveTinyModel, TINY_FIXTURE, wireMessages } from './helpers/tiny-model.js';

const startServer = serveTinyModel();

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

describe('bad requests get OpenAI error objects with the right status', () => {
  let server: ChatServer;
  before(async () => {
    server = await startServer();
  });

  test('malformed JSON, a non-object body and a wrong content type are 400', async () => {
    for (const body of ['{"messages": [', '[1, 2]', '']) {
      const res = await postRaw(server, body);
      assert.equal(res.status, 400, body);
      assert.deepEqual(Object.keys(res.body.error!).sort(), ['code', 'message', 'param', 'type']);
      assert.equal(res.body.error!.type, 'invalid_request_error');
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
    assert.equal(huge.body.error!.param, 'max_tokens');
    assert.match(huge.body.error!.message, /"max_tokens" is 1000000000, more than the model's context of 4096 tokens/);
    const completion = await postRaw(server, JSON.stringify({ messages, max_completion_tokens: 5000 }));
    assert.equal(completion.body.error!.param, 'max_completion_tokens');
    // JSON.parse reads 1e400 as Infinity.
    const overflow = await postRaw(server, `{"messages": ${JSON.stringify(messages)}, "temperature": 1e400}`);
    assert.equal(overflow.status, 400);
    assert.match(overflow.body.error!.message, /"temperature" must be a number, got Infinity/);
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
    const notAnImage = pngDataUrl(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'));
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
    const strip = await grayPng(1, 65546);
    const err = await apiError(client(server).chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: pngDataUrl(strip) } }] }],
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
    const bomb = await grayPng(8000, 6000);
    assert.ok(bomb.length < 1 << 20);
    const big = await apiError(client(server).chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: pngDataUrl(bomb) } }] }],
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

});

describe('remote images', () => {
  let server: ChatServer;
  let imageHost: Server;
  let hits = 0;
  before(async () => {
    server = await startServer({ allowRemoteImages: true });
    const png = readFileSync(fixturePath(TINY_FIXTURE, grad.input.file));
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
