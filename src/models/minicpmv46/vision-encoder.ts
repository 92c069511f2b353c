// Runs MiniCPM-V 4.6's image encoder (official `get_image_features`) one slice at a time: the host puts the slice's
// patches and position ids in merge order (vision.ts), then head → vit_merger (16x only) → tail. Per-slice runs are
// what the official batched code computes wherever it is defined, and also serve slices of different grids, where
// its 16x path fails (fixture README §3.4).

import type { TensorSource } from '../../checkpoint/safetensors.js';
import { ImageError } from '../../errors.js';
import type { WeightPrecision } from '../../graph/quantize.js';
import { openGraph, type GraphSession, type RuntimeOptions } from '../../runtime/graph-session.js';
import { patchify } from '../parts/position-embedding.js';
import { gatherRows, mergeOrder, nearestPositionIds, patchOrder, scatterRows, type MiniCPMV46VisionDims } from './vision-layout.js';
import type { DownsampleMode } from '../messages.js';

/** One slice: normalised CHW float32 pixels (`(u8 − 127.5) / 127.5`) of 3×height×width, sides multiples of the patch. */
export interface MiniCPMV46Slice {
  pixels: Float32Array;
  height: number;
  width: number;
}

export interface MiniCPMV46VisionEncoderOptions {
  runtime?: RuntimeOptions;
  /**
   * How the tower's linear layers (q/k/v/out and fc1/fc2 of every encoder layer, the vit_merger's attention and
   * linear_1/linear_2) keep their weights (default fp32, the reference); the patch embedding, position table, norms
   * and the merger stay fp32.
   */
  precision?: WeightPrecision;
  /** Keep the sessions open after `encode` (default: suspended, see LoadOptions.keepVisionLoaded). */
  keepLoaded?: boolean;
}

/** Every stage of one slice, rows in the official (row-major) order of their grid, for parity checks. */
export interface MiniCPMV46VisionStages {
  /** [h·w, C] patch embeddings + positions. */
  embeddings: Float32Array;
  /** [h·w, C] output of encoder layer insert_layer_id (the vit_merger's input in 16x). */
  insertLayerOut: Float32Array;
  /** [h·w/4, C] output of the vit_merger (16x only). */
  afterVitMerger?: Float32Array;
  /** [m, C] output of the last encoder layer (m = h·w/4 in 16x, h·w in 4x). */
  beforePostLayernorm: Float32Array;
  /** [m, C] after post_layernorm. */
  lastHiddenState: Float32Array;
  /** [m/4, text hidden] the merger's rows. */
  imageFeatures: Float32Array;
}

/** What the host computes once per (grid, mode). */
interface GridInputs {
  order: Int32Array;
  positionIds: BigInt64Array;
}

/** Host inputs kept for this many distinct (grid, mode) pairs (an image has at most three grids). */
const MAX_CACHED_GRIDS = 8;

export class MiniCPMV46VisionEncoder {
  private readonly grids = new Map<string, GridInputs>();

  private constructor(
    private readonly head: GraphSession,
    private readonly windowMerger: GraphSession,
    private readonly tail: GraphSession,
    readonly dims: MiniCPMV46VisionDims,
    private readonly keepLoaded: boolean,
  ) {}

  static async create(
    weights: TensorSource,
    dims: MiniCPMV46VisionDims,
    options: MiniCPMV46VisionEncoderOptions = {},
  ): Promise<MiniCPMV46VisionEncoder> {
    // fp32, the default, by either spelling shares one cache entry.
    const precision = options.precision === 'fp32' ? undefined : options.precision;
    // ONNX Runtime's arena keeps a slice's activations for the next slice or frame: without it every run maps its
    // large buffers afresh and faults in each page (README "MiniCPM-V 4.6 at full size"). Suspending the sessions
    // after `encode` gives the arena back.
    const runtime: RuntimeOptions = { ...options.runtime, memoryArena: true };
    const parts = [
      { part: 'vision-head', label: 'vision tower (head)', builder: 'buildVisionHeadGraph' },
      { part: 'vit-merger', label: 'vision window merger', builder: 'buildWindowMergerGraph' },
      { part: 'vision-tail', label: 'vision tower (tail) and merger', builder: 'buildVisionTailGraph' },
    ] as const;
    const sessions: GraphSession[] = [];
    try {
      for (const { part, label, builder } of parts) {
        sessions.push(await openGraph({
          part, label, source: weights, key: { family: 'minicpmv4_6', dims, precision },
          build: async (source) => (await import('./vision.js'))[builder](source, dims, { precision }).serialize(),
        }, runtime));
      }
    } catch (err) {
      for (const session of sessions) await session.release();
      throw err;
    }
    return new MiniCPMV46VisionEncoder(sessions[0]!, sessions[1]!, sessions[2]!, dims, !!options.keepLoaded);
  }

  /**
   * The merger rows of each slice ([h·w/16 or h·w/4, text hidden], the slice's placeholder rows), one run per slice,
   * handed to `receive` in input order as each run ends, so that no slice's rows need outlive their use (a prompt
   * writes them into its embeddings); the slices are taken from `slices` one at a time, so a generator may make each
   * as it is reached. `pause` is awaited before each slice (e.g. a turn of the event loop that throws on an abort).
   * Afterwards the sessions are suspended unless `keepLoaded`.
   */
  async encodeEach(
    slices: Iterable<MiniCPMV46Slice>,
    mode: DownsampleMode,
    receive: (rows: Float32Array) => void,
    options: { pause?: () => Promise<void> } = {},
  ): Promise<void> {
    try {
      for (const slice of slices) {
        await options.pause?.();
        receive((await this.run(slice, mode, false)).imageFeatures);
      }
    } finally {
      if (!this.keepLoaded) await Promise.all([this.head.suspend?.(), this.windowMerger.suspend?.(), this.tail.suspend?.()]);
    }
  }

  /** encodeEach's rows of every slice at once, in input order (parity tests). */
  async encode(slices: Iterable<MiniCPMV46Slice>, mode: DownsampleMode, options: { pause?: () => Promise<void> } = {}): Promise<Float32Array[]> {
    const results: Float32Array[] = [];
    await this.encodeEach(slices, mode, (rows) => void results.push(rows), options);
    return results;
  }

  /** Every stage of one slice in the official row order (parity tests, debugging). */
  async encodeStages(slice: MiniCPMV46Slice, mode: DownsampleMode): Promise<MiniCPMV46VisionStages> {
    const stages = await this.run(slice, mode, true);
    const [h, w] = this.grid(slice);
    const c = this.dims.hiddenSize;
    const { order } = this.gridInputs(h, w, mode);
    // After the vit_merger the tokens are the (h/2, w/2) grid in 2×2-window order.
    const laterOrder = mode === '16x' ? mergeOrder(h / 2, w / 2, 1) : order;
    return {
      embeddings: scatterRows(stages.embeddings!, c, order),
      insertLayerOut: scatterRows(stages.insertLayerOut!, c, order),
      ...(stages.afterVitMerger ? { afterVitMerger: scatterRows(stages.afterVitMerger, c, laterOrder) } : {}),
      beforePostLayernorm: scatterRows(stages.beforePostLayernorm!, c, laterOrder),
      lastHiddenState: scatterRows(stages.lastHiddenState!, c, laterOrder),
      imageFeatures: stages.imageFeatures,
    };
  }

  /** One slice through head → (vit_merger) → tail; with `all`, every stage in merge order. */
  private async run(slice: MiniCPMV46Slice, mode: DownsampleMode, all: boolean): Promise<Partial<MiniCPMV46VisionStages> & { imageFeatures: Float32Array }> {
    const [h, w] = this.grid(slice);
    const { patchSize: p, hiddenSize: c } = this.dims;
    const { order, positionIds } = this.gridInputs(h, w, mode);
    const n = h * w;
    const patchLength = 3 * p * p;
    const patches = gatherRows(patchify(slice.pixels, slice.height, slice.width, p), patchLength, order);
    const headOut = await this.head.run({
      pixel_patches: { type: 'float32', data: patches, dims: [n, patchLength] },
      position_ids: { type: 'int64', data: positionIds, dims: [n] },
    }, all ? ['embeddings', 'hidden'] : ['hidden']);
    const insertLayerOut = headOut.hidden!.data as Float32Array;
    let tokens = insertLayerOut;
    let afterVitMerger: Float32Array | undefined;
    if (mode === '16x') {
      const merged = await this.windowMerger.run({ hidden: { type: 'float32', data: insertLayerOut, dims: [n, c] } });
      tokens = afterVitMerger = merged.merged!.data as Float32Array;
    }
    const m = tokens.length / c;
    const tailOut = await this.tail.run(
      { hidden: { type: 'float32', data: tokens, dims: [m, c] } },
      all ? ['before_post_layernorm', 'last_hidden_state', 'image_features'] : ['image_features'],
    );
    const imageFeatures = tailOut.image_features!.data as Float32Array;
    if (!all) return { imageFeatures };
    return {
      embeddings: headOut.embeddings!.data as Float32Array,
      insertLayerOut,
      afterVitMerger,
      beforePostLayernorm: tailOut.before_post_layernorm!.data as Float32Array,
      lastHiddenState: tailOut.last_hidden_state!.data as Float32Array,
      imageFeatures,
    };
  }

  /** The slice's patch grid (h, w), after checking its pixels. */
  private grid(slice: MiniCPMV46Slice): [number, number] {
    const p = this.dims.patchSize;
    const { height, width, pixels } = slice;
    if (!(height > 0 && width > 0 && height % p === 0 && width % p === 0)) {
      throw new ImageError(`a ${width}×${height} slice cannot be cut into ${p}×${p} patches; its sides must be multiples of ${p}`);
    }
    if (pixels.length !== 3 * height * width) {
      throw new ImageError(`a ${width}×${height} slice needs 3×${height}×${width} pixel values, got ${pixels.length}`);
    }
    return [height / p, width / p];
  }

  /** Merge order and position ids (in that order) for a grid and mode, cached. */
  private gridInputs(h: number, w: number, mode: DownsampleMode): GridInputs {
    const key = `${h}x${w}/${mode}`;
    let inputs = this.grids.get(key);
    if (!inputs) {
      const order = patchOrder(h, w, mode);
      const ids = nearestPositionIds(h, w, this.dims.positionGridSide);
      inputs = { order, positionIds: BigInt64Array.from(order, (row) => BigInt(ids[row]!)) };
      if (this.grids.size >= MAX_CACHED_GRIDS) this.grids.delete(this.grids.keys().next().value!);
      this.grids.set(key, inputs);
    }
    return inputs;
  }

  async release(): Promise<void> {
    await this.head.release();
    await this.windowMerger.release();
    await this.tail.release();
  }
}
