// Benchmarks a chat model (MiniCPM-V, OmniLMM-12B) against this machine's memory bandwidth:
//
//   npm run bench -- --model <dir> [--precision fp32|int8|int4|int8-dq] [--vision-precision fp32|int8|int4|int8-dq] [--image <file>]
//                    [--threads N] [--cache-dir <dir>] [--json] [--out <file>]
//
// Figures (seconds, tokens per second):
//   load_cold_s      the first load, in a process of its own: with an empty converted-model cache (a temporary
//                    folder, removed after) every graph is built and written; with --cache-dir, whatever that folder
//                    lacks (cold_built_parts says how many graphs were built: 0 means the first load was warm too);
//                    load_cold_peak_rss_mb is that process's peak resident memory
//   load_warm_s      the same load again, from the cache that the first load left
//   (before the timed phases, one warm-up turn about another 448×448 image: prefill and one step, untimed)
//   encode_448_s     the image path of a chat turn about a 448×448 image (the image given, resized, or a synthetic
//                    one) and a question long enough for the prompt to reach 512 tokens: vision tower and
//                    resampler for every slice, plus the prompt's token embeddings
//   prefill_tok_s    that prompt through the decoder
//   decode_tok_s     128 greedy steps after it, EOS ignored (the decoder is driven directly)
//   prefill_text_tok_s  a text prompt of at least 512 tokens (the same question repeated, no image) through the
//                    decoder after the answer above: the workload of llama-bench's pp512, to compare with it
//   decode_d0_tok_s  128 greedy steps after a one-word text prompt (about 8 tokens): decode from an empty context
//   encode_1344_s    the image path for 1344×1344, for families that slice images (MiniCPM-V): the overview and its
//                    slices; encode_1344_per_slice_s divides by them
//   encode_video_s   the video path of a question about a 4-second 640×480 clip at 1 fps (encode_video_frames
//                    frames, the video processor's defaults), for families that take video (MiniCPM-V 4.6)
//   peak_rss_mb      the peak resident memory (getrusage maxrss) of the process that loads the model warm and runs
//                    everything above: what answering needs
//   bandwidth_gb_s   STREAM's copy kernel (memcpy of a 256 MiB buffer into another, far beyond the caches) on two
//                    worker threads started together; counts the bytes read and written, best of five passes
//   decode_bound_tok_s  bandwidth ÷ the decoder's weight bytes (its graph and weights as built, before ONNX Runtime's
//                    packed copies are added to the cache entry): every weight is read once per decoded token, so no
//                    decoder on this machine can beat it
//   decode_pct_of_bound decode_tok_s as a percentage of that bound
//   ttft_turn1_s     time to the first token of a chat turn about another 448×448 image (image encoding and prefill)
//   ttft_turn2_s     the same for a follow-up question about that image, after a fixed 16-token answer: the
//                    prompt's shared prefix comes from the KV cache, so neither the image nor the first turn runs again
//   others_avg_cores the CPU that other processes took while a phase ran, in cores (scripts/cpu-load.ts), per phase
//                    in load_by_phase and the highest of them here; past 0.1 the figure is marked disturbed
// The table goes to stdout (or the JSON with --json); --out also writes the JSON to a file.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { resolveModel } from '../src/checkpoint/resolve.js';
import { runChat } from '../src/chat/chat.js';
import { argmax } from '../src/generation/processors.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../src/graph/quantize.js';
import type { RgbImage } from '../src/image/index.js';
import { withDefaultPrecisions } from '../src/models/family.js';
import { familyOf, loadModelConfig, type LoadedModel, type LoadOptions } from '../src/models/registry.js';
import { onModelCacheEvent } from '../src/runtime/model-cache.js';
import { defaultThreads } from '../src/runtime/session.js';
import { copyBandwidth } from './bandwidth.js';
import { benchImage, benchVideo, depthPrompt, longQuestion, timeDecode, timeTextPrefill, videoPrompt } from './bench-inputs.js';
import { QUIET_LIMIT_CORES, showLoad, startPhase, type PhaseLoad } from './cpu-load.js';

const USAGE =
  'npm run bench -- --model <dir> [--precision fp32|int8|int4|int8-dq] [--vision-precision fp32|int8|int4|int8-dq] [--image f] ' +
  '[--threads N] [--cache-dir <dir>] [--json] [--out f]';
const DECODE_TOKENS = 128;
/** The first turn's answer in the follow-up conversation (about 16 tokens). */
const TURN1_ANSWER = 'The picture shows a colour gradient crossed by a grid of thin lines.';

const since = (start: number) => (performance.now() - start) / 1000;

/** A prompt as the families prepare it; only MiniCPM-V's has slices. */
type BenchPrompt = { ids: number[]; slices?: unknown[] };

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' }, precision: { type: 'string' }, 'vision-precision': { type: 'string' }, image: { type: 'string' },
      threads: { type: 'string' }, 'cache-dir': { type: 'string' }, json: { type: 'boolean' }, out: { type: 'string' },
      help: { type: 'boolean' }, 'cold-load': { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`usage: ${USAGE}\n`);
    return;
  }
  const precision = values.precision as WeightPrecision | undefined;
  const visionPrecision = values['vision-precision'] as WeightPrecision | undefined;
  if (!values.model || [precision, visionPrecision].some((p) => p !== undefined && !WEIGHT_PRECISIONS.includes(p))) {
    throw new Error(`usage: ${USAGE}`);
  }
  const threads = values.threads ? Number(values.threads) : defaultThreads();
  const dir = await resolveModel(values.model);
  const config = loadModelConfig(dir);
  // Both loads take the cache from OMNILMM_CACHE (the child's is set by coldLoad()).
  const options: LoadOptions = withDefaultPrecisions({ threads, precision, visionPrecision, maxBeams: 1 });
  if (values['cold-load']) {
    // The child process of coldLoad(): one load into the cache that OMNILMM_CACHE names.
    let built = 0;
    onModelCacheEvent((event) => void (event.type === 'written' && built++));
    const seconds = await timeLoad(() => familyOf(config).load(dir, config, options));
    const cpu = process.cpuUsage();
    const cpuS = (cpu.user + cpu.system) / 1e6;
    process.stdout.write(`${JSON.stringify({ seconds, built, peakRssMb: process.resourceUsage().maxRSS / 1024, cpuS })}\n`);
    return;
  }

  const loads: Record<string, PhaseLoad> = {};
  /** Runs one phase and records how much CPU other processes took meanwhile. */
  const phase = async <T>(name: string, work: () => Promise<T>, childCpuS?: (result: T) => number): Promise<T> => {
    const end = startPhase();
    const result = await work();
    loads[name] = end(childCpuS?.(result));
    return result;
  };
  const bandwidth = await phase('bandwidth', () => copyBandwidth(2));
  const cache = values['cache-dir'] ?? mkdtempSync(join(tmpdir(), 'omnilmm-bench-cache-'));
  process.env.OMNILMM_CACHE = cache;
  let decoderFolder = '';
  const stop = onModelCacheEvent((event) => {
    if ((event.type === 'written' || event.type === 'hit') && event.part === 'decoder') decoderFolder = event.folder;
  });
  try {
    const cold = await phase('load_cold', async () => coldLoad(process.argv.slice(2), cache), (c) => c.cpuS);
    let start = performance.now();
    const model = await phase('load_warm', () => familyOf(config).load(dir, config, options));
    const loadWarm = since(start);
    const decoderBytes = builtBytes(decoderFolder);

    // One chat turn about the 448×448 image with a long question: encode, prefill, decode.
    const image448 = await benchImage(values.image, 448);
    const question = longQuestion((text) => model.prepare([{ role: 'user', content: text }], image448).ids.length).text;
    const prompt = model.prepare([{ role: 'user', content: question }], image448) as BenchPrompt;
    // A warm-up turn first, as llama-bench runs one before it measures: a session's first runs also pay for mapping
    // its weights in from the cache and for growing its arena (the first 528-token prefill ~15 % slower). Its image
    // is another one, so nothing of it is reused below.
    await phase('warmup', async () => {
      const warm = await model.startPrompt(model.prepare([{ role: 'user', content: question }], channelsRotated(image448)));
      await warm.step([argmax(await warm.prefill())]);
    });
    start = performance.now();
    const sequence = await phase('encode_448', () => model.startPrompt(prompt));
    const encode448 = since(start);
    const prefillTokens = prompt.ids.length - sequence.reusedLength;
    start = performance.now();
    let logits = await phase('prefill', () => sequence.prefill());
    const prefill = since(start);
    start = performance.now();
    await phase('decode', async () => {
      for (let k = 0; k < DECODE_TOKENS; k++) logits = (await sequence.step([argmax(logits)]))[0]!;
    });
    const decode = since(start);
    const textPrefill = await phase('prefill_text', () => timeTextPrefill(model));
    const decodeD0 = await phase('decode_d0', () => timeDecode(model, depthPrompt(model, 0), DECODE_TOKENS));
    const encode1344 = prompt.slices ? await phase('encode_1344', async () => timeEncode(model, await benchImage(values.image, 1344))) : null;
    const video = benchVideo();
    const aboutVideo = videoPrompt(model, video);
    const encodeVideo = aboutVideo ? await phase('encode_video', () => timeStart(model, aboutVideo)) : null;
    const turns = await phase('turns', () => timeTurns(model, inverted(image448)));
    await model.release();

    const decodeTokS = DECODE_TOKENS / decode;
    const boundTokS = (bandwidth * 1e9) / decoderBytes;
    const loadByPhase = Object.fromEntries(Object.entries(loads).map(([name, load]) => [name, load.othersAvgCores]));
    const measured = Object.values(loadByPhase).filter((v): v is number => v !== null);
    const result = {
      model: dir,
      precision: options.precision,
      vision_precision: options.visionPrecision,
      threads,
      load_cold_s: cold.seconds,
      cold_built_parts: cold.built,
      load_cold_peak_rss_mb: cold.peakRssMb,
      load_warm_s: loadWarm,
      encode_448_s: encode448,
      ...(encode1344 && {
        encode_1344_s: encode1344.seconds,
        encode_1344_slices: encode1344.slices,
        encode_1344_per_slice_s: encode1344.seconds / encode1344.slices,
      }),
      ...(encodeVideo !== null && { encode_video_s: encodeVideo, encode_video_frames: video.frames.length }),
      prefill_tokens: prefillTokens,
      prefill_tok_s: prefillTokens / prefill,
      prefill_text_tokens: textPrefill.tokens,
      prefill_text_tok_s: textPrefill.tokens / textPrefill.seconds,
      decode_tokens: DECODE_TOKENS,
      decode_tok_s: decodeTokS,
      decode_d0_tok_s: DECODE_TOKENS / decodeD0,
      ttft_turn1_s: turns.turn1,
      ttft_turn2_s: turns.turn2,
      ttft_turn2_speedup: turns.turn1 / turns.turn2,
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
      bandwidth_gb_s: bandwidth,
      decoder_weight_bytes: decoderBytes,
      decode_bound_tok_s: boundTokS,
      decode_pct_of_bound: (100 * decodeTokS) / boundTokS,
      others_avg_cores: measured.length > 0 ? Math.max(...measured) : null,
      load_by_phase: loadByPhase,
    };
    const disturbed = Object.entries(loads).filter(([, load]) => (load.othersAvgCores ?? 0) > QUIET_LIMIT_CORES);
    if (disturbed.length > 0) {
      process.stderr.write(
        `warning: other processes took more than ${QUIET_LIMIT_CORES} of a core during ${disturbed.map(([name]) => name).join(', ')}: ` +
        'those figures are disturbed; measure again on a quiet machine (../shared/tools/quiet-run)\n',
      );
    }
    const json = `${JSON.stringify(result, null, 2)}\n`;
    if (values.out) writeFileSync(values.out, json);
    process.stdout.write(values.json ? json : table(result, loads));
  } finally {
    stop();
    if (!values['cache-dir']) rmSync(cache, { recursive: true, force: true });
  }
}

/** Runs this script with --cold-load in a process of its own (so its memory is not counted in the answering figures). */
function coldLoad(args: string[], cache: string): ColdLoad {
  const output = execFileSync(process.execPath, [fileURLToPath(import.meta.url), ...args, '--cold-load'], {
    env: { ...process.env, OMNILMM_CACHE: cache }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20,
  });
  return JSON.parse(output.trim().split('\n').pop()!) as ColdLoad;
}

interface ColdLoad {
  seconds: number;
  built: number;
  peakRssMb: number;
  /** CPU seconds the child process took: the phase's own work, not other processes'. */
  cpuS: number;
}

/**
 * Time to the first token of two chat turns about one image, greedy: the first turn (image encoding and the whole
 * prompt; the image must not be in the KV cache yet), then a follow-up question whose conversation repeats the first
 * turn with an answer of about 16 tokens. The answer is a fixed sentence, not the generated one: a random-weight
 * checkpoint answers with filler tokens that re-tokenize into many more, which no real answer does.
 */
async function timeTurns(model: LoadedModel, image: RgbImage): Promise<{ turn1: number; turn2: number }> {
  const first = { role: 'user', content: 'What is in the picture?' } as const;
  let start = performance.now();
  await runChat(model, { messages: [first], image, decoding: 'greedy', maxNewTokens: 1 });
  const turn1 = since(start);
  const messages = [first, { role: 'assistant', content: TURN1_ANSWER } as const, { role: 'user', content: 'And what colour is it?' } as const];
  start = performance.now();
  await runChat(model, { messages, image, decoding: 'greedy', maxNewTokens: 1 });
  return { turn1, turn2: since(start) };
}

/** The image with its channels rotated (R, G, B → G, B, R): the same size, other pixels. */
function channelsRotated(image: RgbImage): RgbImage {
  return { ...image, data: image.data.map((_, i, data) => data[i - (i % 3) + ((i + 1) % 3)]!) };
}

/** The image with every value inverted: the same size, other pixels (so nothing of it is in the KV cache yet). */
function inverted(image: RgbImage): RgbImage {
  return { ...image, data: image.data.map((v) => 255 - v) };
}

/** Bytes of a cache entry's graph as built (its manifest's builtBytes; the files' sizes for older entries). */
function builtBytes(folder: string): number {
  const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8')) as { builtBytes?: number; files: Record<string, number> };
  return manifest.builtBytes ?? Object.values(manifest.files).reduce((sum, size) => sum + size, 0);
}

/** Seconds to load a model, which is released at once (and left to the garbage collector). */
async function timeLoad(load: () => Promise<{ release(): Promise<void> }>): Promise<number> {
  const start = performance.now();
  const model = await load();
  const seconds = since(start);
  await model.release();
  return seconds;
}

/** The image path's time for one image, as a chat turn starts: every slice through the tower and the resampler. */
async function timeEncode(model: LoadedModel, image: RgbImage): Promise<{ seconds: number; slices: number }> {
  const prompt = model.prepare([{ role: 'user', content: 'Describe the picture.' }], image) as BenchPrompt;
  return { seconds: await timeStart(model, prompt), slices: prompt.slices?.length ?? 1 };
}

/** Seconds for a prompt's start of a chat turn: its images or frames through the vision graphs, its embeddings. */
async function timeStart(model: LoadedModel, prompt: ReturnType<LoadedModel['prepare']>): Promise<number> {
  const start = performance.now();
  await model.startPrompt(prompt);
  return since(start);
}

/** Figure → the phase whose load it is shown with. */
const PHASE_OF: Record<string, string> = {
  load_cold_s: 'load_cold', load_warm_s: 'load_warm', encode_448_s: 'encode_448', prefill_tok_s: 'prefill',
  decode_tok_s: 'decode', prefill_text_tok_s: 'prefill_text', decode_d0_tok_s: 'decode_d0', encode_1344_s: 'encode_1344', encode_video_s: 'encode_video', ttft_turn1_s: 'turns', ttft_turn2_s: 'turns', bandwidth_gb_s: 'bandwidth',
};

function table(result: Record<string, unknown>, loads: Record<string, PhaseLoad>): string {
  const rows = Object.entries(result).filter(([, value]) => typeof value !== 'object' || value === null).map(([key, value]) => {
    const shown = typeof value === 'number' && !Number.isInteger(value) ? value.toFixed(value < 10 ? 3 : 1) : String(value);
    const load = PHASE_OF[key] && loads[PHASE_OF[key]] ? showLoad(loads[PHASE_OF[key]]) : '';
    return `| ${key.padEnd(24)} | ${shown.padStart(14)} | ${load.padEnd(16)} |`;
  });
  const header = `| ${'figure'.padEnd(24)} | ${'value'.padStart(14)} | ${'others (cores)'.padEnd(16)} |`;
  return `${header}\n|${'-'.repeat(26)}|${'-'.repeat(16)}|${'-'.repeat(18)}|\n${rows.join('\n')}\n`;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
