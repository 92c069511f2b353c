// Times text prompts of at least 512 tokens through the decoder (llama-bench's pp512 workload), to run in pairs
// with llama-bench on a machine whose speed drifts within minutes (bench.ts measures one, as prefill_text_tok_s):
//
//   node dist/scripts/prefill-text.js --model <dir> [--precision int4|int8|fp32|int8-dq] [--threads N] [--prompts 4]
//
// One untimed prompt first (llama-bench's warm-up), then --prompts timed ones. Each starts with its own number, so
// only the chat template's first tokens come from the cache.

import { parseArgs } from 'node:util';
import { resolveModel } from '../src/checkpoint/resolve.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../src/graph/quantize.js';
import { withDefaultPrecisions } from '../src/models/family.js';
import { familyOf, loadModelConfig } from '../src/models/registry.js';
import { defaultThreads } from '../src/runtime/session.js';
import { timeTextPrefill } from './bench-inputs.js';
import { showLoad, startPhase } from './cpu-load.js';

const USAGE = 'node dist/scripts/prefill-text.js --model <dir> [--precision int4|int8|fp32|int8-dq] [--threads N] [--prompts N]';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' }, precision: { type: 'string', default: 'int4' }, threads: { type: 'string' },
      prompts: { type: 'string', default: '4' },
    },
  });
  const precision = values.precision as WeightPrecision;
  const prompts = Number(values.prompts);
  if (!values.model || !WEIGHT_PRECISIONS.includes(precision) || !Number.isInteger(prompts) || prompts < 1) {
    throw new Error(`usage: ${USAGE}`);
  }
  const threads = values.threads ? Number(values.threads) : defaultThreads();
  const dir = await resolveModel(values.model);
  const config = loadModelConfig(dir);
  const model = await familyOf(config).load(dir, config, withDefaultPrecisions({ threads, precision, maxBeams: 1 }));
  try {
    const rates: number[] = [];
    const end = startPhase();
    for (let k = 0; k <= prompts; k++) {
      const { tokens, seconds } = await timeTextPrefill(model, `${k}. `);
      if (k > 0) rates.push(tokens / seconds);
    }
    process.stdout.write(
      `${dir}, ${precision}, ${threads} threads: text prefill ${rates.map((r) => r.toFixed(1)).join(' ')} tok/s, ` +
      `others ${showLoad(end())}\n`,
    );
  } finally {
    await model.release();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
});
