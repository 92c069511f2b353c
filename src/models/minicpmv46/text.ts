// MiniCPM-V 4.6's language model as the shared decoder builds it: the Qwen3.5 hybrid (gated delta-net layers and gated
// full attention, zero-centred RMSNorms, partial RoPE, the head tied to embed_tokens) under `model.language_model.`.

import type { DecoderDims, DecoderGraphOptions } from '../parts/decoder.js';
import type { MiniCPMV46Config } from './config.js';

/** Where the checkpoint keeps the language model: the body at `model.language_model.`, no `lm_head.weight` when tied. */
export const TEXT_NAMES: Pick<DecoderGraphOptions, 'prefix' | 'bodyPrefix'> = { prefix: '', bodyPrefix: 'model.language_model.' };

/** The decoder's dims and flags from the typed config (`Qwen3_5TextConfig`). */
export function textDims(config: MiniCPMV46Config): DecoderDims {
  const t = config.text;
  return {
    hiddenSize: t.hiddenSize,
    numLayers: t.numHiddenLayers,
    numHeads: t.numAttentionHeads,
    numKvHeads: t.numKeyValueHeads,
    intermediateSize: t.intermediateSize,
    rmsNormEps: t.rmsNormEps,
    ropeTheta: t.ropeTheta,
    vocabSize: t.vocabSize,
    headDim: t.headDim,
    qkNorm: true,
    attentionOutputGate: true,
    rotaryDims: t.rotaryDim,
    zeroCentredNorm: true,
    tiedEmbeddings: config.tieWordEmbeddings,
    layerTypes: t.layerTypes,
    linearAttention: {
      numKeyHeads: t.linearNumKeyHeads,
      numValueHeads: t.linearNumValueHeads,
      keyHeadDim: t.linearKeyHeadDim,
      valueHeadDim: t.linearValueHeadDim,
      convKernel: t.linearConvKernelDim,
    },
  };
}
