// The decoder's sizes, options and checkpoint names, and the per-layer state shapes: what the host side of the decoder
// (src/runtime/decoder-runner.ts) needs without the graph builder, so it also runs where no graph is built (a browser).

import type { WeightPrecision } from '../../graph/quantize.js';

export type DecoderLayerType = 'full_attention' | 'linear_attention';

/** The sizes of a gated delta-net layer (Qwen3.5's `linear_*` config keys). */
export interface LinearAttentionDims {
  numKeyHeads: number;
  numValueHeads: number;
  keyHeadDim: number;
  valueHeadDim: number;
  /** Taps of the causal depthwise conv over time (linear_conv_kernel_dim). */
  convKernel: number;
}

/**
 * The sizes and options of the decoder graph. Every option is optional: an absent one is not applied, so a family
 * gets only what it passes (MiniCPM its scalings, Mistral its window, Qwen3.5 its norms, gates and layer types).
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
  /** The attention head size when the config sets it apart from hidden_size / num_heads (Qwen3.5: head_dim). */
  headDim?: number;
  /** q_proj, k_proj and v_proj have biases (attention_bias; absent = none). */
  attentionBias?: boolean;
  /** RMSNorm of each query and key head over head_dim, before RoPE (q_norm, k_norm). */
  qkNorm?: boolean;
  /** q_proj gives per head [query | gate]; the attention output is × sigmoid(gate) before o_proj (attn_output_gate). */
  attentionOutputGate?: boolean;
  /** RoPE turns only the first rotaryDims of each head (head_dim · partial_rotary_factor; absent = all). */
  rotaryDims?: number;
  /** Every RMSNorm weight w of the model body is stored zero-centred: the scale is 1 + w (Qwen3.5). */
  zeroCentredNorm?: boolean;
  /** lm_head is the embedding table (tie_word_embeddings): no lm_head.weight is read. */
  tiedEmbeddings?: boolean;
  /** The kind of each layer (absent = all full attention). */
  layerTypes?: readonly DecoderLayerType[];
  /** Sizes of the linear-attention layers (required when layerTypes has one). */
  linearAttention?: LinearAttentionDims;
}

/** The dims the runtime's DecoderRunner takes for MiniCPM: it multiplies the token embeddings by scaleEmb on the host. */
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
  /**
   * Checkpoint name prefix of the language model: its body is `${prefix}model.` and its head `${prefix}lm_head.weight`
   * (MiniCPM-V: `llm.`, OmniLMM: none).
   */
  prefix: string;
  /** Where the body (embed_tokens, layers, norm) lives when not at `${prefix}model.` (MiniCPM-V 4.6: `model.language_model.`). */
  bodyPrefix?: string;
  /** `last`: logits [b, vocab] of the last position; `all`: logits [b, s, vocab]. */
  logits: 'last' | 'all';
  /** How the linear layers (lm_head included) keep their weights (default fp32, the reference). */
  precision?: WeightPrecision;
  /** Most new positions one run may take when the model has linear-attention layers (a power of two; default 64). */
  linearChunk?: number;
}

/** The additive bias of a hidden position (torch.finfo(float32).min, as transformers' causal mask uses). */
export const ATTENTION_MASKED = -3.4028234663852886e38;

export function headDim(dims: DecoderDims): number {
  return dims.headDim ?? dims.hiddenSize / dims.numHeads;
}

/** The kind of layer i. */
export function layerType(dims: DecoderDims, i: number): DecoderLayerType {
  return dims.layerTypes?.[i] ?? 'full_attention';
}

/** The checkpoint names of the decoder's tensors. */
export interface DecoderNames {
  embedTokens: string;
  norm: string;
  lmHead: string;
  /** `<body>layers.<i>` */
  layer: (i: number) => string;
}

export function decoderNames(options: Pick<DecoderGraphOptions, 'prefix' | 'bodyPrefix'>, dims: DecoderDims): DecoderNames {
  const body = options.bodyPrefix ?? `${options.prefix}model.`;
  return {
    embedTokens: `${body}embed_tokens.weight`,
    norm: `${body}norm.weight`,
    lmHead: dims.tiedEmbeddings ? `${body}embed_tokens.weight` : `${options.prefix}lm_head.weight`,
    layer: (i) => `${body}layers.${i}`,
  };
}

/** Most new positions of one run (a chunk of upstream's chunked delta rule). */
export const DEFAULT_LINEAR_CHUNK = 64;

/** Channels of the causal conv: queries, keys and values. */
export function convChannels(l: LinearAttentionDims): number {
  return 2 * l.numKeyHeads * l.keyHeadDim + l.numValueHeads * l.valueHeadDim;
}

/** The per-row state shapes of one linear-attention layer (without the batch axis). */
export function linearStateShapes(l: LinearAttentionDims): { conv: [number, number]; recurrent: [number, number, number] } {
  return { conv: [convChannels(l), l.convKernel - 1], recurrent: [l.numValueHeads, l.keyHeadDim, l.valueHeadDim] };
}
