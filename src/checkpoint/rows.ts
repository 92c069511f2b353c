// Rows of a 2-D checkpoint tensor, read from its file one row at a time on demand. The token-embedding table is
// the use: a prompt needs a few hundred of its rows, and holding all of it costs 0.57 GB (MiniCPM-V 2.0, bf16) to
// 1 GB of memory for as long as the model is loaded.

import { closeSync, openSync } from 'node:fs';
import { CheckpointError } from '../errors.js';
import { readAt } from './read-at.js';
import { DTYPE_BYTES, toFloat32, type RowReader, type TensorInfo } from './safetensors.js';

export class TensorRows implements RowReader {
  readonly rows: number;
  readonly cols: number;
  private fd: number | null;
  private readonly rowBytes: number;
  private readonly buffer: Buffer;

  /** Opens the file of a contiguous 2-D floating-point tensor (its own descriptor: the checkpoint may be closed). */
  constructor(private readonly info: TensorInfo) {
    if (info.shape.length !== 2) {
      throw new CheckpointError(`${info.name} has shape [${info.shape}]; reading it by rows needs a 2-D tensor`);
    }
    [this.rows, this.cols] = info.shape as [number, number];
    this.rowBytes = this.cols * DTYPE_BYTES[info.dtype];
    this.buffer = Buffer.alloc(this.rowBytes);
    this.fd = openSync(info.file, 'r');
  }

  /** Row `index` converted to float32 (exact for bf16, f16 and f32). */
  read(index: number): Float32Array {
    if (this.fd === null) throw new CheckpointError(`the rows of ${this.info.name} were closed`);
    if (!Number.isInteger(index) || index < 0 || index >= this.rows) {
      throw new RangeError(`row ${index} is outside [0, ${this.rows}) of ${this.info.name}`);
    }
    if (readAt(this.fd, this.buffer, this.info.offset + index * this.rowBytes) < this.rowBytes) {
      throw new CheckpointError(
        `${this.info.file} ended while reading row ${index} of ${this.info.name}: the checkpoint changed on disk after it was loaded; load the model again`,
      );
    }
    return toFloat32(this.buffer, this.info.dtype, this.info.name);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
