// End to end through the public API: every llm case of the fixture, greedy, beam search and greedy with a
// repetition penalty, token-exact with the official chat().

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { loadModel, type Model } from '../src/index.js';
import type { DecodingSettings } from '../src/chat/decoding.js';
import { fixturePath, readFixtureJson, nonSamplingSettings } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';

interface Run {
  chat_kwargs: { sampling: boolean; num_beams?: number; repetition_penalty?: number; max_new_tokens: number };
  new_token_ids: number[];
  text: string;
  sequences_score?: number;
}
interface LlmCase {
  name: string;
  input: { file: string };
  msgs: { role: 'user' | 'assistant'; content: string }[];
  input_ids: number[];
  runs: Record<string, Run>;
}

/** chat(sampling=False, **kwargs) with only the keys chat() accepts for that mode. */
function settingsFor(run: Run): DecodingSettings {
  const k = run.chat_kwargs;
  assert.equal(k.sampling, false);
  return nonSamplingSettings(k);
}

let model: Model;
before(async () => {
  model = await loadModel(fixturePath(FIXTURE, 'model'), { threads: 1 });
});
after(() => model.release());

const cases = readdirSync(fixturePath(FIXTURE, 'llm')).filter((f) => f.endsWith('.json'));

test('the fixture has the five llm cases', () => assert.equal(cases.length, 5));

for (const file of cases) {
  const c = readFixtureJson<LlmCase>(FIXTURE, 'llm', file);
  for (const [runName, run] of Object.entries(c.runs)) {
    test(`${c.name} / ${runName}: prompt ids, output ids and text are the official ones`, async () => {
      const image = readFileSync(fixturePath(FIXTURE, c.input.file));
      const result = await model.run({ messages: c.msgs, image, ...settingsFor(run) });
      assert.deepEqual(result.promptIds, c.input_ids);
      assert.deepEqual(result.outputIds, run.new_token_ids);
      assert.equal(result.text, run.text);
    });
  }
}

test('streamed chunks add up to the final answer', async () => {
  const c = readFixtureJson<LlmCase>(FIXTURE, 'llm', 'zh_plain_gray.json');
  const image = readFileSync(fixturePath(FIXTURE, c.input.file));
  const stream = model.streamChat({ messages: c.msgs, image, decoding: 'greedy', maxNewTokens: 24 });
  let text = '';
  for (;;) {
    const next = await stream.next();
    if (next.done) {
      assert.equal(text, next.value.text);
      assert.equal(next.value.text, c.runs.greedy!.text);
      break;
    }
    text += next.value;
  }
});
