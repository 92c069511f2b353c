// MiniCPM-V 4.6 (model_type "minicpmv4_6") as the registry sees it: config parsing, its tokenizer.json tokenizer, the
// image processor (for inspect-image), the video frames it keeps and the model.

import { folderFiles } from '../../checkpoint/folder-files.js';
import { openCheckpoint } from '../../checkpoint/open.js';
import { discardEntriesIfFailed } from '../../runtime/model-cache.js';
import { loadTokenizer } from '../../tokenizer/load-folder.js';
import { decodingDefaultsEntry, type ModelFamily } from '../family.js';
import { parseMiniCPMV46Config, type MiniCPMV46Config } from './config.js';
import { imagePlaceholder, preprocessImage } from './image-processor.js';
import { chatDefaultsOf, MiniCPMV46Model, TOKENIZER_FORMAT } from './model.js';
import { videoFramePicker } from './video.js';

export const minicpmv46Family: ModelFamily<MiniCPMV46Config> = {
  modelType: 'minicpmv4_6',
  description: 'MiniCPM-V 4.6',
  unsupportedMember: () => null,
  parseConfig: parseMiniCPMV46Config,
  // The chat path tokenizes the whole prompt text as it is: Qwen's tokenizer adds no BOS.
  tokenize: (dir, text) => loadTokenizer(dir, TOKENIZER_FORMAT).encode(text),
  inspectImage: (image, config, options) => {
    const imageOptions = { ...config.processor.image, downsampleMode: options?.downsampleMode ?? config.processor.image.downsampleMode };
    const processed = preprocessImage(image, imageOptions);
    const grid = processed.plan.grid;
    const pixels = new Map(processed.slices.map((s) => [s.image, s.pixels]));
    return {
      slices: processed.slices.map((s) => s.image),
      // [cols, rows], as inspect-image reports every family's grid (upstream 4.6 plans [rows, cols]).
      grid: grid ? [grid[1], grid[0]] : null,
      placeholder: imagePlaceholder(processed, imageOptions.useImageId ? 0 : null),
      imageTokens: processed.slices.reduce((sum, s) => sum + s.tokens, 0),
      pixels: (slice) => pixels.get(slice)!,
    };
  },
  videoFramePicker: (config, options) => videoFramePicker(config.processor.video, options),
  // A load that fails (a tensor missing, a full disk) takes back what it wrote into the converted-model cache.
  load: (dir, config, options) => discardEntriesIfFailed(async () => {
    const weights = openCheckpoint(dir);
    try {
      return await MiniCPMV46Model.create(config, folderFiles(dir), weights, options, dir);
    } finally {
      weights.close();
    }
  }),
  // Any number of images (as many as the context holds) and a video.
  mediaRefusal: () => null,
  // Its defaults are the checkpoint's: those of the released one, and what holds when its generation_config.json is silent.
  decodingDefaultsHelp: () => {
    const { beam, maxNewTokens } = chatDefaultsOf(null);
    return [decodingDefaultsEntry('MiniCPM-V 4.6', [
      "the checkpoint's generation_config.json (transformers' defaults for what it leaves out); the",
      'released one has sample: temperature 0.7, top_p 1.0, top_k 0 (off), repetition penalty 1.0;',
      `beam: ${beam.numBeams} beams, the same penalty; --max-new-tokens its max_new_tokens, else ${maxNewTokens}`,
    ])];
  },
};
