// `omnilmm convert`: builds the converted-model cache ahead of time, so that `chat` and `serve` start faster.

import { accessSync, constants, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadModel } from '../../chat/engine.js';
import { formatBytes, ProgressBar } from '../../checkpoint/progress.js';
import { InvalidRequestError } from '../../errors.js';
import { cacheRoot, onModelCacheEvent, type ModelCacheEvent } from '../../runtime/model-cache.js';
import { parseCommandArgs, stringOption } from '../args.js';
import { precisionOption } from './chat.js';
import { DEFAULT_MODEL, threadsOption, type Command } from './common.js';

const USAGE =
  'omnilmm convert --model <dir|org/name> [--precision P] [--vision-precision P] [--cache-dir <dir>] ' +
  '[--threads N]';

export const convertCommand: Command = {
  name: 'convert',
  summary: 'build the model graphs into the cache ahead of time, so chat and serve start faster',
  help: `usage: ${USAGE}

Builds every graph of the model (vision tower, resampler, decoder) from the checkpoint and writes each as
model.onnx + weights.bin into the cache, keyed by the checkpoint's files, the options and this version's builders;
chat and serve with the same options load from there. A model already converted is only checked.

  --model <dir|org/name>      checkpoint folder or hub id (default ${DEFAULT_MODEL})
  --precision P               the language model's linear layers, as for chat (default int8-dq)
  --vision-precision P        the vision tower's linear layers, as for chat (default int8-dq)
  --cache-dir <dir>           the cache folder (default: $OMNILMM_CACHE, else ~/.cache/omnilmm)
  --threads N                 CPU threads for checking the converted sessions (default: one per core); more than
                              the cores are allowed, with a warning`,
  async run(argv) {
    const { values } = parseCommandArgs('convert', argv, {
      model: { type: 'string' },
      precision: { type: 'string' },
      'vision-precision': { type: 'string' },
      'cache-dir': { type: 'string' },
      threads: { type: 'string' },
    }, USAGE);
    const precision = precisionOption(values);
    const visionPrecision = precisionOption(values, 'vision-precision');
    const threads = threadsOption(values);
    const cacheDir = stringOption(values, 'cache-dir');
    // The cache root reaches the graph builders through the environment, whichever options a family forwards.
    if (cacheDir !== undefined) process.env.OMNILMM_CACHE = cacheDir;
    const root = cacheRoot();
    if (root === null) {
      throw new InvalidRequestError('the model cache is off (OMNILMM_CACHE=off): pass --cache-dir <dir> or unset OMNILMM_CACHE');
    }
    checkWritable(root);

    const parts = new Map<string, { folder: string; bytes: number; built: boolean }>();
    const progress = new ConversionProgress();
    const stop = onModelCacheEvent((event) => {
      progress.onEvent(event);
      if (event.type === 'hit') parts.set(event.part, { folder: event.folder, bytes: folderBytes(event.folder), built: false });
      if (event.type === 'written') parts.set(event.part, { folder: event.folder, bytes: event.bytes, built: true });
    });
    const started = Date.now();
    try {
      const modelId = stringOption(values, 'model') ?? DEFAULT_MODEL;
      const model = await loadModel(modelId, { threads, precision, visionPrecision, maxBeams: 1, cache: cacheDir });
      await model.release();
      progress.finish({ complete: true });
    } finally {
      progress.finish({ complete: false });
      stop();
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const total = [...parts.values()].reduce((sum, p) => sum + p.bytes, 0);
    const built = [...parts.values()].filter((p) => p.built).length;
    const where = parts.size > 0 ? dirname([...parts.values()][0]!.folder) : '(nothing cached)';
    const lines = [...parts].map(
      ([part, p]) => `  ${part.padEnd(12)} ${formatBytes(p.bytes).padStart(9)}  ${p.built ? 'built' : 'already converted'}`,
    );
    process.stdout.write(
      `${built > 0 ? 'converted' : 'already converted'}: ${where}\n${lines.join('\n')}\n` +
        `  ${'total'.padEnd(12)} ${formatBytes(total).padStart(9)}  (${built} of ${parts.size} parts built, ${seconds} s)\n`,
    );
  },
};

/** Fails now, not after a build that could not be kept (chat and serve build without the cache instead). */
function checkWritable(root: string): void {
  try {
    mkdirSync(root, { recursive: true });
    accessSync(root, constants.W_OK);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new InvalidRequestError(`the cache folder ${root} cannot be written (${why}): choose another with --cache-dir`);
  }
}

/**
 * One progress bar for the conversion (on a terminal only), over the checkpoint's bytes read so far, labelled with
 * the part being built. A part reads only its own tensors, and some tensors are never read, so a conversion that
 * finishes shows 100 % only when it ends.
 */
class ConversionProgress {
  private bar: ProgressBar | null = null;
  private part = '';

  onEvent(event: ModelCacheEvent): void {
    if (event.type === 'build') {
      this.part = event.part;
      this.bar?.relabel(this.part.padEnd(10));
      if (!process.stderr.isTTY) process.stderr.write(`building the ${event.label}…\n`);
    } else if (event.type === 'progress') {
      this.bar ??= new ProgressBar(this.part.padEnd(10), event.checkpointBytes);
      this.bar.advance(event.tensorBytes);
    } else if (event.type === 'rebuild') {
      this.bar?.finish();
      this.bar = null;
      process.stderr.write(`the cached ${event.part} at ${event.folder} is incomplete (${event.reason}); rebuilding it\n`);
    }
  }

  /** Ends the bar's line: at 100 % when the conversion is complete, else where it stopped. */
  finish({ complete }: { complete: boolean }): void {
    if (complete) {
      this.bar?.relabel('converted ');
      this.bar?.complete();
    } else {
      this.bar?.finish();
    }
    this.bar = null;
  }
}

function folderBytes(folder: string): number {
  return readdirSync(folder).reduce((sum, name) => sum + statSync(join(folder, name)).size, 0);
}
