// scripts/make-random-minicpmv46.ts: given the tiny fixture's config it must write the fixture's exact layout (file
// names, config, tokenizer and processor files, tensor names, dtypes and shapes, the same shard cut); without a config
// it lists the real MiniCPM-V 4.6 shapes of the fixture README §2.1 (hidden sizes, layer counts, head layout).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { promisify } from 'node:util';
import { openCheckpoint } from '../src/checkpoint/open.js';
import { fixturePath, repoRoot } from './helpers/fixtures.js';

const run = promisify(execFile);
const SCRIPT = join(repoRoot, 'dist', 'scripts', 'make-random-minicpmv46.js');
const FIXTURE_MODEL = fixturePath('minicpmv46-tiny', 'model');
/**
 * The fixture's first shard holds 2 444 080 bytes of tensors, and the next tensor (layer 0's down_proj, 65 536 bytes)
 * would take it past 2.5 MB: a limit in between cuts alike.
 */
const FIXTURE_SHARD_BYTES = '2500000';

describe('make-random-minicpmv46 with the tiny fixture config', () => {
  let out: string;
  before(async () => {
    out = join(mkdtempSync(join(tmpdir(), 'omnilmm-random46-')), 'model');
    await run(process.execPath, [SCRIPT, '--out', out, '--config', join(FIXTURE_MODEL, 'config.json'), '--max-shard-bytes', FIXTURE_SHARD_BYTES]);
  });
  after(() => rmSync(join(out, '..'), { recursive: true, force: true }));

  it('writes the fixture\'s files, the same index and the same tokenizer', () => {
    assert.deepEqual(readdirSync(out).sort(), readdirSync(FIXTURE_MODEL).sort());
    for (const file of ['tokenizer_config.json', 'processor_config.json', 'chat_template.jinja']) {
      assert.deepEqual(readFileSync(join(out, file)), readFileSync(join(FIXTURE_MODEL, file)), file);
    }
    const json = (dir: string, file: string) => JSON.parse(readFileSync(join(dir, file), 'utf8')) as unknown;
    for (const file of ['config.json', 'generation_config.json', 'tokenizer.json', 'model.safetensors.index.json']) {
      assert.deepEqual(json(out, file), json(FIXTURE_MODEL, file), file);
    }
  });

  it('writes every tensor of the fixture with its name, dtype and shape', () => {
    const layout = (dir: string) => {
      const source = openCheckpoint(dir);
      try {
        return source.names().sort().map((name) => `${name} ${source.info(name).dtype} [${source.info(name).shape}]`);
      } finally {
        source.close();
      }
    };
    const expected = layout(FIXTURE_MODEL);
    assert.equal(expected.length, 199);
    assert.deepEqual(layout(out), expected);
  });
});

test('lists the real MiniCPM-V 4.6 tensors (fixture README §2.1): 1.3 B parameters', async () => {
  const { stdout } = await run(process.execPath, [SCRIPT, '--list']);
  const listed = JSON.parse(stdout) as { totalBytes: number; tensors: { name: string; shape: number[] }[] };
  const shapes = new Map(listed.tensors.map((t) => [t.name, t.shape]));
  // The "real" column of the README's table: text hidden 1024 / intermediate 3584, 8 heads of 256 with 2 key/value
  // heads (q_proj holds query and gate), 16 + 16 linear heads of 128, vision hidden 1152 / intermediate 4304, 27 layers.
  const real: [string, number[]][] = [
    ['model.language_model.embed_tokens.weight', [248320, 1024]],
    ['model.language_model.layers.23.self_attn.q_proj.weight', [2 * 8 * 256, 1024]],
    ['model.language_model.layers.23.self_attn.k_proj.weight', [2 * 256, 1024]],
    ['model.language_model.layers.23.self_attn.q_norm.weight', [256]],
    ['model.language_model.layers.22.linear_attn.in_proj_qkv.weight', [2 * 16 * 128 + 16 * 128, 1024]],
    ['model.language_model.layers.22.linear_attn.conv1d.weight', [6144, 1, 4]],
    ['model.language_model.layers.22.linear_attn.A_log', [16]],
    ['model.language_model.layers.22.mlp.down_proj.weight', [1024, 3584]],
    ['model.vision_tower.embeddings.position_embedding.weight', [70 * 70, 1152]],
    ['model.vision_tower.encoder.layers.26.mlp.fc1.weight', [4304, 1152]],
    ['model.vision_tower.vit_merger.linear_1.weight', [4 * 4304, 4 * 1152]],
    ['model.merger.mlp.0.linear_2.weight', [1024, 4 * 1152]],
  ];
  for (const [name, shape] of real) assert.deepEqual(shapes.get(name), shape, name);
  assert.ok(!shapes.has('model.vision_tower.encoder.layers.27.mlp.fc1.weight'));
  assert.ok(!shapes.has('model.language_model.layers.23.linear_attn.A_log'), 'every 4th layer is full attention');
  assert.ok(!shapes.has('lm_head.weight'), 'lm_head is tied to embed_tokens');
  const parameters = listed.totalBytes / 2;
  assert.ok(parameters > 1.25e9 && parameters < 1.35e9, `${parameters} parameters`);
});
