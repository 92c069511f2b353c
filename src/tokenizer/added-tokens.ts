// Splitting text on the added tokens of a tokenizer.json, a port of tokenizers' `AddedVocabulary::find_matches`:
// the leftmost match wins, the longest among those starting there; a `single_word` token counts only between
// non-word characters, `lstrip` / `rstrip` take the whitespace beside the token into it.

import { StringTrie } from './trie.js';

/** One entry of tokenizer.json's `added_tokens`. */
export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
  /** Matched in the normalized text (true) or in the raw text before normalization (false). */
  normalized: boolean;
}

/** A stretch of text still to tokenize, or an added token's id. */
export type Segment = { text: string } | { id: number };

// tokenizers tests these with the `regex` crate, whose \w and \s are Unicode-aware. Every White_Space character
// is in the BMP, so whitespace can be scanned one UTF-16 unit at a time.
const WORD_CHAR = /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$/u;
const WHITE_SPACE = /^\p{White_Space}$/u;

function isWordChar(char: string | undefined): boolean {
  return char !== undefined && WORD_CHAR.test(char);
}

/** The character (code point) that ends at `text[end - 1]`. */
function charBefore(text: string, end: number): string | undefined {
  if (end <= 0) return undefined;
  const low = text.charCodeAt(end - 1);
  const start = low >= 0xdc00 && low < 0xe000 && end >= 2 && (text.charCodeAt(end - 2) & 0xfc00) === 0xd800 ? end - 2 : end - 1;
  return text.slice(start, end);
}

function charAt(text: string, pos: number): string | undefined {
  const cp = text.codePointAt(pos);
  return cp === undefined ? undefined : String.fromCodePoint(cp);
}

export class AddedTokenSplitter {
  private readonly trie: StringTrie;
  private readonly byContent = new Map<string, AddedToken>();

  /** @param tokens the added tokens to match, by the text they are matched as (normalized content for normalized ones) */
  constructor(tokens: readonly (readonly [string, AddedToken])[]) {
    for (const [text, token] of tokens) if (text !== '') this.byContent.set(text, token);
    this.trie = new StringTrie(this.byContent.keys());
  }

  get size(): number {
    return this.trie.size;
  }

  /** Splits `text` into added tokens and the text between them (empty stretches left out). */
  split(text: string): Segment[] {
    if (this.trie.size === 0) return text === '' ? [] : [{ text }];
    const out: Segment[] = [];
    let offset = 0;
    for (let pos = 0; pos < text.length;) {
      const length = this.trie.longestMatchAt(text, pos);
      if (length === 0) {
        pos++;
        continue;
      }
      let start = pos;
      let stop = pos + length;
      pos = stop;
      const token = this.byContent.get(text.slice(start, stop))!;
      if (token.singleWord) {
        if (isWordChar(charBefore(text, start)) || isWordChar(charAt(text, stop))) continue;
      }
      if (token.lstrip) {
        let spaceStart = start;
        while (spaceStart > 0 && WHITE_SPACE.test(text[spaceStart - 1]!)) spaceStart--;
        start = Math.max(spaceStart, offset);
      }
      if (token.rstrip) {
        while (stop < text.length && WHITE_SPACE.test(text[stop]!)) stop++;
      }
      if (offset < start) out.push({ text: text.slice(offset, start) });
      out.push({ id: token.id });
      offset = stop;
    }
    if (offset < text.length) out.push({ text: text.slice(offset) });
    return out;
  }
}
