// Graph pieces that several model families build from: checked weight reads, nn.Linear, nn.LayerNorm and
// multi-head scaled dot-product attention.

import type { TensorSource } from '../../checkpoint/safetensors.js';
import { readWeight } from './vision-dims.js';
import { Graph, f } from '../../graph/builder.js';
import { dynamicQuantizeMatMul, matMulNBits, quantizeColumnsInt8, quantizeMatrix, quantizeOptionsFor, type WeightPrecision } from '../../graph/quantize.js';

export { readWeight, vitDims, type VisionDims } from './vision-dims.js';

/** Transposes a row-major [rows, cols] matrix (a torch Linear weight [out, in] becomes a MatMul operand [in, out]). */
export function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c]!;
  return out;
}

/** How one torch nn.Linear is built: its sizes, whether it has a bias, and how its weight is kept (default fp32). */
export interface LinearSpec {
  in: number;
  out: number;
  bias: boolean;
  precision?: WeightPrecision;
}

/** torch nn.Linear `<weightName>` (its bias beside it as `….bias`), read from the checkpoint; see `linearFromWeights`. */
export function linear(g: Graph, x: string, source: TensorSource, weightName: string, spec: LinearSpec, node: string): string {
  const weight = readWeight(source, weightName, [spec.out, spec.in]);
  const biasName = weightName.replace(/weight$/, 'bias');
  const bias = spec.bias ? { name: biasName, data: readWeight(source, biasName, [spec.out]) } : null;
  return linearFromWeights(g, x, { name: weightName, data: weight }, bias, spec, node);
}

/**
 * torch nn.Linear from a weight [out, in] already in memory (the caller may have assembled it, e.g. a fused bias):
 *
 *   fp32:        x [.., in] ── MatMul(Wᵀ [in, out]) ───────────── Add(b) ──► [.., out]   (Add only with a bias)
 *   int8 / int4: x [.., in] ── MatMulNBits(W [out, in] in blocks) ── Add(b) ──► [.., out]   (src/graph/quantize.ts)
 *   int8-dq:     x [.., in] ── DynamicQuantizeMatMul(W int8 [in, out], per-column scales, b) ──► [.., out]
 * The quantised weight is made here, tensor by tensor, so a model never holds more than one layer's float32 copy.
 */
export function linearFromWeights(
  g: Graph,
  x: string,
  weight: { name: string; data: Float32Array },
  bias: { name: string; data: Float32Array } | null,
  spec: LinearSpec,
  node: string,
): string {
  const precision = spec.precision ?? 'fp32';
  let y: string;
  if (precision === 'fp32') {
    const w = transpose(weight.data, spec.out, spec.in);
    y = g.op('MatMul', [x, g.weight(`${weight.name}.T`, w, [spec.in, spec.out])], `${node}/MatMul`);
  } else if (precision === 'int8-dq') {
    const q = quantizeColumnsInt8(weight.data, spec.out, spec.in);
    return dynamicQuantizeMatMul(g, x, q, weight.name, node, bias ? g.weight(bias.name, bias.data, [spec.out]) : undefined);
  } else {
    y = matMulNBits(g, x, quantizeMatrix(weight.data, spec.out, spec.in, quantizeOptionsFor(precision)), weight.name, node);
  }
  if (!bias) return y;
  return g.op('Add', [y, g.weight(bias.name, bias.data, [spec.out])], `${node}/Add`);
}

/**
 * Several torch nn.Linear layers on the same input as one (e.g. separate q/k/v projections): the weights [out_i, in]
 * (and biases) are stacked in the given order, so fp32 and quantised rows are those of the separate layers.
 *
 *   x [.., in] ── linearFromWeights(W [Σ out_i, in], b) ── Split(-1, out_i) ──► [.., out_0], [.., out_1], …
 */
export function fusedLinears(
  g: Graph,
  x: string,
  source: TensorSource,
  weightNames: readonly string[],
  spec: { in: number; outs: readonly number[]; bias: boolean; precision?: WeightPrecision },
  fusedName: string,
  node: string,
): string[] {
  const total = spec.outs.reduce((sum, out) => sum + out, 0);
  const weight = new Float32Array(total * spec.in);
  const bias = spec.bias ? new Float32Array(total) : null;
  let row = 0;
  weightNames.forEach((name, i) => {
    const out = spec.outs[i]!;
    weight.set(readWeight(source, name, [out, spec.in]), row * spec.in);
    bias?.set(readWeight(source, name.replace(/weight$/, 'bias'), [out]), row);
    row += out;
  });
  const y = linearFromWeights(
    g, x, { name: `${fusedName}.weight`, data: weight }, bias && { name: `${fusedName}.bias`, data: bias },
    { in: spec.in, out: total, bias: spec.bias, precision: spec.precision }, node,
  );
  return g.node('Split', [y, g.ints([...spec.outs])], { name: `${node}/Split`, attrs: { axis: -1 }, outputs: spec.outs.length });
}

/**
 * A torch Conv2d(3 → d, kernel = stride = p) `<name>.weight` [d, 3, p, p] (+ `<name>.bias`) over patchified pixels
 * (parts/position-embedding.ts `patchify`: each row in the weight's (channel, ky, kx) order):
 *
 *   pixel_patches [.., 3·p·p] ── MatMul(Wᵀ [3·p·p, d]) ── Add(b) ──► [.., d]
 */
export function patchEmbedding(g: Graph, patches: string, source: TensorSource, name: string, d: number, p: number, node: string): string {
  const patchLength = 3 * p * p;
  const weight = readWeight(source, `${name}.weight`, [d, 3, p, p]);
  const weightT = g.weight(`${name}.weight.T`, transpose(weight, d, patchLength), [patchLength, d]);
  const bias = g.weight(`${name}.bias`, readWeight(source, `${name}.bias`, [d]), [d]);
  return g.op('Add', [g.op('MatMul', [patches, weightT], `${node}/MatMul`), bias], `${node}/Add`);
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
