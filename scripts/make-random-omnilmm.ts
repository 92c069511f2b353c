// Writes an OmniLMM-12B checkpoint with the real configuration and tensor shapes but random weights, for
// benchmarks and memory measurements on a full-size model:
//
//   node dist/scripts/make-random-omnilmm.js --out /tmp/omnilmm12b-random [--seed 0] [--format safetensors|pytorch]
//                                            [--config <config.json>] [--max-shard-bytes N]
//   node dist/scripts/make-random-omnilmm.js --list [--config <config.json>]   (the tensors as JSON; writes nothing)
//
// What it writes (about 23.2 GB, 11.6 B parameters in bf16; keep it outside the repository, it is never committed):
//   config.json                  the tiny fixture's keys with the real sizes of openbmb/OmniLMM-12B (fixture README
//                                §2), no vision_config: the engine builds timm's eva02_enormous_patch14_clip_224
//   --format safetensors         model-0000N-of-0000M.safetensors + model.safetensors.index.json: every tensor of
//     (default)                  the fixture README §2 with its real shape, bf16, cut as transformers 4.36
//                                `shard_checkpoint` does with max_shard_size "5GB" (state_dict order)
//   --format pytorch             pytorch_model.bin: one torch.save zip, the form the real repository ships
//   generation_config.json, special_tokens_map.json   copied from the tiny fixture
//   tokenizer.model              the fixture's 3200 pieces, then CONTROL fillers up to the 32000 SentencePiece ids
//   tokenizer_config.json,       the fixture's, with the 9 added tokens (<im_patch> … </quad>) at 32000…32008 as in
//   added_tokens.json            the real tokenizer
// The fillers exist so that any id the random LLM generates can be decoded: a CONTROL piece never takes part in
// encoding (prompts tokenize exactly as with the fixture) and decodes to "". Measure generated ids, not text.
//
// --config <file> takes every size from another OmniLMM config.json (one with a vision_config, like the tiny
// fixture's) and copies it as config.json: given the fixture's, the script writes the fixture's exact tensor names,
// shapes and tokenizer files in a second (the tests do that). Values: deterministic from --seed and the tensor name
// (scripts/random-checkpoint.ts says how).

import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openCheckpoint } from '../src/checkpoint/open.js';
import { parseOmniLMMConfig, type OmniLMMConfig } from '../src/models/omnilmm/config.js';
import {
  bytesOf, countPieces, createEmptyFolder, listSpecs, MAX_SHARD_BYTES, paddedTokenizer, writePytorchCheckpoint,
  writeSafetensorsCheckpoint, type TensorSpec,
} from './random-checkpoint.js';

const FIXTURE_MODEL = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'omnilmm12b-tiny', 'model');

/** openbmb/OmniLMM-12B config.json values that differ from the tiny fixture (fixture README §2, "config.json"). */
const REAL_CONFIG = {
  _name_or_path: 'omnilmm12b-full-random (random weights; shapes and layout of openbmb/OmniLMM-12B)',
  hidden_size: 4096,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  intermediate_size: 14336,
  vocab_size: 32009,
  sliding_window: 4096,
  num_query: 256,
};

const USAGE =
  'usage: node dist/scripts/make-random-omnilmm.js --out <dir> [--seed <integer>] [--format safetensors|pytorch] ' +
  '[--config <config.json>] [--max-shard-bytes <bytes>]\n' +
  '       node dist/scripts/make-random-omnilmm.js --list [--config <config.json>]\n';

/**
 * Every tensor of `OmniLMMForCausalLM.state_dict()`, in its order: the Mistral model, then the vision tower and the
 * resampler that `OmniLMMModel.__init__` adds after it, then lm_head. Within a module its own parameters come
 * before its children's, in the order the module creates them.
 */
function omnilmmTensorSpecs(config: OmniLMMConfig): TensorSpec[] {
  const t = config.text;
  const d = t.hiddenSize;
  const kv = t.numKeyValueHeads * t.headDim;
  const v = config.vision;
  const w = v.embedDim;
  const specs: TensorSpec[] = [];
  const add = (name: string, shape: number[], mean: 0 | 1 = 0) => specs.push({ name, shape, mean });
  const layerNorm = (name: string, dim: number) => {
    add(`${name}.weight`, [dim], 1);
    add(`${name}.bias`, [dim]);
  };

  add('model.embed_tokens.weight', [t.vocabSize, d]);
  for (let i = 0; i < t.numHiddenLayers; i++) {
    const layer = `model.layers.${i}`;
    add(`${layer}.self_attn.q_proj.weight`, [d, d]);
    add(`${layer}.self_attn.k_proj.weight`, [kv, d]);
    add(`${layer}.self_attn.v_proj.weight`, [kv, d]);
    add(`${layer}.self_attn.o_proj.weight`, [d, d]);
    add(`${layer}.mlp.gate_proj.weight`, [t.intermediateSize, d]);
    add(`${layer}.mlp.up_proj.weight`, [t.intermediateSize, d]);
    add(`${layer}.mlp.down_proj.weight`, [d, t.intermediateSize]);
    add(`${layer}.input_layernorm.weight`, [d], 1);
    add(`${layer}.post_attention_layernorm.weight`, [d], 1);
  }
  add('model.norm.weight', [d], 1);

  const tower = 'model.vision_tower';
  const [gridRows, gridCols] = v.posEmbedGrid;
  add(`${tower}.cls_token`, [1, 1, w]);
  add(`${tower}.pos_embed`, [1, 1 + gridRows * gridCols, w]);
  add(`${tower}.patch_embed.proj.weight`, [w, v.inChans, v.patchSize, v.patchSize]);
  add(`${tower}.patch_embed.proj.bias`, [w]);
  // The last of `depth` blocks is an Identity in the official model: it has no weights.
  for (let i = 0; i < v.usedDepth; i++) {
    const block = `${tower}.blocks.${i}`;
    add(`${block}.attn.q_bias`, [w]);
    add(`${block}.attn.v_bias`, [w]);
    add(`${block}.attn.qkv.weight`, [3 * w, w]);
    add(`${block}.attn.proj.weight`, [w, w]);
    add(`${block}.attn.proj.bias`, [w]);
    layerNorm(`${block}.norm1`, w);
    add(`${block}.mlp.fc1.weight`, [v.mlpHiddenDim, w]);
    add(`${block}.mlp.fc1.bias`, [v.mlpHiddenDim]);
    add(`${block}.mlp.fc2.weight`, [w, v.mlpHiddenDim]);
    add(`${block}.mlp.fc2.bias`, [w]);
    layerNorm(`${block}.norm2`, w);
  }
  layerNorm(`${tower}.norm`, w);

  const r = config.resampler;
  add('model.resampler.query', [r.queryNum, d]);
  add('model.resampler.pos_embed', [r.queryNum, d]);
  add('model.resampler.proj', [d, d]);
  add('model.resampler.kv_proj.weight', [d, r.kvDim]);
  add('model.resampler.attn.in_proj_weight', [3 * d, d]);
  add('model.resampler.attn.in_proj_bias', [3 * d]);
  add('model.resampler.attn.out_proj.weight', [d, d]);
  add('model.resampler.attn.out_proj.bias', [d]);
  for (const ln of ['ln_q', 'ln_kv', 'ln_post']) layerNorm(`model.resampler.${ln}`, d);

  add('lm_head.weight', [t.vocabSize, d]);
  return specs;
}

/** The fixture's added tokens (`{content: id}`), each moved by `shift` ids. */
function shiftedAddedTokens(shift: number): Record<string, number> {
  const added = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'added_tokens.json'), 'utf8')) as Record<string, number>;
  return Object.fromEntries(Object.entries(added).map(([content, id]) => [content, id + shift]));
}

/** The fixture's tokenizer_config.json with the entries of added_tokens_decoder from `firstAdded` on moved by `shift`. */
function shiftedTokenizerConfig(firstAdded: number, shift: number): Record<string, unknown> {
  const config = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const decoder = config['added_tokens_decoder'] as Record<string, unknown>;
  config['added_tokens_decoder'] = Object.fromEntries(
    Object.entries(decoder).map(([id, token]) => [String(Number(id) >= firstAdded ? Number(id) + shift : Number(id)), token]),
  );
  return config;
}

/** The fixture's config.json with the real sizes and without vision_config, keys sorted. */
function realConfigText(): string {
  const tiny = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
  delete tiny['vision_config'];
  const entries = Object.entries({ ...tiny, ...REAL_CONFIG }).sort(([a], [b]) => (a < b ? -1 : 1));
  return `${JSON.stringify(Object.fromEntries(entries), null, 1)}\n`;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      seed: { type: 'string', default: '0' },
      format: { type: 'string', default: 'safetensors' },
      config: { type: 'string' },
      'max-shard-bytes': { type: 'string', default: String(MAX_SHARD_BYTES) },
      list: { type: 'boolean' },
    },
  });
  const seed = Number(values.seed);
  const maxShardBytes = Number(values['max-shard-bytes']);
  const format = values.format;
  const configText = values.config ? readFileSync(values.config, 'utf8') : realConfigText();
  const config = parseOmniLMMConfig(JSON.parse(configText) as Record<string, unknown>, values.config ?? 'config.json');
  if (values.list) {
    const specs = omnilmmTensorSpecs(config);
    process.stdout.write(listSpecs(specs));
    return;
  }
  if (!values.out || !Number.isSafeInteger(seed) || !(maxShardBytes > 0) || (format !== 'safetensors' && format !== 'pytorch')) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  const out = values.out;
  createEmptyFolder(out);

  // 1. config.json: the fixture's keys with the real sizes, or the given file as it is.
  writeFileSync(join(out, 'config.json'), configText);

  // 2. Tokenizer files: SentencePiece ids up to vocab_size − 9, then the added tokens.
  const fixturePieces = countPieces(readFileSync(join(FIXTURE_MODEL, 'tokenizer.model')));
  const addedCount = Object.keys(shiftedAddedTokens(0)).length;
  const pieces = config.text.vocabSize - addedCount;
  const shift = pieces - fixturePieces;
  writeFileSync(join(out, 'tokenizer.model'), paddedTokenizer(join(FIXTURE_MODEL, 'tokenizer.model'), pieces));
  writeFileSync(join(out, 'tokenizer_config.json'), `${JSON.stringify(shiftedTokenizerConfig(fixturePieces, shift), null, 1)}\n`);
  writeFileSync(join(out, 'added_tokens.json'), `${JSON.stringify(shiftedAddedTokens(shift), null, 1)}\n`);
  for (const file of ['generation_config.json', 'special_tokens_map.json']) copyFileSync(join(FIXTURE_MODEL, file), join(out, file));

  // 3. The weights.
  const specs = omnilmmTensorSpecs(config);
  const total = specs.reduce((sum, s) => sum + bytesOf(s), 0);
  let files: string;
  if (format === 'pytorch') {
    writePytorchCheckpoint(join(out, 'pytorch_model.bin'), specs, seed);
    files = 'pytorch_model.bin';
  } else {
    files = `${writeSafetensorsCheckpoint(out, specs, seed, maxShardBytes)} safetensors shards`;
  }

  // Reopen through the engine's reader: every header (and the index, or the pickle) must agree.
  const check = openCheckpoint(out);
  const tensors = check.names().length;
  check.close();
  process.stderr.write(`wrote ${out}: ${tensors} tensors in ${files}, ${(total / 1e9).toFixed(2)} GB, seed ${seed}\n`);
}

main();
