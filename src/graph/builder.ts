// A small ONNX graph builder. Nodes are named like `/llm/layers.3/attn/q_proj/MatMul` and their outputs
// `<node>/output_<k>`; small constants are de-duplicated; large weights are stored as external data (one
// in-memory "file" per weight, handed to the runtime without concatenating them).

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
export type AttrValue = number | number[] | string | FloatAttr;

export interface NodeOptions {
  /** Full node name, e.g. `/vision/blocks.0/attn/qkv/MatMul`. */
  name: string;
  attrs?: Record<string, AttrValue>;
  /** Number of outputs (default 1). */
  outputs?: number;
  domain?: string;
}

interface TensorEntry {
  name: string;
  type: ElemType;
  dims: number[];
  data: TensorData;
  external: boolean;
}

interface ValueInfo {
  name: string;
  type: ElemType;
  shape: Dim[];
}

export interface SerializedModel {
  model: Uint8Array;
  /** In-memory external-data files, named as the initializers' `location` entries reference them. */
  externalData: { path: string; data: Uint8Array }[];
}

/** Weights at least this large go to external data; smaller ones stay inline in the protobuf. */
const EXTERNAL_MIN_BYTES = 1024;

export class Graph {
  private readonly nodes: ProtoWriter[] = [];
  private readonly tensors: TensorEntry[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly constants = new Map<string, string>();
  private readonly names = new Set<string>();

  constructor(readonly name: string) {}

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

  /** A named weight (initializer). */
  weight(name: string, data: TensorData, dims: number[], type: ElemType = 'float32'): string {
    this.claim(name);
    this.tensors.push({ name, type, dims, data, external: data.byteLength >= EXTERNAL_MIN_BYTES });
    return name;
  }

  /** A small constant, shared by every node that asks for the same type, shape and values. */
  constant(type: ElemType, dims: number[], values: number[] | bigint[]): string {
    const key = `${type}|${dims.join(',')}|${values.join(',')}`;
    const known = this.constants.get(key);
    if (known) return known;
    const name = `/const/${type}_${this.constants.size}`;
    this.constants.set(key, name);
    this.tensors.push({ name, type, dims, data: typedArray(type, values), external: false });
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

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`graph ${this.name}: the name ${name} is used twice`);
    this.names.add(name);
  }

  /** Encodes the ModelProto (opset 21 + com.microsoft 1); weights are returned as external-data buffers. */
  serialize(opset = 21): SerializedModel {
    const externalData: SerializedModel['externalData'] = [];
    const graph = new ProtoWriter();
    for (const n of this.nodes) graph.message(1, n);
    graph.string(2, this.name);
    for (const t of this.tensors) {
      const tensor = new ProtoWriter();
      for (const d of t.dims) tensor.int(1, d);
      tensor.int(2, ELEM_TYPE_CODE[t.type]);
      tensor.string(8, t.name);
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      if (t.external) {
        const path = `weights/${externalData.length}`;
        externalData.push({ path, data: bytes });
        for (const [k, v] of [['location', path], ['offset', '0'], ['length', String(bytes.byteLength)]]) {
          tensor.message(13, new ProtoWriter().string(1, k!).string(2, v!));
        }
        tensor.int(14, 1);
      } else {
        tensor.bytes(9, bytes);
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
    return { model: model.finish(), externalData };
  }
}

function encodeAttribute(name: string, value: AttrValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
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
