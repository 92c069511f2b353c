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
import { Graph } from '../../graph/builder.js';
import type { WeightPrecision } from '../../graph/quantize.js';
import { attention, fusedLinears, layerNorm, linear, patchEmbedding, readWeight } from '../parts/layers.js';
import { MERGER_PREFIX, VISION_TOWER_PREFIX, type MiniCPMV46VisionDims } from './vision-layout.js';

export {
  checkMergeGrid, gatherRows, MERGER_PREFIX, mergeOrder, minicpmv46VisionDims, nearestPositionIds, patchOrder, scatterRows,
  VISION_TOWER_PREFIX, type MiniCPMV46VisionDims,
} from './vision-layout.js';

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
