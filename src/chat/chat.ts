// One chat turn on any model family: prompt → embeddings → generation → answer text, streamed as it is produced.
// The concatenated stream equals the final answer (`_decode_text`: ids 0 and the final EOS removed, stripped).

import { InvalidRequestError } from '../errors.js';
import { beamSearch } from '../generation/beam-search.js';
import { generate } from '../generation/generate.js';
import type { LogitsModel } from '../generation/types.js';
import type { RgbImage } from '../image/index.js';
import type { ChatMessage } from '../models/minicpmv/prompt.js';
import { isPythonWhitespace } from '../tokenizer/python-strings.js';
import { resolveDecoding, type ChatDefaults, type DecodingSettings } from './decoding.js';

/** What the chat layer needs from a model family. */
export interface ChatModel<P extends { ids: number[] } = { ids: number[] }> {
  readonly chatDefaults: ChatDefaults;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly maxBeams: number;
  readonly contextLength: number;
  prepare(messages: readonly ChatMessage[], image: RgbImage | null): P;
  embed(prompt: P): Promise<Float32Array>;
  startDecoding(embeds: Float32Array, seqLen: number): LogitsModel;
  decodeAnswer(newIds: readonly number[]): string;
  /** A streaming detokenizer for generated ids. */
  detokenizer(): { push(id: number): string; flush(): string };
}

export interface ChatRequest extends DecodingSettings {
  messages: readonly ChatMessage[];
  image?: RgbImage | null;
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length';

export interface ChatResult {
  text: string;
  /** The full prompt, BOS first. */
  promptIds: number[];
  /** The generated ids (without generate()'s leading BOS), a final EOS included when one was generated. */
  outputIds: number[];
  finishReason: FinishReason;
}

/** Streams the answer's text; the generator's return value is the whole result. */
export async function* streamChat(model: ChatModel, request: ChatRequest): AsyncGenerator<string, ChatResult, undefined> {
  const decoding = resolveDecoding(request, model.chatDefaults);
  if (decoding.numBeams > model.maxBeams) {
    throw new InvalidRequestError(`${decoding.numBeams} beams asked for, but the model was loaded for at most ${model.maxBeams}`);
  }
  const prompt = model.prepare(request.messages, request.image ?? null);
  const maxNewTokens = Math.min(decoding.maxNewTokens, model.contextLength - prompt.ids.length);
  if (maxNewTokens < 1) {
    throw new InvalidRequestError(`the prompt has ${prompt.ids.length} tokens and fills the ${model.contextLength}-token context`);
  }
  const embeds = await model.embed(prompt);
  const sequence = model.startDecoding(embeds, prompt.ids.length);
  const options = {
    ...decoding,
    maxNewTokens,
    bosTokenId: model.bosTokenId,
    eosTokenId: model.eosTokenId,
    signal: request.signal,
  };
  const outputIds: number[] = [];
  if (decoding.numBeams > 1) {
    const result = await beamSearch(sequence, options);
    outputIds.push(...result.ids);
    const text = model.decodeAnswer(outputIds);
    if (text) yield text;
  } else {
    const stripper = new StripStream();
    const detok = model.detokenizer();
    for await (const id of generate(sequence, options)) {
      outputIds.push(id);
      if (id === model.eosTokenId || id === 0) continue;
      const chunk = stripper.push(detok.push(id));
      if (chunk) yield chunk;
    }
    const tail = stripper.push(detok.flush());
    if (tail) yield tail;
  }
  const finishReason: FinishReason = outputIds[outputIds.length - 1] === model.eosTokenId ? 'stop' : 'length';
  return { text: model.decodeAnswer(outputIds), promptIds: prompt.ids, outputIds, finishReason };
}

/** Runs a chat turn to the end and returns the result. */
export async function runChat(model: ChatModel, request: ChatRequest): Promise<ChatResult> {
  const stream = streamChat(model, request);
  for (;;) {
    const next = await stream.next();
    if (next.done) return next.value;
  }
}

/**
 * Applies Python's `str.strip()` to a stream: leading whitespace is dropped, and trailing whitespace is held back
 * until something else follows it (so the stream never shows what the final answer strips).
 */
class StripStream {
  private started = false;
  private pending = '';

  push(text: string): string {
    let chunk = this.pending + text;
    if (!this.started) {
      let i = 0;
      while (i < chunk.length && isPythonWhitespace(chunk[i]!)) i++;
      chunk = chunk.slice(i);
      if (chunk) this.started = true;
    }
    let end = chunk.length;
    while (end > 0 && isPythonWhitespace(chunk[end - 1]!)) end--;
    this.pending = chunk.slice(end);
    return chunk.slice(0, end);
  }
}
