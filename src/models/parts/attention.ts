// The full-attention layer of the decoder graph (./decoder.ts) with its host-side key/value cache: rotary tables,
// the causal/sliding bias split between the cache buffer and the new positions, grouped heads, and the options of
// the families (q/k/v biases, per-head q/k RMSNorm, partial rotary dims, a sigmoid output gate).

import { f } from '../../graph/builder.js';
import { ATTENTION_MASKED, headDim, type DecoderDims, type DecoderParts } from './decoder.js';

/** The tensors of one full-attention layer (`<weights>` = `…layers.<i>.self_attn`) with their shapes. */
export function attentionWeightShapes(dims: DecoderDims, weights: string): Map<string, number[]> {
  const { hiddenSize: d, numHeads: h, numKvHeads: kvh } = dims;
  const hd = headDim(dims);
  const queryRows = h * hd * (dims.attentionOutputGate ? 2 : 1);
  const shapes = new Map<string, number[]>([
    [`${weights}.q_proj.weight`, [queryRows, d]],
    [`${weights}.k_proj.weight`, [kvh * hd, d]],
    [`${weights}.v_proj.weight`, [kvh * hd, d]],
    [`${weights}.o_proj.weight`, [d, h * hd]],
  ]);
  if (dims.attentionBias) {
    shapes.set(`${weights}.q_proj.bias`, [queryRows]);
    shapes.set(`${weights}.k_proj.bias`, [kvh * hd]);
    shapes.set(`${weights}.v_proj.bias`, [kvh * hd]);
  }
  if (dims.qkNorm) {
    shapes.set(`${weights}.q_norm.weight`, [hd]);
    shapes.set(`${weights}.k_norm.weight`, [hd]);
  }
  return shapes;
}

interface SplitBias {
  /** [b, 1, s, C]: the host's bias over the P cached positions, then ATTENTION_MASKED. */
  past: string;
  /** [b, 1, s, s]: the host's bias over the new positions. */
  fresh: string;
  /** [C, s], 1-D int64: where the softmax's output splits between the cache buffer and the new positions. */
  split: string;
}

interface Rotary {
  cos: string;
  sin: string;
}

/** Query heads grouped by the key/value head they use (FullAttention.groupHeads). */
interface GroupedHeads {
  q: string;
  pastBias: string;
  freshBias: string;
  /** Keys or values [b,K,T,hd] as the grouped queries take them: [b,K,1,T,hd]. */
  kv: (t: string, node: string) => string;
  /** Context [b,K,r,s,hd] back to [b,H,s,hd]. */
  ungroup: (c: string) => string;
}

/**
 * Declares `position_ids` and `attention_bias`, builds what every full-attention layer shares (rotary cos/sin, the
 * bias split; `splitBias` once the first layer's past key exists), then one layer per `layer` call.
 */
export class FullAttention {
  private readonly hd: number;
  private readonly rotaryDims: number;
  private readonly positionIds: string;
  private readonly bias: string;
  private readonly rotary: Rotary;
  private split: SplitBias | null = null;

  constructor(private readonly parts: DecoderParts) {
    const { g, dims } = parts;
    this.hd = headDim(dims);
    this.rotaryDims = dims.rotaryDims ?? this.hd;
    this.positionIds = g.input('position_ids', 'int64', ['batch', 'seq']);
    const hostBias = g.input('attention_bias', 'float32', ['batch', 1, 'seq', 'total']);
    this.rotary = this.rotaryTables(this.positionIds);
    this.bias = dims.slidingWindow === undefined ? hostBias : this.slidingWindow(hostBias, this.positionIds, dims.slidingWindow);
  }

  /**
   * Self-attention with the host cache (upstream `MiniCPMAttention.forward`, `MistralAttention.forward`,
   * `Qwen3_5Attention.forward`; eager), in two parts so that the past is never copied: the past part reads the whole
   * cache buffer [b, K, C, hd] in place, and its slots [P, C) get the bias ATTENTION_MASKED (probability exactly 0):
   *
   *   x ─┬─ q_proj ─ Reshape [b,s,H,hd] ─ q_norm* ─ Transpose ─ RoPE ──────────────────► q
   *      ├─ k_proj ─ Reshape [b,s,K,hd] ─ k_norm* ─ Transpose ─ RoPE ─┬─ per group ──► keys_new    (and key_i)
   *      └─ v_proj ─ Reshape [b,s,K,hd] ────────── Transpose ─────────┴─ per group ──► values_new  (and value_i)
   *   past_key_i ─ per group ─► keys_past;  past_value_i ─ per group ─► values_past   (groupHeads: GQA without copies)
   *
   *   q ─┬─ FusedMatMul(keys_pastᵀ, α = 1/√hd) ─ Add past_bias [b,1,s,C] ─┐
   *      └─ FusedMatMul(keys_newᵀ,  α = 1/√hd) ─ Add new_bias  [b,1,s,s] ─ Concat(-1) ─ Softmax ─ Split [C, s] ─┐
   *   probs_past · values_past + probs_new · values_new ─► [b,H,s,hd] ─ Transpose ─ Reshape [b,s,H·hd] ─ × sigmoid(gate)* ─ o_proj
   *   * only when the dims ask for it. With the output gate, q_proj gives per head [query | gate] (Reshape [b,s,H,2hd], Split).
   * Fused replacement later: GroupQueryAttention (com.microsoft) for everything from the RoPE to the last MatMul;
   * with past_present_share_buffer it reads this very [b, K, capacity, hd] cache layout plus a per-row length.
   */
  layer(i: number, weights: string, x: string, pastKey: string, pastValue: string): { output: string; key: string; value: string } {
    const { g, dims } = this.parts;
    const { hd } = this;
    const bias = this.split;
    if (!bias) throw new Error('FullAttention.splitBias must run before the first layer');
    const node = `/llm/layers.${i}/attn`;
    const project = (name: string) => this.parts.linear(x, `${weights}.${name}.weight`, `${node}/${name}`, !!dims.attentionBias);
    const toHeads = (t: string, n: number, name: string) => g.op('Reshape', [t, g.ints([0, 0, n, hd])], `${node}/${name}/heads/Reshape`);
    const normed = (t: string, name: string) =>
      dims.qkNorm ? this.parts.rmsNorm(t, `${weights}.${name}.weight`, `${node}/${name}`, hd, !!dims.zeroCentredNorm) : t;
    const transposed = (t: string, name: string) => g.op('Transpose', [t], `${node}/${name}/heads/Transpose`, { perm: [0, 2, 1, 3] });

    let queryHeads: string;
    let gate: string | null = null;
    if (dims.attentionOutputGate) {
      const both = g.op('Reshape', [project('q_proj'), g.ints([0, 0, dims.numHeads, 2 * hd])], `${node}/q_proj/heads/Reshape`);
      const [query, gateHeads] = g.node('Split', [both, g.ints([hd, hd])], { name: `${node}/q_proj/gate/Split`, attrs: { axis: 3 }, outputs: 2 }) as [
        string,
        string,
      ];
      queryHeads = query;
      gate = g.op('Reshape', [gateHeads, g.ints([0, 0, dims.numHeads * hd])], `${node}/gate/Reshape`);
    } else {
      queryHeads = toHeads(project('q_proj'), dims.numHeads, 'q_proj');
    }
    const q = this.applyRotary(transposed(normed(queryHeads, 'q_norm'), 'q_proj'), `${node}/q_rotary`);
    const keyHeads = toHeads(project('k_proj'), dims.numKvHeads, 'k_proj');
    const key = this.applyRotary(transposed(normed(keyHeads, 'k_norm'), 'k_proj'), `${node}/k_rotary`);
    const value = transposed(toHeads(project('v_proj'), dims.numKvHeads, 'v_proj'), 'v_proj');

    const alpha = f(1 / Math.sqrt(hd));
    const group = this.groupHeads(q, bias, node);
    const scores = (keys: string, scoreBias: string, name: string) => {
      const raw = g.op('FusedMatMul', [group.q, keys], `${node}/scores/${name}/FusedMatMul`, { transB: 1, alpha }, 'com.microsoft');
      return g.op('Add', [raw, scoreBias], `${node}/scores/${name}/Add`);
    };
    const pastScores = scores(group.kv(pastKey, `${node}/key/past`), group.pastBias, 'past');
    const newScores = scores(group.kv(key, `${node}/key/new`), group.freshBias, 'new');
    const all = g.op('Concat', [pastScores, newScores], `${node}/scores/Concat`, { axis: -1 });
    const probs = g.op('Softmax', [all], `${node}/Softmax`, { axis: -1 });
    const [pastProbs, newProbs] = g.node('Split', [probs, bias.split], { name: `${node}/probs/Split`, attrs: { axis: -1 }, outputs: 2 }) as [
      string,
      string,
    ];
    const pastValues = group.kv(pastValue, `${node}/value/past`);
    const pastContext = g.op('MatMul', [pastProbs, pastValues], `${node}/context/past/MatMul`);
    const newContext = g.op('MatMul', [newProbs, group.kv(value, `${node}/value/new`)], `${node}/context/new/MatMul`);
    const context = group.ungroup(g.op('Add', [pastContext, newContext], `${node}/context/Add`));
    const merged = g.op('Transpose', [context], `${node}/context/Transpose`, { perm: [0, 2, 1, 3] });
    const flat = g.op('Reshape', [merged, g.ints([0, 0, dims.numHeads * hd])], `${node}/context/Reshape`);
    const gated = gate === null ? flat : g.op('Mul', [flat, g.op('Sigmoid', [gate], `${node}/gate/Sigmoid`)], `${node}/gate/Mul`);
    return { output: this.parts.linear(gated, `${weights}.o_proj.weight`, `${node}/o_proj`), key, value };
  }

  /**
   * Grouped-query attention: each key/value head serves r = numHeads/numKvHeads query heads, query head h using
   * key/value head ⌊h/r⌋ (upstream `repeat_kv`). Instead of repeating the keys and values r times (for the cache,
   * a copy of all of it at every step), the query heads are grouped by the key/value head they use, and the batched
   * MatMuls broadcast each key/value head over its group:
   *
   *   q [b,H,s,hd] ─ Reshape ─► [b,K,r,s,hd]      past/new bias [b,1,s,·] ─ Unsqueeze(1) ─► [b,1,1,s,·]
   *   keys, values [b,K,T,hd] ─ Unsqueeze(2) ─► [b,K,1,T,hd]
   *   context [b,K,r,s,hd] ─ Reshape ─► [b,H,s,hd]
   * With r = 1 (MiniCPM) nothing changes.
   */
  private groupHeads(q: string, bias: SplitBias, node: string): GroupedHeads {
    const { g, dims } = this.parts;
    const { hd } = this;
    const repeats = dims.numHeads / dims.numKvHeads;
    if (repeats === 1) return { q, pastBias: bias.past, freshBias: bias.fresh, kv: (t) => t, ungroup: (c) => c };
    const grouped = g.op('Reshape', [q, g.ints([0, dims.numKvHeads, repeats, -1, hd])], `${node}/q/group/Reshape`);
    const one = g.ints([1]);
    return {
      q: grouped,
      pastBias: g.op('Unsqueeze', [bias.past, one], `${node}/bias/past/Unsqueeze`),
      freshBias: g.op('Unsqueeze', [bias.fresh, one], `${node}/bias/new/Unsqueeze`),
      kv: (t, name) => g.op('Unsqueeze', [t, g.ints([2])], `${name}/group/Unsqueeze`),
      ungroup: (c) => g.op('Reshape', [c, g.ints([0, dims.numHeads, -1, hd])], `${node}/context/ungroup/Reshape`),
    };
  }

  /**
   * cos/sin of the rotary angles for every new position (upstream `MiniCPMRotaryEmbedding`, `MistralRotaryEmbedding`,
   * `Qwen3_5TextRotaryEmbedding` with text positions, float32), over the rotary dims r (= head_dim unless partial):
   *
   *   position_ids [b,s] ─ Cast f32 ─ Unsqueeze(-1) ─ Mul inv_freq [r/2] ─ Concat(f, f) ─┬─ Cos ─ Unsqueeze(1) ─► cos [b,1,s,r]
   *                                                                                      └─ Sin ─ Unsqueeze(1) ─► sin [b,1,s,r]
   * Fused replacement later: RotaryEmbedding (com.microsoft) with precomputed cos/sin caches.
   */
  private rotaryTables(positionIds: string): Rotary {
    const { g, dims } = this.parts;
    const node = '/llm/rotary';
    const r = this.rotaryDims;
    const half = r / 2;
    // inv_freq_k = 1 / θ^(2k/r), each step rounded to float32 as torch does it.
    const invFreq = Array.from({ length: half }, (_, k) => {
      const exponent = Math.fround((2 * k) / r);
      return Math.fround(1 / Math.fround(dims.ropeTheta ** exponent));
    });
    const positions = g.op('Cast', [positionIds], `${node}/Cast`, { to: 1 });
    const column = g.op('Unsqueeze', [positions, g.ints([-1])], `${node}/Unsqueeze`);
    const freqs = g.op('Mul', [column, g.constant('float32', [half], invFreq)], `${node}/Mul`);
    const angles = g.op('Concat', [freqs, freqs], `${node}/Concat`, { axis: -1 });
    const cos = g.op('Cos', [angles], `${node}/Cos`);
    const sin = g.op('Sin', [angles], `${node}/Sin`);
    return {
      cos: g.op('Unsqueeze', [cos, g.ints([1])], `${node}/cos/Unsqueeze`),
      sin: g.op('Unsqueeze', [sin, g.ints([1])], `${node}/sin/Unsqueeze`),
    };
  }

  /**
   * NeoX-style rotation (upstream `apply_rotary_pos_emb` + `rotate_half`): x·cos + [−x₂, x₁]·sin over halves of the
   * rotary dims r; with partial rotary the last head_dim − r dims pass unchanged.
   *
   *   x [b,h,s,hd] ─┬────────────────────────────────────── Mul cos ─┐
   *                 └─ Split(r/2) ─ x₁, x₂ ─ Concat(Neg x₂, x₁) ─ Mul sin ─ Add ─► x_rot
   *   partial:  x ─ Split [r, hd − r] ─► (rotation above on the first part) ─ Concat(x_rot, pass) ─► x_rot
   */
  private applyRotary(x: string, node: string): string {
    const { g } = this.parts;
    const { hd, rotaryDims: r } = this;
    let turned = x;
    let pass: string | null = null;
    if (r < hd) {
      [turned, pass] = g.node('Split', [x, g.ints([r, hd - r])], { name: `${node}/partial/Split`, attrs: { axis: 3 }, outputs: 2 }) as [
        string,
        string,
      ];
    }
    const [x1, x2] = g.node('Split', [turned, g.ints([r / 2, r / 2])], { name: `${node}/Split`, attrs: { axis: 3 }, outputs: 2 }) as [
      string,
      string,
    ];
    const negated = g.op('Neg', [x2], `${node}/Neg`);
    const rotated = g.op('Concat', [negated, x1], `${node}/Concat`, { axis: 3 });
    const withCos = g.op('Mul', [turned, this.rotary.cos], `${node}/Mul`);
    const withSin = g.op('Mul', [rotated, this.rotary.sin], `${node}/Mul_1`);
    const sum = g.op('Add', [withCos, withSin], `${node}/Add`);
    return pass === null ? sum : g.op('Concat', [sum, pass], `${node}/partial/Concat`, { axis: 3 });
  }

  /**
   * Mistral's sliding window over the host's causal bias (transformers 4.36 `_make_causal_mask` with
   * sliding_window, eager path, prefill and every decode step alike): the query at absolute position p also loses
   * the keys j ≤ p − window, so it sees exactly `window` keys, itself included. Cache slot j holds position j.
   *
   *   position_ids [b,s] ─ Unsqueeze(1, 3) ─► p [b,1,s,1] ─┐
   *   attention_bias ─ Shape[3:4] ─ Squeeze ─ Range(0, T) ─► j [T] ─ Sub(p, j) ─ GreaterOrEqual(window) ─┐
   *   attention_bias ───────────────────────────────────────────────────────── Where(·, MASKED, bias) ─► bias
   */
  private slidingWindow(bias: string, positionIds: string, window: number): string {
    const { g } = this.parts;
    const node = '/llm/sliding_window';
    const queries = g.op('Unsqueeze', [positionIds, g.ints([1, 3])], `${node}/query/Unsqueeze`);
    const total = g.op('Shape', [bias], `${node}/total/Shape`, { start: 3, end: 4 });
    const count = g.op('Squeeze', [total], `${node}/total/Squeeze`);
    const zero = g.constant('int64', [], [0n]);
    const one = g.constant('int64', [], [1n]);
    const keys = g.op('Range', [zero, count, one], `${node}/key/Range`);
    const distance = g.op('Sub', [queries, keys], `${node}/distance/Sub`);
    const outside = g.op('GreaterOrEqual', [distance, g.constant('int64', [], [BigInt(window)])], `${node}/GreaterOrEqual`);
    return g.op('Where', [outside, g.scalar(ATTENTION_MASKED), bias], `${node}/Where`);
  }

  /**
   * The attention bias in the two parts that each layer adds to its scores: the cached positions, padded with
   * ATTENTION_MASKED up to the capacity C of the cache buffers, and the new positions; and the split [C, s]:
   *
   *   attention_bias ─ Shape[3:4] ─► P+s ─┐
   *   inputs_embeds  ─ Shape[1:2] ─► s ── Sub ─► P                     past_key_0 ─ Shape[2:3] ─► C
   *   attention_bias ─ Split [P, s] (last axis) ─┬─ Pad(last axis by C − P, MASKED) ─► past [b,1,s,C]
   *                                              └──────────────────────────────────► fresh [b,1,s,s]
   */
  splitBias(embeds: string, pastKey: string): void {
    const { g } = this.parts;
    const node = '/llm/attention_bias';
    const total = g.op('Shape', [this.bias], `${node}/total/Shape`, { start: 3, end: 4 });
    const fresh = g.op('Shape', [embeds], `${node}/seq/Shape`, { start: 1, end: 2 });
    const cached = g.op('Sub', [total, fresh], `${node}/past/Sub`);
    const capacity = g.op('Shape', [pastKey], `${node}/capacity/Shape`, { start: 2, end: 3 });
    const parts = g.op('Concat', [cached, fresh], `${node}/parts/Concat`, { axis: 0 });
    const [past, freshBias] = g.node('Split', [this.bias, parts], { name: `${node}/Split`, attrs: { axis: 3 }, outputs: 2 }) as [string, string];
    const unused = g.op('Sub', [capacity, cached], `${node}/unused/Sub`);
    const pads = g.op('Concat', [g.ints([0, 0, 0, 0, 0, 0, 0]), unused], `${node}/pads/Concat`, { axis: 0 });
    this.split = {
      past: g.op('Pad', [past, pads, g.scalar(ATTENTION_MASKED)], `${node}/past/Pad`, { mode: 'constant' }),
      fresh: freshBias,
      split: g.op('Concat', [capacity, fresh], `${node}/split/Concat`, { axis: 0 }),
    };
  }
}
