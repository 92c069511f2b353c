// What host-neutral code knows of ONNX Runtime: host tensors, a session over one graph, and `openGraph`, which turns a
// described graph into a session through the host's opener (Node: built or taken from the converted-model cache;
// a browser: loaded from an exported folder).

import type { TensorSource } from '../checkpoint/safetensors.js';
import type { SerializedModel } from '../graph/builder.js';

export type HostTensor =
  | { type: 'float32'; data: Float32Array; dims: readonly number[] }
  | { type: 'int64'; data: BigInt64Array; dims: readonly number[] }
  | { type: 'int32'; data: Int32Array; dims: readonly number[] };

/** One session over one graph, on whichever runtime the host has. */
export interface GraphSession {
  readonly label: string;
  readonly inputNames: readonly string[];
  /** Whether an input may hold no elements (a dimension of 0); WebGPU cannot bind an empty buffer. */
  readonly acceptsEmptyInputs: boolean;
  run(feeds: Record<string, HostTensor>, outputNames?: string[]): Promise<Record<string, HostTensor>>;
  /**
   * Gives the session's memory back until its next run, which opens it again, where that is cheap (Node's sessions
   * from a converted model's files: 0.2–0.5 s for MiniCPM-V 2.0's int8 vision tower); elsewhere nothing happens.
   */
  suspend?(): Promise<void>;
  release(): Promise<void>;
}

/** One graph of a model, as the part that owns it describes it. */
export interface GraphSpec {
  /** Its name within the model, e.g. `decoder` (a cache folder's and an exported file's name). */
  part: string;
  /** For messages, e.g. `language-model decoder`. */
  label: string;
  source: TensorSource;
  /** What the graph depends on besides the checkpoint and the options (dims, prefixes, …), as plain JSON data. */
  key: unknown;
  /** Builds the graph from `source` (a view of the checkpoint that reports progress); only a host that builds calls it. */
  build: (source: TensorSource) => SerializedModel | Promise<SerializedModel>;
}

/** How a host turns a described graph into a session. */
export type GraphOpener = (graph: GraphSpec, runtime: RuntimeOptions) => Promise<GraphSession>;

export interface RuntimeOptions {
  /** Threads for one operator (default: the number of cores). */
  threads?: number;
  /** Execution provider: 'cpu' (default) or 'cuda' (needs the CUDA build of onnxruntime-node, see README). */
  executionProvider?: 'cpu' | 'cuda';
  /**
   * The converted-model cache (src/runtime/model-cache.ts): a folder, or false to build every graph at each load
   * (default: $OMNILMM_CACHE, else ~/.cache/omnilmm; OMNILMM_CACHE=off turns it off).
   */
  cache?: string | false;
  /**
   * Keep the memory a run frees in ONNX Runtime's arena for the next run (default true). Off for graphs that run
   * now and then with large activations (MiniCPM-V 1.0 and 2.0's vision tower): that memory goes back when the run ends.
   */
  memoryArena?: boolean;
  /** How graphs become sessions (default: Node's converted-model cache, `cachedSession`). */
  openGraph?: GraphOpener;
  /**
   * Node only: ONNX Runtime traces every run of each session, kernel by kernel, into `<profile><label>_<time>.json`
   * (written when the session is released; scripts/profile-decode.ts reads it).
   */
  profile?: string;
}

/** The session of a described graph, through the host's opener; Node's is loaded only when no other is given. */
export async function openGraph(graph: GraphSpec, runtime: RuntimeOptions = {}): Promise<GraphSession> {
  if (runtime.openGraph) return runtime.openGraph(graph, runtime);
  const { cachedSession } = await import('./model-cache.js');
  return cachedSession(graph, runtime);
}
