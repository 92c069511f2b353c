// The upstream project's chat API (chat.py: OmniLMMChat, img2base64), for code ported from Python:
//   const chat = new OmniLMMChat('openbmb/MiniCPM-V-2');
//   await chat.chat({ image: img2base64('photo.jpg'), question: JSON.stringify(msgs) });

import { readFileSync } from 'node:fs';
import { ImageError, InvalidRequestError } from '../errors.js';
import { parseMessages } from '../models/messages.js';
import { loadModel, Model, type LoadModelOptions } from './engine.js';

export interface OmniLMMChatInput {
  /** The image file's bytes, base64-encoded. */
  image: string;
  /** JSON text of the messages, [{"role": "user", "content": "…"}, …]. */
  question: string;
}

export class OmniLMMChat {
  private model: Promise<Model> | null = null;

  /** A model folder or hub id (loaded on the first chat), or a model already loaded. */
  constructor(
    private readonly source: string | Model,
    private readonly options: LoadModelOptions = {},
  ) {}

  /**
   * Answers with chat.py's settings for the model (sampling; MiniCPM-V with temperature 0.7). Like chat.py, an image that cannot be decoded
   * answers "Image decode error" instead of throwing.
   */
  async chat(input: OmniLMMChatInput): Promise<string> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(input.question);
    } catch {
      throw new InvalidRequestError('question must be the JSON text of the messages, e.g. JSON.stringify([{role: "user", content: "…"}])');
    }
    const messages = parseMessages(parsed);
    const model = await this.load();
    try {
      return await model.chat({ messages, image: Buffer.from(input.image, 'base64'), ...model.chatPySettings });
    } catch (err) {
      if (err instanceof ImageError) return 'Image decode error';
      throw err;
    }
  }

  private load(): Promise<Model> {
    if (typeof this.source !== 'string') return Promise.resolve(this.source);
    this.model ??= loadModel(this.source, this.options);
    return this.model;
  }
}

/** A file's bytes as base64 text (chat.py's img2base64). */
export function img2base64(path: string): string {
  return readFileSync(path).toString('base64');
}
