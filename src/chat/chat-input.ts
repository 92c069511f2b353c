// A chat request's inputs, checked and put into the one form every family receives (ChatInput): the messages as
// parts with each image and the video in its place. Family-neutral: what a family cannot take, it refuses itself.

import { describeJson, InvalidRequestError } from '../errors.js';
import type { RgbImage } from '../image/index.js';
import {
  checkDownsampleMode,
  checkVideoOptions,
  parseConversation,
  placeMedia,
  type ChatInput,
  type DownsampleMode,
  type Message,
  type PickedFrames,
  type VideoFrames,
} from '../models/messages.js';

/** What a request may carry besides the messages. */
export interface MediaRequest {
  /** One image (the upstream API's `image`); give this or `images`. */
  image?: RgbImage | null;
  /** Several images, one per image part of the messages, in order. */
  images?: readonly RgbImage[];
  video?: VideoFrames | null;
  /** left out: the model's default (16x for MiniCPM-V 4.6). */
  downsampleMode?: DownsampleMode;
  /** Think before answering (MiniCPM-V 4.6); default false. */
  thinking?: boolean;
}

/** The request's messages and media as a ChatInput, or an InvalidRequestError that says what to fix. */
export function toChatInput(messages: readonly Message[], media: MediaRequest): ChatInput {
  const images = imagesOf(media);
  const video = media.video ?? null;
  if (video) checkVideo(video);
  if (media.thinking !== undefined && typeof media.thinking !== 'boolean') {
    throw new InvalidRequestError(`thinking must be true or false, got ${JSON.stringify(media.thinking)}`);
  }
  const downsampleMode = checkDownsampleMode(media.downsampleMode);
  return {
    messages: placeMedia(parseConversation(messages), images.length, video ? 1 : 0),
    images,
    video,
    ...(downsampleMode ? { downsampleMode } : {}),
    thinking: media.thinking ?? false,
  };
}

function imagesOf(media: MediaRequest): readonly RgbImage[] {
  if (media.images !== undefined && media.images !== null) {
    if (media.image) throw new InvalidRequestError('give either image or images, not both');
    if (!Array.isArray(media.images)) throw new InvalidRequestError('images must be a list of images');
    media.images.forEach((image, i) => checkRgbImage(image, `images[${i}]`));
    return media.images;
  }
  if (!media.image) return [];
  checkRgbImage(media.image, 'image');
  return [media.image];
}

/**
 * Something shaped like pixels. Encoded bytes were decoded before this (loadMedia), so anything else here is the wrong
 * kind of value (a path, an ArrayBuffer, a Blob), refused before a family reads it. The pixel data itself is checked
 * where a family first reads it (imageKey), image by image, so that an aborted request reads no image after the abort.
 */
function checkRgbImage(image: unknown, what: string): asserts image is RgbImage {
  const { width, height } = (typeof image === 'object' && image !== null ? image : {}) as Partial<RgbImage>;
  if (typeof width !== 'number' || typeof height !== 'number') {
    throw new InvalidRequestError(
      `${what} must be an image file's bytes (a Uint8Array, e.g. what readFile returns) or RGB pixels {width, height, data}, ` +
        `got ${describeValue(image)}`,
    );
  }
}

/** A wrong image for a message: a string or plain object as itself (a path, most likely), another object by its class. */
function describeValue(value: unknown): string {
  const className = typeof value === 'object' && value !== null ? value.constructor?.name : undefined;
  return className && className !== 'Object' ? `a value of type ${className}` : describeJson(value);
}

/** Frames: at least one, all of one size; fps: a positive number; `picked`: one ascending index per frame. */
function checkVideo(video: VideoFrames): void {
  if (!Array.isArray(video.frames) || video.frames.length === 0) throw new InvalidRequestError('the video has no frames: give at least one');
  video.frames.forEach((frame, i) => checkRgbImage(frame, `video frame ${i}`));
  const [first] = video.frames as [RgbImage];
  const odd = video.frames.findIndex((f) => f.width !== first.width || f.height !== first.height);
  if (odd >= 0) {
    const f = video.frames[odd]!;
    throw new InvalidRequestError(`the video's frames must all have one size: frame 0 is ${first.width}x${first.height}, frame ${odd} ${f.width}x${f.height}`);
  }
  if (typeof video.fps !== 'number' || !Number.isFinite(video.fps) || video.fps <= 0) {
    throw new InvalidRequestError(`the video's fps must be a positive number, got ${String(video.fps)}`);
  }
  checkVideoOptions(video);
  if (video.picked !== undefined) checkPicked(video.picked, video.frames.length);
}

function checkPicked({ frameCount, indices }: PickedFrames, framesGiven: number): void {
  if (!Number.isSafeInteger(frameCount) || frameCount < 1) {
    throw new InvalidRequestError(`the video's picked.frameCount must be a positive integer, got ${String(frameCount)}`);
  }
  if (!Array.isArray(indices) || indices.length !== framesGiven) {
    throw new InvalidRequestError(`the video's picked.indices must hold one index per frame given (${framesGiven})`);
  }
  indices.forEach((index, i) => {
    if (!Number.isSafeInteger(index) || index < (i === 0 ? 0 : indices[i - 1]! + 1) || index >= frameCount) {
      throw new InvalidRequestError(`the video's picked.indices must ascend from 0 to below picked.frameCount (${frameCount}), got ${String(index)} at ${i}`);
    }
  });
}
