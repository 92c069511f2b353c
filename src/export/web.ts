// `omnilmm export-web`: a static folder a browser runs the model from — the page, our compiled modules,
// onnxruntime-web, and the model as graphs with external weights, the tensors the host reads (token embeddings,
// position tables), the tokenizer and config files, and a manifest of sizes and SHA-256 hashes.

import { createHash } from 'node:crypto';
import { closeSync, cpSync, createReadStream, existsSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WEB_MANIFEST_FORMAT, type WebManifest, type WebManifestFile } from '../browser/manifest.js';
import { checkWebModelType, createWebModel } from '../browser/web-families.js';
import { folderFiles } from '../checkpoint/folder-files.js';
import { openCheckpoint } from '../checkpoint/open.js';
import type { RowReader, TensorSource } from '../checkpoint/safetensors.js';
import { InvalidRequestError, RuntimeError } from '../errors.js';
import type { WeightPrecision } from '../graph/quantize.js';
import { loadModelConfig } from '../models/registry.js';
import type { GraphSession, GraphSpec } from '../runtime/graph-session.js';
import { copyRange, splitExternalData } from './split-weights.js';

/** The model folder's files a browser reads besides graphs and tensors: configs, tokenizer, chat template. */
function isModelTextFile(dir: string, name: string): boolean {
  return /\.(json|jinja|model|txt)$/.test(name) && !name.endsWith('.index.json') && statSync(join(dir, name)).isFile();
}

/** onnxruntime-web's files the page loads: the WASM bundle and the WebGPU one, with their runtimes. */
const ORT_WEB_FILES = [
  'ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm',
  'ort.webgpu.min.mjs', 'ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm',
];

/** An ArrayBuffer larger than this cannot be relied on in every browser; a wasm32 heap holds at most 4 GiB in all. */
const MAX_FILE_BYTES = 2 ** 31 - 1;
const MAX_WASM_BYTES = 4 * 2 ** 30;
/** Larger weight files are split into pieces of at most this size (each one ArrayBuffer when the page loads it). */
const MAX_PIECE_BYTES = 2 ** 30;

export interface WebExportOptions {
  precision: WeightPrecision;
  visionPrecision: WeightPrecision;
  /** What the user named the model (a folder or a hub id), recorded in the manifest. */
  modelId: string;
  /** Reports each step ("building the vision tower…"). */
  log?: (line: string) => void;
}

export interface WebExportResult {
  manifest: WebManifest;
  totalBytes: number;
}

/**
 * Writes the export of the model folder `dir` into `out` (which must be empty or hold an earlier export). A failed
 * export removes what it wrote.
 */
export async function exportWeb(dir: string, out: string, options: WebExportOptions): Promise<WebExportResult> {
  const config = loadModelConfig(dir);
  checkWebModelType(config.modelType);
  prepareFolder(out);
  const modelDir = join(out, 'model');
  try {
    mkdirSync(join(modelDir, 'graphs'), { recursive: true });
    mkdirSync(join(modelDir, 'tensors'), { recursive: true });
    const checkpoint = openCheckpoint(dir);
    const graphs: WebManifest['graphs'] = {};
    // Graphs are built from the checkpoint itself, so that only the host code's reads are recorded.
    const exportGraph = async (graph: GraphSpec): Promise<GraphSession> => {
      options.log?.(`building the ${graph.label}…`);
      const built = await graph.build(checkpoint);
      const model = `graphs/${graph.part}.onnx`;
      const weights: { location: string; path: string }[] = [];
      let modelBytes = built.model;
      if (built.weights && built.weights.byteLength > MAX_PIECE_BYTES) {
        const path = (i: number) => `graphs/${graph.part}.weights-${i}.bin`;
        const split = splitExternalData(built.model, built.weights.path, MAX_PIECE_BYTES, (i) => `weights-${i}.bin`, (i) => join(modelDir, path(i)));
        modelBytes = split.model;
        split.files.forEach((location, i) => weights.push({ location, path: path(i) }));
      } else if (built.weights) {
        weights.push({ location: 'weights.bin', path: `graphs/${graph.part}.weights.bin` });
        cpSync(built.weights.path, join(modelDir, weights[0]!.path));
      }
      built.weights?.remove();
      writeFileSync(join(modelDir, model), modelBytes);
      graphs[graph.part] = { model, weights, key: JSON.stringify(graph.key) };
      return standInSession(graph.label);
    };
    const hostReads = recordingHostReads(checkpoint);
    try {
      const model = await createWebModel(config.modelType, folderFiles(dir), hostReads.source, {
        precision: options.precision, visionPrecision: options.visionPrecision, maxBeams: 3, openGraph: exportGraph,
      }, dir);
      await model.release();
      options.log?.('writing the tensors the page reads…');
      const tensors = hostReads.names().map((name, i) => {
        const info = checkpoint.info(name);
        const path = `tensors/${i}.bin`;
        copyTensorBytes(info, join(modelDir, path));
        return { name, path, dtype: info.dtype, shape: info.shape };
      });
      for (const file of readdirSync(dir)) if (isModelTextFile(dir, file)) cpSync(join(dir, file), join(modelDir, file));
      options.log?.('hashing the files…');
      const files = await describeFiles(modelDir, graphs);
      const manifest: WebManifest = {
        format: WEB_MANIFEST_FORMAT, model_type: config.modelType, name: model.name, model_id: options.modelId,
        precision: options.precision, vision_precision: options.visionPrecision, graphs, tensors, files,
      };
      checkSizes(files);
      writeFileSync(join(modelDir, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
      copyApp(out);
      const totalBytes = files.reduce((sum, f) => sum + f.bytes, 0);
      return { manifest, totalBytes };
    } finally {
      checkpoint.close();
    }
  } catch (err) {
    rmSync(out, { recursive: true, force: true });
    throw err;
  }
}

/** `out` must not exist, be empty, or hold an earlier export (which is replaced). */
function prepareFolder(out: string): void {
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new InvalidRequestError(`${out} is a file: --out must name a folder`);
    const entries = readdirSync(out);
    if (entries.length > 0 && !existsSync(join(out, 'model', 'manifest.json'))) {
      throw new InvalidRequestError(`${out} is not empty and holds no earlier export: choose an empty or new folder for --out`);
    }
    rmSync(out, { recursive: true, force: true });
  }
  makeFolders(out);
}

/**
 * `mkdir -p`, one level at a time: Node's recursive mkdir never returns where mkdir fails with ENOENT under a folder
 * that exists (procfs: an export to /proc/x hung).
 */
function makeFolders(folder: string): void {
  const parent = dirname(folder);
  if (parent !== folder && !existsSync(parent)) makeFolders(parent);
  mkdirSync(folder);
}

/** A session that is never run, for a model that is only built (an export) or only prepares prompts (a bench). */
export function standInSession(label: string): GraphSession {
  return {
    label,
    inputNames: [],
    acceptsEmptyInputs: true,
    run: () => Promise.reject(new RuntimeError(`internal error: the ${label} stand-in session was run`)),
    release: async () => {},
  };
}

/** The checkpoint as the model's host code sees it, recording the tensors it reads outside graph builds. */
function recordingHostReads(checkpoint: TensorSource): { source: TensorSource; names(): string[] } {
  const read = new Set<string>();
  const source: TensorSource = {
    names: () => checkpoint.names(),
    has: (name) => checkpoint.has(name),
    info: (name) => checkpoint.info(name),
    float32: (name) => {
      read.add(name);
      return checkpoint.float32(name);
    },
    rows: (name): RowReader => {
      read.add(name);
      if (checkpoint.rows) return checkpoint.rows(name);
      throw new RuntimeError(`internal error: the checkpoint cannot read ${name} by rows`);
    },
    close: () => checkpoint.close(),
  };
  return { source, names: () => [...read] };
}

/** Copies a tensor's bytes as stored (its checkpoint dtype, row-major). */
function copyTensorBytes(info: { file: string; offset: number; byteLength: number }, target: string): void {
  const input = openSync(info.file, 'r');
  const output = openSync(target, 'w');
  try {
    copyRange(input, info.offset, info.byteLength, output, 0, `${info.file} ended early while copying a tensor: the checkpoint changed on disk`);
  } finally {
    closeSync(input);
    closeSync(output);
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function describeFiles(modelDir: string, graphs: WebManifest['graphs']): Promise<WebManifestFile[]> {
  const large = new Set(Object.values(graphs).flatMap((g) => [g.model, ...g.weights.map((w) => w.path)]));
  const files: WebManifestFile[] = [];
  const walk = (folder: string): string[] =>
    readdirSync(folder, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(folder, e.name)) : [join(folder, e.name)]));
  for (const path of walk(modelDir).sort()) {
    const name = relative(modelDir, path).split('\\').join('/');
    const kind = !large.has(name) ? 'small' : name.endsWith('.onnx') ? 'graph' : 'weights';
    files.push({ path: name, bytes: statSync(path).size, sha256: await sha256File(path), kind });
  }
  return files;
}

function checkSizes(files: readonly WebManifestFile[]): void {
  const tooLarge = files.filter((f) => f.bytes > MAX_FILE_BYTES);
  if (tooLarge.length > 0) {
    throw new InvalidRequestError(
      `${tooLarge.map((f) => f.path).join(', ')} would be over 2 GB, which a browser cannot load as one file: this model is too large for export-web`,
    );
  }
  const graphBytes = files.filter((f) => f.kind !== 'small').reduce((sum, f) => sum + f.bytes, 0);
  if (graphBytes > MAX_WASM_BYTES) {
    throw new InvalidRequestError(`the graphs take ${(graphBytes / 2 ** 30).toFixed(2)} GiB, more than a browser's 4 GiB WebAssembly memory: export with --precision int4`);
  }
}

/** The page (dist/src/web-app and two files of dist/src/web), our compiled modules (dist/src as lib/), onnxruntime-web and jinja. */
function copyApp(out: string): void {
  const distSrc = dirname(dirname(fileURLToPath(import.meta.url)));
  const app = join(distSrc, 'web-app');
  cpSync(join(app, 'index.html'), join(out, 'index.html'));
  cpSync(app, join(out, 'app'), { recursive: true, filter: (path) => !path.endsWith('index.html') });
  // What the page shares with the server-backed chat page: its controls, the live camera and the chat's styles.
  for (const shared of ['chat-shell.js', 'live-camera.js']) cpSync(join(distSrc, 'web', shared), join(out, 'app', shared));
  cpSync(join(distSrc, 'web', 'app.css'), join(out, 'app', 'chat.css'));
  cpSync(distSrc, join(out, 'lib'), {
    recursive: true,
    filter: (path) => !/\.(d\.ts|map)$/.test(path) && !path.startsWith(app),
  });
  const require = createRequire(import.meta.url);
  const ortDist = dirname(require.resolve('onnxruntime-web/wasm'));
  mkdirSync(join(out, 'vendor', 'onnxruntime-web'), { recursive: true });
  for (const file of ORT_WEB_FILES) cpSync(join(ortDist, file), join(out, 'vendor', 'onnxruntime-web', file));
  const jinja = join(dirname(require.resolve('@huggingface/jinja')), 'index.js');
  mkdirSync(join(out, 'vendor', 'jinja'), { recursive: true });
  cpSync(jinja, join(out, 'vendor', 'jinja', 'index.js'));
}
