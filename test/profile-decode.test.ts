// scripts/profile-decode.ts on the tiny MiniCPM-V 2.0: the `profile` runtime option traces the decoder session, and
// the script counts its kernels per step as the graph has them.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const run = promisify(execFile);
const MODEL = fixturePath('minicpmv2-tiny', 'model');

test('profile-decode traces the decoder: one MatMulNBits per linear layer and the lm_head in every step', async () => {
  const layers = (JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as { num_hidden_layers: number }).num_hidden_layers;
  const script = join(repoRoot, 'dist', 'scripts', 'profile-decode.js');
  const { stdout } = await run(process.execPath, [script, '--model', MODEL, '--precision', 'int4', '--threads', '1', '--depth', '0', '--steps', '3', '--json']);
  const report = JSON.parse(stdout) as {
    steps: number;
    untraced_ms_per_step: number;
    kernels_per_step: number;
    run_ms_per_step: number;
    kernels_ms_per_step: number;
    by_operator: { name: string; kernelsPerStep: number }[];
    matmul_nbits_by_weight: { name: string; kernelsPerStep: number; bytesPerStep: number }[];
  };
  assert.equal(report.steps, 3);
  assert.ok(report.untraced_ms_per_step > 0 && report.run_ms_per_step >= report.kernels_ms_per_step);
  // q, k, v, o, gate, up and down in every layer, and the lm_head.
  assert.equal(report.by_operator.find((g) => g.name === 'MatMulNBits')?.kernelsPerStep, 7 * layers + 1);
  const kinds = report.matmul_nbits_by_weight.map((g) => g.name).sort();
  assert.deepEqual(kinds, ['/llm/lm_head/MatMulNBits', 'attn/k_proj', 'attn/o_proj', 'attn/q_proj', 'attn/v_proj', 'mlp/down_proj', 'mlp/gate_proj', 'mlp/up_proj']);
  const total = report.by_operator.reduce((sum, g) => sum + g.kernelsPerStep, 0);
  assert.equal(total, report.kernels_per_step);
});
