// Reading a JSON request body with a size limit.

import type { IncomingMessage } from 'node:http';
import { badRequest, tooLarge } from './api-error.js';

/**
 * Reads and parses the body. Past `limit` bytes it rejects with a 413 at once; the rest of the body is read and
 * dropped so that the client, still sending, gets to see that answer.
 */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) {
    throw badRequest(`send the body as JSON with "Content-Type: application/json" (got ${type ? `"${type}"` : 'none'})`);
  }
  const tooBig = () => tooLarge(`the request body is larger than the limit of ${formatBytes(limit)}: send a smaller image`);
  const declared = Number(req.headers['content-length']);
  if (declared > limit) {
    req.resume();
    throw tooBig();
  }
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      // Keep reading (into nothing) rather than destroying the request, which would cut the connection before
      // the 413 reaches the client.
      req.off('data', onData);
      req.resume();
      reject(tooBig());
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('close', () => reject(new DOMException('the client closed the connection', 'AbortError')));
  });
  const text = body.toString('utf8');
  if (text.trim() === '') throw badRequest('the request body is empty: send a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badRequest(`the request body is not valid JSON: ${(err as Error).message}`);
  }
}

export function formatBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${+(bytes / (1 << 20)).toFixed(1)} MiB` : `${+(bytes / 1024).toFixed(1)} KiB`;
}
