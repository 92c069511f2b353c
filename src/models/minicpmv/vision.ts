// The SigLIP vision tower (timm VisionTransformer as MiniCPM-V 2.0 builds it) as an ONNX graph.
//
// Contract:  pixel_patches [batch, n, 3·p·p]  (parts/position-embedding.ts `patchify`, slices of one size)
//            pos_embed     [n, d]             (`resamplePosEmbed` of the stored table for the slice's grid)
//         →  features      [batch, n, d]      (= timm `forward_features`; no prefix tokens)
//            patch_embed   [batch, n, d]      (only with `withPatchEmbed`: the conv output, before pos_embed)

import { CheckpointError } from '../../errors.js';
import { Graph } from '../../graph/builder.js';
import type { WeightPrecision } from '../../graph/quantize.js';
import type { TensorSource } from '../../checkpoint/safetensors.js';
import { attention, layerNorm, linear, patchEmbedding, type VisionDims } from '../parts/layers.js';

export interface VisionGraphOptions {
  /** Checkpoint name prefix of the tower (default `vpm.`). */
  prefix?: string;
  /** Also output `patch_embed` (for parity tests). */
  withPatchEmbed?: boolean;
  /** How the blocks' linear layers (qkv, proj, fc1, fc2) keep their weights (default fp32, the reference). */
  precision?: WeightPrecision;
}

/**
 * The tower (timm `forward_features`):
 *
 *   pixel_patches ─ MatMul(conv W) ─ Add(b) ─ Add(pos_embed) ─► x
 *   x ─┬─ LayerNorm ─ qkv ─ Split ─ attention ─ proj ─ Add ─┬─ LayerNorm ─ fc1 ─ Gelu ─ fc2 ─ Add ─► x   (× depthUsed)
 *      └──────────────────────────────────────────────┘     └──────────────────────────────┘
 *   x ─ LayerNorm ─► features
 */
export function buildVisionGraph(source: TensorSource, dims: VisionDims, options: VisionGraphOptions = {}): Graph {
  const prefix = options.prefix ?? 'vpm.';
  const { patchSize: p, embedDim: d, numHeads, mlpHidden, normEps } = dims;
  const precision = options.precision;
  if (d % numHeads !== 0) throw new CheckpointError(`vision embed dim ${d} is not divisible by ${numHeads} heads`);
  const patchLength = 3 * p * p;
  const g = new Graph('minicpmv_vision');
  const pixels = g.input('pixel_patches', 'float32', ['batch', 'n_patches', patchLength]);
  const posEmbed = g.input('pos_embed', 'float32', ['n_patches', d]);

  // 1. Patch embedding: the conv with kernel = stride = p is a MatMul over patchified pixels.
  const patchEmbed = patchEmbedding(g, pixels, source, `${prefix}patch_embed.proj`, d, p, '/vision/patch_embed/proj');
  let x = g.op('Add', [patchEmbed, posEmbed], '/vision/pos_embed/Add');

  // 2. Pre-norm transformer blocks.
  const headDim = d / numHeads;
  for (let i = 0; i < dims.depthUsed; i++) {
    const name = `${prefix}blocks.${i}`;
    const node = `/vision/blocks.${i}`;
    const normed1 = layerNorm(g, x, source, `${name}.norm1`, d, normEps, `${node}/norm1`);
    const qkv = linear(g, normed1, source, `${name}.attn.qkv.weight`, { in: d, out: 3 * d, bias: true, precision }, `${node}/attn/qkv`);
    const [q, k, v] = g.node('Split', [qkv, g.ints([d, d, d])], { name: `${node}/attn/qkv/Split`, attrs: { axis: -1 }, outputs: 3 });
    const context = attention(g, { q: q!, k: k!, v: v!, qRank: 3 }, numHeads, headDim, 'multiply', `${node}/attn`);
    const attnOut = linear(g, context, source, `${name}.attn.proj.weight`, { in: d, out: d, bias: true, precision }, `${node}/attn/proj`);
    x = g.op('Add', [x, attnOut], `${node}/attn/residual/Add`);

    const normed2 = layerNorm(g, x, source, `${name}.norm2`, d, normEps, `${node}/norm2`);
    const hidden = linear(g, normed2, source, `${name}.mlp.fc1.weight`, { in: d, out: mlpHidden, bias: true, precision }, `${node}/mlp/fc1`);
    const activated = g.op('Gelu', [hidden], `${node}/mlp/act/Gelu`, { approximate: 'none' });
    const mlpOut = linear(g, activated, source, `${name}.mlp.fc2.weight`, { in: mlpHidden, out: d, bias: true, precision }, `${node}/mlp/fc2`);
    x = g.op('Add', [x, mlpOut], `${node}/mlp/residual/Add`);
  }

  // 3. Final norm.
  const features = layerNorm(g, x, source, `${prefix}norm`, d, normEps, '/vision/norm');
  g.output(features, 'features', 'float32', ['batch', 'n_patches', d]);
  if (options.withPatchEmbed) g.output(patchEmbed, 'patch_embed', 'float32', ['batch', 'n_patches', d]);
  return g;
}

export { readVisionPosEmbed } from './vision-tables.js';
