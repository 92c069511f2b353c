// An Engine without a model, for server tests: it answers every request with the same chunks and keeps the requests.

import type { ChatResult } from '../../src/chat/chat.js';
import type { Engine, EngineRequest } from '../../src/chat/engine-types.js';

/** An engine that answers every request with the same chunks and keeps the requests it was given. */
export class ScriptedEngine implements Engine {
  /**
   * 4096 positions, and an image takes at least 64 (as on MiniCPM-V 2.0, its queries), but no family limit on the
   * images (the server's tests send several).
   */
  readonly info = { modelId: 'scripted', dir: '', modelType: 'minicpmv', contextLength: 4096, maxBeams: 3, minImageTokens: 64, imageLimit: null };
  readonly requests: EngineRequest[] = [];
  readonly unavailable = null;
  constructor(private readonly chunks: string[]) {}
  async *stream(request: EngineRequest): AsyncGenerator<string, ChatResult, undefined> {
    this.requests.push(request);
    for (const chunk of this.chunks) yield chunk;
    return { text: this.chunks.join(''), promptIds: [1, 2, 3], outputIds: [4, 5, 6, 7], finishReason: 'stop', cachedTokens: 0, seconds: { prompt: 0, decode: 0 } };
  }
  async tokenize(): Promise<number[]> {
    return [];
  }
  async close(): Promise<void> {}
}
