// An Engine around another that keeps, for each request, how many chunks the inner engine generated and how its
// stream ended: a test sees whether a generation ran to its end or was stopped, and how far it got, without a clock.

import type { ChatResult } from '../../src/chat/chat.js';
import type { Engine, EngineRequest } from '../../src/chat/engine-types.js';

/** One request as the inner engine answered it. */
export interface WatchedStream {
  /** Chunks the inner engine has generated so far (each holds at least one token). */
  chunks: number;
  /** How the stream ended: with its result, or with an error of this name; undefined while it runs. */
  ending?: { result: ChatResult } | { error: string };
}

export class WatchedEngine implements Engine {
  /** The requests in the order they were given. */
  readonly streams: WatchedStream[] = [];

  constructor(private readonly inner: Engine) {}

  get info() {
    return this.inner.info;
  }

  get unavailable() {
    return this.inner.unavailable;
  }

  async *stream(request: EngineRequest, signal?: AbortSignal): AsyncGenerator<string, ChatResult, undefined> {
    const watched: WatchedStream = { chunks: 0 };
    this.streams.push(watched);
    const chunks = this.inner.stream(request, signal);
    try {
      for (;;) {
        const next = await chunks.next();
        if (next.done) {
          watched.ending = { result: next.value };
          return next.value;
        }
        watched.chunks++;
        yield next.value;
      }
    } catch (err) {
      watched.ending = { error: err instanceof Error ? err.name : String(err) };
      throw err;
    } finally {
      // A consumer that leaves early ends the inner stream too (and its request with it).
      await chunks.return(undefined as unknown as ChatResult);
    }
  }

  tokenize(text: string): Promise<number[]> {
    return this.inner.tokenize(text);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
