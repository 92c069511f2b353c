// Host-side inputs of the vision graphs that depend on the slice size: patches, the vision tower's resampled
// position table, and the resampler's 2-D sin-cos table. Keeping them here lets one graph serve every slice size.

/** The patch grid [rows, cols] of an H×W slice: `ceil(H/p) × ceil(W/p)` (timm pads right/bottom). */
export function patchGrid(height: number, width: number, patchSize: number): [number, number] {
  return [Math.ceil(height / patchSize), Math.ceil(width / patchSize)];
}

/**
 * Cuts a normalised CHW float32 slice into `[rows·cols, 3·p·p]` rows, patches row-major, each patch in the conv
 * weight's (channel, ky, kx) order, so that `patches @ W.reshape(d, 3·p·p)ᵀ` equals timm's `patch_embed.proj`.
 * Pixels past the right/bottom edge are zero (timm PatchEmbed with `dynamic_img_pad`).
 */
export function patchify(pixels: Float32Array, height: number, width: number, patchSize: number): Float32Array {
  const channels = 3;
  if (pixels.length !== channels * height * width) {
    throw new RangeError(`patchify: ${pixels.length} values do not form a 3×${height}×${width} image`);
  }
  const [rows, cols] = patchGrid(height, width, patchSize);
  const rowLength = channels * patchSize * patchSize;
  const out = new Float32Array(rows * cols * rowLength);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const base = (r * cols + c) * rowLength;
      for (let ch = 0; ch < channels; ch++) {
        for (let ky = 0; ky < patchSize; ky++) {
          const y = r * patchSize + ky;
          if (y >= height) break;
          const src = (ch * height + y) * width + c * patchSize;
          const dst = base + (ch * patchSize + ky) * patchSize;
          const n = Math.min(patchSize, width - c * patchSize);
          out.set(pixels.subarray(src, src + n), dst);
        }
      }
    }
  }
  return out;
}

/**
 * Port of timm `resample_abs_pos_embed` (no prefix tokens): the stored `[gh·gw, d]` table resized to `[h·w, d]` by
 * torch `F.interpolate(mode='bicubic', antialias=True, align_corners=False)`, computed in float64 and rounded once.
 * Like timm, the table is returned as is when the new grid is square with the stored number of positions.
 */
export function resamplePosEmbed(
  table: Float32Array,
  from: readonly [number, number],
  to: readonly [number, number],
): Float32Array {
  const [gh, gw] = from;
  const [h, w] = to;
  const dim = table.length / (gh * gw);
  if (!Number.isInteger(dim)) throw new RangeError(`resamplePosEmbed: ${table.length} values are not a ${gh}×${gw} grid`);
  if (h === w && h * w === gh * gw) return table;

  // Pass 1 along the columns: [gh, gw, d] → [gh, w, d]; pass 2 along the rows: → [h, w, d].
  const colTaps = antialiasBicubicTaps(gw, w);
  const rowTaps = antialiasBicubicTaps(gh, h);
  const wide = new Float64Array(gh * w * dim);
  for (let y = 0; y < gh; y++) {
    for (let x = 0; x < w; x++) {
      const dst = (y * w + x) * dim;
      const { start, weights } = colTaps[x]!;
      for (let t = 0; t < weights.length; t++) {
        const src = (y * gw + start + t) * dim;
        const k = weights[t]!;
        for (let e = 0; e < dim; e++) wide[dst + e]! += k * table[src + e]!;
      }
    }
  }
  const out = new Float32Array(h * w * dim);
  const acc = new Float64Array(dim);
  for (let y = 0; y < h; y++) {
    const { start, weights } = rowTaps[y]!;
    for (let x = 0; x < w; x++) {
      acc.fill(0);
      for (let t = 0; t < weights.length; t++) {
        const src = ((start + t) * w + x) * dim;
        const k = weights[t]!;
        for (let e = 0; e < dim; e++) acc[e]! += k * wide[src + e]!;
      }
      out.set(acc, (y * w + x) * dim);
    }
  }
  return out;
}

interface Taps {
  start: number;
  weights: Float64Array;
}

/** Keys cubic kernel with a = −0.5, the filter of torch's antialiased bicubic (and of Pillow's BICUBIC). */
function keysCubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/**
 * Per output index: the first input index and the normalised weights (torch `_compute_weights_aa`): the kernel is
 * stretched by the scale when shrinking, and taps outside the input are dropped, not clamped.
 */
function antialiasBicubicTaps(inSize: number, outSize: number): Taps[] {
  const scale = inSize / outSize;
  const support = 2 * Math.max(scale, 1);
  const invScale = scale >= 1 ? 1 / scale : 1;
  const taps: Taps[] = [];
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const end = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights = new Float64Array(end - start);
    let total = 0;
    for (let j = start; j < end; j++) {
      const k = keysCubic((j - center + 0.5) * invScale);
      weights[j - start] = k;
      total += k;
    }
    if (total !== 0) for (let t = 0; t < weights.length; t++) weights[t]! /= total;
    taps.push({ start, weights });
  }
  return taps;
}

/**
 * Port of the official resampler's `get_2d_sincos_pos_embed(E, (h, w))`: row p = r·w + c is
 * `[sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)]` with `ω_k = 1/10000^(k/(E/4))`, k < E/4 — the first half encodes the
 * column. numpy does every step in float32 there (float32 grid and ω), so each step is rounded the same way here.
 */
export function get2dSinCosPosEmbed(embedDim: number, grid: readonly [number, number]): Float32Array {
  if (embedDim % 4 !== 0) throw new RangeError(`get2dSinCosPosEmbed: embed dim ${embedDim} is not a multiple of 4`);
  const [h, w] = grid;
  const quarter = embedDim / 4;
  const fr = Math.fround;
  const omega = Float32Array.from({ length: quarter }, (_, k) => fr(1 / fr(10000 ** fr(k / quarter))));
  const out = new Float32Array(h * w * embedDim);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const row = (r * w + c) * embedDim;
      for (let k = 0; k < quarter; k++) {
        const colAngle = fr(c * omega[k]!);
        const rowAngle = fr(r * omega[k]!);
        out[row + k] = Math.sin(colAngle);
        out[row + quarter + k] = Math.cos(colAngle);
        out[row + 2 * quarter + k] = Math.sin(rowAngle);
        out[row + 3 * quarter + k] = Math.cos(rowAngle);
      }
    }
  }
  return out;
}
