// The upstream chat.py API: img2base64 and OmniLMMChat({image, question}).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, test } from 'node:test';
import { InvalidRequestError, loadModel, OmniLMMChat, img2base64 } from '../src/index.js';
import { fixturePath } from './helpers/fixtures.js';

const IMAGE = fixturePath('minicpmv2-tiny', 'images', 'grad_100x80.png');

test('img2base64 gives the same text as coreutils base64', () => {
  assert.equal(img2base64(IMAGE), execFileSync('base64', ['-w0', IMAGE], { encoding: 'utf8' }));
});

const model = await loadModel(fixturePath('minicpmv2-tiny', 'model'), { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
after(() => model.release());
const chat = new OmniLMMChat(model);
const question = JSON.stringify([{ role: 'user', content: 'What is in the image?' }]);

test('OmniLMMChat answers with chat.py settings: sampling at temperature 0.7 for MiniCPM-V', async () => {
  assert.deepEqual(model.chatPySettings, { decoding: 'sample', temperature: 0.7 });
  const answer = await chat.chat({ image: img2base64(IMAGE), question });
  assert.equal(typeof answer, 'string');
});

test('like chat.py, an undecodable image answers "Image decode error"', async () => {
  assert.equal(await chat.chat({ image: Buffer.from('not an image').toString('base64'), question }), 'Image decode error');
});

test('a question that is not the JSON of the messages is refused', async () => {
  await assert.rejects(chat.chat({ image: img2base64(IMAGE), question: 'What is in the image?' }), InvalidRequestError);
  await assert.rejects(chat.chat({ image: img2base64(IMAGE), question: '[]' }), InvalidRequestError);
});
