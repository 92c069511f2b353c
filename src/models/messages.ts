// The conversation every model family takes: the upstream format [{"role": "user"|"assistant", "content": "…"}].

import { InvalidRequestError } from '../errors.js';

export interface ChatMessage {
  role: 'user' | 'assistant';
  content: string;
}

/** Checks the seed's message format and returns typed messages. */
export function parseMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidRequestError('messages must be a non-empty JSON array of {"role": "user"|"assistant", "content": string}');
  }
  return value.map((m, i) => {
    const msg = m as { role?: unknown; content?: unknown };
    if (!msg || typeof msg !== 'object' || (msg.role !== 'user' && msg.role !== 'assistant')) {
      throw new InvalidRequestError(`message ${i} must have "role" "user" or "assistant"`);
    }
    if (typeof msg.content !== 'string') throw new InvalidRequestError(`message ${i} must have a string "content"`);
    return { role: msg.role, content: msg.content };
  });
}
