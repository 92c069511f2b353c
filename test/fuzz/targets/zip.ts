// The zip reader (checkpoint/zip.ts) on its own: the central directory of any archive, then every entry's data
// offset and, for small entries, its CRC-checked bytes.

import { ZipReader } from '../../../src/checkpoint/zip.js';
import { CheckpointError } from '../../../src/errors.js';
import { readZipMembers, writeZip } from '../engine/formats.js';
import { mutateStacked } from '../engine/mutate.js';
import { writeScratch } from '../engine/scratch.js';
import { invariant, refusesOnlyWith, type FuzzTarget, type Rng } from '../engine/target.js';

export const ZIP_DICTIONARY = [
  Uint8Array.of(0x50, 0x4b, 0x03, 0x04), Uint8Array.of(0x50, 0x4b, 0x01, 0x02), Uint8Array.of(0x50, 0x4b, 0x05, 0x06),
  Uint8Array.of(0x50, 0x4b, 0x06, 0x06), Uint8Array.of(0x50, 0x4b, 0x06, 0x07), Uint8Array.of(0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0x01, 0x00), Uint8Array.of(0x46, 0x43), 'archive/data.pkl', 'archive/data/0', 'archive/byteorder',
  'archive/version', 'little', 'big',
];

export const target: FuzzTarget = {
  description: 'bytes of a zip file → new ZipReader(path), dataOffset() and readEntry() of every entry',
  modules: ['checkpoint/zip.js', 'checkpoint/read-at.js'],
  dictionary: ZIP_DICTIONARY,
  maxLength: 16 * 1024,
  run(input) {
    const path = writeScratch('archive.zip', input);
    return refusesOnlyWith(input, [CheckpointError], () => {
      const zip = new ZipReader(path);
      try {
        for (const entry of zip.entries.values()) {
          try {
            const offset = zip.dataOffset(entry);
            invariant(offset + entry.size <= zip.size, `entry ${entry.name} ends at ${offset + entry.size}, past the file's ${zip.size} bytes`);
            zip.readEntry(entry, 1 << 20);
          } catch (err) {
            if (!(err instanceof CheckpointError)) throw err;
          }
        }
      } finally {
        zip.close();
      }
    });
  },
  mutate: mutateZipMember,
};

/** Mutates one member's bytes (or renames, drops or duplicates it) and writes a consistent archive around it. */
export function mutateZipMember(input: Uint8Array, rng: Rng, dictionary: readonly Uint8Array[]): Uint8Array | null {
  const members = readZipMembers(input);
  if (members === null) return null;
  const i = rng.below(members.length);
  const member = members[i]!;
  switch (rng.below(6)) {
    case 0:
      members[i] = { ...member, name: Buffer.from(mutateStacked(Buffer.from(member.name), rng, dictionary, [], 256)).toString('utf8') };
      break;
    case 1:
      members.splice(i, 1);
      break;
    case 2:
      members.splice(i, 0, { ...member });
      break;
    default:
      members[i] = { ...member, data: mutateStacked(member.data, rng, dictionary, members.map((m) => m.data), 8192) };
  }
  return writeZip(members);
}
