// The library's entry point: load a model by folder or hub id, then chat with it (whole answers or streamed).

import { resolveModel } from '../checkpoint/resolve.js';
import type { HubOptions } from '../checkpoint/hub.js';
import { describeJson, InvalidRequestError } from '../errors.js';
import type { RgbImage } from '../image/index.js';
import { withDefaultPrecisions } from '../models/family.js';
import type { DownsampleMode, ImageLimit, Message } from '../models/messages.js';
import { familyOf, loadModelConfig, type LoadedModel, type LoadOptions } from '../models/registry.js';
import { streamChat, type ChatRequest, type ChatResult } from './chat.js';
import type { DecodingSettings } from './decoding.js';
import { checkImageCount, loadMedia, type VideoRequest } from './media-source.js';
import { Turns } from './turns.js';

export interface LoadModelOptions extends LoadOptions {
  /** Where and how to download a hub id (defaults from HF_ENDPOINT, HF_HOME, HF_TOKEN, HF_HUB_OFFLINE). */
  hub?: HubOptions;
}

export interface ModelRequest extends DecodingSettings {
  /**
   * The conversation so far: content a string or parts (`{type: "text", text}`, `{type: "image"}`, `{type:
   * "video"}`, the official chat-template form); a system message first where the model has one. Without image
   * or video parts, the images (then the video) go before the first user text.
   */
  messages?: readonly Message[];
  /** Appended as the last user message. */
  question?: string;
  /** One image: encoded bytes (JPEG, PNG, WebP, GIF) or decoded RGB pixels; give this or `images`. */
  image?: Uint8Array | RgbImage | null;
  /** Several images, one per image part of the messages, in order. */
  images?: readonly (Uint8Array | RgbImage)[];
  /** A video: `{frames}` (pixels or image bytes) or `{file}` (a folder of frames or a video file), `fps` and options. */
  video?: VideoRequest | null;
  /** MiniCPM-V 4.6's visual token downsampling: '16x' (default) or '4x'. */
  downsampleMode?: DownsampleMode;
  /** Think before answering (MiniCPM-V 4.6): the answer starts with the reasoning, up to `</think>`. */
  thinking?: boolean;
  /** Strings that end the answer (the text is cut before the first one). */
  stop?: readonly string[];
  signal?: AbortSignal;
}

/**
 * A loaded model. Its calls take turns: one answer at a time, in the order they start (a stream holds the model until
 * it ends or the loop over it is left), so concurrent calls wait rather than disturb each other's KV cache.
 */
export class Model {
  /** Its calls in line: each starts when the one before it has finished. */
  private readonly turns = new Turns();
  /** Aborted by release(): stops the running call and every waiting one. */
  private readonly releasing = new AbortController();

  constructor(
    private readonly loaded: LoadedModel,
    /** The local folder the model was loaded from. */
    readonly dir: string,
  ) {}

  /** The answer to the request's last question. */
  async chat(request: ModelRequest): Promise<string> {
    return (await this.run(request)).text;
  }

  /** The answer as text chunks, as they are generated. */
  async *stream(request: ModelRequest): AsyncGenerator<string, void, undefined> {
    const stream = this.streamChat(request);
    for (;;) {
      const next = await stream.next();
      if (next.done) return;
      yield next.value;
    }
  }

  /** The answer with its prompt and output ids. */
  async run(request: ModelRequest): Promise<ChatResult> {
    const stream = this.streamChat(request);
    for (;;) {
      const next = await stream.next();
      if (next.done) return next.value;
    }
  }

  /** Text chunks as they are generated; the generator's return value is the whole result. */
  async *streamChat(request: ModelRequest): AsyncGenerator<string, ChatResult, undefined> {
    const signal = request.signal === undefined ? this.releasing.signal : AbortSignal.any([checkSignal(request.signal), this.releasing.signal]);
    const turn = this.turns.take();
    try {
      await turn.wait(signal);
      return yield* streamChat(this.loaded, await toChatRequest({ ...request, signal }, this.loaded));
    } finally {
      turn.done();
    }
  }

  /** The most beams a request may ask for: what the model was loaded for. */
  get maxBeams(): number {
    return this.loaded.maxBeams;
  }

  /** The fewest prompt positions any image takes (more images than the context holds at this rate are refused). */
  get minImageTokens(): number {
    return this.loaded.minImageTokens;
  }

  /** The most images one conversation may hold by the family's own rule, or null where only the context bounds them. */
  get imageLimit(): ImageLimit | null {
    return this.loaded.imageLimit;
  }

  /** The settings the upstream chat.py uses for this model (see OmniLMMChat). */
  get chatPySettings(): DecodingSettings {
    return this.loaded.chatPySettings;
  }

  /** Frees the model; the running call and the waiting ones reject, and later calls are refused. */
  release(): Promise<void> {
    this.releasing.abort(new InvalidRequestError('the model was released: load it again to ask it more'));
    return this.loaded.release();
  }
}

/** Loads a model from a local folder or a Hugging Face hub id (downloaded into the standard cache). */
export async function loadModel(idOrPath: string, options: LoadModelOptions = {}): Promise<Model> {
  const dir = await resolveModel(idOrPath, options.hub);
  const config = loadModelConfig(dir);
  return new Model(await familyOf(config).load(dir, config, withDefaultPrecisions(options)), dir);
}

/** The request with its media decoded, unless it has more images than the model takes or its context could hold. */
async function toChatRequest(request: ModelRequest, model: LoadedModel): Promise<ChatRequest> {
  if (request.messages !== undefined && !Array.isArray(request.messages)) {
    throw new InvalidRequestError(`messages must be a list of {role, content}, got ${describeJson(request.messages)}`);
  }
  if (request.question !== undefined && typeof request.question !== 'string') {
    throw new InvalidRequestError(`question must be a string, got ${describeJson(request.question)}`);
  }
  const messages: Message[] = [...(request.messages ?? [])];
  if (request.question !== undefined) messages.push({ role: 'user', content: request.question });
  if (messages.length === 0) throw new InvalidRequestError('nothing to answer: give a question or messages');
  checkImageCount(request, model);
  return { ...request, messages, ...(await loadMedia(request, { signal: request.signal, framePickerOf: (options) => model.videoFramePicker?.(options) })) };
}

/** The request's signal, if it is one (AbortSignal.any would throw a TypeError at anything else). */
function checkSignal(signal: unknown): AbortSignal {
  if (!(signal instanceof AbortSignal)) throw new InvalidRequestError(`signal must be an AbortSignal, got ${describeJson(signal)}`);
  return signal;
}
