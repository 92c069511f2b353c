// MiniCPM-V 4.6's image encoder (`get_image_features`: SigLIP2 tower with the window-attention `vit_merger` after
// layer `insert_layer_id` in 16x mode, then the DownsampleMLP `merger`) as three ONNX graphs, and the host-side
// inputs that depend on a slice's patch grid.
//
// One run encodes one slice. The host feeds the slice's patches in *merge order* (`mergeOrder`): every 2×2 window
// (4x), or every 4×4 block made of four 2×2 windows (16x), is contiguous. The tower's attention spans the whole slice,
// so it does not care about token order, and every merge becomes a plain Reshape [-1, 4·C]; no graph needs the grid.
//
//   head  (embeddings + encoder layers 0 … insert_layer_id)
//     pixel_patches [n, 3·p·p] (merge order), position_ids [n] int64 (`nearestPositionIds`, same order)
//       → embeddings [n, C], hidden [n, C]                       (hidden = encoder_layer_{insert_layer_id}_out)
//   vit_merger  (16x only)
//     hidden [n, C] → merged [n/4, C]                            (windows of 4 in order; out row = window)
//   tail  (encoder layers insert_layer_id+1 …, post_layernorm, merger)
//     hidden [m, C] → before_post_layernorm [m, C], last_hidden_state [m, C], image_features [m/4, text_hidden]
// 16x runs head → vit_merger → tail (m = n/4), 4x runs head → tail (m = n): both modes share every weight.

import type { TensorSource } from '../../checkpoint/safetensors.js';
import { ImageError } from '../../errors.js';
import { Graph } from '../../graph/builder.js';
import type { WeightPrecision } from '../../graph/quantize.js';
import { attention, fusedLinears, layerNorm, linear, patchEmbedding, readWeight } from '../parts/layers.js';
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

// ---------------------------------------------------------------------------------------------------------------
// Graphs.

export interface MiniCPMV46VisionGraphOptions {
  /** How the tower's linear layers (attention and MLP of every encoder layer and of the vit_merger) keep their weights. */
  precision?: WeightPrecision;
}

/**
 * `MiniCPMV4_6VisionAttention` on tokens [B, t, C] (B slices or windows, each attending within itself):
 *
 *   x ─ {q,k,v}_proj (one MatMul) ─ Split ─ attention(scale hd^-0.5) ─ out_proj ─►
 */
function selfAttention(g: Graph, x: string, source: TensorSource, dims: MiniCPMV46VisionDims, name: string, node: string, precision?: WeightPrecision): string {
  const c = dims.hiddenSize;
  const [q, k, v] = fusedLinears(
    g, x, source, ['q', 'k', 'v'].map((p) => `${name}.${p}_proj.weight`),
    { in: c, outs: [c, c, c], bias: true, precision }, `${name}.qkv_proj`, `${node}/qkv_proj`,
  );
  const context = attention(g, { q: q!, k: k!, v: v!, qRank: 3 }, dims.numHeads, c / dims.numHeads, 'multiply', node);
  return linear(g, context, source, `${name}.out_proj.weight`, { in: c, out: c, bias: true, precision }, `${node}/out_proj`);
}

/**
 * Encoder layers `first … last` (`MiniCPMV4_6VisionEncoderLayer`, pre-LN) on x [1, t, C]:
 *
 *   x ─┬─ layer_norm1 ─ self_attn ─ Add ─┬─ layer_norm2 ─ fc1 ─ Gelu ─ fc2 ─ Add ─► x
 *      └─────────────────────────────┘   └──────────────────────────────────┘
 */
function encoderLayers(g: Graph, x: string, source: TensorSource, dims: MiniCPMV46VisionDims, first: number, last: number, precision?: WeightPrecision): string {
  const { hiddenSize: c, intermediateSize: inner, layerNormEps: eps } = dims;
  const approximate = dims.hiddenAct === 'gelu' ? 'none' : 'tanh';
  for (let i = first; i <= last; i++) {
    const name = `${VISION_TOWER_PREFIX}encoder.layers.${i}`;
    const node = `/vision/encoder/layers.${i}`;
    const normed1 = layerNorm(g, x, source, `${name}.layer_norm1`, c, eps, `${node}/layer_norm1`);
    const attn = selfAttention(g, normed1, source, dims, `${name}.self_attn`, `${node}/self_attn`, precision);
    x = g.op('Add', [x, attn], `${node}/attn/residual/Add`);
    const normed2 = layerNorm(g, x, source, `${name}.layer_norm2`, c, eps, `${node}/layer_norm2`);
    const hidden = linear(g, normed2, source, `${name}.mlp.fc1.weight`, { in: c, out: inner, bias: true, precision }, `${node}/mlp/fc1`);
    const activated = g.op('Gelu', [hidden], `${node}/mlp/act/Gelu`, { approximate });
    const mlp = linear(g, activated, source, `${name}.mlp.fc2.weight`, { in: inner, out: c, bias: true, precision }, `${node}/mlp/fc2`);
    x = g.op('Add', [x, mlp], `${node}/mlp/residual/Add`);
  }
  return x;
}

/**
 * The head: embeddings (`MiniCPMV4_6VisionEmbeddings`) and encoder layers 0 … insert_layer_id.
 *
 *   pixel_patches ─ patch_embedding (MatMul) ─ Add(Gather(position_embedding, position_ids)) ─► embeddings
 *   embeddings ─ Reshape [1, n, C] ─ encoder layers 0 … insert_layer_id ─ Reshape [n, C] ─► hidden
 */
export function buildVisionHeadGraph(source: TensorSource, dims: MiniCPMV46VisionDims, options: MiniCPMV46VisionGraphOptions = {}): Graph {
  const { hiddenSize: c, patchSize: p, positionGridSide: side } = dims;
  const g = new Graph('minicpmv46_vision_head');
  const patches = g.input('pixel_patches', 'float32', ['n_patches', 3 * p * p]);
  const positionIds = g.input('position_ids', 'int64', ['n_patches']);
  const embed = `${VISION_TOWER_PREFIX}embeddings`;
  const patchEmbeds = patchEmbedding(g, patches, source, `${embed}.patch_embedding`, c, p, '/vision/embeddings/patch_embedding');
  const table = g.weight(`${embed}.position_embedding.weight`, readWeight(source, `${embed}.position_embedding.weight`, [side * side, c]), [side * side, c]);
  const positions = g.op('Gather', [table, positionIds], '/vision/embeddings/position_embedding/Gather', { axis: 0 });
  const embeddings = g.op('Add', [patchEmbeds, positions], '/vision/embeddings/Add');
  const tokens = g.op('Reshape', [embeddings, g.ints([1, -1, c])], '/vision/encoder/Reshape');
  const x = encoderLayers(g, tokens, source, dims, 0, dims.insertLayerId, options.precision);
  const hidden = g.op('Reshape', [x, g.ints([-1, c])], '/vision/encoder/output/Reshape');
  g.output(embeddings, 'embeddings', 'float32', ['n_patches', c]);
  g.output(hidden, 'hidden', 'float32', ['n_patches', c]);
  return g;
}

/**
 * The vit_merger (`MiniCPMV4_6ViTWindowAttentionMerger`) on tokens whose 2×2 windows are consecutive:
 *
 *   hidden [n, C] ─ Reshape [n/4, 4, C] ─► x ─┬─ layer_norm1 ─ self_attn (within each window) ─ Add ─► y ─┐
 *                                             └────────────────────────────────────────────┘             │
 *   y ─ Reshape [n/4, 4C] ─ pre_norm ─ linear_1 ─ Gelu(tanh) ─ linear_2 ─ Add ─► merged [n/4, C]          │
 *   y ─ ReduceMean(axis 1) ───────────────────────────────────────────┘  ◄──────────────────────────────┘
 */
export function buildWindowMergerGraph(source: TensorSource, dims: MiniCPMV46VisionDims, options: MiniCPMV46VisionGraphOptions = {}): Graph {
  const { hiddenSize: c, intermediateSize: inner, layerNormEps: eps } = dims;
  const precision = options.precision;
  const name = `${VISION_TOWER_PREFIX}vit_merger`;
  const g = new Graph('minicpmv46_vit_merger');
  const hidden = g.input('hidden', 'float32', ['n_tokens', c]);
  const windows = g.op('Reshape', [hidden, g.ints([-1, 4, c])], '/vision/vit_merger/windows/Reshape');
  const normed = layerNorm(g, windows, source, `${name}.layer_norm1`, c, eps, '/vision/vit_merger/layer_norm1');
  const attn = selfAttention(g, normed, source, dims, `${name}.self_attn`, '/vision/vit_merger/self_attn', precision);
  const y = g.op('Add', [windows, attn], '/vision/vit_merger/attn/residual/Add');
  const flat = g.op('Reshape', [y, g.ints([-1, 4 * c])], '/vision/vit_merger/flat/Reshape');
  const mean = g.op('ReduceMean', [y, g.ints([1])], '/vision/vit_merger/mean/ReduceMean', { keepdims: 0 });
  const preNormed = layerNorm(g, flat, source, `${name}.pre_norm`, 4 * c, eps, '/vision/vit_merger/pre_norm');
  const up = linear(g, preNormed, source, `${name}.linear_1.weight`, { in: 4 * c, out: 4 * inner, bias: true, precision }, '/vision/vit_merger/linear_1');
  const activated = g.op('Gelu', [up], '/vision/vit_merger/act/Gelu', { approximate: 'tanh' });
  const down = linear(g, activated, source, `${name}.linear_2.weight`, { in: 4 * inner, out: c, bias: true, precision }, '/vision/vit_merger/linear_2');
  const merged = g.op('Add', [down, mean], '/vision/vit_merger/residual/Add');
  g.output(merged, 'merged', 'float32', ['n_windows', c]);
  return g;
}

/**
 * The tail: the encoder layers after insert_layer_id, post_layernorm and the merger (`MiniCPMV4_6DownsampleMLP`,
 * LayerNorm eps 1e-6 and exact GELU as the official module hard-codes them) on tokens whose 2×2 blocks are
 * consecutive:
 *
 *   hidden [m, C] ─ Reshape [1, m, C] ─ layers insert_layer_id+1 … ─► before_post_layernorm ─ post_layernorm ─►
 *   last_hidden_state ─ Reshape [m/4, 4C] ─ pre_norm ─ linear_1 ─ Gelu(erf) ─ linear_2 ─► image_features [m/4, T]
 * The merger stays fp32 at every precision, like MiniCPM-V 2.0's resampler.
 */
export function buildVisionTailGraph(source: TensorSource, dims: MiniCPMV46VisionDims, options: MiniCPMV46VisionGraphOptions = {}): Graph {
  const { hiddenSize: c, layerNormEps: eps, textHiddenSize: t } = dims;
  const g = new Graph('minicpmv46_vision_tail');
  const hidden = g.input('hidden', 'float32', ['n_tokens', c]);
  const tokens = g.op('Reshape', [hidden, g.ints([1, -1, c])], '/vision/tail/Reshape');
  const x = encoderLayers(g, tokens, source, dims, dims.insertLayerId + 1, dims.numLayers - 1, options.precision);
  const beforePostNorm = g.op('Reshape', [x, g.ints([-1, c])], '/vision/encoder/output/Reshape');
  const lastHidden = layerNorm(g, beforePostNorm, source, `${VISION_TOWER_PREFIX}post_layernorm`, c, eps, '/vision/post_layernorm');
  const mlp = `${MERGER_PREFIX}mlp.0`;
  const flat = g.op('Reshape', [lastHidden, g.ints([-1, 4 * c])], '/merger/flat/Reshape');
  const preNormed = layerNorm(g, flat, source, `${mlp}.pre_norm`, 4 * c, 1e-6, '/merger/mlp.0/pre_norm');
  const up = linear(g, preNormed, source, `${mlp}.linear_1.weight`, { in: 4 * c, out: 4 * c, bias: true }, '/merger/mlp.0/linear_1');
  const activated = g.op('Gelu', [up], '/merger/mlp.0/act/Gelu', { approximate: 'none' });
  const features = linear(g, activated, source, `${mlp}.linear_2.weight`, { in: 4 * c, out: t, bias: true }, '/merger/mlp.0/linear_2');
  g.output(beforePostNorm, 'before_post_layernorm', 'float32', ['n_tokens', c]);
  g.output(lastHidden, 'last_hidden_state', 'float32', ['n_tokens', c]);
  g.output(features, 'image_features', 'float32', ['n_rows', t]);
  return g;
}
