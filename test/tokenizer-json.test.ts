import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { TokenizerError } from '../src/errors.js';
import { BYTE_TO_CHAR } from '../src/tokenizer/byte-level.js';
import { onigToRegExp } from '../src/tokenizer/onig-regex.js';
import { TokenIndex, TokenList } from '../src/tokenizer/token-table.js';
import { tokenizerJsonFromDir } from '../src/tokenizer/load-folder.js';
import type { DecodeOptions } from '../src/tokenizer/tokenizer.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv46-tiny';
const MODEL_DIR = fixturePath(FIXTURE, 'model');

interface EncodeCase {
  text: string;
  input_ids: number[];
  tokens: string[];
  decode: string;
  decode_skip_special: string;
}
interface DecodeCase {
  ids: number[];
  tokens: string[];
  decode: string;
  decode_skip_special: string;
}
interface Cases {
  encode: EncodeCase[];
  decode: DecodeCase[];
  added_token_ids: Record<string, number>;
  vocab_size_with_added: number;
  bos_token: string;
  eos_token: string;
  pad_token: string;
  unk_token: string;
  all_special_tokens: string[];
}
interface LlmRun {
  new_token_ids: number[];
  text: string;
  text_with_special?: string;
}
interface LlmCase {
  name: string;
  prompt: string;
  input_ids: number[];
  images: unknown[];
  video: unknown;
  runs: Record<string, LlmRun>;
}

const cases = readFixtureJson<Cases>(FIXTURE, 'tokenizer', 'cases.json');
const llmCases = readdirSync(fixturePath(FIXTURE, 'llm'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => readFixtureJson<LlmCase>(FIXTURE, 'llm', f));
const tokenizer = tokenizerJsonFromDir(MODEL_DIR);

/** Decodes ids one at a time; returns every chunk (the last is flush()'s). */
function stream(ids: readonly number[], options?: DecodeOptions): string[] {
  const decoder = tokenizer.streamDecoder(options);
  const chunks = ids.map((id) => decoder.push(id));
  chunks.push(decoder.flush());
  return chunks;
}

const label = (text: string): string => JSON.stringify(text.length > 40 ? text.slice(0, 40) + '…' : text);

test('every encode case: ids, tokens, decode and decode without special tokens', () => {
  assert.equal(cases.encode.length, 41);
  for (const c of cases.encode) {
    const ids = tokenizer.encode(c.text);
    assert.deepEqual(ids, c.input_ids, `ids of ${label(c.text)}`);
    assert.deepEqual(ids.map((id) => tokenizer.idToPiece(id)), c.tokens, `tokens of ${label(c.text)}`);
    assert.equal(tokenizer.decode(ids), c.decode, `decode of ${label(c.text)}`);
    assert.equal(tokenizer.decode(ids, { skipSpecialTokens: true }), c.decode_skip_special, `decode_skip_special of ${label(c.text)}`);
    // The ByteLevel post-processor adds nothing: no BOS/EOS with or without special tokens.
    assert.deepEqual(tokenizer.encode(c.text, { addSpecialTokens: false }), c.input_ids);
  }
});

test('every decode case: tokens, decode and decode without special tokens', () => {
  assert.equal(cases.decode.length, 10);
  for (const c of cases.decode) {
    const name = JSON.stringify(c.ids);
    assert.deepEqual(c.ids.map((id) => tokenizer.idToPiece(id)), c.tokens, `tokens of ${name}`);
    assert.equal(tokenizer.decode(c.ids), c.decode, `decode of ${name}`);
    assert.equal(tokenizer.decode(c.ids, { skipSpecialTokens: true }), c.decode_skip_special, `decode_skip_special of ${name}`);
  }
});

test('the prompts of the language-model goldens: text-only ids, and the generated ids decode to the recorded text', () => {
  const textOnly = llmCases.find((c) => c.name === 'text_only');
  assert.ok(textOnly, 'llm/text_only.json is in the fixture');
  assert.deepEqual(tokenizer.encode(textOnly.prompt), textOnly.input_ids);
  for (const c of llmCases) {
    // Without images or video the prompt's ids are the model's input ids (else the processor expands placeholders).
    if (c.images.length === 0 && c.video === null) assert.deepEqual(tokenizer.encode(c.prompt), c.input_ids, c.name);
    for (const [runName, run] of Object.entries(c.runs)) {
      assert.equal(tokenizer.decode(run.new_token_ids, { skipSpecialTokens: true }), run.text, `${c.name} ${runName} text`);
      if (run.text_with_special !== undefined) assert.equal(tokenizer.decode(run.new_token_ids), run.text_with_special, `${c.name} ${runName} text_with_special`);
      assert.equal(stream(run.new_token_ids, { skipSpecialTokens: true }).join(''), run.text, `${c.name} ${runName} streamed`);
    }
  }
});

test('special tokens, size and token ids as transformers reports them', () => {
  assert.equal(tokenizer.size, cases.vocab_size_with_added);
  for (const [content, id] of Object.entries(cases.added_token_ids)) {
    assert.equal(tokenizer.pieceToId(content), id, content);
    assert.equal(tokenizer.idToPiece(id), content);
  }
  for (const token of cases.all_special_tokens) assert.ok(tokenizer.isSpecialId(tokenizer.pieceToId(token)), `${token} is special`);
  for (const token of ['<think>', '</think>', '<tool_call>', '</tool_call>']) assert.ok(!tokenizer.isSpecialId(tokenizer.pieceToId(token)), `${token} is not special`);
  assert.equal(tokenizer.namedTokens['bos_token'], cases.bos_token);
  assert.equal(tokenizer.namedTokens['eos_token'], cases.eos_token);
  assert.equal(tokenizer.namedTokens['pad_token'], cases.pad_token);
  assert.equal(tokenizer.namedTokens['unk_token'], cases.unk_token);
  assert.equal(tokenizer.namedTokens['image_token'], '<|image_pad|>');
  // convert_tokens_to_ids gives the unk id for a token the vocabulary lacks; decode skips ids it does not know.
  assert.equal(tokenizer.pieceToId('no such token'), tokenizer.pieceToId(cases.unk_token));
  assert.throws(() => tokenizer.idToPiece(tokenizer.size), TokenizerError);
  assert.equal(tokenizer.decode([tokenizer.pieceToId('h'), tokenizer.size + 5, tokenizer.pieceToId('i')]), 'hi');
});

test('the streaming decoder equals decode() over every case, with and without special tokens', () => {
  const all = [...cases.encode.map((c) => ({ ids: c.input_ids, decode: c.decode, skip: c.decode_skip_special })), ...cases.decode.map((c) => ({ ids: c.ids, decode: c.decode, skip: c.decode_skip_special }))];
  for (const c of all) {
    assert.equal(stream(c.ids).join(''), c.decode, `stream of ${JSON.stringify(c.ids)}`);
    assert.equal(stream(c.ids, { skipSpecialTokens: true }).join(''), c.skip, `stream (skip special) of ${JSON.stringify(c.ids)}`);
  }
  // A decoder can be reused after flush().
  const decoder = tokenizer.streamDecoder();
  for (const c of cases.encode.slice(0, 5)) {
    assert.equal(c.input_ids.map((id) => decoder.push(id)).join('') + decoder.flush(), c.decode);
  }
});

test('the streaming decoder never emits half a character: every case streamed one byte token at a time', () => {
  const byteId = (b: number): number => tokenizer.pieceToId(BYTE_TO_CHAR[b]!);
  const texts = [...cases.encode.map((c) => c.decode), ...llmCases.map((c) => c.prompt)];
  for (const text of texts) {
    const bytes = new TextEncoder().encode(text);
    const chunks = stream([...bytes].map(byteId));
    assert.equal(chunks.join(''), text, `bytes of ${label(text)}`);
    // Each chunk is whole characters that were complete when it was emitted: its bytes are exactly the bytes pushed
    // since the previous chunk, minus an incomplete tail that the next chunk begins with.
    let consumed = 0;
    chunks.forEach((chunk, i) => {
      assert.ok(!chunk.includes('\ufffd'), `no replacement character in chunk ${i} of ${label(text)}`);
      assert.ok(!/[\ud800-\udbff]$/.test(chunk), `chunk ${i} of ${label(text)} does not end inside a surrogate pair`);
      consumed += new TextEncoder().encode(chunk).length;
      assert.ok(consumed <= Math.min(i + 1, bytes.length), `chunk ${i} shows no byte before it arrived`);
    });
  }
  // Bytes that never complete a character come out as U+FFFD at flush, as in decode().
  const lead = [0xe4, 0xbd].map(byteId);
  assert.deepEqual(stream(lead), ['', '', '\ufffd']);
  assert.equal(tokenizer.decode(lead), '\ufffd');
});

test('the pre-tokenizer regex is translated with Oniguruma semantics', () => {
  const qwen = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
  const regex = onigToRegExp(qwen);
  const split = (text: string): string[] => [...text.matchAll(regex)].map((m) => m[0]);
  // Case-insensitive contractions; Unicode case folding also equates U+017F (long s) with s.
  assert.deepEqual(split("I'LL x'Ve"), ['I', "'LL", ' x', "'Ve"]);
  assert.deepEqual(split("x'\u017ft"), ['x', "'\u017f", 't']);
  // \s is the White_Space property: U+0085 is whitespace, U+FEFF is not.
  assert.deepEqual(split('a\u0085\u0085b'), ['a', '\u0085', '\u0085b']);
  assert.deepEqual(split('a\ufeff\ufeffb'), ['a', '\ufeff\ufeff', 'b']);
  // Combining marks stay with their letters; digits are single.
  assert.deepEqual(split('e\u0301te 123'), ['e\u0301te', ' ', '1', '2', '3']);
  assert.equal(onigToRegExp('a{2,3}|b.').source, 'a{2,3}|b[^\\n]');
  assert.throws(() => onigToRegExp('a++'), /possessive/);
  assert.throws(() => onigToRegExp('^a'), /anchor/);
  assert.throws(() => onigToRegExp('(?>a)'), /group syntax/);
  assert.throws(() => onigToRegExp(String.raw`\bword`), /escape \\b/);
  assert.throws(() => onigToRegExp('(?i:é)'), /non-ASCII letter/);
});

// ---- bad tokenizer files ----

const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-tokjson-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
const original = JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;

/** A folder holding the fixture's tokenizer_config.json and the given tokenizer.json text. */
function folderWithText(name: string, text: string): string {
  const dir = join(scratch, name);
  mkdirSync(dir);
  copyFileSync(join(MODEL_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  writeFileSync(join(dir, 'tokenizer.json'), text);
  return dir;
}

/** A folder holding the fixture's tokenizer_config.json and its tokenizer.json changed by `edit`. */
function folderWith(name: string, edit: (json: Record<string, unknown>) => void): string {
  const json = structuredClone(original);
  edit(json);
  return folderWithText(name, JSON.stringify(json));
}

test('bad tokenizer folders and files give a TokenizerError that says what is wrong', () => {
  const rejects = (dir: string, pattern: RegExp): void => {
    assert.throws(() => tokenizerJsonFromDir(dir), (err: unknown) => err instanceof TokenizerError && pattern.test(err.message));
  };
  rejects(join(scratch, 'missing'), /tokenizer folder not found/);
  const empty = join(scratch, 'empty');
  mkdirSync(empty);
  rejects(empty, /tokenizer\.json is missing/);
  rejects(folderWithText('truncated', readFileSync(join(MODEL_DIR, 'tokenizer.json'), 'utf8').slice(0, 5000)), /is not valid JSON/);
  rejects(folderWithText('not-object', '[1, 2]'), /not a JSON object/);
  const model = (j: Record<string, unknown>): Record<string, unknown> => j['model'] as Record<string, unknown>;
  rejects(folderWith('wordpiece', (j) => void (model(j)['type'] = 'WordPiece')), /the model WordPiece is not supported/);
  rejects(folderWith('nfkc', (j) => void (j['normalizer'] = { type: 'NFKC' })), /the normalizer NFKC is not supported/);
  rejects(folderWith('metaspace', (j) => void (j['pre_tokenizer'] = { type: 'Metaspace', replacement: '▁' })), /the pre-tokenizer Metaspace is not supported/);
  rejects(folderWith('template', (j) => void (j['post_processor'] = { type: 'TemplateProcessing' })), /post-processor TemplateProcessing/);
  rejects(folderWith('wordpiece-decoder', (j) => void (j['decoder'] = { type: 'WordPiece' })), /the decoder WordPiece is not supported/);
  rejects(folderWith('byte-fallback', (j) => void (model(j)['byte_fallback'] = true)), /byte_fallback/);
  rejects(folderWith('possessive', (j) => {
    const steps = (j['pre_tokenizer'] as { pretokenizers: { pattern: { Regex: string } }[] }).pretokenizers;
    steps[0]!.pattern.Regex = String.raw`\p{L}++`;
  }), /possessive/);
  rejects(folderWith('bad-merge', (j) => void ((model(j)['merges'] as unknown[])[0] = ['Ġ', 'no-such-token'])), /merge 0 .*no-such-token/);
  rejects(folderWith('no-vocab', (j) => void delete model(j)['vocab']), /model\.vocab is not an object/);
  rejects(folderWith('bad-added', (j) => void ((j['added_tokens'] as unknown[])[0] = { content: 'x' })), /added_tokens\[0\] needs an "id"/);
});

// What transformers 5.18 does with these settings was observed with the official code on this fixture: add_bos_token /
// add_eos_token wrap the ids, eos_token "<think>" makes that added token special, cls_token "<brandnew>" gets id 3040.
test('tokenizer_config.json: added BOS/EOS and special tokens the vocabulary lacks, as transformers adds them', () => {
  const dir = folderWith('bos-eos', () => {});
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...config, add_bos_token: true, add_eos_token: true, eos_token: '<think>', cls_token: '<brandnew>' }));
  const t = tokenizerJsonFromDir(dir);
  const hi = tokenizer.encode('hi');
  const [bos, think] = [tokenizer.pieceToId('<|im_start|>'), tokenizer.pieceToId('<think>')];
  assert.deepEqual(t.encode('hi'), [bos, ...hi, think]);
  assert.deepEqual(t.encode('hi', { addSpecialTokens: false }), hi);
  // A configured special token becomes special; one that is nowhere gets the next id.
  assert.ok(t.isSpecialId(think));
  assert.equal(t.size, cases.vocab_size_with_added + 1);
  assert.equal(t.pieceToId('<brandnew>'), cases.vocab_size_with_added);
  assert.equal(t.decode(t.encode('a<brandnew>b'), { skipSpecialTokens: true }), 'ab');
});

test('TokenIndex and TokenList answer as the Maps they are built from: every key, absent keys, sparse ids', () => {
  const tokens = new Map<string, number>([['', 7], ['a', 0], ['ab', 1], ['ba', 2], ['Ġthe', 3], ['😀x', 4], ['日本', 9]]);
  for (let i = 0; i < 5000; i++) tokens.set(`t${i.toString(36)}${'é'.repeat(i % 3)}`, 10 + 2 * i);
  const index = new TokenIndex(tokens);
  assert.equal(index.size, tokens.size);
  for (const [token, id] of tokens) assert.equal(index.get(token), id, JSON.stringify(token));
  for (const absent of ['abc', 'b', 'Ġth', 'Ġthee', '😀', 't0é', 'T0', 'x']) {
    assert.equal(index.get(absent), undefined, absent);
    assert.equal(index.has(absent), false);
  }
  const byId = new Map([...tokens].map(([token, id]) => [id, token]));
  const list = new TokenList(byId);
  assert.equal(list.size, 10 + 2 * 4999 + 1);
  for (const [id, token] of byId) assert.equal(list.get(id), token);
  for (const absent of [5, 6, 8, 11, 10 + 2 * 4999 + 1, -1, 2.5, Number.NaN]) assert.equal(list.get(absent), undefined, String(absent));
});
