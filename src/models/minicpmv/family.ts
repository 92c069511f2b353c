// MiniCPM-V as seen by the model registry.

import type { ConfigOf, ModelFamily } from '../registry.js';
import { discardEntriesIfFailed } from '../../runtime/model-cache.js';
import { LlamaTokenizer } from '../../tokenizer/llama.js';
import { prepareImageInput, slicePixels } from './image-input.js';
import { MAX_INPUT_LENGTH, MiniCPMVModel } from './model.js';

export const minicpmvFamily: ModelFamily<ConfigOf<'minicpmv'>> = {
  // _convert_to_tensors: BOS + encode(text), cut to max_inp_length.
  tokenize: (dir, text) => LlamaTokenizer.fromDir(dir).encode(text).slice(0, MAX_INPUT_LENGTH),
  inspectImage: (image, config) => ({ ...prepareImageInput(image, config), pixels: slicePixels }),
  // A load that fails (a tensor missing, a full disk) takes back what it wrote into the converted-model cache.
  load: (dir, config, options) => discardEntriesIfFailed(() => MiniCPMVModel.load(dir, config, options)),
};
