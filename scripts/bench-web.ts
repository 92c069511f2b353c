// Benchmarks an `export-web` folder in headless Chromium (Debian's /usr/bin/chromium), through the page's hook, with
// the same inputs as bench.ts (a 448×448 image and a question that brings the prompt to 512 tokens):
//
//   node dist/scripts/bench-web.js --export <folder> [--backend wasm|webgpu] [--new-tokens N] [--json] [--out <file>]
//
// Figures:
//   first_load_s       page open → model ready, with nothing stored: download, SHA-256 checks, Cache Storage, sessions
//   storage_load_s     the same on a second page, the files read from browser storage (no download)
//   encode_448_s       the vision tower and resampler for the image (the engine's encode_s)
//   prefill_tok_s      the prompt's tokens ÷ the rest of the time to the first token
//   decode_tok_s       the tokens after the first ÷ the time they took (greedy, up to --new-tokens, default 16)
//   peak_renderer_mb   the highest resident memory of Chromium's renderer processes (the tab) while all this ran,
//                      sampled every 250 ms from /proc; peak_gpu_process_mb the same for its GPU process (WebGPU)
//   threads            WASM threads the page used (2 on two cores: the folder is served cross-origin isolated)
//   others_avg_cores   the CPU that processes other than this one and Chromium took during each phase (cpu-load.ts),
//                      the highest here and per phase in load_by_phase; past 0.1 the figures are disturbed

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import sharp from 'sharp';
import { createWebModel } from '../src/browser/web-families.js';
import type { WebManifest } from '../src/browser/manifest.js';
import { toFloat32 } from '../src/checkpoint/dtypes.js';
import { folderFiles } from '../src/checkpoint/folder-files.js';
import { TensorRows } from '../src/checkpoint/rows.js';
import type { TensorSource } from '../src/checkpoint/safetensors.js';
import { toChatInput } from '../src/chat/chat-input.js';
import type { WeightPrecision } from '../src/graph/quantize.js';
import type { RgbImage } from '../src/image/rgb.js';
import { standInSession } from '../src/export/web.js';
import { StaticSite } from '../src/server/static-site.js';
import { benchImage, longQuestion } from './bench-inputs.js';
import { showLoad, startBrowserPhase, type PhaseLoad } from './cpu-load.js';

declare const window: {
  omnilmm: {
    ready: Promise<unknown>;
    run(request: object): Promise<{ output_ids: number[]; timings: { encode_s: number; prefill_s: number; decode_s: number; prompt_tokens: number; reused_tokens: number; new_tokens: number } }>;
    status(): { backend: string; threads: number; loadedFromStorage: boolean };
  };
};

const USAGE = 'node dist/scripts/bench-web.js --export <folder> [--backend wasm|webgpu] [--new-tokens N] [--json] [--out <file>]';

/**
 * The question repeated until the model's prompt about the image reaches PREFILL_TOKENS (longQuestion):
 * the exported model is created with stand-in graphs (nothing runs), only to prepare prompts.
 */
async function webLongQuestion(modelDir: string, image: RgbImage): Promise<{ text: string; tokens: number }> {
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8')) as WebManifest;
  const infos = new Map(manifest.tensors.map((t) => {
    const file = join(modelDir, t.path);
    return [t.name, { name: t.name, dtype: t.dtype, shape: t.shape, offset: 0, byteLength: statSync(file).size, file }] as const;
  }));
  const info = (name: string) => infos.get(name) ?? assert.fail(`the export has no tensor ${name}`);
  const tensors: TensorSource = {
    names: () => [...infos.keys()],
    has: (name) => infos.has(name),
    info,
    float32: (name) => toFloat32(readFileSync(info(name).file), info(name).dtype, name),
    rows: (name) => new TensorRows(info(name)),
    close: () => {},
  };
  const model = await createWebModel(manifest.model_type, folderFiles(modelDir), tensors, {
    precision: manifest.precision as WeightPrecision, visionPrecision: manifest.vision_precision as WeightPrecision, openGraph: async (graph) => standInSession(graph.label),
  }, modelDir);
  try {
    return longQuestion((text) => model.prepare(toChatInput([{ role: 'user', content: text }], { images: [image] })).ids.length);
  } finally {
    await model.release();
  }
}

/** Resident memory (MB) of Chromium's renderer and GPU processes right now. */
function chromiumMemory(): { renderer: number; gpu: number } {
  const sum = { renderer: 0, gpu: 0 };
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmdline.includes('chromium')) continue;
      const kind = cmdline.includes('--type=renderer') ? 'renderer' : cmdline.includes('--type=gpu-process') ? 'gpu' : null;
      if (!kind) continue;
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (rss) sum[kind] += Number(rss[1]) / 1024;
    } catch {
      // The process ended while it was read.
    }
  }
  return sum;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { export: { type: 'string' }, backend: { type: 'string' }, 'new-tokens': { type: 'string' }, json: { type: 'boolean' }, out: { type: 'string' } },
  });
  if (!values.export) throw new Error(`--export <folder> is required\nusage: ${USAGE}`);
  const backend = values.backend ?? 'wasm';
  const newTokens = Number(values['new-tokens'] ?? 16);
  const image = await benchImage(undefined, 448);
  const question = await webLongQuestion(join(values.export, 'model'), image);
  const png = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
  const dataUrl = `data:image/png;base64,${png.toString('base64')}`;

  const site = await StaticSite.start(values.export);
  const profile = mkdtempSync(join(tmpdir(), 'omnilmm-bench-web-'));
  const peak = { renderer: 0, gpu: 0 };
  const sampler = setInterval(() => {
    const now = chromiumMemory();
    peak.renderer = Math.max(peak.renderer, now.renderer);
    peak.gpu = Math.max(peak.gpu, now.gpu);
  }, 250);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 300_000,
    args: ['--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader'],
  });
  context.setDefaultTimeout(3_600_000);
  try {
    const loads: Record<string, PhaseLoad> = {};
    const open = async () => {
      const page = await context.newPage();
      const started = performance.now();
      const phase = startBrowserPhase();
      await page.goto(`${site.url}/?backend=${backend}`);
      await page.waitForFunction(() => window.omnilmm !== undefined);
      await page.evaluate(() => window.omnilmm.ready);
      return { page, seconds: (performance.now() - started) / 1000, load: phase() };
    };
    const first = await open();
    loads.first_load = first.load;
    await first.page.close();
    const again = await open();
    loads.storage_load = again.load;
    const status = await again.page.evaluate(() => window.omnilmm.status());
    if (!status.loadedFromStorage) throw new Error('the second load did not come from browser storage');
    const chat = startBrowserPhase();
    const result = await again.page.evaluate((request) => window.omnilmm.run(request), {
      images: [dataUrl], messages: [{ role: 'user', content: question.text }], decoding: 'greedy', maxNewTokens: newTokens,
    });
    loads.chat_turn = chat();
    const t = result.timings;
    const figures = {
      backend: status.backend,
      threads: status.threads,
      first_load_s: first.seconds,
      storage_load_s: again.seconds,
      encode_448_s: t.encode_s,
      prompt_tokens: t.prompt_tokens,
      prefill_tok_s: (t.prompt_tokens - t.reused_tokens) / t.prefill_s,
      new_tokens: t.new_tokens,
      decode_tok_s: t.new_tokens > 1 ? (t.new_tokens - 1) / t.decode_s : null,
      peak_renderer_mb: Math.round(peak.renderer),
      peak_gpu_process_mb: Math.round(peak.gpu),
      others_avg_cores: Math.max(...Object.values(loads).map((l) => l.othersAvgCores ?? 0)),
      load_by_phase: Object.fromEntries(Object.entries(loads).map(([phase, l]) => [phase, l.othersAvgCores])),
    };
    const json = `${JSON.stringify(figures, null, 2)}\n`;
    if (values.out) writeFileSync(values.out, json);
    if (values.json) {
      process.stdout.write(json);
    } else {
      for (const [name, value] of Object.entries(figures)) {
        if (name === 'load_by_phase') continue;
        process.stdout.write(`${name.padEnd(20)} ${typeof value === 'number' && !Number.isInteger(value) ? value.toFixed(2) : value}\n`);
      }
      for (const [phase, load] of Object.entries(loads)) process.stdout.write(`others' CPU, ${phase.padEnd(13)} ${showLoad(load)}\n`);
    }
  } finally {
    clearInterval(sampler);
    await context.close();
    await site.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench-web: ${err.message}\n`);
  process.exitCode = 1;
});
