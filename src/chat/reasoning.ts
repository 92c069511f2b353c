// An answer's reasoning (its `<think>…</think>` part) apart from its content, whole or while it streams.
//
// An answer has a think part when thinking was asked for (the prompt then ends inside `<think>`) or when it starts
// with `<think>` itself. The reasoning runs to the first `</think>` (or to the end, when the answer was cut off while
// thinking) and is stripped of surrounding whitespace; the content is what follows `</think>`, without its leading
// newlines — the split the official chat template makes of an assistant message.

import { pythonLstrip, pythonRstrip, pythonStrip } from '../tokenizer/python-strings.js';

export const THINK_START = '<think>';
export const THINK_END = '</think>';

export interface SplitAnswer {
  /** The think part's text; null when the answer has no think part. */
  reasoning: string | null;
  content: string;
}

/** Splits a whole answer; `thinking`: whether the prompt asked the model to think (it ends inside `<think>`). */
export function splitReasoning(answer: string, thinking: boolean): SplitAnswer {
  const opensWithTag = pythonLstrip(answer).startsWith(THINK_START);
  if (!thinking && !opensWithTag) return { reasoning: null, content: answer };
  const inside = opensWithTag ? pythonLstrip(answer).slice(THINK_START.length) : answer;
  const end = inside.indexOf(THINK_END);
  if (end < 0) return { reasoning: pythonStrip(inside), content: '' };
  return { reasoning: pythonStrip(inside.slice(0, end)), content: stripLeadingNewlines(inside.slice(end + THINK_END.length)) };
}

/** What one streamed chunk adds to the reasoning and to the content (either may be empty). */
export interface AnswerDelta {
  reasoning: string;
  content: string;
}

/**
 * Splits an answer as it streams: the deltas add up to splitReasoning() of the whole answer. Text that could still
 * turn out to be a tag, or whitespace that the reasoning may end with, is held back until the next text decides it.
 */
export class ReasoningStream {
  private state: 'undecided' | 'reasoning' | 'content' = 'undecided';
  /** Text not yet given out. */
  private held = '';
  /** Whether the reasoning has given out text (its leading whitespace is dropped until then). */
  private reasoningStarted = false;
  /** Whether the content has given out text (its leading newlines are dropped until then). */
  private contentStarted = false;

  constructor(private readonly thinking: boolean) {}

  push(text: string): AnswerDelta {
    this.held += text;
    const delta: AnswerDelta = { reasoning: '', content: '' };
    if (this.state === 'undecided') {
      const start = pythonLstrip(this.held);
      // Wait while the start could still become `<think>`.
      if (start.length < THINK_START.length && THINK_START.startsWith(start)) return delta;
      if (start.startsWith(THINK_START)) {
        this.state = 'reasoning';
        this.held = start.slice(THINK_START.length);
      } else this.state = this.thinking ? 'reasoning' : 'content';
    }
    if (this.state === 'reasoning') {
      const end = this.held.indexOf(THINK_END);
      if (end < 0) {
        // Held back: a partial `</think>` at the end and the whitespace before it (the reasoning may end there).
        const partial = partialTagLength(this.held, THINK_END);
        const keep = this.held.length - pythonRstrip(this.held.slice(0, this.held.length - partial)).length;
        delta.reasoning = this.giveReasoning(this.held.slice(0, this.held.length - keep));
        this.held = this.held.slice(this.held.length - keep);
        return delta;
      }
      delta.reasoning = this.giveReasoning(pythonRstrip(this.held.slice(0, end)));
      this.held = this.held.slice(end + THINK_END.length);
      this.state = 'content';
    }
    delta.content = this.giveContent(this.held);
    this.held = '';
    return delta;
  }

  /** The rest once the answer has ended. */
  flush(): AnswerDelta {
    const delta: AnswerDelta = { reasoning: '', content: '' };
    const rest = this.held;
    this.held = '';
    if (this.state === 'undecided') {
      if (this.thinking || pythonLstrip(rest).startsWith(THINK_START)) delta.reasoning = this.giveReasoning(pythonRstrip(rest));
      else delta.content = rest;
    } else if (this.state === 'reasoning') delta.reasoning = this.giveReasoning(pythonRstrip(rest));
    else delta.content = this.giveContent(rest);
    return delta;
  }

  private giveReasoning(text: string): string {
    const out = this.reasoningStarted ? text : pythonLstrip(text);
    if (out) this.reasoningStarted = true;
    return out;
  }

  private giveContent(text: string): string {
    const out = this.contentStarted ? text : stripLeadingNewlines(text);
    if (out) this.contentStarted = true;
    return out;
  }
}

/** The length of the longest end of `text` that begins `tag` (a tag that may be completed by the next chunk). */
function partialTagLength(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (text.endsWith(tag.slice(0, n))) return n;
  return 0;
}

function stripLeadingNewlines(text: string): string {
  let start = 0;
  while (start < text.length && text[start] === '\n') start++;
  return text.slice(start);
}
