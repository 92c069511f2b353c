// Reading a JSON request body with a size limit.

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { ApiError, badRequest, tooLarge } from './api-error.js';

/**
 * Reads and parses the body. Past `limit` bytes it rejects at once with a 413, and what the client still sends is
 * read and thrown away (see drainRefusedBody), so that a client that writes its whole body before it reads gets the
 * 413 rather than a broken connection. A client that asks before it sends (`Expect: 100-continue`) is told to go on
 * only when the declared size fits; otherwise it gets the 413 without sending anything, and the connection closes.
 */
export async function readJsonBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) {
    throw badRequest(`send the body as JSON with "Content-Type: application/json" (got ${type ? `"${type}"` : 'none'})`);
  }
  const message = `the request body is over ${formatBytes(limit)} (images included): send a shorter conversation or smaller images`;
  const tooBig = () => {
    drainRefusedBody(req, res);
    return tooLarge(message);
  };
  const expectsContinue = req.headers.expect?.toLowerCase() === '100-continue';
  if (Number(req.headers['content-length']) > limit) {
    // Told no 100 Continue, the client sends no body: nothing to drain, and the connection is done.
    if (expectsContinue) throw new ApiError(413, message, 'invalid_request_error', null, 'payload_too_large', { connection: 'close' });
    throw tooBig();
  }
  if (expectsContinue) res.writeContinue();
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

/** The most of a refused body that is read (and thrown away) before the connection is closed instead. */
const DRAIN_MAX_BYTES = 128 << 20;
/** How long a refused body may take to arrive before the connection is closed. */
const DRAIN_MAX_MS = 30_000;
/** node:http's default keep-alive timeout, for a socket whose server is not known. */
const DEFAULT_KEEP_ALIVE_MS = 5000;

/**
 * Reads the rest of a refused body and discards it chunk by chunk, keeping none of it (nginx's "lingering close").
 * The 413 goes out at once; a client that writes its whole body before it reads the answer can finish writing and
 * then read it, where a server that stopped reading would leave it blocked and then reset (a broken pipe instead of
 * the 413). Past DRAIN_MAX_BYTES or DRAIN_MAX_MS the connection is closed. Once the body is in, the connection
 * serves further requests as usual.
 */
function drainRefusedBody(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket;
  req.removeAllListeners('data');
  let drained = 0;
  const giveUp = setTimeout(() => socket.destroy(), DRAIN_MAX_MS).unref();
  // node:http arms the connection's keep-alive timeout (5 s) as soon as the 413 is sent, while the body is still
  // coming in: a client that paused longer than that mid-body found the connection closed under its writes (EPIPE,
  // seen in the soak test). Until the body is in, the limits above apply instead; then the keep-alive timeout.
  const keepAliveMs = (socket as Socket & { server?: Server }).server?.keepAliveTimeout ?? DEFAULT_KEEP_ALIVE_MS;
  res.once('finish', () => {
    if (!req.complete) socket.setTimeout(0);
  });
  const stop = () => {
    clearTimeout(giveUp);
    socket.off('close', stop);
  };
  req.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > DRAIN_MAX_BYTES) socket.destroy();
  });
  req.once('end', () => {
    stop();
    if (res.writableFinished) socket.setTimeout(keepAliveMs);
  });
  // The request may never end (a client that leaves mid-body): the socket's close ends the wait.
  socket.once('close', stop);
  req.resume();
}

export function formatBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${+(bytes / (1 << 20)).toFixed(1)} MiB` : `${+(bytes / 1024).toFixed(1)} KiB`;
}
