// The perceiver resampler of MiniCPM-V (official resampler.py `Resampler.forward`) as an ONNX graph. 1.0 and 2.0
// differ only in the key position table, which the host computes (vision-encoder.ts).
//
// Contract:  features      [batch, n, kv_dim]   (the vision graph's output)
//            kv_pos_embed  [n, E]               (2.0: `get2dSinCosPosEmbed(E, grid)`; 1.0: `getAbsPos` of pos_embed)
//         →  image_embeds  [batch, query_num, E]

import { Graph } from '../../graph/builder.js';
import type { TensorSource } from '../../checkpoint/safetensors.js';
import { CheckpointError } from '../../errors.js';
import { attention, layerNorm, linear, readWeight, transpose } from './layers.js';

export interface ResamplerDims {
  queryNum: number;
  embedDim: number;
  numHeads: number;
  kvDim: number;
  normEps: number;
  /**
   * 2.0's adaptive resampler (the default) keys on the 2-D sin-cos table of each slice's grid; 1.0's (false)
   * interpolates its stored `pos_embed` to the grid.
   */
  adaptive?: boolean;
}

export interface ResamplerGraphOptions {
  /** Checkpoint name prefix of the resampler (default `resampler.`). */
  prefix?: string;
}

/**
 * torch nn.MultiheadAttention(q, k = kv + kv_pos_embed, v = kv) with the packed `in_proj` ([W_q; W_k; W_v]):
 *
 *   features ─ MatMul(kv_projᵀ) ─ LayerNorm(ln_kv) ─► kv ─┬─ Add(kv_pos_embed) ─ k_proj ─┐
 *                                                         └─ v_proj ─────────────────────┤
 *   queries (constant: ln_q(query) + pos_embed) ─ q_proj ─────────────────────── attention ─ out_proj
 *        ─ LayerNorm(ln_post) ─ MatMul(proj) ─► image_embeds
 */
export function buildResamplerGraph(source: TensorSource, dims: ResamplerDims, options: ResamplerGraphOptions = {}): Graph {
  const prefix = options.prefix ?? 'resampler.';
  const { queryNum, embedDim: e, numHeads, kvDim, normEps } = dims;
  if (e % numHeads !== 0) throw new CheckpointError(`resampler embed dim ${e} is not divisible by ${numHeads} heads`);
  const g = new Graph('minicpmv_resampler');
  const features = g.input('features', 'float32', ['batch', 'n_patches', kvDim]);
  const kvPosEmbed = g.input('kv_pos_embed', 'float32', ['n_patches', e]);

  // 1. Keys and values from the vision features.
  const projected = linear(g, features, source, `${prefix}kv_proj.weight`, { in: kvDim, out: e, bias: false }, '/resampler/kv_proj');
  const kv = layerNorm(g, projected, source, `${prefix}ln_kv`, e, normEps, '/resampler/ln_kv');
  const keysIn = g.op('Add', [kv, kvPosEmbed], '/resampler/kv_pos_embed/Add');

  // 2. The queries do not depend on the image: fold ln_q(query) + pos_embed into a constant now.
  const queries = g.weight(`${prefix}queries`, resamplerQueries(source, dims, prefix), [queryNum, e]);

  // 3. Packed input projection, split row-wise into W_q, W_k, W_v.
  const inProj = readWeight(source, `${prefix}attn.in_proj_weight`, [3 * e, e]);
  const inBias = readWeight(source, `${prefix}attn.in_proj_bias`, [3 * e]);
  const project = (x: string, part: number, label: string): string => {
    const w = transpose(inProj.subarray(part * e * e, (part + 1) * e * e), e, e);
    const y = g.op('MatMul', [x, g.weight(`${prefix}attn.${label}_proj.weight.T`, w, [e, e])], `/resampler/attn/${label}_proj/MatMul`);
    const b = g.weight(`${prefix}attn.${label}_proj.bias`, inBias.slice(part * e, (part + 1) * e), [e]);
    return g.op('Add', [y, b], `/resampler/attn/${label}_proj/Add`);
  };
  const q = project(queries, 0, 'q');
  const k = project(keysIn, 1, 'k');
  const v = project(kv, 2, 'v');
  const context = attention(g, { q, k, v, qRank: 2 }, numHeads, e / numHeads, 'divide', '/resampler/attn');
  const attnOut = linear(g, context, source, `${prefix}attn.out_proj.weight`, { in: e, out: e, bias: true }, '/resampler/attn/out_proj');

  // 4. Post norm and the projection, used as `x @ proj` (not transposed).
  const normed = layerNorm(g, attnOut, source, `${prefix}ln_post`, e, normEps, '/resampler/ln_post');
  const proj = g.weight(`${prefix}proj`, readWeight(source, `${prefix}proj`, [e, e]), [e, e]);
  const embeds = g.op('MatMul', [normed, proj], '/resampler/proj/MatMul');
  g.output(embeds, 'image_embeds', 'float32', ['batch', queryNum, e]);
  return g;
}

/** `ln_q(query) + pos_embed` (the stored table), in float64 and rounded once. */
function resamplerQueries(source: TensorSource, dims: ResamplerDims, prefix: string): Float32Array {
  const { queryNum, embedDim: e, normEps } = dims;
  const query = readWeight(source, `${prefix}query`, [queryNum, e]);
  const posEmbed = readWeight(source, `${prefix}pos_embed`, [queryNum, e]);
  const gamma = readWeight(source, `${prefix}ln_q.weight`, [e]);
  const beta = readWeight(source, `${prefix}ln_q.bias`, [e]);
  const out = new Float32Array(queryNum * e);
  for (let r = 0; r < queryNum; r++) {
    const row = query.subarray(r * e, (r + 1) * e);
    let mean = 0;
    for (const v of row) mean += v;
    mean /= e;
    let variance = 0;
    for (const v of row) variance += (v - mean) ** 2;
    variance /= e;
    const inv = 1 / Math.sqrt(variance + normEps);
    for (let i = 0; i < e; i++) {
      const normed = Math.fround((row[i]! - mean) * inv * gamma[i]! + beta[i]!);
      out[r * e + i] = normed + posEmbed[r * e + i]!;
    }
  }
  return out;
}
