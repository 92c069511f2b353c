// `serve --web`'s static file server on a scratch folder: its files with the cross-origin isolation headers, and
// request paths that are malformed or name no file (or one outside the folder) answered 400 or 404, the site still up.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { StaticSite } from '../src/server/static-site.js';

const INDEX = '<!doctype html><title>site</title>\n';
const SCRIPT = 'export const answer = 42;\n';
const SECRET = 'beside the site, never served\n';

const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-static-site-'));
let site: StaticSite;

before(async () => {
  const root = join(scratch, 'site');
  mkdirSync(join(root, 'model'), { recursive: true });
  writeFileSync(join(root, 'index.html'), INDEX);
  writeFileSync(join(root, 'model', 'app.js'), SCRIPT);
  writeFileSync(join(scratch, 'secret.txt'), SECRET);
  site = await StaticSite.start(root);
});
after(async () => {
  await site.close();
  rmSync(scratch, { recursive: true, force: true });
});

/**
 * Sends the request target as it is written (fetch would normalize it) and resolves with the answer. A server whose
 * handler threw never answers: the request gives up after 10 s.
 */
function send(target: string, method = 'GET'): Promise<{ status: number | undefined; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(site.url, { path: target, method, signal: AbortSignal.timeout(10_000) }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject).end();
  });
}

async function assertSiteServes(): Promise<void> {
  const index = await send('/');
  assert.equal(index.status, 200);
  assert.equal(index.body, INDEX);
}

test('files are served cross-origin isolated; HEAD answers the same headers without the body', async () => {
  const script = await send('/model/app.js');
  assert.equal(script.status, 200);
  assert.equal(script.body, SCRIPT);
  assert.equal(script.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal(script.headers['cross-origin-opener-policy'], 'same-origin');
  assert.equal(script.headers['cross-origin-embedder-policy'], 'require-corp');
  const head = await send('/model/app.js', 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], String(Buffer.byteLength(SCRIPT)));
  assert.equal(head.body, '');
});

test('a malformed URL is 400 and the site goes on serving', async () => {
  // Percent-encoding that is not UTF-8 (a cut-off sequence, a lone %), and a target that is no URL at all.
  for (const target of ['/%E0%A4%A', '/model/%', '/%FF.html', 'http://[']) {
    const answer = await send(target);
    assert.equal(answer.status, 400, target);
    assert.match(answer.body, /malformed URL/, target);
    await assertSiteServes();
  }
});

test('a path that names no file is 404 and the site goes on serving: a NUL byte, under a file, a name too long', async () => {
  for (const target of ['/%00', '/index.html%00.js', '/index.html/app.js', `/${'a'.repeat(300)}.js`, '/model/missing.js', '/model']) {
    const answer = await send(target);
    assert.equal(answer.status, 404, target.slice(0, 40));
    await assertSiteServes();
  }
});

test('a path out of the folder is 404, however its dots and slashes are encoded', async () => {
  for (const target of ['/../secret.txt', '/..%2fsecret.txt', '/%2e%2e/secret.txt', '/model/..%2F..%2Fsecret.txt', '/%2E%2E%2Fsecret.txt']) {
    const answer = await send(target);
    assert.equal(answer.status, 404, target);
    assert.notEqual(answer.body, SECRET, target);
  }
});
