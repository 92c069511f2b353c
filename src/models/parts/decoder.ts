// A decoder-only language model as an ONNX graph of plain opset-21 operators (and a few com.microsoft ones), with
// every per-layer state kept on the host (src/runtime/decoder-runner.ts). One builder serves every family; the
// dims carry the options that tell the families apart, the way onnxruntime-genai's builder takes them:
// * MiniCPM (the LLM of MiniCPM-V, upstream `modeling_minicpm.py: MiniCPMForCausalLM`): embeddings × scale_emb,
//   residual branches × scale_depth/√L, logits from h / (hidden / dim_model_base);
// * Mistral (the LLM of OmniLMM-12B, transformers 4.36 `MistralForCausalLM`, eager attention): no scaling, grouped
//   key/value heads and a sliding attention window;
// * Qwen3.5 (the LLM of MiniCPM-V 4.6, transformers 5.18 `modeling_qwen3_5.py: Qwen3_5TextModel`): gated
//   delta-net linear-attention layers (./gated-delta-net.ts) between full-attention layers with per-head q/k
//   RMSNorm, partial rotary dims and a sigmoid output gate; zero-centred RMSNorm (1 + w); tied embeddings.
//
// Contract (b = rows, s = new positions, P = cached positions, C ≥ P = cache capacity, hd = head_dim):
//   inputs   inputs_embeds    [b, s, hidden]       f32  token embeddings (× scale_emb), image features scattered in
//            position_ids     [b, s]               i64  absolute positions of the new tokens (P, P+1, …)
//            attention_bias   [b, 1, s, P+s]       f32  0 = visible, ATTENTION_MASKED = hidden; P is read from its shape;
//                                                       with a sliding window the graph also hides keys j ≤ p − window
//            past_key_{i}     [b, kv_heads, C, hd] f32  per full-attention layer i: the host cache buffer itself; the
//            past_value_{i}   [b, kv_heads, C, hd] f32  graph reads it in place, positions [P, C) masked out
//            past_conv_{i}    [b, conv_dim, K−1]   f32  per linear-attention layer i: the last K−1 inputs of its
//            past_recurrent_{i} [b, Hv, dk, dv]    f32  causal conv and its delta-rule state (zeros at P = 0)
//   outputs  logits           [b, vocab]           f32  last position only (`logits: 'last'`, what generation uses)
//                             [b, s, vocab]        f32  every position (`logits: 'all'`, parity tests)
//            key_{i}          [b, kv_heads, s, hd] f32  per full-attention layer: only the NEW keys (after RoPE) and
//            value_{i}        [b, kv_heads, s, hd] f32  values, which the host appends at positions [P, P+s)
//            conv_{i}         [b, conv_dim, K−1]   f32  per linear-attention layer: its whole new state (small), which
//            recurrent_{i}    [b, Hv, dk, dv]      f32  replaces the old one
// The past is an input with a capacity axis so the host hands its buffers over without copying them, and the
// full key/value cache is never an output (onnxruntime-node copies every output back to JS on every run).
// With linear-attention layers one run takes at most `linearChunk` new positions (see gated-delta-net.ts).

import { CheckpointError } from '../../errors.js';
import { Graph, f } from '../../graph/builder.js';
import { dynamicQuantizeMatMul, matMulNBits, quantizeColumnsInt8, quantizeMatrix, quantizeOptionsFor } from '../../graph/quantize.js';
import type { TensorSource } from '../../checkpoint/safetensors.js';
import { attentionWeightShapes, FullAttention } from './attention.js';
import { gatedDeltaNet, gatedDeltaNetWeightShapes } from './gated-delta-net.js';
import {
  DEFAULT_LINEAR_CHUNK, decoderNames, headDim, layerType, linearStateShapes,
  type DecoderDims, type DecoderGraphOptions, type DecoderNames,
} from './decoder-dims.js';

export * from './decoder-dims.js';

/** Every tensor the decoder reads, with the shape the dims imply (torch Linear weights are [out, in]). */
export function decoderWeightShapes(dims: DecoderDims, options: Pick<DecoderGraphOptions, 'prefix' | 'bodyPrefix'>): Map<string, number[]> {
  const { hiddenSize: d, intermediateSize: ff, vocabSize: v } = dims;
  const names = decoderNames(options, dims);
  const shapes = new Map<string, number[]>([
    [names.embedTokens, [v, d]],
    [names.norm, [d]],
    [names.lmHead, [v, d]],
  ]);
  for (let i = 0; i < dims.numLayers; i++) {
    const layer = names.layer(i);
    shapes.set(`${layer}.input_layernorm.weight`, [d]);
    const mixer = layerType(dims, i) === 'linear_attention'
      ? gatedDeltaNetWeightShapes(dims, `${layer}.linear_attn`)
      : attentionWeightShapes(dims, `${layer}.self_attn`);
    for (const [name, shape] of mixer) shapes.set(name, shape);
    shapes.set(`${layer}.post_attention_layernorm.weight`, [d]);
    shapes.set(`${layer}.mlp.gate_proj.weight`, [ff, d]);
    shapes.set(`${layer}.mlp.up_proj.weight`, [ff, d]);
    shapes.set(`${layer}.mlp.down_proj.weight`, [d, ff]);
  }
  return shapes;
}

/** Checks that the dims fit together (a bad config fails with what to fix). */
function checkDims(dims: DecoderDims): void {
  const hd = headDim(dims);
  const rotary = dims.rotaryDims ?? hd;
  if (!Number.isInteger(hd) || hd % 2 !== 0 || dims.numHeads % dims.numKvHeads !== 0) {
    throw new CheckpointError(
      `the text config has hidden_size ${dims.hiddenSize}, ${dims.numHeads} heads of size ${hd} and ${dims.numKvHeads} ` +
        'key/value heads: the head size must be an even integer and the heads a multiple of the key/value heads',
    );
  }
  if (!Number.isInteger(rotary) || rotary % 2 !== 0 || rotary < 2 || rotary > hd) {
    throw new CheckpointError(`the text config turns ${rotary} of ${hd} head dims with RoPE: it must be an even number ≤ head_dim`);
  }
  if (dims.layerTypes && dims.layerTypes.length !== dims.numLayers) {
    throw new CheckpointError(`the text config lists ${dims.layerTypes.length} layer_types for ${dims.numLayers} layers`);
  }
  const linear = dims.linearAttention;
  if (dims.layerTypes?.includes('linear_attention')) {
    if (!linear) throw new CheckpointError('the text config has linear_attention layers but no linear_* sizes');
    if (linear.numValueHeads % linear.numKeyHeads !== 0 || linear.convKernel < 2) {
      throw new CheckpointError(
        `the text config has ${linear.numValueHeads} linear value heads for ${linear.numKeyHeads} key heads and a conv ` +
          `kernel of ${linear.convKernel}: the value heads must be a multiple of the key heads and the kernel ≥ 2`,
      );
    }
  }
}

/** Checks the dims and that the checkpoint has every decoder tensor with the right shape; lists all problems at once. */
export function checkDecoderWeights(source: TensorSource, dims: DecoderDims, options: Pick<DecoderGraphOptions, 'prefix' | 'bodyPrefix'>): void {
  checkDims(dims);
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [name, shape] of decoderWeightShapes(dims, options)) {
    if (!source.has(name)) missing.push(name);
    else if (source.info(name).shape.join(',') !== shape.join(',')) {
      wrong.push(`${name} is [${source.info(name).shape}], expected [${shape}]`);
    }
  }
  if (missing.length > 0) {
    throw new CheckpointError(
      `the checkpoint lacks ${missing.length} tensor(s) the language model needs (prefix "${options.bodyPrefix ?? options.prefix}"): ` +
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
  checkDecoderWeights(source, dims, options);
  return new DecoderBuilder(source, dims, options).build();
}

/** What the layer builders (attention.ts, gated-delta-net.ts) take from the decoder builder. */
export interface DecoderParts {
  readonly g: Graph;
  readonly dims: DecoderDims;
  readonly source: TensorSource;
  /** torch nn.Linear `weightName` ([out, in]; with `bias`, its `.bias` beside it). */
  linear(x: string, weightName: string, node: string, bias?: boolean): string;
  /** RMSNorm over the last axis of size `size` with `weightName`; `zeroCentred`: the scale is 1 + w. */
  rmsNorm(x: string, weightName: string, node: string, size: number, zeroCentred: boolean): string;
}

class DecoderBuilder implements DecoderParts {
  readonly g = new Graph('llm_decoder');
  private readonly names: DecoderNames;

  constructor(
    readonly source: TensorSource,
    readonly dims: DecoderDims,
    private readonly options: DecoderGraphOptions,
  ) {
    this.names = decoderNames(options, dims);
  }

  /**
   *   inputs_embeds ─► layers.0 … layers.L-1 ─► Gather(last position)* ─ norm ─ Div(hidden/dim_model_base)** ─ lm_head ─► logits
   *   position_ids ── rotary cos/sin ─────────┤ (shared by every full-attention layer)
   *   attention_bias ─ sliding window** ─ split past/new ─┤   * only with `logits: 'last'`
   *   past_conv_i, past_recurrent_i ─► linear layer i ┘   ** only when the dims ask for it
   */
  build(): Graph {
    const { g, dims } = this;
    const { hiddenSize: d, numKvHeads: kvh, vocabSize: v } = dims;
    const hd = headDim(dims);
    const embeds = g.input('inputs_embeds', 'float32', ['batch', 'seq', d]);
    const attentionLayers = Array.from({ length: dims.numLayers }, (_, i) => i).filter((i) => layerType(dims, i) === 'full_attention');
    const attention = attentionLayers.length === 0 ? null : new FullAttention(this);
    const pastKeys = new Map(attentionLayers.map((i) => [i, g.input(`past_key_${i}`, 'float32', ['batch', kvh, 'capacity', hd])]));
    attention?.splitBias(embeds, pastKeys.get(attentionLayers[0]!)!);
    const residualScale = dims.scaleDepth === undefined ? null : g.scalar(dims.scaleDepth / Math.sqrt(dims.numLayers));
    const chunk = this.options.linearChunk ?? DEFAULT_LINEAR_CHUNK;

    let h = embeds;
    for (let i = 0; i < dims.numLayers; i++) {
      const node = `/llm/layers.${i}`;
      const weights = this.names.layer(i);
      const attnIn = this.rmsNorm(h, `${weights}.input_layernorm.weight`, `${node}/input_layernorm`, d, !!dims.zeroCentredNorm);
      // The layer's state outputs are declared after the whole layer is built.
      let mixed: string;
      let outputs: () => void;
      if (layerType(dims, i) === 'linear_attention') {
        const shapes = linearStateShapes(dims.linearAttention!);
        const conv = g.input(`past_conv_${i}`, 'float32', ['batch', ...shapes.conv]);
        const recurrent = g.input(`past_recurrent_${i}`, 'float32', ['batch', ...shapes.recurrent]);
        const layer = gatedDeltaNet(this, { node: `${node}/linear_attn`, weights: `${weights}.linear_attn`, chunk }, attnIn, { conv, recurrent });
        mixed = layer.output;
        outputs = () => {
          g.output(layer.conv, `conv_${i}`, 'float32', ['batch', ...shapes.conv]);
          g.output(layer.recurrent, `recurrent_${i}`, 'float32', ['batch', ...shapes.recurrent]);
        };
      } else {
        const pastValue = g.input(`past_value_${i}`, 'float32', ['batch', kvh, 'capacity', hd]);
        const layer = attention!.layer(i, `${weights}.self_attn`, attnIn, pastKeys.get(i)!, pastValue);
        mixed = layer.output;
        outputs = () => {
          g.output(layer.key, `key_${i}`, 'float32', ['batch', kvh, 'seq', hd]);
          g.output(layer.value, `value_${i}`, 'float32', ['batch', kvh, 'seq', hd]);
        };
      }
      h = this.residualLayer(i, h, mixed, residualScale);
      outputs();
    }

    const last = this.options.logits === 'last';
    if (last) h = g.op('Gather', [h, g.constant('int64', [], [-1n])], '/llm/last_position/Gather', { axis: 1 });
    const normed = this.rmsNorm(h, this.names.norm, '/llm/norm', d, !!dims.zeroCentredNorm);
    const scaled =
      dims.dimModelBase === undefined ? normed : g.op('Div', [normed, g.scalar(d / dims.dimModelBase)], '/llm/lm_head/scale/Div');
    const logits = this.linear(scaled, this.names.lmHead, '/llm/lm_head');
    g.output(logits, 'logits', 'float32', last ? ['batch', v] : ['batch', 'seq', v]);
    return g;
  }

  /**
   * The rest of one layer after its token mixer (upstream `MiniCPMDecoderLayer.forward`, `MistralDecoderLayer.forward`,
   * `Qwen3_5DecoderLayer.forward`); MiniCPM multiplies each branch by s = scale_depth/√num_layers, the others do not:
   *
   *   x ─┬─ input_layernorm ─ attention or linear attention ─ Mul s ─┐
   *      └──────────────────────────────────────────────────────── Add ─┬─ post_attention_layernorm ─ mlp ─ Mul s ─┐
   *                                                                     └────────────────────────────────────── Add ─► hidden
   * Fused replacement later: SkipSimplifiedLayerNormalization (com.microsoft) for each Add + following RMSNorm.
   */
  private residualLayer(i: number, x: string, mixed: string, residualScale: string | null): string {
    const { g, dims } = this;
    const node = `/llm/layers.${i}`;
    const weights = this.names.layer(i);
    const scaleBranch = (branch: string, name: string) =>
      residualScale === null ? branch : g.op('Mul', [branch, residualScale], `${node}/${name}/residual_scale/Mul`);
    const h = g.op('Add', [x, scaleBranch(mixed, 'attn')], `${node}/attn/residual/Add`);
    const mlpIn = this.rmsNorm(h, `${weights}.post_attention_layernorm.weight`, `${node}/post_attention_layernorm`, dims.hiddenSize, !!dims.zeroCentredNorm);
    return g.op('Add', [h, scaleBranch(this.mlp(i, mlpIn), 'mlp')], `${node}/mlp/residual/Add`);
  }

  /**
   * The gated MLP of every family: down(silu(gate(x)) · up(x)).
   *
   *   x ─┬─ gate_proj ─┬─ Sigmoid ─ Mul ─┐
   *      │             └──────────────┘  │
   *      └─ up_proj ──────────────────── Mul ─ down_proj ─► y
   */
  private mlp(i: number, x: string): string {
    const { g } = this;
    const node = `/llm/layers.${i}/mlp`;
    const weights = `${this.names.layer(i)}.mlp`;
    const gate = this.linear(x, `${weights}.gate_proj.weight`, `${node}/gate_proj`);
    const sigmoid = g.op('Sigmoid', [gate], `${node}/act/Sigmoid`);
    const silu = g.op('Mul', [gate, sigmoid], `${node}/act/Mul`);
    const up = this.linear(x, `${weights}.up_proj.weight`, `${node}/up_proj`);
    const gated = g.op('Mul', [silu, up], `${node}/gate/Mul`);
    return this.linear(gated, `${weights}.down_proj.weight`, `${node}/down_proj`);
  }

  /**
   * RMSNorm in float32 (upstream `rms_layernorm` / `MistralRMSNorm` / `Qwen3_5RMSNorm`): x · rsqrt(mean(x²) + eps) ·
   * scale, as one SimplifiedLayerNormalization (an ONNX Runtime contrib op in the default domain; float32 throughout).
   * A zero-centred weight w gives the scale float32(1 + w), as `1.0 + weight.float()` computes it.
   */
  rmsNorm(x: string, weightName: string, node: string, size: number, zeroCentred: boolean): string {
    const { g, dims } = this;
    const stored = this.source.float32(weightName);
    const scale = zeroCentred ? stored.map((w) => 1 + w) : stored;
    const weight = g.weight(zeroCentred ? `${weightName}+1` : weightName, scale, [size]);
    return g.op('SimplifiedLayerNormalization', [x, weight], `${node}/SimplifiedLayerNormalization`, {
      axis: -1,
      epsilon: f(dims.rmsNormEps),
      stash_type: 1,
    });
  }

  /**
   *   fp32:        x [.., in] ── FusedMatMul(W [out, in], transB) ── Add(b)* ──► [.., out]   (torch nn.Linear; the
   *                weight is used as stored, and ONNX Runtime prepacks it once, transposed, at session creation)
   *   int8 / int4: x [.., in] ── MatMulNBits(W [out, in] in blocks) ── Add(b)* ──► [.., out] (src/graph/quantize.ts)
   *   int8-dq:     x [.., in] ── DynamicQuantizeMatMul(W int8 [in, out], per-column scales) ── Add(b)* ──► [.., out]
   *   * only with a bias
   */
  linear(x: string, weightName: string, node: string, bias = false): string {
    const [out, inp] = this.source.info(weightName).shape as [number, number];
    const precision = this.options.precision ?? 'fp32';
    const w = this.source.float32(weightName);
    const y = precision === 'fp32'
      ? this.g.op('FusedMatMul', [x, this.g.weight(weightName, w, [out, inp])], `${node}/FusedMatMul`, { transB: 1 }, 'com.microsoft')
      : precision === 'int8-dq'
        ? dynamicQuantizeMatMul(this.g, x, quantizeColumnsInt8(w, out, inp), weightName, node)
        : matMulNBits(this.g, x, quantizeMatrix(w, out, inp, quantizeOptionsFor(precision)), weightName, node);
    if (!bias) return y;
    const biasName = weightName.replace(/weight$/, 'bias');
    return this.g.op('Add', [y, this.g.weight(biasName, this.source.float32(biasName), [out])], `${node}/Add`);
  }
}
