// The one engine interface behind the CLI, the server and the web page. Requests carry encoded image bytes so
// they can cross a worker-thread boundary; results carry the ids that the CLI's --json and the server's usage need.

import type { ChatResult } from './chat.js';
import type { DecodingSettings } from './decoding.js';

export interface EngineMessage {
  role: 'user' | 'assistant';
  content: string;
}

export interface EngineRequest extends DecodingSettings {
  /** The conversation; the image belongs to its first (user) message. */
  messages: EngineMessage[];
  /** Encoded image bytes (JPEG, PNG, WebP, GIF), or null for a text-only chat. */
  image: Uint8Array | null;
  /** Strings that end the answer (the server's `stop`): it stops before the first one, which is never streamed. */
  stop?: string[];
}

export interface EngineInfo {
  /** What the user passed as --model (folder or hub id). */
  modelId: string;
  /** The local folder. */
  dir: string;
  modelType: string;
  contextLength: number;
}

export interface Engine {
  readonly info: EngineInfo;
  /**
   * Streams the answer's text chunks; the generator's return value is the whole result. Requests run one at a
   * time, in the order of the stream() calls. Aborting `signal` (or leaving the stream early) drops a request that
   * has not started and stops a running one between tokens; the stream rejects with `signal.reason`.
   */
  stream(request: EngineRequest, signal?: AbortSignal): AsyncGenerator<string, ChatResult, undefined>;
  /** Token ids of a text as the chat path encodes it (BOS first, like `omnilmm tokenize`). */
  tokenize(text: string): Promise<number[]>;
  /** Stops every request and frees the model. */
  close(): Promise<void>;
}
