// Host-side position table of OmniLMM's Eva tower: the class-token row kept, the grid resampled to the image's
// patch grid. (The resampler's key table is `getAbsPos`, shared with MiniCPM-V 1.0.)

import { resamplePosEmbed } from '../parts/position-embedding.js';

/**
 * Port of timm `resample_abs_pos_embed(pos_embed, (h, w), num_prefix_tokens=1)`: the class-token row is kept as
 * is, the `from` grid that follows it is resized to `to` with torch's antialiased bicubic (skipped, as in timm,
 * when `to` is square with the stored number of positions). `table` is `[1 + gh·gw, d]`; the result `[1 + h·w, d]`.
 */
export function resampleEvaPosEmbed(
  table: Float32Array,
  from: readonly [number, number],
  to: readonly [number, number],
): Float32Array {
  const rows = 1 + from[0] * from[1];
  const dim = table.length / rows;
  if (!Number.isInteger(dim) || dim < 1) {
    throw new RangeError(`resampleEvaPosEmbed: ${table.length} values are not a class row plus a ${from[0]}×${from[1]} grid`);
  }
  const grid = resamplePosEmbed(table.subarray(dim), from, to);
  const out = new Float32Array(dim + grid.length);
  out.set(table.subarray(0, dim));
  out.set(grid, dim);
  return out;
}
