// The request the families before MiniCPM-V 4.6 take (MiniCPM-V 1.0/2.0, OmniLMM-12B): text messages of the user and
// the assistant and at most one image, at the start of the conversation. Everything else is refused by name.

import { InvalidRequestError } from '../errors.js';
import type { RgbImage } from '../image/index.js';
import { imageLimitRefusal, textOf, type ChatInput, type ChatMessage, type ImageLimit, type InspectOptions, type MediaCount } from './messages.js';

/** What these families take: one image per conversation (their ChatModel.imageLimit). */
export function singleImageLimit(model: string): ImageLimit {
  return { most: 1, model };
}

/** These families' refusal of a video. */
function videoRefusal(model: string): string {
  return `${model} takes no video: video is a MiniCPM-V 4.6 feature`;
}

/** What these families refuse of a request's media, as their models refuse it: a video, or more than one image (ModelFamily.mediaRefusal). */
export function singleImageMediaRefusal(model: string, media: MediaCount): string | null {
  return media.video ? videoRefusal(model) : imageLimitRefusal(singleImageLimit(model), media.images);
}

/**
 * The upstream form of a ChatInput: each message's text parts joined by "\n", and the one image, whose part must be
 * in the first message. `model` names the model in the refusals ("MiniCPM-V 2.0").
 */
export function singleImageConversation(input: ChatInput, model: string): { messages: ChatMessage[]; image: RgbImage | null } {
  if (input.video) throw new InvalidRequestError(videoRefusal(model));
  if (input.thinking) throw new InvalidRequestError(`${model} has no thinking mode: thinking is a MiniCPM-V 4.6 feature`);
  refuseDownsampleMode(input, model);
  const tooMany = imageLimitRefusal(singleImageLimit(model), input.images.length);
  if (tooMany) throw new InvalidRequestError(tooMany);
  const messages = input.messages.map((message, i): ChatMessage => {
    if (message.role === 'system') {
      throw new InvalidRequestError(`${model} has no system prompt: put the instructions in the first user message`);
    }
    if (i === 0 && message.role !== 'user') throw new InvalidRequestError('the first message must be from the user');
    if (i > 0 && message.content.some((p) => p.type === 'image')) {
      throw new InvalidRequestError(`${model} takes its image in the first message (it belongs to the start of the conversation)`);
    }
    return { role: message.role, content: textOf(message.content) };
  });
  return { messages, image: input.images[0] ?? null };
}

/** The 4x downsample mode is MiniCPM-V 4.6's; 16x (its default) changes nothing for these families. */
export function refuseDownsampleMode(options: InspectOptions | undefined, model: string): void {
  if (options?.downsampleMode === '4x') {
    throw new InvalidRequestError(`${model} has no 4x downsample mode: it is a MiniCPM-V 4.6 feature (leave the downsample mode out)`);
  }
}
