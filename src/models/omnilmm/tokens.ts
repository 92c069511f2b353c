// Token-level steps of OmniLMM-12B: where the image features go in the prompt ids (`get_vllm_embedding`) and the
// answer text of generate()'s output (`OmniLMM12B.decode`).

import { InvalidRequestError } from '../../errors.js';
import { pythonStrip } from '../../tokenizer/python-strings.js';
import type { Tokenizer } from '../../tokenizer/tokenizer.js';

/** Ids of the image tokens (`init_omni_lmm` reads them into vision_config). */
export interface ImageTokenIds {
  patch: number;
  start: number;
  end: number;
}

/**
 * The `[first, end)` prompt rows that the image features replace, checked as `get_vllm_embedding` checks them: as
 * many `<im_start>` as `<im_end>`, `<im_end>` right after the num_query rows that follow `<im_start>`, and one
 * image, i.e. one `<im_start>` (the official code fails with IndexError on a second one). `<im_start>` and
 * `<im_end>` keep their own embeddings.
 */
export function imageFeatureRows(ids: readonly number[], tokens: ImageTokenIds, queryNum: number): [number, number] {
  const starts = ids.flatMap((id, i) => (id === tokens.start ? [i] : []));
  const ends = ids.filter((id) => id === tokens.end).length;
  if (!ids.includes(tokens.patch) || starts.length === 0) {
    throw new InvalidRequestError('the prompt has no image placeholder (<im_start><im_patch>…<im_end>)');
  }
  if (starts.length !== ends) {
    throw new InvalidRequestError(
      `the prompt has ${starts.length} <im_start> and ${ends} <im_end> tokens: remove image markup from the messages`,
    );
  }
  if (starts.length > 1) {
    throw new InvalidRequestError(
      `the prompt has ${starts.length} image placeholders but there is one image: use <image> at most once, and only in the first message`,
    );
  }
  const first = starts[0]! + 1;
  if (ids[first + queryNum] !== tokens.end) {
    throw new InvalidRequestError(`<im_end> must follow <im_start> after ${queryNum} <im_patch> tokens: remove image markup from the messages`);
  }
  return [first, first + queryNum];
}

/** The answer of `OmniLMM12B.decode`: `tokenizer.decode(sequence, skip_special_tokens=True).strip()`. */
export function decodeResponse(tokenizer: Tokenizer, ids: readonly number[]): string {
  return pythonStrip(tokenizer.decode(ids, { skipSpecialTokens: true }));
}
