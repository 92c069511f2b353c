// What the OpenAI-compatible server (tiny fixture model) answers besides chat: the page, /health, /v1/models and
// HEAD; 404 and 405 as JSON errors; the Host guard against DNS rebinding; the API key that /v1 needs when set.

import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { before, describe, test } from 'node:test';
import type { ChatServer } from '../src/server/server.js';
import { apiError, client } from './helpers/server.js';
import { grad, serveTinyModel, TINY_MODEL, wireMessages } from './helpers/tiny-model.js';

const startServer = serveTinyModel();

describe('the page, /health, /v1/models, HEAD, 404 and 405, and the Host guard', () => {
  let server: ChatServer;
  before(async () => {
    server = await startServer();
  });

  test('GET /v1/models lists the model; /health answers; the page is served', async () => {
    const models = await client(server).models.list();
    assert.deepEqual(models.data.map((m) => m.id), [TINY_MODEL]);
    const status = await (await fetch(`${server.url}/health`)).json();
    assert.equal((status as { status: string }).status, 'ok');
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /^text\/html/);
    assert.match(page.headers.get('content-security-policy')!, /default-src 'none'/);
  });

  test('GET /v1/models/{id} is the listed model for its id, and a 404 naming "model" for any other', async () => {
    const id = TINY_MODEL;
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
    for (const path of ['/', '/app.js', '/health', '/v1/models', `/v1/models/${encodeURIComponent(TINY_MODEL)}`]) {
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
