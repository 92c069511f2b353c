// The soak test script (scripts/soak.ts) run for a few seconds on the tiny fixture model: it exits 0, its report has
// the promised parts with no unexpected outcome, and its RSS plot is a PNG of the SVG's size.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const SOAK = join(repoRoot, 'dist', 'scripts', 'soak.js');
const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-soak-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

interface KindStats { total: number; statuses: Record<string, number>; unexpected: number; p50Ms: number | null; p95Ms: number | null }
interface Report {
  clients: number;
  requests: { total: number; byKind: Record<string, KindStats> };
  unexpected: { total: number; byKind: Record<string, Record<string, number>>; examples: unknown[] };
  rss: { unit: string; columns: string[]; samples: number[][]; startMiB: number; peakMiB: number; afterWarmup: { minMiB: number; maxMiB: number; slopeMiBPer10Min: number } | null };
}

const run = (args: string[]) =>
  promisify(execFile)(process.execPath, [SOAK, ...args], { timeout: 600_000, maxBuffer: 16 << 20, env: { ...process.env, HF_HUB_OFFLINE: '1' } });

test('a few seconds of soak on the tiny model: every outcome expected, the report and the plot written', { timeout: 660_000 }, async () => {
  const out = join(scratch, 'run');
  const { stdout } = await run(['--model', fixturePath('minicpmv2-tiny', 'model'), '--minutes', '0.1', '--clients', '2', '--out', out]);
  assert.match(stdout, /unexpected: 0/);
  const report = JSON.parse(readFileSync(join(out, 'soak-report.json'), 'utf8')) as Report;
  assert.equal(report.clients, 2);
  assert.equal(report.unexpected.total, 0, JSON.stringify(report.unexpected.examples));
  assert.ok(report.requests.total > 0);
  const kinds = Object.values(report.requests.byKind);
  assert.equal(kinds.reduce((sum, k) => sum + k.total, 0), report.requests.total);
  for (const [kind, k] of Object.entries(report.requests.byKind)) {
    assert.equal(Object.values(k.statuses).reduce((a, b) => a + b, 0), k.total, kind);
    assert.equal(k.unexpected, 0, kind);
    assert.ok(k.p50Ms !== null && k.p95Ms !== null && k.p50Ms <= k.p95Ms, kind);
  }
  assert.equal(report.rss.unit, 'MiB');
  assert.ok(report.rss.samples.length >= 2);
  // A Node process with the model loaded holds tens of MiB at least; a sample of 0 would mean /proc was not read.
  assert.deepEqual(report.rss.columns, ['seconds', 'rss', 'anonymous', 'file-backed']);
  for (const [, rss, anon, file] of report.rss.samples) {
    assert.ok(rss! > 20, `RSS sample ${rss} MiB`);
    // /proc's VmRSS is RssAnon + RssFile + RssShmem (rounded to MiB here).
    assert.ok(anon! > 0 && file! > 0 && anon! + file! <= rss! + 0.2, `RSS ${rss} = anonymous ${anon} + file ${file} + shared`);
  }
  assert.ok(report.rss.afterWarmup !== null && report.rss.afterWarmup.minMiB <= report.rss.afterWarmup.maxMiB);
  const svg = readFileSync(join(out, 'rss.svg'), 'utf8');
  const [, width, height] = /<svg[^>]* width="(\d+)" height="(\d+)"/.exec(svg)!;
  const png = await sharp(readFileSync(join(out, 'rss.png'))).metadata();
  assert.equal(png.format, 'png');
  assert.deepEqual([png.width, png.height], [Number(width), Number(height)]);
});

test('an unknown request kind is refused before anything starts', async () => {
  await assert.rejects(run(['--kinds', 'single,nope', '--minutes', '0.1', '--out', join(scratch, 'bad')]), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 2);
    assert.match(err.stderr, /unknown kind "nope"/);
    return true;
  });
});
