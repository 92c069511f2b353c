// The gated delta-net linear-attention layer of Qwen3.5 (transformers 5.18 `modeling_qwen3_5.py:
// Qwen3_5GatedDeltaNet`) as graph pieces for the decoder (./decoder.ts), with its state on the host:
//   past_conv_i      [b, conv_dim, K−1]  the last K−1 inputs of the causal conv (pre-conv channels)
//   past_recurrent_i [b, Hv, dk, dv]     the delta-rule state S of each value head
// Both are read as inputs and come back whole as outputs (conv_i, recurrent_i): they do not grow with the sequence
// (for MiniCPM-V 4.6, 1 MiB + 72 KiB per layer and row).
//
// One run treats its s new positions as ONE chunk of the chunked delta rule (upstream
// `torch_chunk_gated_delta_rule`, whose chunks are 64 positions long), so the graph needs no Loop or Scan: the
// host runs a long prompt in parts of at most `chunk` positions (a decode step, s = 1, takes the recurrence; below).
// Per run, per head, with c = cumsum(g) and D[i,j] = exp(c_i − c_j) for j ≤ i (else 0):
//   A   = strictly lower part of (β·k kᵀ) ⊙ D              T = (I + A)⁻¹   (unit lower triangular)
//   U   = T (β·v)        W = T (β·k ⊙ exp(c))              v' = U − W S₀
//   o   = (q ⊙ exp(c)) S₀ + ((q kᵀ) ⊙ D) v'                 S₁ = S₀·exp(c_last) + (k ⊙ exp(c_last − c))ᵀ v'
// which is the recurrence S ← S·exp(g_t); δ = β_t (v_t − Sᵀk_t); S ← S + k_t δᵀ; o_t = Sᵀq_t, step by step.
// T is found by block inversion (unitLowerInverse), as stable as the forward substitution of
// `torch.linalg.solve_triangular` (a series Σ(−A)ⁿ of matrix powers is not: with keys of pairwise cosine 0.5 its
// float32 error reached 68 where the inverse's entries are ≤ 1); a run of s positions pads A to the chunk length.
// A run of one position (a decode step) takes the recurrence itself instead, as upstream does with a cache
// (`torch_recurrent_gated_delta_rule`): an If on s picks the branch.
// Why one chunk per run, measured with onnxruntime-node 1.30 on this CPU (1 thread, MiniCPM-V 4.6 layer sizes, per-
// node profile; the machine was shared, so figures vary by 2×): a one-position run through the chunked form spent
// ~2 ms per layer on the delta rule and the conv besides the projections, a run of 64 positions ~0.15–0.3 ms per
// position. A Scan over positions repeats the one-position work (reading and writing the whole [Hv, dk, dv] state)
// at every position, so on a 2000-token prompt it would cost ~10× more there; the chunked form turns it into [s, s]
// and [s, dk] matrix products. Runs of 64 and 128 positions cost about the same per position (the delta rule's share of a run grows
// from ~20 % to ~25 %; 32 was slower); 64 is upstream's chunk length, so the runs also split a prompt where it does.

import { f } from '../../graph/builder.js';
import type { DecoderParts } from './decoder.js';
import { convChannels, type DecoderDims, type LinearAttentionDims } from './decoder-dims.js';

export { convChannels, DEFAULT_LINEAR_CHUNK, linearStateShapes } from './decoder-dims.js';

/** The tensors of one linear-attention layer (`<weights>` = `…layers.<i>.linear_attn`) with their shapes. */
export function gatedDeltaNetWeightShapes(dims: DecoderDims, weights: string): Map<string, number[]> {
  const l = dims.linearAttention!;
  const d = dims.hiddenSize;
  const values = l.numValueHeads * l.valueHeadDim;
  return new Map<string, number[]>([
    [`${weights}.in_proj_qkv.weight`, [convChannels(l), d]],
    [`${weights}.in_proj_z.weight`, [values, d]],
    [`${weights}.in_proj_b.weight`, [l.numValueHeads, d]],
    [`${weights}.in_proj_a.weight`, [l.numValueHeads, d]],
    [`${weights}.conv1d.weight`, [convChannels(l), 1, l.convKernel]],
    [`${weights}.dt_bias`, [l.numValueHeads]],
    [`${weights}.A_log`, [l.numValueHeads]],
    [`${weights}.norm.weight`, [l.valueHeadDim]],
    [`${weights}.out_proj.weight`, [d, values]],
  ]);
}

/** A large end for Slice (to the end of the axis). */
const TO_END = Number.MAX_SAFE_INTEGER;

/** Where one linear-attention layer lives: node names, checkpoint names, and the most positions per run. */
export interface LinearLayerPlace {
  node: string;
  weights: string;
  chunk: number;
}

/**
 * One gated delta-net layer (upstream `Qwen3_5GatedDeltaNet.forward` with a cache), on x = input_layernorm(h):
 *
 *   x ─┬─ in_proj_qkv ─► [b,s,C] ─┐  past_conv [b,C,K−1] ─ Transpose ─┐
 *      │                          └────────────────────────── Concat(time) ─┬─ last K−1 ─ Transpose ─► conv_i
 *      │                                  Σ_k tap_k ⊙ Slice[k, k+s) ─ SiLU ─┘ (depthwise causal conv1d, no bias)
 *      │     ─ Split ─► q, k [b,s,Hk,dk] ─ L2 norm (q also × dk^-½) ─ repeat to Hv heads* ─┐
 *      │              └► v [b,s,Hv,dv] ────────────────────────────────────────────────────┤
 *      ├─ in_proj_b ─ Sigmoid ─► β [b,Hv,s]                                                 ├─ delta rule (deltaRule) ──────┬─► recurrent_i
 *      ├─ in_proj_a ─ Add dt_bias ─ Softplus ─ Mul −exp(A_log) ─► g [b,Hv,s] ──────────────┘   past_recurrent [b,Hv,dk,dv] ┘
 *      └─ in_proj_z ─ SiLU ─► gate                      o [b,Hv,s,dv] ─ Transpose ─ RMSNorm(norm.weight, over dv) ─ Mul gate
 *                                                                                 ─ Reshape [b,s,Hv·dv] ─ out_proj ─► output
 *   * only when Hv > Hk (upstream `repeat_interleave`); the norm's weight is NOT zero-centred (Qwen3_5RMSNormGated).
 */
export function gatedDeltaNet(
  parts: DecoderParts,
  place: LinearLayerPlace,
  x: string,
  past: { conv: string; recurrent: string },
): { output: string; conv: string; recurrent: string } {
  const { g, dims, source } = parts;
  const l = dims.linearAttention!;
  const { node, weights } = place;
  const channels = convChannels(l);
  const keys = l.numKeyHeads * l.keyHeadDim;
  const values = l.numValueHeads * l.valueHeadDim;
  const taps = l.convKernel;

  const qkv = parts.linear(x, `${weights}.in_proj_qkv.weight`, `${node}/in_proj_qkv`);
  const z = parts.linear(x, `${weights}.in_proj_z.weight`, `${node}/in_proj_z`);
  const b = parts.linear(x, `${weights}.in_proj_b.weight`, `${node}/in_proj_b`);
  const a = parts.linear(x, `${weights}.in_proj_a.weight`, `${node}/in_proj_a`);

  // 1. The causal conv over [past | new] along time, tap k of channel c being conv1d.weight[c, 0, k].
  const pastTime = g.op('Transpose', [past.conv], `${node}/conv/past/Transpose`, { perm: [0, 2, 1] });
  const full = g.op('Concat', [pastTime, qkv], `${node}/conv/Concat`, { axis: 1 });
  const kept = g.op('Slice', [full, g.ints([-(taps - 1)]), g.ints([TO_END]), g.ints([1])], `${node}/conv/state/Slice`);
  const conv = g.op('Transpose', [kept], `${node}/conv/state/Transpose`, { perm: [0, 2, 1] });
  const stored = source.float32(`${weights}.conv1d.weight`);
  let sum = '';
  for (let k = 0; k < taps; k++) {
    const tap = new Float32Array(channels);
    for (let c = 0; c < channels; c++) tap[c] = stored[c * taps + k]!;
    const end = k === taps - 1 ? TO_END : k - (taps - 1);
    const window = g.op('Slice', [full, g.ints([k]), g.ints([end]), g.ints([1])], `${node}/conv/tap${k}/Slice`);
    const term = g.op('Mul', [window, g.weight(`${weights}.conv1d.weight[:,0,${k}]`, tap, [channels])], `${node}/conv/tap${k}/Mul`);
    sum = k === 0 ? term : g.op('Add', [sum, term], `${node}/conv/tap${k}/Add`);
  }
  const mixed = g.op('Mul', [sum, g.op('Sigmoid', [sum], `${node}/conv/act/Sigmoid`)], `${node}/conv/act/Mul`);

  // 2. Heads: q, k L2-normalised (x · rsqrt(Σx² + 1e-6), upstream `l2norm`) and q × dk^-½. As an RMSNorm over dk:
  //    x · rsqrt(Σx² + ε) = x · rsqrt(mean(x²) + ε/dk) / √dk, so the scale is 1/√dk for k and 1/dk for q.
  const [qFlat, kFlat, vFlat] = g.node('Split', [mixed, g.ints([keys, keys, values])], { name: `${node}/qkv/Split`, attrs: { axis: 2 }, outputs: 3 }) as [
    string,
    string,
    string,
  ];
  const l2 = (t: string, scale: number, name: string) => {
    const heads = g.op('Reshape', [t, g.ints([0, 0, l.numKeyHeads, l.keyHeadDim])], `${node}/${name}/heads/Reshape`);
    const normed = g.op('SimplifiedLayerNormalization', [heads, g.constant('float32', [l.keyHeadDim], new Array<number>(l.keyHeadDim).fill(scale))], `${node}/${name}/l2norm`, {
      axis: -1,
      epsilon: f(1e-6 / l.keyHeadDim),
      stash_type: 1,
    });
    return repeatHeads(parts, normed, l, `${node}/${name}`);
  };
  const toHeadMajor = (t: string, name: string) => g.op('Transpose', [t], `${node}/${name}/Transpose`, { perm: [0, 2, 1, 3] });
  const q = toHeadMajor(l2(qFlat, 1 / l.keyHeadDim, 'q'), 'q');
  const k = toHeadMajor(l2(kFlat, 1 / Math.sqrt(l.keyHeadDim), 'k'), 'k');
  const v = toHeadMajor(g.op('Reshape', [vFlat, g.ints([0, 0, l.numValueHeads, l.valueHeadDim])], `${node}/v/heads/Reshape`), 'v');

  // 3. β = sigmoid(b) and the log decay g = −exp(A_log) · softplus(a + dt_bias), per value head, head-major.
  const beta = g.op('Transpose', [g.op('Sigmoid', [b], `${node}/beta/Sigmoid`)], `${node}/beta/Transpose`, { perm: [0, 2, 1] });
  const dtBias = g.weight(`${weights}.dt_bias`, source.float32(`${weights}.dt_bias`), [l.numValueHeads]);
  const negA = source.float32(`${weights}.A_log`).map((v) => -Math.exp(v));
  const softplus = g.op('Softplus', [g.op('Add', [a, dtBias], `${node}/decay/Add`)], `${node}/decay/Softplus`);
  const logDecay = g.op('Mul', [softplus, g.weight(`${weights}.-exp(A_log)`, negA, [l.numValueHeads])], `${node}/decay/Mul`);
  const decay = g.op('Transpose', [logDecay], `${node}/decay/Transpose`, { perm: [0, 2, 1] });

  const rule = deltaRule(parts, `${node}/delta_rule`, { q, k, v, beta, decay, state: past.recurrent }, place.chunk);

  // 4. RMSNormGated over dv (weight as stored) × silu(z), then out_proj.
  const o = g.op('Transpose', [rule.output], `${node}/out/Transpose`, { perm: [0, 2, 1, 3] });
  const normed = parts.rmsNorm(o, `${weights}.norm.weight`, `${node}/norm`, l.valueHeadDim, false);
  const zHeads = g.op('Reshape', [z, g.ints([0, 0, l.numValueHeads, l.valueHeadDim])], `${node}/z/Reshape`);
  const gate = g.op('Mul', [zHeads, g.op('Sigmoid', [zHeads], `${node}/z/Sigmoid`)], `${node}/z/Mul`);
  const gated = g.op('Mul', [normed, gate], `${node}/gate/Mul`);
  const flat = g.op('Reshape', [gated, g.ints([0, 0, values])], `${node}/out/Reshape`);
  return { output: parts.linear(flat, `${weights}.out_proj.weight`, `${node}/out_proj`), conv, recurrent: rule.state };
}

/**
 * Key heads repeated for the value heads they serve (upstream `repeat_interleave(Hv/Hk, dim=2)`: key head j serves
 * value heads j·r … j·r + r − 1):  [b,s,Hk,dk] ─ Unsqueeze(3) ─ Expand r ─ Reshape ─► [b,s,Hv,dk]. Nothing when Hv = Hk.
 */
function repeatHeads(parts: DecoderParts, t: string, l: LinearAttentionDims, node: string): string {
  const { g } = parts;
  const repeats = l.numValueHeads / l.numKeyHeads;
  if (repeats === 1) return t;
  const column = g.op('Unsqueeze', [t, g.ints([3])], `${node}/repeat/Unsqueeze`);
  const expanded = g.op('Expand', [column, g.ints([1, 1, 1, repeats, 1])], `${node}/repeat/Expand`);
  return g.op('Reshape', [expanded, g.ints([0, 0, l.numValueHeads, l.keyHeadDim])], `${node}/repeat/Reshape`);
}

/** The graph values the delta rule reads: q, k [b,H,s,dk], v [b,H,s,dv], β and g [b,H,s], the state S₀ [b,H,dk,dv]. */
interface DeltaRuleInputs {
  q: string;
  k: string;
  v: string;
  beta: string;
  decay: string;
  state: string;
}

/**
 * The delta rule over the run's s positions: an If on s = 1 (a decode step) takes the recurrence itself
 * (deltaRuleStep), any other s the chunked form (deltaRuleChunk). Returns o [b,H,s,dv] and S₁ [b,H,dk,dv].
 */
function deltaRule(parts: DecoderParts, node: string, t: DeltaRuleInputs, chunk: number): { output: string; state: string } {
  const { g } = parts;
  const single = g.op('Equal', [g.op('Shape', [t.decay], `${node}/seq/Shape`, { start: 2, end: 3 }), g.ints([1])], `${node}/single/Equal`);
  const outputs = [{ type: 'float32', rank: 4 }, { type: 'float32', rank: 4 }] as const;
  const pair = (rule: { output: string; state: string }) => [rule.output, rule.state];
  const [output, state] = g.node('If', [single], {
    name: `${node}/If`,
    attrs: {
      then_branch: g.subgraph(`${node}/step`, outputs, () => pair(deltaRuleStep(parts, `${node}/step`, t))),
      else_branch: g.subgraph(`${node}/chunk`, outputs, () => pair(deltaRuleChunk(parts, `${node}/chunk`, t, chunk))),
    },
    outputs: 2,
  }) as [string, string];
  return { output, state };
}

/**
 * One position (upstream `torch_recurrent_gated_delta_rule`'s step), all heads at once:
 *   S = S₀ · exp(g);   δ = β · (v − k·S);   S₁ = S + kᵀ·δ;   o = q·S₁
 */
function deltaRuleStep(parts: DecoderParts, node: string, t: DeltaRuleInputs): { output: string; state: string } {
  const { g } = parts;
  const column = (x: string, name: string) => g.op('Unsqueeze', [x, g.ints([3])], `${node}/${name}/Unsqueeze`);
  const decayed = g.op('Mul', [t.state, column(g.op('Exp', [t.decay], `${node}/decay/Exp`), 'decay')], `${node}/decay/Mul`);
  const recalled = g.op('MatMul', [t.k, decayed], `${node}/recall/MatMul`);
  const delta = g.op('Mul', [g.op('Sub', [t.v, recalled], `${node}/delta/Sub`), column(t.beta, 'beta')], `${node}/delta/Mul`);
  const update = g.op('FusedMatMul', [t.k, delta], `${node}/update/FusedMatMul`, { transA: 1 }, 'com.microsoft');
  const state = g.op('Add', [decayed, update], `${node}/state/Add`);
  return { output: g.op('MatMul', [t.q, state], `${node}/output/MatMul`), state };
}

/**
 * The delta rule over one chunk of s > 1 positions from the state S₀ (see the file header), all heads at once:
 *
 *   g [b,H,s] ─ CumSum ─► c ─┬─ Sub(cᵢ − cⱼ) ─ Exp ─ Trilu(lower) ─► D [b,H,s,s]
 *                            └─ Exp ─► e
 *   (β·k) kᵀ ⊙ D ─ Trilu(strictly lower) ─► A ─ unitLowerInverse ─► T
 *   T · [β·v | β·k ⊙ e] ─ Split ─► U, W;   v' = U − W·S₀
 *   o  = (q ⊙ e)·S₀ + ((q kᵀ) ⊙ D)·v'
 *   S₁ = S₀ ⊙ exp(c_last) + (k ⊙ exp(c_last − c))ᵀ·v'
 */
function deltaRuleChunk(parts: DecoderParts, node: string, t: DeltaRuleInputs, chunk: number): { output: string; state: string } {
  const { g, dims } = parts;
  const l = dims.linearAttention!;
  const column = (x: string, name: string) => g.op('Unsqueeze', [x, g.ints([3])], `${node}/${name}/Unsqueeze`);
  const c = g.op('CumSum', [t.decay, g.constant('int64', [], [2n])], `${node}/CumSum`);
  const pairwise = g.op('Sub', [column(c, 'c_i'), g.op('Unsqueeze', [c, g.ints([2])], `${node}/c_j/Unsqueeze`)], `${node}/pairwise/Sub`);
  // Above the diagonal cᵢ − cⱼ > 0 may overflow Exp to +inf; Trilu replaces those entries by 0 (no product with inf).
  const decayMatrix = g.op('Trilu', [g.op('Exp', [pairwise], `${node}/pairwise/Exp`)], `${node}/pairwise/Trilu`, { upper: 0 });
  const betaColumn = column(t.beta, 'beta');
  const kBeta = g.op('Mul', [t.k, betaColumn], `${node}/k_beta/Mul`);
  const vBeta = g.op('Mul', [t.v, betaColumn], `${node}/v_beta/Mul`);
  const growth = column(g.op('Exp', [c], `${node}/c/Exp`), 'growth');

  const kk = g.op('FusedMatMul', [kBeta, t.k], `${node}/kk/FusedMatMul`, { transB: 1 }, 'com.microsoft');
  const weighted = g.op('Mul', [kk, decayMatrix], `${node}/kk/Mul`);
  const strict = g.op('Trilu', [weighted, g.constant('int64', [], [-1n])], `${node}/kk/Trilu`, { upper: 0 });
  const rhs = g.op('Concat', [vBeta, g.op('Mul', [kBeta, growth], `${node}/k_cumdecay/Mul`)], `${node}/rhs/Concat`, { axis: -1 });
  const solved = g.op('MatMul', [unitLowerInverse(parts, strict, chunk, `${node}/inverse`), rhs], `${node}/solve/MatMul`);
  const [u, w] = g.node('Split', [solved, g.ints([l.valueHeadDim, l.keyHeadDim])], { name: `${node}/solve/Split`, attrs: { axis: 3 }, outputs: 2 }) as [
    string,
    string,
  ];
  const fresh = g.op('Sub', [u, g.op('MatMul', [w, t.state], `${node}/v_new/MatMul`)], `${node}/v_new/Sub`);

  const qk = g.op('FusedMatMul', [t.q, t.k], `${node}/qk/FusedMatMul`, { transB: 1 }, 'com.microsoft');
  const intra = g.op('Mul', [qk, decayMatrix], `${node}/qk/Mul`);
  const fromPast = g.op('MatMul', [g.op('Mul', [t.q, growth], `${node}/q_decay/Mul`), t.state], `${node}/inter/MatMul`);
  const output = g.op('Add', [fromPast, g.op('MatMul', [intra, fresh], `${node}/intra/MatMul`)], `${node}/output/Add`);

  const last = g.op('Slice', [c, g.ints([-1]), g.ints([TO_END]), g.ints([2])], `${node}/c_last/Slice`);
  const keyDecay = column(g.op('Exp', [g.op('Sub', [last, c], `${node}/key_decay/Sub`)], `${node}/key_decay/Exp`), 'key_decay');
  const kDecayed = g.op('Mul', [t.k, keyDecay], `${node}/key_decay/Mul`);
  const update = g.op('FusedMatMul', [kDecayed, fresh], `${node}/update/FusedMatMul`, { transA: 1 }, 'com.microsoft');
  const kept = g.op('Mul', [t.state, column(g.op('Exp', [last], `${node}/chunk_decay/Exp`), 'chunk_decay')], `${node}/state/Mul`);
  return { output, state: g.op('Add', [kept, update], `${node}/state/Add`) };
}

/**
 * (I + A)⁻¹ for A [b,H,s,s] strictly lower triangular, s ≤ n = chunk (a power of two), by block inversion: A is
 * padded to [n, n] (the inverse of the padded matrix holds the wanted one in its top-left corner); starting from
 * the diagonal blocks of size 1 (inverses 1), each level joins pairs of diagonal blocks:
 *
 *   [ T₁₁  0  ]⁻¹   [  T₁₁⁻¹             0    ]        T₂₁ = A's block below T₁₁ (a Gather of constant indices
 *   [ T₂₁ T₂₂ ]   = [ −T₂₂⁻¹ T₂₁ T₁₁⁻¹   T₂₂⁻¹ ]        from the flattened matrix)
 *
 *   inverses [B, n/m, m, m] ─ Reshape [B, n/2m, 2m, m] ─ Split ─► T₁₁⁻¹, T₂₂⁻¹ ─ MatMul, MatMul, Neg ─► lower-left
 *   ─ Pad / Concat ─► [B, n/2m, 2m, 2m]          (m = 1, 2, 4, …, n/2), then Reshape [b,H,n,n] ─ Slice [:s, :s]
 */
function unitLowerInverse(parts: DecoderParts, a: string, n: number, node: string): string {
  const { g } = parts;
  if (!Number.isInteger(Math.log2(n)) || n < 1) throw new Error(`the linear-attention chunk ${n} is not a power of two`);
  const size = g.op('Shape', [a], `${node}/size/Shape`, { start: 3, end: 4 });
  const missing = g.op('Sub', [g.ints([n]), size], `${node}/pad/Sub`);
  const pads = g.op('Concat', [g.ints([0, 0, 0, 0, 0, 0]), missing, missing], `${node}/pads/Concat`, { axis: 0 });
  const padded = g.op('Pad', [a, pads], `${node}/Pad`, { mode: 'constant' });
  const flat = g.op('Reshape', [padded, g.ints([-1, n * n])], `${node}/flat/Reshape`);
  const rows = g.op('Shape', [flat], `${node}/rows/Shape`, { start: 0, end: 1 });
  const ones = g.op('Concat', [rows, g.ints([n, 1, 1])], `${node}/ones/Concat`, { axis: 0 });
  let inverses = g.op('Expand', [g.constant('float32', [1, 1, 1, 1], [1]), ones], `${node}/ones/Expand`);
  for (let m = 1; m < n; m *= 2) {
    const level = `${node}/level${m}`;
    const pairs = n / (2 * m);
    const stacked = g.op('Reshape', [inverses, g.ints([-1, pairs, 2 * m, m])], `${level}/Reshape`);
    const [upper, lower] = g.node('Split', [stacked, g.ints([m, m])], { name: `${level}/Split`, attrs: { axis: 2 }, outputs: 2 }) as [string, string];
    const indices: bigint[] = [];
    for (let p = 0; p < pairs; p++) {
      for (let r = 0; r < m; r++) for (let col = 0; col < m; col++) indices.push(BigInt(((2 * p + 1) * m + r) * n + 2 * p * m + col));
    }
    const below = g.op('Gather', [flat, g.constant('int64', [pairs, m, m], indices)], `${level}/Gather`, { axis: 1 });
    const product = g.op('MatMul', [g.op('MatMul', [lower, below], `${level}/MatMul`), upper], `${level}/MatMul_1`);
    const corner = g.op('Neg', [product], `${level}/Neg`);
    const top = g.op('Pad', [upper, g.ints([0, 0, 0, 0, 0, 0, 0, m])], `${level}/Pad`, { mode: 'constant' });
    const bottom = g.op('Concat', [corner, lower], `${level}/Concat`, { axis: 3 });
    inverses = g.op('Concat', [top, bottom], `${level}/Concat_1`, { axis: 2 });
  }
  const square = g.op('Reshape', [inverses, g.op('Shape', [padded], `${node}/square/Shape`)], `${node}/square/Reshape`);
  const ends = g.op('Concat', [size, size], `${node}/ends/Concat`, { axis: 0 });
  return g.op('Slice', [square, g.ints([0, 0]), ends, g.ints([2, 3])], `${node}/Slice`);
}
