// WorkerEngine: the Engine with its model in a worker thread. ONNX Runtime's session creation and session.run block
// the thread they run on, so the model lives in engine-worker.ts and this thread stays free for the server or CLI.
//
// Messages (structured clones):
//   here → worker   chat {id, request, videoFrameKeys?} · abort {id} · tokenize {id, text} · close
//   worker → here   ready {modelType, contextLength, maxBeams, minImageTokens, imageLimit} · load-error {error} · warning {message}
//                   chunk {id, text} · done {id, result} · tokens {id, ids} · error {id, error}
// A worker's warning is emitted again here (process.emitWarning), so it shows as this thread's warnings do. Pixels in
// SharedArrayBuffers (a video read with readVideoPath's `shared`, as the CLI does) cross without a copy, and the keys
// such frames were hashed to go with them (videoFrameKeys), so that the worker does not hash them again on every turn.
// Chat requests wait in a FIFO here and go to the worker one at a time. The worker gives its event loop a turn before
// every image it decodes or resizes and every model call (streamChat), so an abort message stops it there.

import { Worker } from 'node:worker_threads';
import { resolveModel } from '../checkpoint/resolve.js';
import * as errors from '../errors.js';
import type { LoadOptions } from '../models/registry.js';
import type { ChatResult } from './chat.js';
import type { LoadModelOptions } from './engine.js';
import type { Engine, EngineInfo, EngineRequest } from './engine-types.js';
import { imageCountRefusal, rememberedFrameKeys } from './media-source.js';

/** What the worker is started with: a local model folder and options that survive a structured clone. */
export interface WorkerData {
  dir: string;
  options: LoadOptions;
}

/** An error as it crosses the thread boundary: its class name and message (and an ImageTooLargeError's summary). */
export interface WireError {
  name: string;
  message: string;
  summary?: string;
}

export type ToWorker =
  | { type: 'chat'; id: number; request: EngineRequest; videoFrameKeys?: (string | null)[] }
  | { type: 'abort'; id: number }
  | { type: 'tokenize'; id: number; text: string }
  | { type: 'close' };

export type FromWorker =
  | { type: 'ready' } & Omit<EngineInfo, 'modelId' | 'dir'>
  | { type: 'load-error'; error: WireError }
  | { type: 'warning'; message: string }
  | { type: 'chunk'; id: number; text: string }
  | { type: 'done'; id: number; result: ChatResult }
  | { type: 'tokens'; id: number; ids: number[] }
  | { type: 'error'; id: number; error: WireError };

/**
 * The worker thread's stack (Node's default is 4 MB). While it creates sessions, ONNX Runtime recurses in proportion
 * to the length of the process's command line: a 15 KB question given as a CLI argument overflowed 4 MB (a
 * segfault); 64 MB held 130 KB, the most one argument can hold on Linux. The main thread's 8 MB overflows at 50 KB.
 */
const WORKER_STACK_MB = 64;

export class WorkerEngine implements Engine {
  private readonly queue: ChatJob[] = [];
  private running: ChatJob | null = null;
  private readonly tokenizing = new Map<number, { resolve(ids: number[]): void; reject(err: unknown): void }>();
  private nextId = 1;
  /** Why new requests fail: the engine was closed or its worker died. */
  private unusable: Error | null = null;
  private closing: Promise<void> | null = null;
  private readonly exited: Promise<number>;

  private constructor(
    private readonly worker: Worker,
    readonly info: EngineInfo,
  ) {
    this.exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.on('message', (message: FromWorker) => this.receive(message));
    worker.on('error', (err) => this.fail(err));
    worker.once('exit', (code) => {
      if (this.closing) return;
      this.fail(new errors.RuntimeError(`the engine's worker thread stopped (exit code ${code}): start the engine again`));
    });
  }

  /**
   * Resolves the model (a hub id is downloaded here, with its progress bar), then loads it in a new worker thread.
   * Loading errors reject with the error class and message the worker saw.
   */
  static async start(idOrPath: string, options: LoadModelOptions = {}): Promise<WorkerEngine> {
    const { hub, ...loadOptions } = options;
    const dir = await resolveModel(idOrPath, hub);
    const workerData: WorkerData = { dir, options: loadOptions };
    const worker = new Worker(new URL('./engine-worker.js', import.meta.url), {
      workerData,
      resourceLimits: { stackSizeMb: WORKER_STACK_MB },
    });
    let onMessage!: (message: FromWorker) => void;
    let onError!: (err: Error) => void;
    let onExit!: (code: number) => void;
    try {
      const ready = await new Promise<Omit<EngineInfo, 'modelId' | 'dir'>>((resolve, reject) => {
        onMessage = (message) => {
          if (message.type === 'warning') process.emitWarning(message.message);
          else if (message.type === 'ready') resolve(message);
          else if (message.type === 'load-error') reject(errorFromWire(message.error));
          else reject(new errors.RuntimeError(`the engine's worker sent "${message.type}" before it was ready`));
        };
        onError = reject;
        onExit = (code) => reject(new errors.RuntimeError(`the engine's worker thread stopped while loading (exit code ${code})`));
        worker.on('message', onMessage).once('error', onError).once('exit', onExit);
      });
      const { modelType, contextLength, maxBeams, minImageTokens, imageLimit } = ready;
      return new WorkerEngine(worker, { modelId: idOrPath, dir, modelType, contextLength, maxBeams, minImageTokens, imageLimit });
    } catch (err) {
      await worker.terminate();
      throw err;
    } finally {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
    }
  }

  get unavailable(): Error | null {
    return this.unusable;
  }

  stream(request: EngineRequest, signal?: AbortSignal): AsyncGenerator<string, ChatResult, undefined> {
    const job = new ChatJob(this.nextId++, request);
    const tooMany = imageCountRefusal(request, this.info);
    if (this.unusable) job.settle({ error: this.unusable });
    else if (signal?.aborted) job.settle({ error: signal.reason });
    else if (tooMany) job.settle({ error: tooMany });
    else {
      if (signal) {
        const onAbort = () => this.cancel(job, signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        job.onSettled = () => signal.removeEventListener('abort', onAbort);
      }
      this.queue.push(job);
      this.startNext();
    }
    return this.follow(job);
  }

  tokenize(text: string): Promise<number[]> {
    if (this.unusable) return Promise.reject(this.unusable);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      try {
        this.post({ type: 'tokenize', id, text });
        this.tokenizing.set(id, { resolve, reject });
      } catch (err) {
        reject(unsendableError(err, 'text', text));
      }
    });
  }

  /** Drops the queued requests, stops the running one, frees the model and ends the worker thread. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new DOMException('the engine was closed', 'AbortError');
      this.unusable = new errors.EngineClosedError();
      for (const job of this.queue.splice(0)) job.settle({ error: closed });
      if (this.running) this.cancel(this.running, closed);
      for (const pending of this.tokenizing.values()) pending.reject(closed);
      this.tokenizing.clear();
      this.post({ type: 'close' });
      await this.exited;
    })();
    return this.closing;
  }

  /** The job's chunks as they arrive; leaving the loop early cancels the job. */
  private async *follow(job: ChatJob): AsyncGenerator<string, ChatResult, undefined> {
    try {
      for (;;) {
        const next = await job.next();
        if (next.done) return next.value;
        yield next.value;
      }
    } finally {
      if (!job.settled) this.cancel(job, new DOMException('the stream was closed before the answer ended', 'AbortError'));
    }
  }

  /** A queued job never starts; a running one is stopped by the worker. Either way its stream rejects now. */
  private cancel(job: ChatJob, reason: unknown): void {
    job.settle({ error: reason });
    const queued = this.queue.indexOf(job);
    if (queued >= 0) this.queue.splice(queued, 1);
    else if (this.running === job) this.post({ type: 'abort', id: job.id });
  }

  /** Sends the next queued job to the worker; one that cannot be sent (a function in it...) is refused, and the next goes. */
  private startNext(): void {
    while (!this.running && !this.unusable) {
      const job = this.queue.shift();
      if (!job) return;
      try {
        this.post({ type: 'chat', id: job.id, request: job.request, videoFrameKeys: rememberedFrameKeys(job.request.video) });
        this.running = job;
      } catch (err) {
        job.settle({ error: unsendableError(err, 'request', job.request) });
      }
    }
  }

  private receive(message: FromWorker): void {
    switch (message.type) {
      case 'chunk':
        if (this.running?.id === message.id) this.running.push(message.text);
        break;
      case 'tokens':
        this.tokenizing.get(message.id)?.resolve(message.ids);
        this.tokenizing.delete(message.id);
        break;
      case 'error': {
        const pending = this.tokenizing.get(message.id);
        this.tokenizing.delete(message.id);
        if (pending) pending.reject(errorFromWire(message.error));
        else this.finish(message.id, { error: errorFromWire(message.error) });
        break;
      }
      case 'done':
        this.finish(message.id, { result: message.result });
        break;
      case 'warning':
        process.emitWarning(message.message);
        break;
      default:
        this.fail(new errors.RuntimeError(`the engine's worker sent an unexpected "${message.type}" message`));
    }
  }

  /** The worker is done with the running job: it settles (unless cancelled before) and the next one starts. */
  private finish(id: number, outcome: Outcome): void {
    if (this.running?.id !== id) return;
    this.running.settle(outcome);
    this.running = null;
    this.startNext();
  }

  /** The worker cannot go on: every request, running or waiting, fails with `err`. */
  private fail(err: Error): void {
    this.unusable ??= err;
    const jobs = [...(this.running ? [this.running] : []), ...this.queue.splice(0)];
    this.running = null;
    for (const job of jobs) job.settle({ error: err });
    for (const pending of this.tokenizing.values()) pending.reject(err);
    this.tokenizing.clear();
  }

  private post(message: ToWorker): void {
    this.worker.postMessage(message);
  }
}

type Outcome = { result: ChatResult } | { error: unknown };

/** One chat request: the chunks received and not yet read, then its outcome. */
class ChatJob {
  /** Called once, when the outcome is known. */
  onSettled: (() => void) | null = null;
  private readonly chunks: string[] = [];
  private outcome: Outcome | null = null;
  private wake: (() => void) | null = null;

  constructor(
    readonly id: number,
    readonly request: EngineRequest,
  ) {}

  get settled(): boolean {
    return this.outcome !== null;
  }

  push(chunk: string): void {
    if (this.outcome) return;
    this.chunks.push(chunk);
    this.notify();
  }

  /** The first outcome wins; an error drops the chunks not yet read, so the stream rejects at once. */
  settle(outcome: Outcome): void {
    if (this.outcome) return;
    this.outcome = outcome;
    if ('error' in outcome) this.chunks.length = 0;
    this.onSettled?.();
    this.notify();
  }

  async next(): Promise<IteratorResult<string, ChatResult>> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk !== undefined) return { done: false, value: chunk };
      if (this.outcome) {
        if ('error' in this.outcome) throw this.outcome.error;
        return { done: true, value: this.outcome.result };
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

/**
 * Why `value` (the argument named `name`) could not be posted to the worker: for a DataCloneError, an
 * InvalidRequestError naming the first part of it that cannot cross (a function, a symbol, a Promise...); any other
 * error as it is.
 */
function unsendableError(err: unknown, name: string, value: unknown): unknown {
  if (!(err instanceof DOMException && err.name === 'DataCloneError')) return err;
  const found = uncloneablePart(value, name);
  const what = found ? `${found.path} is ${found.kind}` : `${name} holds a value that cannot be copied`;
  return new errors.InvalidRequestError(
    `${what}, which cannot be sent to the engine's worker thread: give only data (strings, numbers, booleans, arrays, plain objects, byte arrays)`,
  );
}

/**
 * The first part of `value` (depth first) that a structured clone refuses, with its path and kind; null if none is.
 * `seen` holds the objects already searched, so that a cycle back to one of them is not followed.
 */
function uncloneablePart(value: unknown, path: string, seen = new Set<object>()): { path: string; kind: string } | null {
  if (typeof value === 'object' && value !== null && seen.has(value)) return null;
  try {
    structuredClone(value);
    return null;
  } catch {
    // Refused: a part of it is to blame, or else the value itself.
  }
  if (typeof value === 'object' && value !== null) {
    seen.add(value);
    for (const [key, part] of Object.entries(value)) {
      const found = uncloneablePart(part, Array.isArray(value) ? `${path}[${key}]` : `${path}.${key}`, seen);
      if (found) return found;
    }
  }
  return { path, kind: kindOf(value) };
}

function kindOf(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return 'a symbol';
  const constructorName = (value as object | null)?.constructor?.name;
  if (!constructorName) return 'a value that cannot be copied';
  return `${/^[AEIOU]/.test(constructorName) ? 'an' : 'a'} ${constructorName}`;
}

/** The error the worker threw, rebuilt as the same class (OmnilmmError subclasses, AbortError) with its message. */
export function errorFromWire(wire: WireError): Error {
  if (wire.name === 'AbortError') return new DOMException(wire.message, 'AbortError');
  if (wire.name === 'ImageTooLargeError' && wire.summary !== undefined && wire.message.startsWith(`${wire.summary}; `)) {
    return new errors.ImageTooLargeError(wire.summary, wire.message.slice(wire.summary.length + 2));
  }
  const named = (errors as Record<string, unknown>)[wire.name];
  if (named === errors.OmnilmmError || (typeof named === 'function' && named.prototype instanceof errors.OmnilmmError)) {
    return new (named as new (message: string) => errors.OmnilmmError)(wire.message);
  }
  const err = new Error(wire.message);
  err.name = wire.name;
  return err;
}

export function errorToWire(err: unknown): WireError {
  if (err instanceof errors.ImageTooLargeError) return { name: err.name, message: err.message, summary: err.summary };
  return err instanceof Error ? { name: err.name, message: err.message } : { name: 'Error', message: String(err) };
}
