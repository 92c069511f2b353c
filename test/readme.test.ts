// The README's code samples run as written, so that the README cannot drift from the code. Every ```ts and ```sh
// block runs, unless the line before it is `<!-- readme-test: not run (why) -->` (the network, full-size models, a
// server that runs until stopped). What a sample names that this machine lacks is swapped for the tiny fixtures
// first: the model `openbmb/MiniCPM-V-2` → test/fixtures/minicpmv2-tiny/model (`openbmb/MiniCPM-V-4_6` → the
// minicpmv46-tiny one), `photo.jpg` and `photo2.jpg` → fixture photos, `'frames/'` → the fixture's video frames,
// `http://127.0.0.1:8080` → a server on the fixture that this test starts. TypeScript samples are type-checked
// against the package's own types (imported as `omnilmm`, as users import it) and run as ES modules; shell
// samples run in bash from the repository root.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import ts from 'typescript';
import { LocalEngine } from '../src/chat/local-engine.js';
import { ChatServer } from '../src/server/server.js';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const NOT_RUN = /^<!-- readme-test: not run \(.+\) -->$/;
const MODEL = fixturePath('minicpmv2-tiny', 'model');
const PHOTO = fixturePath('minicpmv2-tiny', 'images', 'hk_OCR.jpg');
const MODEL_46 = fixturePath('minicpmv46-tiny', 'model');
const PHOTO_2 = fixturePath('minicpmv46-tiny', 'images', 'grad_100x80.png');
const FRAMES = `${fixturePath('minicpmv46-tiny', 'images', 'video_bars_96x72')}/`;

interface Sample { lang: 'ts' | 'sh'; line: number; code: string }

/** The ts and sh blocks of a Markdown text, less those marked as not run. */
function runnableSamples(markdown: string): Sample[] {
  const lines = markdown.split('\n');
  const samples: Sample[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const end = lines.indexOf('```', i + 1);
    assert.ok(end > i, `README.md:${i + 1}: the code block is not closed`);
    const lang = open[1]!;
    if ((lang === 'ts' || lang === 'sh') && !NOT_RUN.test(lines[i - 1] ?? '')) {
      samples.push({ lang, line: i + 1, code: lines.slice(i + 1, end).join('\n') });
    }
    i = end;
  }
  return samples;
}

const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
const samples = runnableSamples(readme);
// Inside the repository (dist/ is not committed), so that `omnilmm` resolves to this package by its own name.
const scratch = mkdtempSync(join(repoRoot, 'dist', 'readme-samples-'));
const env = { ...process.env, OMNILMM_CACHE: process.env.OMNILMM_CACHE ?? join(scratch, 'model-cache'), HF_HUB_OFFLINE: '1' };
let engine: LocalEngine;
let server: ChatServer;

before(async () => {
  engine = await LocalEngine.start(MODEL, { threads: 1 });
  server = await ChatServer.start({ engine, port: 0, log: () => {} });
});
after(async () => {
  await server?.close();
  await engine?.close();
  rmSync(scratch, { recursive: true, force: true });
});

function onFixtures(code: string): string {
  return code
    .replaceAll('http://127.0.0.1:8080', server.url)
    .replaceAll('openbmb/MiniCPM-V-4_6', MODEL_46)
    .replaceAll('openbmb/MiniCPM-V-2', MODEL)
    .replaceAll('photo.jpg', PHOTO)
    .replaceAll('photo2.jpg', PHOTO_2)
    .replaceAll("'frames/'", `'${FRAMES}'`);
}

test('the README marks what it does not run, and runs a TypeScript and a shell sample at least', () => {
  assert.ok(samples.some((s) => s.lang === 'ts') && samples.some((s) => s.lang === 'sh'));
  for (const line of readme.split('\n').filter((l) => l.startsWith('<!-- readme-test'))) assert.match(line, NOT_RUN);
});

test('the TypeScript samples type-check against the package as users import it', () => {
  const files = samples.filter((s) => s.lang === 'ts').map((sample) => {
    const file = join(scratch, `sample-line-${sample.line}.ts`);
    writeFileSync(file, onFixtures(sample.code));
    return file;
  });
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022,
    strict: true, noEmit: true, types: ['node'], skipLibCheck: true,
  });
  const problems = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${d.file.fileName.slice(scratch.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : '';
    return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
  assert.deepEqual(problems, []);
});

for (const sample of samples) {
  test(`README.md:${sample.line}: the ${sample.lang} sample runs on the fixtures`, async () => {
    const dir = join(scratch, `run-${sample.line}`);
    mkdirSync(dir);
    const code = onFixtures(sample.code);
    let command: string[];
    if (sample.lang === 'ts') {
      const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
      writeFileSync(join(dir, 'sample.js'), js);
      command = [process.execPath, join(dir, 'sample.js')];
    } else {
      command = ['bash', '-euo', 'pipefail', '-c', code];
    }
    try {
      const { stdout } = await promisify(execFile)(command[0]!, command.slice(1), {
        cwd: sample.lang === 'sh' ? repoRoot : dir, env, maxBuffer: 64 << 20,
      });
      assert.ok(stdout.trim().length > 0, 'the sample prints its result');
    } catch (err) {
      const e = err as { message: string; stderr?: string };
      assert.fail(`README.md:${sample.line} failed:\n${code}\n---\n${e.message}\n${e.stderr ?? ''}`);
    }
  });
}
