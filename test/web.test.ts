// The chat page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) against the server on
// the tiny fixture model: an uploaded image and a streamed greedy answer equal to the fixture's, a second turn,
// stop, drop and paste, the camera (Chromium's fake device), and the API-key prompt. Nothing but the server may be
// contacted. Live camera mode asks about one frame after another. A screenshot of a streamed answer next to its image is saved in test-artifacts/. Several images go
// with the first question as image_url parts in order; an answer's reasoning is shown apart, collapsed.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { ChatResult } from '../src/chat/chat.js';
import type { Engine } from '../src/chat/engine-types.js';
import { LocalEngine } from '../src/chat/local-engine.js';
import { ChatServer } from '../src/server/server.js';
import { fixturePath, readFixtureJson, repoRoot } from './helpers/fixtures.js';
import { health, waitFor } from './helpers/server.js';
import { WatchedEngine } from './helpers/watched-engine.js';

// Browser globals that the functions run inside the page use (this project compiles without the DOM library).
declare const document: { getElementById(id: string): any; dispatchEvent(event: unknown): boolean };
declare const window: { answerUpdates?: number };
declare const DataTransfer: new () => { items: { add(file: unknown): void } };
declare const DragEvent: new (type: string, init: object) => unknown;
declare const ClipboardEvent: new (type: string, init: object) => unknown;
declare const MutationObserver: new (callback: (records: { target: any }[]) => void) => { observe(node: unknown, options: object): void };

const FIXTURE = 'minicpmv2-tiny';
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(repoRoot, 'test-artifacts');

const grad = readFixtureJson<{ input: { file: string }; msgs: { content: string }[]; runs: Record<string, { text: string }> }>(
  FIXTURE, 'llm', 'single_turn_grad.json',
);
const gradPath = fixturePath(FIXTURE, grad.input.file);

let engine: LocalEngine;
/** The engine behind `server`, watched: how far each answer got and how it ended. */
let watched: WatchedEngine;
let server: ChatServer;
let keyServer: ChatServer;
let context: BrowserContext;
let profile: string;
const foreignRequests: string[] = [];

/**
 * The engine with each chunk held back `ms`: the tiny model writes 3000 tokens in about 5 s, which a busy machine
 * could spend between seeing an answer stream and clicking Stop; held back, the same answer takes over a minute.
 */
function paced(inner: Engine, ms: number): Engine {
  return {
    info: inner.info,
    get unavailable() {
      return inner.unavailable;
    },
    async *stream(request, signal) {
      const chunks = inner.stream(request, signal);
      try {
        for (let next = await chunks.next(); ; next = await chunks.next()) {
          if (next.done) return next.value;
          await new Promise((resolve) => setTimeout(resolve, ms));
          yield next.value;
        }
      } finally {
        await chunks.return(undefined as unknown as ChatResult);
      }
    },
    tokenize: (text) => inner.tokenize(text),
    close: () => inner.close(),
  };
}

before(async () => {
  engine = await LocalEngine.start(fixturePath(FIXTURE, 'model'), { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
  watched = new WatchedEngine(engine);
  server = await ChatServer.start({ engine: paced(watched, 20), port: 0, log: () => {} });
  keyServer = await ChatServer.start({ engine, port: 0, apiKey: 'sekret-key', log: () => {} });
  profile = mkdtempSync(join(tmpdir(), 'omnilmm-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // A start takes a few seconds; on a busy machine many more than Playwright's default 30 s may pass.
    timeout: 300_000,
    viewport: { width: 1280, height: 800 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      // A synthetic camera that needs no permission prompt.
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    ],
  });
  // Playwright waits 30 s for an element by default: an answer that takes 3 s on an idle machine can take longer
  // than that on a busy one. (A page that never gets there still fails, after 10 minutes.)
  context.setDefaultTimeout(600_000);
  // The page must work offline: anything not addressed to our servers is recorded and refused.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${server.url}/`) || url.startsWith(`${keyServer.url}/`) || url.startsWith('data:') || url.startsWith('blob:')) {
      return route.continue();
    }
    foreignRequests.push(url);
    return route.abort();
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await server?.close();
  await keyServer?.close();
  await engine?.close();
});

async function openPage(url: string): Promise<Page> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/status of 4\d\d/.test(msg.text())) errors.push(msg.text());
  });
  page.once('close', () => assert.deepEqual(errors, [], 'no script errors on the page'));
  await page.goto(url);
  return page;
}

async function connected(page: Page, modelId = fixturePath(FIXTURE, 'model')): Promise<void> {
  await page.locator('#model-name', { hasText: modelId }).waitFor();
}

/** Counts the text updates of answers, to tell a streamed answer from one that arrived whole. */
async function countAnswerUpdates(page: Page): Promise<void> {
  await page.evaluate(() => {
    window.answerUpdates = 0;
    new MutationObserver((records) => {
      for (const r of records) if (r.target.closest?.('.message.assistant .text')) window.answerUpdates! += 1;
    }).observe(document.getElementById('transcript'), { subtree: true, childList: true, characterData: true });
  });
}

async function ask(page: Page, question: string) {
  await page.fill('#question', question);
  const request = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions'));
  await page.press('#question', 'Enter');
  return (await request).postDataJSON() as {
    messages: { role: string; content: string | { type: string; text?: string; image_url?: { url: string } }[] }[];
    stream: boolean;
    temperature?: number;
    max_tokens: number;
  };
}

const answers = (page: Page) => page.locator('.message.assistant');

test('upload an image, get a streamed answer, ask again, stop a long answer', async (t) => {
  const page = await openPage(`${server.url}/`);
  await connected(page);
  await page.getByText('Greedy', { exact: true }).click();
  await page.setInputFiles('#file-input', gradPath);
  await page.locator('#preview').waitFor();
  assert.match((await page.getAttribute('#preview', 'src'))!, /^data:image\/png;base64,/);
  await countAnswerUpdates(page);

  // 1. The first question: the image goes with it, the answer streams in and equals the fixture's greedy run.
  const first = await ask(page, grad.msgs[0]!.content);
  assert.equal(first.stream, true);
  assert.equal(first.temperature, 0);
  const parts = first.messages[0]!.content as { type: string; text?: string; image_url?: { url: string } }[];
  assert.deepEqual(parts.map((p) => p.type), ['image_url', 'text']);
  assert.equal(parts[0]!.image_url!.url, `data:image/png;base64,${readFileSync(gradPath).toString('base64')}`);
  await answers(page).first().and(page.locator('[data-state="done"]')).waitFor();
  assert.equal(await answers(page).first().locator('.text').textContent(), grad.runs.greedy!.text);
  const updates = (await page.evaluate(() => window.answerUpdates))!;
  assert.ok(updates > 1, `the answer was shown in ${updates} updates: it should stream in`);
  assert.match((await answers(page).first().locator('.meta').textContent())!, /^10 tokens · /);
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'web-chat.png') });

  // 2. A second turn sends the whole conversation, the image still with the first message (a short answer will do).
  await page.fill('#max-tokens', '16');
  const second = await ask(page, '这张图片是什么颜色？');
  assert.deepEqual(second.messages.map((m) => m.role), ['user', 'assistant', 'user']);
  assert.equal(second.messages[1]!.content, grad.runs.greedy!.text);
  assert.equal(second.messages[2]!.content, '这张图片是什么颜色？');
  assert.equal(typeof second.messages[0]!.content, 'object');
  await answers(page).nth(1).and(page.locator('[data-state="done"]')).waitFor();

  // 3. A long answer (no image, thousands of tokens) is stopped: the server stops generating, the page is ready.
  await page.click('#remove-image');
  assert.equal(await answers(page).count(), 0, 'removing the image starts a new conversation');
  await page.fill('#max-tokens', '3000');
  await ask(page, grad.msgs[0]!.content);
  await answers(page).first().and(page.locator('[data-state="streaming"]')).waitFor();
  await page.click('#stop');
  await answers(page).first().and(page.locator('[data-state="stopped"]')).waitFor();
  assert.ok(await page.isVisible('#send'));
  assert.ok(!(await page.isVisible('#stop')));
  const stoppedText = (await answers(page).first().locator('.text').textContent())!;
  assert.ok(stoppedText.length > 0);
  // The server stops the answer, rather than run on through the 3000 tokens asked for: its stream ends with the abort,
  // a small part of the rest generated after the page showed it stopped. The timeouts only guard against a hang.
  const generation = watched.streams.at(-1)!;
  const chunksShown = generation.chunks;
  await waitFor(() => generation.ending !== undefined, 'the server to stop generating', 60_000);
  assert.deepEqual(generation.ending, { error: 'AbortError' }, 'the abort ended the answer, not its last token');
  const chunksAfter = generation.chunks - chunksShown;
  t.diagnostic(`the engine generated ${chunksShown} chunks before the page showed the answer stopped and ${chunksAfter} after`);
  assert.ok(chunksAfter < (3000 - chunksShown) / 10, `${chunksAfter} chunks after Stop, of ${3000 - chunksShown} still to come`);
  await waitFor(async () => !(await health(server)).generating, 'the engine to be free');

  // 4. The conversation goes on after a stop, with the stopped answer as it was shown.
  await page.fill('#max-tokens', '8');
  const after = await ask(page, 'Go on.');
  assert.deepEqual(after.messages.map((m) => m.role), ['user', 'assistant', 'user']);
  assert.equal(after.messages[1]!.content, stoppedText);
  assert.equal(after.max_tokens, 8);
  await answers(page).nth(1).and(page.locator('[data-state="done"]')).waitFor();

  // 5. New chat clears the conversation.
  await page.click('#new-chat');
  assert.equal(await answers(page).count(), 0);
  await page.close();
  assert.deepEqual(foreignRequests, []);
});

test('an image can be dropped or pasted, and beam search answers in one piece', async () => {
  const page = await openPage(`${server.url}/`);
  await connected(page);
  const base64 = readFileSync(gradPath).toString('base64');
  for (const how of ['drop', 'paste'] as const) {
    await page.evaluate(async ([b64, kind]) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const data = new DataTransfer();
      data.items.add(new File([bytes], 'grad.png', { type: 'image/png' }));
      const target = document.getElementById('drop-zone');
      if (kind === 'drop') target.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
      else target.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
    }, [base64, how] as const);
    await page.waitForFunction((b64) => document.getElementById('preview').src.endsWith(b64), base64);
    await page.click('#remove-image');
  }
  await page.evaluate(([b64]) => {
    const bytes = Uint8Array.from(atob(b64!), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], 'grad.png', { type: 'image/png' }));
    document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  }, [base64]);
  await page.locator('#preview').waitFor();
  await page.getByText('Beam search', { exact: true }).click();
  await page.fill('#max-tokens', '24');
  await countAnswerUpdates(page);
  const body = await ask(page, grad.msgs[0]!.content) as unknown as { num_beams?: number };
  assert.equal(body.num_beams, 3);
  await answers(page).first().and(page.locator('[data-state="done"]')).waitFor();
  assert.equal(await answers(page).first().locator('.text').textContent(), grad.runs['beam3_rp1.2']!.text);
  await page.close();
});

test('the camera button takes a frame and asks about it', async () => {
  const page = await openPage(`${server.url}/`);
  await connected(page);
  await page.getByText('Greedy', { exact: true }).click();
  await page.fill('#max-tokens', '8');
  await page.click('#open-camera');
  await page.waitForFunction(() => document.getElementById('camera-video').videoWidth > 0);
  const request = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions'));
  await page.click('#camera-capture');
  const body = (await request).postDataJSON() as { messages: { content: { type: string; text?: string; image_url?: { url: string } }[] }[] };
  const [image, text] = body.messages[0]!.content;
  assert.match(image!.image_url!.url, /^data:image\/jpeg;base64,/);
  assert.equal(text!.text, 'What is in this picture?');
  await answers(page).first().and(page.locator('[data-state="done"]')).waitFor();
  assert.ok(!(await page.isVisible('#camera-dialog')));
  await page.close();
});

test('live camera mode asks the standing question about one frame after another', async () => {
  const page = await openPage(`${server.url}/`);
  await connected(page);
  await page.getByText('Greedy', { exact: true }).click();
  await page.fill('#max-tokens', '4');
  const bodies: { messages: { role: string; content: { type: string; text?: string; image_url?: { url: string } }[] }[] }[] = [];
  page.on('request', (r) => {
    if (r.url().endsWith('/v1/chat/completions')) bodies.push(r.postDataJSON());
  });
  await page.click('#open-camera');
  await page.waitForFunction(() => document.getElementById('camera-video').videoWidth > 0);
  assert.equal(await page.inputValue('#live-question'), 'What do you see? What changed?');
  await page.fill('#live-question', 'What is on the screen?');
  await page.click('#live-toggle');
  await page.locator('#live-log li[data-state="done"]').nth(2).waitFor();
  await page.click('#live-toggle');
  assert.equal(await page.textContent('#live-toggle'), 'Start live');
  assert.ok(await page.isVisible('#camera-dialog'), 'the dialog stays open when live mode stops');

  // Each frame was its own single-turn question: one JPEG and the standing question.
  assert.ok(bodies.length >= 3);
  for (const body of bodies) {
    assert.deepEqual(body.messages.map((m) => m.role), ['user']);
    const [image, text] = body.messages[0]!.content;
    assert.match(image!.image_url!.url, /^data:image\/jpeg;base64,/);
    assert.equal(text!.text, 'What is on the screen?');
  }
  const done = page.locator('#live-log li[data-state="done"]');
  assert.match((await done.last().locator('.meta').textContent())!, /^frame 1 · \d+\.\d s · new frame$/);
  assert.match((await page.textContent('#live-latency'))!, /^last frame: \d+\.\d s$/);
  for (let i = 0; i < 3; i++) assert.ok((await done.nth(i).locator('.text').textContent())!.length > 0);
  await page.click('#camera-cancel');
  assert.equal(await answers(page).count(), 0, 'live answers stay out of the conversation');
  await page.close();
});

test('with an API key the page loads, asks for the key, and keeps asking until it works', async () => {
  const page = await openPage(`${keyServer.url}/`);
  await page.locator('#key-dialog[open]').waitFor();
  assert.ok(!(await page.isVisible('#key-error')), 'no complaint before a key was tried');
  await page.fill('#api-key', 'wrong-key');
  await page.click('#key-save');
  await page.locator('#key-dialog[open]').waitFor();
  await page.locator('#key-error', { hasText: 'That key was not accepted.' }).waitFor();
  await page.fill('#api-key', 'sekret-key');
  await page.click('#key-save');
  await connected(page);
  await page.getByText('Greedy', { exact: true }).click();
  await page.setInputFiles('#file-input', gradPath);
  await ask(page, grad.msgs[0]!.content);
  await answers(page).first().and(page.locator('[data-state="done"]')).waitFor();
  assert.equal(await answers(page).first().locator('.text').textContent(), grad.runs.greedy!.text);
  await page.close();
});

test('two images go with the first question as two image_url parts, in order; one can be removed', async () => {
  const page = await openPage(`${server.url}/`);
  await connected(page);
  await page.getByText('Greedy', { exact: true }).click();
  const grayPath = fixturePath(FIXTURE, 'images', 'gray_500x375.png');
  await page.setInputFiles('#file-input', [gradPath, grayPath]);
  await page.locator('#thumbnails li').nth(1).waitFor();
  assert.equal(await page.locator('#thumbnails li').count(), 2);
  assert.equal(await page.textContent('#remove-image'), 'Remove all');
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'web-two-images.png') });
  const urlOf = (path: string) => `data:image/png;base64,${readFileSync(path).toString('base64')}`;

  // 1. Both images are sent; MiniCPM-V 2.0 takes one, and its refusal is shown with the question kept.
  const body = await ask(page, grad.msgs[0]!.content);
  const parts = body.messages[0]!.content as { type: string; text?: string; image_url?: { url: string } }[];
  assert.deepEqual(parts.map((p) => p.type), ['image_url', 'image_url', 'text']);
  assert.deepEqual(parts.slice(0, 2).map((p) => p.image_url!.url), [urlOf(gradPath), urlOf(grayPath)]);
  await page.locator('.message.error', { hasText: 'MiniCPM-V 2.0 takes one image per conversation' }).waitFor();
  assert.equal(await page.inputValue('#question'), grad.msgs[0]!.content);

  // 2. Without the second image the answer is the fixture's.
  await page.click('#thumbnails li:nth-child(2) .remove-thumbnail');
  assert.ok(!(await page.isVisible('#thumbnails')), 'one image needs no thumbnails');
  assert.equal(await page.getAttribute('#preview', 'src'), urlOf(gradPath));
  const again = await ask(page, grad.msgs[0]!.content);
  assert.deepEqual((again.messages[0]!.content as { type: string }[]).map((p) => p.type), ['image_url', 'text']);
  await answers(page).first().and(page.locator('[data-state="done"]')).waitFor();
  assert.equal(await answers(page).first().locator('.text').textContent(), grad.runs.greedy!.text);
  await page.close();
});

test('with thinking on, the answer\'s reasoning_content is shown apart from its text, collapsed', async () => {
  const page = await openPage(`${server.url}/`);
  await connected(page);
  await page.check('#thinking');
  const deltas = [{ role: 'assistant', content: '' }, { reasoning_content: 'The bars are ' }, { reasoning_content: 'red.' }, { content: 'Red ' }, { content: 'bars.' }];
  const events = [
    ...deltas.map((delta) => ({ choices: [{ index: 0, delta, finish_reason: null }] })),
    { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
  ];
  // A scripted answer in the server's wire format (the tiny model's answers have no think part).
  await page.route('**/v1/chat/completions', (route) => route.fulfill({
    status: 200,
    headers: { 'content-type': 'text/event-stream' },
    body: `${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('')}data: [DONE]\n\n`,
  }));
  const body = await ask(page, 'What colour are the bars?') as unknown as { thinking?: boolean };
  assert.equal(body.thinking, true);
  const answer = answers(page).first();
  await answer.and(page.locator('[data-state="done"]')).waitFor();
  assert.equal(await answer.locator('.text').textContent(), 'Red bars.');
  const reasoning = answer.locator('details.reasoning');
  assert.equal(await reasoning.getAttribute('open'), null, 'collapsed');
  assert.equal(await reasoning.locator('.reasoning-text').textContent(), 'The bars are red.');
  assert.ok(!(await reasoning.locator('.reasoning-text').isVisible()));
  await reasoning.locator('summary').click();
  assert.ok(await reasoning.locator('.reasoning-text').isVisible());
  await page.screenshot({ path: join(ARTIFACTS, 'web-reasoning.png') });
  // The next turn sends the answer without its reasoning.
  const next = await ask(page, 'Sure?');
  assert.equal(next.messages[1]!.content, 'Red bars.');
  await answers(page).nth(1).and(page.locator('[data-state="done"]')).waitFor();
  await page.close();
});
