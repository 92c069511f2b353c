// OmniLMM-12B prompt text (OpenBMB/MiniCPM-V 7979f99, chat.py + omnilmm/train/train_utils.py): the image
// placeholder put into the first message, then the Zephyr chat format with the official system message.

import { InvalidRequestError } from '../../errors.js';
import type { ChatMessage } from '../messages.js';

/** The token strings chat.py uses for the image. */
export const IMAGE_TOKENS = {
  tag: '<image>',
  patch: '<im_patch>',
  start: '<im_start>',
  end: '<im_end>',
} as const;

/** `omni_preprocess`'s system message. */
export const SYSTEM_MESSAGE =
  "You are an artificial intelligence assistant, which gives helpful, detailed, and polite answers to the human's questions.";

/** The image's text: `<im_start>` + num_query × `<im_patch>` + `<im_end>`. */
export function imagePlaceholder(queryNum: number): string {
  return IMAGE_TOKENS.start + IMAGE_TOKENS.patch.repeat(queryNum) + IMAGE_TOKENS.end;
}

/**
 * Port of chat.py `expand_question_into_multimodal`: only the first message changes. Every `<image>` in it becomes
 * the placeholder; without one, the placeholder and "\n" go in front of its content.
 */
export function expandQuestionIntoMultimodal(messages: readonly ChatMessage[], queryNum: number): ChatMessage[] {
  if (messages.length === 0) throw new InvalidRequestError('the conversation is empty: ask a question');
  const [first, ...rest] = messages as [ChatMessage, ...ChatMessage[]];
  const placeholder = imagePlaceholder(queryNum);
  const content = first.content.includes(IMAGE_TOKENS.tag)
    ? first.content.replaceAll(IMAGE_TOKENS.tag, placeholder)
    : `${placeholder}\n${first.content}`;
  return [{ role: first.role, content }, ...rest];
}

/**
 * The text of `omni_preprocess(generation=True)`: roles must alternate (the official code asserts it), the system
 * message goes first, and the Zephyr template of tokenizer_config.json renders every message as
 * `<|role|>\n{content}{eos}\n`, followed by the generation prompt `<|assistant|>\n`.
 */
export function omniPreprocessText(messages: readonly ChatMessage[], eosToken: string): string {
  if (messages.length === 0) throw new InvalidRequestError('the conversation is empty: ask a question');
  messages.forEach((m, i) => {
    if (i > 0 && m.role === messages[i - 1]!.role) {
      throw new InvalidRequestError(`messages ${i - 1} and ${i} are both from the ${m.role}: user and assistant turns must alternate`);
    }
  });
  const turns = [{ role: 'system', content: SYSTEM_MESSAGE }, ...messages];
  return turns.map((t) => `<|${t.role}|>\n${t.content}${eosToken}\n`).join('') + '<|assistant|>\n';
}

/** Both steps of `OmniLMM12B.chat` before tokenization. */
export function buildPrompt(messages: readonly ChatMessage[], queryNum: number, eosToken: string): string {
  return omniPreprocessText(expandQuestionIntoMultimodal(messages, queryNum), eosToken);
}
