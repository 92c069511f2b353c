// Lazy safetensors reader (single file or sharded with model.safetensors.index.json) and a small writer.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}}, then data.
// Tensors are read one at a time with positioned reads, so a checkpoint is never held in memory twice.

import { closeSync, existsSync, fstatSync, lstatSync, openSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { CheckpointError, describeJson, FileNotFoundError, InvalidRequestError } from '../errors.js';
import { DTYPE_BYTES, toFloat32, type DType } from './dtypes.js';
import { readAt } from './read-at.js';
import { ShardedCheckpoint } from './sharded.js';

export { DTYPE_BYTES, toFloat32, type DType } from './dtypes.js';

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte offset of the tensor's data in its file. */
  offset: number;
  byteLength: number;
  file: string;
}

/** Anything that can hand out named tensors lazily (safetensors today, PyTorch zips later). */
export interface TensorSource {
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** The tensor converted to float32 (exact for bf16/f16/f32). */
  float32(name: string): Float32Array;
  /** A 2-D tensor read one row at a time, where the source can do that without holding it all (a checkpoint file). */
  rows?(name: string): RowReader;
  close(): void;
}

/** Rows of a 2-D tensor, each converted to float32. */
export interface RowReader {
  readonly rows: number;
  readonly cols: number;
  read(index: number): Float32Array;
  close(): void;
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One .safetensors file, opened and validated; data is read on demand. */
export class SafetensorsFile {
  private fd: number | null;
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Record<string, string>;

  constructor(readonly path: string) {
    if (!existsSync(path)) throw new FileNotFoundError(`safetensors file not found: ${path}`);
    this.fd = openSync(path, 'r');
    try {
      const stat = fstatSync(this.fd);
      const what = `${path} is not a valid safetensors file`;
      if (!stat.isFile()) throw new CheckpointError(`${what}: it is a folder or device, not a file`);
      const size = stat.size;
      if (size < 8) throw new CheckpointError(`${what}: it has only ${size} bytes (truncated download?)`);
      const lenBuf = Buffer.alloc(8);
      readAt(this.fd, lenBuf, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen < 2 || headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
        throw new CheckpointError(`${what}: header length ${headerLen} does not fit a ${size}-byte file (truncated or corrupt)`);
      }
      const headerBuf = Buffer.alloc(headerLen);
      readAt(this.fd, headerBuf, 8);
      let header: Record<string, unknown>;
      try {
        header = JSON.parse(headerBuf.toString('utf8')) as Record<string, unknown>;
      } catch {
        throw new CheckpointError(`${what}: its header is not JSON (corrupt file?)`);
      }
      if (header === null || typeof header !== 'object' || Array.isArray(header)) {
        throw new CheckpointError(`${what}: its header is not a JSON object`);
      }
      const dataStart = 8 + headerLen;
      this.metadata = {};
      for (const [name, entry] of Object.entries(header)) {
        if (name === '__metadata__') {
          this.metadata = parseMetadata(entry, what);
          continue;
        }
        this.tensors.set(name, parseEntry(name, entry, dataStart, size, path));
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new CheckpointError(`tensor ${name} is not in ${this.path}`);
    return info;
  }

  /** The tensor's raw little-endian bytes. */
  raw(name: string): Buffer {
    const info = this.info(name);
    if (this.fd === null) throw new CheckpointError(`${this.path} was already closed`);
    const buf = Buffer.allocUnsafe(info.byteLength);
    if (readAt(this.fd, buf, info.offset) < buf.byteLength) {
      throw new CheckpointError(`${this.path} ended while reading ${name} (truncated file?)`);
    }
    return buf;
  }

  float32(name: string): Float32Array {
    return toFloat32(this.raw(name), this.info(name).dtype, name);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** `__metadata__`: null or an object of strings (as the reference reader requires), copied key by key. */
function parseMetadata(entry: unknown, what: string): Record<string, string> {
  if (entry === null) return {};
  if (typeof entry !== 'object' || Array.isArray(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
    throw new CheckpointError(`${what}: its __metadata__ is not an object of strings`);
  }
  // fromEntries defines own properties: a "__proto__" key stays a key instead of replacing the prototype.
  return Object.fromEntries(Object.entries(entry as Record<string, string>));
}

function parseEntry(name: string, entry: unknown, dataStart: number, fileSize: number, path: string): TensorInfo {
  const bad = (why: string) => new CheckpointError(`${path}: tensor ${name} ${why} (corrupt file?)`);
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (!e || typeof e !== 'object') throw bad('has no header entry');
  if (e.dtype === undefined) throw bad('has no dtype');
  if (typeof e.dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, e.dtype)) throw bad(`has unsupported dtype ${describeJson(e.dtype)}`);
  const dtype = e.dtype as DType;
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad('has an invalid shape');
  const shape = e.shape as number[];
  const offs = e.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad('has invalid data_offsets');
  }
  const [begin, end] = offs as [number, number];
  const count = shape.reduce((a, b) => a * b, 1);
  if (end < begin || end - begin !== count * DTYPE_BYTES[dtype]) throw bad(`has ${end - begin} bytes for shape [${shape}] ${dtype}`);
  if (dataStart + end > fileSize) {
    throw new CheckpointError(`${path} is truncated: tensor ${name} ends at byte ${dataStart + end} of a ${fileSize}-byte file`);
  }
  return { name, dtype, shape, offset: dataStart + begin, byteLength: end - begin, file: path };
}

/** A checkpoint folder's tensors: model.safetensors, or the shards listed by model.safetensors.index.json. */
export class SafetensorsCheckpoint extends ShardedCheckpoint {
  constructor(dir: string) {
    super(dir, { index: 'model.safetensors.index.json', single: 'model.safetensors' }, (path) => new SafetensorsFile(path));
  }
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
}

/**
 * Writes float32 tensors as a safetensors file (names sorted, header padded to 8 bytes). A regular file at `path` is
 * replaced; anything else there (a folder, a link, a pipe, a device) is refused. A failed write leaves nothing
 * behind and throws the file system's error.
 */
export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  const existing = lstatSync(path, { throwIfNoEntry: false });
  if (existing && !existing.isFile()) {
    throw new InvalidRequestError(`${path} is ${fileKind(existing)}, not a regular file: name a new file (or a regular one to replace)`);
  }
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of sorted) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`tensor ${t.name}: shape [${t.shape}] does not match ${t.data.length} values`);
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let pos = 8 + headerBytes.length;
  for (const t of sorted) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  // Write beside the target and rename, so a failed run never leaves a partial file that looks complete.
  const tmp = `${path}.partial`;
  try {
    writeFileSync(tmp, out);
    renameSync(tmp, path);
  } catch (err) {
    if (lstatSync(tmp, { throwIfNoEntry: false })?.isFile()) unlinkSync(tmp);
    throw err;
  }
}

/** What a file system entry that is not a regular file is, for a message. */
function fileKind(entry: { isDirectory(): boolean; isSymbolicLink(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (entry.isDirectory()) return 'a folder';
  if (entry.isSymbolicLink()) return 'a symbolic link';
  if (entry.isFIFO()) return 'a named pipe';
  if (entry.isSocket()) return 'a socket';
  return 'a device';
}
