// OmniLMM-12B as seen by the model registry.

import { LlamaTokenizer } from '../../tokenizer/llama.js';
import type { ConfigOf, ModelFamily } from '../registry.js';
import { inspectImage } from './image-input.js';
import { OmniLMMModel } from './model.js';

export const omnilmmFamily: ModelFamily<ConfigOf<'omnilmm'>> = {
  tokenize: (dir, text) => LlamaTokenizer.fromDir(dir).encode(text),
  inspectImage,
  load: (dir, config, options) => OmniLMMModel.load(dir, config, options),
};
