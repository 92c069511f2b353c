// Runs OmniLMM's image path (`OmniLMMModel.get_vision_embedding`): the Eva tower on the image's patches, the class
// token dropped after the final norm, then the resampler with its stored table interpolated to the patch grid as the
// key positions (`get_abs_pos`) and at its native grid for the queries.

import type { TensorSource } from '../../checkpoint/safetensors.js';
import { ImageError } from '../../errors.js';
import type { WeightPrecision } from '../../graph/quantize.js';
import { openGraph, type GraphSession, type RuntimeOptions } from '../../runtime/graph-session.js';
import { patchGrid, patchify } from '../parts/position-embedding.js';
import { buildResamplerGraph, type ResamplerDims } from '../parts/resampler.js';
import { readWeight, type VisionDims } from '../parts/layers.js';
import { getAbsPos } from '../parts/position-embedding.js';
import { resampleEvaPosEmbed } from './position-embedding.js';
import { buildEvaVisionGraph, EVA_PREFIX, readEvaPosEmbed } from './vision.js';

export const RESAMPLER_PREFIX = 'model.resampler.';

export interface EncodedImage {
  /** `[query_num, E]`: what replaces the `<im_patch>` rows of the prompt. */
  embeds: Float32Array;
  /** `[1 + n_patches, d]` tower output (class-token row first), only when asked for with `keepFeatures`. */
  features?: Float32Array;
}

/** The host tables of one patch grid. */
export interface GridTables {
  /** `[1 + n, d]`: the tower's table resampled to the grid (timm `resample_abs_pos_embed`). */
  visionPosEmbed: Float32Array;
  /** `[n, E]`: the resampler's stored table interpolated to the grid (`get_abs_pos`). */
  keyPosEmbed: Float32Array;
}

export class OmniLMMVisionEncoder {
  private readonly tables = new Map<string, GridTables>();

  private constructor(
    private readonly vision: GraphSession,
    private readonly resampler: GraphSession,
    private readonly storedPosEmbed: Float32Array,
    private readonly storedKeyPosEmbed: Float32Array,
    readonly visionDims: VisionDims,
    readonly resamplerDims: ResamplerDims,
  ) {}

  /** `precision`: how the tower's linear layers keep their weights (default fp32; the resampler stays fp32). */
  static async create(
    weights: TensorSource,
    dims: { vision: VisionDims; resampler: ResamplerDims },
    runtime: RuntimeOptions = {},
    precision?: WeightPrecision,
  ): Promise<OmniLMMVisionEncoder> {
    // The arena stays on here, unlike MiniCPM-V's tower: without it EVA02's 63-MB MLP activations are mapped afresh
    // at every block, and a 448² image took 49.5 s instead of 41.5 s (full size, int8 tower, 2 threads).
    const { queryNum, embedDim } = dims.resampler;
    const storedPosEmbed = readEvaPosEmbed(weights, dims.vision);
    const storedKeyPosEmbed = readWeight(weights, `${RESAMPLER_PREFIX}pos_embed`, [queryNum, embedDim]);
    // fp32 is the default: both spellings name the same graph (and the same cache entry).
    const towerPrecision = precision === 'fp32' ? undefined : precision;
    const vision = await openGraph({
      part: 'eva-vision', label: 'vision tower', source: weights, key: { dims: dims.vision, prefix: EVA_PREFIX, precision: towerPrecision },
      build: (source) => buildEvaVisionGraph(source, dims.vision, { prefix: EVA_PREFIX, precision: towerPrecision }).serialize(),
    }, runtime);
    try {
      const resampler = await openGraph({
        part: 'resampler', label: 'resampler', source: weights, key: { dims: dims.resampler, prefix: RESAMPLER_PREFIX },
        build: (source) => buildResamplerGraph(source, dims.resampler, { prefix: RESAMPLER_PREFIX }).serialize(),
      }, runtime);
      return new OmniLMMVisionEncoder(vision, resampler, storedPosEmbed, storedKeyPosEmbed, dims.vision, dims.resampler);
    } catch (err) {
      await vision.release();
      throw err;
    }
  }

  /** Encodes one image given as normalised CHW float32 pixels of size 3×height×width. */
  async encode(pixels: Float32Array, height: number, width: number, options: { keepFeatures?: boolean } = {}): Promise<EncodedImage> {
    if (pixels.length !== 3 * height * width) {
      throw new ImageError(`the image tensor has ${pixels.length} values, expected 3×${height}×${width}`);
    }
    const { patchSize, embedDim: d } = this.visionDims;
    const grid = patchGrid(height, width, patchSize);
    const n = grid[0] * grid[1];
    const tables = this.gridTables(grid);
    const visionOut = await this.vision.run({
      pixel_patches: { type: 'float32', data: patchify(pixels, height, width, patchSize), dims: [1, n, 3 * patchSize * patchSize] },
      pos_embed: { type: 'float32', data: tables.visionPosEmbed, dims: [1 + n, d] },
    });
    const features = visionOut.features!.data as Float32Array;
    // get_vision_embedding drops the class token (num_prefix_tokens = 1) before the resampler.
    const resamplerOut = await this.resampler.run({
      features: { type: 'float32', data: features.subarray(d), dims: [1, n, d] },
      kv_pos_embed: { type: 'float32', data: tables.keyPosEmbed, dims: [n, this.resamplerDims.embedDim] },
    });
    const embeds = resamplerOut.image_embeds!.data as Float32Array;
    return options.keepFeatures ? { embeds, features } : { embeds };
  }

  /** Both position tables for a patch grid `[rows, cols]` (kept for the grids seen). */
  gridTables(grid: readonly [number, number]): GridTables {
    const key = `${grid[0]}x${grid[1]}`;
    let tables = this.tables.get(key);
    if (!tables) {
      const side = Math.sqrt(this.resamplerDims.queryNum);
      tables = {
        visionPosEmbed: resampleEvaPosEmbed(this.storedPosEmbed, this.visionDims.posGrid, grid),
        keyPosEmbed: getAbsPos(this.storedKeyPosEmbed, [side, side], grid),
      };
      this.tables.set(key, tables);
    }
    return tables;
  }

  async release(): Promise<void> {
    await this.vision.release();
    await this.resampler.release();
  }
}
