// The body of POST /v1/chat/completions (OpenAI's wire format, snake_case) → what the engine needs. Every check
// names the offending field, so that a client sees what to fix.
//
// Decoding: `num_beams` > 1 → beam search; else `temperature: 0` → greedy; else sampling. Fields a client leaves
// out take the model's chat() defaults (sampling: temperature 0.7, top_p 0.8, top_k 100, repetition_penalty 1.05;
// beam search: repetition_penalty 1.2), not OpenAI's.
//
// Images: any number of `image_url` parts in user messages, in order; each becomes an image part of the message, so
// the model sees it where it was. A system (or developer) message is passed on; whether the model takes several
// images, an image after the first message or a system message is the model's to say (a 400 naming the model).
// Extensions: `downsample_mode` ("16x" | "4x"), `thinking` (or `chat_template_kwargs.enable_thinking`).

import type { DecodingSettings } from '../chat/decoding.js';
import type { EngineMessage } from '../chat/engine-types.js';
import { describeJson } from '../errors.js';
import { DOWNSAMPLE_MODES, type ContentPart, type DownsampleMode } from '../models/messages.js';
import { badRequest } from './api-error.js';

/** Where an image comes from. */
export type ImageSource = { kind: 'data'; bytes: Uint8Array } | { kind: 'remote'; url: string };

export interface ChatCompletionRequest {
  messages: EngineMessage[];
  /** One per image part of the messages, in order. */
  images: ImageSource[];
  settings: DecodingSettings;
  downsampleMode?: DownsampleMode;
  /** Whether the model thinks first; its think part then comes back as `reasoning_content`. */
  thinking: boolean;
  /** Strings that end the answer (left out of it). */
  stop: string[];
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the token counts. */
  includeUsage: boolean;
}

const MAX_STOP_STRINGS = 4;
const MAX_BEAMS = 16;

type Body = Record<string, unknown>;

export function parseChatCompletionRequest(body: unknown): ChatCompletionRequest {
  if (!isObject(body)) throw badRequest('the request body must be a JSON object');
  rejectUnsupported(body);
  if (body.model !== undefined && typeof body.model !== 'string') throw badRequest('"model" must be a string', 'model');
  const n = optionalInteger(body, 'n', 1, Number.MAX_SAFE_INTEGER);
  if (n !== undefined && n !== 1) throw badRequest('only "n": 1 is supported (one answer per request)', 'n');
  const stream = optionalBoolean(body, 'stream') ?? false;
  let includeUsage = false;
  if (body.stream_options !== undefined && body.stream_options !== null) {
    if (!stream) throw badRequest('"stream_options" is only allowed with "stream": true', 'stream_options');
    if (!isObject(body.stream_options)) throw badRequest('"stream_options" must be an object', 'stream_options');
    includeUsage = optionalBoolean(body.stream_options, 'include_usage', 'stream_options.include_usage') ?? false;
  }
  const { messages, images } = parseMessages(body.messages);
  const downsampleMode = parseDownsampleMode(body.downsample_mode);
  return {
    messages, images, settings: parseDecoding(body), ...(downsampleMode ? { downsampleMode } : {}), thinking: parseThinking(body),
    stop: parseStop(body.stop), stream, includeUsage,
  };
}

function parseDownsampleMode(value: unknown): DownsampleMode | undefined {
  if (value === undefined || value === null) return undefined;
  if (!DOWNSAMPLE_MODES.includes(value as DownsampleMode)) {
    throw badRequest(`"downsample_mode" must be ${DOWNSAMPLE_MODES.map((m) => `"${m}"`).join(' or ')}, got ${show(value)}`, 'downsample_mode');
  }
  return value as DownsampleMode;
}

/** `thinking`, or vLLM's `chat_template_kwargs.enable_thinking`; they must agree when both are given. */
function parseThinking(body: Body): boolean {
  const thinking = optionalBoolean(body, 'thinking');
  let enable: boolean | undefined;
  if (body.chat_template_kwargs !== undefined && body.chat_template_kwargs !== null) {
    if (!isObject(body.chat_template_kwargs)) throw badRequest('"chat_template_kwargs" must be an object', 'chat_template_kwargs');
    enable = optionalBoolean(body.chat_template_kwargs, 'enable_thinking', 'chat_template_kwargs.enable_thinking');
  }
  if (thinking !== undefined && enable !== undefined && thinking !== enable) {
    throw badRequest('"thinking" and "chat_template_kwargs.enable_thinking" disagree: give one of them', 'thinking');
  }
  return thinking ?? enable ?? false;
}

function parseDecoding(body: Body): DecodingSettings {
  const maxNewTokens =
    optionalInteger(body, 'max_completion_tokens', 1, Number.MAX_SAFE_INTEGER) ?? optionalInteger(body, 'max_tokens', 1, Number.MAX_SAFE_INTEGER);
  const temperature = optionalNumber(body, 'temperature', 0, 2);
  const topP = optionalNumber(body, 'top_p', 0, 1);
  const topK = optionalInteger(body, 'top_k', 0, Number.MAX_SAFE_INTEGER);
  const repetitionPenalty = optionalNumber(body, 'repetition_penalty', Number.MIN_VALUE, Number.MAX_VALUE);
  const numBeams = optionalInteger(body, 'num_beams', 1, MAX_BEAMS);
  const seed = optionalInteger(body, 'seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  if (numBeams !== undefined && numBeams > 1) return { decoding: 'beam', numBeams, repetitionPenalty, maxNewTokens };
  if (temperature === 0) return { decoding: 'greedy', repetitionPenalty, maxNewTokens };
  return { decoding: 'sample', temperature, topP, topK, repetitionPenalty, seed, maxNewTokens };
}

/** OpenAI features this model cannot honour are refused rather than silently ignored. */
function rejectUnsupported(body: Body): void {
  for (const field of ['tools', 'functions', 'tool_choice', 'function_call', 'audio', 'modalities', 'prediction']) {
    if (!asksForNothingMore(field, body[field])) throw badRequest(`"${field}" is not supported by this server`, field);
  }
  if (body.logprobs === true || (body.top_logprobs !== undefined && body.top_logprobs !== null)) {
    throw badRequest('log-probabilities are not supported by this server', body.logprobs === true ? 'logprobs' : 'top_logprobs');
  }
  for (const field of ['frequency_penalty', 'presence_penalty']) {
    if (body[field] !== undefined && body[field] !== null && body[field] !== 0) {
      throw badRequest(`"${field}" is not supported: use the "repetition_penalty" extension instead`, field);
    }
  }
  if (isObject(body.logit_bias) && Object.keys(body.logit_bias).length > 0) throw badRequest('"logit_bias" is not supported', 'logit_bias');
  if (isObject(body.response_format) && body.response_format.type !== 'text') {
    throw badRequest('only the "text" response format is supported', 'response_format');
  }
}

/** Whether a value of one of those fields asks for no more than a plain text answer: none, no tools, text output. */
function asksForNothingMore(field: string, value: unknown): boolean {
  if (value === undefined || value === null || value === 'none') return true;
  if (field === 'tools' || field === 'functions') return Array.isArray(value) && value.length === 0;
  if (field === 'modalities') return Array.isArray(value) && value.length === 1 && value[0] === 'text';
  return false;
}

function parseMessages(value: unknown): { messages: EngineMessage[]; images: ImageSource[] } {
  if (!Array.isArray(value) || value.length === 0) {
    throw badRequest('"messages" must be a non-empty array of {"role": "system"|"user"|"assistant", "content": …}', 'messages');
  }
  const images: ImageSource[] = [];
  const messages = value.map((raw, i): EngineMessage => {
    const param = `messages[${i}]`;
    if (!isObject(raw)) throw badRequest(`${param} must be an object with "role" and "content"`, param);
    // OpenAI's newer name for the system role.
    const role = raw.role === 'developer' ? 'system' : raw.role;
    if (role !== 'system' && role !== 'user' && role !== 'assistant') {
      throw badRequest(`${param}.role must be "system", "user" or "assistant", got ${show(raw.role)}`, `${param}.role`);
    }
    if (role === 'system' && i > 0) throw badRequest(`${param}: a system message must be the first message`, `${param}.role`);
    const content = parseContent(raw.content, param, role, images);
    return { role, content };
  });
  return { messages, images };
}

/** The content as parts (a string stays a string); each `image_url` becomes an image part and its source goes to `images`. */
function parseContent(content: unknown, param: string, role: EngineMessage['role'], images: ImageSource[]): string | ContentPart[] {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) {
    throw badRequest(`${param}.content must be a string or an array of content parts`, `${param}.content`);
  }
  return content.map((part: unknown, j): ContentPart => {
    const where = `${param}.content[${j}]`;
    if (!isObject(part)) throw badRequest(`${where} must be an object with a "type"`, where);
    if (part.type === 'text') {
      if (typeof part.text !== 'string') throw badRequest(`${where}.text must be a string`, `${where}.text`);
      return { type: 'text', text: part.text };
    }
    if (part.type === 'image_url' && role === 'user') {
      const url = isObject(part.image_url) ? part.image_url.url : undefined;
      if (typeof url !== 'string') throw badRequest(`${where}.image_url.url must be a string`, `${where}.image_url.url`);
      images.push(parseImageUrl(url, `${where}.image_url.url`));
      return { type: 'image' };
    }
    const allowed = role === 'user' ? '"text" or "image_url"' : '"text"';
    throw badRequest(`${where}.type must be ${allowed} in a ${role} message, got ${show(part.type)}`, `${where}.type`);
  });
}

/** A base64 `data:image/…` URL is decoded here; an http(s) URL is fetched later, if the server allows it. */
function parseImageUrl(url: string, param: string): ImageSource {
  // URL schemes and media types are case-insensitive (RFC 3986, RFC 2397).
  if (!/^data:/i.test(url)) {
    if (/^https?:\/\//i.test(url)) return { kind: 'remote', url };
    throw badRequest('image_url.url must be a base64 data: URL (data:image/png;base64,…) or an http(s) URL', param);
  }
  const comma = url.indexOf(',');
  const header = url.slice(5, comma < 0 ? undefined : comma).toLowerCase();
  if (comma < 0 || !header.endsWith(';base64')) throw badRequest('image data: URLs must be base64-encoded (data:image/png;base64,…)', param);
  if (!header.startsWith('image/')) {
    throw badRequest(`the data: URL holds "${header.slice(0, -';base64'.length) || 'no media type'}", not an image`, param);
  }
  const data = url.slice(comma + 1).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(data) || data.length % 4 === 1) throw badRequest('the image data: URL is not valid base64', param);
  const bytes = Buffer.from(data, 'base64');
  if (bytes.length === 0) throw badRequest('the image data: URL is empty', param);
  return { kind: 'data', bytes };
}

function parseStop(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string' && s.length > 0)) {
    throw badRequest('"stop" must be a non-empty string or an array of non-empty strings', 'stop');
  }
  if (list.length > MAX_STOP_STRINGS) throw badRequest(`"stop" takes at most ${MAX_STOP_STRINGS} strings`, 'stop');
  return list as string[];
}

function isObject(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalBoolean(body: Body, key: string, param = key): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badRequest(`"${param}" must be true or false, got ${show(v)}`, param);
  return v;
}

function optionalNumber(body: Body, key: string, min: number, max: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest(`"${key}" must be a number, got ${show(v)}`, key);
  if (v < min || v > max) throw badRequest(`"${key}" must be ${rangeText(min, max)}, got ${v}`, key);
  return v;
}

function optionalInteger(body: Body, key: string, min: number, max: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (!Number.isSafeInteger(v)) throw badRequest(`"${key}" must be an integer, got ${show(v)}`, key);
  if ((v as number) < min || (v as number) > max) throw badRequest(`"${key}" must be ${rangeText(min, max)}, got ${v}`, key);
  return v as number;
}

/** A client's value for an error message, cut short. */
function show(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  // JSON.parse reads 1e400 as Infinity, which JSON.stringify would show as null.
  return typeof value === 'number' ? String(value) : describeJson(value);
}

function rangeText(min: number, max: number): string {
  if (max >= Number.MAX_SAFE_INTEGER) return min === Number.MIN_VALUE ? 'above 0' : `at least ${min}`;
  if (min === Number.MIN_VALUE) return `above 0 and at most ${max}`;
  return `between ${min} and ${max}`;
}
