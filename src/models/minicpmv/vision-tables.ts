// The vision tower's stored position table, which the host interpolates per slice size (./vision-encoder.ts).

import type { TensorSource } from '../../checkpoint/safetensors.js';
import { readWeight, type VisionDims } from '../parts/vision-dims.js';

/** The stored position table `[gh·gw, d]` (`vpm.pos_embed` is [1, gh·gw, d]). */
export function readVisionPosEmbed(source: TensorSource, dims: VisionDims, prefix = 'vpm.'): Float32Array {
  return readWeight(source, `${prefix}pos_embed`, [1, dims.posGrid[0] * dims.posGrid[1], dims.embedDim]);
}
