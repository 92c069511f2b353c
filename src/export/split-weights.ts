// Splits a graph's external-data file into several, each under a size a browser loads as one ArrayBuffer: the
// tensors are assigned to files in order, and each external initializer's `location` and `offset` in the ModelProto
// are rewritten to match (ONNX: ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.external_data = 13,
// StringStringEntryProto key = 1 / value = 2).

import { closeSync, openSync, writeSync } from 'node:fs';
import { readAt } from '../checkpoint/read-at.js';
import { RuntimeError } from '../errors.js';
import { ProtoWriter } from '../graph/protobuf.js';
import { ProtoReader, WIRE_LENGTH_DELIMITED } from '../tokenizer/protobuf.js';

const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const TENSOR_EXTERNAL_DATA = 13;
/** Each tensor starts at a multiple of this in its file (as the builder aligns them). */
const ALIGNMENT = 4096;

interface ExternalTensor {
  offset: number;
  length: number;
}

/** Where each tensor of the source file goes: file index and offset there. */
interface Placement {
  file: number;
  offset: number;
}

/**
 * Writes `weightsPath`'s tensors into `target(i)` files of at most `maxBytes` each and returns the rewritten model
 * and the files' names as the model names them (`name(i)`).
 */
export function splitExternalData(
  model: Uint8Array,
  weightsPath: string,
  maxBytes: number,
  name: (index: number) => string,
  target: (index: number) => string,
): { model: Uint8Array; files: string[] } {
  const tensors: ExternalTensor[] = [];
  rewrite(model, (tensor) => {
    tensors.push(tensor);
    return null;
  });
  const placements = new Map<number, Placement>();
  const sizes: number[] = [0];
  for (const tensor of [...tensors].sort((a, b) => a.offset - b.offset)) {
    if (tensor.length > maxBytes) throw new RuntimeError(`a single weight of ${tensor.length} bytes is larger than ${maxBytes}: it cannot be split`);
    let file = sizes.length - 1;
    let offset = Math.ceil(sizes[file]! / ALIGNMENT) * ALIGNMENT;
    if (offset + tensor.length > maxBytes && sizes[file]! > 0) {
      sizes.push(0);
      file += 1;
      offset = 0;
    }
    placements.set(tensor.offset, { file, offset });
    sizes[file] = offset + tensor.length;
  }
  copyTensors(weightsPath, tensors, placements, sizes.length, target);
  const rewritten = rewrite(model, (tensor) => {
    const place = placements.get(tensor.offset)!;
    return { location: name(place.file), offset: place.offset };
  });
  return { model: rewritten, files: sizes.map((_, i) => name(i)) };
}

function copyTensors(weightsPath: string, tensors: readonly ExternalTensor[], placements: Map<number, Placement>, count: number, target: (index: number) => string): void {
  const input = openSync(weightsPath, 'r');
  const outputs = Array.from({ length: count }, (_, i) => openSync(target(i), 'w'));
  try {
    for (const tensor of tensors) {
      const place = placements.get(tensor.offset)!;
      copyRange(input, tensor.offset, tensor.length, outputs[place.file]!, place.offset, `${weightsPath} ended before a weight that the graph names`);
    }
  } finally {
    closeSync(input);
    for (const fd of outputs) closeSync(fd);
  }
}

/** Copies `length` bytes at `from` of one open file to `to` of another, in pieces of at most 64 MiB. */
export function copyRange(input: number, from: number, length: number, output: number, to: number, whenShort: string): void {
  const buffer = new Uint8Array(Math.min(length, 64 * 2 ** 20));
  for (let done = 0; done < length; ) {
    const n = readAt(input, buffer.subarray(0, Math.min(buffer.length, length - done)), from + done);
    if (n === 0) throw new RuntimeError(whenShort);
    writeSync(output, buffer, 0, n, to + done);
    done += n;
  }
}

/** Copies the model, calling `relocate` for every external initializer and writing back what it returns (null: unchanged). */
function rewrite(model: Uint8Array, relocate: (tensor: ExternalTensor) => { location: string; offset: number } | null): Uint8Array {
  return rewriteFields(model, 0, model.length, (field, reader) =>
    field === MODEL_GRAPH
      ? nested(reader, (inner, start, end) =>
          rewriteFields(inner, start, end, (graphField, graphReader) =>
            graphField === GRAPH_INITIALIZER ? nested(graphReader, (t, s, e) => rewriteTensor(t, s, e, relocate)) : null,
          ),
        )
      : null,
  );
}

/** A length-delimited field's payload rewritten by `transform`, re-encoded with its new length. */
function nested(reader: ProtoReader, transform: (bytes: Uint8Array, start: number, end: number) => Uint8Array): Uint8Array {
  const payload = reader.bytesField();
  return transform(payload, 0, payload.length);
}

/**
 * Re-encodes a message field by field: `change` returns a field's new payload (length-delimited fields only) or null
 * to copy the field as it is.
 */
function rewriteFields(bytes: Uint8Array, start: number, end: number, change: (field: number, reader: ProtoReader) => Uint8Array | null): Uint8Array {
  const reader = new ProtoReader(bytes, start, end);
  const out = new ProtoWriter();
  for (;;) {
    const at = reader.offset;
    const next = reader.nextField();
    if (!next) break;
    if (next.wireType === WIRE_LENGTH_DELIMITED) {
      const before = reader.offset;
      const changed = change(next.field, reader);
      if (changed) {
        out.bytes(next.field, changed);
        continue;
      }
      if (reader.offset !== before) throw new RuntimeError('internal error: a field was read but not rewritten');
    }
    reader.skip(next.wireType);
    out.raw(bytes.subarray(at, reader.offset));
  }
  return out.finish();
}

function rewriteTensor(bytes: Uint8Array, start: number, end: number, relocate: (tensor: ExternalTensor) => { location: string; offset: number } | null): Uint8Array {
  const entries: [string, string][] = [];
  const reader = new ProtoReader(bytes, start, end);
  for (let next = reader.nextField(); next; next = reader.nextField()) {
    if (next.field === TENSOR_EXTERNAL_DATA && next.wireType === WIRE_LENGTH_DELIMITED) {
      const entry = reader.message();
      let key = '';
      let value = '';
      for (let f = entry.nextField(); f; f = entry.nextField()) {
        if (f.field === 1) key = entry.string();
        else if (f.field === 2) value = entry.string();
        else entry.skip(f.wireType);
      }
      entries.push([key, value]);
    } else {
      reader.skip(next.wireType);
    }
  }
  if (entries.length === 0) return bytes.subarray(start, end);
  const get = (key: string) => Number(entries.find(([k]) => k === key)?.[1] ?? NaN);
  const moved = relocate({ offset: get('offset'), length: get('length') });
  if (!moved) return bytes.subarray(start, end);
  return rewriteFields(bytes, start, end, (field, r) => {
    if (field !== TENSOR_EXTERNAL_DATA) return null;
    const entry = r.message();
    let key = '';
    for (let f = entry.nextField(); f; f = entry.nextField()) {
      if (f.field === 1) key = entry.string();
      else entry.skip(f.wireType);
    }
    const value = key === 'location' ? moved.location : key === 'offset' ? String(moved.offset) : String(get(key));
    return new ProtoWriter().string(1, key).string(2, value).finish();
  });
}
