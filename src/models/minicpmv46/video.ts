// MiniCPM-V 4.6 video preprocessing (transformers 5.18 video_processing_minicpmv4_6.py + processing_minicpmv4_6.py):
// which decoded frames are kept, each kept frame sliced like an image (source, then its tiles), and the text that
// replaces the video's `<|video_pad|>`. Decoding the video file is not done here: the input is RGB frames + fps.

import { ImageError, InvalidRequestError } from '../../errors.js';
import type { RgbImage } from '../../image/rgb.js';
import type { DownsampleMode, PickedFrames, VideoFramePicker, VideoOptions } from '../messages.js';
import type { MiniCPMV46VideoProcessorConfig } from './config.js';
import {
  IMAGE_MARKUP,
  MINICPMV46_IMAGE_DEFAULTS,
  imageIdPrefix,
  planImageSlices,
  planSliceShapes,
  sliceImage,
  slicesPlaceholder,
  type ImageSlicePlan,
  type MiniCPMV46ImageOptions,
  type PreprocessedImage,
  type SliceShape,
  type VisionSlice,
} from './image-processor.js';

/** processor_config.json → video_processor, as options. */
export interface MiniCPMV46VideoOptions extends MiniCPMV46ImageOptions {
  /** Pick frames by time (`do_sample_frames`, true); false keeps every frame given. */
  doSampleFrames: boolean;
  /** Most main frames kept (`max_num_frames`, 128). */
  maxNumFrames: number;
  /** Sub-frames per second stacked into a grid image (`stack_frames`, 1); only 1 is supported. */
  stackFrames: number;
}

/** The class defaults of MiniCPMV4_6VideoProcessor (equal to the released processor_config.json). */
export const MINICPMV46_VIDEO_DEFAULTS: Readonly<MiniCPMV46VideoOptions> = {
  ...MINICPMV46_IMAGE_DEFAULTS,
  doSampleFrames: true,
  maxNumFrames: 128,
  stackFrames: 1,
};

/** The video processor's settings (processor_config.json), with a request's options over them. */
export function videoOptionsOf(processor: MiniCPMV46VideoProcessorConfig, request: VideoOptions, downsampleMode: DownsampleMode): MiniCPMV46VideoOptions {
  const pick = <T>(value: T | undefined, fallback: T): T => (value === undefined ? fallback : value);
  return {
    ...processor,
    downsampleMode,
    maxNumFrames: pick(request.maxNumFrames, processor.maxNumFrames),
    stackFrames: pick(request.stackFrames, processor.stackFrames),
    maxSliceNums: pick(request.maxSliceNums, processor.maxSliceNums),
    scaleResolution: pick(request.scaleResolution, processor.scaleResolution),
    sliceMode: pick(request.sliceMode, processor.sliceMode),
    useImageId: pick(request.useImageId, processor.useImageId),
  };
}

/**
 * The frames `preprocessVideo` keeps of a video, as a picker for the video's reader; undefined where it keeps them all
 * (`do_sample_frames` false).
 */
export function videoFramePicker(processor: MiniCPMV46VideoProcessorConfig, request: VideoOptions): VideoFramePicker | undefined {
  const options = videoOptionsOf(processor, request, processor.downsampleMode);
  if (!options.doSampleFrames) return undefined;
  return (frameCount, fps) => sampleFrames({ fps, duration: frameCount / fps, totalNumFrames: frameCount }, options.maxNumFrames, options.stackFrames);
}

/** The video's `VideoMetadata` fields that frame sampling reads. */
export interface VideoTiming {
  /** Frames per second of the decoded frames. */
  fps: number;
  /** Length in seconds; defaults to frames / fps, what transformers' video decoders record. */
  duration?: number;
}

/** Port of numpy `linspace(0, n − 1, count, dtype=int)`: i·step floored, the last one exactly n − 1. */
function linspaceIndices(n: number, count: number): number[] {
  if (count === 1) return [0];
  const step = (n - 1) / (count - 1);
  return Array.from({ length: count }, (_, i) => (i === count - 1 ? n - 1 : Math.floor(i * step)));
}

/**
 * Port of `sample_frames` for `stack_frames` 1: a video of at most `maxNumFrames` seconds keeps one frame per started
 * second (`int(i·fps)`); a longer one takes a frame every 0.1 s (`min(int(t·fps), T − 1)`) and keeps `maxNumFrames` of
 * those, evenly spread (`np.linspace(…, dtype=int)`).
 */
export function sampleFrames(timing: Required<VideoTiming> & { totalNumFrames: number }, maxNumFrames: number, stackFrames = 1): number[] {
  const { fps, duration, totalNumFrames } = timing;
  if (!(fps > 0) || !(duration > 0) || !Number.isFinite(fps) || !Number.isFinite(duration)) {
    throw new InvalidRequestError(`cannot sample video frames: fps (${fps}) and duration (${duration}) must be positive numbers`);
  }
  if (!Number.isSafeInteger(maxNumFrames) || maxNumFrames < 1) {
    throw new InvalidRequestError(`max_num_frames must be a positive whole number, got ${maxNumFrames}`);
  }
  if (stackFrames !== 1) {
    // transformers 5.18 processes the stacked sub-frames as plain frames while counting composites in the prompt.
    throw new InvalidRequestError(`stack_frames ${stackFrames} is not supported (the official 5.18 processor mishandles it); use stack_frames 1`);
  }
  if (duration > maxNumFrames) {
    // The i-th timestamp is round(i·0.1, 1) = i / 10; only the ones kept are computed (a clip given at a tiny fps
    // lasts so long that the whole list would not fit in memory).
    const count = Math.trunc(duration / 0.1);
    const frameAt = (i: number) => Math.min(Math.trunc((i / 10) * fps), totalNumFrames - 1);
    const kept = count > maxNumFrames ? linspaceIndices(count, maxNumFrames) : Array.from({ length: count }, (_, i) => i);
    return kept.map(frameAt);
  }
  return Array.from({ length: Math.ceil(duration) }, (_, i) => Math.trunc(i * fps));
}

/** One kept frame before any pixel is resized: the frame as given, its slice plan and its slices' shapes. */
export interface PlannedFrame {
  image: RgbImage;
  plan: ImageSlicePlan;
  /** The source first, then the tiles row-major. */
  slices: SliceShape[];
}

/** Which frames a video keeps and how each is sliced: all that its prompt text needs. */
export interface PlannedVideo {
  /** Indices of the frames kept, in order. */
  frameIndices: number[];
  frames: PlannedFrame[];
}

export interface PreprocessedVideo {
  /** Indices of the frames kept, in order. */
  frameIndices: number[];
  /** Each kept frame processed like an image. */
  frames: PreprocessedImage[];
  /** Every unit the vision tower sees, frame by frame (source, then its tiles): `target_sizes_videos` order. */
  units: VisionSlice[];
}

/**
 * Frame sampling, and each kept frame's slice plan with the video options (`_preprocess` before its resizing). With
 * `picked`, `frames` are only some frames of the video (those its reader kept): sampling counts all of them.
 */
export function planVideo(frames: readonly RgbImage[], timing: VideoTiming, options: MiniCPMV46VideoOptions, picked?: PickedFrames): PlannedVideo {
  if (frames.length === 0) throw new InvalidRequestError('the video has no frames');
  const frameCount = picked?.frameCount ?? frames.length;
  const duration = timing.duration ?? frameCount / timing.fps;
  const frameIndices = options.doSampleFrames
    ? sampleFrames({ fps: timing.fps, duration, totalNumFrames: frameCount }, options.maxNumFrames, options.stackFrames)
    : Array.from({ length: frameCount }, (_, i) => i);
  const given = picked ? new Map(picked.indices.map((index, i) => [index, frames[i]!])) : null;
  const kept = frameIndices.map((i): PlannedFrame => {
    const image = given ? given.get(i) : frames[i];
    if (image) {
      const plan = planImageSlices([image.height, image.width], options);
      return { image, plan, slices: planSliceShapes(plan, options) };
    }
    if (given) {
      throw new InvalidRequestError(`video frame ${i} of ${frameCount} is kept, but it is not among the frames given (picked.indices): give every frame, or those this model keeps`);
    }
    throw new ImageError(`video frame ${i} was asked for but only ${frames.length} frames were given: check that fps (${timing.fps}) and duration (${timing.duration}) match the frames`);
  });
  return { frameIndices, frames: kept };
}

/**
 * The whole `_preprocess` of a video at once: `planVideo`, then every kept frame through the image pipeline. (A
 * prompt resizes each frame only when the vision encoder reaches it.)
 */
export function preprocessVideo(frames: readonly RgbImage[], timing: VideoTiming, options: MiniCPMV46VideoOptions, picked?: PickedFrames): PreprocessedVideo {
  const planned = planVideo(frames, timing, options, picked);
  const kept = planned.frames.map(({ image, plan }): PreprocessedImage => ({ plan, slices: sliceImage(image, plan, options) }));
  return { frameIndices: planned.frameIndices, frames: kept, units: kept.flatMap((f) => f.slices) };
}

/**
 * What the processor puts in place of one video's `<|video_pad|>` (`replace_video_token` + `_prepend_local_ids`): the
 * frames' texts concatenated without separator, `<|video_pad|>` as the pad. With `use_image_id` the whole video gets one
 * `<image_id>k</image_id>` in front, k being the video's index among the videos of its sample; else pass null.
 */
export function videoPlaceholder(video: { frames: readonly { plan: ImageSlicePlan; slices: readonly SliceShape[] }[] }, videoId: number | null): string {
  const frames = video.frames.map((f) => slicesPlaceholder(f.plan.grid, f.slices.map((s) => s.tokens), IMAGE_MARKUP.videoPad));
  return imageIdPrefix(videoId) + frames.join('');
}
