// The Engine interface over an in-process Model. Generation runs on the calling thread, so a long prefill holds
// up the event loop; a server under load wants the worker-thread engine, a script or a test can use this one.
//
//   const engine = await LocalEngine.start('openbmb/MiniCPM-V-2');
//   for await (const chunk of engine.stream({ messages: [{ role: 'user', content: 'Hi' }], image: null })) …

import { EngineClosedError } from '../errors.js';
import { familyOf, loadModelConfig } from '../models/registry.js';
import type { ChatResult } from './chat.js';
import { loadModel, type LoadModelOptions, type Model } from './engine.js';
import type { Engine, EngineInfo, EngineRequest } from './engine-types.js';
import { Turns, type Turn } from './turns.js';

export class LocalEngine implements Engine {
  /** The requests in line: each starts when the one before it has finished. */
  private readonly turns = new Turns();
  /** Aborted by close(): stops the running request and every waiting one. */
  private readonly closing = new AbortController();
  /** What every call gets once close() has run (the requests it stopped got the closing AbortError). */
  private closed: EngineClosedError | null = null;

  private constructor(
    private readonly model: Model,
    readonly info: EngineInfo,
  ) {}

  /** Loads a model from a folder or a hub id. */
  static async start(idOrPath: string, options: LoadModelOptions = {}): Promise<LocalEngine> {
    const model = await loadModel(idOrPath, options);
    return LocalEngine.fromModel(model, idOrPath);
  }

  /** Wraps a model that is already loaded; the engine's close() releases it. */
  static fromModel(model: Model, modelId: string): LocalEngine {
    const config = loadModelConfig(model.dir);
    return new LocalEngine(model, {
      modelId,
      dir: model.dir,
      modelType: config.modelType,
      contextLength: config.text.maxPositionEmbeddings,
      maxBeams: model.maxBeams,
      minImageTokens: model.minImageTokens,
      imageLimit: model.imageLimit,
    });
  }

  get unavailable(): Error | null {
    return this.closed;
  }

  /**
   * Requests run one at a time, in the order of the calls; aborting a waiting request takes it out of line.
   * Iterate each stream to its end (or abort its signal): the next request waits for it.
   */
  stream(request: EngineRequest, signal?: AbortSignal): AsyncGenerator<string, ChatResult, undefined> {
    return this.run(request, signal, this.turns.take());
  }

  private async *run(request: EngineRequest, signal: AbortSignal | undefined, turn: Turn): AsyncGenerator<string, ChatResult, undefined> {
    const stop = signal ? AbortSignal.any([signal, this.closing.signal]) : this.closing.signal;
    try {
      if (this.closed) throw this.closed;
      await turn.wait(stop);
      return yield* this.model.streamChat({ ...request, signal: stop });
    } finally {
      turn.done();
    }
  }

  /** Refused once the engine is closed, with the error its requests get then (unavailable). */
  async tokenize(text: string): Promise<number[]> {
    if (this.unavailable) throw this.unavailable;
    const config = loadModelConfig(this.model.dir);
    return familyOf(config).tokenize(this.model.dir, text);
  }

  /**
   * Stops every request and frees the model. Generation runs on this thread and checks the signal before every
   * model call, so a request that is between tokens now rejects with an AbortError instead of touching the model.
   * Later calls reject with an EngineClosedError (unavailable), as a closed WorkerEngine's do.
   */
  async close(): Promise<void> {
    this.closed ??= new EngineClosedError();
    this.closing.abort(new DOMException('the engine was closed', 'AbortError'));
    await this.model.release();
  }
}
