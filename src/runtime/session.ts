// The only module that imports onnxruntime-node: sessions over graphs built by src/graph (src/runtime/session-web.ts
// is its browser counterpart).

import ort from 'onnxruntime-node';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { RuntimeError } from '../errors.js';
import type { SerializedModel } from '../graph/builder.js';
import type { GraphSession, HostTensor, RuntimeOptions } from './graph-session.js';

export type { HostTensor, RuntimeOptions } from './graph-session.js';

export function defaultThreads(): number {
  return Math.max(1, availableParallelism());
}

/** The ONNX Runtime version that runs the graphs (converted models that it optimised are kept per version). */
export function runtimeVersion(): string {
  return ort.env.versions.node ?? ort.env.versions.common ?? 'unknown';
}

/** One ONNX Runtime session. `run` is synchronous inside ONNX Runtime: call it from a worker thread. */
export class NodeGraphSession implements GraphSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly label: string,
    private readonly profiling: boolean,
  ) {}

  /**
   * Creates the session. A model with an external-data file is written beside it and loaded from that path (ONNX
   * Runtime reads the weights itself, so they never pass through the JS heap); the folder is removed afterwards,
   * whether or not creation succeeded. The CPU provider memory-maps the file (private, copy-on-write): weights it
   * prepacks (MatMul's B) are copied and unmapped, the others stay mapped, and on Linux a mapping outlives the
   * file's deletion (test/graph.test.ts runs a session whose folder is already gone).
   */
  static async create(label: string, model: SerializedModel, options: RuntimeOptions = {}): Promise<NodeGraphSession> {
    try {
      if (!model.weights) return await NodeGraphSession.open(label, model.model, options);
      writeFileSync(model.weights.modelPath, model.model);
      return await NodeGraphSession.open(label, model.weights.modelPath, options);
    } finally {
      model.weights?.remove();
    }
  }

  /** Creates the session from a model file on disk (a converted model: its external weights lie beside it, mapped). */
  static fromFile(label: string, modelPath: string, options: RuntimeOptions = {}): Promise<NodeGraphSession> {
    return NodeGraphSession.open(label, modelPath, options);
  }

  /**
   * Writes the model at `modelPath` as ONNX Runtime optimises it for this machine's CPU, with the weights it prepacks
   * (MatMul's packed B, MatMulNBits' repacked blocks) saved in their packed form: `<targetDir>/model.onnx` and its
   * `weights.bin`. A session created from that model maps the packed weights instead of packing them again, which
   * is most of the time a session takes to start. The result depends on the CPU and the runtime's version.
   */
  static async saveOptimized(label: string, modelPath: string, targetDir: string, options: RuntimeOptions = {}): Promise<void> {
    const session = await NodeGraphSession.open(label, modelPath, options, {
      // Up to the layout transforms of level 'all', which are cheap and are applied again at each start.
      graphOptimizationLevel: 'extended',
      enableProfiling: false,
      optimizedModelFilePath: join(targetDir, 'model.onnx'),
      extra: {
        session: {
          save_external_prepacked_constant_initializers: '1',
          optimized_model_external_initializers_file_name: 'weights.bin',
          // ONNX Runtime aligns a tensor in the external file (to 4 KiB) only when it is over 1 MiB, and packed
          // weights are read with aligned loads (a misaligned small one crashed the process): smaller tensors stay
          // in the model file, and their packing is redone at each start.
          optimized_model_external_initializers_min_size_in_bytes: String(1024 * 1024 + 1),
        },
      },
    });
    await session.release();
  }

  private static async open(
    label: string,
    model: string | Uint8Array,
    options: RuntimeOptions,
    more: ort.InferenceSession.SessionOptions = {},
  ): Promise<NodeGraphSession> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: options.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      executionProviders: [options.executionProvider ?? 'cpu'],
      enableCpuMemArena: options.memoryArena ?? true,
      ...(options.profile !== undefined && { enableProfiling: true, profileFilePrefix: `${options.profile}${label.replace(/[^A-Za-z0-9]+/g, '-')}` }),
      ...more,
    };
    try {
      const session =
        typeof model === 'string'
          ? await ort.InferenceSession.create(model, sessionOptions)
          : await ort.InferenceSession.create(model, sessionOptions);
      return new NodeGraphSession(session, label, sessionOptions.enableProfiling === true);
    } catch (err) {
      throw new RuntimeError(`could not create the ${label} session: ${(err as Error).message}`, { cause: err });
    }
  }

  readonly acceptsEmptyInputs = true;

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
    if (this.profiling) await this.session.endProfiling();
    await this.session.release();
  }
}
