// What the random-checkpoint generators share (make-random-checkpoint.ts: MiniCPM-V 2.0, make-random-omnilmm.ts:
// OmniLMM-12B): deterministic bf16 values streamed chunk by chunk, safetensors shards cut as transformers does, a
// PyTorch zip (`pytorch_model.bin`) writer, and a SentencePiece model padded to the LLM's vocabulary.
//
// Values: deterministic from the seed and the tensor name, ~N(0, 0.02) (norm weights ~N(1, 0.02), so activations keep
// realistic scales). Each value is an Irwin–Hall sum of the four bytes of one 32-bit mulberry32 draw, scaled to
// σ = 0.02 (1021 distinct levels, tails cut at ±3.5σ): fast, and plenty for speed and memory measurements.
// Data is generated and written in chunks, so memory stays small whatever the tensor size.

import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ProtoWriter } from '../src/graph/protobuf.js';

export interface TensorSpec {
  name: string;
  shape: number[];
  /** Mean of the values: 1 for norm weights, 0 for everything else. */
  mean: 0 | 1;
}

/** transformers' "5GB" (decimal), the default max_shard_size of save_pretrained. */
export const MAX_SHARD_BYTES = 5_000_000_000;
const SIGMA = 0.02;
const CHUNK_VALUES = 1 << 22;

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
export const bytesOf = (spec: TensorSpec) => 2 * count(spec.shape);
const byName = (a: TensorSpec, b: TensorSpec) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** transformers 4.36 `shard_checkpoint`: start a new shard when the next tensor would exceed the limit. */
function cutShards(specs: TensorSpec[], maxShardBytes = MAX_SHARD_BYTES): TensorSpec[][] {
  const shards: TensorSpec[][] = [[]];
  let size = 0;
  for (const spec of specs) {
    if (size + bytesOf(spec) > maxShardBytes && shards[shards.length - 1]!.length > 0) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1]!.push(spec);
    size += bytesOf(spec);
  }
  return shards;
}

/** bf16 bits (round to nearest even) of every Irwin–Hall sum 0…1020, for values with the given mean. */
function bf16Table(mean: number): Uint16Array {
  const bytes = 4;
  const center = (bytes * 255) / 2;
  const sd = Math.sqrt((bytes * (256 * 256 - 1)) / 12);
  const f32 = new Float32Array(1);
  const bits = new Uint32Array(f32.buffer);
  const table = new Uint16Array(bytes * 255 + 1);
  for (let s = 0; s < table.length; s++) {
    f32[0] = mean + ((s - center) / sd) * SIGMA;
    const b = bits[0]!;
    table[s] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return table;
}

const WEIGHT_TABLE = bf16Table(0);
const NORM_TABLE = bf16Table(1);

/** 32-bit FNV-1a, to give every tensor its own stream. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) h = Math.imul(h ^ byte, 0x01000193);
  return h >>> 0;
}

/** Streams one tensor's bf16 values, deterministic from (seed, name), chunk by chunk (the chunk is reused). */
function* tensorChunks(spec: TensorSpec, seed: number): Generator<Uint16Array> {
  const table = spec.mean === 1 ? NORM_TABLE : WEIGHT_TABLE;
  let state = fnv1a(`${seed}/${spec.name}`);
  const chunk = new Uint16Array(CHUNK_VALUES);
  for (let left = count(spec.shape); left > 0; left -= CHUNK_VALUES) {
    const n = Math.min(left, CHUNK_VALUES);
    for (let i = 0; i < n; i++) {
      // mulberry32
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), state | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const r = (t ^ (t >>> 14)) >>> 0;
      chunk[i] = table[(r & 0xff) + ((r >>> 8) & 0xff) + ((r >>> 16) & 0xff) + (r >>> 24)]!;
    }
    yield chunk.subarray(0, n);
  }
}

const asBytes = (chunk: Uint16Array) => new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);

class Progress {
  private done = 0;
  private lastPercent = -1;
  private readonly started = Date.now();

  constructor(private readonly total: number) {}

  add(bytes: number, label: string): void {
    this.done += bytes;
    const percent = Math.floor((100 * this.done) / this.total);
    if (percent === this.lastPercent) return;
    this.lastPercent = percent;
    const line = `${label}: ${(this.done / 1e9).toFixed(2)} / ${(this.total / 1e9).toFixed(2)} GB (${percent}%), ${((Date.now() - this.started) / 1000).toFixed(0)} s`;
    if (process.stderr.isTTY) process.stderr.write(`\r${line}`);
    else if (percent % 10 === 0) process.stderr.write(`${line}\n`);
  }

  end(): void {
    if (process.stderr.isTTY) process.stderr.write('\n');
  }
}

/** A file written through positioned writes into `<path>.partial`, renamed into place by `finish`. */
class OutputFile {
  private readonly fd: number;
  private readonly partial: string;
  position = 0;

  constructor(private readonly path: string) {
    this.partial = `${path}.partial`;
    this.fd = openSync(this.partial, 'w');
  }

  write(bytes: Uint8Array, at = this.position): void {
    for (let done = 0; done < bytes.byteLength; ) done += writeSync(this.fd, bytes, done, bytes.byteLength - done, at + done);
    if (at === this.position) this.position += bytes.byteLength;
  }

  finish(): void {
    closeSync(this.fd);
    renameSync(this.partial, this.path);
  }

  abandon(): void {
    closeSync(this.fd);
  }
}

function writeFileAtomically(path: string, write: (file: OutputFile) => void): void {
  const file = new OutputFile(path);
  try {
    write(file);
  } catch (err) {
    file.abandon();
    throw err;
  }
  file.finish();
}

/** One safetensors shard: header (names sorted, padded to 8 bytes), then the data in the same order. */
function writeShard(path: string, specs: TensorSpec[], seed: number, progress: Progress, label: string): void {
  const sorted = [...specs].sort(byName);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const spec of sorted) {
    header[spec.name] = { dtype: 'BF16', shape: spec.shape, data_offsets: [offset, offset + bytesOf(spec)] };
    offset += bytesOf(spec);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length));
  writeFileAtomically(path, (file) => {
    file.write(length);
    file.write(headerBytes);
    for (const spec of sorted) {
      for (const chunk of tensorChunks(spec, seed)) {
        file.write(asBytes(chunk));
        progress.add(chunk.byteLength, label);
      }
    }
  });
}

/**
 * Writes `specs` (in state_dict order, which decides the cut) as bf16 safetensors shards named like transformers'
 * (`model-00001-of-0000N.safetensors`) with `model.safetensors.index.json`. Returns the number of shards.
 */
export function writeSafetensorsCheckpoint(out: string, specs: TensorSpec[], seed: number, maxShardBytes = MAX_SHARD_BYTES): number {
  const shards = cutShards(specs, maxShardBytes);
  const total = specs.reduce((sum, s) => sum + bytesOf(s), 0);
  const shardName = (k: number) => `model-${String(k + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
  const progress = new Progress(total);
  shards.forEach((shard, k) => writeShard(join(out, shardName(k)), shard, seed, progress, shardName(k)));
  progress.end();
  const weightMap = Object.fromEntries(
    shards.flatMap((shard, k) => shard.map((s) => [s.name, shardName(k)] as const)).sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  writeFileSync(join(out, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`);
  return shards.length;
}

/** The fixture's tokenizer.model with CONTROL pieces `<reserved_N>` appended up to `pieces` (protobuf repeated field 1). */
export function paddedTokenizer(tokenizerModel: string, pieces: number): Uint8Array {
  const original = readFileSync(tokenizerModel);
  const have = countPieces(original);
  if (have > pieces) throw new Error(`${tokenizerModel} has ${have} pieces, more than the ${pieces} asked for`);
  const extra = new ProtoWriter();
  const CONTROL = 3;
  for (let id = have; id < pieces; id++) {
    extra.message(1, new ProtoWriter().string(1, `<reserved_${id}>`).float(2, 0).int(3, CONTROL));
  }
  return Buffer.concat([original, extra.finish()]);
}

/** Number of `pieces` (field 1) in a serialized SentencePiece ModelProto: walks the top-level fields. */
export function countPieces(bytes: Uint8Array): number {
  let pos = 0;
  let pieces = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    const wire = tag & 7;
    if (wire === 2) {
      const length = varint();
      pos += length;
    } else if (wire === 0) varint();
    else if (wire === 5) pos += 4;
    else if (wire === 1) pos += 8;
    else throw new Error(`tokenizer.model: unexpected wire type ${wire}`);
    if (tag >>> 3 === 1) pieces++;
  }
  return pieces;
}

/**
 * Writes `specs` as one torch.save zip, the form openbmb/OmniLMM-12B ships (`pytorch_model.bin`), laid out as torch
 * 1.13 writes it (the fixture's model-pt/):
 *   pytorch_model/data.pkl   pickle protocol 2: an OrderedDict name → `torch._utils._rebuild_tensor_v2(storage, 0,
 *                            shape, stride, False, OrderedDict())`, each storage a persistent id
 *                            ('storage', torch.BFloat16Storage, key, 'cpu', numel); memo references as Python makes them
 *   pytorch_model/data/<key> one storage per tensor (keys 0, 1, … in name order; entries in key string order), the
 *                            data 64-byte aligned through a padding extra field, as torch does
 *   pytorch_model/version    "3\n"
 * Entries are stored (not compressed) with their CRC-32; offsets past 4 GiB get ZIP64 fields and end records.
 */
export function writePytorchCheckpoint(path: string, specs: TensorSpec[], seed: number): void {
  const sorted = [...specs].sort(byName);
  const archive = 'pytorch_model';
  const total = specs.reduce((sum, s) => sum + bytesOf(s), 0);
  const progress = new Progress(total);
  const zip = new ZipWriter();
  writeFileAtomically(path, (file) => {
    zip.add(file, `${archive}/data.pkl`, [stateDictPickle(sorted)]);
    const keys = sorted.map((_, k) => String(k)).sort();
    for (const key of keys) {
      const spec = sorted[Number(key)]!;
      zip.add(file, `${archive}/data/${key}`, (function* () {
        for (const chunk of tensorChunks(spec, seed)) {
          progress.add(chunk.byteLength, 'pytorch_model.bin');
          yield asBytes(chunk);
        }
      })());
    }
    zip.add(file, `${archive}/version`, [Buffer.from('3\n')]);
    zip.finish(file);
  });
  progress.end();
}

/** The pickle of a state dict of bf16 tensors (see writePytorchCheckpoint); storage keys are the indices in `specs`. */
function stateDictPickle(specs: TensorSpec[]): Uint8Array {
  const p = new PickleWriter();
  p.op(0x80, 2); // PROTO 2
  p.global('collections', 'OrderedDict');
  p.op(0x29); // EMPTY_TUPLE
  p.op(0x52); // REDUCE
  p.put();
  const BATCH = 1000; // pickle's _BATCHSIZE for SETITEMS
  for (let first = 0; first < specs.length; first += BATCH) {
    p.op(0x28); // MARK
    specs.slice(first, first + BATCH).forEach((spec, k) => {
      p.string(spec.name);
      p.global('torch._utils', '_rebuild_tensor_v2');
      p.op(0x28);
      p.op(0x28);
      p.string('storage');
      p.global('torch', 'BFloat16Storage');
      p.string(String(first + k));
      p.string('cpu');
      p.int(count(spec.shape));
      p.op(0x74); // TUPLE
      p.put();
      p.op(0x51); // BINPERSID
      p.int(0);
      p.tuple(spec.shape);
      p.tuple(spec.shape.map((_, d) => count(spec.shape.slice(d + 1))));
      p.op(0x89); // NEWFALSE
      p.global('collections', 'OrderedDict');
      p.op(0x29);
      p.op(0x52);
      p.put();
      p.op(0x74);
      p.put();
      p.op(0x52);
      p.put();
    });
    p.op(0x75); // SETITEMS
  }
  // The state dict's `_metadata` attribute, set through BUILD as Python pickles an OrderedDict with a __dict__.
  p.op(0x7d); // EMPTY_DICT
  p.put();
  p.string('_metadata');
  p.global('collections', 'OrderedDict');
  p.op(0x29);
  p.op(0x52);
  p.put();
  p.op(0x73); // SETITEM
  p.op(0x62); // BUILD
  p.op(0x2e); // STOP
  return p.finish();
}

/** Emits pickle opcodes; globals and the strings 'storage' and 'cpu' are memoised once and fetched after. */
class PickleWriter {
  private readonly bytes: number[] = [];
  private readonly memo = new Map<string, number>();
  private next = 0;

  op(...codes: number[]): void {
    this.bytes.push(...codes);
  }

  private u32(value: number): void {
    this.bytes.push(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24);
  }

  /** BINPUT / LONG_BINPUT of the object on top of the stack; returns its memo index. */
  put(): number {
    const index = this.next++;
    if (index < 256) this.op(0x71, index);
    else {
      this.op(0x72);
      this.u32(index);
    }
    return index;
  }

  private get(index: number): void {
    if (index < 256) this.op(0x68, index);
    else {
      this.op(0x6a);
      this.u32(index);
    }
  }

  private memoised(key: string, emit: () => void): void {
    const known = this.memo.get(key);
    if (known !== undefined) return this.get(known);
    emit();
    this.memo.set(key, this.put());
  }

  global(module: string, name: string): void {
    this.memoised(`global ${module}.${name}`, () => this.op(0x63, ...Buffer.from(`${module}\n${name}\n`)));
  }

  string(text: string): void {
    const emit = () => {
      const utf8 = Buffer.from(text, 'utf8');
      this.op(0x58);
      this.u32(utf8.length);
      this.op(...utf8);
    };
    if (text === 'storage' || text === 'cpu') this.memoised(`string ${text}`, emit);
    else {
      emit();
      this.put();
    }
  }

  /** BININT1 / BININT2 / BININT, or LONG1 past 2^31 − 1. */
  int(value: number): void {
    if (value < 0x100) this.op(0x4b, value);
    else if (value < 0x10000) this.op(0x4d, value & 0xff, value >>> 8);
    else if (value < 2 ** 31) {
      this.op(0x4a);
      this.u32(value);
    } else {
      const le: number[] = [];
      for (let v = BigInt(value); v > 0n; v >>= 8n) le.push(Number(v & 0xffn));
      if (le[le.length - 1]! & 0x80) le.push(0);
      this.op(0x8a, le.length, ...le);
    }
  }

  /** A tuple of ints: TUPLE1–3 for short ones, MARK … TUPLE otherwise; memoised like any non-empty tuple. */
  tuple(values: number[]): void {
    if (values.length === 0) return this.op(0x29);
    if (values.length > 3) this.op(0x28);
    for (const v of values) this.int(v);
    this.op(values.length > 3 ? 0x74 : 0x84 + values.length);
    this.put();
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** Writes stored zip entries one after another, then the central directory (ZIP64 where an offset needs it). */
class ZipWriter {
  private readonly central: Buffer[] = [];
  private entries = 0;
  private static readonly ALIGNMENT = 64;
  private static readonly FULL = 0xffffffff;
  /** 1980-01-01 00:00, the earliest DOS date: the file does not depend on when it was written. */
  private static readonly DOS_DATE = (1 << 5) | 1;

  add(file: OutputFile, name: string, chunks: Iterable<Uint8Array>): void {
    const headerAt = file.position;
    const nameBytes = Buffer.from(name, 'utf8');
    // Pad with a 'FB' extra field (id 0x4246, as torch's writer) so that the data starts on a 64-byte boundary.
    const unpadded = headerAt + 30 + nameBytes.length + 4;
    const padding = (ZipWriter.ALIGNMENT - (unpadded % ZipWriter.ALIGNMENT)) % ZipWriter.ALIGNMENT;
    const extra = Buffer.alloc(4 + padding);
    extra.writeUInt16LE(0x4246, 0);
    extra.writeUInt16LE(padding, 2);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(ZipWriter.DOS_DATE, 12);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(extra.length, 28);
    file.write(local);
    file.write(nameBytes);
    file.write(extra);
    let crc = 0;
    let size = 0;
    for (const chunk of chunks) {
      crc = crc32(chunk, crc);
      size += chunk.byteLength;
      file.write(chunk);
    }
    if (size >= ZipWriter.FULL) throw new Error(`zip entry ${name} has ${size} bytes; entries of 4 GiB or more are not supported`);
    const sums = Buffer.alloc(12);
    sums.writeUInt32LE(crc, 0);
    sums.writeUInt32LE(size, 4);
    sums.writeUInt32LE(size, 8);
    file.write(sums, headerAt + 14);

    const zip64 = headerAt >= ZipWriter.FULL;
    const centralExtra = Buffer.alloc(zip64 ? 12 : 0);
    if (zip64) {
      centralExtra.writeUInt16LE(1, 0);
      centralExtra.writeUInt16LE(8, 2);
      centralExtra.writeBigUInt64LE(BigInt(headerAt), 4);
    }
    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0);
    entry.writeUInt16LE(zip64 ? 45 : 20, 4);
    entry.writeUInt16LE(zip64 ? 45 : 20, 6);
    entry.writeUInt16LE(ZipWriter.DOS_DATE, 14);
    sums.copy(entry, 16);
    entry.writeUInt16LE(nameBytes.length, 28);
    entry.writeUInt16LE(centralExtra.length, 30);
    entry.writeUInt32LE(zip64 ? ZipWriter.FULL : headerAt, 42);
    this.central.push(entry, nameBytes, centralExtra);
    this.entries++;
  }

  finish(file: OutputFile): void {
    const directoryAt = file.position;
    for (const part of this.central) file.write(part);
    const directorySize = file.position - directoryAt;
    const zip64 = directoryAt >= ZipWriter.FULL || this.entries >= 0xffff;
    if (zip64) {
      const recordAt = file.position;
      const record = Buffer.alloc(56);
      record.writeUInt32LE(0x06064b50, 0);
      record.writeBigUInt64LE(44n, 4);
      record.writeUInt16LE(45, 12);
      record.writeUInt16LE(45, 14);
      record.writeBigUInt64LE(BigInt(this.entries), 24);
      record.writeBigUInt64LE(BigInt(this.entries), 32);
      record.writeBigUInt64LE(BigInt(directorySize), 40);
      record.writeBigUInt64LE(BigInt(directoryAt), 48);
      const locator = Buffer.alloc(20);
      locator.writeUInt32LE(0x07064b50, 0);
      locator.writeBigUInt64LE(BigInt(recordAt), 8);
      locator.writeUInt32LE(1, 16);
      file.write(record);
      file.write(locator);
    }
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(Math.min(this.entries, 0xffff), 8);
    end.writeUInt16LE(Math.min(this.entries, 0xffff), 10);
    end.writeUInt32LE(directorySize, 12);
    end.writeUInt32LE(zip64 ? ZipWriter.FULL : directoryAt, 16);
    file.write(end);
  }
}

/** The tensors' names and shapes and their total bf16 bytes, as the generators' `--list` prints them. */
export function listSpecs(specs: TensorSpec[]): string {
  const totalBytes = specs.reduce((sum, s) => sum + bytesOf(s), 0);
  return `${JSON.stringify({ totalBytes, tensors: specs.map(({ name, shape }) => ({ name, shape })) })}\n`;
}

/** Creates the output folder, or exits with status 2 when it exists and is not empty (nothing is overwritten). */
export function createEmptyFolder(out: string): void {
  if (existsSync(out) && readdirSync(out).length > 0) {
    process.stderr.write(`${out} is not empty: give a new or empty folder\n`);
    process.exit(2);
  }
  mkdirSync(out, { recursive: true });
}
