// POST /v1/chat/completions: validate, fetch the images and check their headers, wait for a turn, generate (the
// engine decodes the images), answer as one JSON object or as server-sent events. A client that goes away aborts its
// request wherever it is.
//
// A streamed answer's headers go out with its first chunk, so an error raised before any text (a prompt that fills
// the context, say) still reaches the client as an HTTP error; later errors arrive as one `data: {"error": …}` event.
// An answer's think part (reasoning.ts) goes out as `reasoning_content` apart from `content`.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ChatResult } from '../chat/chat.js';
import type { Engine, EngineInfo, EngineRequest } from '../chat/engine-types.js';
import { imageCountRefusal } from '../chat/media-source.js';
import { ReasoningStream, splitReasoning, type AnswerDelta } from '../chat/reasoning.js';
import { ImageTooLargeError } from '../errors.js';
import { readImageHeader } from '../image/index.js';
import { ApiError, badRequest, engineStopped, errorBody, isAbortError, sendError, toApiError, tooLarge } from './api-error.js';
import { readJsonBody } from './body.js';
import { parseChatCompletionRequest, type ChatCompletionRequest, type ImageSource } from './chat-request.js';
import type { GenerationQueue, Place } from './queue.js';
import { fetchRemoteImage } from './remote-image.js';

export interface CompletionLimits {
  maxBodyBytes: number;
  maxImagePixels: number;
  allowRemoteImages: boolean;
  remoteImageTimeoutMs: number;
}

export interface CompletionContext {
  engine: Engine;
  queue: GenerationQueue;
  limits: CompletionLimits;
  log: (line: string) => void;
  /** Aborted when the server closes. */
  closing: AbortSignal;
}

export async function handleChatCompletion(req: IncomingMessage, res: ServerResponse, ctx: CompletionContext): Promise<void> {
  const client = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) client.abort(new DOMException('the client closed the connection', 'AbortError'));
  });
  const signal = AbortSignal.any([client.signal, ctx.closing]);
  let place: Place | null = null;
  try {
    const body = await readJsonBody(req, res, ctx.limits.maxBodyBytes);
    const stopped = engineStoppedError(ctx);
    if (stopped) throw stopped;
    const parsed = parseChatCompletionRequest(body);
    checkAnswerLength(body, parsed, ctx.engine.info.contextLength);
    checkBeamCount(parsed, ctx.engine.info.maxBeams);
    checkImageCount(parsed, ctx.engine.info);
    const images: Uint8Array[] = [];
    for (const source of parsed.images) images.push(await fetchImageBytes(source, ctx.limits, signal));
    // The request's place in the arrival order: once its body (and remote images) is in, before the image check.
    place = ctx.queue.join();
    for (const bytes of images) {
      // A client that has gone frees its place now, not after the rest of its images.
      signal.throwIfAborted();
      await checkImage(bytes, ctx.limits);
    }
    const request: EngineRequest = { messages: parsed.messages, images, ...parsed.settings, thinking: parsed.thinking };
    if (parsed.downsampleMode) request.downsampleMode = parsed.downsampleMode;
    if (parsed.stop.length > 0) request.stop = parsed.stop;
    const release = await place.turn(signal);
    try {
      const answer = new Answer(res, ctx.engine.info.modelId, parsed);
      const stream = ctx.engine.stream(request, signal);
      for (;;) {
        const next = await stream.next();
        if (next.done) {
          answer.finish(next.value);
          break;
        }
        answer.push(next.value);
      }
    } finally {
      release();
    }
  } catch (err) {
    if (isAbortError(err) && (signal.aborted || res.destroyed)) return;
    // An engine that stopped while the request waited or ran fails it with its own error: the client gets the 503.
    const error = (!(err instanceof ApiError) && engineStoppedError(ctx)) || toApiError(err, ctx.log);
    if (res.headersSent) endStreamWithError(res, error);
    else sendError(res, error);
  } finally {
    place?.leave();
  }
}

/** The 503 once the engine cannot answer (its worker has stopped, or it was closed), why in the log; else null. */
function engineStoppedError({ engine, log }: CompletionContext): ApiError | null {
  const why = engine.unavailable;
  if (!why) return null;
  log(`the engine cannot answer: ${why.name}: ${why.message}`);
  return engineStopped();
}

/** A length no answer can reach is refused (as OpenAI does), not silently cut to what the context holds. */
function checkAnswerLength(body: unknown, parsed: ChatCompletionRequest, contextLength: number): void {
  const asked = parsed.settings.maxNewTokens;
  if (asked === undefined || asked <= contextLength) return;
  const field = (body as Record<string, unknown>).max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  throw badRequest(`"${field}" is ${asked}, more than the model's context of ${contextLength} tokens holds (prompt and answer together)`, field);
}

/** More beams than the model was loaded for is refused before the request waits for its turn. */
function checkBeamCount(parsed: ChatCompletionRequest, maxBeams: number): void {
  const asked = parsed.settings.numBeams ?? 1;
  if (asked <= maxBeams) return;
  throw badRequest(`"num_beams" is ${asked}, more than the ${maxBeams} the model was loaded for: ask for at most ${maxBeams}`, 'num_beams');
}

/**
 * More images than the model takes or than its context could hold are refused before any is fetched or decoded, in
 * the engines' words (imageCountRefusal), naming "messages".
 */
function checkImageCount(parsed: ChatCompletionRequest, info: EngineInfo): void {
  const refusal = imageCountRefusal({ images: parsed.images }, info);
  if (refusal) throw badRequest(refusal.message, 'messages');
}

/** The image's bytes: from its data: URL, or fetched (only when the server allows remote images). */
async function fetchImageBytes(source: ImageSource, limits: CompletionLimits, signal: AbortSignal): Promise<Uint8Array> {
  if (source.kind === 'data') return source.bytes;
  if (!limits.allowRemoteImages) {
    throw badRequest('image URLs are not fetched by this server (start it with --allow-remote-images): send the image as a base64 data: URL', 'messages');
  }
  return fetchRemoteImage(source.url, { maxBytes: limits.maxBodyBytes, timeoutMs: limits.remoteImageTimeoutMs, signal });
}

/**
 * Checks the image's header (a format we read, a size within the pixel limit) before the request waits for its
 * turn. Its pixels are decoded once, by the engine: a body corrupt past the header is refused there (ImageError, 400).
 */
async function checkImage(bytes: Uint8Array, limits: CompletionLimits): Promise<void> {
  try {
    await readImageHeader(bytes, { maxPixels: limits.maxImagePixels });
  } catch (err) {
    if (err instanceof ImageTooLargeError) {
      throw tooLarge(`${err.summary}: send a smaller image`, 'messages');
    }
    throw err;
  }
}

type FinishReason = 'stop' | 'length';

/** Writes one answer in the wire format the client asked for. */
class Answer {
  private readonly id = `chatcmpl-${randomUUID()}`;
  private readonly created = Math.floor(Date.now() / 1000);
  private started = false;
  private text = '';
  private readonly reasoning: ReasoningStream;

  constructor(
    private readonly res: ServerResponse,
    private readonly model: string,
    private readonly request: ChatCompletionRequest,
  ) {
    this.reasoning = new ReasoningStream(request.thinking);
  }

  push(chunk: string): void {
    if (!this.request.stream) {
      this.text += chunk;
      return;
    }
    this.startStream();
    this.sendDelta(this.reasoning.push(chunk));
  }

  finish(result: ChatResult): void {
    const finishReason: FinishReason = result.finishReason;
    const usage = {
      prompt_tokens: result.promptIds.length,
      completion_tokens: result.outputIds.length,
      total_tokens: result.promptIds.length + result.outputIds.length,
      prompt_tokens_details: { cached_tokens: result.cachedTokens },
    };
    if (!this.request.stream) {
      const { reasoning, content } = splitReasoning(this.text, this.request.thinking);
      const message = { role: 'assistant', content, ...(reasoning ? { reasoning_content: reasoning } : {}) };
      sendJson(this.res, 200, {
        id: this.id,
        object: 'chat.completion',
        created: this.created,
        model: this.model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason }],
        usage,
      });
      return;
    }
    this.startStream();
    this.sendDelta(this.reasoning.flush());
    this.sendChunk({}, finishReason);
    if (this.request.includeUsage) this.sendEvent({ ...this.envelope(), choices: [], usage });
    this.res.end('data: [DONE]\n\n');
  }

  private startStream(): void {
    if (this.started) return;
    this.started = true;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    this.sendChunk({ role: 'assistant', content: '' }, null);
  }

  private envelope() {
    return { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model };
  }

  /** One chunk with what the text added to the reasoning and to the content (none when it added nothing yet). */
  private sendDelta({ reasoning, content }: AnswerDelta): void {
    if (!reasoning && !content) return;
    this.sendChunk({ ...(reasoning ? { reasoning_content: reasoning } : {}), ...(content ? { content } : {}) }, null);
  }

  private sendChunk(delta: { role?: 'assistant'; content?: string; reasoning_content?: string }, finishReason: FinishReason | null): void {
    this.sendEvent({ ...this.envelope(), choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }] });
  }

  private sendEvent(data: unknown): void {
    this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }
}

function endStreamWithError(res: ServerResponse, error: ApiError): void {
  if (res.destroyed || res.writableEnded) return;
  res.end(`data: ${JSON.stringify(errorBody(error))}\n\n`);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
