// The in-browser page (src/web-app) in headless Chromium, on an export folder assembled here with a stand-in engine
// (lib/browser/web-model.js with the real engine's API, written below): the download with its progress bar, Cache Storage
// across reloads and exports, clear messages for damaged exports and images, the chat, the backends, live camera mode.
// Screenshots of the chat, a load error and live mode are saved in test-artifacts/.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { fixturePath, repoRoot } from './helpers/fixtures.js';
import { writeY4m } from './helpers/camera.js';

// Browser globals that the functions run inside the page use (this project compiles without the DOM library).
declare const window: any;
declare const document: any;
declare const caches: any;
declare const navigator: any;
declare const MutationObserver: new (callback: () => void) => { observe(node: unknown, options: object): void };

const CHROMIUM = '/usr/bin/chromium';
const LAUNCH_ARGS = [
  '--headless', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];
const GRAD = fixturePath('minicpmv2-tiny', 'images', 'grad_100x80.png');
const WEIGHTS_BYTES = 3 * 1024 * 1024;
const ARTIFACTS = join(repoRoot, 'test-artifacts');

/**
 * Stands in for lib/browser/web-model.js: it reads every file through the page's bytes() and url(), records what it
 * was given in window.fakeEngine, and answers with a description of its request, a word every 5 ms (a "long" question: 2000
 * words, a word every 20 ms). An image counts as encoded unless its pixels equal the previous request's image at that place.
 */
const FAKE_ENGINE = `
export async function openWebModel({ manifest, bytes, url, ort, backend, threads }) {
  const config = JSON.parse(new TextDecoder().decode(await bytes('config.json')));
  const sizes = {};
  for (const file of manifest.files) {
    if (file.kind !== 'small') sizes[file.path] = (await (await fetch(await url(file.path))).arrayBuffer()).byteLength;
  }
  const checksum = (data) => data.reduce((sum, byte, i) => (sum + byte * (i % 251 + 1)) % 1000000007, 0);
  const fake = window.fakeEngine = { config, sizes, bundle: ort.bundle, backend, threads, requests: [] };
  let previous = [];
  return {
    backend, name: manifest.name, contextLength: 4096,
    async *stream(request, signal) {
      const images = request.images.map((i) => ({ width: i.width, height: i.height, checksum: checksum(i.data) }));
      fake.requests.push({ ...request, images });
      const keys = images.map((i) => JSON.stringify(i));
      const encoded = keys.filter((key, i) => previous[i] !== key).length;
      previous = keys;
      const question = request.messages.at(-1).content;
      const long = question.includes('long');
      const words = long ? Array.from({ length: 2000 }, (_, i) => 'word' + i + ' ')
        : [images.length + ' images; ', 'turn ' + request.messages.filter((m) => m.role === 'user').length + ': ', question];
      let text = '';
      for (const word of words.slice(0, request.maxNewTokens ?? words.length)) {
        await new Promise((resolve) => setTimeout(resolve, long ? 20 : 5));
        if (signal?.aborted) throw signal.reason;
        text += word;
        yield word;
      }
      const n = Math.min(words.length, request.maxNewTokens ?? words.length);
      return { text, prompt_ids: [1, 2, 3, 4], output_ids: Array.from({ length: n }, (_, i) => 10 + i),
        finish_reason: n < words.length ? 'length' : 'stop',
        timings: { encode_s: 0.5 * encoded, prefill_s: 0.25, decode_s: 0.5, prompt_tokens: 4, new_tokens: n, images_encoded: encoded, reused_tokens: 0 } };
    },
    async release() {},
  };
}
`;

type ModelFiles = Record<string, { data: Buffer; kind: 'small' | 'graph' | 'weights' }>;

function modelFiles(): ModelFiles {
  return {
    'config.json': { data: Buffer.from(JSON.stringify({ model_type: 'minicpmv', note: '中文' })), kind: 'small' },
    'tokenizer.json': { data: Buffer.from('{"model": {"vocab": {"你好": 1}}}'), kind: 'small' },
    'graphs/decoder.onnx': { data: randomBytes(1000), kind: 'graph' },
    'graphs/decoder.weights-0.bin': { data: randomBytes(WEIGHTS_BYTES), kind: 'weights' },
  };
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * Writes an export folder the way `omnilmm export-web` lays it out: the page, the engine, the vendored bundles, the
 * model files and their manifest. `listed` overrides what the manifest says about files (sizes, hashes, files not written).
 */
function writeExport(dir: string, files: ModelFiles, listed: ModelFiles = files): void {
  const put = (path: string, data: string | Buffer) => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), data);
  };
  put('index.html', readFileSync(join(repoRoot, 'src', 'web-app', 'index.html')));
  for (const name of ['app.js', 'app.css', 'storage.js']) put(`app/${name}`, readFileSync(join(repoRoot, 'src', 'web-app', name)));
  put('app/live-camera.js', readFileSync(join(repoRoot, 'src', 'web', 'live-camera.js')));
  put('app/chat-shell.js', readFileSync(join(repoRoot, 'src', 'web', 'chat-shell.js')));
  put('app/chat.css', readFileSync(join(repoRoot, 'src', 'web', 'app.css')));
  put('lib/browser/web-model.js', FAKE_ENGINE);
  put('vendor/onnxruntime-web/ort.wasm.min.mjs', "export const bundle = 'wasm';\n");
  put('vendor/onnxruntime-web/ort.webgpu.min.mjs', "export const bundle = 'webgpu';\n");
  mkdirSync(join(dir, 'vendor', 'jinja'), { recursive: true });
  copyFileSync(join(repoRoot, 'node_modules', '@huggingface', 'jinja', 'dist', 'index.js'), join(dir, 'vendor', 'jinja', 'index.js'));
  for (const [path, file] of Object.entries(files)) put(`model/${path}`, file.data);
  put('model/manifest.json', JSON.stringify({
    format: 'omnilmm-web/1', model_type: 'minicpmv', name: 'MiniCPM-V test export', model_id: 'test', precision: 'int4', vision_precision: 'int4',
    files: Object.entries(listed).map(([path, file]) => ({ path, bytes: file.data.length, sha256: sha256(file.data), kind: file.kind })),
  }));
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.json': 'application/json',
};

/** A static file server that logs every request's path; it can isolate the page (COOP/COEP) and sends large files slowly. */
class StaticServer {
  readonly requests: string[] = [];
  private constructor(private readonly server: Server, readonly url: string) {}

  static async start(root: string, isolated: boolean): Promise<StaticServer> {
    let self: StaticServer | undefined;
    const server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
      self!.requests.push(path);
      const file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path));
      let size: number;
      try {
        size = statSync(file).size;
      } catch {
        res.writeHead(404).end('not found');
        return;
      }
      const headers: Record<string, string | number> = { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': size };
      if (isolated) Object.assign(headers, { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
      res.writeHead(200, headers);
      // 64 KiB chunks a millisecond apart: the download takes long enough to show its progress.
      const stream = createReadStream(file, { highWaterMark: 64 * 1024 });
      stream.on('data', (chunk) => {
        stream.pause();
        res.write(chunk, () => setTimeout(() => stream.resume(), 1));
      });
      stream.on('end', () => res.end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    self = new StaticServer(server, `http://127.0.0.1:${port}`);
    return self;
  }

  modelRequests(): string[] {
    return this.requests.filter((path) => path.includes('/model/'));
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

let root: string;
let profile: string;
let plain: StaticServer;
let isolated: StaticServer;
let context: BrowserContext;
const foreignRequests: string[] = [];

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'omnilmm-web-app-'));
  profile = mkdtempSync(join(tmpdir(), 'omnilmm-chromium-'));
  const video = join(root, 'camera.y4m');
  writeY4m(video);
  plain = await StaticServer.start(root, false);
  isolated = await StaticServer.start(root, true);
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // A start takes a few seconds; on a busy machine many more than Playwright's default 30 s may pass.
    timeout: 300_000,
    viewport: { width: 1280, height: 800 },
    args: [...LAUNCH_ARGS, '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--use-file-for-fake-video-capture=${video}`],
  });
  // Waits are for things that happen in seconds on an idle machine; a busy one may take much longer.
  context.setDefaultTimeout(600_000);
  // The page must work offline: anything not addressed to the static servers is recorded and refused.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${plain.url}/`) || url.startsWith(`${isolated.url}/`) || /^(data|blob):/.test(url)) return route.continue();
    foreignRequests.push(url);
    return route.abort();
  });
});

after(async () => {
  await context?.close();
  await plain?.close();
  await isolated?.close();
  for (const dir of [root, profile]) if (dir) rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(foreignRequests, []);
});

async function openPage(url: string, ctx: BrowserContext = context): Promise<Page> {
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/status of 404/.test(msg.text())) errors.push(msg.text());
  });
  page.once('close', () => assert.deepEqual(errors, [], 'no script errors on the page'));
  await page.goto(url);
  return page;
}

/** Resolves to null once the model is loaded, or to the message omnilmm.ready rejected with. */
function loadResult(page: Page): Promise<string | null> {
  return page.evaluate(() => window.omnilmm.ready.then(() => null, (err: Error) => err.message));
}

const status = (page: Page) => page.evaluate(() => window.omnilmm.status()) as Promise<{
  backend: string; threads: number; loadedFromStorage: boolean; downloadedBytes: number;
}>;

/** The stored entries' URLs that fall under a folder of the export root. */
const storedUrls = (page: Page, folder: string): Promise<string[]> => page.evaluate(async (prefix: string) => {
  const cache = await caches.open('omnilmm-model-v1');
  return (await cache.keys()).map((request: { url: string }) => request.url).filter((url: string) => url.includes(prefix)).sort();
}, `/${folder}/model/`);

test('the model downloads with one progress bar, is checked and stored; a reload downloads nothing; a new export only what changed', async () => {
  const files = modelFiles();
  const dir = join(root, 'store');
  writeExport(dir, files);
  const total = Object.values(files).reduce((sum, f) => sum + f.data.length, 0);
  const page = await context.newPage();
  // Every state of the progress bar and its text, recorded from the first moment of the page.
  await page.addInitScript(() => {
    window.progressSeen = [];
    new MutationObserver(() => {
      const bar = document.getElementById('load-progress');
      const text = document.getElementById('load-text')?.textContent;
      const last = window.progressSeen.at(-1);
      if (bar && (!last || last.value !== bar.value || last.text !== text)) window.progressSeen.push({ value: bar.value, max: bar.max, text });
    }).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
  });
  await page.goto(`${plain.url}/store/`);

  // 1. The first visit downloads each file once, with progress, and the engine gets the files' contents.
  assert.equal(await loadResult(page), null);
  assert.deepEqual(await status(page), { backend: 'wasm', threads: 1, loadedFromStorage: false, downloadedBytes: total });
  assert.deepEqual(plain.modelRequests().sort(), ['/store/model/manifest.json', ...Object.keys(files).map((p) => `/store/model/${p}`)].sort());
  const seen = await page.evaluate(() => window.progressSeen) as { value: number; max: number; text: string }[];
  const during = seen.filter((s) => s.text.startsWith('model/graphs/decoder.weights-0.bin — ') && s.value > 0 && s.value < total);
  assert.ok(during.length >= 3, `the bar moved while the weights downloaded: ${JSON.stringify(seen.slice(0, 8))}`);
  for (const [a, b] of seen.slice(1).map((s, i) => [seen[i]!, s] as const)) assert.ok(b.value >= a.value, 'the bar never goes back');
  assert.ok(seen.some((s) => s.max === total && s.value === total));
  assert.match(during[0]!.text, /^model\/graphs\/decoder\.weights-0\.bin — \d+\.\d MB of 3\.1 MB$/);
  assert.ok(await page.isHidden('#load-panel'), 'the progress bar goes once the model is loaded');
  const fake = await page.evaluate(() => window.fakeEngine);
  assert.deepEqual(fake.config, { model_type: 'minicpmv', note: '中文' });
  assert.deepEqual(fake.sizes, { 'graphs/decoder.onnx': 1000, 'graphs/decoder.weights-0.bin': WEIGHTS_BYTES });
  assert.equal(fake.bundle, 'wasm');
  assert.equal(await page.textContent('#model-name'), 'MiniCPM-V test export');
  assert.equal(await page.textContent('#engine-info'), 'WASM · 1 thread');

  // 2. A reload reads every file from Cache Storage: no model file is requested again.
  plain.requests.length = 0;
  await page.reload();
  assert.equal(await loadResult(page), null);
  assert.deepEqual(await status(page), { backend: 'wasm', threads: 1, loadedFromStorage: true, downloadedBytes: 0 });
  assert.deepEqual(plain.modelRequests(), ['/store/model/manifest.json']);
  assert.deepEqual((await page.evaluate(() => window.fakeEngine)).sizes, fake.sizes);

  // 3. A new export in the same place: only the file whose hash changed is downloaded; the old copy is deleted.
  const changed = { ...files, 'graphs/decoder.onnx': { data: randomBytes(1200), kind: 'graph' as const } };
  writeExport(dir, changed);
  plain.requests.length = 0;
  await page.reload();
  assert.equal(await loadResult(page), null);
  assert.deepEqual(await status(page), { backend: 'wasm', threads: 1, loadedFromStorage: false, downloadedBytes: 1200 });
  assert.deepEqual(plain.modelRequests(), ['/store/model/manifest.json', '/store/model/graphs/decoder.onnx']);
  assert.equal((await page.evaluate(() => window.fakeEngine)).sizes['graphs/decoder.onnx'], 1200);
  const stored = await storedUrls(page, 'store');
  assert.equal(stored.length, 2 * Object.keys(changed).length, 'each file and its verified mark, nothing else');
  assert.ok(stored.some((url) => url.includes(`decoder.onnx?sha256=${sha256(changed['graphs/decoder.onnx'].data)}`)));
  assert.ok(!stored.some((url) => url.includes(sha256(files['graphs/decoder.onnx']!.data))), 'the old file is gone');
  await page.close();
});

test('a truncated, a damaged and a missing file each give a one-line message naming the file; nothing of it is stored', async () => {
  const files = modelFiles();
  const weights = files['graphs/decoder.weights-0.bin']!;
  const cases = [
    {
      folder: 'truncated',
      files: { ...files, 'graphs/decoder.onnx': { data: Buffer.from('twelve bytes'), kind: 'graph' as const } },
      message: 'model/graphs/decoder.onnx: size 12 bytes, expected 1000 — the export is incomplete; export it again',
    },
    {
      folder: 'damaged',
      files: { ...files, 'graphs/decoder.weights-0.bin': { data: Buffer.from(weights.data).fill(7, 1000, 2000), kind: 'weights' as const } },
      message: new RegExp(`^model/graphs/decoder\\.weights-0\\.bin: sha256 [0-9a-f]{12}… differs from the manifest's ${sha256(weights.data).slice(0, 12)}… — the file is damaged; export it again$`),
    },
    {
      folder: 'missing',
      files: Object.fromEntries(Object.entries(files).filter(([path]) => path !== 'tokenizer.json')),
      message: 'model/tokenizer.json: not found (HTTP 404) — the export is incomplete; export it again',
    },
  ];
  for (const c of cases) {
    writeExport(join(root, c.folder), c.files, files);
    const page = await openPage(`${plain.url}/${c.folder}/`);
    const message = await loadResult(page);
    const shown = await page.locator('#load-error').textContent();
    if (typeof c.message === 'string') assert.equal(message, c.message);
    else assert.match(message!, c.message);
    assert.equal(shown, message, 'the page shows the message omnilmm.ready rejects with');
    assert.ok(await page.isVisible('#load-error'));
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, `web-app-${c.folder}.png`) });
    const runError = await page.evaluate(() => window.omnilmm.run({ messages: [{ role: 'user', content: 'hi' }] }).then(() => null, (e: Error) => e.message));
    assert.equal(runError, message);
    const badPath = c.folder === 'missing' ? 'tokenizer.json' : c.folder === 'truncated' ? 'graphs/decoder.onnx' : 'graphs/decoder.weights-0.bin';
    assert.ok(!(await storedUrls(page, c.folder)).some((url) => url.includes(badPath)), `${c.folder}: nothing of ${badPath} is stored`);
    await page.close();
  }
});

test('the chat: an image (its exact pixels), a streamed answer with speeds, a Chinese second turn, Stop, New chat; omnilmm.run', async () => {
  writeExport(join(root, 'chat'), modelFiles());
  const page = await openPage(`${plain.url}/chat/`);
  assert.equal(await loadResult(page), null);
  await page.setInputFiles('#file-input', GRAD);
  await page.locator('#preview').waitFor();
  const { data, info } = await sharp(GRAD).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const checksum = [...data].reduce((sum, byte, i) => (sum + byte * (i % 251 + 1)) % 1000000007, 0);

  // 1. The first question: the image's RGBA pixels exactly as stored in the PNG, the answer streamed, its speeds shown.
  await page.fill('#question', 'What is this?');
  await page.press('#question', 'Enter');
  const answers = page.locator('.message.assistant');
  await answers.first().and(page.locator('[data-state="done"]')).waitFor();
  assert.equal(await answers.first().locator('.text').textContent(), '1 images; turn 1: What is this?');
  assert.equal(await answers.first().locator('.meta').textContent()
    .then((t: string | null) => t!.replace(/ \d+\.\d s$/, ' N s')), '3 tokens · prefill 16.0 tok/s · decode 6.0 tok/s · image encoding 0.5 s · N s');
  let requests = await page.evaluate(() => window.fakeEngine.requests);
  assert.deepEqual(requests[0].images, [{ width: info.width, height: info.height, checksum }]);
  assert.equal(requests[0].decoding, 'greedy');

  // 2. A second turn in Chinese keeps the conversation and the image; the engine sees the same pixels again.
  await page.fill('#question', '这是什么颜色？');
  await page.press('#question', 'Enter');
  await answers.nth(1).and(page.locator('[data-state="done"]')).waitFor();
  assert.equal(await answers.nth(1).locator('.text').textContent(), '1 images; turn 2: 这是什么颜色？');
  requests = await page.evaluate(() => window.fakeEngine.requests);
  assert.deepEqual(requests[1].messages.map((m: { role: string }) => m.role), ['user', 'assistant', 'user']);
  assert.equal(requests[1].images[0].checksum, checksum);
  assert.doesNotMatch((await answers.nth(1).locator('.meta').textContent())!, /image encoding/);
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'web-app-chat.png') });

  // 3. Sampling settings reach the engine; a long answer is stopped and stays as it was shown.
  await page.getByText('Sampling', { exact: true }).click();
  await page.fill('#top-k', '40');
  await page.fill('#max-tokens', '3000');
  await page.fill('#question', 'Tell a long story.');
  await page.press('#question', 'Enter');
  await answers.nth(2).and(page.locator('[data-state="streaming"]')).waitFor();
  await page.click('#stop');
  await answers.nth(2).and(page.locator('[data-state="stopped"]')).waitFor();
  assert.match((await answers.nth(2).locator('.meta').textContent())!, /^stopped · \d+\.\d s$/);
  const sample = (await page.evaluate(() => window.fakeEngine.requests))[2];
  assert.deepEqual([sample.decoding, sample.temperature, sample.topP, sample.topK, sample.maxNewTokens], ['sample', 0.7, 0.8, 40, 3000]);
  assert.ok(await page.isVisible('#send'));

  // 4. New chat clears the conversation; the hook answers with ids and the backend.
  await page.click('#new-chat');
  assert.equal(await answers.count(), 0);
  const url = `data:image/png;base64,${readFileSync(GRAD).toString('base64')}`;
  const result = await page.evaluate((image: string) => window.omnilmm.run({
    images: [image], messages: [{ role: 'user', content: 'Describe it.' }], decoding: 'greedy', maxNewTokens: 2, seed: 1,
  }), url);
  assert.equal(result.text, '1 images; turn 1: ');
  assert.deepEqual([result.prompt_ids, result.output_ids, result.backend, result.finish_reason], [[1, 2, 3, 4], [10, 11], 'wasm', 'length']);
  const hooked = (await page.evaluate(() => window.fakeEngine.requests)).at(-1);
  assert.deepEqual([hooked.images[0].checksum, hooked.seed, hooked.maxNewTokens], [checksum, 1, 2]);
  await page.close();
});

test('a corrupt image gives a clear message through omnilmm.run and in the page', async () => {
  writeExport(join(root, 'corrupt'), modelFiles());
  const page = await openPage(`${plain.url}/corrupt/`);
  assert.equal(await loadResult(page), null);
  const corrupt = Buffer.concat([readFileSync(GRAD).subarray(0, 16), Buffer.alloc(64, 0xab)]);
  const message = await page.evaluate((image: string) => window.omnilmm.run({
    images: [image], messages: [{ role: 'user', content: 'What is it?' }], decoding: 'greedy',
  }).then(() => null, (e: Error) => e.message), `data:image/png;base64,${corrupt.toString('base64')}`);
  assert.equal(message, 'image 1: this file is not an image the browser can decode');
  await page.setInputFiles('#file-input', { name: 'broken.png', mimeType: 'image/png', buffer: corrupt });
  await page.locator('.message.error', { hasText: '“broken.png”: this file is not an image the browser can decode' }).waitFor();
  assert.ok(await page.isHidden('#preview'));
  assert.deepEqual(await page.evaluate(() => window.fakeEngine.requests), [], 'nothing reached the engine');
  await page.close();
});

test('live camera mode answers frame after frame; an unchanged frame is sent again and its encoding reused; one frame goes to the chat', async () => {
  writeExport(join(root, 'live'), modelFiles());
  const page = await openPage(`${plain.url}/live/`);
  assert.equal(await loadResult(page), null);
  await page.click('#open-camera');
  await page.waitForFunction(() => document.getElementById('camera-video').videoWidth > 0);
  assert.equal(await page.inputValue('#live-question'), 'What do you see? What changed?');
  await page.click('#live-toggle');
  const done = page.locator('#live-log li[data-state="done"]');
  await done.nth(2).waitFor();
  await page.click('#live-toggle');
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'web-app-live.png') });
  assert.equal(await page.textContent('#live-toggle'), 'Start live');

  // The log is newest first: frame 1 was encoded, the identical frames after it were the same pixels again.
  const metas = await done.locator('.meta').allTextContents();
  assert.match(metas.at(-1)!, /^frame 1 · \d+\.\d s · new frame · re-encoded$/);
  for (const meta of metas.slice(-3, -1)) assert.match(meta, /^frame \d+ · \d+\.\d s · unchanged, last frame sent again · image reused$/);
  assert.equal(await done.last().locator('.text').textContent(), '1 images; turn 1: What do you see? What changed?');
  assert.match((await page.textContent('#live-latency'))!, /^last frame: \d+\.\d s$/);
  // The camera's frames differ slightly, so only sending the last sent frame again gives the engine equal pixels.
  const requests = await page.evaluate(() => window.fakeEngine.requests);
  assert.ok(requests.length >= 3);
  for (const request of requests) {
    assert.deepEqual(request.messages, [{ role: 'user', content: 'What do you see? What changed?' }], 'each frame is a single-turn question');
    assert.deepEqual(request.images, requests[0].images);
    assert.equal(request.images[0].width, 64);
  }

  // Out of live mode, Capture and ask puts one frame into the chat with the default question.
  await page.click('#camera-capture');
  await page.locator('.message.assistant[data-state="done"]').waitFor();
  assert.equal(await page.textContent('.message.assistant .text'), '1 images; turn 1: What is in this picture?');
  assert.match((await page.getAttribute('#preview', 'src'))!, /^data:image\/png;base64,/);
  assert.ok(await page.isHidden('#camera-dialog'));
  await page.close();
});

test('threads: 1 without cross-origin isolation, min(4, cores) with COOP/COEP; ?backend=webgpu without WebGPU says so', async () => {
  writeExport(join(root, 'backends'), modelFiles());
  const page = await openPage(`${isolated.url}/backends/?backend=wasm`);
  assert.equal(await loadResult(page), null);
  const cores = await page.evaluate(() => navigator.hardwareConcurrency) as number;
  assert.equal(await page.evaluate(() => window.crossOriginIsolated), true);
  const { backend, threads } = await status(page);
  assert.deepEqual([backend, threads], ['wasm', Math.min(4, cores)]);
  assert.equal((await page.evaluate(() => window.fakeEngine)).threads, Math.min(4, cores));
  await page.close();

  // This browser runs without the flags that give headless Chromium a WebGPU adapter.
  isolated.requests.length = 0;
  const webgpu = await openPage(`${isolated.url}/backends/?backend=webgpu`);
  const message = 'this browser has no WebGPU; open the page without ?backend=webgpu to use WASM';
  assert.equal(await loadResult(webgpu), message);
  assert.equal(await webgpu.textContent('#load-error'), message);
  assert.deepEqual(isolated.modelRequests(), [], 'nothing downloaded');
  await webgpu.close();
});

test('with WebGPU (SwiftShader): ?backend=webgpu loads the WebGPU bundle; without it the software adapter leaves WASM', async () => {
  const profileDir = mkdtempSync(join(tmpdir(), 'omnilmm-chromium-'));
  const gpuContext = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM, headless: true, timeout: 300_000, args: [...LAUNCH_ARGS, '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader'],
  });
  gpuContext.setDefaultTimeout(600_000);
  try {
    writeExport(join(root, 'gpu'), modelFiles());
    const forced = await openPage(`${plain.url}/gpu/?backend=webgpu`, gpuContext);
    assert.equal(await loadResult(forced), null);
    assert.equal((await status(forced)).backend, 'webgpu');
    assert.equal((await forced.evaluate(() => window.fakeEngine)).bundle, 'webgpu');
    assert.equal(await forced.textContent('#engine-info'), 'WEBGPU · 1 thread');
    await forced.close();
    const chosen = await openPage(`${plain.url}/gpu/`, gpuContext);
    assert.equal(await loadResult(chosen), null);
    assert.equal((await status(chosen)).backend, 'wasm');
    assert.equal((await chosen.evaluate(() => window.fakeEngine)).bundle, 'wasm');
    await chosen.close();
  } finally {
    await gpuContext.close();
    rmSync(profileDir, { recursive: true, force: true });
  }
});
