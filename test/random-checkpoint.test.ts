// scripts/make-random-omnilmm.ts: given the tiny fixture's config it must write the fixture's exact layout (file
// names, tokenizer files, tensor names, dtypes and shapes, the same shard cut), in both weight formats with the same
// values, and the engine must load and answer from both; without a config it lists the real OmniLMM-12B shapes of
// the fixture README §2.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { openCheckpoint } from '../src/checkpoint/open.js';
import type { TensorSource } from '../src/checkpoint/safetensors.js';
import { ZipReader } from '../src/checkpoint/zip.js';
import { loadModel } from '../src/index.js';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const run = promisify(execFile);
const SCRIPT = join(repoRoot, 'dist', 'scripts', 'make-random-omnilmm.js');
const FIXTURE_MODEL = fixturePath('omnilmm12b-tiny', 'model');
const FIXTURE_CONFIG = join(FIXTURE_MODEL, 'config.json');
/** The fixture's first shard holds 4 200 960 bytes of tensors, the second 4 039 616: a limit between cuts alike. */
const FIXTURE_SHARD_BYTES = '4300000';

const generate = (out: string, ...args: string[]) => run(process.execPath, [SCRIPT, '--out', out, '--config', FIXTURE_CONFIG, ...args]);

function withCheckpoint<T>(dir: string, use: (source: TensorSource) => T): T {
  const source = openCheckpoint(dir);
  try {
    return use(source);
  } finally {
    source.close();
  }
}

describe('make-random-omnilmm with the tiny fixture config', () => {
  let root: string;
  let safetensors: string;
  let pytorch: string;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'omnilmm-random-'));
    safetensors = join(root, 'safetensors');
    pytorch = join(root, 'pytorch');
    await generate(safetensors, '--max-shard-bytes', FIXTURE_SHARD_BYTES);
    await generate(pytorch, '--format', 'pytorch');
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('writes the fixture\'s files: config and tokenizer files byte for byte, the same index', () => {
    assert.deepEqual(readdirSync(safetensors).sort(), readdirSync(FIXTURE_MODEL).sort());
    for (const file of ['config.json', 'tokenizer.model', 'tokenizer_config.json', 'added_tokens.json', 'special_tokens_map.json', 'generation_config.json']) {
      assert.deepEqual(readFileSync(join(safetensors, file)), readFileSync(join(FIXTURE_MODEL, file)), file);
    }
    const index = (dir: string) => JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as unknown;
    assert.deepEqual(index(safetensors), index(FIXTURE_MODEL));
    assert.deepEqual(readdirSync(pytorch).sort(), readdirSync(fixturePath('omnilmm12b-tiny', 'model-pt')).sort());
  });

  it('writes every tensor of the fixture with its name, dtype and shape, in both formats', () => {
    const layout = (dir: string) =>
      withCheckpoint(dir, (source) => source.names().sort().map((name) => `${name} ${source.info(name).dtype} [${source.info(name).shape}]`));
    const expected = layout(FIXTURE_MODEL);
    assert.equal(expected.length, 89);
    assert.deepEqual(layout(safetensors), expected);
    assert.deepEqual(layout(pytorch), expected);
  });

  it('gives both formats the same values, and every zip entry a correct CRC-32', () => {
    withCheckpoint(safetensors, (a) => withCheckpoint(pytorch, (b) => {
      for (const name of a.names()) assert.deepEqual(b.float32(name), a.float32(name), name);
    }));
    const zip = new ZipReader(join(pytorch, 'pytorch_model.bin'));
    try {
      for (const entry of zip.entries.values()) {
        assert.equal(entry.method, 0, entry.name);
        assert.equal(crc32(zip.read(zip.dataOffset(entry), entry.size)), entry.crc32, entry.name);
        if (entry.name.includes('/data/')) assert.equal(zip.dataOffset(entry) % 64, 0, `${entry.name} is 64-byte aligned like torch's`);
      }
    } finally {
      zip.close();
    }
  });

  it('loads and answers from both formats with the same ids', async () => {
    const image = readFileSync(fixturePath('omnilmm12b-tiny', 'images', 'grad_100x80.png'));
    const answers: number[][] = [];
    for (const dir of [safetensors, pytorch]) {
      const model = await loadModel(dir, { threads: 1, cache: false, precision: 'fp32', visionPrecision: 'fp32' });
      try {
        const result = await model.run({ question: 'What is in the image?', image, decoding: 'greedy', maxNewTokens: 6 });
        assert.equal(result.outputIds.length, 6);
        answers.push(result.outputIds);
      } finally {
        await model.release();
      }
    }
    assert.deepEqual(answers[1], answers[0]);
  });
});

test('lists the real OmniLMM-12B tensors (fixture README §2): 23.2 GB of bf16, blocks 0..62', async () => {
  const { stdout } = await run(process.execPath, [SCRIPT, '--list']);
  const listed = JSON.parse(stdout) as { totalBytes: number; tensors: { name: string; shape: number[] }[] };
  const shapes = new Map(listed.tensors.map((t) => [t.name, t.shape]));
  // The "real OmniLMM-12B" column of the README's table.
  const real: [string, number[]][] = [
    ['model.embed_tokens.weight', [32009, 4096]],
    ['model.layers.31.self_attn.q_proj.weight', [4096, 4096]],
    ['model.layers.31.self_attn.k_proj.weight', [1024, 4096]],
    ['model.layers.31.self_attn.v_proj.weight', [1024, 4096]],
    ['model.layers.31.self_attn.o_proj.weight', [4096, 4096]],
    ['model.layers.31.mlp.gate_proj.weight', [14336, 4096]],
    ['model.layers.31.mlp.up_proj.weight', [14336, 4096]],
    ['model.layers.31.mlp.down_proj.weight', [4096, 14336]],
    ['model.norm.weight', [4096]],
    ['lm_head.weight', [32009, 4096]],
    ['model.vision_tower.cls_token', [1, 1, 1792]],
    ['model.vision_tower.pos_embed', [1, 257, 1792]],
    ['model.vision_tower.patch_embed.proj.weight', [1792, 3, 14, 14]],
    ['model.vision_tower.blocks.62.attn.qkv.weight', [5376, 1792]],
    ['model.vision_tower.blocks.62.attn.q_bias', [1792]],
    ['model.vision_tower.blocks.62.mlp.fc1.weight', [15360, 1792]],
    ['model.vision_tower.blocks.62.mlp.fc2.weight', [1792, 15360]],
    ['model.vision_tower.norm.weight', [1792]],
    ['model.resampler.query', [256, 4096]],
    ['model.resampler.pos_embed', [256, 4096]],
    ['model.resampler.kv_proj.weight', [4096, 1792]],
    ['model.resampler.attn.in_proj_weight', [12288, 4096]],
    ['model.resampler.proj', [4096, 4096]],
  ];
  for (const [name, shape] of real) assert.deepEqual(shapes.get(name), shape, name);
  assert.ok(!shapes.has('model.vision_tower.blocks.63.attn.qkv.weight'), 'the last block is an Identity');
  assert.ok(!shapes.has('model.layers.32.mlp.up_proj.weight'));
  // As in the tiny fixture (89 = 3 + 3·9 + 4 + 3·13 + 2 + 14): 32 decoder layers of 9 tensors, 63 blocks of 13.
  assert.equal(listed.tensors.length, 3 + 32 * 9 + 4 + 63 * 13 + 2 + 14);
  // The README: "one 23.2 GB pytorch_model.bin" in bf16.
  assert.equal((listed.totalBytes / 1e9).toFixed(1), '23.2');
});
