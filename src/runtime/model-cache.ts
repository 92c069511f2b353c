// The converted-model cache: each graph built from a checkpoint is kept on disk as `model.onnx` + `weights.bin`, so
// the next start creates its sessions straight from those files (ONNX Runtime maps the weights) instead of building.
//
// Layout: <root>/<checkpoint key>/<part>-<options key>/{model.onnx, weights.bin, manifest.json}
//   * root: the `cache` runtime option, else $OMNILMM_CACHE, else ~/.cache/omnilmm (OMNILMM_CACHE=off: no cache).
//   * checkpoint key: sha256 of (a) the checkpoint's config.json and index files, byte for byte; (b) for every weight
//     file its name, size, mtime and resolved path (a hub snapshot links to a blob named by its content hash), plus a
//     safetensors file's whole header (names, dtypes, shapes, offsets); (c) the compiled code of our graph builders
//     (dist/src/graph and dist/src/models), so a changed builder never meets a graph of the old one. Rewriting a weight
//     file changes its mtime, so edited weights are never served from a stale graph.
//   * options key: sha256 of the part's build description (dims, prefix, …) and of every load option that reaches the
//     builder (precision and whatever comes next), taken opaquely: all options except the known run-time-only ones;
//     for the CPU provider also of this machine (CPU model and instruction sets, ONNX Runtime's version), because
//     the stored model is the one ONNX Runtime optimised for it, with its weights already prepacked (see below).
// On the CPU provider, an entry holds ONNX Runtime's own optimised form of the graph, with the weights it prepacks at
// session creation (MatMul's packed B, MatMulNBits' repacked blocks) stored packed: a later start maps them instead of
// packing them again (for MiniCPM-V 2.0 at int4 the decoder's session starts in about half the time, and nothing is
// copied to the heap). Other providers get the graph as built.
// A part is written into `<folder>.partial-<pid>-<random>` and renamed into place after its manifest (file sizes), so
// a killed conversion never leaves a folder that looks complete; a folder whose files do not match its manifest, or
// whose model ONNX Runtime refuses, is removed and rebuilt. Key folders of checkpoints that were deleted, or that
// another key replaced (the checkpoint's files or our builders changed), are removed at the next load.

import { createHash } from 'node:crypto';
import {
  closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statfsSync,
  statSync, writeFileSync,
} from 'node:fs';
import { cpus, homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readAt } from '../checkpoint/read-at.js';
import type { TensorSource } from '../checkpoint/safetensors.js';
import { ShardedCheckpoint } from '../checkpoint/sharded.js';
import { InvalidRequestError, RuntimeError } from '../errors.js';
import { processRuns, type SerializedModel } from '../graph/builder.js';
import type { GraphSpec, RuntimeOptions } from './graph-session.js';
import { NodeGraphSession, runtimeVersion } from './session.js';

/** Bumped when the cache layout itself changes. */
const CACHE_FORMAT = 1;
const MANIFEST = 'manifest.json';
const MODEL_FILE = 'model.onnx';
/** In each key folder: `{"dir": …}`, the checkpoint folder it was converted from (for sweeping stale entries). */
const CHECKPOINT_RECORD = 'checkpoint.json';

/** Options that change how a session runs, never the graph: left out of the key. */
const RUNTIME_ONLY_OPTIONS = new Set([
  'threads', 'executionProvider', 'cache', 'memoryArena', 'maxSeq', 'maxRows', 'prefillChunk', 'maxBeams', 'maxBatch', 'hub',
  'maxSnapshots', 'openGraph', 'profile',
]);

/** What the cache reports while a model loads (for progress bars and tests). */
export type ModelCacheEvent =
  | { type: 'hit'; part: string; folder: string }
  | { type: 'build'; part: string; label: string }
  /** A build read one more checkpoint tensor of `tensorBytes` (of the checkpoint's `checkpointBytes` in all). */
  | { type: 'progress'; part: string; tensorBytes: number; checkpointBytes: number }
  | { type: 'written'; part: string; folder: string; bytes: number }
  | { type: 'rebuild'; part: string; folder: string; reason: string };

const listeners = new Set<(event: ModelCacheEvent) => void>();

/** Calls `listener` with every cache event of this process until the returned function is called. */
export function onModelCacheEvent(listener: (event: ModelCacheEvent) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function emit(event: ModelCacheEvent): void {
  for (const listener of listeners) listener(event);
}

/** The cache's root folder for a `cache` option, or null when caching is off. */
export function cacheRoot(setting?: string | false): string | null {
  if (setting === false) return null;
  if (typeof setting === 'string' && setting !== '') return setting;
  const env = process.env.OMNILMM_CACHE;
  if (env !== undefined && ['off', '0', 'false'].includes(env.toLowerCase())) return null;
  return env || join(homedir(), '.cache', 'omnilmm');
}

/**
 * The session of one graph: from the cache when a complete entry exists, else built, written to the cache and
 * created from there. Without a cache root, or for a source that is not a checkpoint folder, the graph is built.
 */
export async function cachedSession(graph: GraphSpec, runtime: RuntimeOptions = {}): Promise<NodeGraphSession> {
  const root = cacheRoot(runtime.cache);
  const checkpointDir = graph.source instanceof ShardedCheckpoint ? graph.source.dir : null;
  if (!root || !checkpointDir) return NodeGraphSession.create(graph.label, await buildWithProgress(graph), runtime);
  checkRootIsFolder(root);
  const keyFolder = join(root, checkpointKey(checkpointDir));
  sweepStaleEntries(root, keyFolder, checkpointDir);
  const prepacked = (runtime.executionProvider ?? 'cpu') === 'cpu';
  const folder = join(keyFolder, `${graph.part}-${optionsKey(graph.key, runtime, prepacked ? machineKey() : 'as built')}`);
  const problem = entryProblem(folder);
  if (problem === null) {
    try {
      const session = await NodeGraphSession.fromFile(graph.label, join(folder, MODEL_FILE), runtime);
      emit({ type: 'hit', part: graph.part, folder });
      return session;
    } catch (err) {
      removeEntry(folder, graph.part, `ONNX Runtime refused it: ${(err as Error).message}`);
    }
  } else if (problem !== 'missing') {
    removeEntry(folder, graph.part, problem);
  }
  try {
    mkdirSync(keyFolder, { recursive: true });
    writeFileSync(join(keyFolder, CHECKPOINT_RECORD), `${JSON.stringify({ dir: realpathSync(checkpointDir) })}\n`);
  } catch (err) {
    process.emitWarning(`the model cache ${root} is not writable (${(err as Error).message}); building the ${graph.label} without it`);
    return NodeGraphSession.create(graph.label, await buildWithProgress(graph), runtime);
  }
  try {
    await writeEntry(folder, graph, await buildWithProgress(graph), prepacked ? runtime : null);
  } catch (err) {
    removeKeyFolderIfEmpty(keyFolder);
    throw err;
  }
  return NodeGraphSession.fromFile(graph.label, join(folder, MODEL_FILE), runtime);
}

/**
 * Runs a model load; if it fails, the entries it wrote are removed again (and their key folder once it holds
 * nothing else), so that a failed conversion leaves no part of itself in the cache. Entries it found there stay.
 */
export async function discardEntriesIfFailed<T>(load: () => Promise<T>): Promise<T> {
  const written: string[] = [];
  const stop = onModelCacheEvent((event) => {
    if (event.type === 'written') written.push(event.folder);
  });
  try {
    return await load();
  } catch (err) {
    for (const folder of written) {
      rmSync(folder, { recursive: true, force: true });
      removeKeyFolderIfEmpty(dirname(folder));
    }
    throw err;
  } finally {
    stop();
  }
}

/** Removes a key folder that holds no entry (only the record of its checkpoint). */
function removeKeyFolderIfEmpty(keyFolder: string): void {
  try {
    if (readdirSync(keyFolder).every((name) => name === CHECKPOINT_RECORD)) rmSync(keyFolder, { recursive: true, force: true });
  } catch {
    // Already gone.
  }
}

/** A cache root that exists as something other than a folder is a setting to fix, not a bug of ours. */
function checkRootIsFolder(root: string): void {
  let info;
  try {
    info = statSync(root, { throwIfNoEntry: false });
  } catch {
    return; // Under a file, say: such a cache cannot be written, which cachedSession reports and works around.
  }
  if (info && !info.isDirectory()) {
    throw new InvalidRequestError(
      `the model cache ${root} is a file, not a folder: point OMNILMM_CACHE (or convert's --cache-dir, or the cache ` +
        'option) at a folder, or turn the cache off with OMNILMM_CACHE=off',
    );
  }
}

/** The cache folder of a checkpoint (where `cachedSession` puts its parts) under `root`. */
export function checkpointCacheFolder(root: string, checkpointDir: string): string {
  return join(root, checkpointKey(checkpointDir));
}

async function buildWithProgress(graph: GraphSpec): Promise<SerializedModel> {
  emit({ type: 'build', part: graph.part, label: graph.label });
  if (listeners.size === 0) return graph.build(graph.source);
  const source = graph.source;
  const checkpointBytes = source.names().reduce((sum, name) => sum + source.info(name).byteLength, 0);
  const read = new Set<string>();
  const counting: TensorSource = {
    names: () => source.names(),
    has: (name) => source.has(name),
    info: (name) => source.info(name),
    float32: (name) => {
      const data = source.float32(name);
      if (!read.has(name)) {
        read.add(name);
        emit({ type: 'progress', part: graph.part, tensorBytes: source.info(name).byteLength, checkpointBytes });
      }
      return data;
    },
    close: () => source.close(),
  };
  return graph.build(counting);
}

/** Key folders already swept by this process. */
const sweptKeyFolders = new Set<string>();

/**
 * Removes what no load will use again, once per key folder and process: key folders whose checkpoint folder is gone,
 * other key folders of this same checkpoint folder (its files or our builders changed since), and staging folders of
 * conversions whose process no longer runs.
 */
function sweepStaleEntries(root: string, keyFolder: string, checkpointDir: string): void {
  if (sweptKeyFolders.has(keyFolder) || !existsSync(root)) return;
  sweptKeyFolders.add(keyFolder);
  const current = realpathSync(checkpointDir);
  for (const name of readdirSync(root)) {
    const folder = join(root, name);
    if (folder === keyFolder) continue;
    let dir: unknown;
    try {
      dir = (JSON.parse(readFileSync(join(folder, CHECKPOINT_RECORD), 'utf8')) as { dir?: unknown }).dir;
    } catch {
      continue;
    }
    if (typeof dir === 'string' && (dir === current || !existsSync(dir))) rmSync(folder, { recursive: true, force: true });
  }
  if (!existsSync(keyFolder)) return;
  for (const name of readdirSync(keyFolder)) {
    const pid = Number(/\.partial-(\d+)-/.exec(name)?.[1]);
    if (pid && pid !== process.pid && !processRuns(pid)) rmSync(join(keyFolder, name), { recursive: true, force: true });
  }
}

/** Why the entry at `folder` cannot be used ('missing' when there is none), or null when it is complete. */
function entryProblem(folder: string): string | null {
  if (!existsSync(folder)) return 'missing';
  let manifest: { format?: unknown; files?: Record<string, number> };
  try {
    manifest = JSON.parse(readFileSync(join(folder, MANIFEST), 'utf8')) as typeof manifest;
  } catch {
    return 'its manifest is missing or unreadable';
  }
  if (manifest.format !== CACHE_FORMAT || typeof manifest.files !== 'object' || manifest.files === null) {
    return 'its manifest has another format';
  }
  for (const [name, size] of Object.entries(manifest.files)) {
    const path = join(folder, name);
    if (!existsSync(path)) return `${name} is missing`;
    const actual = statSync(path).size;
    if (actual !== size) return `${name} has ${actual} bytes, its manifest says ${size}`;
  }
  return null;
}

function removeEntry(folder: string, part: string, reason: string): void {
  emit({ type: 'rebuild', part, folder, reason });
  rmSync(folder, { recursive: true, force: true });
}

/**
 * Writes a built graph as a complete entry: weights moved (not copied) into a staging folder beside the target,
 * the model file written and, with `optimizeFor` (the CPU provider's options), replaced by ONNX Runtime's optimised
 * form with prepacked weights; then the manifest, then one rename. When another process finished the same entry
 * first, its entry is kept.
 */
async function writeEntry(folder: string, graph: GraphSpec, model: SerializedModel, optimizeFor: RuntimeOptions | null): Promise<void> {
  const staging = `${folder}.partial-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  let builtBytes = model.model.byteLength;
  try {
    if (model.weights) model.weights.moveTo(staging);
    else mkdirSync(staging);
    writeFileSync(join(staging, MODEL_FILE), model.model);
    builtBytes = folderBytes(staging);
    if (optimizeFor) await replaceByOptimized(staging, graph.label, optimizeFor);
    const files: Record<string, number> = {};
    for (const name of readdirSync(staging)) files[name] = statSync(join(staging, name)).size;
    // builtBytes: the graph and its weights as built (the optimised form also keeps the packed copies beside them).
    const manifest = {
      format: CACHE_FORMAT, part: graph.part, label: graph.label, files, builtBytes, createdAt: new Date().toISOString(),
    };
    writeFileSync(join(staging, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    try {
      renameSync(staging, folder);
    } catch (err) {
      if (entryProblem(folder) !== null) throw err;
      rmSync(staging, { recursive: true, force: true });
    }
    const bytes = Object.values(files).reduce((sum, size) => sum + size, 0);
    emit({ type: 'written', part: graph.part, folder, bytes });
  } catch (err) {
    model.weights?.remove();
    rmSync(staging, { recursive: true, force: true });
    if (!isDiskProblem(err, folder, builtBytes)) throw err;
    throw new RuntimeError(
      `could not write the converted ${graph.label} to ${folder}: ${(err as Error).message}; free disk space there, ` +
        'point OMNILMM_CACHE at a folder with room, or turn the cache off (OMNILMM_CACHE=off, or the cache: false option)',
      { cause: err },
    );
  }
}

/**
 * Whether a failed write is the disk's to answer for: a file-system error, or any failure while the disk holds less
 * than twice the graph as built (the optimised entry keeps packed copies beside the weights). Anything else, such
 * as ONNX Runtime refusing the graph, is not, and keeps its own message.
 */
function isDiskProblem(err: unknown, folder: string, builtBytes: number): boolean {
  if (typeof (err as NodeJS.ErrnoException).code === 'string') return true;
  try {
    const disk = statfsSync(dirname(folder));
    return disk.bavail * disk.bsize < 2 * builtBytes;
  } catch {
    return false;
  }
}

function folderBytes(folder: string): number {
  return readdirSync(folder).reduce((sum, name) => sum + statSync(join(folder, name)).size, 0);
}

/** Replaces the graph in `staging` (model file and weights) by ONNX Runtime's optimised form of it. */
async function replaceByOptimized(staging: string, label: string, runtime: RuntimeOptions): Promise<void> {
  const optimized = join(staging, 'optimized');
  mkdirSync(optimized);
  await NodeGraphSession.saveOptimized(label, join(staging, MODEL_FILE), optimized, runtime);
  for (const name of readdirSync(staging)) if (name !== 'optimized') rmSync(join(staging, name));
  for (const name of readdirSync(optimized)) renameSync(join(optimized, name), join(staging, name));
  rmSync(optimized, { recursive: true });
}

let machine: string | null = null;

/** What an optimised, prepacked model depends on besides the graph: the CPU, its instruction sets, the runtime. */
function machineKey(): string {
  if (machine) return machine;
  let cpu = cpus()[0]?.model ?? 'unknown cpu';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    cpu = /^flags\s*:(.*)$/m.exec(info)?.[1]?.trim() ?? cpu;
  } catch {
    // Not Linux: the CPU's model name stands for its instruction sets.
  }
  machine = createHash('sha256').update(`${process.platform} ${process.arch} onnxruntime ${runtimeVersion()}\n${cpu}`).digest('hex').slice(0, 16);
  return machine;
}

/** sha256 over what decides the graphs built from a checkpoint folder (see the top of this file). */
function checkpointKey(dir: string): string {
  const hash = createHash('sha256').update(`omnilmm-cache ${CACHE_FORMAT}\n`).update(builderCodeHash());
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (name === 'config.json' || name.endsWith('.index.json')) {
      hash.update(`file ${name}\n`).update(readFileSync(path));
    } else if (name.endsWith('.safetensors') || name.endsWith('.bin')) {
      const stat = statSync(path);
      hash.update(`weights ${name} ${stat.size} ${stat.mtimeMs} ${basename(realpathSync(path))}\n`);
      if (name.endsWith('.safetensors')) hash.update(safetensorsHeader(path));
    }
  }
  return hash.digest('hex').slice(0, 32);
}

/** The 8-byte length and the JSON header of a safetensors file (empty when the file is too short to have one). */
function safetensorsHeader(path: string): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const length = Buffer.alloc(8);
    if (readAt(fd, length, 0) < 8) return new Uint8Array();
    const headerLength = Number(length.readBigUInt64LE(0));
    const header = Buffer.alloc(Math.min(headerLength, 100 * 1024 * 1024) + 8);
    const got = readAt(fd, header, 0);
    return header.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

let codeHash: string | null = null;

/** sha256 of the compiled graph builders (every .js file under dist/src/graph and dist/src/models). */
function builderCodeHash(): string {
  if (codeHash) return codeHash;
  const srcRoot = dirname(dirname(fileURLToPath(import.meta.url)));
  const hash = createHash('sha256');
  const visit = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.name.endsWith('.js')) hash.update(`${path.slice(srcRoot.length)}\n`).update(readFileSync(path));
    }
  };
  for (const folder of ['graph', 'models']) visit(join(srcRoot, folder));
  codeHash = hash.digest('hex');
  return codeHash;
}

/**
 * sha256 of the part's own key, of the options that reach its builder (object keys in sorted order) and of the
 * entry's form (the machine it was optimised for, or 'as built').
 */
function optionsKey(key: unknown, runtime: RuntimeOptions, form: string): string {
  const options = Object.fromEntries(
    Object.entries(runtime).filter(([name, value]) => !RUNTIME_ONLY_OPTIONS.has(name) && value !== undefined),
  );
  return createHash('sha256').update(stableJson({ key, options, form })).digest('hex').slice(0, 16);
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
