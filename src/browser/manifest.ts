// The manifest of a model exported for the web (`omnilmm export-web`): what the page downloads and verifies, and how
// the browser engine finds each graph and host tensor in it.

import type { DType } from '../checkpoint/dtypes.js';

export const WEB_MANIFEST_FORMAT = 'omnilmm-web/1';

export interface WebManifestFile {
  /** Relative to the folder that holds manifest.json. */
  path: string;
  bytes: number;
  sha256: string;
  /** small: read into memory; graph and weights: large files onnxruntime-web loads. */
  kind: 'small' | 'graph' | 'weights';
}

export interface WebManifest {
  format: typeof WEB_MANIFEST_FORMAT;
  model_type: string;
  /** The model's name in messages, e.g. "MiniCPM-V 2.0". */
  name: string;
  /** What --model was (a folder or a hub id). */
  model_id: string;
  precision: string;
  vision_precision: string;
  /**
   * Each graph by part: its model file, its external weight files (the name the model gives each, and its path here)
   * and the description it was built from.
   */
  graphs: Record<string, { model: string; weights: { location: string; path: string }[]; key: string }>;
  /** The tensors host code reads (token embeddings, position tables), as stored in the checkpoint. */
  tensors: { name: string; path: string; dtype: DType; shape: number[] }[];
  files: WebManifestFile[];
}
