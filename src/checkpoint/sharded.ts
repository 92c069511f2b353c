// A checkpoint folder as one TensorSource: a single weights file, or the shards an index's weight_map names
// (model.safetensors.index.json, pytorch_model.bin.index.json). Shared by every weights-file format.

import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CheckpointError, describeJson, FileNotFoundError } from '../errors.js';
import { TensorRows } from './rows.js';
import type { RowReader, TensorInfo, TensorSource } from './safetensors.js';

/** One opened weights file. */
export interface TensorFile {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  info(name: string): TensorInfo;
  float32(name: string): Float32Array;
  close(): void;
}

export class ShardedCheckpoint implements TensorSource {
  private readonly files: TensorFile[] = [];
  private readonly byName = new Map<string, TensorFile>();

  /** Opens `dir/indexName` and its shards when the index exists, else `dir/singleName`. */
  constructor(
    readonly dir: string,
    files: { index: string; single: string },
    open: (path: string) => TensorFile,
  ) {
    const indexPath = join(dir, files.index);
    const singlePath = join(dir, files.single);
    try {
      if (existsSync(indexPath)) this.openSharded(indexPath, open);
      else if (existsSync(singlePath)) this.add(open(singlePath));
      else throw new FileNotFoundError(`no ${files.single} or ${files.index} in ${dir}`);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** The rows of a 2-D tensor, read from its file on demand (its own descriptor: the checkpoint may be closed). */
  rows(name: string): RowReader {
    return new TensorRows(this.info(name));
  }

  private openSharded(indexPath: string, open: (path: string) => TensorFile): void {
    let index: { weight_map?: unknown };
    try {
      index = JSON.parse(readFileSync(indexPath, 'utf8')) as typeof index;
    } catch {
      throw new CheckpointError(`${indexPath} is not valid JSON (corrupt or truncated download?)`);
    }
    const map = index?.weight_map;
    if (!map || typeof map !== 'object' || Array.isArray(map)) throw new CheckpointError(`${indexPath} has no "weight_map" object`);
    const shards = new Map<string, TensorFile>();
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || basename(shard) !== shard || shard === '' || shard === '.' || shard === '..') {
        throw new CheckpointError(`${indexPath} names an invalid shard file ${describeJson(shard)}`);
      }
      let file = shards.get(shard);
      if (!file) {
        const path = join(this.dir, shard);
        if (!existsSync(path)) {
          throw new CheckpointError(`shard ${shard} listed in ${basename(indexPath)} is missing from ${this.dir}; download it again`);
        }
        file = open(path);
        this.files.push(file);
        shards.set(shard, file);
      }
      if (!file.tensors.has(name)) throw new CheckpointError(`${indexPath} places ${name} in ${shard}, but that shard does not contain it`);
      this.byName.set(name, file);
    }
  }

  private add(file: TensorFile): void {
    this.files.push(file);
    for (const name of file.tensors.keys()) this.byName.set(name, file);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    return this.file(name).info(name);
  }

  float32(name: string): Float32Array {
    return this.file(name).float32(name);
  }

  private file(name: string): TensorFile {
    const file = this.byName.get(name);
    if (!file) throw new CheckpointError(`the checkpoint in ${this.dir} has no tensor ${name}`);
    return file;
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
