// A read-only zip reader for PyTorch checkpoints, built on positioned reads so a 23 GB archive is never loaded.
// It reads the end-of-central-directory record (and its ZIP64 form), the central directory, and local headers.
// Only STORED (uncompressed) entries can be read: torch.save writes every entry that way.
//
//   [local header][name][extra][data] ... [central directory entries] [ZIP64 EOCD][ZIP64 locator] [EOCD][comment]

import { closeSync, fstatSync, openSync } from 'node:fs';
import { CheckpointError } from '../errors.js';
import { readAt } from './read-at.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated, ... */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const MAX_COMMENT = 0xffff;
const MAX_CENTRAL_DIRECTORY_BYTES = 256 * 1024 * 1024;
const METHOD_STORED = 0;

/** An open zip archive; entries are listed at open time, data is read on demand. */
export class ZipReader {
  private fd: number | null;
  readonly size: number;
  readonly entries = new Map<string, ZipEntry>();
  private readonly dataOffsets = new Map<string, number>();

  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
    try {
      this.size = fstatSync(this.fd).size;
      this.readCentralDirectory();
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** Reads exactly `length` bytes at `position`, or throws if the file ends first. */
  read(position: number, length: number): Buffer {
    if (this.fd === null) throw new CheckpointError(`${this.path} was already closed`);
    const buf = Buffer.allocUnsafe(length);
    const got = readAt(this.fd, buf, position);
    if (got < length) throw new CheckpointError(`${this.path} ended at byte ${position + got} while reading (truncated file?)`);
    return buf;
  }

  /** Absolute file offset of a STORED entry's first data byte (validated against the file size). */
  dataOffset(entry: ZipEntry): number {
    const cached = this.dataOffsets.get(entry.name);
    if (cached !== undefined) return cached;
    if (entry.method !== METHOD_STORED) {
      throw new CheckpointError(
        `${this.path}: entry ${entry.name} is compressed (zip method ${entry.method}); only uncompressed entries, ` +
          'as torch.save writes them, can be read lazily. Re-save the checkpoint with torch.save or convert it to safetensors',
      );
    }
    if (entry.compressedSize !== entry.size) {
      throw new CheckpointError(`${this.path}: stored entry ${entry.name} has ${entry.compressedSize} stored bytes but size ${entry.size} (corrupt file?)`);
    }
    if (entry.localHeaderOffset + 30 > this.size) throw this.truncated(entry.name);
    const header = this.read(entry.localHeaderOffset, 30);
    if (header.readUInt32LE(0) !== LOCAL_SIGNATURE) {
      throw new CheckpointError(`${this.path}: entry ${entry.name} has no local header at byte ${entry.localHeaderOffset} (corrupt zip)`);
    }
    const start = entry.localHeaderOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    if (start + entry.size > this.size) throw this.truncated(entry.name);
    this.dataOffsets.set(entry.name, start);
    return start;
  }

  /** A whole STORED entry, CRC-checked; only for small entries such as data.pkl. */
  readEntry(entry: ZipEntry, maxBytes: number): Buffer {
    if (entry.size > maxBytes) {
      throw new CheckpointError(`${this.path}: entry ${entry.name} has ${entry.size} bytes, more than the ${maxBytes} allowed (corrupt file?)`);
    }
    const data = this.read(this.dataOffset(entry), entry.size);
    if (crc32(data) !== entry.crc32) throw new CheckpointError(`${this.path}: entry ${entry.name} fails its CRC check (corrupt download?)`);
    return data;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private truncated(name: string): CheckpointError {
    return new CheckpointError(`${this.path} is truncated: entry ${name} extends past its ${this.size} bytes; download it again`);
  }

  private corrupt(why: string): CheckpointError {
    return new CheckpointError(`${this.path} is not a valid zip archive: ${why}`);
  }

  private readCentralDirectory(): void {
    // 1. Find the end-of-central-directory record: the last EOCD signature within the final 64 KiB + 22 bytes.
    if (this.size < EOCD_SIZE) throw this.corrupt(`it has only ${this.size} bytes (truncated download?)`);
    const tailLength = Math.min(this.size, EOCD_SIZE + MAX_COMMENT);
    const tailStart = this.size - tailLength;
    const tail = this.read(tailStart, tailLength);
    let eocd = -1;
    for (let i = tailLength - EOCD_SIZE; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD_SIGNATURE && i + EOCD_SIZE + tail.readUInt16LE(i + 20) === tailLength) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw this.corrupt('it has no end-of-central-directory record (truncated download, or not a zip file)');
    let count = tail.readUInt16LE(eocd + 10);
    let directorySize = tail.readUInt32LE(eocd + 12);
    let directoryOffset = tail.readUInt32LE(eocd + 16);

    // 2. A ZIP64 locator just before the EOCD points at the ZIP64 record, whose 64-bit fields win.
    const locator = eocd - ZIP64_LOCATOR_SIZE;
    if (locator >= 0 && tail.readUInt32LE(locator) === ZIP64_LOCATOR_SIGNATURE) {
      const recordOffset = u64(tail, locator + 8, 'ZIP64 record offset', this.path);
      if (recordOffset + 56 > this.size) throw this.corrupt('its ZIP64 record lies outside the file');
      const record = this.read(recordOffset, 56);
      if (record.readUInt32LE(0) !== ZIP64_EOCD_SIGNATURE) throw this.corrupt('its ZIP64 locator does not point at a ZIP64 record');
      count = u64(record, 32, 'entry count', this.path);
      directorySize = u64(record, 40, 'central directory size', this.path);
      directoryOffset = u64(record, 48, 'central directory offset', this.path);
    }
    if (directoryOffset + directorySize > this.size || directorySize > MAX_CENTRAL_DIRECTORY_BYTES) {
      throw this.corrupt(`its central directory (${directorySize} bytes at ${directoryOffset}) does not fit the ${this.size}-byte file (truncated?)`);
    }

    // 3. The central directory: one 46-byte record + name + extra + comment per entry.
    const dir = this.read(directoryOffset, directorySize);
    let pos = 0;
    for (let i = 0; i < count; i++) {
      if (pos + 46 > dir.length || dir.readUInt32LE(pos) !== CENTRAL_SIGNATURE) throw this.corrupt(`central directory entry ${i} is damaged`);
      const nameLength = dir.readUInt16LE(pos + 28);
      const extraLength = dir.readUInt16LE(pos + 30);
      const commentLength = dir.readUInt16LE(pos + 32);
      const end = pos + 46 + nameLength + extraLength + commentLength;
      if (end > dir.length) throw this.corrupt(`central directory entry ${i} runs past the directory`);
      const name = dir.toString('utf8', pos + 46, pos + 46 + nameLength);
      const entry: ZipEntry = {
        name,
        method: dir.readUInt16LE(pos + 10),
        crc32: dir.readUInt32LE(pos + 16),
        compressedSize: dir.readUInt32LE(pos + 20),
        size: dir.readUInt32LE(pos + 24),
        localHeaderOffset: dir.readUInt32LE(pos + 42),
      };
      applyZip64Extra(entry, dir.subarray(pos + 46 + nameLength, pos + 46 + nameLength + extraLength), this.path);
      if (this.entries.has(name)) throw this.corrupt(`entry ${name} appears twice`);
      this.entries.set(name, entry);
      pos = end;
    }
  }
}

/** Replaces 0xFFFFFFFF placeholders with the 64-bit values of the ZIP64 extra field (id 1), in the spec's order. */
function applyZip64Extra(entry: ZipEntry, extra: Buffer, path: string): void {
  const FULL = 0xffffffff;
  if (entry.size !== FULL && entry.compressedSize !== FULL && entry.localHeaderOffset !== FULL) return;
  for (let p = 0; p + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(p);
    const length = extra.readUInt16LE(p + 2);
    if (id === 1) {
      const field = extra.subarray(p + 4, p + 4 + length);
      let at = 0;
      const next = (what: string): number => {
        if (at + 8 > field.length) throw new CheckpointError(`${path}: entry ${entry.name} has a short ZIP64 field (corrupt zip)`);
        const value = u64(field, at, what, path);
        at += 8;
        return value;
      };
      if (entry.size === FULL) entry.size = next('size');
      if (entry.compressedSize === FULL) entry.compressedSize = next('compressed size');
      if (entry.localHeaderOffset === FULL) entry.localHeaderOffset = next('header offset');
      return;
    }
    p += 4 + length;
  }
  throw new CheckpointError(`${path}: entry ${entry.name} needs a ZIP64 field but has none (corrupt zip)`);
}

function u64(buf: Buffer, at: number, what: string, path: string): number {
  const value = buf.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError(`${path}: zip ${what} ${value} is out of range (corrupt zip)`);
  return Number(value);
}

let crcTable: Uint32Array | null = null;

/** CRC-32 as zip uses it (reflected polynomial 0xEDB88320). */
export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
