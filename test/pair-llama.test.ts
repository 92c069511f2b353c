// scripts/pair-llama.ts on the tiny MiniCPM-V 2.0, with a stand-in for llama-bench that prints its JSON with known
// rates: each round's ratio is omnilmm's rate over the better of the two, and llama-bench gets the asked workload.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const run = promisify(execFile);
const MODEL = fixturePath('minicpmv2-tiny', 'model');
const SCRIPT = join(repoRoot, 'dist', 'scripts', 'pair-llama.js');
const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-pair-llama-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A llama-bench stand-in: appends its arguments to `log` and prints 4 tok/s with flash attention off, 8 with it on. */
function fakeLlamaBench(log: string): string {
  const path = join(scratch, 'llama-bench');
  writeFileSync(path, [
    `#!${process.execPath}`,
    `require('node:fs').appendFileSync(${JSON.stringify(log)}, JSON.stringify(process.argv.slice(2)) + '\\n');`,
    `console.log(JSON.stringify([{ flash_attn: 0, avg_ts: 4 }, { flash_attn: 1, avg_ts: 8 }]));`,
  ].join('\n'));
  chmodSync(path, 0o755);
  return path;
}

interface Summary {
  work: string;
  rounds: { llama_fa0_tok_s: number; llama_fa1_tok_s: number; omnilmm_tok_s: number; ratio: number }[];
  ratio_median: number;
  ratio_min: number;
  ratio_max: number;
}

for (const [work, extra, expected] of [
  ['decode', ['--tokens', '3', '--depth', '40'], ['-p', '0', '-n', '3', '-d', '40']],
  ['prefill', ['--tokens', '24'], ['-p', '24', '-n', '0']],
] as const) {
  test(`pair-llama ${work}: llama-bench runs the same workload each round, and the ratio is to its better figure`, async () => {
    const log = join(scratch, `${work}.log`);
    const llamaBench = fakeLlamaBench(log);
    const { stdout } = await run(process.execPath, [
      SCRIPT, '--model', MODEL, '--llama-bench', llamaBench, '--gguf', '/models/x.gguf', '--work', work,
      '--precision', 'int4', '--threads', '1', '--rounds', '3', '--json', ...extra,
    ]);
    const summary = JSON.parse(stdout) as Summary;
    assert.equal(summary.work, work);
    assert.equal(summary.rounds.length, 3);
    for (const round of summary.rounds) {
      assert.equal(round.llama_fa0_tok_s, 4);
      assert.equal(round.llama_fa1_tok_s, 8);
      assert.ok(round.omnilmm_tok_s > 0);
      assert.ok(Math.abs(round.ratio - round.omnilmm_tok_s / 8) < 1e-9);
    }
    const ratios = summary.rounds.map((r) => r.ratio).sort((a, b) => a - b);
    assert.deepEqual([summary.ratio_min, summary.ratio_median, summary.ratio_max], ratios);
    const calls = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as string[]);
    assert.equal(calls.length, 3);
    for (const args of calls) {
      assert.deepEqual(args, ['-m', '/models/x.gguf', '-t', '1', '-r', '1', '-fa', '0,1', '-o', 'json', ...expected]);
    }
  });
}

test('pair-llama names a failing llama-bench and exits non-zero', async () => {
  const broken = join(scratch, 'broken-llama-bench');
  writeFileSync(broken, `#!${process.execPath}\nconsole.error('error: failed to load model'); process.exit(1);\n`);
  chmodSync(broken, 0o755);
  await assert.rejects(
    run(process.execPath, [SCRIPT, '--model', MODEL, '--llama-bench', broken, '--gguf', 'x.gguf', '--threads', '1', '--rounds', '1']),
    (err: { code: number; stderr: string }) => err.code === 1 && /exited with 1: error: failed to load model/.test(err.stderr),
  );
});
