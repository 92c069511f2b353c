import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { buildPrompt, imagePlaceholder } from '../src/models/minicpmv/prompt.js';
import { parseMessages } from '../src/models/messages.js';
import { InvalidRequestError } from '../src/errors.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
const QUERY_NUM = 16;

interface PreprocessCase { best_grid: [number, number] | null; placeholder: string }
interface LlmCase { msgs: unknown; prompt: string; input: { file: string }; preprocess?: string }

test('image placeholder text equals the official one for every preprocessed image', () => {
  const files = readdirSync(fixturePath(FIXTURE, 'preprocess')).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 12);
  for (const file of files) {
    const c = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', file);
    assert.equal(imagePlaceholder(c.best_grid, QUERY_NUM), c.placeholder, file);
  }
});

test('chat prompts equal the official ones for every llm case', () => {
  const files = readdirSync(fixturePath(FIXTURE, 'llm')).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 5);
  for (const file of files) {
    const c = readFixtureJson<LlmCase>(FIXTURE, 'llm', file);
    const stem = c.input.file.replace(/^images\//, '').replace(/\.[a-z]+$/, '');
    const pre = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', `${stem}.json`);
    assert.equal(buildPrompt(parseMessages(c.msgs), pre.placeholder), c.prompt, file);
  }
});

test('bad conversations are refused with InvalidRequestError', () => {
  assert.throws(() => parseMessages([]), InvalidRequestError);
  assert.throws(() => parseMessages({ role: 'user' }), InvalidRequestError);
  assert.throws(() => parseMessages([{ role: 'system', content: 'x' }]), InvalidRequestError);
  assert.throws(() => parseMessages([{ role: 'user', content: 3 }]), InvalidRequestError);
  assert.throws(() => buildPrompt([{ role: 'assistant', content: 'hi' }], null), /first message/);
  assert.throws(() => buildPrompt([{ role: 'user', content: '  ' }], null), /empty/);
});
