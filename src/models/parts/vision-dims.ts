// A vision tower's sizes and the checked read of a weight: what host code needs without the graph builder.

import type { TensorSource } from '../../checkpoint/safetensors.js';
import { CheckpointError } from '../../errors.js';

/** Sizes of a timm VisionTransformer tower. */
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

/** The tower sizes of a typed vision config (MiniCPM-V's SigLIP, OmniLMM's EVA02). */
export function vitDims(v: {
  patchSize: number; embedDim: number; usedDepth: number; numHeads: number; mlpHiddenDim: number; normEps: number;
  posEmbedGrid: [number, number];
}): VisionDims {
  return {
    patchSize: v.patchSize, embedDim: v.embedDim, depthUsed: v.usedDepth, numHeads: v.numHeads,
    mlpHidden: v.mlpHiddenDim, normEps: v.normEps, posGrid: v.posEmbedGrid,
  };
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
