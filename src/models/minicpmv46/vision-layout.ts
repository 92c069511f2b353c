// MiniCPM-V 4.6's vision sizes and the host-side inputs that depend on a slice's patch grid (merge order, position
// ids, row gathers): what the encoder (./vision-encoder.ts) needs without the graph builders of ./vision.ts.

import { ImageError } from '../../errors.js';
import type { MiniCPMV46Config } from './config.js';
import type { DownsampleMode } from '../messages.js';

/** Sizes of the 4.6 vision tower, its window merger and the merger into the language model. */
export interface MiniCPMV46VisionDims {
  /** C: the tower's width. */
  hiddenSize: number;
  numHeads: number;
  numLayers: number;
  /** The encoder MLP's width (the vit_merger's MLP is 4× wider). */
  intermediateSize: number;
  layerNormEps: number;
  /** The encoder MLP's activation: `gelu_pytorch_tanh` (tanh GELU) or `gelu` (erf). */
  hiddenAct: 'gelu_pytorch_tanh' | 'gelu';
  patchSize: number;
  /** Side of the square position table: vision `image_size / patch_size` (70). */
  positionGridSide: number;
  /** The vit_merger runs after this encoder layer (0-based) in 16x mode. */
  insertLayerId: number;
  /** The language model's width: the merger's output rows. */
  textHiddenSize: number;
}

/** Checkpoint name prefixes of the two modules (`MiniCPMV4_6Model.vision_tower` and `.merger`). */
export const VISION_TOWER_PREFIX = 'model.vision_tower.';
export const MERGER_PREFIX = 'model.merger.';

/** The tower's dims from the family's typed config (which already refused what the graphs do not build). */
export function minicpmv46VisionDims(config: MiniCPMV46Config): MiniCPMV46VisionDims {
  const v = config.vision;
  return {
    hiddenSize: v.hiddenSize,
    numHeads: v.numAttentionHeads,
    numLayers: v.numHiddenLayers,
    intermediateSize: v.intermediateSize,
    layerNormEps: v.layerNormEps,
    hiddenAct: v.hiddenAct,
    patchSize: v.patchSize,
    positionGridSide: v.positionGrid,
    insertLayerId: config.insertLayerId,
    textHiddenSize: config.text.hiddenSize,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Host-side inputs for a slice's patch grid (h, w).

/** Throws unless the grid can be merged in `mode`: both sides even (4x) or multiples of 4 (16x). */
export function checkMergeGrid(h: number, w: number, mode: DownsampleMode): void {
  const unit = mode === '16x' ? 4 : 2;
  if (!(h > 0 && w > 0 && h % unit === 0 && w % unit === 0)) {
    throw new ImageError(
      `a ${h}×${w} patch grid cannot be merged in ${mode} mode: both sides must be positive multiples of ${unit} ` +
        '(the official processor makes them multiples of 4)',
    );
  }
}

/**
 * The row-major patch index of every token in merge order: blocks of 2^levels × 2^levels patches row-major over the
 * grid, and inside a block the quadrants in the order (0,0), (0,1), (1,0), (1,1), recursively (levels 2 for 16x,
 * 1 for 4x). The same function with levels 1 gives the order of the 16x merged tokens on the (h/2, w/2) grid.
 */
export function mergeOrder(h: number, w: number, levels: number): Int32Array {
  const side = 1 << levels;
  if (h % side !== 0 || w % side !== 0) throw new ImageError(`a ${h}×${w} patch grid has no ${side}×${side} blocks`);
  const order = new Int32Array(h * w);
  const perBlock = side * side;
  let k = 0;
  for (let by = 0; by < h / side; by++) {
    for (let bx = 0; bx < w / side; bx++) {
      for (let t = 0; t < perBlock; t++) {
        // t's bits from the top, in pairs: (row bit, column bit) of ever smaller quadrants.
        let y = 0;
        let x = 0;
        for (let level = levels - 1; level >= 0; level--) {
          y = (y << 1) | ((t >> (2 * level + 1)) & 1);
          x = (x << 1) | ((t >> (2 * level)) & 1);
        }
        order[k++] = (by * side + y) * w + bx * side + x;
      }
    }
  }
  return order;
}

/** The merge order of a slice's patches in a mode (`mergeOrder` with 2 levels for 16x, 1 for 4x). */
export function patchOrder(h: number, w: number, mode: DownsampleMode): Int32Array {
  checkMergeGrid(h, w, mode);
  return mergeOrder(h, w, mode === '16x' ? 2 : 1);
}

/** torch.arange(start, end, step) in float32: ⌈(end − start)/step⌉ values start + i·step, computed in float64. */
function arangeFloat32(start: number, end: number, step: number): Float32Array {
  const count = Math.max(0, Math.ceil((end - start) / step));
  return Float32Array.from({ length: count }, (_, i) => start + i * step);
}

/** torch.bucketize(x, boundaries, right=True) for one value: how many boundaries are ≤ x (sorted boundaries). */
function bucketizeRight(x: number, boundaries: Float32Array): number {
  let lo = 0;
  let hi = boundaries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (boundaries[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Port of `get_vision_nearest_position_ids` for one slice: the row of the side×side position table for every patch
 * (row-major), by the nearest-bucket lookup of `float32(i/h)` against float32 boundaries `arange(1/side, 1, 1/side)`.
 */
export function nearestPositionIds(h: number, w: number, side: number): Int32Array {
  const boundaries = arangeFloat32(1 / side, 1, 1 / side);
  const bucket = (i: number, n: number) => bucketizeRight(Math.fround(i / n), boundaries);
  const rows = Array.from({ length: h }, (_, i) => bucket(i, h));
  const cols = Array.from({ length: w }, (_, j) => bucket(j, w));
  const ids = new Int32Array(h * w);
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) ids[i * w + j] = rows[i]! * side + cols[j]!;
  return ids;
}

/** `values[order[k]]` rows of `width` numbers, k = 0 … order.length − 1 (row-major tensor → merge order). */
export function gatherRows(values: Float32Array, width: number, order: Int32Array): Float32Array {
  const out = new Float32Array(order.length * width);
  order.forEach((row, k) => out.set(values.subarray(row * width, (row + 1) * width), k * width));
  return out;
}

/** The inverse of `gatherRows`: rows in merge order put back at their row-major places. */
export function scatterRows(values: Float32Array, width: number, order: Int32Array): Float32Array {
  const out = new Float32Array(order.length * width);
  order.forEach((row, k) => out.set(values.subarray(k * width, (k + 1) * width), row * width));
  return out;
}
