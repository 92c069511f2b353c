// The library's entry point: load a model by folder or hub id, then chat with it (whole answers or streamed).

import { resolveModel } from '../checkpoint/resolve.js';
import type { HubOptions } from '../checkpoint/hub.js';
import { InvalidRequestError } from '../errors.js';
import { decodeImage, type RgbImage } from '../image/index.js';
import type { ChatMessage } from '../models/messages.js';
import { familyOf, loadModelConfig, type LoadedModel, type LoadOptions } from '../models/registry.js';
import { runChat, streamChat, type ChatResult } from './chat.js';
import type { DecodingSettings } from './decoding.js';

export interface LoadModelOptions extends LoadOptions {
  /** Where and how to download a hub id (defaults from HF_ENDPOINT, HF_HOME, HF_TOKEN, HF_HUB_OFFLINE). */
  hub?: HubOptions;
}

export interface ModelRequest extends DecodingSettings {
  /** The conversation so far; the image belongs to its first (user) message. */
  messages?: readonly ChatMessage[];
  /** Appended as the last user message. */
  question?: string;
  /** Encoded image bytes (JPEG, PNG, WebP, GIF) or decoded RGB pixels. */
  image?: Uint8Array | RgbImage | null;
  /** Strings that end the answer (the text is cut before the first one). */
  stop?: readonly string[];
  signal?: AbortSignal;
}

export class Model {
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
    return runChat(this.loaded, await toChatRequest(request));
  }

  /** Text chunks as they are generated; the generator's return value is the whole result. */
  async *streamChat(request: ModelRequest): AsyncGenerator<string, ChatResult, undefined> {
    return yield* streamChat(this.loaded, await toChatRequest(request));
  }

  /** The settings the upstream chat.py uses for this model (see OmniLMMChat). */
  get chatPySettings(): DecodingSettings {
    return this.loaded.chatPySettings;
  }

  release(): Promise<void> {
    return this.loaded.release();
  }
}

/** Loads a model from a local folder or a Hugging Face hub id (downloaded into the standard cache). */
export async function loadModel(idOrPath: string, options: LoadModelOptions = {}): Promise<Model> {
  const dir = await resolveModel(idOrPath, options.hub);
  const config = loadModelConfig(dir);
  return new Model(await familyOf(config).load(dir, config, options), dir);
}

async function toChatRequest(request: ModelRequest) {
  const messages = [...(request.messages ?? [])];
  if (request.question !== undefined) messages.push({ role: 'user', content: request.question });
  if (messages.length === 0) throw new InvalidRequestError('nothing to answer: give a question or messages');
  const image = request.image instanceof Uint8Array ? await decodeImage(request.image) : (request.image ?? null);
  return { ...request, messages, image };
}
