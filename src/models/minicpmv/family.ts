// MiniCPM-V as seen by the model registry.

import type { ModelFamily } from '../registry.js';
import { LlamaTokenizer } from '../../tokenizer/llama.js';
import { prepareImageInput, slicePixels } from './image-input.js';
import { MiniCPMVModel } from './model.js';

export const minicpmvFamily: ModelFamily = {
  tokenize: (dir, text) => LlamaTokenizer.fromDir(dir).encode(text),
  inspectImage: (image, config) => ({ ...prepareImageInput(image, config), pixels: slicePixels }),
  load: (dir, config, options) => MiniCPMVModel.load(dir, config, options),
};
