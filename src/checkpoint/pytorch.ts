// Lazy reader for PyTorch checkpoints (`pytorch_model.bin`, the zip format torch.save writes since 1.6), single or
// sharded with pytorch_model.bin.index.json. Layout of one file:
//
//   <archive>/data.pkl      pickled state dict: name → _rebuild_tensor_v2(storage, offset, size, stride, ...)
//   <archive>/data/<key>    one uncompressed entry per storage, referenced by the pickle's persistent ids
//   <archive>/version, <archive>/byteorder (optional, "little")
//
// Only data.pkl is read whole; each tensor is a byte slice of its storage entry, read on demand.
// The pickle goes through a restricted unpickler (pickle.ts) that refuses any file that could execute code.

import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { CheckpointError, FileNotFoundError } from '../errors.js';
import { unpickleStateDict, type PickledTensor } from './pickle.js';
import { DTYPE_BYTES, toFloat32, type TensorInfo } from './safetensors.js';
import { ShardedCheckpoint } from './sharded.js';
import { ZipReader, type ZipEntry } from './zip.js';

const MAX_PICKLE_BYTES = 1024 * 1024 * 1024;

/** One torch.save zip file, opened and validated; tensor data is read on demand. */
export class PytorchFile {
  private readonly zip: ZipReader;
  readonly tensors = new Map<string, TensorInfo>();

  constructor(readonly path: string) {
    if (!existsSync(path)) throw new FileNotFoundError(`PyTorch checkpoint file not found: ${path}`);
    checkMagic(path);
    this.zip = new ZipReader(path);
    try {
      const prefix = this.archivePrefix();
      const byteorder = this.zip.entries.get(`${prefix}/byteorder`);
      if (byteorder) {
        const order = this.zip.readEntry(byteorder, 16).toString('utf8').trim();
        if (order !== 'little') throw new CheckpointError(`${path} was saved on a ${order}-endian machine; only little-endian checkpoints can be read`);
      }
      const pickled = unpickleStateDict(this.zip.readEntry(this.zip.entries.get(`${prefix}/data.pkl`)!, MAX_PICKLE_BYTES), path);
      for (const [name, tensor] of pickled) this.tensors.set(name, this.locate(name, tensor, prefix));
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** The archive's top folder (`archive`, `pytorch_model`, ...): the one holding data.pkl. */
  private archivePrefix(): string {
    const pickles = [...this.zip.entries.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name));
    if (pickles.length !== 1) {
      throw new CheckpointError(
        `${this.path} is a zip file but not a PyTorch checkpoint: expected one <folder>/data.pkl entry, found ${pickles.length}`,
      );
    }
    return pickles[0]!.slice(0, -'/data.pkl'.length);
  }

  /** Maps a pickled tensor to its bytes in the file, refusing layouts that are not one contiguous slice. */
  private locate(name: string, tensor: PickledTensor, prefix: string): TensorInfo {
    const { storage, storageOffset, shape, stride } = tensor;
    const bad = (why: string) => new CheckpointError(`${this.path}: tensor ${name} ${why}`);
    const entry: ZipEntry | undefined = this.zip.entries.get(`${prefix}/data/${storage.key}`);
    if (!entry) throw bad(`uses storage ${storage.key}, which the archive lacks (corrupt or incomplete file)`);
    const itemBytes = DTYPE_BYTES[storage.dtype];
    if (entry.size !== storage.numel * itemBytes) {
      throw bad(`uses storage ${storage.key} of ${storage.numel} ${storage.dtype} elements, but its entry has ${entry.size} bytes (corrupt file?)`);
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (count > 0) {
      let expected = 1;
      for (let d = shape.length - 1; d >= 0; d--) {
        if (shape[d] !== 1 && stride[d] !== expected) {
          throw bad(
            `has strides [${stride}] for shape [${shape}], not a contiguous row-major layout; ` +
              'save contiguous tensors ({k: v.contiguous() for k, v in state_dict.items()}) or convert the checkpoint to safetensors',
          );
        }
        expected *= shape[d]!;
      }
      if (storageOffset + count > storage.numel) {
        throw bad(`reaches element ${storageOffset + count} of a ${storage.numel}-element storage (corrupt file?)`);
      }
    }
    return {
      name,
      dtype: storage.dtype,
      shape,
      offset: this.zip.dataOffset(entry) + storageOffset * itemBytes,
      byteLength: count * itemBytes,
      file: this.path,
    };
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new CheckpointError(`tensor ${name} is not in ${this.path}`);
    return info;
  }

  /** The tensor's raw little-endian bytes (one positioned read of exactly its slice). */
  raw(name: string): Buffer {
    const info = this.info(name);
    return this.zip.read(info.offset, info.byteLength);
  }

  float32(name: string): Float32Array {
    return toFloat32(this.raw(name), this.info(name).dtype, name);
  }

  close(): void {
    this.zip.close();
  }
}

/** Tells a legacy (pre-1.6) torch.save file and other non-zip files apart from a truncated zip. */
function checkMagic(path: string): void {
  const head = Buffer.alloc(4);
  const fd = openSync(path, 'r');
  let n: number;
  try {
    if (!fstatSync(fd).isFile()) throw new CheckpointError(`${path} is not a PyTorch checkpoint: it is a folder or device, not a file`);
    n = readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  if (n === 4 && head.readUInt32LE(0) === 0x04034b50) return;
  if (n >= 1 && head[0] === 0x80) {
    throw new CheckpointError(
      `${path} uses the legacy torch.save format (a bare pickle, torch < 1.6), which cannot be read lazily; ` +
        're-save it with torch.save on torch >= 1.6 or convert it to safetensors',
    );
  }
  throw new CheckpointError(`${path} is not a PyTorch checkpoint: it does not start with a zip header (${n} bytes read; wrong or corrupt file?)`);
}

/** A checkpoint folder's tensors: pytorch_model.bin, or the shards listed by pytorch_model.bin.index.json. */
export class PytorchCheckpoint extends ShardedCheckpoint {
  constructor(dir: string) {
    super(dir, { index: 'pytorch_model.bin.index.json', single: 'pytorch_model.bin' }, (path) => new PytorchFile(path));
  }
}
