import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { InvalidRequestError, TokenizerError } from '../src/errors.js';
import { ChatTemplate, renderChatTemplate, type ChatTemplateMessage } from '../src/tokenizer/chat-template.js';
import { chatTemplateFromDir, tokenizerJsonFromDir } from '../src/tokenizer/load-folder.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv46-tiny';
const MODEL_DIR = fixturePath(FIXTURE, 'model');

interface ChatCase {
  name: string;
  messages: ChatTemplateMessage[];
  kwargs: Record<string, unknown>;
  text: string;
  input_ids: number[];
}
interface LlmCase {
  name: string;
  messages: ChatTemplateMessage[];
  chat_template_kwargs: Record<string, unknown>;
  prompt: string;
}

const chatCases = readFixtureJson<{ chat_template: ChatCase[] }>(FIXTURE, 'tokenizer', 'cases.json').chat_template;
const llmCases = readdirSync(fixturePath(FIXTURE, 'llm'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => readFixtureJson<LlmCase>(FIXTURE, 'llm', f));
const tokenizer = tokenizerJsonFromDir(MODEL_DIR);
const template = chatTemplateFromDir(MODEL_DIR);

/** apply_chat_template(messages, tokenize=False, **kwargs) as the fixture recorded its arguments. */
function render(t: ChatTemplate, messages: ChatTemplateMessage[], kwargs: Record<string, unknown>): string {
  const { add_generation_prompt, ...rest } = kwargs;
  return t.render({ messages, addGenerationPrompt: add_generation_prompt === true, specialTokens: tokenizer.namedTokens, kwargs: rest });
}

test('every chat-template case renders byte-exact, and its text tokenizes to the recorded ids', () => {
  assert.equal(chatCases.length, 7);
  for (const c of chatCases) {
    const text = render(template, c.messages, c.kwargs);
    assert.equal(text, c.text, c.name);
    assert.deepEqual(tokenizer.encode(text), c.input_ids, `${c.name} ids`);
  }
});

test('the prompts of the language-model goldens render byte-exact (images, video, system and multi-turn)', () => {
  assert.equal(llmCases.length, 9);
  for (const c of llmCases) assert.equal(render(template, c.messages, c.chat_template_kwargs), c.prompt, c.name);
});

test("raise_exception becomes an InvalidRequestError carrying the template's message", () => {
  const refuses = (messages: ChatTemplateMessage[], message: string): void => {
    assert.throws(
      () => template.render({ messages }),
      (err: unknown) => err instanceof InvalidRequestError && err.message.includes(message),
    );
  };
  refuses([], 'No messages provided.');
  refuses([{ role: 'system', content: [{ type: 'image' }] }, { role: 'user', content: 'Hi' }], 'System message cannot contain images.');
  refuses([{ role: 'system', content: 'Be brief.' }], 'No user query found in messages.');
  refuses([{ role: 'user', content: 'Hi' }, { role: 'system', content: 'Late.' }], 'System message must be at the beginning.');
  refuses([{ role: 'user', content: 'Hi' }, { role: 'robot', content: 'Beep.' }], 'Unexpected message role.');
  refuses([{ role: 'user', content: [{ type: 'audio' }] }], 'Unexpected item type in content.');
});

// Expected values below are what Python's str methods and Jinja2 give (documented behaviour, independent of us).
test('Python string semantics that chat templates rely on', () => {
  const r = (source: string, kwargs: Record<string, unknown> = {}): string => renderChatTemplate(source, { messages: [], kwargs });
  // str.rstrip/lstrip/strip(chars) remove only the given characters.
  assert.equal(r(`{{ "  a\\n\\n".rstrip("\\n") }}|{{ "\\n\\n  a".lstrip("\\n") }}|{{ "xxayx".strip("xy") }}`), '  a|  a|a');
  // Without an argument (and |trim) they remove Python's whitespace: U+0085 and U+001C are whitespace, U+FEFF is not.
  assert.equal(r('{{ s|trim }}|{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}', { s: '\u0085\u001c a \ufeff' }), 'a \ufeff|a \ufeff|a \ufeff|\u0085\u001c a \ufeff');
  assert.equal(r('{{ "xxaxx"|trim("x") }}'), 'a');
  // None, True and False print and convert to strings as Python's str() does; an undefined value prints nothing.
  assert.equal(r('{{ none }}|{{ true }}|{{ false }}|{{ x }}|{{ y }}', { x: null }), 'None|True|False|None|');
  assert.equal(r('{{ none|string }}|{{ true|string }}|{{ 3|string }}|{{ "s"|string }}'), 'None|True|3|s');
  // The other Python-isms of the official template.
  assert.equal(r(`{{ "a</think>b".split("</think>")[-1] }}|{{ "ab".startswith("a") }}|{{ "ab".endswith("a") }}`), 'b|True|False');
  assert.equal(r('{% for x in [1, 2, 3][::-1] %}{{ x }}{% endfor %}|{% for k, v in {"a": 1}|items %}{{ k }}={{ v }}{% endfor %}'), '321|a=1');
  assert.equal(r('{% set ns = namespace(n=0) %}{% for x in [1, 2] %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}'), '3');
  assert.equal(r('{{ {"a": [1, "é"]}|tojson }}'), '{"a": [1, "é"]}');
  assert.equal(r('{% for m in ["a", "b"] %}{{ loop.previtem }}>{{ loop.nextitem }};{% endfor %}'), '>b;a>;');
  assert.equal(r('{{ "s" is string }}{{ {} is mapping }}{{ [] is iterable }}{{ [] is mapping }}'), 'TrueTrueTrueFalse');
  assert.equal(r('{{ range(3)|join(",") }}|{{ range(1, 7, 2)|join(",") }}'), '0,1,2|1,3,5');
});

// ---- where the template comes from ----

const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-chattemplate-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
const officialSource = readFileSync(join(MODEL_DIR, 'chat_template.jinja'), 'utf8');

test("without chat_template.jinja the template comes from tokenizer_config.json's chat_template (string or named list)", () => {
  const config = JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const asString = join(scratch, 'string');
  mkdirSync(asString);
  writeFileSync(join(asString, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: officialSource }));
  const named = join(scratch, 'named');
  mkdirSync(named);
  writeFileSync(join(named, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'default', template: officialSource }] }));
  const c = chatCases.find((x) => x.name === 'system_multi_turn')!;
  assert.equal(render(chatTemplateFromDir(asString), c.messages, c.kwargs), c.text);
  assert.equal(render(chatTemplateFromDir(named), c.messages, c.kwargs), c.text);
  assert.equal(chatTemplateFromDir(named, 'tool_use').source, 'x');
  assert.throws(() => chatTemplateFromDir(named, 'rag'), (err: unknown) => err instanceof TokenizerError && /no chat template named "rag"/.test(err.message));

  const none = join(scratch, 'none');
  mkdirSync(none);
  writeFileSync(join(none, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>' }));
  assert.throws(() => chatTemplateFromDir(none), (err: unknown) => err instanceof TokenizerError && /has no chat template/.test(err.message));
  assert.throws(() => new ChatTemplate('{% if %}'), (err: unknown) => err instanceof TokenizerError && /not a valid Jinja template/.test(err.message));
});
