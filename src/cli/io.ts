// Reading user files for the CLI, with errors that name the file.

import { readFile, stat } from 'node:fs/promises';
import { FileNotFoundError } from '../errors.js';
import { decodeImage, type RgbImage } from '../image/index.js';

/** Reads a whole file; a missing path or a folder gives a clear FileNotFoundError. */
export async function readUserFile(path: string, what: string): Promise<Buffer> {
  const info = await stat(path).catch(() => null);
  if (!info) throw new FileNotFoundError(`${what} not found: ${path}`);
  if (!info.isFile()) throw new FileNotFoundError(`${what} is not a file: ${path}`);
  return readFile(path);
}

export async function readImageFile(path: string): Promise<RgbImage> {
  return decodeImage(await readUserFile(path, 'image'));
}
