// Token-level steps of MiniCPM-V (modeling_minicpmv.py, 651ed08): where the image features go in the prompt ids,
// and the answer text of generated ids.

import { InvalidRequestError, OmnilmmError } from '../../errors.js';
import { pythonStrip } from '../../tokenizer/python-strings.js';
import type { Tokenizer } from '../../tokenizer/tokenizer.js';

/**
 * `_decode_text` found no ids left: the official code fails here with IndexError (`result[0]` or `result[-1]` on an
 * empty tensor), e.g. for generate() output that is only BOS and pad/unk ids.
 */
export class EmptyAnswerError extends OmnilmmError {}

/**
 * Port of the image_bound part of `MiniCPMV._convert_to_tensors`: `[index(<image>) + 1, index(</image>)]` for each
 * pair of image start/end ids, in order. Literal `<image>`/`</image>` typed by the user count too. The official code
 * fails (torch.hstack of unequal lengths) when the counts differ; we refuse such a prompt with a clear error.
 */
export function imageBound(ids: readonly number[], imStartId: number, imEndId: number): [number, number][] {
  const starts: number[] = [];
  const ends: number[] = [];
  ids.forEach((id, i) => {
    if (id === imStartId) starts.push(i + 1);
    if (id === imEndId) ends.push(i);
  });
  if (starts.length !== ends.length) {
    throw new InvalidRequestError(
      `the prompt has ${starts.length} image start and ${ends.length} image end tokens (<image>, </image>): ` +
        'remove image markup from the message text',
    );
  }
  return starts.map((start, i) => [start, ends[i]!]);
}

/**
 * Port of `MiniCPMV._decode_text` for one sequence: remove every id 0 (pad, which is also `<unk>`), drop a leading
 * BOS and one trailing EOS, decode, and apply Python's `str.strip()`. Throws EmptyAnswerError where the official
 * code raises IndexError. LlamaTokenizerWrapper's bos_id/eos_id are SentencePiece's; in MiniCPM-V's tokenizer files
 * they are the tokenizer's bos/eos tokens `<s>` and `</s>` (ids 1 and 2, the fixtures' `special_ids`).
 */
export function decodeText(tokenizer: Tokenizer, ids: readonly number[]): string {
  let result = ids.filter((id) => id !== 0);
  if (result.length === 0) throw new EmptyAnswerError('no answer to decode: the generated ids are all padding (id 0)');
  if (result[0] === tokenizer.bosId) result = result.slice(1);
  if (result.length === 0) throw new EmptyAnswerError('no answer to decode: the generated ids hold only the BOS token');
  if (result[result.length - 1] === tokenizer.eosId) result = result.slice(0, -1);
  return pythonStrip(tokenizer.decode(result));
}
