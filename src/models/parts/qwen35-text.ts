// The decoder dims and graph options of a Qwen3.5 text model (config.json `text_config`, model_type `qwen3_5_text`;
// transformers 5.18 `configuration_qwen3_5.py: Qwen3_5TextConfig`), read from the parsed dict. A small local parser:
// the family's typed config may replace it and hand its values to `qwen35DecoderDims` in the same shape.

import { CheckpointError, UnsupportedModelError } from '../../errors.js';
import type { DecoderDims, DecoderGraphOptions, DecoderLayerType } from './decoder.js';

/**
 * Where a MiniCPM-V 4.6 checkpoint keeps its language model: the body at `model.language_model.` (embed_tokens,
 * layers, norm) and an untied head, if any, at `lm_head.weight` (the real model ties it to embed_tokens).
 */
export const MINICPMV46_TEXT_NAMES: Pick<DecoderGraphOptions, 'prefix' | 'bodyPrefix'> = {
  prefix: '',
  bodyPrefix: 'model.language_model.',
};

function field<T>(dict: Record<string, unknown>, key: string, check: (v: unknown) => v is T, what: string, fallback?: T): T {
  const value = dict[key] ?? fallback;
  if (!check(value)) {
    throw new CheckpointError(`config.json text_config.${key} must be ${what}, got ${JSON.stringify(dict[key])}`);
  }
  return value;
}

const positiveInteger = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;
const positiveNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
const flag = (v: unknown): v is boolean => typeof v === 'boolean';

/**
 * Dims of the Qwen3.5 hybrid decoder from `text_config` (`tieWordEmbeddings`: the top-level tie_word_embeddings,
 * which the text config repeats). Refuses what the graph does not build: another activation, RoPE scaling, a
 * layer type other than full/linear attention.
 */
export function qwen35DecoderDims(text: Record<string, unknown>, tieWordEmbeddings?: boolean): DecoderDims {
  const int = (key: string, fallback?: number) => field(text, key, positiveInteger, 'a positive integer', fallback);
  const numLayers = int('num_hidden_layers');
  const numHeads = int('num_attention_heads');
  const headDim = int('head_dim', undefined);
  const rope = (text.rope_parameters ?? {}) as Record<string, unknown>;
  const ropeType = rope.rope_type ?? 'default';
  if (ropeType !== 'default') {
    throw new UnsupportedModelError(`text_config.rope_parameters.rope_type "${String(ropeType)}" is not supported (only "default")`);
  }
  const ropeTheta = field(rope, 'rope_theta', positiveNumber, 'a positive number', undefined);
  const partial = field(rope, 'partial_rotary_factor', positiveNumber, 'a positive number', (text.partial_rotary_factor as number | undefined) ?? 1);
  const activation = text.hidden_act ?? 'silu';
  if (activation !== 'silu') throw new UnsupportedModelError(`text_config.hidden_act "${String(activation)}" is not supported (only "silu")`);
  const layerTypes = text.layer_types;
  if (!Array.isArray(layerTypes) || layerTypes.length !== numLayers || layerTypes.some((t) => t !== 'full_attention' && t !== 'linear_attention')) {
    throw new CheckpointError(
      `config.json text_config.layer_types must list "full_attention" or "linear_attention" for each of the ${numLayers} layers`,
    );
  }
  return {
    hiddenSize: int('hidden_size'),
    numLayers,
    numHeads,
    numKvHeads: int('num_key_value_heads', numHeads),
    intermediateSize: int('intermediate_size'),
    rmsNormEps: field(text, 'rms_norm_eps', positiveNumber, 'a positive number', 1e-6),
    ropeTheta,
    vocabSize: int('vocab_size'),
    headDim,
    attentionBias: field(text, 'attention_bias', flag, 'true or false', false) || undefined,
    qkNorm: true,
    attentionOutputGate: field(text, 'attn_output_gate', flag, 'true or false', true) || undefined,
    rotaryDims: Math.trunc(headDim * partial),
    zeroCentredNorm: true,
    tiedEmbeddings: tieWordEmbeddings ?? field(text, 'tie_word_embeddings', flag, 'true or false', false),
    layerTypes: layerTypes as DecoderLayerType[],
    linearAttention: {
      numKeyHeads: int('linear_num_key_heads'),
      numValueHeads: int('linear_num_value_heads'),
      keyHeadDim: int('linear_key_head_dim'),
      valueHeadDim: int('linear_value_head_dim'),
      convKernel: int('linear_conv_kernel_dim'),
    },
  };
}
