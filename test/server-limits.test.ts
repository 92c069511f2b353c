// What bounds a request's work: more images than the model takes or its context could hold are refused before any is
// decoded (server, library, worker engine, CLI), and on MiniCPM-V 4.6 images whose tokens alone fill it before any is
// hashed or resized; an aborted request stops between images while they are decoded or resized; the server reads image
// headers and the engine decodes each image once; /health and chat requests say 503 once the engine has stopped.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { loadModel, Model } from '../src/chat/engine.js';
import { LocalEngine } from '../src/chat/local-engine.js';
import { WorkerEngine } from '../src/chat/worker-engine.js';
import { createRgbImage, decodeImage, type RgbImage } from '../src/image/index.js';
import type { MiniCPMV46ImageOptions } from '../src/models/minicpmv46/image-processor.js';
import { MiniCPMV46Model } from '../src/models/minicpmv46/model.js';
import { familyOf, loadModelConfig } from '../src/models/registry.js';
import { ChatServer } from '../src/server/server.js';
import { fixturePath, readFixtureJson, repoRoot } from './helpers/fixtures.js';
import { ScriptedEngine } from './helpers/scripted-engine.js';
import { grayPng, health, pngDataUrl, post, waitFor, withEngineServer, withServer } from './helpers/server.js';
import { FP32, fixturePng } from './helpers/tiny-model.js';

const MODEL_2 = fixturePath('minicpmv2-tiny', 'model');
const MODEL_46 = fixturePath('minicpmv46-tiny', 'model');
/** Bytes that are no image (an SVG): decoding them fails, so a refusal that names the count came before decoding. */
const NOT_AN_IMAGE = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>');
/** MiniCPM-V 2.0 takes one image per conversation (the official chat.py builds its prompt around one). */
const TWO_IMAGES_ON_2 = 'MiniCPM-V 2.0 takes one image per conversation, got 2: send one image';
/**
 * The context the tiny MiniCPM-V 4.6 is given here: each image takes at least 6 positions and the answer one, so 10
 * images may fit (10 · 6 = 60 ≤ 60) and 11 cannot (66).
 */
const SHORT_46_CONTEXT = 61;
const SHORT_46_MOST_IMAGES = 10;
/** One image too many there: the refusal the server, the library, the engines and the CLI all give. */
const ELEVEN_IMAGES_ON_SHORT_46 = "11 images cannot fit the model's 61-token context, where each takes at least 6 tokens: give at most 10";

function imageMessages(count: number, url: string) {
  const parts = Array.from({ length: count }, () => ({ type: 'image_url', image_url: { url } }));
  return [{ role: 'user', content: [...parts, { type: 'text', text: 'What is this?' }] }];
}

/** The array's elements as the code under test reads them: `read` is called with each index it takes. */
function watched<T extends object>(items: T[], read: (index: number) => void): T[] {
  return new Proxy(items, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) read(Number(key));
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
}

/**
 * Each image as an object whose pixel reads (its `data`: hashing, resizing) call `touched` with its index; its size
 * may be read freely. The pixels stay as they are.
 */
function touchable(images: RgbImage[], touched: (index: number) => void): RgbImage[] {
  return images.map((image, i) => new Proxy(image, {
    get(target, key, receiver) {
      if (key === 'data') touched(i);
      return Reflect.get(target, key, receiver) as unknown;
    },
  }));
}

/** How many images sharp decodes to pixels (toBuffer; a header read is metadata()) in this thread while `run` runs. */
async function fullDecodes(run: () => Promise<void>): Promise<number> {
  const prototype = sharp.prototype as { toBuffer: (...args: unknown[]) => unknown };
  const toBuffer = prototype.toBuffer;
  let count = 0;
  prototype.toBuffer = function (this: unknown, ...args: unknown[]) {
    count += 1;
    return toBuffer.apply(this, args);
  };
  try {
    await run();
  } finally {
    prototype.toBuffer = toBuffer;
  }
  return count;
}

describe('more images than the model takes or its context could hold are refused before any is decoded', () => {
  let scratch: string;
  /** The tiny 4.6 (no limit of its own on the images) with a short context, where the context bounds the images. */
  let short46: string;
  let engine2: LocalEngine;
  let server2: ChatServer;
  let engine46: LocalEngine;
  let server46: ChatServer;
  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'omnilmm-limits-'));
    short46 = join(scratch, 'minicpmv46-short');
    mkdirSync(short46);
    for (const file of readdirSync(MODEL_46)) copyFileSync(join(MODEL_46, file), join(short46, file));
    const config = JSON.parse(readFileSync(join(short46, 'config.json'), 'utf8'));
    config.text_config.max_position_embeddings = SHORT_46_CONTEXT;
    writeFileSync(join(short46, 'config.json'), JSON.stringify(config));
    engine2 = await LocalEngine.start(MODEL_2, FP32);
    server2 = await ChatServer.start({ engine: engine2, port: 0, log: () => {} });
    engine46 = await LocalEngine.start(short46, FP32);
    server46 = await ChatServer.start({ engine: engine46, port: 0, log: () => {} });
  });
  after(async () => {
    await server2?.close();
    await engine2?.close();
    await server46?.close();
    await engine46?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('the engines know the fewest tokens an image takes (16 on the tiny 2.0, 6 on the tiny 4.6) and the most images the family takes', async () => {
    assert.equal(engine2.info.minImageTokens, 16, "MiniCPM-V 2.0's query_num");
    assert.deepEqual(engine2.info.imageLimit, { most: 1, model: 'MiniCPM-V 2.0' });
    // 4.6 with use_image_id: <image_id> 0 </image_id> <image> one <|image_pad|> </image>, each one token of
    // tokenizer.json (the markup are added tokens, "0" is in the vocabulary).
    const worker = await WorkerEngine.start(MODEL_46, FP32);
    try {
      assert.equal(worker.info.minImageTokens, 6);
      assert.equal(worker.info.imageLimit, null, 'MiniCPM-V 4.6 takes several images');
    } finally {
      await worker.close();
    }
  });

  test('server: 2 images on the tiny 2.0 are a 400 naming "messages" with the family\'s message, before either is decoded; 1 is decoded', async () => {
    const url = pngDataUrl(NOT_AN_IMAGE);
    const refused = await post(server2, { model: 'tiny', messages: imageMessages(2, url) });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error!.type, 'invalid_request_error');
    assert.equal(refused.body.error!.param, 'messages');
    assert.equal(refused.body.error!.message, TWO_IMAGES_ON_2);
    // One image passes the count, and is decoded (and found to be no image).
    const decoded = await post(server2, { model: 'tiny', messages: imageMessages(1, url) });
    assert.equal(decoded.status, 400);
    assert.match(decoded.body.error!.message, /SVG/);
  });

  test('library and engines: 2 images on the tiny 2.0 are an InvalidRequestError with the family\'s message before decoding, from Model, LocalEngine and WorkerEngine', async () => {
    const messages = [{ role: 'user' as const, content: 'What is this?' }];
    const images = [NOT_AN_IMAGE, NOT_AN_IMAGE];
    const expected = { name: 'InvalidRequestError', message: TWO_IMAGES_ON_2 };
    const model = await loadModel(MODEL_2, FP32);
    try {
      assert.deepEqual(model.imageLimit, { most: 1, model: 'MiniCPM-V 2.0' });
      await assert.rejects(model.chat({ messages, images }), expected);
      // One image is decoded (and found to be no image).
      await assert.rejects(model.chat({ messages, images: images.slice(1) }), { name: 'ImageError' });
    } finally {
      await model.release();
    }
    await assert.rejects(engine2.stream({ messages, images }).next(), expected);
    const worker = await WorkerEngine.start(MODEL_2, FP32);
    try {
      await assert.rejects(worker.stream({ messages, images }).next(), expected);
    } finally {
      await worker.close();
    }
  });

  test(`server: ${SHORT_46_MOST_IMAGES + 1} images on the short-context 4.6 are a 400 naming "messages" with the engines' message, before their bytes are looked at; ${SHORT_46_MOST_IMAGES} are decoded`, async () => {
    const url = pngDataUrl(NOT_AN_IMAGE);
    const refused = await post(server46, { model: 'tiny', messages: imageMessages(SHORT_46_MOST_IMAGES + 1, url) });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error!.type, 'invalid_request_error');
    assert.equal(refused.body.error!.param, 'messages');
    assert.equal(refused.body.error!.code, null);
    assert.equal(refused.body.error!.message, ELEVEN_IMAGES_ON_SHORT_46);
    // One image fewer passes the count, and the first of them is decoded (and found to be no image).
    const decoded = await post(server46, { model: 'tiny', messages: imageMessages(SHORT_46_MOST_IMAGES, url) });
    assert.equal(decoded.status, 400);
    assert.match(decoded.body.error!.message, /SVG/);
  });

  test('server: the refusal comes before any image is fetched and before the request reaches the engine', async () => {
    const scripted = new ScriptedEngine(['Hi.']);
    await withServer(scripted, async (own) => {
      // The scripted engine says 4096 tokens and 64 per image: (4096 - 1) / 64, 63 images at most.
      const sixtyFour = "64 images cannot fit the model's 4096-token context, where each takes at least 64 tokens: give at most 63";
      const url = pngDataUrl(fixturePng('grad_100x80.png'));
      const refused = await post(own, { model: 'scripted', messages: imageMessages(64, url) });
      assert.equal(refused.status, 400);
      assert.equal(refused.body.error!.message, sixtyFour);
      assert.equal(scripted.requests.length, 0);
      // URLs at an address this server refuses to fetch from: 64 are refused for their count, 63 for the address.
      const remote = 'http://127.0.0.1:9/grad.png';
      assert.equal((await post(own, { model: 'scripted', messages: imageMessages(64, remote) })).body.error!.message, sixtyFour);
      assert.match((await post(own, { model: 'scripted', messages: imageMessages(63, remote) })).body.error!.message, /refusing to fetch/);
      assert.equal((await post(own, { model: 'scripted', messages: imageMessages(63, url) })).status, 200);
      assert.equal(scripted.requests.length, 1);
    }, { allowRemoteImages: true });
  });

  test('library and engines: more images than the context holds are an InvalidRequestError before decoding, from Model, LocalEngine and WorkerEngine', async () => {
    const messages = [{ role: 'user' as const, content: 'What is this?' }];
    const images = Array.from({ length: SHORT_46_MOST_IMAGES + 1 }, () => NOT_AN_IMAGE);
    const expected = { name: 'InvalidRequestError', message: ELEVEN_IMAGES_ON_SHORT_46 };
    const model = await loadModel(short46, FP32);
    try {
      await assert.rejects(model.chat({ messages, images }), expected);
    } finally {
      await model.release();
    }
    await assert.rejects(engine46.stream({ messages, images }).next(), expected);
    const worker = await WorkerEngine.start(short46, FP32);
    try {
      await assert.rejects(worker.stream({ messages, images }).next(), expected);
      // One fewer reaches the worker, which decodes them.
      await assert.rejects(worker.stream({ messages, images: images.slice(1) }).next(), { name: 'ImageError' });
    } finally {
      await worker.close();
    }
  });

  test('CLI: one line on stderr and exit status 2, for the family\'s limit and for the context\'s', async () => {
    const image = fixturePath('minicpmv2-tiny', 'images', 'grad_100x80.png');
    const chat = async (model: string, images: number) => {
      const args = ['chat', '--model', model, '--threads', '1', ...Array.from({ length: images }, () => ['--image', image]).flat(), 'Hi'];
      const cli = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
      return promisify(execFile)(process.execPath, [cli, ...args], { env: { ...process.env, HF_HUB_OFFLINE: '1' }, timeout: 120_000 })
        .then(() => ({ code: 0, stdout: '', stderr: '' }), (err: { code: number; stdout: string; stderr: string }) => err);
    };
    const two = await chat(MODEL_2, 2);
    assert.equal(two.code, 2, two.stderr);
    assert.equal(two.stdout, '');
    assert.equal(two.stderr, `error: ${TWO_IMAGES_ON_2}\n`);
    const many = await chat(short46, SHORT_46_MOST_IMAGES + 1);
    assert.equal(many.code, 2, many.stderr);
    assert.equal(many.stdout, '');
    assert.equal(many.stderr, `error: ${ELEVEN_IMAGES_ON_SHORT_46}\n`);
  });
});

describe('an aborted request stops between images', () => {
  test('decoding: no image after the one the abort came during is taken up', async () => {
    // MiniCPM-V 4.6, which takes several images (2.0 refuses them before decoding).
    const engine = await LocalEngine.start(MODEL_46, FP32);
    try {
      const controller = new AbortController();
      let last = -1;
      const images = watched(Array.from({ length: 8 }, () => fixturePng('gray_500x375.png')), (i) => {
        last = Math.max(last, i);
        if (i === 1) controller.abort(new DOMException('the client went away', 'AbortError'));
      });
      const messages = [{ role: 'user' as const, content: 'Compare them.' }];
      await assert.rejects(engine.stream({ messages, images }, controller.signal).next(), { name: 'AbortError' });
      assert.equal(last, 1, 'images 2 to 7 were never taken up');
    } finally {
      await engine.close();
    }
  });

  test('resizing (MiniCPM-V 4.6, several images): no image after the one the abort came during is hashed or resized', async () => {
    const model: Model = await loadModel(MODEL_46, FP32);
    try {
      const pixels = await decodeImage(fixturePng('wide_2000x1000.png'));
      const controller = new AbortController();
      let last = -1;
      const images = touchable(Array.from({ length: 6 }, () => pixels), (i) => {
        last = Math.max(last, i);
        if (i === 1) controller.abort(new DOMException('the client went away', 'AbortError'));
      });
      const messages = [{ role: 'user' as const, content: 'Compare them.' }];
      await assert.rejects(model.chat({ messages, images, signal: controller.signal, decoding: 'greedy', maxNewTokens: 1 }), { name: 'AbortError' });
      assert.equal(last, 1, 'images 2 to 5 were never touched');
      // Not aborted, the same request reads every image and is answered.
      last = -1;
      const answer = await model.chat({ messages, images: touchable(Array.from({ length: 6 }, () => pixels), (i) => (last = Math.max(last, i))), decoding: 'greedy', maxNewTokens: 1 });
      assert.equal(typeof answer, 'string');
      assert.equal(last, 5);
    } finally {
      await model.release();
    }
  });
});

describe("MiniCPM-V 4.6: images whose tokens alone fill the context are refused from their sizes", () => {
  let loaded: MiniCPMV46Model;
  let options: MiniCPMV46ImageOptions;
  before(async () => {
    const config = loadModelConfig(MODEL_46);
    const model = await familyOf(config).load(MODEL_46, config, FP32);
    assert.ok(model instanceof MiniCPMV46Model);
    loaded = model;
    options = loaded.config.processor.image;
  });
  after(async () => loaded.release());

  test("an image's planned tokens are the official processor's placeholder ids, for every fixture image in both modes", () => {
    const stems = readdirSync(fixturePath('minicpmv46-tiny', 'preprocess')).filter((name) => name.endsWith('.json'));
    assert.equal(stems.length, 12);
    for (const name of stems) {
      const golden = readFixtureJson<{ input: { size: [number, number] }; placeholder_16x_ids: number[]; placeholder_4x_ids: number[] }>(
        'minicpmv46-tiny', 'preprocess', name,
      );
      const [width, height] = golden.input.size;
      assert.equal(loaded.plannedImageTokens([height, width], 0, { ...options, downsampleMode: '16x' }), golden.placeholder_16x_ids.length, name);
      assert.equal(loaded.plannedImageTokens([height, width], 0, { ...options, downsampleMode: '4x' }), golden.placeholder_4x_ids.length, name);
    }
    // By hand (fixture README §3.1-3.2), 1344×1344 at 16x: 1344²/448² = 9 slices, a 3×3 grid (no error); the source
    // and each tile 448×448, 32×32 patches, 64 rows. <image_id> 0 </image_id> (3) + <image> 64 </image> (66) + 9 ×
    // <slice> 64 </slice> (594) + 2 "\n" between the rows = 665.
    assert.equal(loaded.plannedImageTokens([1344, 1344], 0, options), 665);
  });

  test('the planned tokens are what prepare() gives each image in the prompt, two-digit image ids included', () => {
    // [width, height]: the fixture images' sizes and a few more, 11 images so that the last id is 10.
    const sizes = [[1344, 1344], [100, 80], [30, 900], [2000, 1000], [1125, 300], [448, 448], [640, 480], [300, 1200], [1000, 300], [57, 3000], [1300, 858]];
    const images = sizes.map(([width, height]) => createRgbImage(width!, height!));
    const content = [...images.map(() => ({ type: 'image' as const })), { type: 'text' as const, text: 'Compare them.' }];
    for (const downsampleMode of ['16x', '4x'] as const) {
      const { ids } = loaded.prepare({ messages: [{ role: 'user', content }], images, video: null, downsampleMode, thinking: false });
      // The tiny tokenizer's ids (fixture README §2.3): an image runs from its <image_id> to its last </image> or </slice>.
      const starts = ids.flatMap((id, at) => (id === 3034 ? [at] : []));
      const spans = starts.map((start, k) => {
        let end = (starts[k + 1] ?? ids.length) - 1;
        while (ids[end] !== 3031 && ids[end] !== 3033) end -= 1;
        return end - start + 1;
      });
      const planned = sizes.map(([width, height], k) => loaded.plannedImageTokens([height!, width!], k, { ...options, downsampleMode }));
      assert.deepEqual(planned, spans, downsampleMode);
    }
  });

  test('images whose planned tokens fill the context are refused before any is hashed or resized', async () => {
    const model = new Model(loaded, MODEL_46);
    const pixels = createRgbImage(1344, 1344);
    const messages = [{ role: 'user' as const, content: 'Compare them.' }];
    // Image k of 1344×1344 takes 664 tokens and its id's digits (one token each): 394 of them take
    // 394 · 664 + (10 · 1 + 90 · 2 + 294 · 3) = 262688 > 262144 (the tiny 4.6's context), far fewer than the count
    // bound's 43690; 393 take 262021 and leave the context room.
    let touched = 0;
    const tooMany = touchable(Array.from({ length: 394 }, () => pixels), () => (touched += 1));
    await assert.rejects(model.chat({ messages, images: tooMany, decoding: 'greedy', maxNewTokens: 1 }), {
      name: 'InvalidRequestError',
      message: "the prompt's 394 images alone take 262688 tokens and fill the 262144-token context: send fewer or smaller images",
    });
    assert.equal(touched, 0, 'no image was hashed or resized');
    // 393 pass the check and go on to be hashed: the first image's pixels are read (then the request is aborted).
    const controller = new AbortController();
    const fewer = touchable(Array.from({ length: 393 }, () => pixels), () => {
      touched += 1;
      controller.abort(new DOMException('enough', 'AbortError'));
    });
    await assert.rejects(model.chat({ messages, images: fewer, signal: controller.signal, decoding: 'greedy', maxNewTokens: 1 }), { name: 'AbortError' });
    assert.ok(touched > 0);
  });
});

describe('the server reads image headers; the engine decodes each image once', () => {
  test('a request with one image: one full decode (in the engine), none in the server', async () => {
    await withEngineServer(() => LocalEngine.start(MODEL_2, FP32), async (server) => {
      const url = pngDataUrl(fixturePng('grad_100x80.png'));
      let status = 0;
      const decodes = await fullDecodes(async () => {
        status = (await post(server, { model: 'tiny', messages: imageMessages(1, url), max_tokens: 1 })).status;
      });
      assert.equal(status, 200);
      assert.equal(decodes, 1);
    });
  });

  test('the server decodes no pixel: large images and one truncated past its header reach the engine as sent', async () => {
    const engine = new ScriptedEngine(['Hi.']);
    await withServer(engine, async (server) => {
      // 8000×5000 of one colour: about 130 KB of PNG, and 40 million pixels (the server's default limit) to decode.
      const heavy = await grayPng(8000, 5000);
      const truncated = fixturePng('grad_100x80.png').subarray(0, 3500);
      const urls = [heavy, heavy, truncated].map((bytes) => pngDataUrl(bytes));
      const parts = urls.map((url) => ({ type: 'image_url', image_url: { url } }));
      let status = 0;
      const decodes = await fullDecodes(async () => {
        status = (await post(server, { model: 'scripted', messages: [{ role: 'user', content: [...parts, { type: 'text', text: 'Hi' }] }] })).status;
      });
      assert.equal(status, 200);
      assert.equal(decodes, 0);
      assert.deepEqual(engine.requests[0]!.images!.map((bytes) => bytes.length), [heavy.length, heavy.length, 3500]);
    });
  });

  test('an image whose header is fine but whose body is cut short is a 400 invalid_image from the worker\'s decode', async () => {
    await withEngineServer(() => WorkerEngine.start(MODEL_2, FP32), async (server) => {
      const truncated = fixturePng('grad_100x80.png').subarray(0, 3500);
      const url = pngDataUrl(truncated);
      for (const stream of [false, true]) {
        const refused = await post(server, { model: 'tiny', messages: imageMessages(1, url), stream });
        assert.equal(refused.status, 400);
        assert.deepEqual(
          { type: refused.body.error!.type, param: refused.body.error!.param, code: refused.body.error!.code },
          { type: 'invalid_request_error', param: 'messages', code: 'invalid_image' },
        );
        assert.match(refused.body.error!.message, /^cannot decode the PNG image \(corrupt or truncated data\?\)/);
      }
    });
  });
});

describe('/health', () => {
  test('200 "ok" while the worker engine answers, 503 "unavailable" (GET and HEAD) once its worker has stopped', async () => {
    await withEngineServer(() => WorkerEngine.start(MODEL_2, FP32), async (server, engine) => {
      const ok = await fetch(`${server.url}/health`);
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as { status: string }).status, 'ok');
      assert.equal(engine.unavailable, null);
      // The worker thread ends as a crash would end it.
      await (engine as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
      await waitFor(() => engine.unavailable !== null, 'the engine to see its worker gone', 60_000);
      const down = await fetch(`${server.url}/health`);
      assert.equal(down.status, 503);
      const body = (await down.json()) as { status: string; model: string; reason: string };
      assert.equal(body.status, 'unavailable');
      assert.equal(body.model, MODEL_2);
      assert.match(body.reason, /restart the server/);
      const head = await fetch(`${server.url}/health`, { method: 'HEAD' });
      assert.equal(head.status, 503);
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    });
  });

  test('503 once a LocalEngine is closed', async () => {
    const engine = await LocalEngine.start(MODEL_2, FP32);
    const server = await ChatServer.start({ engine, port: 0, log: () => {} }).catch(async (err: unknown) => {
      await engine.close();
      throw err;
    });
    try {
      assert.equal((await fetch(`${server.url}/health`)).status, 200);
      await engine.close();
      assert.equal((await fetch(`${server.url}/health`)).status, 503);
    } finally {
      await server.close();
    }
  });
});

describe('chat requests once the engine has stopped', () => {
  const question = { model: 'tiny', messages: [{ role: 'user', content: 'What is in the image?' }], temperature: 0, max_tokens: 4000 };

  test('a 503 service_unavailable once the worker thread has exited', async () => {
    await withEngineServer(() => WorkerEngine.start(MODEL_2, FP32), async (server, engine) => {
      assert.equal((await post(server, { ...question, max_tokens: 1 })).status, 200);
      await (engine as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
      await waitFor(() => engine.unavailable !== null, 'the engine to see its worker gone', 60_000);
      const refused = await post(server, { ...question, max_tokens: 1 });
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error!.type, 'service_unavailable');
      assert.match(refused.body.error!.message, /restart the server/);
    });
  });

  test('a 503 service_unavailable for the running request, the waiting one and every later one once the worker has failed', async () => {
    const logged: string[] = [];
    await withEngineServer(() => WorkerEngine.start(MODEL_2, FP32), async (server, engine) => {
      // A streams (the tiny 2.0 answers this with 4000 tokens, no EOS); B waits for its turn behind it.
      const a = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...question, stream: true }),
      });
      assert.equal(a.status, 200);
      const reader = a.body!.getReader();
      const decoder = new TextDecoder();
      let events = '';
      while (!events.includes('"content":"')) events += decoder.decode((await reader.read()).value, { stream: true });
      const b = post(server, question);
      await waitFor(async () => (await health(server)).waiting === 1, 'B to wait for its turn', 60_000);
      // The worker reports an uncaught error, as a crash in it would (terminating it now, while it runs the model,
      // would abort this whole process in onnxruntime's native code).
      (engine as unknown as { worker: EventEmitter }).worker.emit('error', new Error('the worker crashed'));
      for (let next = await reader.read(); !next.done; next = await reader.read()) events += decoder.decode(next.value, { stream: true });
      const last = JSON.parse(events.trimEnd().split('\n\n').at(-1)!.slice('data: '.length)) as { error: { type: string; message: string } };
      assert.equal(last.error.type, 'service_unavailable');
      assert.match(last.error.message, /restart the server/);
      for (const refused of [await b, await post(server, question)]) {
        assert.equal(refused.status, 503);
        assert.deepEqual(refused.body.error, {
          message: "the model's engine has stopped and cannot answer: restart the server",
          type: 'service_unavailable',
          param: null,
          code: 'engine_unavailable',
        });
      }
      // Why it stopped is in the server's log.
      assert.match(logged.join('\n'), /the engine cannot answer: Error: the worker crashed/);
    }, { log: (line) => logged.push(line) });
  });

  test('a 503 once a LocalEngine is closed', async () => {
    const engine = await LocalEngine.start(MODEL_2, FP32);
    const server = await ChatServer.start({ engine, port: 0, log: () => {} }).catch(async (err: unknown) => {
      await engine.close();
      throw err;
    });
    try {
      assert.equal((await post(server, { ...question, max_tokens: 1 })).status, 200);
      await engine.close();
      const refused = await post(server, { ...question, max_tokens: 1 });
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error!.type, 'service_unavailable');
    } finally {
      await server.close();
    }
  });
});
