// The HTTP request body of POST /v1/chat/completions (server/body.ts, chat-request.ts): the raw body bytes, read with
// the size limit, parsed as JSON and validated as an OpenAI chat request. Refusals are 4xx ApiErrors.

import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { ApiError } from '../../../src/server/api-error.js';
import { readJsonBody } from '../../../src/server/body.js';
import { parseChatCompletionRequest, type ChatCompletionRequest } from '../../../src/server/chat-request.js';
import { invariant, refusesOnlyWith, type FuzzTarget } from '../engine/target.js';

/** The body limit while fuzzing (the server's default is 20 MiB; a smaller one reaches the 413 path). */
const BODY_LIMIT = 48 * 1024;

/** The JSON keys and values an OpenAI chat request is made of. */
export const CHAT_DICTIONARY = [
  '"messages"', '"role"', '"content"', '"user"', '"assistant"', '"system"', '"type"', '"text"', '"image_url"', '"url"',
  '"model"', '"stream"', '"stream_options"', '"include_usage"', '"max_tokens"', '"max_completion_tokens"', '"temperature"',
  '"top_p"', '"top_k"', '"num_beams"', '"repetition_penalty"', '"seed"', '"stop"', '"n"', '"tools"', '"logprobs"',
  '"top_logprobs"', '"frequency_penalty"', '"presence_penalty"', '"logit_bias"', '"response_format"', '"__proto__"',
  '"data:image/png;base64,iVBORw0KGgo="', '"https://example.com/a.png"', 'true', 'false', 'null', '1e999', '-0', '[]', '{}',
];

export const target: FuzzTarget = {
  description: 'bytes of a request body → readJsonBody() (fake request, 48 KiB limit) → parseChatCompletionRequest()',
  modules: ['server/body.js', 'server/chat-request.js', 'server/api-error.js'],
  dictionary: CHAT_DICTIONARY,
  maxLength: 64 * 1024,
  run(input) {
    return refusesOnlyWith(input, [ApiError], async () => {
      const { req, res } = fakeExchange(input);
      checkRequest(parseChatCompletionRequest(await readJsonBody(req, res, BODY_LIMIT)));
    }, (err) => (err as ApiError).status < 500);
  },
};

/** A request whose body is `input`, sent in chunks, and a response that only takes what readJsonBody does to it. */
function fakeExchange(input: Uint8Array): { req: IncomingMessage; res: ServerResponse } {
  const chunks: Buffer[] = [];
  for (let at = 0; at < input.length; at += 16 * 1024) chunks.push(Buffer.from(input.subarray(at, at + 16 * 1024)));
  const req = Object.assign(Readable.from(chunks, { objectMode: false }), {
    headers: { 'content-type': 'application/json', 'content-length': String(input.length) },
    socket: { destroy() {} },
  });
  const res = Object.assign(new EventEmitter(), { writeContinue() {} });
  return { req: req as unknown as IncomingMessage, res: res as unknown as ServerResponse };
}

export function checkRequest(request: ChatCompletionRequest): void {
  invariant(request.messages.length > 0, 'a request without messages was accepted');
  for (const m of request.messages) {
    invariant(m.role === 'system' || m.role === 'user' || m.role === 'assistant', `role ${String(m.role)} was accepted`);
    const parts = typeof m.content === 'string' ? [] : m.content;
    invariant(typeof m.content === 'string' || Array.isArray(m.content), 'a message content that is neither text nor parts came through');
    for (const part of parts) {
      invariant(part.type === 'text' ? typeof part.text === 'string' : part.type === 'image' || part.type === 'video', `a part of type ${String(part.type)} came through`);
    }
  }
  for (const image of request.images) {
    if (image.kind === 'data') invariant(image.bytes.length > 0, 'an empty data: URL image was accepted');
    if (image.kind === 'remote') invariant(/^https?:\/\//i.test(image.url), `remote image ${image.url} is not http(s)`);
  }
}
