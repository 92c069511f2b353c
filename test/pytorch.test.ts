import assert from 'node:assert/strict';
import fs, { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32 as zlibCrc32, deflateRawSync } from 'node:zlib';
import { openCheckpoint } from '../src/checkpoint/open.js';
import { PytorchCheckpoint, PytorchFile } from '../src/checkpoint/pytorch.js';
import { SafetensorsCheckpoint } from '../src/checkpoint/safetensors.js';
import { crc32 } from '../src/checkpoint/zip.js';
import { CheckpointError, FileNotFoundError } from '../src/errors.js';
import { fixturePath } from './helpers/fixtures.js';

const safetensorsDir = fixturePath('omnilmm12b-tiny', 'model');
const pytorchDir = fixturePath('omnilmm12b-tiny', 'model-pt');
const hostileDir = fixturePath('omnilmm12b-tiny', 'model-pt-hostile');
const pytorchBin = join(pytorchDir, 'pytorch_model.bin');
/** What the hostile pickle's os.system payload would create (fixture README, addendum). */
const hostileMarker = '/tmp/omnilmm-pickle-ran';

function withTempDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'omnilmm-pt-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs fn while counting the bytes that fs.readSync returns (our readers use nothing else). */
function countBytesRead<T>(fn: () => T): { result: T; bytes: number } {
  const original = fs.readSync;
  let bytes = 0;
  fs.readSync = ((...args: unknown[]) => {
    const n = (original as (...a: unknown[]) => number)(...args);
    bytes += n;
    return n;
  }) as typeof fs.readSync;
  syncBuiltinESMExports();
  try {
    const result = fn();
    return { result, bytes };
  } finally {
    fs.readSync = original;
    syncBuiltinESMExports();
  }
}

// ---- Hand-written pickles and zips for cases the fixture does not cover (values known by construction) ----

interface StorageSpec { type: string; key: string; numel: number }
interface TensorSpec { name: string; storage: StorageSpec; offset: number; shape: number[]; stride: number[]; parameter?: boolean }

/** Emits pickle opcodes the way torch.save does (protocol 2), or with protocol-4 strings, globals and memoization. */
class PickleWriter {
  private readonly parts: Buffer[] = [];
  constructor(private readonly protocol4 = false) {
    this.op(0x80, protocol4 ? 4 : 2);
    if (protocol4) this.op(0x95, 0, 0, 0, 0, 0, 0, 0, 0); // FRAME (length unused by readers that ignore framing)
  }
  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  str(s: string): this {
    const utf8 = Buffer.from(s, 'utf8');
    if (this.protocol4 && utf8.length < 256) this.op(0x8c, utf8.length);
    else this.parts.push(Buffer.from([0x58, ...u32(utf8.length)]));
    this.parts.push(utf8);
    return this;
  }
  int(n: number): this {
    const b = Buffer.alloc(5);
    b[0] = 0x4a;
    b.writeInt32LE(n, 1);
    this.parts.push(b);
    return this;
  }
  global(module: string, name: string): this {
    if (this.protocol4) return this.str(module).str(name).op(0x93, 0x94); // STACK_GLOBAL, MEMOIZE
    this.parts.push(Buffer.from(`c${module}\n${name}\n`, 'latin1'));
    return this;
  }
  intTuple(values: number[]): this {
    this.op(0x28);
    for (const v of values) this.int(v);
    return this.op(0x74);
  }
  emptyOrderedDict(): this {
    return this.global('collections', 'OrderedDict').op(0x29, 0x52); // EMPTY_TUPLE, REDUCE
  }
  tensor(t: TensorSpec): this {
    if (t.parameter) this.global('torch._utils', '_rebuild_parameter').op(0x28);
    this.global('torch._utils', '_rebuild_tensor_v2').op(0x28);
    this.op(0x28).str('storage').global('torch', t.storage.type).str(t.storage.key).str('cpu').int(t.storage.numel).op(0x74, 0x51);
    this.int(t.offset).intTuple(t.shape).intTuple(t.stride).op(0x89).emptyOrderedDict().op(0x74, 0x52);
    if (t.parameter) this.op(0x89).emptyOrderedDict().op(0x74, 0x52);
    return this;
  }
  bytes(): Buffer {
    return Buffer.concat([...this.parts, Buffer.from([0x2e])]);
  }
}

/** An OrderedDict state dict with torch's `_metadata` attribute (SETITEMS, then BUILD). */
function stateDictPickle(tensors: TensorSpec[], protocol4 = false): Buffer {
  const w = new PickleWriter(protocol4).emptyOrderedDict().op(0x28);
  for (const t of tensors) w.str(t.name).tensor(t);
  w.op(0x75); // SETITEMS
  w.op(0x7d).str('_metadata').op(0x7d).str('').op(0x7d).str('version').int(1).op(0x73, 0x73, 0x73, 0x62); // {...}, BUILD
  return w.bytes();
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

interface ZipInput { name: string; data: Buffer; method?: number; at?: number }

/**
 * Writes a zip like torch.save: 64-byte aligned data (padding in a local extra field), ZIP64 end records, and a
 * ZIP64 extra field for any header beyond 4 GiB. `at` places an entry's header at a fixed (possibly sparse) offset.
 */
function writeZip(path: string, inputs: ZipInput[]): void {
  const fd = openSync(path, 'w');
  const central: Buffer[] = [];
  let pos = 0;
  const put = (buf: Buffer) => {
    writeSync(fd, buf, 0, buf.length, pos);
    pos += buf.length;
  };
  try {
    for (const input of inputs) {
      const method = input.method ?? 0;
      const stored = method === 8 ? deflateRawSync(input.data) : input.data;
      const crc = zlibCrc32(input.data);
      pos = input.at ?? pos;
      const headerOffset = pos;
      const name = Buffer.from(input.name, 'utf8');
      const pad = (64 - ((headerOffset + 30 + name.length + 4) % 64)) % 64;
      const local = Buffer.alloc(30);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt16LE(45, 4);
      local.writeUInt16LE(method, 8);
      local.writeUInt32LE(crc, 14);
      local.writeUInt32LE(stored.length, 18);
      local.writeUInt32LE(input.data.length, 22);
      local.writeUInt16LE(name.length, 26);
      local.writeUInt16LE(4 + pad, 28);
      const padding = Buffer.alloc(4 + pad);
      padding.writeUInt16LE(0x4246, 0);
      padding.writeUInt16LE(pad, 2);
      put(Buffer.concat([local, name, padding, stored]));

      const far = headerOffset >= 0xffffffff;
      const extra = Buffer.alloc(far ? 12 : 0);
      if (far) {
        extra.writeUInt16LE(1, 0);
        extra.writeUInt16LE(8, 2);
        extra.writeBigUInt64LE(BigInt(headerOffset), 4);
      }
      const entry = Buffer.alloc(46);
      entry.writeUInt32LE(0x02014b50, 0);
      entry.writeUInt16LE(45, 4);
      entry.writeUInt16LE(45, 6);
      entry.writeUInt16LE(method, 10);
      entry.writeUInt32LE(crc, 16);
      entry.writeUInt32LE(stored.length, 20);
      entry.writeUInt32LE(input.data.length, 24);
      entry.writeUInt16LE(name.length, 28);
      entry.writeUInt16LE(extra.length, 30);
      entry.writeUInt32LE(far ? 0xffffffff : headerOffset, 42);
      central.push(entry, name, extra);
    }
    const directory = Buffer.concat(central);
    const directoryOffset = pos;
    put(directory);
    const zip64Offset = pos;
    const record = Buffer.alloc(56);
    record.writeUInt32LE(0x06064b50, 0);
    record.writeBigUInt64LE(44n, 4);
    record.writeUInt16LE(45, 12);
    record.writeUInt16LE(45, 14);
    record.writeBigUInt64LE(BigInt(inputs.length), 24);
    record.writeBigUInt64LE(BigInt(inputs.length), 32);
    record.writeBigUInt64LE(BigInt(directory.length), 40);
    record.writeBigUInt64LE(BigInt(directoryOffset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(zip64Offset), 8);
    locator.writeUInt32LE(1, 16);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(0xffff, 8);
    end.writeUInt16LE(0xffff, 10);
    end.writeUInt32LE(0xffffffff, 12);
    end.writeUInt32LE(0xffffffff, 16);
    put(Buffer.concat([record, locator, end]));
  } finally {
    closeSync(fd);
  }
}

function f32Bytes(values: number[]): Buffer {
  return Buffer.from(new Float32Array(values).buffer);
}

function u16Bytes(values: number[]): Buffer {
  return Buffer.from(new Uint16Array(values).buffer);
}

/** Writes <dir>/pytorch_model.bin holding `pkl` as data.pkl and the given storages under data/. */
function writeCheckpoint(dir: string, pkl: Buffer, storages: Record<string, Buffer>, method = 0): string {
  const path = join(dir, 'pytorch_model.bin');
  writeZip(path, [
    { name: 'archive/data.pkl', data: pkl },
    ...Object.entries(storages).map(([key, data]) => ({ name: `archive/data/${key}`, data, method })),
    { name: 'archive/version', data: Buffer.from('3\n') },
  ]);
  return path;
}

const range12: StorageSpec = { type: 'FloatStorage', key: '0', numel: 12 };
const rangeBytes = f32Bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);

// ---- The fixture's checkpoint ----

test('every tensor of model-pt/pytorch_model.bin equals the same tensor of the safetensors model, bit for bit', () => {
  const pt = new PytorchCheckpoint(pytorchDir);
  const st = new SafetensorsCheckpoint(safetensorsDir);
  try {
    assert.equal(pt.names().length, 89);
    assert.deepEqual([...pt.names()].sort(), [...st.names()].sort());
    for (const name of st.names()) {
      const a = pt.info(name);
      const b = st.info(name);
      assert.deepEqual(a.shape, b.shape, name);
      assert.equal(a.dtype, 'BF16', name);
      assert.equal(a.dtype, b.dtype, name);
      assert.equal(a.byteLength, b.byteLength, name);
      assert.equal(a.file, pytorchBin);
      assert.equal(a.offset % 64, 0, `${name}: torch aligns storages to 64 bytes`);
      const x = pt.float32(name);
      const y = st.float32(name);
      assert.ok(Buffer.from(x.buffer).equals(Buffer.from(y.buffer)), `${name} differs`);
    }
    assert.equal(pt.has('lm_head.weight'), true);
    assert.equal(pt.has('model.vision_tower.blocks.3.attn.qkv.weight'), false);
    assert.throws(() => pt.float32('nope'), CheckpointError);
  } finally {
    pt.close();
    st.close();
  }
});

test('reading one tensor reads only its bytes, and opening reads only the zip directory and data.pkl', () => {
  const { result: file, bytes: openBytes } = countBytesRead(() => new PytorchFile(pytorchBin));
  try {
    const fileSize = fs.statSync(pytorchBin).size;
    assert.ok(openBytes < 100_000, `opening read ${openBytes} of ${fileSize} bytes`);
    const info = file.info('model.norm.weight');
    const { result, bytes } = countBytesRead(() => file.float32('model.norm.weight'));
    assert.equal(result.length, 256);
    assert.equal(bytes, info.byteLength);
  } finally {
    file.close();
  }
});

// ---- Hostile input ----

test('the hostile pickle is refused, naming the global, and its payload never runs', () => {
  rmSync(hostileMarker, { force: true });
  for (const open of [() => new PytorchCheckpoint(hostileDir), () => openCheckpoint(hostileDir)]) {
    assert.throws(open, (err: unknown) => {
      assert.ok(err instanceof CheckpointError);
      assert.match(err.message, /posix\.system/);
      assert.match(err.message, /refused/);
      assert.match(err.message, /execute code/);
      return true;
    });
  }
  assert.equal(existsSync(hostileMarker), false, 'the os.system payload must not have run');
});

test('other code-running pickles are refused: STACK_GLOBAL builtins.eval, subprocess, INST, calling a storage class', () => {
  withTempDir((dir) => {
    const evalPickle = new PickleWriter(true).op(0x7d).str('w').global('builtins', 'eval').str('1+1').op(0x85, 0x52, 0x73).bytes();
    const subprocess = new PickleWriter().op(0x7d).str('w').global('subprocess', 'check_output').str('id').op(0x85, 0x52, 0x73).bytes();
    const inst = Buffer.concat([Buffer.from([0x80, 0x02, 0x28]), Buffer.from('ios\nsystem\n', 'latin1'), Buffer.from([0x2e])]);
    const callStorage = new PickleWriter().op(0x7d).str('w').global('torch', 'FloatStorage').op(0x29, 0x52, 0x73).bytes();
    const cases: [Buffer, RegExp][] = [
      [evalPickle, /builtins\.eval.*could execute code/],
      [subprocess, /subprocess\.check_output.*could execute code/],
      [inst, /opcode 0x69/],
      [callStorage, /calls torch\.FloatStorage/],
    ];
    for (const [pkl, message] of cases) {
      writeCheckpoint(dir, pkl, {});
      assert.throws(() => new PytorchCheckpoint(dir), (err: unknown) => err instanceof CheckpointError && message.test(err.message));
    }
  });
});

// ---- Damaged and wrong files ----

test('a truncated, corrupt or non-zip pytorch_model.bin gives a clear CheckpointError', () => {
  withTempDir((dir) => {
    const original = readFileSync(pytorchBin);
    const target = join(dir, 'pytorch_model.bin');
    const expectError = (bytes: Buffer, message: RegExp) => {
      writeFileSync(target, bytes);
      assert.throws(() => new PytorchCheckpoint(dir), (err: unknown) => err instanceof CheckpointError && message.test(err.message));
    };
    expectError(original.subarray(0, original.length >> 1), /truncated/);
    expectError(original.subarray(0, original.length - 5), /truncated/);
    expectError(Buffer.alloc(0), /not a PyTorch checkpoint/);
    expectError(Buffer.from('version https://git-lfs.github.com/spec/v1\n'), /not a PyTorch checkpoint/);
    expectError(Buffer.from([0x80, 0x02, 0x8a, 0x0a]), /legacy torch\.save format/);

    const damagedDirectory = Buffer.from(original);
    damagedDirectory.writeUInt32LE(0, damagedDirectory.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])));
    expectError(damagedDirectory, /not a valid zip archive: central directory entry 0 is damaged/);

    const damagedPickle = Buffer.from(original);
    const pickleStart = 30 + original.readUInt16LE(26) + original.readUInt16LE(28);
    damagedPickle[pickleStart + 100]! ^= 0xff;
    expectError(damagedPickle, /data\.pkl fails its CRC check/);

    const zipOfSomethingElse = join(dir, 'other.zip');
    writeZip(zipOfSomethingElse, [{ name: 'readme.txt', data: Buffer.from('hello') }]);
    expectError(readFileSync(zipOfSomethingElse), /not a PyTorch checkpoint: expected one <folder>\/data\.pkl/);
  });
});

test('compressed storages, non-contiguous tensors, wrong storage sizes and unknown opcodes are refused clearly', () => {
  withTempDir((dir) => {
    const expectError = (message: RegExp) =>
      assert.throws(() => new PytorchCheckpoint(dir), (err: unknown) => err instanceof CheckpointError && message.test(err.message));
    const plain: TensorSpec = { name: 'w', storage: range12, offset: 0, shape: [3, 4], stride: [4, 1] };

    writeCheckpoint(dir, stateDictPickle([plain]), { '0': rangeBytes }, 8);
    expectError(/archive\/data\/0 is compressed \(zip method 8\)/);

    writeCheckpoint(dir, stateDictPickle([{ ...plain, stride: [1, 3] }]), { '0': rangeBytes });
    expectError(/tensor w has strides \[1,3\] for shape \[3,4\], not a contiguous row-major layout/);

    writeCheckpoint(dir, stateDictPickle([{ ...plain, offset: 4 }]), { '0': rangeBytes });
    expectError(/reaches element 16 of a 12-element storage/);

    writeCheckpoint(dir, stateDictPickle([plain]), { '0': rangeBytes.subarray(0, 40) });
    expectError(/storage 0 of 12 F32 elements, but its entry has 40 bytes/);

    writeCheckpoint(dir, stateDictPickle([plain]), {});
    expectError(/uses storage 0, which the archive lacks/);

    writeCheckpoint(dir, Buffer.from([0x80, 0x02, 0x7d, 0x81, 0x2e]), {});
    expectError(/opcode 0x81/);

    writeCheckpoint(dir, stateDictPickle([plain]).subarray(0, 50), { '0': rangeBytes });
    expectError(/in the middle of an opcode/);

    writeCheckpoint(dir, new PickleWriter().op(0x5d).bytes(), {});
    expectError(/does not hold a state dict/);
  });
});

// ---- Layouts torch produces that the fixture does not exercise ----

test('views and tied weights share one storage; f32, f16 and bf16 storages; Parameters; protocol 2 and 4', () => {
  const tensors: TensorSpec[] = [
    { name: 'full', storage: range12, offset: 0, shape: [3, 4], stride: [4, 1] },
    { name: 'tied', storage: range12, offset: 0, shape: [3, 4], stride: [4, 1] },
    { name: 'view', storage: range12, offset: 4, shape: [2, 2], stride: [2, 1] },
    { name: 'row', storage: range12, offset: 8, shape: [1, 4], stride: [999, 1] },
    { name: 'empty', storage: range12, offset: 0, shape: [0, 4], stride: [4, 1] },
    { name: 'half', storage: { type: 'HalfStorage', key: '1', numel: 3 }, offset: 0, shape: [3], stride: [1], parameter: true },
    { name: 'bf16', storage: { type: 'BFloat16Storage', key: 'b', numel: 2 }, offset: 0, shape: [2], stride: [1] },
  ];
  // f16 1, -2, 65504 and bf16 1, 3.140625, by their bit patterns.
  const storages = { '0': rangeBytes, '1': u16Bytes([0x3c00, 0xc000, 0x7bff]), b: u16Bytes([0x3f80, 0x4049]) };
  for (const protocol4 of [false, true]) {
    withTempDir((dir) => {
      const path = writeCheckpoint(dir, stateDictPickle(tensors, protocol4), storages);
      const ckpt = new PytorchCheckpoint(dir);
      try {
        assert.deepEqual(ckpt.names(), tensors.map((t) => t.name));
        assert.deepEqual([...ckpt.float32('full')], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert.deepEqual([...ckpt.float32('tied')], [...ckpt.float32('full')]);
        assert.deepEqual([...ckpt.float32('view')], [4, 5, 6, 7]);
        assert.deepEqual([...ckpt.float32('row')], [8, 9, 10, 11]);
        assert.deepEqual([...ckpt.float32('empty')], []);
        assert.deepEqual([...ckpt.float32('half')], [1, -2, 65504]);
        assert.deepEqual([...ckpt.float32('bf16')], [1, 3.140625]);
        assert.equal(ckpt.info('view').offset, ckpt.info('full').offset + 16);
        const half = ckpt.info('half');
        assert.deepEqual([half.dtype, half.shape, half.byteLength, half.file], ['F16', [3], 6, path]);
      } finally {
        ckpt.close();
      }
    });
  }
});

test('ZIP64: a storage beyond 4 GiB in a sparse file is found and read without touching the rest of the file', () => {
  withTempDir((dir) => {
    const farOffset = 5 * 2 ** 30;
    const path = join(dir, 'pytorch_model.bin');
    writeZip(path, [
      { name: 'big/data.pkl', data: stateDictPickle([{ name: 'far', storage: range12, offset: 2, shape: [5], stride: [1] }]) },
      { name: 'big/data/0', data: rangeBytes, at: farOffset },
    ]);
    const { result: file, bytes: openBytes } = countBytesRead(() => new PytorchFile(path));
    try {
      assert.ok(fs.statSync(path).size > farOffset);
      assert.ok(openBytes < 70_000, `opening read ${openBytes} bytes`);
      assert.ok(file.info('far').offset > farOffset);
      const { result, bytes } = countBytesRead(() => file.float32('far'));
      assert.deepEqual([...result], [2, 3, 4, 5, 6]);
      assert.equal(bytes, 20);
    } finally {
      file.close();
    }
  });
});

test('crc32 matches the standard check value and zlib', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  const pkl = stateDictPickle([{ name: 'w', storage: range12, offset: 0, shape: [12], stride: [1] }]);
  assert.equal(crc32(pkl), zlibCrc32(pkl));
});

// ---- Sharded index and format choice ----

test('a sharded pytorch_model.bin.index.json reads its tensors from the listed shard', () => {
  withTempDir((dir) => {
    const weightMap = JSON.parse(readFileSync(join(safetensorsDir, 'model.safetensors.index.json'), 'utf8')).weight_map as Record<string, string>;
    const shard = 'pytorch_model-00001-of-00001.bin';
    symlinkSync(pytorchBin, join(dir, shard));
    const entries = Object.keys(weightMap).map((name) => [name, shard]);
    writeFileSync(join(dir, 'pytorch_model.bin.index.json'), JSON.stringify({ metadata: {}, weight_map: Object.fromEntries(entries) }));
    const sharded = new PytorchCheckpoint(dir);
    const single = new PytorchCheckpoint(pytorchDir);
    try {
      assert.deepEqual([...sharded.names()].sort(), Object.keys(weightMap).sort());
      assert.equal(sharded.info('model.norm.weight').file, join(dir, shard));
      assert.deepEqual(sharded.float32('model.resampler.proj'), single.float32('model.resampler.proj'));
    } finally {
      sharded.close();
      single.close();
    }

    const expectError = (index: unknown, message: RegExp) => {
      writeFileSync(join(dir, 'pytorch_model.bin.index.json'), JSON.stringify(index));
      assert.throws(() => new PytorchCheckpoint(dir), (err: unknown) => err instanceof CheckpointError && message.test(err.message));
    };
    expectError({ weight_map: { 'no.such.tensor': shard } }, /places no\.such\.tensor in pytorch_model-00001-of-00001\.bin, but that shard does not contain it/);
    expectError({ weight_map: { 'lm_head.weight': 'pytorch_model-00002-of-00002.bin' } }, /is missing from/);
    expectError({ weight_map: { 'lm_head.weight': '../pytorch_model.bin' } }, /invalid shard file/);
    expectError({}, /has no "weight_map"/);
  });
});

test('openCheckpoint prefers safetensors, falls back to pytorch_model.bin, and says what it looked for', () => {
  const st = openCheckpoint(safetensorsDir);
  const pt = openCheckpoint(pytorchDir);
  try {
    assert.ok(st instanceof SafetensorsCheckpoint);
    assert.ok(pt instanceof PytorchCheckpoint);
  } finally {
    st.close();
    pt.close();
  }
  withTempDir((dir) => {
    assert.throws(() => openCheckpoint(dir), (err: unknown) => {
      assert.ok(err instanceof FileNotFoundError);
      for (const file of ['model.safetensors.index.json', 'model.safetensors', 'pytorch_model.bin.index.json', 'pytorch_model.bin']) {
        assert.ok(err.message.includes(file), file);
      }
      return true;
    });
    assert.throws(() => openCheckpoint(join(dir, 'missing')), FileNotFoundError);

    const both = join(dir, 'both');
    mkdirSync(both);
    for (const file of ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      symlinkSync(join(safetensorsDir, file), join(both, file));
    }
    copyFileSync(join(hostileDir, 'pytorch_model.bin'), join(both, 'pytorch_model.bin'));
    const chosen = openCheckpoint(both);
    try {
      assert.ok(chosen instanceof SafetensorsCheckpoint, 'safetensors wins, so the pickle is never opened');
    } finally {
      chosen.close();
    }
  });
});
