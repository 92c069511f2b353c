// `omnilmm export-web`: writes a static folder that runs the model in a browser tab (src/export/web.ts).

import { formatBytes } from '../../checkpoint/progress.js';
import { InvalidRequestError } from '../../errors.js';
import { exportWeb } from '../../export/web.js';
import { parseCommandArgs, stringOption } from '../args.js';
import { outputError } from '../io.js';
import { precisionOption } from './chat.js';
import { DEFAULT_MODEL, resolveModelOption, type Command } from './common.js';

const USAGE = 'omnilmm export-web --model <dir|org/name> --out <folder> [--precision P] [--vision-precision P]';

export const exportWebCommand: Command = {
  name: 'export-web',
  summary: 'write a static folder that runs the model in a browser tab (WebGPU or WASM), no server needed',
  help: `usage: ${USAGE}

Writes <folder>/index.html with the page, our modules and onnxruntime-web, and <folder>/model/ with the graphs and
their weights, the tensors the page reads, the tokenizer and config files, and manifest.json (sizes and SHA-256).
"omnilmm serve --web <folder>" hosts it, or any static file server; the page runs on one thread unless the
server sends Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp (serve --web does).
MiniCPM-V 1.0, 2.0 and 4.6. Weight files over 1 GiB are split; the graphs must stay under 4 GiB (a browser's
WebAssembly memory), so OmniLMM-12B does not fit.

  --model <dir|org/name>   checkpoint folder or hub id (default ${DEFAULT_MODEL})
  --out <folder>           where to write (new, empty, or an earlier export, which is replaced)
  --precision P            the language model's linear layers: int8-dq (default: int8 compute, which decodes
                           MiniCPM-V 2.0 6–8× faster than int4 on WASM), int4 (the smallest download), int8 or fp32
  --vision-precision P     the vision tower's linear layers (default int8-dq)`,
  async run(argv) {
    const { values } = parseCommandArgs('export-web', argv, {
      model: { type: 'string' },
      out: { type: 'string' },
      precision: { type: 'string' },
      'vision-precision': { type: 'string' },
    }, USAGE);
    const out = stringOption(values, 'out');
    if (out === undefined) throw new InvalidRequestError(`export-web: --out <folder> is required\nusage: ${USAGE}`);
    const precision = precisionOption(values) ?? 'int8-dq';
    const visionPrecision = precisionOption(values, 'vision-precision') ?? 'int8-dq';
    const modelId = stringOption(values, 'model') ?? DEFAULT_MODEL;
    const dir = await resolveModelOption(values);
    const started = Date.now();
    const { manifest, totalBytes } = await exportWeb(dir, out, {
      precision, visionPrecision, modelId, log: (line) => process.stderr.write(`${line}\n`),
    }).catch((err: unknown) => {
      throw outputError(err, out, '--out');
    });
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    process.stdout.write(
      `exported ${manifest.name} (${precision}, vision ${visionPrecision}) to ${out}: ${manifest.files.length} model files, ` +
        `${formatBytes(totalBytes)}, ${seconds} s\nserve it with: omnilmm serve --web ${out}  (or any static file server)\n`,
    );
  },
};
