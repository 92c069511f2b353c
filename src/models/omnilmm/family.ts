// OmniLMM-12B as seen by the model registry.

import { discardEntriesIfFailed } from '../../runtime/model-cache.js';
import { LlamaTokenizer } from '../../tokenizer/llama.js';
import type { ConfigOf, ModelFamily } from '../registry.js';
import { inspectImage } from './image-input.js';
import { OmniLMMModel } from './model.js';

export const omnilmmFamily: ModelFamily<ConfigOf<'omnilmm'>> = {
  tokenize: (dir, text) => LlamaTokenizer.fromDir(dir).encode(text),
  inspectImage,
  // A load that fails (a tensor missing, a full disk) takes back what it wrote into the converted-model cache.
  load: (dir, config, options) => discardEntriesIfFailed(() => OmniLMMModel.load(dir, config, options)),
};
