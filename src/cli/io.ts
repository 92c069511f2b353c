// Reading user files for the CLI, with errors that name the file; noticing an output nobody reads any more.

import { readFile, stat } from 'node:fs/promises';
import { FileNotFoundError, ImageTooLargeError } from '../errors.js';
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
