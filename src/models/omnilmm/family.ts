// OmniLMM-12B (model_type "omnilmm") as the registry sees it: config parsing, the tokenizer and image processing it
// uses, and the model.

import { discardEntriesIfFailed } from '../../runtime/model-cache.js';
import { loadTokenizer } from '../../tokenizer/load-folder.js';
import { chatDefaultsEntry, type ModelFamily } from '../family.js';
import type { InspectOptions } from '../messages.js';
import { refuseDownsampleMode, singleImageMediaRefusal } from '../single-image.js';
import { parseOmniLMMConfig, type OmniLMMConfig } from './config.js';
import { inspectImage } from './image-input.js';
import { OMNILMM_CHAT_DEFAULTS, OmniLMMModel, TOKENIZER_FORMAT } from './model.js';

export const omnilmmFamily: ModelFamily<OmniLMMConfig> = {
  modelType: 'omnilmm',
  description: 'OmniLMM-12B',
  unsupportedMember: () => null,
  parseConfig: ({ config, file }) => parseOmniLMMConfig(config, file),
  tokenize: (dir, text) => loadTokenizer(dir, TOKENIZER_FORMAT).encode(text),
  inspectImage: (image, config, options?: InspectOptions) => {
    refuseDownsampleMode(options, 'OmniLMM-12B');
    return inspectImage(image, config);
  },
  // A load that fails (a tensor missing, a full disk) takes back what it wrote into the converted-model cache.
  load: (dir, config, options) => discardEntriesIfFailed(() => OmniLMMModel.load(dir, config, options)),
  mediaRefusal: (_, media) => singleImageMediaRefusal('OmniLMM-12B', media),
  decodingDefaultsHelp: () => [chatDefaultsEntry('OmniLMM-12B', OMNILMM_CHAT_DEFAULTS, '(its official chat has no beam search; here beam search takes no penalty)')],
};
