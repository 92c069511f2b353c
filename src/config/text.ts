// TextConfig: the MiniCPM language model's hyper-parameters (MiniCPMConfig of modeling_minicpm.py / configuration_minicpm.py).

import { CheckpointError } from '../errors.js';
import { boolean, fromDict, integer, mustBeNull, number, optional, string, type FromSchema, type Origin } from './fromDict.js';

const TEXT_FIELDS = {
  hiddenSize: integer({ min: 1 }),
  numHiddenLayers: integer({ min: 1 }),
  numAttentionHeads: integer({ min: 1 }),
  /** Absent or null means "same as num_attention_heads" (MiniCPMConfig). */
  numKeyValueHeads: optional(integer({ min: 1 })),
  intermediateSize: integer({ min: 1 }),
  rmsNormEps: number({ min: 0 }),
  ropeTheta: number({ min: 0, default: 10000 }),
  ropeScaling: mustBeNull('RoPE scaling (linear / dynamic NTK) is not implemented'),
  maxPositionEmbeddings: integer({ min: 1 }),
  vocabSize: integer({ min: 1 }),
  /** Token embeddings are multiplied by this. */
  scaleEmb: number(),
  /** Logits are computed from h / (hidden_size / dim_model_base). */
  dimModelBase: number({ min: 1 }),
  /** Residual branches are multiplied by scale_depth / sqrt(num_hidden_layers). */
  scaleDepth: number(),
  tieWordEmbeddings: boolean({ default: true }),
  attentionBias: boolean({ default: false, oneOf: [false], why: 'MiniCPM projections have no bias' }),
  hiddenAct: string({ default: 'silu', oneOf: ['silu'], why: 'the MLP is built as down(silu(gate(x)) * up(x))' }),
  bosTokenId: integer({ min: 0, default: 1 }),
  eosTokenId: integer({ min: 0, default: 2 }),
};

export type TextConfig = Omit<FromSchema<typeof TEXT_FIELDS>, 'numKeyValueHeads'> & {
  numKeyValueHeads: number;
  /** hidden_size / num_attention_heads. */
  headDim: number;
};

/** Reads the LLM part of a MiniCPM-V config.json (top-level keys) and checks that the sizes fit together. */
export function parseTextConfig(raw: unknown, origin: Origin): TextConfig {
  const dict = fromDict(raw, TEXT_FIELDS, origin);
  const text = { ...dict, numKeyValueHeads: dict.numKeyValueHeads ?? dict.numAttentionHeads };
  const bad = (why: string) => new CheckpointError(`${origin.file}: ${why}`);
  if (text.hiddenSize % text.numAttentionHeads !== 0) {
    throw bad(`hidden_size ${text.hiddenSize} is not a multiple of num_attention_heads ${text.numAttentionHeads}`);
  }
  if (text.numAttentionHeads % text.numKeyValueHeads !== 0) {
    throw bad(`num_attention_heads ${text.numAttentionHeads} is not a multiple of num_key_value_heads ${text.numKeyValueHeads}`);
  }
  const headDim = text.hiddenSize / text.numAttentionHeads;
  if (headDim % 2 !== 0) throw bad(`the attention head size ${headDim} must be even for rotary embeddings`);
  return { ...text, headDim };
}
