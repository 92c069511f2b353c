// A llama-style language model as an ONNX graph of plain opset-21 operators, with the KV cache kept on the host
// (src/runtime/decoder-runner.ts). Two families use it:
// * MiniCPM (the LLM of MiniCPM-V, upstream `modeling_minicpm.py: MiniCPMForCausalLM`): embeddings × scale_emb,
//   residual branches × scale_depth/√L, logits from h / (hidden / dim_model_base);
// * Mistral (the LLM of OmniLMM-12B, transformers 4.36 `MistralForCausalLM`, eager attention): no scaling, grouped
//   key/value heads and a sliding attention window.
//
// Contract (b = rows, s = new positions, P = cached positions, C ≥ P = cache capacity, hd = head_dim):
//   inputs   inputs_embeds    [b, s, hidden]       f32  token embeddings (× scale_emb), image features scattered in
//            position_ids     [b, s]               i64  absolute positions of the new tokens (P, P+1, …)
//            attention_bias   [b, 1, s, P+s]       f32  0 = visible, ATTENTION_MASKED = hidden; P is read from its shape;
//                                                       with a sliding window the graph also hides keys j ≤ p − window
//            past_key_{i}     [b, kv_heads, C, hd] f32  per layer: the host cache buffer itself; the graph
//            past_value_{i}   [b, kv_heads, C, hd] f32  reads it in place, positions [P, C) masked out
//   outputs  logits           [b, vocab]           f32  last position only (`logits: 'last'`, what generation uses)
//                             [b, s, vocab]        f32  every position (`logits: 'all'`, parity tests)
//            key_{i}          [b, kv_heads, s, hd] f32  per layer: only the NEW keys (after RoPE) and values, which
//            value_{i}        [b, kv_heads, s, hd] f32  the host appends to its cache at positions [P, P+s)
// The past is an input with a capacity axis so the host hands its buffers over without copying them, and the
// full cache is never an output (onnxruntime-node copies every output back to JS on every run).

import { CheckpointError } from '../../errors.js';
import { Graph, f } from '../../graph/builder.js';
import { matMulNBits, quantizeMatrix, quantizeOptionsFor, type WeightPrecision } from '../../graph/quantize.js';
import type { TensorSource } from '../../checkpoint/safetensors.js';

/**
 * The sizes and options of the decoder graph. MiniCPM's scalings are optional: an absent one is not applied
 * (Mistral), so only a family that passes them gets them.
 */
export interface DecoderDims {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
  /** Token embeddings are multiplied by this before the graph (by the host; absent = 1). */
  scaleEmb?: number;
  /** Logits are computed from h / (hidden_size / dim_model_base) (absent = h). */
  dimModelBase?: number;
  /** Residual branches are multiplied by scale_depth / √num_layers (absent = not scaled). */
  scaleDepth?: number;
  /** Mistral's sliding window: the query at position p sees keys j with p − window < j ≤ p (absent = all j ≤ p). */
  slidingWindow?: number;
}

/** The dims the runtime's DecoderRunner takes: it multiplies the token embeddings by scaleEmb on the host. */
export interface MiniCPMTextDims extends DecoderDims {
  scaleEmb: number;
}

/** The sizes every llama-style text config has (the family adds its own scales). */
export function llamaDims(t: {
  hiddenSize: number; numHiddenLayers: number; numAttentionHeads: number; numKeyValueHeads: number;
  intermediateSize: number; rmsNormEps: number; ropeTheta: number; vocabSize: number;
}): DecoderDims {
  return {
    hiddenSize: t.hiddenSize, numLayers: t.numHiddenLayers, numHeads: t.numAttentionHeads, numKvHeads: t.numKeyValueHeads,
    intermediateSize: t.intermediateSize, rmsNormEps: t.rmsNormEps, ropeTheta: t.ropeTheta, vocabSize: t.vocabSize,
  };
}

export interface DecoderGraphOptions {
  /** Checkpoint name prefix of the language model (MiniCPM-V stores it under `llm.`, OmniLMM under nothing). */
  prefix: string;
  /** `last`: logits [b, vocab] of the last position; `all`: logits [b, s, vocab]. */
  logits: 'last' | 'all';
  /** How the linear layers (lm_head included) keep their weights (default fp32, the reference). */
  precision?: WeightPrecision;
}

/** The additive bias of a hidden position (torch.finfo(float32).min, as transformers' causal mask uses). */
export const ATTENTION_MASKED = -3.4028234663852886e38;

export function headDim(dims: DecoderDims): number {
  return dims.hiddenSize / dims.numHeads;
}

/** Every tensor the decoder reads, with the shape the dims imply (torch Linear weights are [out, in]). */
export function decoderWeightShapes(dims: DecoderDims, prefix: string): Map<string, number[]> {
  const { hiddenSize: d, intermediateSize: ff, vocabSize: v } = dims;
  const kv = dims.numKvHeads * headDim(dims);
  const shapes = new Map<string, number[]>([
    [`${prefix}model.embed_tokens.weight`, [v, d]],
    [`${prefix}model.norm.weight`, [d]],
    [`${prefix}lm_head.weight`, [v, d]],
  ]);
  for (let i = 0; i < dims.numLayers; i++) {
    const layer = `${prefix}model.layers.${i}`;
    shapes.set(`${layer}.input_layernorm.weight`, [d]);
    shapes.set(`${layer}.self_attn.q_proj.weight`, [d, d]);
    shapes.set(`${layer}.self_attn.k_proj.weight`, [kv, d]);
    shapes.set(`${layer}.self_attn.v_proj.weight`, [kv, d]);
    shapes.set(`${layer}.self_attn.o_proj.weight`, [d, d]);
    shapes.set(`${layer}.post_attention_layernorm.weight`, [d]);
    shapes.set(`${layer}.mlp.gate_proj.weight`, [ff, d]);
    shapes.set(`${layer}.mlp.up_proj.weight`, [ff, d]);
    shapes.set(`${layer}.mlp.down_proj.weight`, [d, ff]);
  }
  return shapes;
}

/** Checks the dims and that the checkpoint has every decoder tensor with the right shape; lists all problems at once. */
export function checkDecoderWeights(source: TensorSource, dims: DecoderDims, prefix: string): void {
  const hd = headDim(dims);
  if (!Number.isInteger(hd) || hd % 2 !== 0 || dims.numHeads % dims.numKvHeads !== 0) {
    throw new CheckpointError(
      `the text config has hidden_size ${dims.hiddenSize}, ${dims.numHeads} heads and ${dims.numKvHeads} key/value heads: ` +
        'hidden_size must be an even multiple of the heads and the heads a multiple of the key/value heads',
    );
  }
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [name, shape] of decoderWeightShapes(dims, prefix)) {
    if (!source.has(name)) missing.push(name);
    else if (source.info(name).shape.join(',') !== shape.join(',')) {
      wrong.push(`${name} is [${source.info(name).shape}], expected [${shape}]`);
    }
  }
  if (missing.length > 0) {
    throw new CheckpointError(
      `the checkpoint lacks ${missing.length} tensor(s) the language model needs (prefix "${prefix}"): ` +
        `${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}; ` +
        'the download is incomplete or it is not a checkpoint of this model family',
    );
  }
  if (wrong.length > 0) {
    throw new CheckpointError(`config.json does not match the decoder weights: ${wrong.slice(0, 5).join('; ')}`);
  }
}

/** Builds the decoder graph; weights are read from `source` (checked first, so a bad checkpoint fails before any work). */
export function buildDecoder(source: TensorSource, dims: DecoderDims, options: DecoderGraphOptions): Graph {
  checkDecoderWeights(source, dims, options.prefix);
  return new DecoderBuilder(source, dims, options).build();
}

/** Query heads grouped by the key/value head they use (DecoderBuilder.groupHeads). */
interface GroupedHeads {
  q: string;
  pastBias: string;
  freshBias: string;
  /** Keys or values [b,K,T,hd] as the grouped queries take them: [b,K,1,T,hd]. */
  kv: (t: string, node: string) => string;
  /** Context [b,K,r,s,hd] back to [b,H,s,hd]. */
  ungroup: (c: string) => string;
}

class DecoderBuilder {
  private readonly g = new Graph('llm_decoder');
  private readonly hd: number;

  constructor(
    private readonly source: TensorSource,
    private readonly dims: DecoderDims,
    private readonly options: DecoderGraphOptions,
  ) {
    this.hd = headDim(dims);
  }

  /**
   *   inputs_embeds ─► layers.0 … layers.L-1 ─► Gather(last position)* ─ norm ─ Div(hidden/dim_model_base)** ─ lm_head ─► logits
   *   position_ids ── rotary cos/sin ─────────┤ (shared by every layer)
   *   attention_bias ─ sliding window** ─ split past/new ─┤   * only with `logits: 'last'`
   *                                                       ┘   ** only when the dims ask for it
   */
  build(): Graph {
    const { g, dims } = this;
    const { hiddenSize: d, numKvHeads: kvh, vocabSize: v } = dims;
    const embeds = g.input('inputs_embeds', 'float32', ['batch', 'seq', d]);
    const positionIds = g.input('position_ids', 'int64', ['batch', 'seq']);
    const hostBias = g.input('attention_bias', 'float32', ['batch', 1, 'seq', 'total']);
    const rotary = this.rotaryTables(positionIds);
    const windowed = dims.slidingWindow === undefined ? hostBias : this.slidingWindow(hostBias, positionIds, dims.slidingWindow);
    const pastKeys = Array.from({ length: dims.numLayers }, (_, i) => g.input(`past_key_${i}`, 'float32', ['batch', kvh, 'capacity', this.hd]));
    const bias = this.splitBias(windowed, embeds, pastKeys[0]!);

    let h = embeds;
    for (let i = 0; i < dims.numLayers; i++) {
      const pastKey = pastKeys[i]!;
      const pastValue = g.input(`past_value_${i}`, 'float32', ['batch', kvh, 'capacity', this.hd]);
      const layer = this.decoderLayer(i, h, { rotary, bias, pastKey, pastValue });
      h = layer.hidden;
      g.output(layer.key, `key_${i}`, 'float32', ['batch', kvh, 'seq', this.hd]);
      g.output(layer.value, `value_${i}`, 'float32', ['batch', kvh, 'seq', this.hd]);
    }

    const last = this.options.logits === 'last';
    if (last) h = g.op('Gather', [h, g.constant('int64', [], [-1n])], '/llm/last_position/Gather', { axis: 1 });
    const normed = this.rmsNorm(h, `${this.options.prefix}model.norm.weight`, '/llm/norm');
    const scaled =
      dims.dimModelBase === undefined ? normed : g.op('Div', [normed, g.scalar(d / dims.dimModelBase)], '/llm/lm_head/scale/Div');
    const logits = this.linear(scaled, `${this.options.prefix}lm_head.weight`, '/llm/lm_head');
    g.output(logits, 'logits', 'float32', last ? ['batch', v] : ['batch', 'seq', v]);
    return g;
  }

  /**
   * One layer (upstream `MiniCPMDecoderLayer.forward` / `MistralDecoderLayer.forward`); MiniCPM multiplies each
   * branch by s = scale_depth/√num_layers, Mistral does not (no Mul):
   *
   *   x ─┬─ input_layernorm ─ attention ─ Mul s ─┐
   *      └──────────────────────────────────── Add ─┬─ post_attention_layernorm ─ mlp ─ Mul s ─┐
   *                                                 └────────────────────────────────────── Add ─► hidden
   * Fused replacement later: SkipSimplifiedLayerNormalization (com.microsoft) for each Add + following RMSNorm.
   */
  private decoderLayer(i: number, x: string, ctx: AttentionContext): { hidden: string; key: string; value: string } {
    const { g, dims } = this;
    const node = `/llm/layers.${i}`;
    const weights = `${this.options.prefix}model.layers.${i}`;
    const residualScale = dims.scaleDepth === undefined ? null : g.scalar(dims.scaleDepth / Math.sqrt(dims.numLayers));
    const scaleBranch = (branch: string, name: string) =>
      residualScale === null ? branch : g.op('Mul', [branch, residualScale], `${node}/${name}/residual_scale/Mul`);

    const attnIn = this.rmsNorm(x, `${weights}.input_layernorm.weight`, `${node}/input_layernorm`);
    const attn = this.attention(i, attnIn, ctx);
    const h = g.op('Add', [x, scaleBranch(attn.output, 'attn')], `${node}/attn/residual/Add`);

    const mlpIn = this.rmsNorm(h, `${weights}.post_attention_layernorm.weight`, `${node}/post_attention_layernorm`);
    const mlp = this.mlp(i, mlpIn);
    const hidden = g.op('Add', [h, scaleBranch(mlp, 'mlp')], `${node}/mlp/residual/Add`);
    return { hidden, key: attn.key, value: attn.value };
  }

  /**
   * Self-attention with the host cache (upstream `MiniCPMAttention.forward` / `MistralAttention.forward`, eager), in
   * two parts so that the past is never copied: the past part reads the whole cache buffer [b, K, C, hd] in place,
   * and its slots [P, C) get the bias ATTENTION_MASKED (probability exactly 0):
   *
   *   x ─┬─ q_proj ─ Reshape [b,s,H,hd] ─ Transpose ─ RoPE ─────────────────────────► q
   *      ├─ k_proj ─ Reshape [b,s,K,hd] ─ Transpose ─ RoPE ─┬─ per group ──► keys_new    (and key_i)
   *      └─ v_proj ─ Reshape [b,s,K,hd] ─ Transpose ────────┴─ per group ──► values_new  (and value_i)
   *   past_key_i ─ per group ─► keys_past;  past_value_i ─ per group ─► values_past   (groupHeads: GQA without copies)
   *
   *   q ─┬─ FusedMatMul(keys_pastᵀ, α = 1/√hd) ─ Add past_bias [b,1,s,C] ─┐
   *      └─ FusedMatMul(keys_newᵀ,  α = 1/√hd) ─ Add new_bias  [b,1,s,s] ─ Concat(-1) ─ Softmax ─ Split [C, s] ─┐
   *   probs_past · values_past + probs_new · values_new ─► [b,H,s,hd] ─ Transpose ─ Reshape [b,s,H·hd] ─ o_proj ─► output
   * Fused replacement later: GroupQueryAttention (com.microsoft) for everything from the RoPE to the last MatMul;
   * with past_present_share_buffer it reads this very [b, K, capacity, hd] cache layout plus a per-row length.
   */
  private attention(i: number, x: string, ctx: AttentionContext): { output: string; key: string; value: string } {
    const { g, dims, hd } = this;
    const node = `/llm/layers.${i}/attn`;
    const weights = `${this.options.prefix}model.layers.${i}.self_attn`;
    const heads = (t: string, n: number, name: string) => {
      const split = g.op('Reshape', [t, g.ints([0, 0, n, hd])], `${node}/${name}/Reshape`);
      return g.op('Transpose', [split], `${node}/${name}/Transpose`, { perm: [0, 2, 1, 3] });
    };
    const project = (name: string, n: number) =>
      heads(this.linear(x, `${weights}.${name}.weight`, `${node}/${name}`), n, `${name}/heads`);
    const q = this.applyRotary(project('q_proj', dims.numHeads), ctx.rotary, `${node}/q_rotary`);
    const key = this.applyRotary(project('k_proj', dims.numKvHeads), ctx.rotary, `${node}/k_rotary`);
    const value = project('v_proj', dims.numKvHeads);
    const alpha = f(1 / Math.sqrt(hd));
    const group = this.groupHeads(q, ctx.bias, node);
    const scores = (keys: string, bias: string, name: string) => {
      const raw = g.op('FusedMatMul', [group.q, keys], `${node}/scores/${name}/FusedMatMul`, { transB: 1, alpha }, 'com.microsoft');
      return g.op('Add', [raw, bias], `${node}/scores/${name}/Add`);
    };
    const pastScores = scores(group.kv(ctx.pastKey, `${node}/key/past`), group.pastBias, 'past');
    const newScores = scores(group.kv(key, `${node}/key/new`), group.freshBias, 'new');
    const all = g.op('Concat', [pastScores, newScores], `${node}/scores/Concat`, { axis: -1 });
    const probs = g.op('Softmax', [all], `${node}/Softmax`, { axis: -1 });
    const [pastProbs, newProbs] = g.node('Split', [probs, ctx.bias.split], { name: `${node}/probs/Split`, attrs: { axis: -1 }, outputs: 2 }) as [
      string,
      string,
    ];
    const pastValues = group.kv(ctx.pastValue, `${node}/value/past`);
    const pastContext = g.op('MatMul', [pastProbs, pastValues], `${node}/context/past/MatMul`);
    const newContext = g.op('MatMul', [newProbs, group.kv(value, `${node}/value/new`)], `${node}/context/new/MatMul`);
    const context = group.ungroup(g.op('Add', [pastContext, newContext], `${node}/context/Add`));
    const merged = g.op('Transpose', [context], `${node}/context/Transpose`, { perm: [0, 2, 1, 3] });
    const flat = g.op('Reshape', [merged, g.ints([0, 0, dims.numHeads * hd])], `${node}/context/Reshape`);
    return { output: this.linear(flat, `${weights}.o_proj.weight`, `${node}/o_proj`), key, value };
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
    const { g, dims, hd } = this;
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
   * The gated MLP of both families: down(silu(gate(x)) · up(x)).
   *
   *   x ─┬─ gate_proj ─┬─ Sigmoid ─ Mul ─┐
   *      │             └──────────────┘  │
   *      └─ up_proj ──────────────────── Mul ─ down_proj ─► y
   */
  private mlp(i: number, x: string): string {
    const { g } = this;
    const node = `/llm/layers.${i}/mlp`;
    const weights = `${this.options.prefix}model.layers.${i}.mlp`;
    const gate = this.linear(x, `${weights}.gate_proj.weight`, `${node}/gate_proj`);
    const sigmoid = g.op('Sigmoid', [gate], `${node}/act/Sigmoid`);
    const silu = g.op('Mul', [gate, sigmoid], `${node}/act/Mul`);
    const up = this.linear(x, `${weights}.up_proj.weight`, `${node}/up_proj`);
    const gated = g.op('Mul', [silu, up], `${node}/gate/Mul`);
    return this.linear(gated, `${weights}.down_proj.weight`, `${node}/down_proj`);
  }

  /**
   * RMSNorm in float32 (upstream `rms_layernorm` / `MistralRMSNorm`): x · rsqrt(mean(x²) + eps) · weight, as one
   * SimplifiedLayerNormalization (an ONNX Runtime contrib op in the default domain; float32 throughout).
   */
  private rmsNorm(x: string, weightName: string, node: string): string {
    const { g, dims } = this;
    const weight = g.weight(weightName, this.source.float32(weightName), [dims.hiddenSize]);
    return g.op('SimplifiedLayerNormalization', [x, weight], `${node}/SimplifiedLayerNormalization`, {
      axis: -1,
      epsilon: f(dims.rmsNormEps),
      stash_type: 1,
    });
  }

  /**
   *   fp32:        x [.., in] ── FusedMatMul(W [out, in], transB) ──► [.., out]     (torch nn.Linear without bias;
   *                the weight is used as stored, and ONNX Runtime prepacks it once, transposed, at session creation)
   *   int8 / int4: x [.., in] ── MatMulNBits(W [out, in] in blocks) ──► [.., out]   (src/graph/quantize.ts)
   */
  private linear(x: string, weightName: string, node: string): string {
    const [out, inp] = this.source.info(weightName).shape as [number, number];
    const precision = this.options.precision ?? 'fp32';
    const w = this.source.float32(weightName);
    if (precision !== 'fp32') {
      return matMulNBits(this.g, x, quantizeMatrix(w, out, inp, quantizeOptionsFor(precision)), weightName, node);
    }
    return this.g.op('FusedMatMul', [x, this.g.weight(weightName, w, [out, inp])], `${node}/FusedMatMul`, { transB: 1 }, 'com.microsoft');
  }

  /**
   * cos/sin of the rotary angles for every new position (upstream `MiniCPMRotaryEmbedding` / `MistralRotaryEmbedding`, float32):
   *
   *   position_ids [b,s] ─ Cast f32 ─ Unsqueeze(-1) ─ Mul inv_freq [hd/2] ─ Concat(f, f) ─┬─ Cos ─ Unsqueeze(1) ─► cos [b,1,s,hd]
   *                                                                                       └─ Sin ─ Unsqueeze(1) ─► sin [b,1,s,hd]
   * Fused replacement later: RotaryEmbedding (com.microsoft) with precomputed cos/sin caches.
   */
  private rotaryTables(positionIds: string): Rotary {
    const { g, hd } = this;
    const node = '/llm/rotary';
    const half = hd / 2;
    // inv_freq_k = 1 / θ^(2k/hd), each step rounded to float32 as torch does it.
    const invFreq = Array.from({ length: half }, (_, k) => {
      const exponent = Math.fround((2 * k) / hd);
      return Math.fround(1 / Math.fround(this.dims.ropeTheta ** exponent));
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
   * NeoX-style rotation (upstream `apply_rotary_pos_emb` + `rotate_half`): x·cos + [−x₂, x₁]·sin, halves of head_dim.
   *
   *   x [b,h,s,hd] ─┬────────────────────────────────────── Mul cos ─┐
   *                 └─ Split(hd/2) ─ x₁, x₂ ─ Concat(Neg x₂, x₁) ─ Mul sin ─ Add ─► x_rot
   */
  private applyRotary(x: string, rotary: Rotary, node: string): string {
    const { g, hd } = this;
    const halves = g.ints([hd / 2, hd / 2]);
    const [x1, x2] = g.node('Split', [x, halves], { name: `${node}/Split`, attrs: { axis: 3 }, outputs: 2 }) as [string, string];
    const negated = g.op('Neg', [x2], `${node}/Neg`);
    const rotated = g.op('Concat', [negated, x1], `${node}/Concat`, { axis: 3 });
    const withCos = g.op('Mul', [x, rotary.cos], `${node}/Mul`);
    const withSin = g.op('Mul', [rotated, rotary.sin], `${node}/Mul_1`);
    return g.op('Add', [withCos, withSin], `${node}/Add`);
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
    const { g } = this;
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
   * The attention bias in the two parts that attention() adds to its scores: the cached positions, padded with
   * ATTENTION_MASKED up to the capacity C of the cache buffers, and the new positions; and the split [C, s]:
   *
   *   attention_bias ─ Shape[3:4] ─► P+s ─┐
   *   inputs_embeds  ─ Shape[1:2] ─► s ── Sub ─► P                     past_key_0 ─ Shape[2:3] ─► C
   *   attention_bias ─ Split [P, s] (last axis) ─┬─ Pad(last axis by C − P, MASKED) ─► past [b,1,s,C]
   *                                              └──────────────────────────────────► fresh [b,1,s,s]
   */
  private splitBias(bias: string, embeds: string, pastKey: string): SplitBias {
    const { g } = this;
    const node = '/llm/attention_bias';
    const total = g.op('Shape', [bias], `${node}/total/Shape`, { start: 3, end: 4 });
    const fresh = g.op('Shape', [embeds], `${node}/seq/Shape`, { start: 1, end: 2 });
    const cached = g.op('Sub', [total, fresh], `${node}/past/Sub`);
    const capacity = g.op('Shape', [pastKey], `${node}/capacity/Shape`, { start: 2, end: 3 });
    const parts = g.op('Concat', [cached, fresh], `${node}/parts/Concat`, { axis: 0 });
    const [past, freshBias] = g.node('Split', [bias, parts], { name: `${node}/Split`, attrs: { axis: 3 }, outputs: 2 }) as [string, string];
    const unused = g.op('Sub', [capacity, cached], `${node}/unused/Sub`);
    const pads = g.op('Concat', [g.ints([0, 0, 0, 0, 0, 0, 0]), unused], `${node}/pads/Concat`, { axis: 0 });
    return {
      past: g.op('Pad', [past, pads, g.scalar(ATTENTION_MASKED)], `${node}/past/Pad`, { mode: 'constant' }),
      fresh: freshBias,
      split: g.op('Concat', [capacity, fresh], `${node}/split/Concat`, { axis: 0 }),
    };
  }
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

interface AttentionContext {
  rotary: Rotary;
  bias: SplitBias;
  pastKey: string;
  pastValue: string;
}
