// Which code runs which checkpoint: the model families, one line each (explicit imports), chosen by config.json's
// model_type; a known checkpoint that no family runs (a later version, MiniCPM-o) is refused by its name.

import { folderFiles } from '../checkpoint/folder-files.js';
import { readConfigJson } from '../config/load.js';
import { showValue } from '../config/fromDict.js';
import { readGenerationConfig, type GenerationConfig } from '../config/generation.js';
import { CheckpointError, UnsupportedModelError } from '../errors.js';
import type { ModelFamily } from './family.js';
import { versionText } from './minicpmv/config.js';
import { minicpmvFamily } from './minicpmv/family.js';
import { omnilmmFamily } from './omnilmm/family.js';
import { minicpmv46Family } from './minicpmv46/family.js';
// Every model Node loads comes through here: its image keys (imageKey) are hashed by node:crypto.
import '../sha256-node.js';

export type { CheckpointConfig, ImageInspection, LoadedModel, LoadOptions, ModelFamily } from './family.js';

/** Every model family: one line each. */
const FAMILIES = [
  minicpmvFamily,
  omnilmmFamily,
  minicpmv46Family,
] as const;

type ConfigOfFamily<F> = F extends ModelFamily<infer C> ? C : never;

/** The typed config of any registered family, discriminated by `modelType`. */
export type FamilyConfig = ConfigOfFamily<(typeof FAMILIES)[number]>;

export type ModelConfig = FamilyConfig & {
  /** The model folder. */
  dir: string;
  /** generation_config.json, or null when the folder has none. */
  generation: GenerationConfig | null;
};

/** The loaded config of the family whose model_type is T. */
export type ConfigOf<T extends ModelConfig['modelType']> = Extract<ModelConfig, { modelType: T }>;

export const SUPPORTED_MODEL_TYPES: readonly string[] = FAMILIES.map((family) => family.modelType);

/** The families in the order above, as other modules list them (their configs go through familyOf). */
export const MODEL_FAMILIES: readonly Pick<ModelFamily, 'modelType' | 'description' | 'decodingDefaultsHelp'>[] = FAMILIES;

/**
 * Checkpoints of the MiniCPM-V line whose model_type no family above reads: MiniCPM-o, and the versions with a
 * model_type of their own (MiniCPM-V 4.6 is "minicpmv4_6", 4.7 "minicpmv4_7") until their family is listed.
 */
const KNOWN_MODEL_TYPES: readonly { pattern: RegExp; name(match: RegExpExecArray, config: Record<string, unknown>): string }[] = [
  { pattern: /^minicpmo$/, name: (_, config) => ['MiniCPM-o', versionText(config['version'])].filter(Boolean).join(' ') },
  { pattern: /^minicpmv(\d+)_(\d+)$/, name: (match) => `MiniCPM-V ${match[1]}.${match[2]}` },
];

/** The families as a message lists them: "minicpmv" (MiniCPM-V 1.0 and 2.0), … */
function supportedList(): string {
  return FAMILIES.map((family) => `"${family.modelType}" (${family.description})`).join(', ');
}

/** The name of a checkpoint we know but do not run, or null. */
function unsupportedCheckpoint(modelType: string, config: Record<string, unknown>, family: ModelFamily | undefined): string | null {
  if (family) return family.unsupportedMember(config);
  for (const known of KNOWN_MODEL_TYPES) {
    const match = known.pattern.exec(modelType);
    if (match) return known.name(match, config);
  }
  return null;
}

/**
 * Reads and validates `dir/config.json` (with the files its family reads) and `dir/generation_config.json`. The
 * family is the one whose model_type config.json names; a known checkpoint that no family runs gets an
 * UnsupportedModelError that names it and lists what is supported.
 */
export function loadModelConfig(dir: string): ModelConfig {
  const files = folderFiles(dir);
  const { file, config } = readConfigJson(files);
  const modelType = config['model_type'];
  if (typeof modelType !== 'string') {
    throw new CheckpointError(`${file}: "model_type" must be a string naming the model family, got ${showValue(modelType)}; supported: ${supportedList()}`);
  }
  const family = FAMILIES.find((f) => f.modelType === modelType);
  const unsupported = unsupportedCheckpoint(modelType, config, family);
  if (unsupported !== null) {
    throw new UnsupportedModelError(
      `${file}: this checkpoint is ${unsupported} (model_type "${modelType}"), which this version of omnilmm cannot run; ` +
        `supported: ${supportedList()}`,
    );
  }
  if (!family) {
    throw new UnsupportedModelError(`${file}: model_type "${modelType}" is not supported; supported: ${supportedList()}`);
  }
  return { ...family.parseConfig({ files, file, config }), dir, generation: readGenerationConfig(files) };
}

/** The family that parsed `config`. */
export function familyOf(config: ModelConfig): ModelFamily<ModelConfig> {
  const family = FAMILIES.find((f) => f.modelType === config.modelType);
  if (!family) throw new Error(`internal error: no model family for model_type "${config.modelType}"`);
  // A family only ever receives the configs it parsed itself: the ones with its modelType.
  return family as unknown as ModelFamily<ModelConfig>;
}
