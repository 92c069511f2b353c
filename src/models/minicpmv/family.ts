// MiniCPM-V 1.0 and 2.0 (model_type "minicpmv") as the registry sees them: config parsing, the tokenizer and image
// processing they use, and the model.

import { openCheckpoint } from '../../checkpoint/open.js';
import { discardEntriesIfFailed } from '../../runtime/model-cache.js';
import { loadTokenizer } from '../../tokenizer/load-folder.js';
import { chatDefaultsEntry, type ModelFamily } from '../family.js';
import type { InspectOptions } from '../messages.js';
import { refuseDownsampleMode, singleImageMediaRefusal } from '../single-image.js';
import { modelName, parseMiniCPMVConfig, unsupportedMiniCPMV, type MiniCPMVConfig } from './config.js';
import { prepareImageInput, slicePixels } from './image-input.js';
import { MAX_INPUT_LENGTH, MINICPMV1_CHAT_DEFAULTS, MINICPMV_CHAT_DEFAULTS, MiniCPMVModel, TOKENIZER_FORMAT } from './model.js';

export const minicpmvFamily: ModelFamily<MiniCPMVConfig> = {
  modelType: 'minicpmv',
  description: 'MiniCPM-V 1.0 and 2.0',
  unsupportedMember: unsupportedMiniCPMV,
  parseConfig: ({ config, file }) => parseMiniCPMVConfig(config, file),
  // _convert_to_tensors: BOS + encode(text), cut to max_inp_length.
  tokenize: (dir, text) => loadTokenizer(dir, TOKENIZER_FORMAT).encode(text).slice(0, MAX_INPUT_LENGTH),
  inspectImage: (image, config, options?: InspectOptions) => {
    refuseDownsampleMode(options, modelName(config));
    return { ...prepareImageInput(image, config), pixels: slicePixels };
  },
  // A load that fails (a tensor missing, a full disk) takes back what it wrote into the converted-model cache.
  load: (dir, config, options) => discardEntriesIfFailed(async () => {
    const tokenizer = loadTokenizer(dir, TOKENIZER_FORMAT);
    const weights = openCheckpoint(dir);
    try {
      return await MiniCPMVModel.create(config, tokenizer, weights, options, dir);
    } finally {
      weights.close();
    }
  }),
  mediaRefusal: (config, media) => singleImageMediaRefusal(modelName(config), media),
  decodingDefaultsHelp: () => [chatDefaultsEntry('MiniCPM-V 2.0', MINICPMV_CHAT_DEFAULTS), chatDefaultsEntry('MiniCPM-V 1.0', MINICPMV1_CHAT_DEFAULTS)],
};
