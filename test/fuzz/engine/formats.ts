// Lenient in-memory readers and writers of the container formats the structure-aware mutators take apart and put
// back together: STORED zip archives (as torch.save writes them), the safetensors frame, PNG chunk checksums.

import { crc32 } from '../../../src/checkpoint/zip.js';
import { concat } from './mutate.js';

export interface ZipMember {
  name: string;
  data: Uint8Array;
}

/** The members of a zip, read by walking its local headers; null when it is not a plain STORED zip. */
export function readZipMembers(bytes: Uint8Array): ZipMember[] | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const members: ZipMember[] = [];
  let at = 0;
  while (at + 30 <= bytes.length && view.getUint32(at, true) === 0x04034b50) {
    const size = view.getUint32(at + 18, true);
    const nameLength = view.getUint16(at + 26, true);
    const extraLength = view.getUint16(at + 28, true);
    const start = at + 30 + nameLength + extraLength;
    if (view.getUint16(at + 6, true) & 8 || start + size > bytes.length) return null;
    members.push({ name: Buffer.from(bytes.subarray(at + 30, at + 30 + nameLength)).toString('utf8'), data: bytes.subarray(start, start + size) });
    at = start + size;
  }
  return members.length > 0 ? members : null;
}

/** A STORED zip of `members`, each data block aligned to 64 bytes as torch.save aligns them. */
export function writeZip(members: readonly ZipMember[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const m of members) {
    const name = Buffer.from(m.name, 'utf8');
    const unpadded = offset + 30 + name.length + 4;
    const padding = (64 - (unpadded % 64)) % 64;
    const extra = Buffer.alloc(4 + padding);
    extra.writeUInt16LE(0x4346, 0); // the id torch.save's padding field uses ('FB')
    extra.writeUInt16LE(padding, 2);
    const crc = crc32(m.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(m.data.length, 18);
    local.writeUInt32LE(m.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    const record = Buffer.alloc(46);
    record.writeUInt32LE(0x02014b50, 0);
    record.writeUInt16LE(20, 4);
    record.writeUInt16LE(20, 6);
    record.writeUInt32LE(crc, 16);
    record.writeUInt32LE(m.data.length, 20);
    record.writeUInt32LE(m.data.length, 24);
    record.writeUInt16LE(name.length, 28);
    record.writeUInt32LE(offset, 42);
    parts.push(local, name, extra, m.data);
    central.push(record, name);
    offset += 30 + name.length + extra.length + m.data.length;
  }
  const directory = concat(...central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return concat(...parts, directory, end);
}

/** A safetensors file's JSON header text and the bytes after it; null when the frame does not hold. */
export function splitSafetensors(bytes: Uint8Array): { header: string; data: Uint8Array } | null {
  if (bytes.length < 8) return null;
  const length = Number(Buffer.from(bytes.subarray(0, 8)).readBigUInt64LE(0));
  if (8 + length > bytes.length) return null;
  return { header: Buffer.from(bytes.subarray(8, 8 + length)).toString('utf8'), data: bytes.subarray(8 + length) };
}

export function joinSafetensors(header: string, data: Uint8Array): Uint8Array {
  const text = Buffer.from(header, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(text.length));
  return concat(length, text, data);
}

/** Recomputes every PNG chunk's CRC so that a mutation reaches the decoder instead of its checksum test. */
export function fixPngCrcs(bytes: Uint8Array): Uint8Array {
  const out = Buffer.from(bytes);
  let at = 8;
  while (at + 12 <= out.length) {
    const length = out.readUInt32BE(at);
    if (at + 12 + length > out.length) break;
    out.writeUInt32BE(crc32(out.subarray(at + 4, at + 8 + length)), at + 8 + length);
    at += 12 + length;
  }
  return out;
}
