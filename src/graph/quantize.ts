// Weight-only block quantisation of linear layers for ONNX Runtime's com.microsoft MatMulNBits.
//
// MatMulNBits computes Y = A · dequant(B)ᵀ with
//   A           float [.., K]
//   B           uint8 [N, k_blocks, block_size · bits / 8]   row n of a torch Linear weight [out = N, in = K],
//                                                           cut along K into blocks; 4-bit codes packed low nibble first
//   scales      float [N · k_blocks]
//   zero_points uint8 [N · ⌈k_blocks · bits / 8⌉]            optional; absent = 2^(bits−1) for every block
// and dequant(code) = (code − zero_point) · scale. A torch weight [out, in] is therefore used as stored, untransposed.

import type { Graph } from './builder.js';

/**
 * How the linear layers of a model keep their weights and compute: fp32 (the reference); int8 and int4 weights in
 * blocks of 128 for MatMulNBits (fast on few rows: decoding); int8-dq: int8 weights per output channel with int8
 * compute by DynamicQuantizeMatMul (fast on many rows: image and prompt tokens, slower than MatMulNBits on one).
 */
export type WeightPrecision = 'fp32' | 'int8' | 'int4' | 'int8-dq';

export const WEIGHT_PRECISIONS: readonly WeightPrecision[] = ['fp32', 'int8', 'int4', 'int8-dq'];

/** The precisions that build MatMulNBits weights. */
export type BlockPrecision = 'int8' | 'int4';

export interface QuantizeOptions {
  bits: 4 | 8;
  /** Values of K per scale: a power of two ≥ 16. */
  blockSize: number;
  /** true: codes centred on 2^(bits−1) (no zero_points input); false: per-block min/max with zero points. */
  symmetric: boolean;
}

/** A weight [rows = N, cols = K] in MatMulNBits layout. */
export interface QuantizedMatrix extends QuantizeOptions {
  rows: number;
  cols: number;
  blocksPerRow: number;
  /** [rows, blocksPerRow, blockSize · bits / 8] */
  codes: Uint8Array;
  /** [rows · blocksPerRow] */
  scales: Float32Array;
  /** [rows · ⌈blocksPerRow · bits / 8⌉] packed like the codes, or null when symmetric. */
  zeroPoints: Uint8Array | null;
}

/**
 * The block layout the decoder uses for a precision: 128 values per block (prefill ~1.4× faster than with 32) and
 * symmetric codes (measured on random weights of MiniCPM-V shapes, zero points lower the int4 weight error by ~3 % at
 * block 128, and cost a fourth input).
 */
export function quantizeOptionsFor(precision: BlockPrecision): QuantizeOptions {
  return { bits: precision === 'int8' ? 8 : 4, blockSize: 128, symmetric: true };
}

/**
 * Quantises a row-major float32 matrix [rows, cols] block by block along each row (the last block is padded with
 * zeros when cols is not a multiple of the block size).
 * Symmetric: the value of largest magnitude m maps to code 0, the end of the range with one more step:
 * scale = m / −2^(bits−1) (negative when m > 0), code = round(w / scale) + 2^(bits−1).
 * With zero points: scale = (max − min) / (2^bits − 1) over a range that includes 0, zp = round(−min / scale),
 * code = round(w / scale) + zp. Codes are clamped to [0, 2^bits − 1]; w / scale is computed as w · (1 / scale).
 */
export function quantizeMatrix(w: Float32Array, rows: number, cols: number, options: QuantizeOptions): QuantizedMatrix {
  const { bits, blockSize, symmetric } = options;
  if (bits !== 4 && bits !== 8) throw new Error(`MatMulNBits weights have 4 or 8 bits, not ${bits}`);
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) throw new Error(`block size ${blockSize} is not a power of two ≥ 16`);
  if (w.length !== rows * cols) throw new Error(`a [${rows}, ${cols}] matrix has ${rows * cols} values, got ${w.length}`);
  const blocksPerRow = Math.ceil(cols / blockSize);
  const blobBytes = (blockSize * bits) / 8;
  const maxCode = (1 << bits) - 1;
  const centre = 1 << (bits - 1);
  const codes = new Uint8Array(rows * blocksPerRow * blobBytes);
  const scales = new Float32Array(rows * blocksPerRow);
  const zpBytesPerRow = Math.ceil((blocksPerRow * bits) / 8);
  const zeroPoints = symmetric ? null : new Uint8Array(rows * zpBytesPerRow);
  // The code of w[at] (0 ≤ k < count) or of the zero padding after the row's end.
  const code = (at: number, k: number, count: number, inverse: number, zero: number): number => {
    if (k >= count) return zero;
    const c = Math.round(w[at]! * inverse) + zero;
    return c < 0 ? 0 : c > maxCode ? maxCode : c;
  };

  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocksPerRow; b++) {
      const start = r * cols + b * blockSize;
      const count = Math.min(blockSize, cols - b * blockSize);
      let scale: number;
      let zero = centre;
      if (symmetric) {
        let extreme = 0;
        for (let k = start; k < start + count; k++) if (Math.abs(w[k]!) > Math.abs(extreme)) extreme = w[k]!;
        scale = Math.fround(extreme / -centre);
      } else {
        let min = 0;
        let max = 0;
        for (let k = start; k < start + count; k++) {
          min = Math.min(min, w[k]!);
          max = Math.max(max, w[k]!);
        }
        scale = Math.fround((max - min) / maxCode);
        if (scale !== 0) zero = Math.min(maxCode, Math.max(0, Math.round(-min / scale)));
        packCode(zeroPoints!, r * zpBytesPerRow, b, zero, bits);
      }
      const index = r * blocksPerRow + b;
      scales[index] = scale;
      const blob = index * blobBytes;
      const inverse = scale === 0 ? 0 : 1 / scale;
      if (bits === 8) {
        for (let k = 0; k < blockSize; k++) codes[blob + k] = code(start + k, k, count, inverse, zero);
      } else {
        for (let k = 0; k < blockSize; k += 2) {
          codes[blob + (k >> 1)] = code(start + k, k, count, inverse, zero) | (code(start + k + 1, k + 1, count, inverse, zero) << 4);
        }
      }
    }
  }
  return { ...options, rows, cols, blocksPerRow, codes, scales, zeroPoints };
}

/** The float32 matrix [rows, cols] that a quantised one stands for: (code − zero_point) · scale. */
export function dequantizeMatrix(q: QuantizedMatrix): Float32Array {
  const { rows, cols, blockSize, blocksPerRow, bits } = q;
  const out = new Float32Array(rows * cols);
  const blobBytes = (blockSize * bits) / 8;
  const zpBytesPerRow = Math.ceil((blocksPerRow * bits) / 8);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const b = Math.floor(c / blockSize);
      const index = r * blocksPerRow + b;
      const zero = q.zeroPoints ? readCode(q.zeroPoints, r * zpBytesPerRow, b, bits) : 1 << (bits - 1);
      const code = readCode(q.codes, index * blobBytes, c % blockSize, bits);
      out[r * cols + c] = Math.fround((code - zero) * q.scales[index]!);
    }
  }
  return out;
}

/**
 *   x [.., K] ── MatMulNBits(codes, scales[, zero_points]; accuracy_level 4) ──► [.., N]
 * accuracy_level 4 lets the kernel quantise the activations to int8 on the fly (~8× faster decode than level 0);
 * level 0 computes in float32 from the dequantised weights.
 */
export function matMulNBits(g: Graph, x: string, q: QuantizedMatrix, weightName: string, node: string, accuracyLevel = 4): string {
  const blobBytes = (q.blockSize * q.bits) / 8;
  const inputs = [
    x,
    g.weight(`${weightName}.q${q.bits}`, q.codes, [q.rows, q.blocksPerRow, blobBytes], 'uint8'),
    g.weight(`${weightName}.scales`, q.scales, [q.rows * q.blocksPerRow]),
  ];
  if (q.zeroPoints) inputs.push(g.weight(`${weightName}.zero_points`, q.zeroPoints, [q.zeroPoints.length], 'uint8'));
  return g.op(
    'MatMulNBits',
    inputs,
    `${node}/MatMulNBits`,
    { K: q.cols, N: q.rows, bits: q.bits, block_size: q.blockSize, accuracy_level: accuracyLevel },
    'com.microsoft',
  );
}

function packCode(target: Uint8Array, base: number, k: number, code: number, bits: number): void {
  if (bits === 8) {
    target[base + k] = code;
    return;
  }
  const byte = base + (k >> 1);
  target[byte] = k & 1 ? (target[byte]! & 0x0f) | (code << 4) : (target[byte]! & 0xf0) | code;
}

function readCode(source: Uint8Array, base: number, k: number, bits: number): number {
  if (bits === 8) return source[base + k]!;
  const byte = source[base + (k >> 1)]!;
  return k & 1 ? byte >> 4 : byte & 0x0f;
}

/** A weight [out = N, in = K] as DynamicQuantizeMatMul takes it: int8 codes transposed to [K, N], one scale per column. */
export interface Int8Columns {
  rows: number;
  cols: number;
  /** [cols = K, rows = N], the torch weight transposed. */
  codes: Int8Array;
  /** [rows = N]: w[n, k] ≈ codes[k, n] · scales[n]. */
  scales: Float32Array;
}

/**
 * Quantises a torch Linear weight [rows = N, cols = K] symmetrically per output channel: scale = max|w[n, ·]| / 127,
 * code = clamp(round(w / scale), −127, 127), stored transposed ([K, N]) for DynamicQuantizeMatMul's B.
 */
export function quantizeColumnsInt8(w: Float32Array, rows: number, cols: number): Int8Columns {
  if (w.length !== rows * cols) throw new Error(`a [${rows}, ${cols}] matrix has ${rows * cols} values, got ${w.length}`);
  const codes = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  for (let n = 0; n < rows; n++) {
    let extreme = 0;
    for (let k = 0; k < cols; k++) extreme = Math.max(extreme, Math.abs(w[n * cols + k]!));
    const scale = Math.fround(extreme / 127);
    scales[n] = scale;
    const inverse = scale === 0 ? 0 : 1 / scale;
    for (let k = 0; k < cols; k++) {
      const c = Math.round(w[n * cols + k]! * inverse);
      codes[k * rows + n] = c < -127 ? -127 : c > 127 ? 127 : c;
    }
  }
  return { rows, cols, codes, scales };
}

/**
 *   x [.., K] ── DynamicQuantizeMatMul(B int8 [K, N], b_scale [N][, bias]) ──► [.., N]
 * ONNX Runtime quantises x to uint8 per tensor (one scale and zero point for the whole input, from its min and max)
 * at each run and multiplies in int8 (VNNI where the CPU has it): int8 compute, ~4× a float32 or MatMulNBits matmul
 * on hundreds of rows (scripts/int8-microbench.ts); the per-tensor activation scale is where its error comes from.
 */
export function dynamicQuantizeMatMul(g: Graph, x: string, q: Int8Columns, weightName: string, node: string, bias?: string): string {
  const inputs = [
    x,
    g.weight(`${weightName}.i8`, q.codes, [q.cols, q.rows], 'int8'),
    g.weight(`${weightName}.col_scales`, q.scales, [q.rows]),
  ];
  if (bias !== undefined) inputs.push('', bias); // no b_zero_point: symmetric codes
  return g.op('DynamicQuantizeMatMul', inputs, `${node}/DynamicQuantizeMatMul`, undefined, 'com.microsoft');
}
