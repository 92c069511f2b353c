// ModelFiles over a folder on disk (node:fs): the Node side of model-files.ts.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FileNotFoundError } from '../errors.js';
import { decodeUtf8, type ModelFiles } from './model-files.js';

/** Whether `dir` exists and is a folder. */
export function isFolder(dir: string): boolean {
  return existsSync(dir) && statSync(dir).isDirectory();
}

/** The files of the folder `dir`; a FileNotFoundError when there is no such folder. */
export function folderFiles(dir: string): ModelFiles {
  if (!isFolder(dir)) throw new FileNotFoundError(`model folder not found: ${dir}`);
  const describe = (name: string): string => join(dir, name);
  const bytes = (name: string): Uint8Array => {
    try {
      return readFileSync(describe(name));
    } catch (err) {
      throw new FileNotFoundError(`cannot read ${describe(name)}: ${(err as Error).message}`, { cause: err });
    }
  };
  return {
    where: dir,
    has: (name) => existsSync(describe(name)),
    text: (name) => decodeUtf8(bytes(name)),
    bytes,
    describe,
  };
}
