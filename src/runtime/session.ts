// The only module that imports onnxruntime: sessions over graphs built by src/graph, and host tensors.

import ort from 'onnxruntime-node';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { RuntimeError } from '../errors.js';
import type { SerializedModel } from '../graph/builder.js';

export type HostTensor =
  | { type: 'float32'; data: Float32Array; dims: readonly number[] }
  | { type: 'int64'; data: BigInt64Array; dims: readonly number[] }
  | { type: 'int32'; data: Int32Array; dims: readonly number[] };

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
}

export function defaultThreads(): number {
  return Math.max(1, availableParallelism());
}

/** One ONNX Runtime session. `run` is synchronous inside ONNX Runtime: call it from a worker thread. */
export class GraphSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly label: string,
  ) {}

  /**
   * Creates the session. A model with an external-data file is written beside it and loaded from that path (ONNX
   * Runtime reads the weights itself, so they never pass through the JS heap); the folder is removed afterwards,
   * whether or not creation succeeded. The CPU provider memory-maps the file (private, copy-on-write): weights it
   * prepacks (MatMul's B) are copied and unmapped, the others stay mapped, and on Linux a mapping outlives the
   * file's deletion (test/graph.test.ts runs a session whose folder is already gone).
   */
  static async create(label: string, model: SerializedModel, options: RuntimeOptions = {}): Promise<GraphSession> {
    try {
      if (!model.weights) return await GraphSession.open(label, model.model, options);
      writeFileSync(model.weights.modelPath, model.model);
      return await GraphSession.open(label, model.weights.modelPath, options);
    } finally {
      model.weights?.remove();
    }
  }

  /** Creates the session from a model file on disk (a converted model: its external weights lie beside it, mapped). */
  static fromFile(label: string, modelPath: string, options: RuntimeOptions = {}): Promise<GraphSession> {
    return GraphSession.open(label, modelPath, options);
  }

  private static async open(label: string, model: string | Uint8Array, options: RuntimeOptions): Promise<GraphSession> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: options.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      executionProviders: [options.executionProvider ?? 'cpu'],
    };
    try {
      const session =
        typeof model === 'string'
          ? await ort.InferenceSession.create(model, sessionOptions)
          : await ort.InferenceSession.create(model, sessionOptions);
      return new GraphSession(session, label);
    } catch (err) {
      throw new RuntimeError(`could not create the ${label} session: ${(err as Error).message}`, { cause: err });
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  async run(feeds: Record<string, HostTensor>, outputNames?: string[]): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    let results: ort.InferenceSession.ReturnType;
    try {
      results = outputNames ? await this.session.run(ortFeeds, outputNames) : await this.session.run(ortFeeds);
    } catch (err) {
      throw new RuntimeError(`the ${this.label} graph failed: ${(err as Error).message}`, { cause: err });
    }
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(results)) {
      out[name] = { type: t.type, data: t.data, dims: t.dims } as HostTensor;
      t.dispose();
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
