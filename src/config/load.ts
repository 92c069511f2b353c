// loadModelConfig: a model folder's config.json (+ generation_config.json) → the typed config of its model family.
// The family is chosen by `model_type` through the explicit registry below.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, FileNotFoundError, UnsupportedModelError } from '../errors.js';
import { asDict, showValue } from './fromDict.js';
import { readGenerationConfig, type GenerationConfig } from './generation.js';
import { readJsonFile } from './json.js';
import { parseMiniCPMVConfig, type MiniCPMVConfig } from './minicpmv.js';
import { parseOmniLMMConfig, type OmniLMMConfig } from './omnilmm.js';

/** The config of one model family, discriminated by `modelType`. */
export type FamilyConfig = MiniCPMVConfig | OmniLMMConfig;

export type ModelConfig = FamilyConfig & {
  /** The model folder. */
  dir: string;
  /** generation_config.json, or null when the folder has none. */
  generation: GenerationConfig | null;
};

interface ModelFamily {
  /** What to tell the user this model_type covers. */
  description: string;
  parse(config: Record<string, unknown>, file: string): FamilyConfig;
}

const MODEL_FAMILIES: Record<string, ModelFamily> = {
  minicpmv: { description: 'MiniCPM-V 1.0 and 2.0', parse: parseMiniCPMVConfig },
  omnilmm: { description: 'OmniLMM-12B', parse: parseOmniLMMConfig },
};

export const SUPPORTED_MODEL_TYPES = Object.keys(MODEL_FAMILIES);

function supportedList(): string {
  return Object.entries(MODEL_FAMILIES).map(([type, f]) => `"${type}" (${f.description})`).join(', ');
}

/** Reads and validates `dir/config.json` and `dir/generation_config.json`. */
export function loadModelConfig(dir: string): ModelConfig {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new FileNotFoundError(`model folder not found: ${dir}`);
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new CheckpointError(`no config.json in ${dir}: pass the folder that holds the model's config.json`);
  const config = asDict(readJsonFile(file), { file });
  const modelType = config['model_type'];
  if (typeof modelType !== 'string') {
    throw new CheckpointError(`${file}: "model_type" must be a string naming the model family, got ${showValue(modelType)}; supported: ${supportedList()}`);
  }
  const family = Object.hasOwn(MODEL_FAMILIES, modelType) ? MODEL_FAMILIES[modelType] : undefined;
  if (!family) {
    throw new UnsupportedModelError(`${file}: model_type "${modelType}" is not supported; supported: ${supportedList()}`);
  }
  return { ...family.parse(config, file), dir, generation: readGenerationConfig(dir) };
}
