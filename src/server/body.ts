// Reading a JSON request body with a size limit.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { badRequest, tooLarge } from './api-error.js';

/**
 * Reads and parses the body. Past `limit` bytes it rejects at once with a 413 and reads no further: the client gets
 * the answer while it is still sending, and the rest of the body never reaches this process (draining it would pass
 * every byte through freshly allocated buffers). A client that asks before it sends (`Expect: 100-continue`) is
 * told to go on only when the declared size fits.
 */
export async function readJsonBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) {
    throw badRequest(`send the body as JSON with "Content-Type: application/json" (got ${type ? `"${type}"` : 'none'})`);
  }
  const tooBig = () => {
    stopReading(req, res);
    return tooLarge(`the request body is larger than the limit of ${formatBytes(limit)}: send a smaller image`);
  };
  if (Number(req.headers['content-length']) > limit) throw tooBig();
  if (req.headers.expect?.toLowerCase() === '100-continue') res.writeContinue();
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
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

/** How long a connection whose body was refused stays open, unread, for its client to read the answer. */
const REFUSED_BODY_LINGER_MS = 2000;

/**
 * Reads no more of the request and closes the connection a while after the answer is sent. The paused no-op reader
 * keeps Node's HTTP server from draining a request nobody read; once the little already received fills its buffer,
 * the socket stops reading. Closing at once could reach a client that is still writing before it has read the
 * answer: it would see a broken connection (EPIPE) instead of the 413.
 */
function stopReading(req: IncomingMessage, res: ServerResponse): void {
  req.removeAllListeners('data');
  req.on('data', () => {}).pause();
  res.once('finish', () => setTimeout(() => req.socket.destroy(), REFUSED_BODY_LINGER_MS).unref());
}

export function formatBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${+(bytes / (1 << 20)).toFixed(1)} MiB` : `${+(bytes / 1024).toFixed(1)} KiB`;
}
