// Every fuzz target by name. A target is loaded only when asked for, so that the fuzzing child starts its coverage
// before the parser's modules are imported.

import type { FuzzTarget } from '../engine/target.js';

const LOADERS: Record<string, () => Promise<{ target: FuzzTarget }>> = {
  'safetensors': () => import('./safetensors.js'),
  'safetensors-index': () => import('./safetensors-index.js'),
  'zip': () => import('./zip.js'),
  'pickle': () => import('./pickle.js'),
  'pytorch': () => import('./pytorch.js'),
  'sentencepiece': () => import('./sentencepiece.js'),
  'tokenizer-json': () => import('./tokenizer-json.js'),
  'image': () => import('./image.js'),
  'chat-request': () => import('./chat-request.js'),
  'data-url': () => import('./data-url.js'),
};

export const TARGET_NAMES = Object.keys(LOADERS);

export async function loadTarget(name: string): Promise<FuzzTarget> {
  const load = LOADERS[name];
  if (!load) throw new Error(`unknown fuzz target ${JSON.stringify(name)}; the targets are: ${TARGET_NAMES.join(', ')}`);
  return (await load()).target;
}
