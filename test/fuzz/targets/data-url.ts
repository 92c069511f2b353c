// Image data: URLs (server/chat-request.ts): the input is the URL text, placed in a user message's image_url part.

import { ApiError } from '../../../src/server/api-error.js';
import { parseChatCompletionRequest } from '../../../src/server/chat-request.js';
import { invariant, refusesOnlyWith, type FuzzTarget } from '../engine/target.js';
import { checkRequest } from './chat-request.js';

export const target: FuzzTarget = {
  description: 'text of an image URL → parseChatCompletionRequest({messages: [{role: "user", content: [{type: "image_url", image_url: {url}}]}]})',
  modules: ['server/chat-request.js'],
  dictionary: [
    'data:', 'image/', 'png', 'jpeg', ';base64', ',', 'text/plain', ';charset=utf-8', '=', '==', ' ', '\n', '\t', '%20', 'http://',
    'https://', 'HTTP://', 'file:', 'javascript:', 'iVBORw0KGgo', '////', '+/+/',
  ],
  maxLength: 8 * 1024,
  run(input) {
    const url = Buffer.from(input).toString('utf8');
    return refusesOnlyWith(input, [ApiError], () => {
      const request = parseChatCompletionRequest({
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'What is this?' }] }],
      });
      checkRequest(request);
      invariant(request.images.length === 1, `one image_url part gave ${request.images.length} images`);
      const image = request.images[0]!;
      if (image.kind === 'data') {
        const digits = url.slice(url.indexOf(',') + 1).replace(/\s+/g, '').replace(/=+$/, '').length;
        invariant(image.bytes.length === Math.floor((digits * 3) / 4), `${digits} base64 digits decoded to ${image.bytes.length} bytes`);
      }
    }, (err) => (err as ApiError).status < 500);
  },
};
