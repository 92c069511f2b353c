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
  readonly inputNames: readonly string[];
  /** null while suspended and once released. */
  private session: ort.InferenceSession | null;
  private released = false;

  private constructor(
    session: ort.InferenceSession,
    readonly label: string,
    private readonly profiling: boolean,
    /** Opens the session again after `suspend` (sessions created from a file); null when it cannot. */
    private readonly reopen: (() => Promise<ort.InferenceSession>) | null,
  ) {
    this.session = session;
    this.inputNames = session.inputNames;
  }

  /**
   * Creates the session. A model with an external-data file is written beside it and loaded from that path (ONNX
   * Runtime reads the weights itself, so they never pass through the JS heap); the folder is removed afterwards,
   * whether or not creation succeeded. The CPU provider memory-maps the file (private, copy-on-write): weights it
   * prepacks (MatMul's B) are copied and unmapped, the others stay mapped, and on Linux a mapping outlives the
   * file's deletion (test/graph.test.ts runs a session whose folder is already gone).
   */
  static async create(label: string, model: SerializedModel, options: RuntimeOptions = {}): Promise<NodeGraphSession> {
    try {
      const path = model.weights ? model.weights.modelPath : null;
      if (path !== null) writeFileSync(path, model.model);
      const sessionOptions = NodeGraphSession.sessionOptions(label, options);
      return new NodeGraphSession(await NodeGraphSession.open(label, path ?? model.model, sessionOptions), label, !!sessionOptions.enableProfiling, null);
    } finally {
      model.weights?.remove();
    }
  }

  /**
   * Creates the session from a model file on disk (a converted model: its external weights lie beside it, mapped);
   * it can be suspended, and opens the file again at its next run.
   */
  static async fromFile(label: string, modelPath: string, options: RuntimeOptions = {}): Promise<NodeGraphSession> {
    const sessionOptions = NodeGraphSession.sessionOptions(label, options);
    const open = () => NodeGraphSession.open(label, modelPath, sessionOptions);
    // A traced session is never suspended: its trace is written when the session ends.
    return new NodeGraphSession(await open(), label, !!sessionOptions.enableProfiling, sessionOptions.enableProfiling ? null : open);
  }

  /**
   * Writes the model at `modelPath` as ONNX Runtime optimises it for this machine's CPU, with the weights it prepacks
   * (MatMul's packed B, MatMulNBits' repacked blocks) saved in their packed form: `<targetDir>/model.onnx` and its
   * `weights.bin`. A session created from that model maps the packed weights instead of packing them again, which
   * is most of the time a session takes to start. The result depends on the CPU and the runtime's version.
   */
  static async saveOptimized(label: string, modelPath: string, targetDir: string, options: RuntimeOptions = {}): Promise<void> {
    const session = await NodeGraphSession.open(label, modelPath, {
      ...NodeGraphSession.sessionOptions(label, options),
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

  private static sessionOptions(label: string, options: RuntimeOptions): ort.InferenceSession.SessionOptions {
    return {
      intraOpNumThreads: options.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      executionProviders: [options.executionProvider ?? 'cpu'],
      enableCpuMemArena: options.memoryArena ?? true,
      ...(options.profile !== undefined && { enableProfiling: true, profileFilePrefix: `${options.profile}${label.replace(/[^A-Za-z0-9]+/g, '-')}` }),
    };
  }

  private static async open(label: string, model: string | Uint8Array, sessionOptions: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
    try {
      return typeof model === 'string'
        ? await ort.InferenceSession.create(model, sessionOptions)
        : await ort.InferenceSession.create(model, sessionOptions);
    } catch (err) {
      throw new RuntimeError(`could not create the ${label} session: ${(err as Error).message}`, { cause: err });
    }
  }

  readonly acceptsEmptyInputs = true;

  async run(feeds: Record<string, HostTensor>, outputNames?: string[]): Promise<Record<string, HostTensor>> {
    if (this.released) throw new RuntimeError(`the ${this.label} session was already released`);
    const session = this.session ?? (this.session = await this.reopen!());
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    let results: ort.InferenceSession.ReturnType;
    try {
      results = outputNames ? await session.run(ortFeeds, outputNames) : await session.run(ortFeeds);
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

  /** Gives the session's memory back until the next run, for a session created from a file; others stay open. */
  async suspend(): Promise<void> {
    if (!this.reopen || !this.session) return;
    const session = this.session;
    this.session = null;
    await session.release();
  }

  async release(): Promise<void> {
    const session = this.session;
    this.released = true;
    this.session = null;
    if (!session) return;
    if (this.profiling) await session.endProfiling();
    await session.release();
  }
}
