// Reading a chat request's images and video (Node only): images given as bytes or pixels; a video's frames given as
// pixels or image bytes, a folder of frame images (in name order, numbers by value), or a video file decoded by the system's
// ffmpeg into raw RGB frames (PPM) at a chosen rate. Given the model's VideoFramePicker, a folder or file is read for the
// frames the model keeps only.

import { spawn } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { formatBytes } from '../checkpoint/progress.js';
import { FileNotFoundError, InvalidRequestError, VideoError } from '../errors.js';
import { decodeImage, type RgbImage } from '../image/index.js';
import {
  checkVideoOptions,
  imageLimitRefusal,
  type ImageLimit,
  type PickedFrames,
  type VideoFramePicker,
  type VideoFrames,
  type VideoOptions,
} from '../models/messages.js';
import { imageKey, rememberedImageKey, rememberImageKey } from '../sha256.js';
// The frames' keys that readVideoPath computes are hashed by node:crypto.
import '../sha256-node.js';

/** A video as a request gives it: the frames, or a folder or file to read them from, and the processor's options. */
export interface VideoRequest extends VideoOptions {
  /** The frames in order, as pixels or encoded image bytes; give this or `file`. */
  frames?: readonly (RgbImage | Uint8Array)[];
  /** A folder of frame images (JPEG, PNG, WebP, GIF; read in name order, numbers by value) or a video file (decoded with ffmpeg). */
  file?: string;
  /**
   * Frames per second: the rate `frames` and a folder's frames were taken at (default 1: one frame a second); for a
   * video file, the rate it is decoded at (default `stackFrames`, else 1).
   */
  fps?: number;
  /** With `frames`: set when they are only the frames the model keeps of a longer video (as readVideoPath reads them). */
  picked?: PickedFrames;
}

/** How readVideoPath reads a folder or a video file. */
export interface VideoReadOptions {
  /** Frames per second of a folder's frames (default 1), or the rate a video file is decoded at (default `fileFps`). */
  fps?: number;
  /** The rate a video file is decoded at when `fps` is not given (default 1). */
  fileFps?: number;
  /** The frames the model keeps: only those are decoded and held (default: every frame). */
  pickFrames?: VideoFramePicker;
  /** Most bytes of RGB pixels the frames held may take (default 4 GiB). */
  maxBytes?: number;
  /**
   * Hold the frames' pixels in SharedArrayBuffers, so that a worker thread they are posted to shares them instead of
   * receiving a copy, and hash each frame once here (default false): the frames are meant to be sent with every turn
   * of a session, and the prompt-reuse key of pixels read this way is not computed again (see imageKey), here or in a
   * WorkerEngine's thread. The caller must then not write into the frames' pixels.
   */
  shared?: boolean;
}

/** The frames read of a video, and which of its frames they are. */
export interface ReadFrames {
  frames: RgbImage[];
  picked: PickedFrames;
}

/** A model's VideoFramePicker under a request's video options (LoadedModel.videoFramePicker). */
export type FramePickerOf = (options: VideoOptions) => VideoFramePicker | undefined;

const FRAME_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif']);
/** The fastest rate a video file is decoded at. */
const MAX_FILE_FPS = 120;
/** Most bytes of RGB pixels the frames kept of one video may take, unless VideoReadOptions.maxBytes says otherwise. */
const MAX_VIDEO_BYTES = 4 * 1024 ** 3;

/** A request's media as they may arrive: encoded image bytes or pixels, and a video to read. */
export interface MediaSource {
  image?: Uint8Array | RgbImage | null;
  images?: readonly (Uint8Array | RgbImage)[] | null;
  video?: VideoRequest | null;
}

/** What bounds the images of one prompt: the family's own limit, the context, and the fewest positions an image takes. */
export interface ImageRoom {
  imageLimit: ImageLimit | null;
  contextLength: number;
  minImageTokens: number;
}

/** The most images the context could hold: each takes at least minImageTokens positions, and the answer needs one. */
function imagesTheContextHolds({ contextLength, minImageTokens }: Pick<ImageRoom, 'contextLength' | 'minImageTokens'>): number {
  return Math.floor((contextLength - 1) / minImageTokens);
}

/** A request's images as they are counted, whatever their form (bytes, pixels, the server's URLs): one, or a list. */
export interface CountedImages {
  image?: unknown;
  images?: readonly unknown[] | null;
}

/**
 * Why the request cannot be taken, found before any image is fetched or decoded: more images than the family takes
 * (its imageLimit, with its own message) or than the model's context could hold whatever their sizes; null if neither.
 */
export function imageCountRefusal(source: CountedImages, room: ImageRoom): InvalidRequestError | null {
  const count = Array.isArray(source.images) ? source.images.length : source.image ? 1 : 0;
  const tooMany = imageLimitRefusal(room.imageLimit, count);
  if (tooMany) return new InvalidRequestError(tooMany);
  const most = imagesTheContextHolds(room);
  if (count <= most) return null;
  return new InvalidRequestError(
    `${count} images cannot fit the model's ${room.contextLength}-token context, where each takes at least ` +
      `${room.minImageTokens} tokens: give at most ${most}`,
  );
}

/** Throws imageCountRefusal's error, if any. */
export function checkImageCount(source: MediaSource, room: ImageRoom): void {
  const refusal = imageCountRefusal(source, room);
  if (refusal) throw refusal;
}

/** Image bytes decoded; pixels as they are. */
const toRgb = (image: Uint8Array | RgbImage): RgbImage | Promise<RgbImage> => (image instanceof Uint8Array ? decodeImage(image) : image);

/** Images decoded one after the other; an aborted `signal` stops before the next one. */
async function toRgbEach(images: readonly (Uint8Array | RgbImage)[], signal: AbortSignal | undefined): Promise<RgbImage[]> {
  const decoded: RgbImage[] = [];
  for (const image of images) {
    signal?.throwIfAborted();
    decoded.push(await toRgb(image));
  }
  return decoded;
}

/** How loadMedia reads: `signal` stops it between images; a video folder or file is read for the frames `framePickerOf` keeps. */
export interface MediaLoadOptions {
  signal?: AbortSignal;
  framePickerOf?: FramePickerOf;
}

/** The media decoded: images as pixels, the video as frames (a folder's or file's: those the model keeps). */
export async function loadMedia(
  source: MediaSource,
  options: MediaLoadOptions = {},
): Promise<{ image: RgbImage | null; images: RgbImage[] | undefined; video: VideoFrames | null }> {
  if (source.images !== undefined && source.images !== null && !Array.isArray(source.images)) {
    throw new InvalidRequestError('images must be a list of images');
  }
  return {
    image: source.image ? await toRgb(source.image) : null,
    images: source.images ? await toRgbEach(source.images, options.signal) : undefined,
    video: source.video ? await loadVideo(source.video, options) : null,
  };
}

/**
 * The request's video as frames the model takes: an aborted `signal` stops the decoding of given frames between them;
 * a folder or file is read for the frames `framePickerOf` keeps.
 */
export async function loadVideo(request: VideoRequest, { signal, framePickerOf }: MediaLoadOptions = {}): Promise<VideoFrames> {
  const { frames, file, fps, picked, ...options } = request;
  checkVideoOptions(options);
  if ((frames == null) === (file == null)) throw new InvalidRequestError('a video needs either "frames" or "file" (not both)');
  if (fps !== undefined && (typeof fps !== 'number' || !Number.isFinite(fps) || fps <= 0)) {
    throw new InvalidRequestError(`the video's fps must be a positive number, got ${String(fps)}`);
  }
  if (frames != null) {
    if (!Array.isArray(frames)) throw new InvalidRequestError('video frames must be a list of images');
    return { ...options, frames: await toRgbEach(frames, signal), fps: fps ?? 1, ...(picked != null && { picked }) };
  }
  if (picked != null) throw new InvalidRequestError('"picked" goes with "frames": a video "file" is read for the frames the model keeps');
  if (typeof file !== 'string') throw new InvalidRequestError('the video "file" must be a path');
  const pickFrames = framePickerOf?.(options);
  const read = await readVideoPath(file, { fps, fileFps: Math.max(1, options.stackFrames ?? 1), pickFrames });
  return { ...options, ...read };
}

/**
 * The frames of a folder (its image files in name order, taken at `fps`, default 1 a second) or of a video file
 * (decoded by ffmpeg at `fps` frames a second, default `fileFps`); with `pickFrames`, only those it keeps, and `picked`
 * says which they are.
 */
export async function readVideoPath(path: string, options: VideoReadOptions = {}): Promise<Pick<VideoFrames, 'frames' | 'fps' | 'picked'>> {
  const { fps, fileFps = 1, pickFrames, maxBytes = MAX_VIDEO_BYTES, shared = false } = options;
  const isFolder = await isVideoFolder(path);
  const rate = fps ?? (isFolder ? 1 : fileFps);
  const read = isFolder ? await readFrameFolder(path, rate, { pickFrames, maxBytes, shared }) : await decodeWithFfmpeg(path, rate, { pickFrames, maxBytes, shared });
  if (shared) for (const frame of read.frames) rememberImageKey(frame, imageKey(frame));
  return { frames: read.frames, fps: rate, ...(pickFrames && { picked: read.picked }) };
}

/** Whether the video at `path` is a folder of frames (else a file); neither, or nothing there, is a FileNotFoundError. */
async function isVideoFolder(path: string): Promise<boolean> {
  const info = await stat(path).catch(() => null);
  if (!info) throw new FileNotFoundError(`video not found: ${path}`);
  if (!info.isDirectory() && !info.isFile()) throw new FileNotFoundError(`video is neither a file nor a folder: ${path}`);
  return info.isDirectory();
}

/**
 * What readVideoPath would refuse before it reads a frame: nothing at `path`, or a video file with no ffmpeg to
 * decode it (it is started once, as `ffmpeg -version`). Quick, so that a caller can say it before slow work.
 */
export async function checkVideoPath(path: string): Promise<void> {
  if (await isVideoFolder(path)) return;
  const command = ffmpegCommand();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(command, ['-version'], { stdio: 'ignore' });
    child.once('error', (err: NodeJS.ErrnoException) => reject(ffmpegStartError(err, command, path)));
    child.once('spawn', () => child.once('close', () => resolve()));
  });
}

/**
 * The remembered keys (rememberImageKey) of a request's video frames, to go with the frames to a worker thread (a
 * structured clone of a frame is a new object, its pixels the same shared memory or a copy); undefined if none.
 */
export function rememberedFrameKeys(video: VideoRequest | null | undefined): (string | null)[] | undefined {
  // The request is not checked yet (the worker does that): anything but a list of frames has no keys.
  const frames: unknown = video?.frames;
  if (!Array.isArray(frames)) return undefined;
  const keys = frames.map((frame) => (isPixelFrame(frame) ? rememberedImageKey(frame) : null));
  return keys.some((key) => key !== null) ? keys : undefined;
}

/** On the worker's side: remembers the keys rememberedFrameKeys sent for the frames' clones. */
export function rememberFrameKeys(video: VideoRequest | null | undefined, keys: readonly (string | null)[]): void {
  const frames: unknown = video?.frames;
  if (!Array.isArray(frames)) return;
  frames.forEach((frame, i) => {
    const key = keys[i];
    if (key != null && isPixelFrame(frame)) rememberImageKey(frame, key);
  });
}

/** Whether a video frame is given as pixels (not as image bytes or something else). */
function isPixelFrame(frame: unknown): frame is RgbImage {
  return typeof frame === 'object' && frame !== null && !(frame instanceof Uint8Array) && (frame as RgbImage).data instanceof Uint8Array;
}

/**
 * Frame names in the order a numbered sequence means: runs of digits compare as numbers (`frame_2.png` before
 * `frame_10.png`, as ffmpeg's `frame_%d.png` writes them), everything else by code unit; zero-padded names keep the
 * plain text order.
 */
export function frameNameOrder(a: string, b: string): number {
  const parts = (name: string) => name.match(/\d+|\D+/g) ?? [];
  const [left, right] = [parts(a), parts(b)];
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const [x, y] = [left[i]!, right[i]!];
    if (x === y) continue;
    if (/^\d/.test(x) && /^\d/.test(y)) {
      const byValue = Number(BigInt(x) - BigInt(y));
      if (byValue !== 0) return Math.sign(byValue);
    }
    return x < y ? -1 : 1;
  }
  return left.length - right.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** The folder's image files in frame-name order (frameNameOrder), those `pickFrames` keeps decoded. */
async function readFrameFolder(folder: string, fps: number, options: Pick<VideoReadOptions, 'pickFrames' | 'maxBytes' | 'shared'>): Promise<ReadFrames> {
  const { pickFrames, maxBytes = MAX_VIDEO_BYTES, shared = false } = options;
  const names = (await readdir(folder, { withFileTypes: true }))
    .filter((e) => e.isFile() && FRAME_EXTENSIONS.has(extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort(frameNameOrder);
  if (names.length === 0) throw new VideoError(`the folder ${folder} has no frame images (JPEG, PNG, WebP or GIF files)`);
  const indices = pickFrames ? pickFrames(names.length, fps) : names.map((_, i) => i);
  const frames: RgbImage[] = [];
  let bytes = 0;
  for (const index of indices) {
    const frame = await decodeImage(await readFile(join(folder, names[index]!)));
    bytes += frame.data.length;
    if (bytes > maxBytes) throw new VideoError(`the frames kept of ${folder} hold more than ${formatBytes(maxBytes)} of pixels: use fewer or smaller frames`);
    if (shared) {
      const data = sharedPixels(frame.data.length);
      data.set(frame.data);
      frames.push({ ...frame, data });
    } else frames.push(frame);
  }
  return { frames, picked: { frameCount: names.length, indices } };
}

/** Pixel memory in a SharedArrayBuffer, which a worker thread it is posted to shares instead of copying. */
function sharedPixels(size: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(size));
}

/** The ffmpeg command ($OMNILMM_FFMPEG, else ffmpeg on the PATH). */
function ffmpegCommand(): string {
  return process.env.OMNILMM_FFMPEG || 'ffmpeg';
}

/**
 * Decodes a video file with ffmpeg into RGB frames at `fps` frames a second (its `fps` filter picks them). The filter
 * passes the frame at the clip's end instead of rounding it away (`eof_action=pass`), so a clip gets a frame for every
 * started 1/fps, as the official sampler keeps one frame per started second: at 1 fps a 4.4 s clip gives 5 frames, not
 * 4, and a 0.4 s clip 1, not none.
 *
 * With `pickFrames`, only the frames it chooses of them all are held. As the frames arrive, the first pass holds its
 * choice of the frames so far, while that choice takes in no frame it let go or passed over (so a clip the model keeps
 * one frame a second of is read once); from such a frame on, the pass only counts the frames, and a second pass holds
 * its choice of them all.
 */
export async function decodeWithFfmpeg(path: string, fps: number, options: Pick<VideoReadOptions, 'pickFrames' | 'maxBytes' | 'shared'> = {}): Promise<ReadFrames> {
  if (!(fps > 0 && fps <= MAX_FILE_FPS)) {
    throw new InvalidRequestError(`a video file is decoded at up to ${MAX_FILE_FPS} frames a second (faster only repeats frames), not ${fps}`);
  }
  const { pickFrames, maxBytes = MAX_VIDEO_BYTES, shared = false } = options;
  const pixels = shared ? sharedPixels : undefined;
  const held = new Map<number, RgbImage>();
  let heldBytes = 0;
  const hold = (index: number, frame: RgbImage) => {
    heldBytes += frame.data.length;
    if (heldBytes > maxBytes) {
      throw new VideoError(`the frames kept of ${path} at ${fps} fps hold more than ${formatBytes(maxBytes)} of pixels: give a lower fps, a shorter clip or a smaller video`);
    }
    held.set(index, frame);
  };
  const letGo = (index: number) => {
    heldBytes -= held.get(index)!.data.length;
    held.delete(index);
  };
  let holdingChoice = true;
  const frameCount = await runFfmpeg(path, fps, {
    wants(index) {
      if (!pickFrames) return true;
      if (!holdingChoice) return false;
      const choice = new Set(pickFrames(index + 1, fps));
      holdingChoice = [...choice].every((i) => i >= index || held.has(i));
      for (const i of held.keys()) if (!holdingChoice || !choice.has(i)) letGo(i);
      return holdingChoice && choice.has(index);
    },
    receive: hold,
    pixels,
  });
  if (frameCount === 0) throw new VideoError(`ffmpeg found no video frames in ${path}`);
  if (!holdingChoice) {
    const choice = new Set(pickFrames!(frameCount, fps));
    const again = await runFfmpeg(path, fps, { wants: (index) => choice.has(index), receive: hold, pixels });
    if (again !== frameCount) {
      throw new VideoError(`ffmpeg decoded ${path} into ${frameCount} frames, then into ${again} (did the file change meanwhile?): give it again`);
    }
  }
  return { frames: [...held.values()], picked: { frameCount, indices: [...held.keys()] } };
}

/** Runs ffmpeg over the file once, its frames at `fps` going to `sink`; the number of frames it decoded. */
function runFfmpeg(path: string, fps: number, sink: FrameSink): Promise<number> {
  const command = ffmpegCommand();
  const filter = `fps=${fps}:eof_action=pass`;
  const args = ['-nostdin', '-v', 'error', '-i', path, '-vf', filter, '-f', 'image2pipe', '-c:v', 'ppm', '-pix_fmt', 'rgb24', '-'];
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const parser = new PpmStream(sink);
    let stderr = '';
    let failed: Error | null = null;
    const fail = (err: Error) => {
      if (failed) return;
      failed = err;
      child.kill();
    };
    child.stdout.on('data', (chunk: Buffer) => {
      try {
        parser.push(chunk);
      } catch (err) {
        fail(err as Error);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr = (stderr + text).slice(-2000)));
    child.once('error', (err: NodeJS.ErrnoException) => reject(ffmpegStartError(err, command, path)));
    child.once('close', (code, signal) => {
      if (failed) return reject(failed);
      if (code !== 0) {
        const why = stderr.trim().split('\n').at(-1) || (signal ? `stopped by ${signal}` : `exit code ${code}`);
        return reject(new VideoError(`ffmpeg could not decode the video ${path}: ${why}`));
      }
      if (!parser.complete) return reject(new VideoError(`ffmpeg's output for ${path} ended inside a frame`));
      resolve(parser.count);
    });
  });
}

/** Why ffmpeg (`command`) could not be started to decode `path`: not installed, or another failure to start it. */
function ffmpegStartError(err: NodeJS.ErrnoException, command: string, path: string): VideoError {
  if (err.code === 'ENOENT') {
    return new VideoError(`decoding the video file ${path} needs ffmpeg, which is not installed (no "${command}" on the PATH): install ffmpeg, or give a folder of frame images instead`);
  }
  return new VideoError(`could not start ffmpeg ("${command}") to decode ${path}: ${err.message}`);
}

/** Where a PpmStream's frames go. */
export interface FrameSink {
  /** Whether frame `index` (counted from 0) is kept, asked as its header arrives; the pixels of one not kept are skipped. */
  wants(index: number): boolean;
  /** A kept frame, once all its pixels have arrived. */
  receive(index: number, frame: RgbImage): void;
  /** Memory for a kept frame's `size` bytes of pixels (default: a new Uint8Array). */
  pixels?(size: number): Uint8Array;
}

/** Splits a stream of binary PPM images (P6, 8-bit: "P6 <w> <h> 255" and w·h·3 bytes of RGB) into frames. */
export class PpmStream {
  /** Frames begun so far. */
  count = 0;
  private header = '';
  /** The frame being read: its index, its pixels (null when they are skipped) and its size in bytes. */
  private frame: { index: number; image: RgbImage | null; size: number } | null = null;
  private filled = 0;

  constructor(private readonly sink: FrameSink) {}

  /** Whether the stream so far ends at a frame's end. */
  get complete(): boolean {
    return this.frame === null && this.header === '';
  }

  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (!this.frame) {
        this.header += String.fromCharCode(chunk[at++]!);
        this.readHeader();
        continue;
      }
      const n = Math.min(chunk.length - at, this.frame.size - this.filled);
      this.frame.image?.data.set(chunk.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === this.frame.size) {
        const { index, image } = this.frame;
        this.frame = null;
        if (image) this.sink.receive(index, image);
      }
    }
  }

  /** Starts a frame once the header (magic, width, height, maxval and one whitespace byte) is complete. */
  private readHeader(): void {
    if (!'P6'.startsWith(this.header.slice(0, 2)) || this.header.length > 64) {
      throw new VideoError(`ffmpeg sent something that is not an RGB PPM frame (${JSON.stringify(this.header.slice(0, 16))})`);
    }
    const match = /^P6\s+(\d+)\s+(\d+)\s+(\d+)\s$/.exec(this.header);
    if (!match) return;
    const [width, height, maxval] = [Number(match[1]), Number(match[2]), Number(match[3])];
    if (maxval !== 255 || width < 1 || height < 1) {
      throw new VideoError(`ffmpeg sent a ${width}x${height} frame with maximum value ${maxval}; expected 8-bit RGB`);
    }
    this.header = '';
    const index = this.count++;
    const size = width * height * 3;
    const data = this.sink.wants(index) ? (this.sink.pixels?.(size) ?? new Uint8Array(size)) : null;
    this.frame = { index, size, image: data ? { width, height, data } : null };
    this.filled = 0;
  }
}
