// OmniLMM's vision tower: timm 0.9.10 `Eva` as `eva02_enormous_patch14_clip_224` builds it (class token, absolute
// position table, post-norm blocks with a fused qkv that has q and v biases, GELU MLP, no RoPE), with the last
// block replaced by an Identity (`create_vision_module`), as an ONNX graph.
//
// Contract:  pixel_patches [batch, n, 3·p·p]      (parts/position-embedding.ts `patchify` of the image)
//            pos_embed     [1 + n, d]             (`resampleEvaPosEmbed` of the stored table for the patch grid)
//         →  features      [batch, 1 + n, d]      (= timm `forward_features`: the class-token row first)
//            patch_embed   [batch, n, d]          (only with `withIntermediates`: the conv output)
//            block_00_out  [batch, 1 + n, d]      (only with `withIntermediates`: after the first block)

import type { TensorSource } from '../../checkpoint/safetensors.js';
import { CheckpointError } from '../../errors.js';
import { Graph } from '../../graph/builder.js';
import type { WeightPrecision } from '../../graph/quantize.js';
import {
  attention, layerNorm, linear, linearFromWeights, patchEmbedding, readWeight, type LinearSpec, type VisionDims,
} from '../parts/layers.js';

export interface EvaGraphOptions {
  /** Checkpoint name prefix of the tower (default `model.vision_tower.`). */
  prefix?: string;
  /** Also output `patch_embed` and `block_00_out` (parity tests). */
  withIntermediates?: boolean;
  /** How the blocks' linear layers (qkv, proj, fc1, fc2) keep their weights (default fp32, the reference). */
  precision?: WeightPrecision;
}

export const EVA_PREFIX = 'model.vision_tower.';

/**
 * The tower (timm `Eva.forward_features`):
 *
 *   pixel_patches ─ MatMul(conv W) ─ Add(b) ─► patches
 *   cls_token ─ Expand [batch, 1, d] ─ Concat(·, patches) ─ Add(pos_embed) ─► x
 *   x ─┬─ qkv ─ Split ─ attention ─ proj ─ LayerNorm(norm1) ─ Add ─┬─ fc1 ─ Gelu ─ fc2 ─ LayerNorm(norm2) ─ Add ─► x
 *      └─────────────────────────────────────────────────────┘     └─────────────────────────────────────┘
 *                                                                          (× depthUsed, post-norm blocks)
 *   x ─ LayerNorm(norm) ─► features
 */
export function buildEvaVisionGraph(source: TensorSource, dims: VisionDims, options: EvaGraphOptions = {}): Graph {
  const prefix = options.prefix ?? EVA_PREFIX;
  const { patchSize: p, embedDim: d, numHeads, mlpHidden, normEps } = dims;
  const precision = options.precision;
  if (d % numHeads !== 0) throw new CheckpointError(`vision embed dim ${d} is not divisible by ${numHeads} heads`);
  if (source.has(`${prefix}blocks.${dims.depthUsed}.attn.qkv.weight`)) {
    throw new CheckpointError(
      `the checkpoint has ${prefix}blocks.${dims.depthUsed}, a block the official code replaces by an Identity: ` +
        'its vision depth does not match config.json',
    );
  }
  const patchLength = 3 * p * p;
  const g = new Graph('omnilmm_vision');
  const pixels = g.input('pixel_patches', 'float32', ['batch', 'n_patches', patchLength]);
  const posEmbed = g.input('pos_embed', 'float32', ['n_tokens', d]);

  // 1. Patch embedding: the conv with kernel = stride = p is a MatMul over patchified pixels.
  const patchEmbed = patchEmbedding(g, pixels, source, `${prefix}patch_embed.proj`, d, p, '/vision/patch_embed/proj');

  // 2. The class token goes in front of the patches, then the position table is added (timm `_pos_embed`).
  const cls = g.weight(`${prefix}cls_token`, readWeight(source, `${prefix}cls_token`, [1, 1, d]), [1, 1, d]);
  const batch = g.op('Shape', [pixels], '/vision/cls_token/Shape', { start: 0, end: 1 });
  const clsShape = g.op('Concat', [batch, g.ints([1, d])], '/vision/cls_token/shape/Concat', { axis: 0 });
  const clsRows = g.op('Expand', [cls, clsShape], '/vision/cls_token/Expand');
  const tokens = g.op('Concat', [clsRows, patchEmbed], '/vision/cls_token/Concat', { axis: 1 });
  let x = g.op('Add', [tokens, posEmbed], '/vision/pos_embed/Add');

  // 3. Post-norm blocks (`EvaBlockPostNorm`): the norms apply to the branch outputs.
  const headDim = d / numHeads;
  for (let i = 0; i < dims.depthUsed; i++) {
    const name = `${prefix}blocks.${i}`;
    const node = `/vision/blocks.${i}`;
    const qkv = fusedQkv(g, x, source, `${name}.attn`, { in: d, out: 3 * d, bias: true, precision }, `${node}/attn/qkv`);
    const [q, k, v] = g.node('Split', [qkv, g.ints([d, d, d])], { name: `${node}/attn/qkv/Split`, attrs: { axis: -1 }, outputs: 3 });
    const context = attention(g, { q: q!, k: k!, v: v!, qRank: 3 }, numHeads, headDim, 'multiply', `${node}/attn`);
    const attnOut = linear(g, context, source, `${name}.attn.proj.weight`, { in: d, out: d, bias: true, precision }, `${node}/attn/proj`);
    const attnNormed = layerNorm(g, attnOut, source, `${name}.norm1`, d, normEps, `${node}/norm1`);
    x = g.op('Add', [x, attnNormed], `${node}/attn/residual/Add`);

    const hidden = linear(g, x, source, `${name}.mlp.fc1.weight`, { in: d, out: mlpHidden, bias: true, precision }, `${node}/mlp/fc1`);
    const activated = g.op('Gelu', [hidden], `${node}/mlp/act/Gelu`, { approximate: 'none' });
    const mlpOut = linear(g, activated, source, `${name}.mlp.fc2.weight`, { in: mlpHidden, out: d, bias: true, precision }, `${node}/mlp/fc2`);
    const mlpNormed = layerNorm(g, mlpOut, source, `${name}.norm2`, d, normEps, `${node}/norm2`);
    x = g.op('Add', [x, mlpNormed], `${node}/mlp/residual/Add`);
    if (i === 0 && options.withIntermediates) g.output(x, 'block_00_out', 'float32', ['batch', 'n_tokens', d]);
  }

  // 4. Final norm over every token, the class token included.
  const features = layerNorm(g, x, source, `${prefix}norm`, d, normEps, '/vision/norm');
  g.output(features, 'features', 'float32', ['batch', 'n_tokens', d]);
  if (options.withIntermediates) g.output(patchEmbed, 'patch_embed', 'float32', ['batch', 'n_patches', d]);
  return g;
}

/**
 * Eva's fused projection (`EvaAttention` with qkv_bias): `x @ W_qkvᵀ + [q_bias, 0, v_bias]` (k has no bias), a
 * linear layer whose bias is assembled from the two stored ones.
 *
 *   x [.., d] ── MatMul(W_qkvᵀ [d, 3d]) ── Add([q_bias; 0; v_bias]) ──► [.., 3d]     (MatMulNBits when quantised)
 */
function fusedQkv(g: Graph, x: string, source: TensorSource, attn: string, spec: LinearSpec, node: string): string {
  const d = spec.in;
  const weight = { name: `${attn}.qkv.weight`, data: readWeight(source, `${attn}.qkv.weight`, [3 * d, d]) };
  const bias = new Float32Array(3 * d);
  bias.set(readWeight(source, `${attn}.q_bias`, [d]), 0);
  bias.set(readWeight(source, `${attn}.v_bias`, [d]), 2 * d);
  return linearFromWeights(g, x, weight, { name: `${attn}.qkv.bias`, data: bias }, spec, node);
}

/** The stored position table `[1 + gh·gw, d]`, class-token row first (`pos_embed` is [1, 1 + gh·gw, d]). */
export function readEvaPosEmbed(source: TensorSource, dims: VisionDims, prefix = EVA_PREFIX): Float32Array {
  return readWeight(source, `${prefix}pos_embed`, [1, 1 + dims.posGrid[0] * dims.posGrid[1], dims.embedDim]);
}
