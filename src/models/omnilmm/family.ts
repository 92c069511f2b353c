// OmniLMM-12B as seen by the model registry.

import { LlamaTokenizer } from '../../tokenizer/llama.js';
import type { InspectOptions } from '../messages.js';
import type { ConfigOf, ModelFamily } from '../registry.js';
import { refuseDownsampleMode } from '../single-image.js';
import { inspectImage } from './image-input.js';
import { OmniLMMModel } from './model.js';

export const omnilmmFamily: ModelFamily<ConfigOf<'omnilmm'>> = {
  tokenize: (dir, text) => LlamaTokenizer.fromDir(dir).encode(text),
  inspectImage: (image, config, options?: InspectOptions) => {
    refuseDownsampleMode(options, 'OmniLMM-12B');
    return inspectImage(image, config);
  },
  load: (dir, config, options) => OmniLMMModel.load(dir, config, options),
};
