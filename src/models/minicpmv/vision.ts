// The SigLIP vision tower (timm VisionTransformer as MiniCPM-V 2.0 builds it) as an ONNX graph.
//
// Contract:  pixel_patches [batch, n, 3·p·p]  (position-embedding.ts `patchify`, slices of one size)
//            pos_embed     [n, d]             (`resamplePosEmbed` of the stored table for the slice's grid)
//         →  features      [batch, n, d]      (= timm `forward_features`; no prefix tokens)
//            patch_embed   [batch, n, d]      (only with `withPatchEmbed`: the conv output, before pos_embed)

import { CheckpointError } from '../../errors.js';
import { Graph, f } from '../../graph/builder.js';
import type { TensorSource } from '../../checkpoint/safetensors.js';

export interface VisionDims {
  patchSize: number;
  embedDim: number;
  /** Blocks actually run (timm depth minus one when `drop_vision_last_layer`). */
  depthUsed: number;
  numHeads: number;
  mlpHidden: number;
  normEps: number;
  /** The stored position table's grid [rows, cols]. */
  posGrid: [number, number];
}

export interface VisionGraphOptions {
  /** Checkpoint name prefix of the tower (default `vpm.`). */
  prefix?: string;
  /** Also output `patch_embed` (for parity tests). */
  withPatchEmbed?: boolean;
}

/** Reads a float tensor and checks its shape, so a config that does not fit the checkpoint fails clearly. */
export function readWeight(source: TensorSource, name: string, shape: readonly number[]): Float32Array {
  if (!source.has(name)) throw new CheckpointError(`the checkpoint has no tensor ${name}; is it a MiniCPM-V checkpoint?`);
  const actual = source.info(name).shape;
  if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
    throw new CheckpointError(`tensor ${name} has shape [${actual}] but the config implies [${shape}]; config.json does not match the weights`);
  }
  return source.float32(name);
}

/** Transposes a row-major [rows, cols] matrix (a torch Linear weight [out, in] becomes a MatMul operand [in, out]). */
export function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c]!;
  return out;
}

/**
 *   x [.., in] ── MatMul(Wᵀ [in, out]) ── Add(b) ──► [.., out]     (torch nn.Linear; Add only when there is a bias)
 */
export function linear(
  g: Graph,
  x: string,
  source: TensorSource,
  weightName: string,
  dims: { in: number; out: number; bias: boolean },
  node: string,
): string {
  const w = transpose(readWeight(source, weightName, [dims.out, dims.in]), dims.out, dims.in);
  const y = g.op('MatMul', [x, g.weight(`${weightName}.T`, w, [dims.in, dims.out])], `${node}/MatMul`);
  if (!dims.bias) return y;
  const biasName = weightName.replace(/weight$/, 'bias');
  const b = g.weight(biasName, readWeight(source, biasName, [dims.out]), [dims.out]);
  return g.op('Add', [y, b], `${node}/Add`);
}

/** torch nn.LayerNorm over the last axis (`<name>.weight`, `<name>.bias`) as opset-17 LayerNormalization. */
export function layerNorm(g: Graph, x: string, source: TensorSource, name: string, dim: number, eps: number, node: string): string {
  const scale = g.weight(`${name}.weight`, readWeight(source, `${name}.weight`, [dim]), [dim]);
  const bias = g.weight(`${name}.bias`, readWeight(source, `${name}.bias`, [dim]), [dim]);
  return g.op('LayerNormalization', [x, scale, bias], `${node}/LayerNormalization`, { axis: -1, epsilon: f(eps) });
}

/**
 * Scaled dot-product attention over heads; q may lack the batch axis (it then broadcasts).
 *
 *   q [B?, nq, E] ─ Reshape [.., nq, h, hd] ─ Transpose ─► [B?, h, nq, hd] ─ scale ─┐
 *   k [B, nk, E]  ─ Reshape ─ Transpose ─► [B, h, hd, nk] ───────────────────── MatMul ─ Softmax ─┐
 *   v [B, nk, E]  ─ Reshape ─ Transpose ─► [B, h, nk, hd] ──────────────────────────────────── MatMul
 *        ─► [B, h, nq, hd] ─ Transpose ─ Reshape ─► [B, nq, E]
 *
 * `scale` is timm's `q · hd^-0.5` ('multiply') or torch MultiheadAttention's `q / √hd` ('divide').
 */
export function attention(
  g: Graph,
  qkv: { q: string; k: string; v: string; qRank: 2 | 3 },
  heads: number,
  headDim: number,
  scale: 'multiply' | 'divide',
  node: string,
): string {
  const splitQ = g.op('Reshape', [qkv.q, g.ints(qkv.qRank === 3 ? [0, 0, heads, headDim] : [0, heads, headDim])], `${node}/q/Reshape`);
  const qHeads = g.op('Transpose', [splitQ], `${node}/q/Transpose`, { perm: qkv.qRank === 3 ? [0, 2, 1, 3] : [1, 0, 2] });
  const scaled =
    scale === 'multiply'
      ? g.op('Mul', [qHeads, g.scalar(headDim ** -0.5)], `${node}/q/Mul`)
      : g.op('Div', [qHeads, g.scalar(Math.sqrt(headDim))], `${node}/q/Div`);
  const splitK = g.op('Reshape', [qkv.k, g.ints([0, 0, heads, headDim])], `${node}/k/Reshape`);
  const kHeadsT = g.op('Transpose', [splitK], `${node}/k/Transpose`, { perm: [0, 2, 3, 1] });
  const splitV = g.op('Reshape', [qkv.v, g.ints([0, 0, heads, headDim])], `${node}/v/Reshape`);
  const vHeads = g.op('Transpose', [splitV], `${node}/v/Transpose`, { perm: [0, 2, 1, 3] });
  const scores = g.op('MatMul', [scaled, kHeadsT], `${node}/scores/MatMul`);
  const probs = g.op('Softmax', [scores], `${node}/Softmax`, { axis: -1 });
  const context = g.op('MatMul', [probs, vHeads], `${node}/context/MatMul`);
  const merged = g.op('Transpose', [context], `${node}/context/Transpose`, { perm: [0, 2, 1, 3] });
  return g.op('Reshape', [merged, g.ints([0, 0, heads * headDim])], `${node}/context/Reshape`);
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
  if (d % numHeads !== 0) throw new CheckpointError(`vision embed dim ${d} is not divisible by ${numHeads} heads`);
  const patchLength = 3 * p * p;
  const g = new Graph('minicpmv_vision');
  const pixels = g.input('pixel_patches', 'float32', ['batch', 'n_patches', patchLength]);
  const posEmbed = g.input('pos_embed', 'float32', ['n_patches', d]);

  // 1. Patch embedding: the conv with kernel = stride = p is a MatMul over patchified pixels.
  const convWeight = readWeight(source, `${prefix}patch_embed.proj.weight`, [d, 3, p, p]);
  const convT = g.weight(`${prefix}patch_embed.proj.weight.T`, transpose(convWeight, d, patchLength), [patchLength, d]);
  const convBias = g.weight(`${prefix}patch_embed.proj.bias`, readWeight(source, `${prefix}patch_embed.proj.bias`, [d]), [d]);
  const projected = g.op('MatMul', [pixels, convT], '/vision/patch_embed/proj/MatMul');
  const patchEmbed = g.op('Add', [projected, convBias], '/vision/patch_embed/proj/Add');
  let x = g.op('Add', [patchEmbed, posEmbed], '/vision/pos_embed/Add');

  // 2. Pre-norm transformer blocks.
  const headDim = d / numHeads;
  for (let i = 0; i < dims.depthUsed; i++) {
    const name = `${prefix}blocks.${i}`;
    const node = `/vision/blocks.${i}`;
    const normed1 = layerNorm(g, x, source, `${name}.norm1`, d, normEps, `${node}/norm1`);
    const qkv = linear(g, normed1, source, `${name}.attn.qkv.weight`, { in: d, out: 3 * d, bias: true }, `${node}/attn/qkv`);
    const [q, k, v] = g.node('Split', [qkv, g.ints([d, d, d])], { name: `${node}/attn/qkv/Split`, attrs: { axis: -1 }, outputs: 3 });
    const context = attention(g, { q: q!, k: k!, v: v!, qRank: 3 }, numHeads, headDim, 'multiply', `${node}/attn`);
    const attnOut = linear(g, context, source, `${name}.attn.proj.weight`, { in: d, out: d, bias: true }, `${node}/attn/proj`);
    x = g.op('Add', [x, attnOut], `${node}/attn/residual/Add`);

    const normed2 = layerNorm(g, x, source, `${name}.norm2`, d, normEps, `${node}/norm2`);
    const hidden = linear(g, normed2, source, `${name}.mlp.fc1.weight`, { in: d, out: mlpHidden, bias: true }, `${node}/mlp/fc1`);
    const activated = g.op('Gelu', [hidden], `${node}/mlp/act/Gelu`, { approximate: 'none' });
    const mlpOut = linear(g, activated, source, `${name}.mlp.fc2.weight`, { in: mlpHidden, out: d, bias: true }, `${node}/mlp/fc2`);
    x = g.op('Add', [x, mlpOut], `${node}/mlp/residual/Add`);
  }

  // 3. Final norm.
  const features = layerNorm(g, x, source, `${prefix}norm`, d, normEps, '/vision/norm');
  g.output(features, 'features', 'float32', ['batch', 'n_patches', d]);
  if (options.withPatchEmbed) g.output(patchEmbed, 'patch_embed', 'float32', ['batch', 'n_patches', d]);
  return g;
}

/** The stored position table `[gh·gw, d]` (`vpm.pos_embed` is [1, gh·gw, d]). */
export function readVisionPosEmbed(source: TensorSource, dims: VisionDims, prefix = 'vpm.'): Float32Array {
  return readWeight(source, `${prefix}pos_embed`, [1, dims.posGrid[0] * dims.posGrid[1], dims.embedDim]);
}
