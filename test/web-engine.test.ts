// The tiny MiniCPM-V 2.0, 4.6 and 1.0 fixtures exported with `omnilmm export-web` and run in headless Chromium
// through the page's hook: on WASM the greedy answers are token-exact with the fixtures' goldens (prompt ids, new ids, text),
// and a second load reads the weights from browser storage; on WebGPU (Chromium's SwiftShader adapter, on the CPU)
// the greedy answers equal the goldens too; live camera mode answers frame after frame, reusing an unchanged frame's
// encoding; `serve --web` hosts an export; export-web's bad input is refused with a clear message.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { StaticSite } from '../src/server/static-site.js';
import { writeY4m } from './helpers/camera.js';
import { fixturePath, readFixtureJson, repoRoot } from './helpers/fixtures.js';

declare const navigator: { gpu?: { requestAdapter(): Promise<{ info?: { vendor: string; architecture: string } } | null> } };
declare const document: { getElementById(id: string): any };
declare const window: {
  omnilmm: {
    ready: Promise<unknown>;
    run(request: object): Promise<{ text: string; prompt_ids: number[]; output_ids: number[]; backend: string }>;
    status(): { backend: string; threads: number; loadedFromStorage: boolean };
  };
};

const FIXTURE = 'minicpmv2-tiny';
const FIXTURE_46 = 'minicpmv46-tiny';
const FIXTURE_1 = 'minicpmv1-tiny';
const CASES_1 = ['tall_hk_like', 'zh_gray', 'two_turn_worldmap'];
/** MiniCPM-V 4.6's chats with images or none (a video is read where the model runs: Node only). */
const CASES_46 = ['text_only', 'single_image_grad', 'multi_image_uniform', 'multi_turn_system', 'long_prompt_hk_4x', 'mixed_grid_16x', 'eos_stop'];

interface Chat46 {
  images: { file: string }[];
  messages: unknown[];
  downsample_mode: '16x' | '4x';
  chat_template_kwargs: { enable_thinking?: boolean };
  input_ids: number[];
  runs: { greedy: { new_token_ids: number[]; text: string; generate_kwargs: { max_new_tokens: number } } };
}
const CASES = ['single_turn_grad', 'zh_plain_gray', 'two_turn_wide'];

interface LlmCase {
  input: { file: string } | null;
  msgs: { role: 'user' | 'assistant'; content: string }[];
  input_ids: number[];
  runs: Record<string, { new_token_ids: number[]; text: string; chat_kwargs: { max_new_tokens: number } }>;
}


let out: string;
let out46: string;
let out1: string;
let profile: string;
let site: StaticSite;
let url: string;
let context: BrowserContext;
const requests: string[] = [];

before(async () => {
  out = mkdtempSync(join(tmpdir(), 'omnilmm-export-'));
  out46 = join(out, 'minicpmv46');
  out1 = join(out, 'minicpmv1');
  for (const [fixture, folder] of [[FIXTURE, out], [FIXTURE_46, out46], [FIXTURE_1, out1]] as const) {
    await promisify(execFile)(process.execPath, [
      join(repoRoot, 'dist/src/cli/main.js'), 'export-web', '--model', fixturePath(fixture, 'model'), '--out', folder,
      '--precision', 'fp32', '--vision-precision', 'fp32',
    ]);
  }
  // Served as `omnilmm serve --web` serves it: cross-origin isolated (COOP/COEP), so WASM runs on two threads.
  site = await StaticSite.start(out, { onRequest: (path) => requests.push(path) });
  url = site.url;
  profile = mkdtempSync(join(tmpdir(), 'omnilmm-chromium-'));
  const video = join(out, 'camera.y4m');
  writeY4m(video);
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 300_000,
    args: [
      '--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // A WebGPU adapter on the CPU (SwiftShader): without these flags Chromium here has none.
      '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader',
      // A camera that plays the test's video, with no permission prompt.
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--use-file-for-fake-video-capture=${video}`,
    ],
  });
  context.setDefaultTimeout(600_000);
});

after(async () => {
  await context?.close();
  await site?.close();
  for (const dir of [out, profile]) if (dir) rmSync(dir, { recursive: true, force: true });
});

async function openPage(backend: 'wasm' | 'webgpu', folder = ''): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (err) => assert.fail(`script error on the page: ${err.message}`));
  await page.goto(`${url}${folder}/?backend=${backend}`);
  await page.waitForFunction(() => window.omnilmm !== undefined);
  await page.evaluate(() => window.omnilmm.ready);
  return page;
}

function dataUrl(file: string, fixture = FIXTURE): string {
  const type = file.endsWith('.jpg') ? 'jpeg' : 'png';
  return `data:image/${type};base64,${readFileSync(fixturePath(fixture, file)).toString('base64')}`;
}

async function checkCases(page: Page, backend: string, fixture = FIXTURE, cases = CASES): Promise<void> {
  for (const name of cases) {
    const c = readFixtureJson<LlmCase>(fixture, 'llm', `${name}.json`);
    const greedy = c.runs['greedy']!;
    const request = {
      images: c.input ? [dataUrl(c.input.file, fixture)] : [], messages: c.msgs, decoding: 'greedy', maxNewTokens: greedy.chat_kwargs.max_new_tokens,
    };
    const result = await page.evaluate((r) => window.omnilmm.run(r), request);
    assert.equal(result.backend, backend);
    assert.deepEqual(result.prompt_ids, c.input_ids, `${name}: prompt ids`);
    assert.deepEqual(result.output_ids, greedy.new_token_ids, `${name}: new ids`);
    assert.equal(result.text, greedy.text, `${name}: text`);
  }
}

test('WASM: greedy answers are token-exact with the fixture; a reload reads the model from browser storage', async () => {
  const page = await openPage('wasm');
  assert.equal((await page.evaluate(() => window.omnilmm.status())).threads, 2);
  await checkCases(page, 'wasm');
  await page.close();
  const before = requests.filter((p) => p.startsWith('/model/') && p !== '/model/manifest.json').length;
  const again = await openPage('wasm');
  assert.equal((await again.evaluate(() => window.omnilmm.status())).loadedFromStorage, true);
  assert.equal(requests.filter((p) => p.startsWith('/model/') && p !== '/model/manifest.json').length, before, 'no model file was downloaded again');
  await again.close();
});

test('WebGPU (SwiftShader): greedy answers are token-exact with the fixture too', async (t) => {
  const page = await openPage('webgpu');
  const adapter = await page.evaluate(async () => {
    const info = (await navigator.gpu?.requestAdapter())?.info;
    return info ? `${info.vendor} ${info.architecture}` : null;
  });
  t.diagnostic(`WebGPU adapter: ${adapter}`);
  assert.ok(adapter, 'Chromium gives a WebGPU adapter');
  await checkCases(page, 'webgpu');
  await page.close();
});

test('MiniCPM-V 1.0 on WASM: greedy answers are token-exact with the fixture', async () => {
  const page = await openPage('wasm', '/minicpmv1');
  await checkCases(page, 'wasm', FIXTURE_1, CASES_1);
  await page.close();
});

async function check46(backend: 'wasm' | 'webgpu', cases: readonly string[]): Promise<void> {
  const page = await openPage(backend, '/minicpmv46');
  for (const name of cases) {
    const c = readFixtureJson<Chat46>(FIXTURE_46, 'llm', `${name}.json`);
    const request = {
      images: c.images.map((image) => dataUrl(image.file, FIXTURE_46)),
      messages: c.messages,
      downsampleMode: c.downsample_mode,
      thinking: c.chat_template_kwargs.enable_thinking ?? false,
      decoding: 'greedy',
      maxNewTokens: c.runs.greedy.generate_kwargs.max_new_tokens,
    };
    const result = await page.evaluate((r) => window.omnilmm.run(r), request);
    assert.equal(result.backend, backend);
    assert.deepEqual(result.prompt_ids, c.input_ids, `${name}: prompt ids`);
    assert.deepEqual(result.output_ids, c.runs.greedy.new_token_ids, `${name}: new ids`);
    assert.equal(result.text, c.runs.greedy.text, `${name}: text`);
  }
  await page.close();
}

test('MiniCPM-V 4.6 on WASM: greedy answers are token-exact with the fixture (several images, a system turn, 4x mode)', () =>
  check46('wasm', CASES_46));

test('MiniCPM-V 4.6 on WebGPU (SwiftShader): greedy answers are token-exact with the fixture', () =>
  check46('webgpu', ['text_only', 'single_image_grad']));

test('live camera mode on the real engine: three frames in a row, the unchanged ones answered without re-encoding', async () => {
  const page = await openPage('wasm');
  await page.click('#open-camera');
  await page.waitForFunction(() => document.getElementById('camera-video').videoWidth > 0);
  await page.click('#live-toggle');
  const done = page.locator('#live-log li[data-state="done"]');
  await done.nth(2).waitFor();
  await page.click('#live-toggle');
  // The log is newest first: the first frame was encoded, the camera's nearly equal frames after it were not.
  const metas = await done.locator('.meta').allTextContents();
  assert.match(metas.at(-1)!, /^frame 1 · \d+\.\d s · new frame · re-encoded$/);
  for (const meta of metas.slice(-3, -1)) assert.match(meta, /^frame \d+ · \d+\.\d s · unchanged, last frame sent again · image reused$/);
  const answers = await done.locator('.text').allTextContents();
  assert.ok(answers.every((text) => text.length > 0), 'every frame was answered');
  await page.close();
});

test('export-web refuses what it cannot export, in one line', async () => {
  const cli = (args: string[]) =>
    promisify(execFile)(process.execPath, [join(repoRoot, 'dist/src/cli/main.js'), 'export-web', ...args]).then(
      () => assert.fail('export-web should have failed'),
      (err: { code: number; stderr: string }) => err,
    );
  const noOut = await cli(['--model', fixturePath(FIXTURE, 'model')]);
  assert.equal(noOut.code, 2);
  assert.match(noOut.stderr, /^error: export-web: --out <folder> is required\n/);
  const other = await cli(['--model', fixturePath('omnilmm12b-tiny', 'model'), '--out', join(out, 'other')]);
  assert.equal(other.code, 1);
  assert.match(other.stderr, /model_type "omnilmm" does not run in a browser; these do: "minicpmv", "minicpmv4_6"/);
  assert.doesNotMatch(other.stderr, /\n\s+at /, 'no stack trace');
  const notEmpty = await cli(['--model', fixturePath(FIXTURE, 'model'), '--out', join(repoRoot, 'src')]);
  assert.match(notEmpty.stderr, /is not empty and holds no earlier export/);
});

test('omnilmm serve --web serves an export, cross-origin isolated', async () => {
  const child = spawn(process.execPath, [join(repoRoot, 'dist/src/cli/main.js'), 'serve', '--web', out, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    let stderr = '';
    const page = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const match = /page: (http:\S+)/.exec(stderr);
        if (match) resolve(match[1]!);
      });
      child.once('exit', (code) => reject(new Error(`serve --web exited with ${code}: ${stderr}`)));
    });
    const res = await fetch(page);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.match(await res.text(), /<title>omnilmm in the browser<\/title>/);
    assert.equal((await fetch(`${page}model/manifest.json`)).headers.get('content-type'), 'application/json');
    assert.equal((await fetch(`${page}../../etc/passwd`)).status, 404);
  } finally {
    child.kill('SIGINT');
  }
  const refused = await promisify(execFile)(process.execPath, [join(repoRoot, 'dist/src/cli/main.js'), 'serve', '--web', join(repoRoot, 'src')])
    .then(() => assert.fail('serve --web on a folder without index.html should fail'), (err: { code: number; stderr: string }) => err);
  assert.match(refused.stderr, /has no index\.html: pass a folder that omnilmm export-web wrote/);
});
