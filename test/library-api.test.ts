// The library's public API used the wrong way: load options of the wrong type or range get an InvalidRequestError
// that names them, not a silent stand-in or a message about internals.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { InvalidRequestError, LocalEngine, loadModel } from '../src/index.js';
import { fixturePath } from './helpers/fixtures.js';
import { FP32, TINY_MODEL } from './helpers/tiny-model.js';

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
