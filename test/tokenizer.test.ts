import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { InvalidRequestError, OmnilmmError, TokenizerError } from '../src/errors.js';
import { ProtoWriter } from '../src/graph/protobuf.js';
import { decodeText, EmptyAnswerError, imageBound } from '../src/models/minicpmv/tokens.js';
import { llamaTokenizerFromDir } from '../src/tokenizer/load-folder.js';
import { pythonStrip } from '../src/tokenizer/python-strings.js';
import { SentencePieceProcessor } from '../src/tokenizer/sentencepiece.js';
import { HOLD_BACK_TOKENS, StreamingDetokenizer } from '../src/tokenizer/streaming.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
const MODEL_DIR = fixturePath(FIXTURE, 'model');

interface EncodeCase {
  text: string;
  input_ids: number[];
  pieces: string[];
  image_bound: [number, number][];
  decode: string;
  decode_without_bos: string;
  decode_text: string | null;
  decode_text_error?: string;
}
interface DecodeCase {
  ids: number[];
  pieces: string[];
  decode: string;
  decode_text?: string;
  decode_text_error?: string;
}
interface Cases {
  encode: EncodeCase[];
  decode: DecodeCase[];
  special_ids: Record<string, number>;
}
interface LlmRun { output_ids: number[]; new_token_ids: number[]; text: string }
interface LlmCase { prompt: string; input_ids: number[]; seq_len: number; image_bound: [number, number][]; runs: Record<string, LlmRun> }

const cases = readFixtureJson<Cases>(FIXTURE, 'tokenizer', 'cases.json');
const tokenizer = llamaTokenizerFromDir(MODEL_DIR);
const { im_start_id: IM_START, im_end_id: IM_END } = cases.special_ids;

function stream(ids: readonly number[], detok = new StreamingDetokenizer(tokenizer)): { chunks: string[]; text: string } {
  const chunks = ids.map((id) => detok.push(id));
  chunks.push(detok.flush());
  return { chunks, text: chunks.join('') };
}

function decodeTextOrError(ids: readonly number[]): string {
  try {
    return decodeText(tokenizer, ids);
  } catch (err) {
    if (err instanceof EmptyAnswerError) return 'EmptyAnswerError';
    throw err;
  }
}

test('tokenizer.model: options and piece types are read from the file (README §2.3)', () => {
  const sp = tokenizer.sentencePiece;
  assert.equal(sp.trainerSpec.modelType, 'BPE');
  assert.equal(sp.trainerSpec.byteFallback, true);
  assert.equal(sp.trainerSpec.splitDigits, true);
  assert.equal(sp.trainerSpec.allowWhitespaceOnlyPieces, true);
  assert.equal(sp.trainerSpec.treatWhitespaceAsSuffix, false);
  assert.equal(sp.normalizerSpec.name, 'identity');
  assert.equal(sp.normalizerSpec.addDummyPrefix, true);
  assert.equal(sp.normalizerSpec.removeExtraWhitespaces, false);
  assert.equal(sp.normalizerSpec.escapeWhitespaces, true);
  assert.equal(sp.vocabSize, 4000);
  const typeOf = (id: number) => sp.pieceType(id);
  assert.equal(typeOf(0), 'UNKNOWN');
  for (const id of [1, 2, 3, 50, 100]) assert.equal(typeOf(id), 'CONTROL', `id ${id}`);
  for (let id = 101; id <= 114; id++) assert.equal(typeOf(id), 'USER_DEFINED', `id ${id}`);
  assert.equal(sp.idToPiece(113), '<用户>');
  assert.equal(sp.idToPiece(114), '<AI>');
  for (let id = 115; id <= 370; id++) assert.equal(sp.idToPiece(id), `<0x${(id - 115).toString(16).toUpperCase().padStart(2, '0')}>`);
  assert.equal(typeOf(115), 'BYTE');
  assert.equal(typeOf(371), 'NORMAL');
  assert.equal(typeOf(3999), 'NORMAL');
});

test('special ids equal the fixture', () => {
  const s = cases.special_ids;
  assert.equal(tokenizer.bosId, s['bos_id']);
  assert.equal(tokenizer.eosId, s['eos_id']);
  assert.equal(tokenizer.unkId, s['unk_id']);
  assert.equal(tokenizer.padId, s['pad_token_id']);
  assert.equal(tokenizer.vocabSize, s['vocab_size']);
  assert.equal(tokenizer.size, s['vocab_size']);
  assert.equal(tokenizer.pieceToId('<image>'), IM_START);
  assert.equal(tokenizer.pieceToId('</image>'), IM_END);
  assert.equal(tokenizer.pieceToId('<用户>'), s['user_tag_id']);
  assert.equal(tokenizer.pieceToId('<AI>'), s['ai_tag_id']);
  assert.equal(tokenizer.pieceToId('no such piece'), s['unk_id']);
});

test('every encode case: ids, pieces, image_bound, decode, decode_without_bos, decode_text', () => {
  assert.equal(cases.encode.length, 40);
  for (const c of cases.encode) {
    const what = JSON.stringify(c.text);
    const ids = tokenizer.encode(c.text);
    assert.deepEqual(ids, c.input_ids, `${what}: input_ids`);
    assert.deepEqual(ids.map((id) => tokenizer.idToPiece(id)), c.pieces, `${what}: pieces`);
    assert.deepEqual(tokenizer.tokenize(c.text), c.pieces.slice(1), `${what}: tokenize`);
    assert.deepEqual(tokenizer.encode(c.text, { addSpecialTokens: false }), c.input_ids.slice(1), `${what}: without BOS`);
    assert.deepEqual(imageBound(ids, IM_START, IM_END), c.image_bound, `${what}: image_bound`);
    assert.equal(tokenizer.decode(ids), c.decode, `${what}: decode`);
    assert.equal(tokenizer.decode(ids.slice(1)), c.decode_without_bos, `${what}: decode_without_bos`);
    if (c.decode_text_error !== undefined) {
      assert.match(c.decode_text_error, /^IndexError/);
      assert.equal(decodeTextOrError(ids), 'EmptyAnswerError', `${what}: decode_text raises`);
    } else {
      assert.equal(decodeText(tokenizer, ids), c.decode_text, `${what}: decode_text`);
    }
  }
});

test('every decode case: pieces, decode, decode_text', () => {
  assert.equal(cases.decode.length, 13);
  for (const c of cases.decode) {
    const what = JSON.stringify(c.ids);
    assert.deepEqual(c.ids.map((id) => tokenizer.idToPiece(id)), c.pieces, `${what}: pieces`);
    assert.equal(tokenizer.decode(c.ids), c.decode, `${what}: decode`);
    if (c.decode_text_error !== undefined) assert.equal(decodeTextOrError(c.ids), 'EmptyAnswerError', what);
    else assert.equal(decodeText(tokenizer, c.ids), c.decode_text, `${what}: decode_text`);
  }
});

test('llm cases: prompt ids, image_bound and answer texts', () => {
  const files = readdirSync(fixturePath(FIXTURE, 'llm')).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 5);
  for (const file of files) {
    const c = readFixtureJson<LlmCase>(FIXTURE, 'llm', file);
    const ids = tokenizer.encode(c.prompt);
    assert.deepEqual(ids, c.input_ids, `${file}: input_ids`);
    assert.equal(ids.length, c.seq_len);
    assert.deepEqual(imageBound(ids, IM_START, IM_END), c.image_bound, `${file}: image_bound`);
    for (const [name, run] of Object.entries(c.runs)) {
      assert.equal(decodeText(tokenizer, run.output_ids), run.text, `${file} ${name}: text`);
      // What a chat streams: the new ids without EOS and id 0; stripped, the stream is the answer.
      const streamed = stream(run.new_token_ids.filter((id) => id !== tokenizer.eosId && id !== 0)).text;
      assert.equal(pythonStrip(streamed), run.text, `${file} ${name}: streamed text`);
    }
  }
});

test('streaming: the ids of every fixture case give the fixture decode', () => {
  // The documented exception: when decode() starts with the legacy space of a run that a special token follows,
  // the stream has already shown that run and leaves the space out.
  let withoutLeadingSpace = 0;
  const check = (ids: readonly number[], expected: string, what: string): void => {
    const { text } = stream(ids);
    if (text === expected) return;
    assert.ok(expected.startsWith(' ') && !tokenizer.isSpecialId(ids[0]!), `${what}: ${JSON.stringify(text)}`);
    assert.equal(text, expected.slice(1), what);
    withoutLeadingSpace++;
  };
  for (const c of cases.encode) {
    check(c.input_ids, c.decode, JSON.stringify(c.text));
    check(c.input_ids.slice(1), c.decode_without_bos, `${JSON.stringify(c.text)} without BOS`);
  }
  for (const c of cases.decode) check(c.ids, c.decode, JSON.stringify(c.ids));
  // "text before <image> and after </image> tags" without BOS, and [125, 125, 2, 2] → " \n\n</s></s>".
  assert.equal(withoutLeadingSpace, 2);
});

test('streaming: a character split over byte pieces appears whole, with the last byte', () => {
  const emoji = stream([355, 274, 268, 245]);
  assert.deepEqual(emoji.chunks, ['', '', '', '🙂', '']);

  const japanese = cases.encode.find((c) => c.text === '日本語のテキスト')!;
  const ids = japanese.input_ids.slice(1);
  const { chunks, text } = stream(ids);
  assert.equal(text, '日本語のテキスト');
  // ▁ (dropped), then 日 and 本 are pieces; the other six characters are three byte pieces each.
  assert.deepEqual(chunks, ['', '日', '本', '', '', '語', '', '', 'の', '', '', 'テ', '', '', 'キ', '', '', 'ス', '', '', 'ト', '']);

  const chinese = cases.encode.find((c) => c.text === '你好，世界')!;
  const zh = stream(chinese.input_ids.slice(1));
  assert.equal(zh.text, '你好，世界');
  assert.ok(zh.chunks.every((chunk) => !chunk.includes('\ufffd')));
});

test('streaming: bytes that never complete a character become U+FFFD on flush, as in decode', () => {
  const { chunks, text } = stream([355, 274]);
  assert.deepEqual(chunks, ['', '', '\ufffd\ufffd']);
  assert.equal(text, cases.decode.find((c) => c.ids.join() === '355,274')!.decode);
  // A byte that cannot start a character is replaced at once, the next one waits for its continuation.
  assert.deepEqual(stream([115 + 0x80, 115 + 0xe4, 115 + 0xb8, 115 + 0x96]).chunks, ['\ufffd', '', '', '世', '']);
});

test('streaming: the legacy space of a run that a special token follows', () => {
  const x = tokenizer.pieceToId('x');
  const a = tokenizer.pieceToId('a');
  assert.equal(tokenizer.idToPiece(x), 'x');
  const [ref, refEnd] = [tokenizer.pieceToId('<ref>'), tokenizer.pieceToId('</ref>')];
  // A short run after shown text is held back until </ref>, so the space lands where decode() puts it.
  const short = [a, ref, x, x, refEnd, a];
  assert.equal(tokenizer.decode(short), ' a<ref> xx</ref>a');
  assert.equal(stream(short).text, 'a<ref> xx</ref>a');
  // A run longer than the hold-back is shown before </ref> comes; the space then goes before the special token.
  const long = [a, ref, ...Array<number>(HOLD_BACK_TOKENS + 1).fill(x), refEnd];
  const xs = 'x'.repeat(HOLD_BACK_TOKENS + 1);
  assert.equal(tokenizer.decode(long), ` a<ref> ${xs}</ref>`);
  const { chunks, text } = stream(long);
  assert.equal(text, `a<ref>${xs} </ref>`);
  assert.equal(chunks[HOLD_BACK_TOKENS + 1], 'x'.repeat(HOLD_BACK_TOKENS));
});

test('streaming: flush starts a new sequence', () => {
  const detok = new StreamingDetokenizer(tokenizer);
  const ids = tokenizer.encode('hello world', { addSpecialTokens: false });
  assert.equal(stream(ids, detok).text, 'hello world');
  assert.equal(stream(ids, detok).text, 'hello world');
});

test('decodeText strips like Python str.strip(), not like String.prototype.trim()', () => {
  const byteId = (b: number) => tokenizer.pieceToId(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  // "\x1c" "\x85" (C2 85) "a" "\ufeff" (EF BB BF)
  const ids = [1, byteId(0x1c), byteId(0xc2), byteId(0x85), tokenizer.pieceToId('a'), byteId(0xef), byteId(0xbb), byteId(0xbf), 2];
  assert.equal(tokenizer.decode(ids.slice(1, -1)), '\x1c\x85a\ufeff');
  assert.equal(decodeText(tokenizer, ids), 'a\ufeff');
  assert.equal(pythonStrip('\u3000\u2028 x \u205f\u00a0\t'), 'x');
});

test('decodeText throws EmptyAnswerError where the official code raises IndexError', () => {
  for (const ids of [[], [0, 0], [1], [0, 1, 0]]) {
    assert.throws(() => decodeText(tokenizer, ids), (err: unknown) => err instanceof EmptyAnswerError && err instanceof OmnilmmError, JSON.stringify(ids));
  }
  assert.equal(decodeText(tokenizer, [1, 2]), '');
});

test('imageBound refuses unmatched image start/end tokens', () => {
  assert.deepEqual(imageBound([1, 5, 6], IM_START, IM_END), []);
  assert.throws(() => imageBound([1, IM_START, 0, IM_END, IM_START], IM_START, IM_END), InvalidRequestError);
});

test('encoding a 2000-token prompt takes milliseconds, not seconds (no quadratic pass)', () => {
  const hk = readFixtureJson<LlmCase>(FIXTURE, 'llm', 'long_prompt_hk.json');
  const text = hk.prompt.repeat(9);
  const ids = tokenizer.encode(text);
  assert.ok(ids.length > 2000, `${ids.length} tokens`);
  const long = 'licence '.repeat(2500) + 'x'.repeat(10000);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    tokenizer.encode(text);
    tokenizer.encode(long);
    best = Math.min(best, performance.now() - start);
  }
  // About 15 ms on an idle machine; the bound leaves room for one ten times slower (a busy one).
  assert.ok(best < 1000, `encoding took ${best.toFixed(1)} ms`);
});

// --- Bad files -----------------------------------------------------------------------------------------------

const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-tokenizer-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of the fixture's tokenizer files, with some replaced. */
function tokenizerDir(name: string, replace: Record<string, string | Uint8Array | null> = {}): string {
  const dir = join(scratch, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  for (const file of ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json']) {
    const content = replace[file];
    if (content === null) continue;
    if (content === undefined) copyFileSync(join(MODEL_DIR, file), join(dir, file));
    else writeFileSync(join(dir, file), content);
  }
  return dir;
}

function assertTokenizerError(load: () => unknown, message: RegExp): void {
  assert.throws(load, (err: unknown) => err instanceof TokenizerError && message.test(err.message));
}

test('bad or missing files give a TokenizerError that says what is wrong', () => {
  const model = readFileSync(join(MODEL_DIR, 'tokenizer.model'));
  const config = readFileSync(join(MODEL_DIR, 'tokenizer_config.json'), 'utf8');
  assertTokenizerError(() => llamaTokenizerFromDir(join(scratch, 'nowhere')), /not found/);
  assertTokenizerError(() => llamaTokenizerFromDir(tokenizerDir('no-model', { 'tokenizer.model': null })), /tokenizer\.model is missing/);
  assertTokenizerError(() => llamaTokenizerFromDir(tokenizerDir('truncated', { 'tokenizer.model': model.subarray(0, 1000) })), /not a valid SentencePiece model.*truncated/);
  assertTokenizerError(() => llamaTokenizerFromDir(tokenizerDir('json-model', { 'tokenizer.model': config })), /not a valid SentencePiece model/);
  assertTokenizerError(() => llamaTokenizerFromDir(tokenizerDir('empty-model', { 'tokenizer.model': new Uint8Array(0) })), /no pieces/);
  assertTokenizerError(() => llamaTokenizerFromDir(tokenizerDir('no-config', { 'tokenizer_config.json': null })), /tokenizer_config\.json is missing/);
  assertTokenizerError(() => llamaTokenizerFromDir(tokenizerDir('bad-config', { 'tokenizer_config.json': config.slice(0, 100) })), /tokenizer_config\.json is not valid JSON/);
  assertTokenizerError(() => llamaTokenizerFromDir(tokenizerDir('bad-map', { 'special_tokens_map.json': '{' })), /special_tokens_map\.json is not valid JSON/);
  const notLegacy = JSON.stringify({ ...JSON.parse(config), legacy: false });
  assertTokenizerError(() => llamaTokenizerFromDir(tokenizerDir('not-legacy', { 'tokenizer_config.json': notLegacy })), /"legacy": false/);
  const badAdded = JSON.stringify({ ...JSON.parse(config), added_tokens_decoder: { x: { content: '<a>' } } });
  assertTokenizerError(() => llamaTokenizerFromDir(tokenizerDir('bad-added', { 'tokenizer_config.json': badAdded })), /added_tokens_decoder/);
  // Without special_tokens_map.json (optional in transformers) the tokenizer still loads.
  assert.deepEqual(llamaTokenizerFromDir(tokenizerDir('no-map', { 'special_tokens_map.json': null })).encode('hi'), tokenizer.encode('hi'));
  assertTokenizerError(() => tokenizer.decode([4000]), /token id 4000 is not in the tokenizer's vocabulary/);
  assertTokenizerError(() => tokenizer.decode([-1]), /token id -1/);
});

// --- Small hand-made models ----------------------------------------------------------------------------------

type PieceSpec = [piece: string, score: number, type: number];
const NORMAL = 1, UNKNOWN = 2, CONTROL = 3;

function modelBytes(pieces: PieceSpec[], trainer: { modelType?: number; byteFallback?: boolean; suffix?: boolean } = {}, normalizer = { name: 'identity', charsmap: new Uint8Array(0) }): Uint8Array {
  const proto = new ProtoWriter();
  for (const [piece, score, type] of pieces) proto.message(1, new ProtoWriter().string(1, piece).float(2, score).int(3, type));
  const spec = new ProtoWriter().int(3, trainer.modelType ?? 2).int(35, trainer.byteFallback ? 1 : 0).int(24, trainer.suffix ? 1 : 0);
  proto.message(2, spec);
  const norm = new ProtoWriter().string(1, normalizer.name).int(3, 1).int(4, 0).int(5, 1);
  if (normalizer.charsmap.length > 0) norm.bytes(2, normalizer.charsmap);
  proto.message(3, norm);
  return proto.finish();
}

const BASE: PieceSpec[] = [['<unk>', 0, UNKNOWN], ['<s>', 0, CONTROL], ['</s>', 0, CONTROL]];

test('hand-made BPE model: merges by score with ties to the left; unknown runs become one <unk> without byte fallback', () => {
  const sp = SentencePieceProcessor.fromBytes(modelBytes([
    ...BASE, ['▁', -1, NORMAL], ['a', -2, NORMAL], ['b', -2, NORMAL], ['c', -2, NORMAL], ['ab', -0.5, NORMAL], ['bc', -0.5, NORMAL], ['▁c', -0.1, NORMAL],
  ]));
  // "▁abc": ab and bc score the same, the left pair wins.
  assert.deepEqual(sp.encode('abc').pieces, ['▁', 'ab', 'c']);
  // "▁cab": ▁c (−0.1) first, then ab.
  assert.deepEqual(sp.encode('cab').pieces, ['▁c', 'ab']);
  const unknown = sp.encode('a☃☃b');
  assert.deepEqual(unknown.pieces, ['▁', 'a', '☃☃', 'b']);
  assert.deepEqual(unknown.ids, [3, 4, 0, 5]);
  assert.equal(sp.decodeIds(unknown.ids), 'a \u2047 b');
  assert.equal(sp.encode('').pieces.length, 0);
});

test('hand-made models that are not supported are refused clearly', () => {
  const pieces: PieceSpec[] = [...BASE, ['a', 0, NORMAL]];
  assertTokenizerError(() => SentencePieceProcessor.fromBytes(modelBytes(pieces, { modelType: 1 })), /UNIGRAM model; only BPE/);
  assertTokenizerError(() => SentencePieceProcessor.fromBytes(modelBytes(pieces, { suffix: true })), /treat_whitespace_as_suffix/);
  assertTokenizerError(
    () => SentencePieceProcessor.fromBytes(modelBytes(pieces, {}, { name: 'nmt_nfkc', charsmap: new Uint8Array([1, 2, 3, 4]) })),
    /'nmt_nfkc' normaliser/,
  );
  assertTokenizerError(() => SentencePieceProcessor.fromBytes(modelBytes(pieces, { byteFallback: true })), /256 byte pieces/);
  assertTokenizerError(() => SentencePieceProcessor.fromBytes(modelBytes([['a', 0, NORMAL]])), /no unknown/);
});
