// The browser counterpart of session.ts: sessions on onnxruntime-web (WASM or WebGPU) over graphs that
// `omnilmm export-web` wrote. The page imports the bundle and hands it over, so this module only names its types.

import type * as OrtWeb from 'onnxruntime-web';
import { RuntimeError } from '../errors.js';
import type { GraphSession, HostTensor } from './graph-session.js';

export type OrtWebModule = typeof OrtWeb;
export type WebBackend = 'wasm' | 'webgpu';

export interface WebSessionOptions {
  ort: OrtWebModule;
  backend: WebBackend;
  /** The graph's external-data files as the graph names them (`weights.bin`) and where each is: a URL or its bytes. */
  externalData?: readonly { path: string; data: string | Uint8Array }[];
}

export class WebGraphSession implements GraphSession {
  readonly acceptsEmptyInputs: boolean;

  private constructor(
    private readonly ort: OrtWebModule,
    private readonly session: OrtWeb.InferenceSession,
    readonly label: string,
    backend: WebBackend,
  ) {
    this.acceptsEmptyInputs = backend !== 'webgpu';
  }

  /** Creates the session from the graph's bytes (or URL) and its external weights. */
  static async create(label: string, model: Uint8Array | string, options: WebSessionOptions): Promise<WebGraphSession> {
    const { ort, backend, externalData } = options;
    const sessionOptions: OrtWeb.InferenceSession.SessionOptions = {
      executionProviders: [backend],
      graphOptimizationLevel: 'all',
      ...(externalData && externalData.length > 0 ? { externalData: [...externalData] } : {}),
    };
    try {
      const session =
        typeof model === 'string'
          ? await ort.InferenceSession.create(model, sessionOptions)
          : await ort.InferenceSession.create(model, sessionOptions);
      return new WebGraphSession(ort, session, label, backend);
    } catch (err) {
      throw new RuntimeError(`could not create the ${label} session on ${backend}: ${errorText(err)}`, { cause: err });
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  async run(feeds: Record<string, HostTensor>, outputNames?: string[]): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, OrtWeb.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new this.ort.Tensor(t.type, t.data, t.dims);
    let results: OrtWeb.InferenceSession.ReturnType;
    try {
      results = outputNames ? await this.session.run(ortFeeds, outputNames) : await this.session.run(ortFeeds);
    } catch (err) {
      throw new RuntimeError(`the ${this.label} graph failed: ${errorText(err)}`, { cause: err });
    }
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(results)) {
      out[name] = { type: t.type, data: await t.getData(true), dims: t.dims } as HostTensor;
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** onnxruntime-web sometimes rejects with a string or a number rather than an Error. */
function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
