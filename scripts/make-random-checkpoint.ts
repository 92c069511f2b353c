// Writes a MiniCPM-V 2.0 checkpoint with the real configuration and tensor shapes but random weights, for
// benchmarks and memory measurements on a full-size model:
//
//   node dist/scripts/make-random-checkpoint.js --out /tmp/minicpmv2-full [--seed 0]
//
// What it writes (about 6.9 GB; keep it outside the repository, it is never committed):
//   config.json                          the tiny fixture's keys with the real sizes (openbmb/MiniCPM-V-2), no
//                                        vision_config: the tower comes from the vision_encoder preset table
//   model-0000{1,2}-of-00002.safetensors bf16, every tensor of test/fixtures/minicpmv2-tiny/README.md §2.4 with
//   model.safetensors.index.json         its real shape, cut into shards as transformers 4.36 `shard_checkpoint`
//                                        does with max_shard_size "5GB" (state_dict order), like the real index
//   generation_config.json, tokenizer_config.json, special_tokens_map.json   copied from the tiny fixture
//   tokenizer.model                      the tiny fixture's 4000 pieces, then CONTROL fillers `<reserved_4000>` …
//                                        up to the LLM's 122753-entry vocabulary
// The fillers exist so that any id the random LLM generates can be decoded: a CONTROL piece never takes part in
// encoding (prompts tokenize exactly as with the fixture) and decodes to "". Answers are therefore mostly empty
// text; measure generated ids, not text.
//
// Values: deterministic from --seed and the tensor name, ~N(0, 0.02) (norm weights ~N(1, 0.02), so activations keep
// realistic scales). Each value is an Irwin–Hall sum of the four bytes of one 32-bit mulberry32 draw, scaled to
// σ = 0.02 (1021 distinct levels, tails cut at ±3.5σ): fast, and plenty for speed and memory measurements.
// Data is generated and written in chunks, so memory stays small whatever the tensor size.

import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SafetensorsCheckpoint } from '../src/checkpoint/safetensors.js';
import { ProtoWriter } from '../src/graph/protobuf.js';

const FIXTURE_MODEL = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'minicpmv2-tiny', 'model');

/** openbmb/MiniCPM-V-2 config.json values that differ from the tiny fixture. */
const REAL_CONFIG = {
  _name_or_path: 'minicpmv2-full-random (random weights; shapes and layout of openbmb/MiniCPM-V-2)',
  hidden_size: 2304,
  num_hidden_layers: 40,
  num_attention_heads: 36,
  num_key_value_heads: 36,
  intermediate_size: 5760,
  vocab_size: 122753,
  query_num: 64,
  dim_model_base: 256,
  vision_encoder: 'vit_so400m_patch14_siglip_384.webli',
};

/** timm vit_so400m_patch14_siglip_384, 26 of its 27 blocks (drop_vision_last_layer). */
const VISION = { width: 1152, blocks: 26, mlp: 4304, patch: 14, positions: 729 };

/** transformers' "5GB" (decimal). */
const MAX_SHARD_BYTES = 5_000_000_000;
const SIGMA = 0.02;
const CHUNK_VALUES = 1 << 22;

interface TensorSpec {
  name: string;
  shape: number[];
  /** Mean of the values: 1 for norm weights, 0 for everything else. */
  mean: 0 | 1;
}

/** Every tensor in `MiniCPMV.state_dict()` order (llm, vpm, resampler), which decides the shard cut. */
function tensorSpecs(): TensorSpec[] {
  const d = REAL_CONFIG.hidden_size;
  const ff = REAL_CONFIG.intermediate_size;
  const v = REAL_CONFIG.vocab_size;
  const w = VISION.width;
  const specs: TensorSpec[] = [];
  const add = (name: string, shape: number[], mean: 0 | 1 = 0) => specs.push({ name, shape, mean });
  add('llm.model.embed_tokens.weight', [v, d]);
  for (let i = 0; i < REAL_CONFIG.num_hidden_layers; i++) {
    const layer = `llm.model.layers.${i}`;
    for (const p of ['q', 'k', 'v', 'o']) add(`${layer}.self_attn.${p}_proj.weight`, [d, d]);
    add(`${layer}.mlp.gate_proj.weight`, [ff, d]);
    add(`${layer}.mlp.up_proj.weight`, [ff, d]);
    add(`${layer}.mlp.down_proj.weight`, [d, ff]);
    add(`${layer}.input_layernorm.weight`, [d], 1);
    add(`${layer}.post_attention_layernorm.weight`, [d], 1);
  }
  add('llm.model.norm.weight', [d], 1);
  add('llm.lm_head.weight', [v, d]);

  const layerNorm = (name: string, dim: number) => {
    add(`${name}.weight`, [dim], 1);
    add(`${name}.bias`, [dim]);
  };
  const linear = (name: string, out: number, inp: number) => {
    add(`${name}.weight`, [out, inp]);
    add(`${name}.bias`, [out]);
  };
  add('vpm.pos_embed', [1, VISION.positions, w]);
  add('vpm.patch_embed.proj.weight', [w, 3, VISION.patch, VISION.patch]);
  add('vpm.patch_embed.proj.bias', [w]);
  for (let i = 0; i < VISION.blocks; i++) {
    const block = `vpm.blocks.${i}`;
    layerNorm(`${block}.norm1`, w);
    linear(`${block}.attn.qkv`, 3 * w, w);
    linear(`${block}.attn.proj`, w, w);
    layerNorm(`${block}.norm2`, w);
    linear(`${block}.mlp.fc1`, VISION.mlp, w);
    linear(`${block}.mlp.fc2`, w, VISION.mlp);
  }
  layerNorm('vpm.norm', w);

  const q = REAL_CONFIG.query_num;
  add('resampler.query', [q, d]);
  add('resampler.pos_embed', [q, d]);
  add('resampler.proj', [d, d]);
  add('resampler.kv_proj.weight', [d, w]);
  add('resampler.attn.in_proj_weight', [3 * d, d]);
  add('resampler.attn.in_proj_bias', [3 * d]);
  linear('resampler.attn.out_proj', d, d);
  for (const ln of ['ln_q', 'ln_kv', 'ln_post']) layerNorm(`resampler.${ln}`, d);
  return specs;
}

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const bytesOf = (spec: TensorSpec) => 2 * count(spec.shape);

/** transformers 4.36 `shard_checkpoint`: start a new shard when the next tensor would exceed the limit. */
function cutShards(specs: TensorSpec[]): TensorSpec[][] {
  const shards: TensorSpec[][] = [[]];
  let size = 0;
  for (const spec of specs) {
    if (size + bytesOf(spec) > MAX_SHARD_BYTES && shards[shards.length - 1]!.length > 0) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1]!.push(spec);
    size += bytesOf(spec);
  }
  return shards;
}

/** bf16 bits (round to nearest even) of every Irwin–Hall sum 0…1020, for values with the given mean. */
function bf16Table(mean: number): Uint16Array {
  const bytes = 4;
  const center = (bytes * 255) / 2;
  const sd = Math.sqrt((bytes * (256 * 256 - 1)) / 12);
  const f32 = new Float32Array(1);
  const bits = new Uint32Array(f32.buffer);
  const table = new Uint16Array(bytes * 255 + 1);
  for (let s = 0; s < table.length; s++) {
    f32[0] = mean + ((s - center) / sd) * SIGMA;
    const b = bits[0]!;
    table[s] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return table;
}

const WEIGHT_TABLE = bf16Table(0);
const NORM_TABLE = bf16Table(1);

/** 32-bit FNV-1a, to give every tensor its own stream. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) h = Math.imul(h ^ byte, 0x01000193);
  return h >>> 0;
}

/** Streams one tensor's bf16 values, deterministic from (seed, name), chunk by chunk. */
function* tensorChunks(spec: TensorSpec, seed: number): Generator<Uint16Array> {
  const table = spec.mean === 1 ? NORM_TABLE : WEIGHT_TABLE;
  let state = fnv1a(`${seed}/${spec.name}`);
  const chunk = new Uint16Array(CHUNK_VALUES);
  for (let left = count(spec.shape); left > 0; left -= CHUNK_VALUES) {
    const n = Math.min(left, CHUNK_VALUES);
    for (let i = 0; i < n; i++) {
      // mulberry32
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), state | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const r = (t ^ (t >>> 14)) >>> 0;
      chunk[i] = table[(r & 0xff) + ((r >>> 8) & 0xff) + ((r >>> 16) & 0xff) + (r >>> 24)]!;
    }
    yield chunk.subarray(0, n);
  }
}

class Progress {
  private done = 0;
  private lastPercent = -1;
  private readonly started = Date.now();

  constructor(private readonly total: number) {}

  add(bytes: number, label: string): void {
    this.done += bytes;
    const percent = Math.floor((100 * this.done) / this.total);
    if (percent === this.lastPercent) return;
    this.lastPercent = percent;
    const line = `${label}: ${(this.done / 1e9).toFixed(2)} / ${(this.total / 1e9).toFixed(2)} GB (${percent}%), ${((Date.now() - this.started) / 1000).toFixed(0)} s`;
    if (process.stderr.isTTY) process.stderr.write(`\r${line}`);
    else if (percent % 10 === 0) process.stderr.write(`${line}\n`);
  }

  end(): void {
    if (process.stderr.isTTY) process.stderr.write('\n');
  }
}

/** One safetensors shard: header (names sorted, padded to 8 bytes), then the data in the same order. */
function writeShard(path: string, specs: TensorSpec[], seed: number, progress: Progress, label: string): void {
  const sorted = [...specs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const spec of sorted) {
    header[spec.name] = { dtype: 'BF16', shape: spec.shape, data_offsets: [offset, offset + bytesOf(spec)] };
    offset += bytesOf(spec);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length));

  const partial = `${path}.partial`;
  const fd = openSync(partial, 'w');
  try {
    const write = (bytes: Uint8Array) => {
      for (let done = 0; done < bytes.byteLength; ) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    };
    write(length);
    write(headerBytes);
    for (const spec of sorted) {
      for (const chunk of tensorChunks(spec, seed)) {
        write(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        progress.add(chunk.byteLength, label);
      }
    }
  } finally {
    closeSync(fd);
  }
  renameSync(partial, path);
}

/** The fixture's tokenizer.model with CONTROL pieces appended up to `vocabSize` (protobuf repeated field 1). */
function paddedTokenizer(vocabSize: number): Uint8Array {
  const original = readFileSync(join(FIXTURE_MODEL, 'tokenizer.model'));
  const pieces = countPieces(original);
  const extra = new ProtoWriter();
  const CONTROL = 3;
  for (let id = pieces; id < vocabSize; id++) {
    extra.message(1, new ProtoWriter().string(1, `<reserved_${id}>`).float(2, 0).int(3, CONTROL));
  }
  return Buffer.concat([original, extra.finish()]);
}

/** Number of `pieces` (field 1) in a serialized SentencePiece ModelProto: walks the top-level fields. */
function countPieces(bytes: Uint8Array): number {
  let pos = 0;
  let pieces = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    const wire = tag & 7;
    if (wire === 2) {
      const length = varint();
      pos += length;
    } else if (wire === 0) varint();
    else if (wire === 5) pos += 4;
    else if (wire === 1) pos += 8;
    else throw new Error(`tokenizer.model: unexpected wire type ${wire}`);
    if (tag >>> 3 === 1) pieces++;
  }
  return pieces;
}

function main(): void {
  const { values } = parseArgs({ options: { out: { type: 'string' }, seed: { type: 'string', default: '0' } } });
  const seed = Number(values.seed);
  if (!values.out || !Number.isSafeInteger(seed)) {
    process.stderr.write('usage: node dist/scripts/make-random-checkpoint.js --out <dir> [--seed <integer>]\n');
    process.exit(2);
  }
  const out = values.out;
  if (existsSync(out) && readdirSync(out).length > 0) {
    process.stderr.write(`${out} is not empty: give a new or empty folder\n`);
    process.exit(2);
  }
  mkdirSync(out, { recursive: true });

  const tiny = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
  delete tiny['vision_config'];
  const config = Object.fromEntries(Object.entries({ ...tiny, ...REAL_CONFIG }).sort(([a], [b]) => (a < b ? -1 : 1)));
  writeFileSync(join(out, 'config.json'), `${JSON.stringify(config, null, 1)}\n`);
  for (const file of ['generation_config.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    copyFileSync(join(FIXTURE_MODEL, file), join(out, file));
  }
  writeFileSync(join(out, 'tokenizer.model'), paddedTokenizer(REAL_CONFIG.vocab_size));

  const specs = tensorSpecs();
  const shards = cutShards(specs);
  const total = specs.reduce((sum, s) => sum + bytesOf(s), 0);
  const shardName = (k: number) => `model-${String(k + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
  const progress = new Progress(total);
  shards.forEach((shard, k) => writeShard(join(out, shardName(k)), shard, seed, progress, shardName(k)));
  progress.end();

  const weightMap = Object.fromEntries(
    shards.flatMap((shard, k) => shard.map((s) => [s.name, shardName(k)] as const)).sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  writeFileSync(join(out, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`);

  // Reopen through the engine's reader: every shard header and the index must agree.
  const check = new SafetensorsCheckpoint(out);
  const tensors = check.names().length;
  check.close();
  process.stderr.write(`wrote ${out}: ${tensors} tensors in ${shards.length} shards, ${(total / 1e9).toFixed(2)} GB, seed ${seed}\n`);
}

main();
