// The npm package as people get it: `npm pack` on a fresh copy of the sources (nothing built) builds it through
// prepack and ships only what runs (dist/src with the web page, README, LICENSE) in under 1 MB; that tarball,
// installed into an empty folder from the npm cache alone (offline), gives a working `npx omnilmm`, an importable
// `omnilmm`, the chat page, and answers token-exact on the tiny fixture.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { fixturePath, readFixtureJson, repoRoot } from './helpers/fixtures.js';

const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-package-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const FIXTURE = 'minicpmv2-tiny';
const MAX_PACKAGE_BYTES = 1_000_000;
const rootPackage = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
  name: string; version: string; license: string; bin: Record<string, string>; engines: Record<string, string>;
  dependencies: Record<string, string>;
};

/** The environment without what an enclosing `npm test` sets for its own scripts (npm_config_*, npm_package_*). */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
  return { ...env, OMNILMM_CACHE: join(scratch, 'model-cache'), HF_HUB_OFFLINE: '1', ...extra };
}

async function run(command: string, args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(command, args, { cwd, env: cleanEnv(), maxBuffer: 64 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { message: string; stdout?: string; stderr?: string };
    assert.fail(`${command} ${args.join(' ')} failed in ${cwd}:\n${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

interface PackResult { filename: string; size: number; entryCount: number; files: { path: string }[] }

let packed: PackResult;
let tarball: string;
const app = join(scratch, 'app');

before(async () => {
  // 1. A copy of what the package is built from, without dist/: only prepack can put the compiled code into it.
  //    (The build compiles the tests and scripts too where they exist; the package needs neither.)
  const source = join(scratch, 'source');
  mkdirSync(source);
  for (const entry of ['package.json', 'tsconfig.json', 'README.md', 'LICENSE', 'src']) {
    cpSync(join(repoRoot, entry), join(source, entry), { recursive: true });
  }
  symlinkSync(join(repoRoot, 'node_modules'), join(source, 'node_modules'), 'dir');
  const out = await run('npm', ['pack', '--json', '--pack-destination', scratch], source);
  packed = (JSON.parse(out.slice(out.indexOf('['))) as PackResult[])[0]!;
  tarball = join(scratch, packed.filename);

  // 2. An empty project that installs the tarball. Its lockfile pins the dependencies to the tarballs our own lockfile
  //    names (by integrity), so npm takes them from its cache without asking the registry.
  mkdirSync(app);
  const ownLock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const spec = `file:${tarball}`;
  const packages: Record<string, unknown> = {
    '': { name: 'app', dependencies: { omnilmm: spec } },
    'node_modules/omnilmm': {
      version: rootPackage.version,
      resolved: spec,
      integrity: `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`,
      license: rootPackage.license,
      dependencies: rootPackage.dependencies,
      bin: rootPackage.bin,
      engines: rootPackage.engines,
    },
  };
  for (const [path, entry] of Object.entries(ownLock.packages)) if (path !== '' && !entry.dev) packages[path] = entry;
  // As the README's "Install" says: onnxruntime-node's install script (a CUDA download) is denied.
  writeFileSync(join(app, 'package.json'), JSON.stringify({
    name: 'app', private: true, type: 'module', dependencies: { omnilmm: spec }, allowScripts: { 'onnxruntime-node': false },
  }, null, 2));
  writeFileSync(join(app, 'package-lock.json'), JSON.stringify({ name: 'app', lockfileVersion: 3, requires: true, packages }, null, 2));
  await run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], app);
});

test('npm pack builds through prepack and ships only what runs, in under 1 MB', () => {
  const paths = packed.files.map((f) => f.path);
  const allowed = (path: string) =>
    ['package.json', 'README.md', 'LICENSE'].includes(path) ||
    /^dist\/src\/.+\.(js|d\.ts)$/.test(path) ||
    /^dist\/src\/web\/(index\.html|app\.js|app\.css|live-camera\.js|chat-shell\.js)$/.test(path) ||
    /^dist\/src\/web-app\/(index\.html|app\.js|app\.css|storage\.js)$/.test(path);
  assert.deepEqual(paths.filter((path) => !allowed(path)), [], 'nothing but the compiled library, the two pages, README and LICENSE');
  for (const path of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js', 'dist/src/chat/engine-worker.js',
    'dist/src/web/index.html', 'dist/src/web/app.js', 'dist/src/web/app.css', 'dist/src/web/live-camera.js', 'dist/src/web/chat-shell.js',
    'dist/src/web-app/index.html', 'dist/src/web-app/app.js', 'dist/src/web-app/storage.js', 'LICENSE', 'README.md']) {
    assert.ok(paths.includes(path), `${path} is in the package`);
  }
  assert.ok(packed.size < MAX_PACKAGE_BYTES, `the package is ${packed.size} bytes`);
  assert.match(readFileSync(join(repoRoot, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);
});

test('the installed package: npx omnilmm --help, import { loadModel } from "omnilmm", and a fixture answer', async () => {
  assert.ok(!existsSync(join(app, 'node_modules', 'omnilmm', 'test')), 'no tests or fixtures installed');
  assert.match(await run('npx', ['--offline', 'omnilmm', '--help'], app), /^omnilmm — .*\n\nusage: omnilmm <command>/);

  writeFileSync(join(app, 'check.js'), [
    "import { loadModel, ChatServer, WorkerEngine } from 'omnilmm';",
    'console.log(JSON.stringify([typeof loadModel, typeof ChatServer.start, typeof WorkerEngine.start]));',
  ].join('\n'));
  assert.deepEqual(JSON.parse(await run(process.execPath, ['check.js'], app)), ['function', 'function', 'function']);

  const c = readFixtureJson<{ msgs: { content: string }[]; input: { file: string }; input_ids: number[]; runs: Record<string, { new_token_ids: number[] }> }>(
    FIXTURE, 'llm', 'single_turn_grad.json');
  const answer = await run('npx', ['--offline', 'omnilmm', 'chat', '--model', fixturePath(FIXTURE, 'model'), '--image',
    fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy', '--max-new-tokens', '24', '--threads', '1',
    '--precision', 'fp32', '--vision-precision', 'fp32', '--json', c.msgs[0]!.content], app);
  assert.deepEqual((JSON.parse(answer) as { output_ids: number[] }).output_ids, c.runs.greedy!.new_token_ids);
});

test('the installed package serves the chat page', async () => {
  const serve = spawn('npx', ['--offline', 'omnilmm', 'serve', '--model', fixturePath(FIXTURE, 'model'), '--port', '0', '--threads', '1'],
    { cwd: app, env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let stderr = '';
      serve.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
        const match = /chat page: +(\S+)/.exec(stderr);
        if (match) resolve(match[1]!);
      });
      serve.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
    });
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
    assert.equal((await fetch(`${url}app.js`)).status, 200);
  } finally {
    // npx runs the CLI in a child of its own: stop the whole group.
    if (serve.exitCode === null && serve.signalCode === null) {
      const exited = once(serve, 'exit');
      process.kill(-serve.pid!, 'SIGTERM');
      await exited;
    }
  }
});
