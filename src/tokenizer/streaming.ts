// Text of generated token ids as they arrive, following LlamaTokenizer.decode step by step.
//
// Guarantees. push() returns only text that can no longer change: never half a UTF-8 character, and never a U+FFFD
// for bytes that a later byte piece could still complete (they are held back; flush() turns bytes that never
// completed a character into U+FFFD, as decode does). Concatenating every push() and the final flush() equals
// `tokenizer.decode(ids)` for the same ids, with one exception, which comes from transformers' legacy rule: when a
// special token (`<s>`, `</s>`, `<unk>`, `<image>`, `<box>`, …) follows a run of ordinary pieces, decode() puts a
// space in FRONT of that run, which a stream may already have shown. So:
// * a run that follows text already shown is held back until a special token or flush() settles the question,
//   or until it reaches HOLD_BACK_TOKENS tokens; only a longer run that a special token then follows gets the space
//   just before the special token instead of in front of the run;
// * a run at the very start of the output is shown at once, and when a special token follows it the stream leaves
//   out decode()'s leading space (text that `str.strip()` removes anyway).
// Generated text without special tokens is therefore streamed exactly and at once.

import { SPACE_SYMBOL, type PieceRunDecoder } from './sentencepiece.js';
import type { LlamaTokenizer } from './llama.js';
import type { DecodeOptions, StreamDecoder } from './tokenizer.js';

/** Most tokens of a run that are held back while it is unknown whether a special token follows. */
export const HOLD_BACK_TOKENS = 32;

export class StreamingDetokenizer implements StreamDecoder {
  private shownAnything = false;
  /** Number of `_decode` sub-texts produced so far (they are joined with single spaces). */
  private subTexts = 0;
  /** Tokens in the current sub-text (its index `i` in convert_tokens_to_string). */
  private tokensInSubText = 0;
  private subTextShown = false;
  private prevIsSpecial = false;
  /** The current run of ordinary pieces: its SentencePiece decoder, size, and what is held back or shown of it. */
  private run: PieceRunDecoder;
  private runTokens = 0;
  private runHeld = '';
  private runHolding = false;
  private runShown = false;
  private runAtStart = false;

  constructor(
    private readonly tokenizer: LlamaTokenizer,
    private readonly options: DecodeOptions = {},
  ) {
    this.run = tokenizer.sentencePiece.runDecoder();
  }

  /** Takes the next id and returns the text it completes (often "", e.g. for the first bytes of a character). */
  push(id: number): string {
    if (this.options.skipSpecialTokens && this.tokenizer.isSpecialId(id)) return '';
    const token = this.tokenizer.idToPiece(id);
    if (this.tokenizer.isLegacyAddedToken(token)) {
      // `_decode`: the current sub-text ends (kept only when its text is not empty), the token is a sub-text alone.
      const text = this.tokensInSubText > 0 ? this.endSubText() : '';
      const separator = this.subTexts > 0 ? ' ' : '';
      this.subTexts++;
      this.resetSubText();
      this.shownAnything = true;
      return text + separator + token;
    }

    const i = this.tokensInSubText++;
    const piece = i === 0 && token.startsWith(SPACE_SYMBOL) ? token.slice(SPACE_SYMBOL.length) : token;
    if (!this.tokenizer.isSpecialToken(piece)) {
      this.prevIsSpecial = false;
      if (this.runTokens++ === 0) {
        this.runAtStart = !this.shownAnything;
        this.runHolding = this.shownAnything;
      }
      const text = this.run.push(piece);
      if (!this.runHolding) return this.showRun(text);
      this.runHeld += text;
      if (this.runTokens < HOLD_BACK_TOKENS) return '';
      this.runHolding = false;
      return this.showRun(this.takeHeld());
    }

    // convert_tokens_to_string: the run before a special token ends; the legacy space belongs in front of it.
    const legacySpace = !this.prevIsSpecial && i !== 0 ? ' ' : '';
    const rest = this.takeHeld() + this.run.finish();
    let text: string;
    if (!this.runShown) text = legacySpace + rest + piece;
    else if (this.runAtStart) text = rest + piece;
    else text = rest + legacySpace + piece;
    this.prevIsSpecial = true;
    this.resetRun();
    return this.show(text);
  }

  /** Ends the sequence: returns the held-back text (incomplete characters become U+FFFD) and starts afresh. */
  flush(): string {
    let text = '';
    if (this.tokensInSubText > 0) {
      text = this.endSubText();
      // `_decode` keeps the last sub-text even when it is empty, so its separator appears anyway.
      if (!this.subTextShown && this.subTexts > 0) text = ' ';
    }
    this.shownAnything = false;
    this.subTexts = 0;
    this.resetSubText();
    return text;
  }

  /** Text of the current sub-text, preceded by the separator the first time it shows anything. */
  private show(text: string): string {
    if (text === '') return '';
    this.shownAnything = true;
    if (this.subTextShown) return text;
    this.subTextShown = true;
    return this.subTexts > 0 ? ' ' + text : text;
  }

  private showRun(text: string): string {
    if (text !== '') this.runShown = true;
    return this.show(text);
  }

  private takeHeld(): string {
    const held = this.runHeld;
    this.runHeld = '';
    return held;
  }

  /** Shows the rest of the current sub-text and counts the sub-text when it showed anything. */
  private endSubText(): string {
    const shown = this.show(this.takeHeld() + this.run.finish());
    if (this.subTextShown) this.subTexts++;
    return shown;
  }

  private resetRun(): void {
    this.run = this.tokenizer.sentencePiece.runDecoder();
    this.runTokens = 0;
    this.runHeld = '';
    this.runHolding = false;
    this.runShown = false;
    this.runAtStart = false;
  }

  private resetSubText(): void {
    this.tokensInSubText = 0;
    this.subTextShown = false;
    this.prevIsSpecial = false;
    this.resetRun();
  }
}
