// The loaders read the same tokenizers and configs from files in memory (MemoryModelFiles, as a browser has them) as
// from the folder on disk (folderFiles), and match the fixtures' goldens either way.

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { folderFiles } from '../src/checkpoint/folder-files.js';
import { MemoryModelFiles, type ModelFiles } from '../src/checkpoint/model-files.js';
import { readGenerationConfig } from '../src/config/generation.js';
import { readConfigJson } from '../src/config/load.js';
import { CheckpointError, FileNotFoundError, TokenizerError } from '../src/errors.js';
import { parseMiniCPMV46Config } from '../src/models/minicpmv46/config.js';
import { ChatTemplate } from '../src/tokenizer/chat-template.js';
import { tokenizerFromFiles, type TokenizerFormat } from '../src/tokenizer/load.js';
import { fixturePath, readFixtureJson, repoRoot } from './helpers/fixtures.js';

const FIXTURES: { fixture: string; format: TokenizerFormat }[] = [
  { fixture: 'minicpmv2-tiny', format: 'sentencepiece' },
  { fixture: 'minicpmv46-tiny', format: 'tokenizer.json' },
];
const URL_BASE = 'https://models.example/tiny';

const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-model-files-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** The fixture's model folder in memory (the weights left out), less the files named in `without`. */
function memoryFiles(fixture: string, ...without: string[]): MemoryModelFiles {
  const dir = fixturePath(fixture, 'model');
  const names = readdirSync(dir).filter((name) => !name.endsWith('.safetensors') && !without.includes(name));
  return new MemoryModelFiles(`${URL_BASE}/${fixture}`, new Map(names.map((name) => [name, new Uint8Array(readFileSync(join(dir, name)))])));
}

function assertThrowsClass(load: () => unknown, errorClass: new (...args: never[]) => Error, message: RegExp): void {
  assert.throws(load, (err: unknown) => err instanceof errorClass && message.test(err.message));
}

for (const { fixture, format } of FIXTURES) {
  test(`${fixture}: the ${format} tokenizer encodes and decodes the same from memory as from disk, as the goldens say`, () => {
    const cases = readFixtureJson<{ encode: { text: string; input_ids: number[] }[] }>(fixture, 'tokenizer', 'cases.json').encode;
    const fromMemory = tokenizerFromFiles(memoryFiles(fixture), format);
    const fromDisk = tokenizerFromFiles(folderFiles(fixturePath(fixture, 'model')), format);
    assert.ok(cases.length >= 40);
    for (const c of cases) {
      const ids = fromMemory.encode(c.text);
      assert.deepEqual(ids, c.input_ids, JSON.stringify(c.text));
      assert.deepEqual(fromDisk.encode(c.text), ids, JSON.stringify(c.text));
      assert.equal(fromMemory.decode(ids), fromDisk.decode(ids));
    }
    assert.equal(fromMemory.size, fromDisk.size);
    assert.deepEqual(fromMemory.namedTokens, fromDisk.namedTokens);
  });

  test(`${fixture}: config.json and generation_config.json read the same from memory as from disk`, () => {
    const memory = memoryFiles(fixture);
    const disk = folderFiles(fixturePath(fixture, 'model'));
    assert.deepEqual(readConfigJson(memory).config, readFixtureJson(fixture, 'model', 'config.json'));
    assert.deepEqual(readConfigJson(memory).config, readConfigJson(disk).config);
    assert.equal(readConfigJson(memory).file, `${URL_BASE}/${fixture}/config.json`);
    assert.equal(readConfigJson(disk).file, join(fixturePath(fixture, 'model'), 'config.json'));
    const generation = readGenerationConfig(memory);
    const golden = readFixtureJson<{ bos_token_id: number; eos_token_id: number | number[] }>(fixture, 'model', 'generation_config.json');
    assert.equal(generation?.bosTokenId, golden.bos_token_id);
    assert.deepEqual(generation?.eosTokenIds, [golden.eos_token_id].flat());
    assert.deepEqual(readGenerationConfig(disk), generation);
  });
}

test('minicpmv46-tiny: the typed config (with processor_config.json) and the chat template are the same from memory as from disk', () => {
  const dir = fixturePath('minicpmv46-tiny', 'model');
  const parse = (files: ModelFiles) => parseMiniCPMV46Config({ files, ...readConfigJson(files) });
  const fromMemory = parse(memoryFiles('minicpmv46-tiny'));
  assert.deepEqual(fromMemory, parse(folderFiles(dir)));
  const processor = readFixtureJson<{ image_processor: { max_slice_nums: number; scale_resolution: number } }>('minicpmv46-tiny', 'model', 'processor_config.json');
  assert.equal(fromMemory.processor.image.maxSliceNums, processor.image_processor.max_slice_nums);
  assert.equal(fromMemory.processor.image.scaleResolution, processor.image_processor.scale_resolution);

  const template = ChatTemplate.fromFiles(memoryFiles('minicpmv46-tiny'));
  assert.equal(template.source, readFileSync(join(dir, 'chat_template.jinja'), 'utf8'));
  assert.equal(ChatTemplate.fromFiles(folderFiles(dir)).source, template.source);
});

test('a missing file gives the same error class from memory as from disk, and the message names where it was looked for', () => {
  const empty = new MemoryModelFiles(URL_BASE, new Map());
  assertThrowsClass(() => empty.text('config.json'), FileNotFoundError, /^cannot read https:\/\/models\.example\/tiny\/config\.json: /);
  assertThrowsClass(() => empty.bytes('config.json'), FileNotFoundError, /config\.json/);
  assertThrowsClass(() => folderFiles(scratch).text('config.json'), FileNotFoundError, /^cannot read .*config\.json: ENOENT/);
  assertThrowsClass(() => folderFiles(join(scratch, 'nowhere')), FileNotFoundError, /^model folder not found: /);

  // The loaders check for their files first, whatever holds them.
  assertThrowsClass(() => readConfigJson(empty), CheckpointError, /^no config\.json in https:\/\/models\.example\/tiny: /);
  assertThrowsClass(() => readConfigJson(folderFiles(scratch)), CheckpointError, /^no config\.json in /);
  assertThrowsClass(() => tokenizerFromFiles(memoryFiles('minicpmv2-tiny', 'tokenizer.model'), 'sentencepiece'), TokenizerError,
    /^https:\/\/models\.example\/tiny\/minicpmv2-tiny\/tokenizer\.model is missing/);
  assertThrowsClass(() => tokenizerFromFiles(folderFiles(scratch), 'sentencepiece'), TokenizerError, /tokenizer\.model is missing/);
  assertThrowsClass(() => tokenizerFromFiles(memoryFiles('minicpmv46-tiny', 'tokenizer.json'), 'tokenizer.json'), TokenizerError, /tokenizer\.json is missing/);
  assertThrowsClass(() => tokenizerFromFiles(folderFiles(scratch), 'tokenizer.json'), TokenizerError, /tokenizer\.json is missing/);
  assertThrowsClass(() => ChatTemplate.fromFiles(empty), TokenizerError, /^https:\/\/models\.example\/tiny has neither chat_template\.jinja/);
  assertThrowsClass(() => ChatTemplate.fromFiles(folderFiles(scratch)), TokenizerError, /has neither chat_template\.jinja/);
  const withoutProcessor = memoryFiles('minicpmv46-tiny', 'processor_config.json');
  assertThrowsClass(() => parseMiniCPMV46Config({ files: withoutProcessor, ...readConfigJson(withoutProcessor) }), CheckpointError,
    /processor_config\.json is missing/);
  assert.equal(readGenerationConfig(empty), null);
});

test('MemoryModelFiles decodes text as node:fs does: bad bytes become U+FFFD and a byte order mark stays', () => {
  const files = new MemoryModelFiles(`${URL_BASE}/`, new Map([['a.txt', Uint8Array.of(0xef, 0xbb, 0xbf, 0x68, 0xff, 0x69)]]));
  assert.equal(files.text('a.txt'), '\ufeffh\ufffdi');
  assert.equal(files.text('a.txt'), Buffer.from(files.bytes('a.txt')).toString('utf8'));
  assert.equal(files.describe('a.txt'), `${URL_BASE}/a.txt`);
  assert.ok(files.has('a.txt') && !files.has('b.txt'));
});

test('the browser engine and the loaders import nothing Node-only, directly or through relative imports', () => {
  const neutral = ['checkpoint/model-files', 'config/json', 'config/load', 'config/generation', 'tokenizer/load', 'tokenizer/llama',
    'tokenizer/llama-config', 'tokenizer/sentencepiece', 'tokenizer/tokenizer-json', 'tokenizer/chat-template', 'tokenizer/streaming',
    'models/minicpmv/config', 'models/minicpmv46/config', 'browser/web-model', 'runtime/session-web'];
  const seen = new Set<string>();
  const problems: string[] = [];
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    for (const [, specifier] of source.matchAll(/^(?:import|export)\b[^;]*?from '([^']+)';/gms)) {
      if (specifier!.startsWith('.')) visit(resolve(dirname(file), specifier!));
      else if (/^(node:|sharp$|onnxruntime-node$)/.test(specifier!)) problems.push(`${file} imports ${specifier}`);
    }
    if (/\bBuffer\b/.test(source)) problems.push(`${file} uses Buffer`);
  };
  for (const module of neutral) visit(join(repoRoot, 'dist', 'src', `${module}.js`));
  assert.ok(seen.has(join(repoRoot, 'dist', 'src', 'config', 'fromDict.js')), 'the walk follows relative imports');
  assert.deepEqual(problems, []);
});
