// Coverage-guided fuzzing of the parsers that read untrusted bytes (targets in test/fuzz/targets/):
//
//   npm run fuzz -- --list
//   npm run fuzz -- --target <name> --seconds N [--seed N] [--out DIR] [--max-rss-mb N] [--hang-seconds N]
//   npm run fuzz -- --target <name> --replay FILE...
//
// A child process runs the loop (test/fuzz/engine/loop.ts) with V8 block coverage as feedback, starting from the
// committed seeds in test/fuzz/corpus/<name>/ and the working corpus of earlier runs in <out>/corpus/. This process
// watches it: a child that stops reporting (a hang), dies (a crash, or V8's heap limit) or grows past --max-rss-mb
// (an unbounded allocation) is a finding too; its input is saved and the child restarted. Findings land in
// <out>/findings/ (the input, and a .txt with the error and the command that replays it). Default out: .fuzz/<name>.
// At the end it prints executions, exec/s, coverage of the target modules and the findings; <out>/coverage.txt
// lists the source lines whose blocks never ran.

import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { SourceMap } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModuleCoverage } from '../test/fuzz/engine/counters.js';
import type { ChildMessage, LoopConfig, LoopStats } from '../test/fuzz/engine/loop.js';
import { loadTarget, TARGET_NAMES } from '../test/fuzz/targets/index.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const childScript = join(repoRoot, 'dist', 'test', 'fuzz', 'engine', 'child.js');

interface Options {
  target: string | null;
  seconds: number;
  seed: number;
  out: string | null;
  maxRssMb: number;
  hangSeconds: number;
  replay: string[];
  list: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    target: null, seconds: 60, seed: Date.now() % 2 ** 31, out: null, maxRssMb: 2048, hangSeconds: 30, replay: [], list: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const number = () => {
      const v = Number(value());
      if (!Number.isFinite(v) || v < 0) throw new Error(`${flag} needs a non-negative number`);
      return v;
    };
    if (flag === '--target') options.target = value();
    else if (flag === '--seconds') options.seconds = number();
    else if (flag === '--seed') options.seed = Math.floor(number());
    else if (flag === '--out') options.out = value();
    else if (flag === '--max-rss-mb') options.maxRssMb = number();
    else if (flag === '--hang-seconds') options.hangSeconds = number();
    else if (flag === '--list') options.list = true;
    else if (flag === '--replay') {
      while (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) options.replay.push(argv[++i]!);
    } else throw new Error(`unknown option ${flag}; see the header of scripts/fuzz.ts`);
  }
  return options;
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  if (options.list) {
    for (const name of TARGET_NAMES) console.log(`${name.padEnd(18)} ${(await loadTarget(name)).description}`);
    return 0;
  }
  if (options.target === null) throw new Error(`--target is required; the targets are: ${TARGET_NAMES.join(', ')}`);
  if (options.replay.length > 0) return replay(options.target, options.replay);
  return fuzz(options.target, options);
}

/** Runs each file through the target once, in this process, and says what happened. */
async function replay(name: string, files: string[]): Promise<number> {
  const target = await loadTarget(name);
  let failures = 0;
  for (const file of files) {
    try {
      await target.run(new Uint8Array(readFileSync(file)));
      console.log(`${file}: ok (accepted, or refused with a named error)`);
    } catch (err) {
      failures++;
      console.log(`${file}: FINDING\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }
  return failures > 0 ? 1 : 0;
}

interface Finding {
  kind: string;
  file: string;
  summary: string;
}

async function fuzz(name: string, options: Options): Promise<number> {
  const target = await loadTarget(name);
  const outDir = resolve(options.out ?? join(repoRoot, '.fuzz', name));
  mkdirSync(join(outDir, 'findings'), { recursive: true });
  const findings: Finding[] = [];
  const started = performance.now();
  let finishedExecs = 0;
  let last: LoopStats | null = null;
  let unavailable: string | null = null;
  console.log(`fuzzing ${name} for ${options.seconds} s (seed ${options.seed}): ${target.description}`);
  // The children's scratch files live in memory when /dev/shm exists, and go when the run ends (even after a kill).
  const scratchRoot = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'omnilmm-fuzz-'));
  process.once('exit', () => rmSync(scratchRoot, { recursive: true, force: true }));

  for (let restarts = 0; restarts <= 20; restarts++) {
    const remaining = options.seconds - (performance.now() - started) / 1000;
    if (remaining < 1) break;
    const config: LoopConfig & { modules: string[] } = {
      target: name, seconds: remaining, seed: options.seed + restarts, seedDir: join(repoRoot, 'test', 'fuzz', 'corpus', name),
      outDir, slowMs: 5000, maxAllocBytes: 256 << 20, hangMs: options.hangSeconds * 1000, modules: target.modules,
    };
    const outcome = await runChild(config, options, scratchRoot, (message) => {
      if (message.type === 'stats') {
        last = message.stats;
        report(last, finishedExecs, started, findings.length);
      } else if (message.type === 'finding') {
        if (findings.some((f) => f.file === message.file)) return;
        findings.push({ kind: message.kind, file: message.file, summary: message.summary });
        console.log(`  finding (${message.kind}): ${message.summary}\n    input: ${relative(process.cwd(), message.file)}`);
      } else if (message.type === 'done') {
        last = message.stats;
      } else {
        unavailable = message.why;
      }
    });
    finishedExecs += (last as LoopStats | null)?.execs ?? 0;
    last = last ? { ...(last as LoopStats), execs: 0 } : null;
    if (outcome === null) break;
    const saved = saveCurrentInput(outDir, outcome.kind);
    findings.push({ kind: outcome.kind, file: saved, summary: outcome.summary });
    writeFileSync(`${saved}.txt`, `${outcome.kind} in target ${name}\n\n${outcome.summary}\n\nreproduce: npm run fuzz -- --target ${name} --replay ${saved}\n`);
    console.log(`  finding (${outcome.kind}): ${outcome.summary}\n    input: ${relative(process.cwd(), saved)}; restarting`);
  }

  if (unavailable !== null) {
    console.log(`target ${name} is unavailable: ${unavailable}`);
    return 0;
  }
  const seconds = (performance.now() - started) / 1000;
  const final = last as LoopStats | null;
  const summary = {
    target: name, seconds: Math.round(seconds), execs: finishedExecs, execsPerSecond: Math.round(finishedExecs / seconds),
    corpus: final?.corpus ?? 0, newEntries: final?.newEntries ?? 0, features: final?.features ?? 0,
    coverage: (final?.coverage ?? []).map((m) => ({ module: moduleName(m.url), functions: m.functions, blocks: m.blocks })), findings,
  };
  writeFileSync(join(outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  if (final) writeFileSync(join(outDir, 'coverage.txt'), uncoveredReport(final.coverage));
  console.log(`\n${name}: ${summary.seconds} s, ${summary.execs} executions (${summary.execsPerSecond}/s), corpus ${summary.corpus} ` +
    `(${summary.newEntries} new in ${relative(process.cwd(), join(outDir, 'corpus'))}), ${summary.features} coverage features`);
  console.log('coverage of the target modules (counters: functions entered, blocks = every function entry and branch arm):');
  for (const m of summary.coverage) {
    console.log(`  ${m.module.padEnd(34)} functions ${m.functions.covered}/${m.functions.known}   blocks ${m.blocks.covered}/${m.blocks.known}`);
  }
  console.log(findings.length === 0 ? 'findings: none' : `findings: ${findings.length}`);
  for (const f of findings) console.log(`  ${f.kind}: ${f.summary}\n    ${relative(process.cwd(), f.file)}`);
  return findings.length > 0 ? 1 : 0;
}

type ChildOutcome = { kind: string; summary: string } | null;

/** Runs one child until it is done (null) or hangs, dies or grows too large (the outcome to record). */
function runChild(config: LoopConfig, options: Options, scratchRoot: string, onMessage: (m: ChildMessage) => void): Promise<ChildOutcome> {
  return new Promise((resolvePromise) => {
    const child: ChildProcess = fork(childScript, [JSON.stringify(config)], {
      execArgv: ['--max-old-space-size=1024'],
      env: { ...process.env, OMNILMM_FUZZ_SCRATCH: scratchRoot },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let lastHeard = performance.now();
    let done = false;
    let outcome: ChildOutcome = null;
    const stop = (result: ChildOutcome) => {
      outcome = result;
      child.kill('SIGKILL');
    };
    const watchdog = setInterval(() => {
      if (performance.now() - lastHeard > options.hangSeconds * 1000 + 10_000) {
        stop({ kind: 'hang', summary: `the target stopped responding for more than ${options.hangSeconds} s` });
      }
      const rss = residentMb(child.pid);
      if (rss > options.maxRssMb) stop({ kind: 'memory', summary: `the fuzzing process grew to ${rss} MB (limit ${options.maxRssMb} MB)` });
    }, 500);
    child.on('message', (message: ChildMessage) => {
      lastHeard = performance.now();
      if (message.type === 'done' || message.type === 'unavailable') done = true;
      onMessage(message);
    });
    child.on('exit', (code, signal) => {
      clearInterval(watchdog);
      if (outcome === null && !done) outcome = { kind: 'crash', summary: `the fuzzing process exited (${signal ?? `code ${code}`})` };
      resolvePromise(done ? null : outcome);
    });
  });
}

function residentMb(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
  } catch {
    return 0;
  }
}

/** Saves the child's input in flight (`current-input`: a u32 length, then the bytes) as a finding. */
function saveCurrentInput(outDir: string, kind: string): string {
  const current = join(outDir, 'current-input');
  const raw = existsSync(current) ? readFileSync(current) : Buffer.alloc(0);
  const data = raw.length >= 4 ? raw.subarray(4, 4 + raw.readUInt32LE(0)) : raw;
  const file = join(outDir, 'findings', `${kind}-${createHash('sha1').update(data).digest('hex').slice(0, 10)}`);
  writeFileSync(file, data);
  return file;
}

function report(stats: LoopStats, earlierExecs: number, started: number, findings: number): void {
  const seconds = (performance.now() - started) / 1000;
  const execs = earlierExecs + stats.execs;
  const functions = stats.coverage.reduce((a, m) => a + m.functions.covered, 0);
  const knownFunctions = stats.coverage.reduce((a, m) => a + m.functions.known, 0);
  const blocks = stats.coverage.reduce((a, m) => a + m.blocks.covered, 0);
  const knownBlocks = stats.coverage.reduce((a, m) => a + m.blocks.known, 0);
  console.log(`  ${Math.round(seconds)} s  execs ${execs} (${Math.round(execs / seconds)}/s)  corpus ${stats.corpus} (+${stats.newEntries})  ` +
    `features ${stats.features}  blocks ${blocks}/${knownBlocks}  functions ${functions}/${knownFunctions}  findings ${findings}`);
}

function moduleName(url: string): string {
  return url.replace(/^.*\/dist\/src\//, '');
}

/** The TypeScript lines (through the source maps) where a block boundary never ran, and the functions never called. */
function uncoveredReport(coverage: ModuleCoverage[]): string {
  const lines: string[] = [];
  for (const m of coverage) {
    const jsPath = fileURLToPath(m.url);
    const js = readFileSync(jsPath, 'utf8');
    const map = existsSync(`${jsPath}.map`) ? new SourceMap(JSON.parse(readFileSync(`${jsPath}.map`, 'utf8'))) : null;
    const lineStarts = [0];
    for (let i = 0; i < js.length; i++) if (js[i] === '\n') lineStarts.push(i + 1);
    const where = new Map<string, string>();
    for (const offset of m.uncovered) {
      let line = 0;
      while (line + 1 < lineStarts.length && lineStarts[line + 1]! <= offset) line++;
      const column = offset - lineStarts[line]!;
      const entry = map?.findEntry(line, column) as { originalSource?: string; originalLine?: number } | undefined;
      const source = entry?.originalSource ? relative(repoRoot, fileURLToPath(new URL(entry.originalSource, m.url))) : moduleName(m.url);
      const sourceLine = entry?.originalLine !== undefined ? entry.originalLine + 1 : line + 1;
      const key = `${source}:${sourceLine}`;
      if (!where.has(key)) where.set(key, js.slice(lineStarts[line], js.indexOf('\n', offset)).trim().slice(0, 120));
    }
    lines.push(`${moduleName(m.url)}: functions ${m.functions.covered}/${m.functions.known}, blocks ${m.blocks.covered}/${m.blocks.known}`);
    for (const [key, code] of where) lines.push(`  never ran: ${key}   ${code}`);
  }
  return `${lines.join('\n')}\n`;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(2);
  },
);
