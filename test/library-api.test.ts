// The library's public API used the wrong way: load options, requests and images of the wrong type or range get an
// InvalidRequestError that names them (not a TypeError from deep inside, nor a silent stand-in); concurrent calls on
// one Model take turns; a released Model refuses further calls; ChatServer refuses an address or key it cannot honour.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { ChatServer, EngineClosedError, InvalidRequestError, LocalEngine, loadModel } from '../src/index.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';
import { fixturePng, FP32, grad, TINY_MODEL } from './helpers/tiny-model.js';

const model = await loadModel(TINY_MODEL, FP32);
after(() => model.release());

/** Rejects with an InvalidRequestError whose message matches. */
async function refuses(promise: Promise<unknown>, message: RegExp, what: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof InvalidRequestError && message.test(err.message), what);
}

test('load options of the wrong value are refused by name before anything is built, in every family', async () => {
  const wrong: [Record<string, unknown>, RegExp][] = [
    [{ precision: 'fp16' }, /^precision must be one of fp32, int8, int4, int8-dq, got "fp16"$/],
    [{ visionPrecision: 'INT8' }, /^visionPrecision must be one of fp32, int8, int4, int8-dq, got "INT8"$/],
    [{ maxBeams: 0 }, /^maxBeams must be a whole number from 1 to 1024 .*, got 0$/],
    [{ maxBeams: 1.5 }, /^maxBeams must be a whole number .*, got 1\.5$/],
    [{ maxBeams: '2' }, /^maxBeams must be a whole number .*, got "2"$/],
    [{ keepVisionLoaded: 'yes' }, /^keepVisionLoaded must be true or false, got "yes"$/],
    [{ threads: '2' }, /^threads must be a whole number of at least 1 .*, got "2"$/],
  ];
  for (const fixture of ['minicpmv2-tiny', 'minicpmv1-tiny', 'minicpmv46-tiny', 'omnilmm12b-tiny']) {
    for (const [options, message] of wrong) {
      await refuses(loadModel(fixturePath(fixture, 'model'), options), message, `${fixture} ${JSON.stringify(options)}`);
    }
  }
  await refuses(LocalEngine.start(TINY_MODEL, { precision: 'fp16' as never }), /^precision must be one of/, 'LocalEngine');
});

test('messages, question and signal of the wrong type are refused by name', async () => {
  const request = { decoding: 'greedy', maxNewTokens: 2 } as const;
  await refuses(model.run({ ...request, messages: { role: 'user', content: 'Hi' } as never }), /^messages must be a list of \{role, content\}, got \{"role":"user","content":"Hi"\}$/, 'messages object');
  await refuses(model.run({ ...request, question: 5 as never }), /^question must be a string, got 5$/, 'question number');
  await refuses(model.run({ ...request, question: 'Hi', signal: {} as never }), /^signal must be an AbortSignal, got \{\}$/, 'signal object');
});

test('an image of the wrong kind, or pixels whose size and data disagree, are refused by name', async () => {
  const png = fixturePng('grad_100x80.png');
  const ask = (image: unknown) => model.run({ question: 'What is in the image?', decoding: 'greedy', maxNewTokens: 2, image: image as never });
  const kind = /^image must be an image file's bytes \(a Uint8Array, e\.g\. what readFile returns\) or RGB pixels \{width, height, data\}, got /;
  await refuses(ask('photo.jpg'), new RegExp(`${kind.source}"photo\\.jpg"$`), 'a path');
  await refuses(ask(png.buffer.slice(png.byteOffset, png.byteOffset + png.byteLength)), new RegExp(`${kind.source}a value of type ArrayBuffer$`), 'an ArrayBuffer');
  await refuses(ask({ size: [2, 2] }), kind, 'pixels without width and height');
  const pixels = /^an image's RGB pixels must have a positive whole width and height and width × height × 3 bytes of data \(a Uint8Array\), got /;
  await refuses(ask({ width: 2, height: 2 }), new RegExp(`${pixels.source}2x2 with undefined$`), 'pixels without data');
  await refuses(ask({ width: 2, height: 2, data: new Uint8Array(3) }), new RegExp(`${pixels.source}2x2 with 3 bytes$`), 'short data');
  await refuses(model.run({ question: 'Hi', images: ['b.png' as never] }), /^images\[0\] must be an image file's bytes/, 'images[0] a path');
  // The same bytes as a Buffer are an image: the official greedy answer.
  const result = await model.run({ image: png, messages: grad.msgs, decoding: 'greedy', maxNewTokens: 24 });
  assert.deepEqual(result.outputIds, grad.runs.greedy!.new_token_ids);
});

test('concurrent calls on one Model take turns, each with the official answer', async () => {
  const image = fixturePng('grad_100x80.png');
  const request = { image, messages: grad.msgs, decoding: 'greedy', maxNewTokens: 24 } as const;
  const results = await Promise.all([model.run(request), model.chat({ ...request, decoding: 'greedy' }), model.run(request)]);
  assert.deepEqual(results[0].outputIds, grad.runs.greedy!.new_token_ids);
  assert.equal(results[1], grad.runs.greedy!.text);
  assert.deepEqual(results[2].outputIds, grad.runs.greedy!.new_token_ids);
});

test('a released Model refuses calls, the waiting ones included, and may be released twice', async () => {
  const own = await loadModel(TINY_MODEL, FP32);
  const request = { question: 'Hi', decoding: 'greedy', maxNewTokens: 8 } as const;
  const released = /^the model was released: load it again/;
  const running = refuses(own.run(request), released, 'the running call');
  const waiting = refuses(own.run(request), released, 'the waiting call');
  await own.release();
  await running;
  await waiting;
  await refuses(own.chat(request), released, 'a later call');
  await own.release();
});

test('a closed LocalEngine stops its running answer, then refuses tokenize as it refuses a chat: with the error it reports as unavailable', async () => {
  const own = await LocalEngine.start(TINY_MODEL, FP32);
  const [sample] = readFixtureJson<{ encode: { text: string; input_ids: number[] }[] }>('minicpmv2-tiny', 'tokenizer', 'cases.json').encode;
  assert.deepEqual(await own.tokenize(sample!.text), sample!.input_ids);
  const running = own.stream({ messages: [{ role: 'user', content: 'Tell me a story.' }], image: null, decoding: 'greedy', maxNewTokens: 1500 });
  assert.equal((await running.next()).done, false);
  await own.close();
  await assert.rejects(running.next(), { name: 'AbortError', message: 'the engine was closed' }, 'the running answer');
  const closed = own.unavailable;
  // The same error a closed WorkerEngine gives (engine.test.ts).
  assert.ok(closed instanceof EngineClosedError && closed.message === 'the engine is closed: start a new one');
  await assert.rejects(own.stream({ messages: [{ role: 'user', content: 'Hi' }], image: null }).next(), (err) => err === closed, 'a chat');
  await assert.rejects(own.tokenize(sample!.text), (err) => err === closed, 'tokenize');
  await own.close();
});

test('ChatServer refuses an empty host, a port out of range, a blank API key and a queue length that is no count', async () => {
  const engine = LocalEngine.fromModel(model, TINY_MODEL);
  // A server that starts after all is closed at once, so that the failed assertion does not keep the test running.
  const start = (options: Record<string, unknown>) =>
    ChatServer.start({ engine, port: 0, log: () => {}, ...options }).then((server) => server.close());
  await refuses(start({ host: '' }), /^host must be an address or name of this machine .*, got ""$/, 'empty host');
  await refuses(start({ port: 65536 }), /^port must be a whole number from 0 to 65535 .*, got 65536$/, 'port 65536');
  await refuses(start({ port: -1 }), /^port must be a whole number from 0 to 65535/, 'port -1');
  await refuses(start({ apiKey: '' }), /^apiKey must be a non-blank string .*, got ""$/, 'empty key');
  await refuses(start({ apiKey: '  ' }), /^apiKey must be a non-blank string/, 'blank key');
  await refuses(start({ maxQueue: '3' }), /^maxQueue must be a whole number of at least 0 .*, got "3"$/, 'maxQueue string');
});
