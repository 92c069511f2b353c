// MiniCPM-V prompt text: the image placeholder and the `<用户>…<AI>` chat format (modeling_minicpmv.py, 651ed08).

import { InvalidRequestError } from '../../errors.js';
import type { ChatMessage } from '../messages.js';

/** The strings LlamaTokenizerWrapper defines for image spans. */
export const IMAGE_TOKENS = {
  imStart: '<image>',
  imEnd: '</image>',
  unk: '<unk>',
  sliceStart: '<slice>',
  sliceEnd: '</slice>',
} as const;

/** One slice's placeholder: `<image>` + query_num × `<unk>` + `</image>`. */
export function slicePlaceholder(queryNum: number): string {
  return IMAGE_TOKENS.imStart + IMAGE_TOKENS.unk.repeat(queryNum) + IMAGE_TOKENS.imEnd;
}

/** Port of `get_grid_placeholder`: `<slice>` + rows of `cols` placeholders joined by "\n" + `</slice>`. */
export function gridPlaceholder(grid: readonly [number, number], queryNum: number): string {
  const [cols, rows] = grid;
  const row = slicePlaceholder(queryNum).repeat(cols);
  return IMAGE_TOKENS.sliceStart + Array.from({ length: rows }, () => row).join('\n') + IMAGE_TOKENS.sliceEnd;
}

/** Port of `get_slice_image_placeholder`'s text: the overview's placeholder, then the grid's when there are patches. */
export function imagePlaceholder(grid: readonly [number, number] | null, queryNum: number): string {
  return slicePlaceholder(queryNum) + (grid ? gridPlaceholder(grid, queryNum) : '');
}

/**
 * Port of the prompt assembly in `MiniCPMV.chat`: the image text goes before the first message's content
 * (which must be the user's), each message is prefixed by `<用户>` or `<AI>`, and a final `<AI>` asks for the answer.
 * `imageText` is null for a text-only chat (as the upstream code does after it learnt `image=None`).
 */
export function buildPrompt(messages: readonly ChatMessage[], imageText: string | null): string {
  if (messages.length === 0) throw new InvalidRequestError('the conversation is empty: ask a question');
  if (messages[0]!.role !== 'user') throw new InvalidRequestError('the first message must be from the user');
  const last = messages[messages.length - 1]!;
  if (last.role === 'user' && last.content.trim() === '') throw new InvalidRequestError('the question is empty: ask something');
  let prompt = '';
  messages.forEach((msg, i) => {
    const content = i === 0 && imageText !== null ? `${imageText}\n${msg.content}` : msg.content;
    prompt += (msg.role === 'user' ? '<用户>' : '<AI>') + content;
  });
  return prompt + '<AI>';
}
