// `omnilmm inspect-image`: how the model would see an image (slice plan, placeholder, optional pixel tensors).

import { writeSafetensors } from '../../checkpoint/safetensors.js';
import { outputError, readImageFile } from '../io.js';
import type { InspectOptions } from '../../models/messages.js';
import { familyOf, loadModelConfig } from '../../models/registry.js';
import { parseCommandArgs, requireOne, stringOption } from '../args.js';
import { downsampleModeOption } from './chat.js';
import { resolveModelOption, type Command } from './common.js';

const USAGE = 'omnilmm inspect-image --model <dir|org/name> [--json] [--downsample-mode 16x|4x] [--pixels <out.safetensors>] <image>';

export const inspectImageCommand: Command = {
  name: 'inspect-image',
  summary: 'show how the model slices an image; optionally write its pixel tensors',
  help: `usage: ${USAGE}

Decodes the image (JPEG, PNG, WebP or the first frame of a GIF) as PIL's convert('RGB') does and plans its
slices as the model's official code does.

  --model <dir|org/name>   checkpoint folder or hub id (default openbmb/MiniCPM-V-2)
  --json                   print {"source":[w,h], "grid":[cols,rows]|null, "slices":[[w,h],...],
                           "placeholder": string, "image_tokens": number}; "source" is the overview's size,
                           "slices" the sizes of the patches after it, "image_tokens" the prompt positions
                           that receive image features (number of slices × query_num)
  --downsample-mode 16x|4x MiniCPM-V 4.6's image tokens per slice: 16x (default) or 4x (four times as many);
                           the other models have one mode
  --pixels <file>          also write the normalised float32 CHW tensors of every slice as safetensors,
                           named slice_00 (the overview), slice_01, ... in the model's order; a regular file
                           there is replaced, anything else (a folder, a link, a pipe, a device) is refused`,
  async run(argv) {
    const { values, positionals } = parseCommandArgs('inspect-image', argv, {
      model: { type: 'string' },
      json: { type: 'boolean' },
      pixels: { type: 'string' },
      'downsample-mode': { type: 'string' },
    }, USAGE);
    const imagePath = requireOne(positionals, 'image path', USAGE);
    const pixelsPath = stringOption(values, 'pixels');
    const downsampleMode = downsampleModeOption(values);
    const options: InspectOptions = downsampleMode ? { downsampleMode } : {};
    const config = loadModelConfig(await resolveModelOption(values));
    const family = familyOf(config);
    const input = family.inspectImage(await readImageFile(imagePath), config, options);
    const [source, ...patches] = input.slices.map((s) => [s.width, s.height] as const);
    if (pixelsPath !== undefined) {
      const tensors = input.slices.map((slice, i) => ({
        name: `slice_${String(i).padStart(2, '0')}`,
        shape: [3, slice.height, slice.width],
        data: input.pixels(slice),
      }));
      try {
        writeSafetensors(pixelsPath, tensors);
      } catch (err) {
        throw outputError(err, pixelsPath, '--pixels');
      }
    }
    const report = { source, grid: input.grid, slices: patches, placeholder: input.placeholder, image_tokens: input.imageTokens };
    if (values.json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
      return;
    }
    const grid = input.grid ? `${input.grid[0]} cols × ${input.grid[1]} rows` : 'none (one slice)';
    process.stdout.write(
      `overview: ${source![0]}×${source![1]}\ngrid: ${grid}\n` +
        (patches.length ? `patches: ${patches.length} × ${patches[0]![0]}×${patches[0]![1]}\n` : '') +
        `image tokens: ${input.imageTokens}\n` + (pixelsPath !== undefined ? `pixels written to ${pixelsPath}\n` : ''),
    );
  },
};
