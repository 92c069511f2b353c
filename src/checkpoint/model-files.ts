// The files of a model folder behind one small interface, so that the tokenizer and config loaders run wherever the
// files come from: a folder on disk (folder-files.ts, Node) or bytes already in memory (a browser).

import { FileNotFoundError, type OmnilmmError } from '../errors.js';

/** The files of a model folder as the loaders read them: a folder on disk (Node) or files already in memory (a browser). */
export interface ModelFiles {
  /** Where the files are, for messages: a folder path or a URL. */
  readonly where: string;
  has(name: string): boolean;
  /** The file as UTF-8 text; a FileNotFoundError (src/errors.ts) when it is missing. */
  text(name: string): string;
  bytes(name: string): Uint8Array;
  /** The file's path or URL, for messages (e.g. join(dir, name) on disk). */
  describe(name: string): string;
}

/** UTF-8 as node:fs reads it with 'utf8': bad bytes become U+FFFD and a byte order mark is kept. */
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** A file's bytes as text, decoded the way every ModelFiles decodes them. */
export function decodeUtf8(bytes: Uint8Array): string {
  return utf8.decode(bytes);
}

/** A loader's own error class (TokenizerError, CheckpointError, …). */
export type LoaderError = new (message: string, options?: { cause?: unknown }) => OmnilmmError;

/** The file `name` as text; a failure to read it is thrown again as `error`, with the same message. */
export function readText(files: ModelFiles, name: string, error: LoaderError): string {
  try {
    return files.text(name);
  } catch (err) {
    throw new error((err as Error).message, { cause: err });
  }
}

/** Files already in memory, by name relative to the model folder; `where` names them in messages. */
export class MemoryModelFiles implements ModelFiles {
  constructor(
    readonly where: string,
    private readonly files: ReadonlyMap<string, Uint8Array>,
  ) {}

  has(name: string): boolean {
    return this.files.has(name);
  }

  text(name: string): string {
    return decodeUtf8(this.bytes(name));
  }

  bytes(name: string): Uint8Array {
    const bytes = this.files.get(name);
    if (bytes === undefined) throw new FileNotFoundError(`cannot read ${this.describe(name)}: there is no such file`);
    return bytes;
  }

  describe(name: string): string {
    return this.where.endsWith('/') ? `${this.where}${name}` : `${this.where}/${name}`;
  }
}
