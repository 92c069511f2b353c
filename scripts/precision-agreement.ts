// How far int8, int4 and int8-dq weights (src/graph/quantize.ts) take the tiny fixture's language model from fp32:
//
//   node dist/scripts/precision-agreement.js
//
// For every case of test/fixtures/minicpmv2-tiny/llm: the prompt's logits at every position (one run without a
// cache) — how often the top-1 id equals fp32's and the largest |Δ logit| — and the greedy tokens decoded through
// the KV cache (as many as the fixture's greedy run): the first step where they differ from the fixture's greedy
// tokens (fp32 reproduces them exactly). Prints a markdown table on stdout.

import { readdirSync } from 'node:fs';
import { SafetensorsCheckpoint } from '../src/checkpoint/safetensors.js';
import { argmax } from '../src/generation/processors.js';
import type { WeightPrecision } from '../src/graph/quantize.js';
import { buildDecoder, type MiniCPMTextDims } from '../src/models/parts/decoder.js';
import { attentionBias, DecoderRunner } from '../src/runtime/decoder-runner.js';
import { NodeGraphSession, type HostTensor } from '../src/runtime/session.js';
import { fixturePath, maxAbsDiff, openGolden, readFixtureJson } from '../test/helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
const PRECISIONS: WeightPrecision[] = ['fp32', 'int8', 'int4', 'int8-dq'];

interface LlmCase {
  seq_len: number;
  runs: { greedy: { new_token_ids: number[] } };
}

const config = readFixtureJson<Record<string, number>>(FIXTURE, 'model', 'config.json');
const dims: MiniCPMTextDims = {
  hiddenSize: config.hidden_size!,
  numLayers: config.num_hidden_layers!,
  numHeads: config.num_attention_heads!,
  numKvHeads: config.num_key_value_heads!,
  intermediateSize: config.intermediate_size!,
  rmsNormEps: config.rms_norm_eps!,
  ropeTheta: config.rope_theta!,
  vocabSize: config.vocab_size!,
  scaleEmb: config.scale_emb!,
  dimModelBase: config.dim_model_base!,
  scaleDepth: config.scale_depth!,
};

/** Logits [seq, vocab] of a whole prompt, without a cache. */
async function promptLogits(session: NodeGraphSession, embeds: Float32Array, seq: number): Promise<Float32Array> {
  const headDim = dims.hiddenSize / dims.numHeads;
  const feeds: Record<string, HostTensor> = {
    inputs_embeds: { type: 'float32', data: embeds, dims: [1, seq, dims.hiddenSize] },
    position_ids: { type: 'int64', data: BigInt64Array.from({ length: seq }, (_, i) => BigInt(i)), dims: [1, seq] },
    attention_bias: { type: 'float32', data: attentionBias(1, seq, 0), dims: [1, 1, seq, seq] },
  };
  for (let i = 0; i < dims.numLayers; i++) {
    for (const kind of ['key', 'value']) {
      feeds[`past_${kind}_${i}`] = { type: 'float32', data: new Float32Array(0), dims: [1, dims.numKvHeads, 0, headDim] };
    }
  }
  return (await session.run(feeds, ['logits'])).logits!.data as Float32Array;
}

async function greedy(runner: DecoderRunner, embeds: Float32Array, seq: number, count: number): Promise<number[]> {
  const sequence = runner.start(embeds, seq);
  const ids = [argmax(await sequence.prefill())];
  while (ids.length < count) ids.push(argmax((await sequence.step([ids[ids.length - 1]!]))[0]!));
  return ids;
}

function topIds(logits: Float32Array, seq: number): number[] {
  const v = dims.vocabSize;
  return Array.from({ length: seq }, (_, p) => argmax(logits.subarray(p * v, (p + 1) * v)));
}

async function main(): Promise<void> {
  const checkpoint = new SafetensorsCheckpoint(fixturePath(FIXTURE, 'model'));
  const cases = readdirSync(fixturePath(FIXTURE, 'llm')).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
  const rows: string[] = [];
  const reference = new Map<string, Float32Array>();
  for (const precision of PRECISIONS) {
    const graph = buildDecoder(checkpoint, dims, { prefix: 'llm.', logits: 'all', precision });
    const allPositions = await NodeGraphSession.create(`decoder ${precision}`, graph.serialize(), { threads: 1 });
    const runner = await DecoderRunner.create(checkpoint, dims, { maxSeq: 512, threads: 1, precision });
    for (const name of cases) {
      const json = readFixtureJson<LlmCase>(FIXTURE, 'llm', `${name}.json`);
      const golden = openGolden(FIXTURE, 'llm', `${name}.safetensors`);
      const embeds = golden.float32('inputs_embeds');
      golden.close();
      const seq = json.seq_len;
      const logits = await promptLogits(allPositions, embeds, seq);
      if (precision === 'fp32') reference.set(name, logits);
      const fp32 = reference.get(name)!;
      const fp32Top = topIds(fp32, seq);
      const agree = topIds(logits, seq).filter((id, p) => id === fp32Top[p]).length;
      const expected = json.runs.greedy.new_token_ids;
      const ids = await greedy(runner, embeds, seq, expected.length);
      const diverges = ids.findIndex((id, k) => id !== expected[k]);
      rows.push(
        `| ${name} | ${precision} | ${seq} | ${agree}/${seq} (${((100 * agree) / seq).toFixed(1)} %) | ` +
          `${maxAbsDiff(logits, fp32).toFixed(4)} | ${diverges < 0 ? `none in ${expected.length}` : `step ${diverges} of ${expected.length}`} |`,
      );
    }
    await runner.release();
    await allPositions.release();
  }
  checkpoint.close();
  const header = [
    '| case | precision | prompt positions | top-1 = fp32 | max abs Δ logits vs fp32 | first greedy divergence from the fixture |',
    '|---|---|---|---|---|---|',
  ];
  process.stdout.write(`${[...header, ...rows].join('\n')}\n`);
}

await main();
