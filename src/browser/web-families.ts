// The model families a browser runs: how export-web (in Node) and the page's engine build each one from a model
// folder's files and a tensor source, with graphs through `options.openGraph`. Imports nothing Node-only.

import type { ModelFiles } from '../checkpoint/model-files.js';
import type { TensorSource } from '../checkpoint/safetensors.js';
import type { ChatModel } from '../chat/chat.js';
import { UnsupportedModelError } from '../errors.js';
import type { LoadOptions } from '../models/family.js';
import { parseMiniCPMVConfig } from '../models/minicpmv/config.js';
import { MiniCPMVModel, TOKENIZER_FORMAT } from '../models/minicpmv/model.js';
import { parseMiniCPMV46Config } from '../models/minicpmv46/config.js';
import { MiniCPMV46Model } from '../models/minicpmv46/model.js';
import { tokenizerFromFiles } from '../tokenizer/load.js';

/** A model as the browser engine drives it. */
export interface WebChatModel extends ChatModel {
  readonly name: string;
  /** Prompts whose images went through the vision encoder so far, and the seconds that took. */
  readonly visionWork: { readonly images: number; readonly seconds: number };
  release(): Promise<void>;
}

type CreateWebModel = (files: ModelFiles, weights: TensorSource, options: LoadOptions, where: string) => Promise<WebChatModel>;

function configOf(files: ModelFiles): Record<string, unknown> {
  return JSON.parse(files.text('config.json')) as Record<string, unknown>;
}

/** By config.json's model_type. */
const WEB_FAMILIES: Record<string, CreateWebModel> = {
  minicpmv: (files, weights, options, where) =>
    MiniCPMVModel.create(
      parseMiniCPMVConfig(configOf(files), files.describe('config.json')),
      tokenizerFromFiles(files, TOKENIZER_FORMAT), weights, options, where,
    ),
  minicpmv4_6: (files, weights, options, where) =>
    MiniCPMV46Model.create(
      parseMiniCPMV46Config({ files, file: files.describe('config.json'), config: configOf(files) }), files, weights, options, where,
    ),
};

/** Refuses a model_type that no browser family runs, naming those that do. */
export function checkWebModelType(modelType: string): void {
  if (!Object.hasOwn(WEB_FAMILIES, modelType)) {
    throw new UnsupportedModelError(
      `model_type "${modelType}" does not run in a browser; these do: ${Object.keys(WEB_FAMILIES).map((t) => `"${t}"`).join(', ')}`,
    );
  }
}

/** Builds the model of the folder's model_type. */
export function createWebModel(modelType: string, files: ModelFiles, weights: TensorSource, options: LoadOptions, where: string): Promise<WebChatModel> {
  checkWebModelType(modelType);
  return WEB_FAMILIES[modelType]!(files, weights, options, where);
}
