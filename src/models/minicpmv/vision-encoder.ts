// Runs the vision tower and the resampler for image slices (official `get_vision_embedding`): per slice size, the
// host builds the patches and both position tables, then slices of one size run as one batch through both graphs.
// MiniCPM-V 2.0's adaptive resampler keys on the 2-D sin-cos table of the slice's grid; 1.0's on its stored
// `pos_embed` interpolated to the grid (`get_abs_pos`).

import type { TensorSource } from '../../checkpoint/safetensors.js';
import { ImageError } from '../../errors.js';
import type { WeightPrecision } from '../../graph/quantize.js';
import { openGraph, type GraphSession, type RuntimeOptions } from '../../runtime/graph-session.js';
import { get2dSinCosPosEmbed, getAbsPos, patchGrid, patchify, resamplePosEmbed } from '../parts/position-embedding.js';
import type { ResamplerDims } from '../parts/resampler.js';
import { readWeight, type VisionDims } from '../parts/vision-dims.js';
import { readVisionPosEmbed } from './vision-tables.js';

/** One slice: normalised CHW float32 pixels (`(u8/255 − 0.5)/0.5`) of size 3×height×width. */
export interface SliceInput {
  pixels: Float32Array;
  height: number;
  width: number;
}

export interface EncodedSlice {
  /** `[query_num, E]`: what replaces the slice's `<unk>` placeholders. */
  embeds: Float32Array;
  /** `[n_patches, d]` vision features, only when asked for with `keepFeatures`. */
  features?: Float32Array;
}

export interface VisionEncoderOptions {
  visionPrefix?: string;
  resamplerPrefix?: string;
  runtime?: RuntimeOptions;
  /**
   * Most slices per run (default 1 on the CPU, 4 on a GPU): attention scores take batch·heads·n² floats. On the CPU
   * a batch is no faster (measured on 2 cores: 4 slices of 448² took 19.8 s as one batch, 17.5 s one by one) and
   * holds 0.3 GB more.
   */
  maxBatch?: number;
  /** How the tower's linear layers (qkv, proj, fc1, fc2) keep their weights (default fp32; the resampler stays fp32). */
  precision?: WeightPrecision;
  /** Keep both sessions open after `encode` (default: suspended, see LoadOptions.keepVisionLoaded). */
  keepLoaded?: boolean;
}

interface GridTables {
  visionPosEmbed: Float32Array;
  resamplerPosEmbed: Float32Array;
}

/** Host tables kept for this many distinct slice sizes (an image has at most three). */
const MAX_CACHED_GRIDS = 8;

export class VisionEncoder {
  private readonly tables = new Map<string, GridTables>();

  private constructor(
    private readonly vision: GraphSession,
    private readonly resampler: GraphSession,
    private readonly storedPosEmbed: Float32Array,
    /** 1.0's stored resampler `pos_embed` [query_num, E] that keys are interpolated from; null for 2.0 (sin-cos). */
    private readonly storedKeyPosEmbed: Float32Array | null,
    readonly visionDims: VisionDims,
    readonly resamplerDims: ResamplerDims,
    private readonly maxBatch: number,
    private readonly keepLoaded: boolean,
  ) {}

  static async create(
    weights: TensorSource,
    dims: { vision: VisionDims; resampler: ResamplerDims },
    options: VisionEncoderOptions = {},
  ): Promise<VisionEncoder> {
    const visionPrefix = options.visionPrefix ?? 'vpm.';
    const storedPosEmbed = readVisionPosEmbed(weights, dims.vision, visionPrefix);
    const { queryNum, embedDim, adaptive = true } = dims.resampler;
    const storedKeyPosEmbed = adaptive
      ? null
      : readWeight(weights, `${options.resamplerPrefix ?? 'resampler.'}pos_embed`, [queryNum, embedDim]);
    const resamplerPrefix = options.resamplerPrefix;
    // Every encoder option except the session's own settings may shape a graph, so all of them are in its cache key;
    // the precision shapes only the tower (fp32, the default, by either spelling).
    const buildOptions = { ...options, runtime: undefined, maxBatch: undefined, precision: undefined, keepLoaded: undefined };
    const precision = options.precision === 'fp32' ? undefined : options.precision;
    // A run's activations go back when it ends instead of staying in an arena: a lower peak, which keeps the default
    // under 4 GB, for a slower 1344² image (README "Performance", where the memory goes).
    const runtime: RuntimeOptions = { ...options.runtime, memoryArena: false };
    const vision = await openGraph({
      part: 'vision', label: 'vision tower', source: weights, key: { dims: dims.vision, prefix: visionPrefix, buildOptions, precision },
      build: async (source) => (await import('./vision.js')).buildVisionGraph(source, dims.vision, { prefix: visionPrefix, precision }).serialize(),
    }, runtime);
    try {
      const resampler = await openGraph({
        part: 'resampler', label: 'resampler', source: weights, key: { dims: dims.resampler, prefix: resamplerPrefix, buildOptions },
        build: async (source) =>
          (await import('../parts/resampler.js')).buildResamplerGraph(source, dims.resampler, { prefix: resamplerPrefix }).serialize(),
      }, runtime);
      const maxBatch = Math.max(1, options.maxBatch ?? ((runtime.executionProvider ?? 'cpu') === 'cpu' ? 1 : 4));
      return new VisionEncoder(vision, resampler, storedPosEmbed, storedKeyPosEmbed, dims.vision, dims.resampler, maxBatch, !!options.keepLoaded);
    } catch (err) {
      await vision.release();
      throw err;
    }
  }

  /**
   * Encodes slices, results in input order; slices of equal size share batched runs (up to `maxBatch` each).
   * `pause` is awaited before each run (e.g. a turn of the event loop that throws on an abort). Afterwards the
   * sessions are suspended unless `keepLoaded`.
   */
  async encode(
    slices: readonly SliceInput[],
    options: { keepFeatures?: boolean; pause?: () => Promise<void> } = {},
  ): Promise<EncodedSlice[]> {
    const groups = new Map<string, number[]>();
    slices.forEach((s, i) => {
      const key = `${s.height}x${s.width}`;
      const group = groups.get(key);
      if (group) group.push(i);
      else groups.set(key, [i]);
    });
    const results: EncodedSlice[] = new Array(slices.length);
    try {
      for (const group of groups.values()) {
        for (let first = 0; first < group.length; first += this.maxBatch) {
          const indices = group.slice(first, first + this.maxBatch);
          await options.pause?.();
          const encoded = await this.encodeBatch(indices.map((i) => slices[i]!), options);
          indices.forEach((sliceIndex, k) => (results[sliceIndex] = encoded[k]!));
        }
      }
    } finally {
      if (!this.keepLoaded) await Promise.all([this.vision.suspend?.(), this.resampler.suspend?.()]);
    }
    return results;
  }

  /** Encodes slices that all have the same size as one batch. */
  async encodeBatch(slices: readonly SliceInput[], options: { keepFeatures?: boolean } = {}): Promise<EncodedSlice[]> {
    if (slices.length === 0) return [];
    const { height, width } = slices[0]!;
    const { patchSize, embedDim: d } = this.visionDims;
    const e = this.resamplerDims.embedDim;
    const grid = patchGrid(height, width, patchSize);
    const n = grid[0] * grid[1];
    const patchLength = 3 * patchSize * patchSize;

    const patches = new Float32Array(slices.length * n * patchLength);
    slices.forEach((s, b) => {
      if (s.height !== height || s.width !== width) {
        throw new ImageError(`a vision batch needs slices of one size, got ${height}×${width} and ${s.height}×${s.width}`);
      }
      if (s.pixels.length !== 3 * s.height * s.width) {
        throw new ImageError(`slice ${b} has ${s.pixels.length} values, expected 3×${s.height}×${s.width}`);
      }
      patches.set(patchify(s.pixels, s.height, s.width, patchSize), b * n * patchLength);
    });

    const tables = this.gridTables(grid);
    const visionOut = await this.vision.run({
      pixel_patches: { type: 'float32', data: patches, dims: [slices.length, n, patchLength] },
      pos_embed: { type: 'float32', data: tables.visionPosEmbed, dims: [n, d] },
    });
    const features = visionOut.features!.data as Float32Array;
    const resamplerOut = await this.resampler.run({
      features: { type: 'float32', data: features, dims: [slices.length, n, d] },
      kv_pos_embed: { type: 'float32', data: tables.resamplerPosEmbed, dims: [n, e] },
    });
    const embeds = resamplerOut.image_embeds!.data as Float32Array;
    const perSlice = this.resamplerDims.queryNum * e;
    return slices.map((_, b) => ({
      embeds: embeds.slice(b * perSlice, (b + 1) * perSlice),
      ...(options.keepFeatures ? { features: features.slice(b * n * d, (b + 1) * n * d) } : {}),
    }));
  }

  /** The vision tower's position table resampled to `grid`, and the resampler's key position table for it. */
  gridTables(grid: readonly [number, number]): GridTables {
    const key = `${grid[0]}x${grid[1]}`;
    let tables = this.tables.get(key);
    if (!tables) {
      tables = {
        visionPosEmbed: resamplePosEmbed(this.storedPosEmbed, this.visionDims.posGrid, grid),
        resamplerPosEmbed: this.resamplerKeyPosEmbed(grid),
      };
      if (this.tables.size >= MAX_CACHED_GRIDS) this.tables.delete(this.tables.keys().next().value!);
      this.tables.set(key, tables);
    }
    return tables;
  }

  /** 2.0: `get_2d_sincos_pos_embed(E, grid)`; 1.0: `get_abs_pos` of the stored square table. */
  private resamplerKeyPosEmbed(grid: readonly [number, number]): Float32Array {
    if (!this.storedKeyPosEmbed) return get2dSinCosPosEmbed(this.resamplerDims.embedDim, grid);
    const side = Math.round(Math.sqrt(this.resamplerDims.queryNum));
    return getAbsPos(this.storedKeyPosEmbed, [side, side], grid);
  }

  async release(): Promise<void> {
    await this.vision.release();
    await this.resampler.release();
  }
}
