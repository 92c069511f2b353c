// A MiniCPM-V 4.6 prompt as `MiniCPMV4_6Processor` builds it: the chat template renders one `<|image_pad|>` per image
// part and one `<|video_pad|>` per video part; each is replaced by that image's (or video's) placeholder text, and the
// whole text is tokenized at once (processing_minicpmv4_6.py).

import { InvalidRequestError } from '../../errors.js';
import type { ChatTemplate } from '../../tokenizer/chat-template.js';
import type { PartsMessage } from '../messages.js';
import { imagePlaceholder, type PreprocessedImage } from './image-processor.js';
import { videoPlaceholder, type PlannedVideo } from './video.js';

export const IMAGE_PAD = '<|image_pad|>';
export const VIDEO_PAD = '<|video_pad|>';

export interface PromptParts {
  messages: readonly PartsMessage[];
  images: readonly PreprocessedImage[];
  video: PlannedVideo | null;
  /** use_image_id of the image and the video processor: `<image_id>k</image_id>` before each image / the video. */
  imageIds: boolean;
  videoIds: boolean;
  thinking: boolean;
}

/** The prompt text: the rendered template with every pad of the template replaced by its placeholder. */
export function promptText(template: ChatTemplate, specialTokens: Record<string, string>, parts: PromptParts): string {
  const rendered = template.render({
    messages: parts.messages.map((m) => ({ role: m.role, content: m.content })),
    addGenerationPrompt: true,
    specialTokens,
    kwargs: { enable_thinking: parts.thinking },
  });
  const pieces = rendered.split(new RegExp(`(${escapeRegExp(IMAGE_PAD)}|${escapeRegExp(VIDEO_PAD)})`));
  const images = pieces.filter((p) => p === IMAGE_PAD).length;
  const videos = pieces.filter((p) => p === VIDEO_PAD).length;
  if (images !== parts.images.length || videos !== (parts.video ? 1 : 0)) {
    throw new InvalidRequestError(
      `the messages contain image or video markup (${IMAGE_PAD}, ${VIDEO_PAD}): remove it from the text`,
    );
  }
  let image = 0;
  return pieces.map((piece) => {
    if (piece === IMAGE_PAD) {
      const k = image++;
      return imagePlaceholder(parts.images[k]!, parts.imageIds ? k : null);
    }
    if (piece === VIDEO_PAD) return videoPlaceholder(parts.video!, parts.videoIds ? 0 : null);
    return piece;
  }).join('');
}

/** The positions of `id` in `ids`, in order. */
export function positionsOf(ids: readonly number[], id: number): number[] {
  const out: number[] = [];
  ids.forEach((x, i) => x === id && out.push(i));
  return out;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
