// Host-side inputs of the vision graphs that depend on the slice size: patches, the vision tower's resampled
// position table, and the resampler's key position table (2.0: 2-D sin-cos at the slice's grid; 1.0: its stored
// table interpolated to the grid). Keeping them here lets one graph serve every slice size.

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
  const dim = channelCount(table, from, 'resamplePosEmbed');
  const [gh, gw] = from;
  const [h, w] = to;
  if (h === w && h * w === gh * gw) return table;
  return resizeTable(table, dim, from, to, antialiasBicubicTaps(gh, h), antialiasBicubicTaps(gw, w));
}

/**
 * Port of the MiniCPM-V 1.0 resampler's `get_abs_pos`: its stored `[gh·gw, E]` table resized to the key grid
 * `[h·w, E]` by torch `F.interpolate(mode='bicubic', align_corners=False)` without antialias, computed in float64 and
 * rounded once. Returned as is when the grids are equal.
 */
export function getAbsPos(table: Float32Array, from: readonly [number, number], to: readonly [number, number]): Float32Array {
  const dim = channelCount(table, from, 'getAbsPos');
  if (from[0] === to[0] && from[1] === to[1]) return table;
  return resizeTable(table, dim, from, to, plainBicubicTaps(from[0], to[0]), plainBicubicTaps(from[1], to[1]));
}

/** Per output index: the input indices it reads and their weights. */
interface Taps {
  indices: Int32Array;
  weights: Float64Array;
}

/** The channel count of a `[rows·cols, d]` table; throws when the length does not fit the grid. */
function channelCount(table: Float32Array, grid: readonly [number, number], caller: string): number {
  const dim = table.length / (grid[0] * grid[1]);
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`${caller}: ${table.length} values are not a ${grid[0]}×${grid[1]} grid`);
  return dim;
}

/** A separable resize of a `[rows, cols, d]` table: pass 1 along the columns, pass 2 along the rows, in float64. */
function resizeTable(
  table: Float32Array,
  dim: number,
  from: readonly [number, number],
  to: readonly [number, number],
  rowTaps: readonly Taps[],
  colTaps: readonly Taps[],
): Float32Array {
  const [gh, gw] = from;
  const [h, w] = to;
  const wide = new Float64Array(gh * w * dim);
  for (let y = 0; y < gh; y++) {
    for (let x = 0; x < w; x++) {
      const dst = (y * w + x) * dim;
      const { indices, weights } = colTaps[x]!;
      for (let t = 0; t < weights.length; t++) {
        const src = (y * gw + indices[t]!) * dim;
        const k = weights[t]!;
        for (let e = 0; e < dim; e++) wide[dst + e]! += k * table[src + e]!;
      }
    }
  }
  const out = new Float32Array(h * w * dim);
  const acc = new Float64Array(dim);
  for (let y = 0; y < h; y++) {
    const { indices, weights } = rowTaps[y]!;
    for (let x = 0; x < w; x++) {
      acc.fill(0);
      for (let t = 0; t < weights.length; t++) {
        const src = (indices[t]! * w + x) * dim;
        const k = weights[t]!;
        for (let e = 0; e < dim; e++) acc[e]! += k * wide[src + e]!;
      }
      out.set(acc, (y * w + x) * dim);
    }
  }
  return out;
}

/** Keys cubic convolution kernel: a = −0.5 for torch's antialiased bicubic (and Pillow's), −0.75 for the plain one. */
function keysCubic(x: number, a: number): number {
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/**
 * torch `_compute_weights_aa` for bicubic: the a = −0.5 kernel, stretched by the scale when shrinking; taps outside
 * the input are dropped, not clamped, and the rest renormalised.
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
    const indices = Int32Array.from({ length: end - start }, (_, t) => start + t);
    const weights = Float64Array.from(indices, (j) => keysCubic((j - center + 0.5) * invScale, -0.5));
    const total = weights.reduce((sum, k) => sum + k, 0);
    if (total !== 0) for (let t = 0; t < weights.length; t++) weights[t]! /= total;
    taps.push({ indices, weights });
  }
  return taps;
}

/**
 * torch `upsample_bicubic2d` (align_corners=False) along one axis: source position `(i + 0.5)·in/out − 0.5`, the
 * a = −0.75 kernel on the four neighbours `floor − 1 … floor + 2`, whose indices are clamped to the border.
 */
function plainBicubicTaps(inSize: number, outSize: number): Taps[] {
  const scale = inSize / outSize;
  const taps: Taps[] = [];
  for (let i = 0; i < outSize; i++) {
    const source = (i + 0.5) * scale - 0.5;
    const floor = Math.floor(source);
    const frac = source - floor;
    const indices = Int32Array.from([-1, 0, 1, 2], (o) => Math.min(Math.max(floor + o, 0), inSize - 1));
    const weights = Float64Array.from([-1, 0, 1, 2], (o) => keysCubic(frac - o, -0.75));
    taps.push({ indices, weights });
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
