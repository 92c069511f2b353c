// Writes a MiniCPM-V 4.6 checkpoint with the real configuration and tensor shapes but random weights, for benchmarks
// and memory measurements on a full-size model (or, given the tiny fixture's config.json, the fixture's exact layout):
//
//   node dist/scripts/make-random-minicpmv46.js --out /tmp/minicpmv46-full [--seed 0] [--config <config.json>]
//   node dist/scripts/make-random-minicpmv46.js --list     (the tensor names and shapes it would write, as JSON)
//
// What it writes (about 2.7 GB at full size; keep it outside the repository, it is never committed):
//   config.json                       the tiny fixture's keys with the real sizes (test/fixtures/minicpmv46-tiny/README.md
//                                     §2.1; the text model is Qwen3.5-0.8B, whose published vocab_size is 248320)
//   model-0000N-of-0000M.safetensors  bf16, every tensor of `MiniCPMV4_6ForConditionalGeneration.state_dict()` (README
//   model.safetensors.index.json      §2.2) with its real shape; lm_head is tied to embed_tokens and not stored
//   tokenizer.json                    the fixture's 3000 learned tokens, then fillers `Ġfiller<id>` (vocabulary entries
//                                     that no merge produces, so prompts tokenize exactly as with the fixture) up to the
//                                     first added token, the fixture's 40 added tokens moved to the real ids (first one =
//                                     config eos_token_id, as README §2.3 says), fillers again up to vocab_size
//   tokenizer_config.json, processor_config.json, chat_template.jinja   copied from the fixture
//   generation_config.json            the fixture's, with its token ids moved like the added tokens
// Every id the random model can generate decodes (mostly to filler words); measure ids, not text.
//
// Values: deterministic from --seed and the tensor name (scripts/random-checkpoint.ts says how). Norm weights that
// the model uses as `1 + w` (the text model's zero-centred RMSNorms) are centred on 0, the others on 1.

import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openCheckpoint } from '../src/checkpoint/open.js';
import { bytesOf, createEmptyFolder, listSpecs, MAX_SHARD_BYTES, writeSafetensorsCheckpoint, type TensorSpec } from './random-checkpoint.js';

const FIXTURE_MODEL = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'minicpmv46-tiny', 'model');

/** Real values (README §2.1 and Qwen3.5-0.8B's text_config) of the keys where the tiny fixture differs. */
const REAL_TOP = { insert_layer_id: 6, image_token_id: 248056, video_token_id: 248057, eos_token_id: 248044 };
const REAL_TEXT = {
  vocab_size: 248320, hidden_size: 1024, intermediate_size: 3584, num_hidden_layers: 24,
  num_attention_heads: 8, num_key_value_heads: 2, head_dim: 256,
  linear_num_key_heads: 16, linear_num_value_heads: 16, linear_key_head_dim: 128, linear_value_head_dim: 128,
};
const REAL_VISION = { hidden_size: 1152, intermediate_size: 4304, num_hidden_layers: 27, num_attention_heads: 16, insert_layer_id: 6 };

const USAGE =
  'usage: node dist/scripts/make-random-minicpmv46.js --out <dir> [--seed <integer>] [--config <config.json>] [--max-shard-bytes N]\n' +
  '       node dist/scripts/make-random-minicpmv46.js --list [--config <config.json>]   (tensor names and shapes as JSON)\n';

type Dict = Record<string, unknown>;

function readJson(path: string): Dict {
  return JSON.parse(readFileSync(path, 'utf8')) as Dict;
}

/** The fixture's config.json with the real sizes (README §2.1), layer types (L L L F) repeated over the real depth. */
function realConfig(): Dict {
  const config = readJson(join(FIXTURE_MODEL, 'config.json'));
  const text = config['text_config'] as Dict;
  const interval = text['full_attention_interval'] as number;
  const layerTypes = Array.from({ length: REAL_TEXT.num_hidden_layers }, (_, i) =>
    ((i + 1) % interval === 0 ? 'full_attention' : 'linear_attention'));
  return {
    ...config,
    ...REAL_TOP,
    text_config: { ...text, ...REAL_TEXT, layer_types: layerTypes },
    vision_config: { ...(config['vision_config'] as Dict), ...REAL_VISION },
  };
}

function num(dict: Dict, key: string): number {
  const value = dict[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new Error(`config: "${key}" must be a non-negative integer`);
  return value;
}

/** Every tensor of `state_dict()` in its order (vision tower, language model, merger; lm_head tied, not stored). */
function tensorSpecs(config: Dict): TensorSpec[] {
  const text = config['text_config'] as Dict;
  const vision = config['vision_config'] as Dict;
  const specs: TensorSpec[] = [];
  const add = (name: string, shape: number[], mean: 0 | 1 = 0) => specs.push({ name, shape, mean });
  const linear = (name: string, out: number, inp: number, bias = true) => {
    add(`${name}.weight`, [out, inp]);
    if (bias) add(`${name}.bias`, [out]);
  };
  const layerNorm = (name: string, dim: number) => {
    add(`${name}.weight`, [dim], 1);
    add(`${name}.bias`, [dim]);
  };

  // Vision tower (SigLIP2 names) with its window-attention merger.
  const c = num(vision, 'hidden_size');
  const ff = num(vision, 'intermediate_size');
  const patch = num(vision, 'patch_size');
  const side = num(vision, 'image_size') / patch;
  const tower = 'model.vision_tower';
  add(`${tower}.embeddings.patch_embedding.weight`, [c, num(vision, 'num_channels'), patch, patch]);
  add(`${tower}.embeddings.patch_embedding.bias`, [c]);
  add(`${tower}.embeddings.position_embedding.weight`, [side * side, c]);
  const attention = (prefix: string) => {
    for (const p of ['k', 'v', 'q', 'out']) linear(`${prefix}.self_attn.${p}_proj`, c, c);
  };
  for (let i = 0; i < num(vision, 'num_hidden_layers'); i++) {
    const layer = `${tower}.encoder.layers.${i}`;
    layerNorm(`${layer}.layer_norm1`, c);
    attention(layer);
    layerNorm(`${layer}.layer_norm2`, c);
    linear(`${layer}.mlp.fc1`, ff, c);
    linear(`${layer}.mlp.fc2`, c, ff);
  }
  layerNorm(`${tower}.post_layernorm`, c);
  attention(`${tower}.vit_merger`);
  layerNorm(`${tower}.vit_merger.layer_norm1`, c);
  layerNorm(`${tower}.vit_merger.pre_norm`, 4 * c);
  linear(`${tower}.vit_merger.linear_1`, 4 * ff, 4 * c);
  linear(`${tower}.vit_merger.linear_2`, c, 4 * ff);

  // Qwen3.5 hybrid text model: zero-centred RMSNorms (scale 1 + w), except the gated norm of the linear layers;
  // then the DownsampleMLP merger.
  const d = num(text, 'hidden_size');
  const lm = 'model.language_model';
  const inter = num(text, 'intermediate_size');
  const headDim = num(text, 'head_dim');
  const [hk, hv, dk, dv] = ['linear_num_key_heads', 'linear_num_value_heads', 'linear_key_head_dim', 'linear_value_head_dim'].map((k) => num(text, k));
  const convDim = 2 * hk! * dk! + hv! * dv!;
  add(`${lm}.embed_tokens.weight`, [num(text, 'vocab_size'), d]);
  (text['layer_types'] as string[]).forEach((type, i) => {
    const layer = `${lm}.layers.${i}`;
    if (type === 'linear_attention') {
      const a = `${layer}.linear_attn`;
      add(`${a}.dt_bias`, [hv!]);
      add(`${a}.A_log`, [hv!]);
      add(`${a}.conv1d.weight`, [convDim, 1, num(text, 'linear_conv_kernel_dim')]);
      add(`${a}.norm.weight`, [dv!], 1);
      linear(`${a}.out_proj`, d, hv! * dv!, false);
      linear(`${a}.in_proj_qkv`, convDim, d, false);
      linear(`${a}.in_proj_z`, hv! * dv!, d, false);
      linear(`${a}.in_proj_b`, hv!, d, false);
      linear(`${a}.in_proj_a`, hv!, d, false);
    } else {
      const a = `${layer}.self_attn`;
      const heads = num(text, 'num_attention_heads');
      const kv = num(text, 'num_key_value_heads');
      linear(`${a}.q_proj`, 2 * heads * headDim, d, false);
      linear(`${a}.k_proj`, kv * headDim, d, false);
      linear(`${a}.v_proj`, kv * headDim, d, false);
      linear(`${a}.o_proj`, d, heads * headDim, false);
      add(`${a}.q_norm.weight`, [headDim]);
      add(`${a}.k_norm.weight`, [headDim]);
    }
    linear(`${layer}.mlp.gate_proj`, inter, d, false);
    linear(`${layer}.mlp.up_proj`, inter, d, false);
    linear(`${layer}.mlp.down_proj`, d, inter, false);
    add(`${layer}.input_layernorm.weight`, [d]);
    add(`${layer}.post_attention_layernorm.weight`, [d]);
  });
  add(`${lm}.norm.weight`, [d]);
  layerNorm('model.merger.mlp.0.pre_norm', 4 * c);
  linear('model.merger.mlp.0.linear_1', 4 * c, 4 * c);
  linear('model.merger.mlp.0.linear_2', d, 4 * c);
  return specs;
}

interface AddedToken { id: number; content: string; special: boolean }

/**
 * The fixture's tokenizer.json with its added tokens moved by `shift` ids and filler vocabulary entries in every id
 * below `vocabSize` that would otherwise be empty.
 */
function paddedTokenizerJson(shift: number, vocabSize: number): Dict {
  const tokenizer = readJson(join(FIXTURE_MODEL, 'tokenizer.json'));
  const model = tokenizer['model'] as Dict;
  const vocab = { ...(model['vocab'] as Record<string, number>) };
  const added = (tokenizer['added_tokens'] as AddedToken[]).map((t) => ({ ...t, id: t.id + shift }));
  const taken = new Set<number>([...Object.values(vocab), ...added.map((t) => t.id)]);
  const top = Math.max(...taken);
  if (top >= vocabSize) throw new Error(`the tokenizer needs ids up to ${top}, but vocab_size is ${vocabSize}`);
  for (let id = 0; id < vocabSize; id++) if (!taken.has(id)) vocab[`Ġfiller${id}`] = id;
  return { ...tokenizer, added_tokens: added, model: { ...model, vocab } };
}

/** generation_config.json with every token id moved by `shift`. */
function shiftedGenerationConfig(shift: number): Dict {
  const config = readJson(join(FIXTURE_MODEL, 'generation_config.json'));
  const move = (v: unknown) => (typeof v === 'number' ? v + shift : Array.isArray(v) ? v.map((x) => (x as number) + shift) : v);
  for (const key of ['bos_token_id', 'eos_token_id', 'pad_token_id']) if (key in config) config[key] = move(config[key]);
  return config;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      seed: { type: 'string', default: '0' },
      config: { type: 'string' },
      'max-shard-bytes': { type: 'string', default: String(MAX_SHARD_BYTES) },
      list: { type: 'boolean' },
    },
  });
  const config = values.config ? readJson(values.config) : realConfig();
  const specs = tensorSpecs(config);
  if (values.list) {
    process.stdout.write(listSpecs(specs));
    return;
  }
  const seed = Number(values.seed);
  const maxShardBytes = Number(values['max-shard-bytes']);
  if (!values.out || !Number.isSafeInteger(seed) || !(maxShardBytes > 0)) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  const out = values.out;
  createEmptyFolder(out);

  // 1. Configs and tokenizer: the added tokens start at the config's eos id, as in the real tokenizer.
  writeFileSync(join(out, 'config.json'), `${JSON.stringify(config, null, 1)}\n`);
  const fixtureEos = num(readJson(join(FIXTURE_MODEL, 'config.json')), 'eos_token_id');
  const shift = num(config, 'eos_token_id') - fixtureEos;
  const vocabSize = num(config['text_config'] as Dict, 'vocab_size');
  writeFileSync(join(out, 'tokenizer.json'), `${JSON.stringify(paddedTokenizerJson(shift, vocabSize))}\n`);
  writeFileSync(join(out, 'generation_config.json'), `${JSON.stringify(shiftedGenerationConfig(shift), null, 1)}\n`);
  for (const file of ['tokenizer_config.json', 'processor_config.json', 'chat_template.jinja']) {
    copyFileSync(join(FIXTURE_MODEL, file), join(out, file));
  }

  // 2. The weights, then reopened through the engine's reader: every shard header and the index must agree.
  const total = specs.reduce((sum, s) => sum + bytesOf(s), 0);
  const shards = writeSafetensorsCheckpoint(out, specs, seed, maxShardBytes);
  const check = openCheckpoint(out);
  const tensors = check.names().length;
  check.close();
  process.stderr.write(`wrote ${out}: ${tensors} tensors in ${shards} shards, ${(total / 1e9).toFixed(2)} GB, seed ${seed}\n`);
}

main();
