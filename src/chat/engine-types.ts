// The one engine interface behind the CLI, the server and the web page. Requests carry encoded image bytes so
// they can cross a worker-thread boundary; results carry the ids that the CLI's --json and the server's usage need.

import type { DownsampleMode, ImageLimit, Message } from '../models/messages.js';
import type { ChatResult } from './chat.js';
import type { DecodingSettings } from './decoding.js';
import type { VideoRequest } from './media-source.js';

/** A message of the conversation: content a string or parts (`{type: "text", text}`, `{type: "image"}`, `{type: "video"}`). */
export type EngineMessage = Message;

export interface EngineRequest extends DecodingSettings {
  /** The conversation; without image or video parts, the images (then the video) go before the first user text. */
  messages: EngineMessage[];
  /** One image's encoded bytes (JPEG, PNG, WebP, GIF), or null for a text-only chat; give this or `images`. */
  image?: Uint8Array | null;
  /** Several images' encoded bytes, one per image part of the messages, in order. */
  images?: Uint8Array[];
  /** The video: its frames, or a folder of frames or a video file, read where the model runs. */
  video?: VideoRequest | null;
  /** MiniCPM-V 4.6's visual token downsampling (left out: the model's default, 16x). */
  downsampleMode?: DownsampleMode;
  /** Think before answering (MiniCPM-V 4.6): the answer starts with the reasoning, up to `</think>`. */
  thinking?: boolean;
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
  /** The most beams a request may ask for: what the model was loaded for. */
  maxBeams: number;
  /** The fewest prompt positions any image takes: more images than `contextLength` holds at this rate are refused. */
  minImageTokens: number;
  /**
   * The most images one conversation may hold by the family's own rule, or null where only the context bounds them:
   * more are refused before any is decoded.
   */
  imageLimit: ImageLimit | null;
}

export interface Engine {
  readonly info: EngineInfo;
  /**
   * Why requests fail now (the engine was closed, or its worker thread stopped), or null while it takes them: every
   * later stream() and tokenize() rejects with this error.
   */
  readonly unavailable: Error | null;
  /**
   * Streams the answer's text chunks; the generator's return value is the whole result. Requests run one at a
   * time, in the order of the stream() calls. Aborting `signal` (or leaving the stream early) drops a request that
   * has not started and stops a running one between images (decoding, resizing, encoding) or tokens; the stream
   * rejects with `signal.reason`. More images than the model takes (EngineInfo.imageLimit) or its context could hold
   * are refused before any is decoded.
   */
  stream(request: EngineRequest, signal?: AbortSignal): AsyncGenerator<string, ChatResult, undefined>;
  /** Token ids of a text as the chat path encodes it (BOS first, like `omnilmm tokenize`). */
  tokenize(text: string): Promise<number[]>;
  /** Stops every request and frees the model. */
  close(): Promise<void>;
}
