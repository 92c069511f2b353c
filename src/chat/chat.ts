// One chat turn on any model family: prompt → embeddings → generation → answer text, streamed as it is produced.
// The concatenated stream equals the final answer (as the family makes it from the ids: MiniCPM-V's `_decode_text`
// drops ids 0 and the final EOS and strips; MiniCPM-V 4.6 decodes without special tokens), or, when a stop string
// ended it, the answer before the stop string.

import { ContextFullError, InvalidRequestError } from '../errors.js';
import { nextMacrotask } from '../macrotask.js';
import { beamSearch } from '../generation/beam-search.js';
import { generate } from '../generation/generate.js';
import type { BeamSearchVersion, LogitsModel } from '../generation/types.js';
import type { RgbImage } from '../image/index.js';
import type { ChatInput, ChatMessage, ImageLimit, Message } from '../models/messages.js';
import { isPythonWhitespace } from '../tokenizer/python-strings.js';
import { toChatInput, type MediaRequest } from './chat-input.js';
import { resolveDecoding, type ChatDefaults, type DecodingSettings } from './decoding.js';

/** What the chat layer needs from a model family. */
export interface ChatModel<P extends { ids: number[] } = { ids: number[] }> {
  readonly chatDefaults: ChatDefaults;
  /** What the upstream chat.py's OmniLMMChat asks this model for (sampling, with its own overrides). */
  readonly chatPySettings: DecodingSettings;
  readonly bosTokenId: number;
  /** Every id that ends an answer (generation_config.json's eos_token_id). */
  readonly eosTokenIds: readonly number[];
  /** Whose beam search the family's official code runs (transformers 4.36 or 5). */
  readonly beamSearchVersion: BeamSearchVersion;
  /**
   * How the streamed answer follows decodeAnswer: ids it leaves out beyond the detokenizer's own rules, and whether
   * the text is stripped as Python's str.strip() does.
   */
  readonly answerText: { readonly skipIds: readonly number[]; readonly strip: boolean };
  readonly maxBeams: number;
  readonly contextLength: number;
  /**
   * The fewest prompt positions any image takes, whatever its size: a request with more images than the context
   * holds at this rate is refused before any image is decoded (media-source.ts checkImageCount).
   */
  readonly minImageTokens: number;
  /**
   * The most images one conversation may hold by the family's own rule (one on MiniCPM-V 1.0/2.0 and OmniLMM-12B),
   * or null where only the context bounds them: more are refused before any image is decoded (checkImageCount).
   */
  readonly imageLimit: ImageLimit | null;
  /**
   * The prompt of one turn. The family checks what it supports and refuses the rest with an InvalidRequestError
   * that names the model (several images, video, thinking, a downsample mode, a system message).
   */
  prepare(input: ChatInput): P;
  /** The upstream form: text messages of the user and the assistant, and the image before the first one. */
  prepare(messages: readonly ChatMessage[], image: RgbImage | null): P;
  /**
   * prepare(input) in steps, where a family takes several images: the generator yields before each image's work
   * (hashing, resizing), and streamChat gives the event loop a turn there, so that an abort stops it between images.
   * Families without it are prepared in one go.
   */
  prepareInSteps?(input: ChatInput): Generator<void, P, undefined>;
  /**
   * Embeds the prompt and binds it to the decoder, reusing what the previous request left in the KV cache. `pause`
   * is awaited between the model runs this takes (image slices, prefill parts).
   */
  startPrompt(prompt: P, pause?: () => Promise<void>): Promise<PromptSequence>;
  decodeAnswer(newIds: readonly number[]): string;
  /** A streaming detokenizer for generated ids. */
  detokenizer(): { push(id: number): string; flush(): string };
  /** Token ids of a text as the chat path encodes it (BOS first). */
  tokenize(text: string): number[];
}

/** A prompt bound to the decoder. */
export interface PromptSequence extends LogitsModel {
  /** Leading prompt positions taken from the KV cache instead of being prefilled. */
  readonly reusedLength: number;
}

export interface ChatRequest extends DecodingSettings, MediaRequest {
  /** The conversation; content a string or parts (`{type: "text", text}`, `{type: "image"}`, `{type: "video"}`). */
  messages: readonly Message[];
  /** Strings that end the answer: it stops before the first one generated, and no part of it is streamed. */
  stop?: readonly string[];
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
  /** Prompt tokens taken from the KV cache of the previous request instead of being prefilled again. */
  cachedTokens: number;
  /**
   * Seconds from the request to the first token's logits (image encoding, embedding and prefill), and from there to
   * the end (the decode steps after the first token).
   */
  seconds: { prompt: number; decode: number };
}

/**
 * Streams the answer's text; the generator's return value is the whole result. Between model calls the event loop
 * gets a turn, so timers and messages (an abort among them) are handled while an answer is generated.
 */
export async function* streamChat(model: ChatModel, request: ChatRequest): AsyncGenerator<string, ChatResult, undefined> {
  const started = performance.now();
  const decoding = resolveDecoding(request, model.chatDefaults);
  const stops = checkStops(request.stop);
  if (decoding.numBeams > model.maxBeams) {
    throw new InvalidRequestError(`${decoding.numBeams} beams asked for, but the model was loaded for at most ${model.maxBeams}`);
  }
  if (decoding.maxNewTokens > model.contextLength) {
    throw new InvalidRequestError(
      `at most ${model.contextLength} new tokens fit the model's context (prompt and answer together), ${decoding.maxNewTokens} were asked for`,
    );
  }
  const input = toChatInput(request.messages, request);
  const pause = pauseFor(request.signal);
  const prompt = model.prepareInSteps ? await pausingBetweenSteps(model.prepareInSteps(input), pause) : model.prepare(input);
  const maxNewTokens = Math.min(decoding.maxNewTokens, model.contextLength - prompt.ids.length);
  if (maxNewTokens < 1) {
    throw new ContextFullError(`the prompt has ${prompt.ids.length} tokens and fills the ${model.contextLength}-token context`);
  }
  request.signal?.throwIfAborted();
  const sequence = await model.startPrompt(prompt, pause);
  const options = {
    ...decoding,
    maxNewTokens,
    bosTokenId: model.bosTokenId,
    eosTokenId: model.eosTokenIds,
    beamSearchVersion: model.beamSearchVersion,
    signal: request.signal,
  };
  let prefilled: number | null = null;
  const steps = pausingBeforeCalls(sequence, pause, () => (prefilled = performance.now()));
  const outputIds: number[] = [];
  const result = (text: string, stopped: boolean): ChatResult => ({
    text,
    promptIds: prompt.ids,
    outputIds,
    finishReason: stopped || model.eosTokenIds.includes(outputIds[outputIds.length - 1]!) ? 'stop' : 'length',
    cachedTokens: sequence.reusedLength,
    seconds: {
      prompt: ((prefilled ?? performance.now()) - started) / 1000,
      decode: prefilled === null ? 0 : (performance.now() - prefilled) / 1000,
    },
  });
  if (decoding.numBeams > 1) {
    outputIds.push(...(await beamSearch(steps, options)).ids);
    const answer = model.decodeAnswer(outputIds);
    const at = firstStop(answer, stops);
    const text = at < 0 ? answer : model.answerText.strip ? stripEnd(answer.slice(0, at)) : answer.slice(0, at);
    if (text) yield text;
    return result(text, at >= 0);
  }
  const stopper = new StopStream(stops);
  const stripper = model.answerText.strip ? new StripStream() : null;
  const strip = (text: string) => (stripper ? stripper.push(text) : text);
  const detok = model.detokenizer();
  let streamed = '';
  for await (const id of generate(steps, options)) {
    outputIds.push(id);
    if (model.answerText.skipIds.includes(id)) continue;
    const chunk = strip(stopper.push(detok.push(id)));
    streamed += chunk;
    if (chunk) yield chunk;
    if (stopper.stopped) return result(streamed, true);
  }
  const tail = strip(stopper.push(detok.flush()) + stopper.flush());
  if (tail) yield tail;
  return result(stopper.stopped ? streamed + tail : model.decodeAnswer(outputIds), stopper.stopped);
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

/**
 * A turn of the event loop (ONNX Runtime's run blocks the thread until it returns), after which an aborted signal
 * stops the work before the next model run.
 */
function pauseFor(signal: AbortSignal | undefined): () => Promise<void> {
  return async () => {
    await nextMacrotask();
    signal?.throwIfAborted();
  };
}

/** Runs the steps to their end, awaiting `pause` before each. */
async function pausingBetweenSteps<T>(steps: Generator<void, T, undefined>, pause: () => Promise<void>): Promise<T> {
  for (;;) {
    await pause();
    const next = steps.next();
    if (next.done) return next.value;
  }
}

/** The sequence with `pause` before each model call. */
function pausingBeforeCalls(sequence: LogitsModel, pause: () => Promise<void>, onPrefilled: () => void): LogitsModel {
  return {
    vocabSize: sequence.vocabSize,
    prefill: async () => {
      await pause();
      const logits = await sequence.prefill();
      onPrefilled();
      return logits;
    },
    step: async (tokens, parents) => {
      await pause();
      return sequence.step(tokens, parents);
    },
  };
}

function checkStops(stop: readonly string[] | undefined): readonly string[] {
  if (stop === undefined) return [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || s === '')) {
    throw new InvalidRequestError('stop must be a list of non-empty strings');
  }
  return stop;
}

/** Where the earliest stop string starts in `text`, or -1. */
function firstStop(text: string, stops: readonly string[]): number {
  let first = -1;
  for (const stop of stops) {
    const at = text.indexOf(stop);
    if (at >= 0 && (first < 0 || at < first)) first = at;
  }
  return first;
}

function stripEnd(text: string): string {
  let end = text.length;
  while (end > 0 && isPythonWhitespace(text[end - 1]!)) end--;
  return text.slice(0, end);
}

/**
 * Cuts a text stream before the first stop string. What could still become a stop string (the longest end of the
 * text that begins one) is held back until the next text decides it, so no part of a stop string is ever shown.
 */
class StopStream {
  stopped = false;
  private held = '';

  constructor(private readonly stops: readonly string[]) {}

  push(text: string): string {
    if (this.stopped) return '';
    const buffer = this.held + text;
    const at = firstStop(buffer, this.stops);
    if (at >= 0) {
      this.stopped = true;
      this.held = '';
      return buffer.slice(0, at);
    }
    let keep = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, buffer.length); n > keep; n--) {
        if (buffer.endsWith(stop.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.held = buffer.slice(buffer.length - keep);
    return buffer.slice(0, buffer.length - keep);
  }

  /** The held-back text once the stream has ended without a stop string. */
  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }
}
