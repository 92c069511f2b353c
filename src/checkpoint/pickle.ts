// A restricted unpickler for torch.save state dicts (the data.pkl inside a PyTorch zip checkpoint).
// It understands the opcodes torch.save emits (protocols 2 to 5) and resolves only the globals a dict of tensors
// needs. Any other global (os.system, builtins.eval, ...) makes the whole file refused: nothing is ever called,
// and the globals that are allowed are interpreted by fixed code below, never looked up dynamically.

import { CheckpointError } from '../errors.js';
import type { DType } from './safetensors.js';

/** The `('storage', torch.XStorage, key, location, numel)` persistent id of a tensor's storage. */
export interface StorageRef {
  dtype: DType;
  /** Entry name under `<archive>/data/`. */
  key: string;
  location: string;
  /** Number of elements of `dtype` in the storage. */
  numel: number;
}

/** A tensor as `torch._utils._rebuild_tensor_v2` describes it; offset and strides count elements. */
export interface PickledTensor {
  storage: StorageRef;
  storageOffset: number;
  shape: number[];
  stride: number[];
}

/** Storage classes torch.save references, and the dtype of their elements. */
const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

const ALLOWED_FUNCTIONS = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_parameter',
]);

type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | GlobalRef
  | StorageValue
  | TensorValue;

/** A resolved, allowed global: a storage class or one of ALLOWED_FUNCTIONS. */
class GlobalRef {
  constructor(readonly qualifiedName: string) {}
}

class TensorValue implements PickledTensor {
  constructor(readonly storage: StorageRef, readonly storageOffset: number, readonly shape: number[], readonly stride: number[]) {}
}

class StorageValue implements StorageRef {
  constructor(readonly dtype: DType, readonly key: string, readonly location: string, readonly numel: number) {}
}

/** Resolves a global by name, or refuses the file. */
function resolveGlobal(module: string, name: string, source: string): GlobalRef {
  const qualifiedName = `${module}.${name}`;
  const isStorage = module === 'torch' && Object.hasOwn(STORAGE_DTYPES, name);
  if (!isStorage && !ALLOWED_FUNCTIONS.has(qualifiedName)) {
    throw new CheckpointError(
      `${source} is refused: its pickle references the global ${qualifiedName}, which could execute code when loaded. ` +
        'Only tensor state dicts are read (tensors, storages, OrderedDict). If you trust where the file came from, ' +
        'convert it to safetensors with Python; otherwise delete it',
    );
  }
  return new GlobalRef(qualifiedName);
}

/**
 * Unpickles torch.save's data.pkl into name → tensor. `source` names the file in error messages.
 * The top level must be a dict (or OrderedDict) whose values are all tensors.
 */
export function unpickleStateDict(pkl: Buffer, source: string): Map<string, PickledTensor> {
  const root = new Unpickler(pkl, source).load();
  if (!(root instanceof Map)) {
    throw new CheckpointError(`${source} does not hold a state dict (its pickle's top level is ${describe(root)}); save model.state_dict()`);
  }
  const tensors = new Map<string, PickledTensor>();
  for (const [key, value] of root) {
    if (typeof key !== 'string') throw new CheckpointError(`${source}: the state dict has a non-string key ${describe(key)}`);
    if (!(value instanceof TensorValue)) {
      throw new CheckpointError(`${source}: state dict entry ${key} is ${describe(value)}, expected a tensor; save model.state_dict()`);
    }
    tensors.set(key, value);
  }
  return tensors;
}

function describe(value: PickleValue): string {
  if (value === null) return 'None';
  if (value instanceof Map) return 'a dict';
  if (Array.isArray(value)) return 'a tuple or list';
  if (value instanceof TensorValue) return 'a tensor';
  if (value instanceof StorageValue) return 'a storage';
  if (value instanceof GlobalRef) return `the global ${value.qualifiedName}`;
  return `a ${typeof value}`;
}

class Unpickler {
  private pos = 0;
  private stack: PickleValue[] = [];
  private readonly marks: PickleValue[][] = [];
  private readonly memo = new Map<number, PickleValue>();

  constructor(private readonly data: Buffer, private readonly source: string) {}

  private fail(why: string): CheckpointError {
    return new CheckpointError(`${this.source}: cannot read its pickle (data.pkl): ${why} (corrupt file?)`);
  }

  load(): PickleValue {
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      switch (op) {
        case 0x80: // PROTO
          if (this.u8() > 5) throw this.fail('pickle protocol newer than 5');
          break;
        case 0x95: // FRAME: a length prefix for the following opcodes; framing changes nothing here.
          this.take(8);
          break;
        case 0x2e: // STOP
          if (this.stack.length !== 1 || this.marks.length !== 0) throw this.fail('unbalanced stack at STOP');
          return this.stack[0]!;
        case 0x28: // MARK
          this.marks.push(this.stack);
          this.stack = [];
          break;
        case 0x30: // POP
          this.pop();
          break;
        case 0x31: // POP_MARK
          this.popMark();
          break;
        case 0x32: // DUP
          this.push(this.top());
          break;
        case 0x4e: // NONE
          this.push(null);
          break;
        case 0x88: // NEWTRUE
          this.push(true);
          break;
        case 0x89: // NEWFALSE
          this.push(false);
          break;
        case 0x4a: // BININT
          this.push(this.take(4).readInt32LE(0));
          break;
        case 0x4b: // BININT1
          this.push(this.u8());
          break;
        case 0x4d: // BININT2
          this.push(this.take(2).readUInt16LE(0));
          break;
        case 0x8a: // LONG1
          this.push(littleEndianSigned(this.take(this.u8())));
          break;
        case 0x47: // BINFLOAT
          this.push(this.take(8).readDoubleBE(0));
          break;
        case 0x58: // BINUNICODE
          this.push(this.take(this.take(4).readUInt32LE(0)).toString('utf8'));
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.push(this.take(this.u8()).toString('utf8'));
          break;
        case 0x8d: // BINUNICODE8
          this.push(this.take(this.u64()).toString('utf8'));
          break;
        case 0x7d: // EMPTY_DICT
          this.push(new Map());
          break;
        case 0x5d: // EMPTY_LIST
        case 0x29: // EMPTY_TUPLE
          this.push([]);
          break;
        case 0x74: // TUPLE
        case 0x6c: // LIST
          this.push(this.popMark());
          break;
        case 0x64: // DICT
          this.push(this.setItems(new Map(), this.popMark()));
          break;
        case 0x85: // TUPLE1
        case 0x86: // TUPLE2
        case 0x87: { // TUPLE3
          const n = op - 0x84;
          if (this.stack.length < n) throw this.fail('stack underflow');
          this.push(this.stack.splice(this.stack.length - n, n));
          break;
        }
        case 0x71: // BINPUT
          this.memo.set(this.u8(), this.top());
          break;
        case 0x72: // LONG_BINPUT
          this.memo.set(this.take(4).readUInt32LE(0), this.top());
          break;
        case 0x94: // MEMOIZE
          this.memo.set(this.memo.size, this.top());
          break;
        case 0x68: // BINGET
          this.push(this.memoGet(this.u8()));
          break;
        case 0x6a: // LONG_BINGET
          this.push(this.memoGet(this.take(4).readUInt32LE(0)));
          break;
        case 0x73: { // SETITEM
          const value = this.pop();
          const key = this.pop();
          this.setItems(this.dictOnTop(), [key, value]);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark();
          this.setItems(this.dictOnTop(), items);
          break;
        }
        case 0x61: { // APPEND
          const value = this.pop();
          this.listOnTop().push(value);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark();
          const list = this.listOnTop();
          for (const item of items) list.push(item);
          break;
        }
        case 0x63: { // GLOBAL "module\nname\n"
          const module = this.line();
          this.push(resolveGlobal(module, this.line(), this.source));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') throw this.fail('STACK_GLOBAL without module and name strings');
          this.push(resolveGlobal(module, name, this.source));
          break;
        }
        case 0x51: // BINPERSID
          this.push(this.persistentLoad(this.pop()));
          break;
        case 0x52: { // REDUCE
          const args = this.pop();
          const callable = this.pop();
          this.push(this.reduce(callable, args));
          break;
        }
        case 0x62: { // BUILD: sets object state (an OrderedDict's _metadata); weights do not depend on it, so it is dropped.
          this.pop();
          const target = this.top();
          if (!(target instanceof Map) && !(target instanceof TensorValue)) throw this.fail(`BUILD on ${describe(target)}`);
          break;
        }
        default:
          throw new CheckpointError(
            `${this.source}: its pickle uses opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}, which a tensor state dict ` +
              'never needs; the file is refused (corrupt, or not written by torch.save)',
          );
      }
    }
  }

  /** Calls one of the allowed functions, interpreting its arguments by fixed rules. */
  private reduce(callable: PickleValue, args: PickleValue): PickleValue {
    if (!(callable instanceof GlobalRef)) throw this.fail(`REDUCE on ${describe(callable)}`);
    if (!Array.isArray(args)) throw this.fail(`REDUCE with ${describe(args)} as arguments`);
    switch (callable.qualifiedName) {
      case 'collections.OrderedDict':
        if (args.length !== 0) throw this.fail('OrderedDict built from arguments');
        return new Map();
      case 'torch._utils._rebuild_tensor':
      case 'torch._utils._rebuild_tensor_v2': {
        // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
        const [storage, offset, size, stride] = args;
        if (!(storage instanceof StorageValue)) throw this.fail(`${callable.qualifiedName} without a storage`);
        const shape = this.intTuple(size, 'size');
        const strides = this.intTuple(stride, 'stride');
        if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0 || strides.length !== shape.length) {
          throw this.fail(`${callable.qualifiedName} with an invalid offset or stride`);
        }
        return new TensorValue(storage, offset, shape, strides);
      }
      case 'torch._utils._rebuild_parameter': {
        // (data, requires_grad, backward_hooks): a Parameter's weights are its data tensor.
        const data = args[0];
        if (!(data instanceof TensorValue)) throw this.fail('_rebuild_parameter without a tensor');
        return data;
      }
      default:
        throw new CheckpointError(`${this.source} is refused: its pickle calls ${callable.qualifiedName}, which a state dict never does`);
    }
  }

  /** torch.save's persistent id for a storage: ('storage', torch.XStorage, key, location, numel). */
  private persistentLoad(pid: PickleValue): StorageValue {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') throw this.fail(`unexpected persistent id ${describe(pid)}`);
    const [, type, key, location, numel] = pid;
    const storageName = type instanceof GlobalRef && type.qualifiedName.startsWith('torch.') ? type.qualifiedName.slice(6) : '';
    if (!Object.hasOwn(STORAGE_DTYPES, storageName)) throw this.fail(`persistent id with storage type ${describe(type)}`);
    if (typeof key !== 'string' || typeof location !== 'string' || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
      throw this.fail('persistent id with an invalid key, location or size');
    }
    return new StorageValue(STORAGE_DTYPES[storageName]!, key, location, numel);
  }

  private intTuple(value: PickleValue | undefined, what: string): number[] {
    if (!Array.isArray(value) || !value.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
      throw this.fail(`tensor ${what} is not a tuple of non-negative integers`);
    }
    return [...(value as number[])];
  }

  private setItems(dict: Map<PickleValue, PickleValue>, items: PickleValue[]): Map<PickleValue, PickleValue> {
    if (items.length % 2 !== 0) throw this.fail('odd number of dict items');
    for (let i = 0; i < items.length; i += 2) dict.set(items[i]!, items[i + 1]!);
    return dict;
  }

  private dictOnTop(): Map<PickleValue, PickleValue> {
    const dict = this.top();
    if (!(dict instanceof Map)) throw this.fail(`SETITEM on ${describe(dict)}`);
    return dict;
  }

  private listOnTop(): PickleValue[] {
    const list = this.top();
    if (!Array.isArray(list)) throw this.fail(`APPEND on ${describe(list)}`);
    return list;
  }

  private memoGet(index: number): PickleValue {
    const value = this.memo.get(index);
    if (value === undefined) throw this.fail(`memo entry ${index} used before it was stored`);
    return value;
  }

  private push(value: PickleValue): void {
    this.stack.push(value);
  }

  private pop(): PickleValue {
    if (this.stack.length === 0) throw this.fail('stack underflow');
    return this.stack.pop()!;
  }

  private top(): PickleValue {
    if (this.stack.length === 0) throw this.fail('stack underflow');
    return this.stack[this.stack.length - 1]!;
  }

  private popMark(): PickleValue[] {
    const items = this.stack;
    const previous = this.marks.pop();
    if (!previous) throw this.fail('MARK missing');
    this.stack = previous;
    return items;
  }

  private take(n: number): Buffer {
    if (this.pos + n > this.data.length) throw this.fail(`it ends at byte ${this.data.length} in the middle of an opcode (truncated?)`);
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private u8(): number {
    return this.take(1)[0]!;
  }

  private u64(): number {
    const value = this.take(8).readBigUInt64LE(0);
    if (value > BigInt(this.data.length)) throw this.fail('string length beyond the end of the pickle');
    return Number(value);
  }

  private line(): string {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) throw this.fail(`it ends at byte ${this.data.length} in the middle of an opcode (truncated?)`);
    const text = this.data.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return text;
  }
}

/** LONG1's little-endian two's-complement integer, as a number when it is exactly representable. */
function littleEndianSigned(bytes: Buffer): number | bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!);
  if (bytes.length > 0 && bytes[bytes.length - 1]! & 0x80) value -= 1n << BigInt(8 * bytes.length);
  const small = Number(value);
  return Number.isSafeInteger(small) ? small : value;
}
