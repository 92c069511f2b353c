// What a chat turn gives a model: the conversation (the upstream text format, or the official chat-template form with
// content parts), its images and video, and the switches some families have (downsample mode, thinking).

import { InvalidRequestError } from '../errors.js';
import type { RgbImage } from '../image/index.js';

/** The upstream format of MiniCPM-V 1.0/2.0 and OmniLMM-12B (chat.py): a text message of the user or the assistant. */
export interface ChatMessage {
  role: 'user' | 'assistant';
  content: string;
}

export type Role = 'system' | 'user' | 'assistant';

/** A part of a message's content, as the official chat templates take it; media parts take the request's media in order. */
export type ContentPart = { type: 'text'; text: string } | { type: 'image' } | { type: 'video' };

/** A message whose content is a string or a list of parts. */
export interface Message {
  role: Role;
  content: string | readonly ContentPart[];
}

/** A message with its content as parts (a string content is one text part). */
export interface PartsMessage {
  role: Role;
  content: readonly ContentPart[];
}

/** How many visual tokens MiniCPM-V 4.6 keeps per 14×14 patch group: 16x merges more, 4x keeps four times as many. */
export type DownsampleMode = '16x' | '4x';
export const DOWNSAMPLE_MODES: readonly DownsampleMode[] = ['16x', '4x'];

/** The video processor's options (MiniCPM-V 4.6's names in camelCase); left out, the processor's defaults apply. */
export interface VideoOptions {
  /** Most frames sampled (max_num_frames). */
  maxNumFrames?: number;
  /** Frames per second stacked into one composite image; 1 stacks none (stack_frames). */
  stackFrames?: number;
  /** Most slices per frame (max_slice_nums). */
  maxSliceNums?: number;
  /** Side of one slice in pixels (scale_resolution). */
  scaleResolution?: number;
  /** Whether large frames are cut into slices (slice_mode). */
  sliceMode?: boolean;
  /** Whether each frame's placeholder starts with its index (use_image_id). */
  useImageId?: boolean;
}

/** A video as the model takes it: its frames in order and the rate they were taken at. */
export interface VideoFrames extends VideoOptions {
  frames: readonly RgbImage[];
  /** Frames per second of `frames`. */
  fps: number;
  /** Set when `frames` are only the frames the model keeps of a longer video (read with its VideoFramePicker). */
  picked?: PickedFrames;
}

/** Which frames of a video a list holds: the video's frame count, and the index of each frame of the list in it. */
export interface PickedFrames {
  frameCount: number;
  /** Ascending, one per frame given. */
  indices: readonly number[];
}

/**
 * Which frames of a video a model keeps: their indices, ascending, among `frameCount` frames taken at `fps`. A
 * reader given one stores only those.
 */
export type VideoFramePicker = (frameCount: number, fps: number) => number[];

/** How `inspect-image` asks a family to show an image. */
export interface InspectOptions {
  downsampleMode?: DownsampleMode;
}

/** One chat turn as a family receives it (ChatModel.prepare). */
export interface ChatInput {
  /** The conversation; every image and the video appear as parts, in the order of `images`. */
  messages: readonly PartsMessage[];
  /** One per image part, in order. */
  images: readonly RgbImage[];
  /** The video of the one video part, or null. */
  video: VideoFrames | null;
  /** undefined: the model's default. */
  downsampleMode?: DownsampleMode;
  /** Whether the model thinks before it answers (a `<think>` part). */
  thinking: boolean;
}

/** Checks the upstream message format (chat.py's JSON) and returns typed messages. */
export function parseMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidRequestError('messages must be a non-empty JSON array of {"role": "user"|"assistant", "content": string}');
  }
  return value.map((m, i) => {
    const msg = m as { role?: unknown; content?: unknown };
    if (!msg || typeof msg !== 'object' || (msg.role !== 'user' && msg.role !== 'assistant')) {
      throw new InvalidRequestError(`message ${i} must have "role" "user" or "assistant"`);
    }
    if (typeof msg.content !== 'string') throw new InvalidRequestError(`message ${i} must have a string "content"`);
    return { role: msg.role, content: msg.content };
  });
}

const ROLES: readonly Role[] = ['system', 'user', 'assistant'];

/**
 * Checks a conversation in either form (content a string or a list of `{"type": "text", "text"}`, `{"type":
 * "image"}`, `{"type": "video"}` parts) and returns it with every content as parts. A system message may only come
 * first and hold text; images and the video belong in user messages, and there is at most one video part.
 */
export function parseConversation(value: unknown): PartsMessage[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidRequestError(
      'messages must be a non-empty array of {"role": "system"|"user"|"assistant", "content": a string or a list of parts}',
    );
  }
  let videos = 0;
  return value.map((m: unknown, i): PartsMessage => {
    const msg = m as { role?: unknown; content?: unknown } | null;
    if (!msg || typeof msg !== 'object' || !ROLES.includes(msg.role as Role)) {
      throw new InvalidRequestError(`message ${i} must have "role" "system", "user" or "assistant"`);
    }
    const role = msg.role as Role;
    if (role === 'system' && i > 0) throw new InvalidRequestError(`message ${i}: a system message must be the first message`);
    const content = parseContent(msg.content, i);
    for (const part of content) {
      if (part.type === 'text') continue;
      if (role !== 'user') throw new InvalidRequestError(`message ${i}: ${part.type} parts belong in user messages, not in a ${role} message`);
      if (part.type === 'video' && ++videos > 1) throw new InvalidRequestError('the conversation has more than one video part: give one video');
    }
    return { role, content };
  });
}

function parseContent(content: unknown, i: number): ContentPart[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw new InvalidRequestError(`message ${i} must have a "content" that is a string or a list of parts`);
  return content.map((p: unknown, j): ContentPart => {
    const part = p as { type?: unknown; text?: unknown } | null;
    const where = `message ${i}, part ${j}`;
    if (!part || typeof part !== 'object') throw new InvalidRequestError(`${where} must be an object with a "type"`);
    if (part.type === 'text') {
      if (typeof part.text !== 'string') throw new InvalidRequestError(`${where}: "text" must be a string`);
      return { type: 'text', text: part.text };
    }
    if (part.type === 'image' || part.type === 'video') return { type: part.type };
    throw new InvalidRequestError(`${where}: "type" must be "text", "image" or "video", got ${JSON.stringify(part.type) ?? 'nothing'}`);
  });
}

/** A family's own bound on the images of one conversation, apart from what its context holds. */
export interface ImageLimit {
  /** The most images one conversation may hold. */
  most: number;
  /** The model's name, for the refusal ("MiniCPM-V 2.0"). */
  model: string;
}

/**
 * Why `count` images are more than `limit` allows (null: the family sets no limit of its own), or null when they are
 * not. The family's own check and the earlier one of the engines and the server (before any image is decoded) say this.
 */
export function imageLimitRefusal(limit: ImageLimit | null, count: number): string | null {
  if (limit === null || count <= limit.most) return null;
  const allowed = limit.most === 1 ? 'one image' : `at most ${limit.most} images`;
  return `${limit.model} takes ${allowed} per conversation, got ${count}: send ${allowed}`;
}

/** How many images a request gives, and whether it gives a video. */
export interface MediaCount {
  images: number;
  video: boolean;
}

/** How many image and video parts the conversation has. */
export function countMediaParts(messages: readonly PartsMessage[]): { images: number; videos: number } {
  let images = 0;
  let videos = 0;
  for (const message of messages) {
    for (const part of message.content) {
      if (part.type === 'image') images++;
      else if (part.type === 'video') videos++;
    }
  }
  return { images, videos };
}

/**
 * Gives the media their places. A conversation without image or video parts gets them at the start of its first
 * user message (the images in order, then the video); one with parts must have one image part per image and one
 * video part for a video.
 */
export function placeMedia(messages: readonly PartsMessage[], images: number, videos: number): PartsMessage[] {
  const parts = countMediaParts(messages);
  if (parts.images === 0 && parts.videos === 0) {
    if (images === 0 && videos === 0) return [...messages];
    const first = messages.findIndex((m) => m.role === 'user');
    if (first < 0) throw new InvalidRequestError('the conversation has no user message to hold the images or the video');
    const media: ContentPart[] = [...Array.from({ length: images }, () => ({ type: 'image' as const })), ...(videos ? [{ type: 'video' as const }] : [])];
    return messages.map((m, i) => (i === first ? { role: m.role, content: [...media, ...m.content] } : m));
  }
  if (parts.images !== images) {
    throw new InvalidRequestError(`the messages have ${plural(parts.images, 'image part')} but ${plural(images, 'image')} ${images === 1 ? 'was' : 'were'} given: give one image per image part, in order`);
  }
  if (parts.videos !== videos) {
    throw new InvalidRequestError(`the messages have ${plural(parts.videos, 'video part')} but ${plural(videos, 'video')} ${videos === 1 ? 'was' : 'were'} given: give the video for the video part`);
  }
  return [...messages];
}

/** The text parts of a content, joined by "\n" (media parts left out). */
export function textOf(content: readonly ContentPart[]): string {
  return content.flatMap((p) => (p.type === 'text' ? [p.text] : [])).join('\n');
}

/** The upstream form (text messages, the image before the first message) as a ChatInput. */
export function chatInputOf(messages: readonly ChatMessage[], image: RgbImage | null): ChatInput {
  const parts = messages.map((m): PartsMessage => ({ role: m.role, content: [{ type: 'text', text: m.content }] }));
  return { messages: placeMedia(parts, image ? 1 : 0, 0), images: image ? [image] : [], video: null, thinking: false };
}

/** Checks the video options: positive integers and booleans. */
export function checkVideoOptions(options: VideoOptions): void {
  for (const key of ['maxNumFrames', 'stackFrames', 'maxSliceNums', 'scaleResolution'] as const) {
    const v = options[key];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new InvalidRequestError(`video ${key} must be a positive integer, got ${String(v)}`);
  }
  for (const key of ['sliceMode', 'useImageId'] as const) {
    const v = options[key];
    if (v !== undefined && typeof v !== 'boolean') throw new InvalidRequestError(`video ${key} must be true or false, got ${String(v)}`);
  }
}

/** Checks a downsample mode given by a caller. */
export function checkDownsampleMode(mode: unknown): DownsampleMode | undefined {
  if (mode === undefined || mode === null) return undefined;
  if (!DOWNSAMPLE_MODES.includes(mode as DownsampleMode)) {
    throw new InvalidRequestError(`downsample mode must be ${DOWNSAMPLE_MODES.map((m) => `"${m}"`).join(' or ')}, got ${JSON.stringify(mode)}`);
  }
  return mode as DownsampleMode;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
