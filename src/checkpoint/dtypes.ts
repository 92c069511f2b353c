// Tensor element types as checkpoints name them, and their conversion to float32 (no Node API: browsers use it too).

import { CheckpointError } from '../errors.js';

export type DType = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'I8' | 'F64' | 'BOOL' | 'I16' | 'U16';

export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Converts raw little-endian tensor bytes to float32 (bf16 and f16 exactly). */
export function toFloat32(raw: Uint8Array, dtype: DType, name = 'tensor'): Float32Array {
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(raw.byteLength / 4);
      new Uint8Array(out.buffer).set(raw);
      return out;
    }
    case 'BF16': {
      // bf16 is the high half of a float32: widen through typed-array views (little-endian hosts: every Node and browser platform).
      const n = raw.byteLength / 2;
      const aligned = raw.byteOffset % 2 === 0 ? raw : raw.slice();
      const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = halves[i]! << 16;
      return new Float32Array(bits.buffer);
    }
    case 'F16': {
      const n = raw.byteLength / 2;
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
      return out;
    }
    case 'F64': {
      const n = raw.byteLength / 8;
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    }
    default:
      throw new CheckpointError(`${name} has dtype ${dtype}, expected a floating-point tensor`);
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
