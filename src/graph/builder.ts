// A small ONNX graph builder. Nodes are named like `/llm/layers.3/attn/q_proj/MatMul` and their outputs
// `<node>/output_<k>`; small constants are de-duplicated. Large weights are spilled, as they are added, to one
// external-data file in a fresh temporary folder, so the caller's arrays can be garbage-collected and the JS heap
// never holds a whole model; the runtime creates its session from `model.onnx` written beside that file.

import { closeSync, cpSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeError } from '../errors.js';
import { ProtoWriter } from './protobuf.js';

export type ElemType = 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';
export type Dim = number | string;
export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array;

const ELEM_TYPE_CODE: Record<ElemType, number> = {
  float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, bfloat16: 16,
};

/** Marks a float attribute (plain numbers are ints, plain number arrays are ints). */
export class FloatAttr {
  constructor(readonly value: number | number[]) {}
}
export const f = (value: number | number[]): FloatAttr => new FloatAttr(value);

/** A subgraph attribute (an If branch), made by `Graph.subgraph`. */
export class GraphAttr {
  constructor(readonly proto: ProtoWriter) {}
}
export type AttrValue = number | number[] | string | FloatAttr | GraphAttr;

export interface NodeOptions {
  /** Full node name, e.g. `/vision/blocks.0/attn/qkv/MatMul`. */
  name: string;
  attrs?: Record<string, AttrValue>;
  /** Number of outputs (default 1). */
  outputs?: number;
  domain?: string;
}

/** A weight kept in the protobuf, or one already written to the external-data file. */
type TensorEntry =
  | { name: string; type: ElemType; dims: number[]; data: TensorData }
  | { name: string; type: ElemType; dims: number[]; offset: number; length: number };

interface ValueInfo {
  name: string;
  type: ElemType;
  shape: Dim[];
}

export interface SerializedModel {
  /** The ModelProto; external initializers name `WeightFile.FILE_NAME` as their location. */
  model: Uint8Array;
  /** The external-data file (null when every weight is inline). Whoever creates the session removes it. */
  weights: WeightFile | null;
}

/** Weights at least this large go to external data; smaller ones stay inline in the protobuf. */
const EXTERNAL_MIN_BYTES = 1024;

/** Each external weight starts at a multiple of this (a page), so a memory-mapped weight is page-aligned. */
const EXTERNAL_ALIGNMENT = 4096;

/** Temporary folders not yet removed; the last ones go when the process exits. */
const liveFolders = new Set<string>();
let exitHookInstalled = false;
/** Parent folders already swept for what dead processes left behind. */
const sweptParents = new Set<string>();
/** Weight folders are `omnilmm-graph-<pid>-<random>`. */
const FOLDER_PREFIX = 'omnilmm-graph-';
const FOLDER_PID = /^omnilmm-graph-(\d+)-/;

/**
 * Removes the weight folders of processes that no longer run (killed before their session existed: SIGKILL, a
 * crash). Folder names carry the creating process id; a live or unknown owner keeps its folder.
 */
function sweepDeadFolders(parent: string): void {
  if (sweptParents.has(parent)) return;
  sweptParents.add(parent);
  let entries: string[];
  try {
    entries = readdirSync(parent);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = Number(FOLDER_PID.exec(entry)?.[1]);
    if (!pid || pid === process.pid || processRuns(pid)) continue;
    try {
      rmSync(join(parent, entry), { recursive: true, force: true });
    } catch {
      // Someone else's folder, or already gone.
    }
  }
}

/** Whether a process with this id is alive (folders of dead processes can be swept). */
export function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes a folder now, or, if the system refuses (Windows, while mapped), at process exit. */
function removeFolder(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
    liveFolders.delete(dir);
  } catch {
    // Left in liveFolders for the exit hook.
  }
}

/** Removes the folder of a weight file whose owner (a Graph, then its SerializedModel) was collected unused. */
const abandoned = new FinalizationRegistry<string>(removeFolder);

function trackFolder(dir: string): void {
  liveFolders.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const folder of liveFolders) {
      try {
        rmSync(folder, { recursive: true, force: true });
      } catch {
        // Nothing more can be done while exiting.
      }
    }
  });
}

/**
 * The external-data file of one graph, `<temp folder>/weights.bin`, written append-only (opened per append, so an
 * abandoned graph holds no descriptor). ONNX Runtime resolves `location` relative to the model file, so the model
 * must be written into `dir` (`modelPath`) before the session is created from that path; `remove()` deletes the
 * folder afterwards. The folder also goes when its owner is garbage-collected first, or at process exit.
 */
export class WeightFile {
  static readonly FILE_NAME = 'weights.bin';
  readonly dir: string;
  private size = 0;
  private sealed = false;

  constructor(parent: string = tmpdir()) {
    sweepDeadFolders(parent);
    this.dir = onDiskFailure(parent, () => mkdtempSync(join(parent, `${FOLDER_PREFIX}${process.pid}-`)));
    trackFolder(this.dir);
    onDiskFailure(parent, () => closeSync(openSync(this.path, 'w')));
  }

  get path(): string {
    return join(this.dir, WeightFile.FILE_NAME);
  }

  /** Where the runtime expects the model: beside the weights. */
  get modelPath(): string {
    return join(this.dir, 'model.onnx');
  }

  /** Bytes written so far, padding included. */
  get byteLength(): number {
    return this.size;
  }

  /** Makes `owner` responsible for the folder: if it is garbage-collected before `remove()`, the folder goes. */
  adopt(owner: object): void {
    abandoned.unregister(this);
    abandoned.register(owner, this.dir, this);
  }

  /** Appends `bytes` at the next aligned offset and returns that offset. */
  append(bytes: Uint8Array): number {
    if (this.sealed) throw new Error(`the weight file ${this.path} is complete; it takes no more weights`);
    const offset = Math.ceil(this.size / EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
    onDiskFailure(this.dir, () => {
      const fd = openSync(this.path, 'r+');
      try {
        for (let done = 0; done < bytes.byteLength; ) done += writeSync(fd, bytes, done, bytes.byteLength - done, offset + done);
      } finally {
        closeSync(fd);
      }
    });
    this.size = offset + bytes.byteLength;
    return offset;
  }

  /** Ends writing: the file is complete. */
  seal(): void {
    this.sealed = true;
  }

  /**
   * Moves the folder (the weights, and the model file once written) to `target`, which must not exist yet; from then
   * on it is no longer temporary, and this object is finished. Across file systems the folder is copied.
   */
  moveTo(target: string): void {
    this.sealed = true;
    abandoned.unregister(this);
    onDiskFailure(target, () => {
      try {
        renameSync(this.dir, target);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
        cpSync(this.dir, target, { recursive: true });
        rmSync(this.dir, { recursive: true, force: true });
      }
    });
    liveFolders.delete(this.dir);
  }

  /** Deletes the folder with the weights and the model file; a session already created keeps working. */
  remove(): void {
    this.sealed = true;
    abandoned.unregister(this);
    removeFolder(this.dir);
  }
}

/** Runs a file-system step, turning its failure (full disk, no permission) into a RuntimeError that says what to do. */
function onDiskFailure<T>(where: string, step: () => T): T {
  try {
    return step();
  } catch (err) {
    throw new RuntimeError(
      `could not write graph weights under ${where}: ${(err as Error).message}; ` +
        'free disk space there or point TMPDIR at a folder with room for the model',
      { cause: err },
    );
  }
}

export class Graph {
  /** Where `node` adds nodes: the graph's own list, or a subgraph's while `subgraph` builds it. */
  private nodes: ProtoWriter[] = [];
  private readonly tensors: TensorEntry[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly constants = new Map<string, string>();
  private readonly names = new Set<string>();
  private weightFile: WeightFile | null = null;
  private serialized = false;

  /** `tempDir`: where the external-data folder is made (default: the OS temporary folder, `TMPDIR`). */
  constructor(
    readonly name: string,
    private readonly options: { tempDir?: string } = {},
  ) {}

  /** Declares a graph input and returns its value name. */
  input(name: string, type: ElemType, shape: Dim[]): string {
    this.inputs.push({ name, type, shape });
    return name;
  }

  /** Declares `value` as a graph output called `name` (an Identity node renames it when needed). */
  output(value: string, name: string, type: ElemType, shape: Dim[]): void {
    if (value !== name) this.node('Identity', [value], { name: `/output/${name}/Identity`, outputs: 1 }, [name]);
    this.outputs.push({ name, type, shape });
  }

  /**
   * A named weight (initializer). One of EXTERNAL_MIN_BYTES or more is written to the external-data file at once;
   * the graph keeps only its offset, so the caller's array can be dropped.
   */
  weight(name: string, data: TensorData, dims: number[], type: ElemType = 'float32'): string {
    if (this.serialized) throw new Error(`graph ${this.name} was already serialized; add weights before serialize()`);
    this.claim(name);
    if (data.byteLength < EXTERNAL_MIN_BYTES) {
      this.tensors.push({ name, type, dims, data });
    } else {
      if (!this.weightFile) {
        this.weightFile = new WeightFile(this.options.tempDir);
        this.weightFile.adopt(this);
      }
      const offset = this.weightFile.append(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.tensors.push({ name, type, dims, offset, length: data.byteLength });
    }
    return name;
  }

  /** A small constant, shared by every node that asks for the same type, shape and values. */
  constant(type: ElemType, dims: number[], values: number[] | bigint[]): string {
    const key = `${type}|${dims.join(',')}|${values.join(',')}`;
    const known = this.constants.get(key);
    if (known) return known;
    const name = `/const/${type}_${this.constants.size}`;
    this.constants.set(key, name);
    this.tensors.push({ name, type, dims, data: typedArray(type, values) });
    this.claim(name);
    return name;
  }

  /** A float32 scalar constant. */
  scalar(value: number): string {
    return this.constant('float32', [], [value]);
  }

  /** An int64 1-D constant (shapes, axes, indices). */
  ints(values: number[]): string {
    return this.constant('int64', [values.length], values.map((v) => BigInt(v)));
  }

  /** Adds a node; returns its output names (`<name>/output_<k>` unless given). */
  node(opType: string, inputs: string[], opts: NodeOptions, outputNames?: string[]): string[] {
    const outputs = outputNames ?? Array.from({ length: opts.outputs ?? 1 }, (_, k) => `${opts.name}/output_${k}`);
    this.claim(opts.name);
    const w = new ProtoWriter();
    for (const i of inputs) w.string(1, i);
    for (const o of outputs) w.string(2, o);
    w.string(3, opts.name);
    w.string(4, opType);
    for (const [key, value] of Object.entries(opts.attrs ?? {})) w.message(5, encodeAttribute(key, value));
    if (opts.domain) w.string(7, opts.domain);
    this.nodes.push(w);
    return outputs;
  }

  /** Adds a single-output node and returns its output name. */
  op(opType: string, inputs: string[], name: string, attrs?: Record<string, AttrValue>, domain?: string): string {
    return this.node(opType, inputs, { name, attrs, domain })[0]!;
  }

  /**
   * A subgraph (e.g. a branch of an If node): the nodes that `build` adds while it runs go to the subgraph, which
   * sees every value of the graph around it (weights and constants stay in the main graph). `build` returns the
   * values the subgraph gives out, each passed through an Identity to `<name>/output_<k>`, of the given types and ranks.
   */
  subgraph(name: string, outputs: readonly { type: ElemType; rank: number }[], build: () => string[]): GraphAttr {
    const outer = this.nodes;
    const inner: ProtoWriter[] = [];
    this.nodes = inner;
    let names: string[];
    try {
      const values = build();
      if (values.length !== outputs.length) throw new Error(`subgraph ${name} gave ${values.length} values for ${outputs.length} outputs`);
      names = values.map((value, k) => this.node('Identity', [value], { name: `${name}/output_${k}/Identity` }, [`${name}/output_${k}`])[0]!);
    } finally {
      this.nodes = outer;
    }
    const graph = new ProtoWriter();
    for (const n of inner) graph.message(1, n);
    graph.string(2, name);
    outputs.forEach(({ type, rank }, k) => {
      const shape = Array.from({ length: rank }, (_, i) => `${name}/output_${k}/d${i}`);
      graph.message(12, encodeValueInfo({ name: names[k]!, type, shape }));
    });
    return new GraphAttr(graph);
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`graph ${this.name}: the name ${name} is used twice`);
    this.names.add(name);
  }

  /**
   * Encodes the ModelProto (opset 21 + com.microsoft 1) and hands over the external-data file, closed: a graph
   * serializes once, and the receiver (GraphSession.create) removes the file.
   */
  serialize(opset = 21): SerializedModel {
    if (this.serialized) throw new Error(`graph ${this.name} was already serialized; its weight file belongs to the first result`);
    this.serialized = true;
    this.weightFile?.seal();
    const graph = new ProtoWriter();
    for (const n of this.nodes) graph.message(1, n);
    graph.string(2, this.name);
    for (const t of this.tensors) {
      const tensor = new ProtoWriter();
      for (const d of t.dims) tensor.int(1, d);
      tensor.int(2, ELEM_TYPE_CODE[t.type]);
      tensor.string(8, t.name);
      if ('data' in t) {
        tensor.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      } else {
        for (const [k, v] of [['location', WeightFile.FILE_NAME], ['offset', String(t.offset)], ['length', String(t.length)]]) {
          tensor.message(13, new ProtoWriter().string(1, k!).string(2, v!));
        }
        tensor.int(14, 1);
      }
      graph.message(5, tensor);
    }
    for (const v of this.inputs) graph.message(11, encodeValueInfo(v));
    for (const v of this.outputs) graph.message(12, encodeValueInfo(v));
    const model = new ProtoWriter()
      .int(1, 10)
      .string(2, 'omnilmm')
      .message(7, graph)
      .message(8, new ProtoWriter().string(1, '').int(2, opset))
      .message(8, new ProtoWriter().string(1, 'com.microsoft').int(2, 1));
    const serialized = { model: model.finish(), weights: this.weightFile };
    this.weightFile?.adopt(serialized);
    return serialized;
  }
}

function encodeAttribute(name: string, value: AttrValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (value instanceof GraphAttr) return w.message(6, value.proto).int(20, 5);
  if (value instanceof FloatAttr) {
    if (Array.isArray(value.value)) {
      for (const v of value.value) w.float(7, v);
      return w.int(20, 6);
    }
    return w.float(2, value.value).int(20, 1);
  }
  if (typeof value === 'string') return w.string(4, value).int(20, 3);
  if (Array.isArray(value)) {
    for (const v of value) w.int(8, v);
    return w.int(20, 7);
  }
  return w.int(3, value).int(20, 2);
}

function encodeValueInfo(v: ValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.shape) shape.message(1, typeof d === 'number' ? new ProtoWriter().int(1, d) : new ProtoWriter().string(2, d));
  const tensorType = new ProtoWriter().int(1, ELEM_TYPE_CODE[v.type]).message(2, shape);
  return new ProtoWriter().string(1, v.name).message(2, new ProtoWriter().message(1, tensorType));
}

function typedArray(type: ElemType, values: number[] | bigint[]): TensorData {
  switch (type) {
    case 'float32':
      return Float32Array.from(values as number[]);
    case 'int64':
      return BigInt64Array.from(values as bigint[]);
    case 'int32':
      return Int32Array.from(values as number[]);
    case 'uint8':
    case 'bool':
      return Uint8Array.from(values as number[]);
    case 'int8':
      return Int8Array.from(values as number[]);
    default:
      throw new Error(`constants of type ${type} are not supported`);
  }
}
