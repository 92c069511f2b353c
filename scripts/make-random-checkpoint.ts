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
// Values: deterministic from --seed and the tensor name (scripts/random-checkpoint.ts says how).

import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SafetensorsCheckpoint } from '../src/checkpoint/safetensors.js';
import { bytesOf, createEmptyFolder, paddedTokenizer, writeSafetensorsCheckpoint, type TensorSpec } from './random-checkpoint.js';

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

function main(): void {
  const { values } = parseArgs({ options: { out: { type: 'string' }, seed: { type: 'string', default: '0' } } });
  const seed = Number(values.seed);
  if (!values.out || !Number.isSafeInteger(seed)) {
    process.stderr.write('usage: node dist/scripts/make-random-checkpoint.js --out <dir> [--seed <integer>]\n');
    process.exit(2);
  }
  const out = values.out;
  createEmptyFolder(out);

  const tiny = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
  delete tiny['vision_config'];
  const config = Object.fromEntries(Object.entries({ ...tiny, ...REAL_CONFIG }).sort(([a], [b]) => (a < b ? -1 : 1)));
  writeFileSync(join(out, 'config.json'), `${JSON.stringify(config, null, 1)}\n`);
  for (const file of ['generation_config.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    copyFileSync(join(FIXTURE_MODEL, file), join(out, file));
  }
  writeFileSync(join(out, 'tokenizer.model'), paddedTokenizer(join(FIXTURE_MODEL, 'tokenizer.model'), REAL_CONFIG.vocab_size));

  const specs = tensorSpecs();
  const total = specs.reduce((sum, s) => sum + bytesOf(s), 0);
  const shards = writeSafetensorsCheckpoint(out, specs, seed);

  // Reopen through the engine's reader: every shard header and the index must agree.
  const check = new SafetensorsCheckpoint(out);
  const tensors = check.names().length;
  check.close();
  process.stderr.write(`wrote ${out}: ${tensors} tensors in ${shards} shards, ${(total / 1e9).toFixed(2)} GB, seed ${seed}\n`);
}

main();
