// MiniCPM-V as seen by the model registry.

import type { InspectOptions } from '../messages.js';
import type { ConfigOf, ModelFamily } from '../registry.js';
import { refuseDownsampleMode } from '../single-image.js';
import { LlamaTokenizer } from '../../tokenizer/llama.js';
import { prepareImageInput, slicePixels } from './image-input.js';
import { MAX_INPUT_LENGTH, MiniCPMVModel } from './model.js';

export const minicpmvFamily: ModelFamily<ConfigOf<'minicpmv'>> = {
  // _convert_to_tensors: BOS + encode(text), cut to max_inp_length.
  tokenize: (dir, text) => LlamaTokenizer.fromDir(dir).encode(text).slice(0, MAX_INPUT_LENGTH),
  inspectImage: (image, config, options?: InspectOptions) => {
    refuseDownsampleMode(options, `MiniCPM-V ${config.version}.0`);
    return { ...prepareImageInput(image, config), pixels: slicePixels };
  },
  load: (dir, config, options) => MiniCPMVModel.load(dir, config, options),
};
