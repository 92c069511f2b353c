// The positioned read that every checkpoint and cache reader shares: a file read at an offset without moving a
// file position, so readers never hold more of a file than the bytes they ask for.

import { readSync } from 'node:fs';

/** Fills `buffer` from the file at `position` (positioned reads, repeated while short); fewer bytes only at its end. */
export function readAt(fd: number, buffer: Uint8Array, position: number): number {
  let done = 0;
  while (done < buffer.byteLength) {
    const n = readSync(fd, buffer, done, buffer.byteLength - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}
