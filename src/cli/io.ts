// Reading user files for the CLI, with errors that name the file; output paths that cannot be written, as user
// errors; noticing an output nobody reads any more.

import { readFile, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { FileNotFoundError, ImageTooLargeError, InvalidRequestError } from '../errors.js';
import { decodeImage, type RgbImage } from '../image/index.js';

/** Reads a whole file; a missing path or a folder gives a clear FileNotFoundError. */
export async function readUserFile(path: string, what: string): Promise<Buffer> {
  const info = await stat(path).catch(() => null);
  if (!info) throw new FileNotFoundError(`${what} not found: ${path}`);
  if (!info.isFile()) throw new FileNotFoundError(`${what} is not a file: ${path}`);
  return readFile(path);
}

export async function readImageFile(path: string): Promise<RgbImage> {
  return decodeUserImage(await readUserFile(path, 'image'));
}

/** Decodes an image the user named; one too large for the decoder gets advice the command line can follow. */
export async function decodeUserImage(bytes: Uint8Array): Promise<RgbImage> {
  try {
    return await decodeImage(bytes);
  } catch (err) {
    if (!(err instanceof ImageTooLargeError)) throw err;
    throw new ImageTooLargeError(
      err.summary,
      'shrink it first, e.g. to 4000 pixels on its longer side (the model looks at a few megapixels of it at most)',
    );
  }
}

/** Why a path cannot be written, by the file system's error code, with what to do about it. */
const WRITE_FAILURES: Record<string, string> = {
  ENOENT: 'its folder does not exist: create the folder first, or choose another path',
  ENOTDIR: 'a part of the path is a file, not a folder: choose a path in a folder',
  EISDIR: 'it is a folder: name a file',
  EACCES: 'permission denied: choose a place you may write to',
  EPERM: 'the operation is not permitted there: choose a place you may write to',
  EROFS: 'the file system is read-only: choose a place you may write to',
  ENOSPC: 'the disk is full: free some space, or choose another disk',
  EDQUOT: 'the disk quota is used up: free some space, or choose another disk',
  ENAMETOOLONG: 'the name is too long: choose a shorter path',
  ELOOP: 'the path has a loop of symbolic links: choose another path',
};

/**
 * The user error for a file system error while writing the output `path` (a file, or a folder and what is in it),
 * naming the path and what to do; any other error (one about another path, or one we did not expect) unchanged.
 * A file is written beside itself first, as `<path>.partial`.
 */
export function outputError(err: unknown, path: string, flag: string): unknown {
  if (!(err instanceof Error)) return err;
  const { code, path: failed } = err as NodeJS.ErrnoException;
  const why = code === undefined ? undefined : WRITE_FAILURES[code];
  if (why === undefined || failed === undefined) return err;
  const target = resolve(path);
  const at = resolve(failed);
  const itself = at === target || at === `${target}.partial`;
  if (!itself && !at.startsWith(target + sep) && !target.startsWith(at + sep)) return err;
  return new InvalidRequestError(`cannot write ${flag} ${path}${itself ? '' : ` (at ${failed})`}: ${why}`, { cause: err });
}

/** The status a shell reports for a command that SIGPIPE ended (128 + 13), as `yes | head` shows. */
export const EXIT_BROKEN_PIPE = 141;

const closedOutput = new AbortController();

/**
 * Aborted once stdout or stderr has lost its reader (`omnilmm chat … | head -c 20`): the command stops its work
 * and ends quietly with EXIT_BROKEN_PIPE, as SIGPIPE ends other Unix tools. (Node ignores SIGPIPE, so the write
 * fails with EPIPE instead, which would otherwise end the process with a stack trace.)
 */
export const outputClosed: AbortSignal = closedOutput.signal;

export function watchForClosedOutput(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // Writes after the first failure report that the stream is gone: the same closed reader.
      if (err.code !== 'EPIPE' && !closedOutput.signal.aborted) throw err;
      closedOutput.abort(new DOMException('the output was closed', 'AbortError'));
    });
  }
}
