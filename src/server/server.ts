// The HTTP server (node:http only): the OpenAI-compatible API under /v1, /health, and the chat page at /.
//
//   GET  /                      the chat page (and its /app.js, /app.css); never needs the API key
//   GET  /health                200 {"status": "ok", "model", "generating", "waiting", "max_queue"} while the engine
//                               takes requests; 503 {"status": "unavailable", "model", "reason"} once it cannot
//   GET  /v1/models             the one model, as OpenAI lists models
//   GET  /v1/models/{id}        that model, as OpenAI retrieves one (404 for any other id)
//   POST /v1/chat/completions   see completions.ts and chat-request.ts; 503 once the engine cannot answer
//
// HEAD is served wherever GET is. With an API key, every /v1 request needs `Authorization: Bearer <key>`. Bound to a
// loopback address, the server answers only requests addressed to a loopback name, so a web page cannot reach it
// through DNS rebinding.

import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Engine } from '../chat/engine-types.js';
import { describeJson, InvalidRequestError } from '../errors.js';
import { ApiError, ENGINE_STOPPED, sendError, toApiError } from './api-error.js';
import { handleChatCompletion, sendJson, type CompletionLimits } from './completions.js';
import { checkListenAddress } from './listen.js';
import { GenerationQueue } from './queue.js';
import { loadWebPage, type WebPage } from './web-page.js';

export interface ServerOptions {
  engine: Engine;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Port (default 8080; 0 picks a free one). */
  port?: number;
  /** When set, /v1 requests need `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Requests that may wait while one is generated (default 8); more get a 429. */
  maxQueue?: number;
  /** Fetch http(s) image URLs (public addresses only). Default false: only base64 data: URLs. */
  allowRemoteImages?: boolean;
  /** Largest request body, and largest fetched image (default 20 MiB). */
  maxBodyBytes?: number;
  /** Largest image, in pixels (default 40 million). */
  maxImagePixels?: number;
  /** How long fetching an image URL may take (default 15 s). */
  remoteImageTimeoutMs?: number;
  /** Where server-side errors are reported (default: stderr). */
  log?: (line: string) => void;
}

export const DEFAULT_PORT = 8080;
export const DEFAULT_MAX_QUEUE = 8;
const DEFAULT_MAX_BODY_BYTES = 20 << 20;
const DEFAULT_MAX_IMAGE_PIXELS = 40_000_000;

const LOOPBACK_NAMES = new Set(['localhost', '::1']);
/** An IPv4 literal in 127.0.0.0/8: four decimal octets 0–255, without leading zeros. */
const LOOPBACK_IPV4 = /^127(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const MODELS_PATH = '/v1/models';

export class ChatServer {
  private constructor(
    private readonly server: Server,
    private readonly queue: GenerationQueue,
    private readonly closing: AbortController,
  ) {}

  /** Starts listening; resolves once the port is bound. */
  static async start(options: ServerOptions): Promise<ChatServer> {
    const { engine, apiKey } = options;
    checkListenAddress(options.host, options.port);
    const host = options.host ?? '127.0.0.1';
    const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
    if (!Number.isInteger(maxQueue) || maxQueue < 0) {
      throw new InvalidRequestError(`maxQueue must be a whole number of at least 0 (0: no request waits), got ${describeJson(maxQueue)}`);
    }
    if (apiKey !== undefined && (typeof apiKey !== 'string' || apiKey.trim() === '')) {
      throw new InvalidRequestError(`apiKey must be a non-blank string (or left out for a server without one), got ${describeJson(apiKey)}`);
    }
    const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    const limits: CompletionLimits = {
      maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
      maxImagePixels: options.maxImagePixels ?? DEFAULT_MAX_IMAGE_PIXELS,
      allowRemoteImages: options.allowRemoteImages ?? false,
      remoteImageTimeoutMs: options.remoteImageTimeoutMs ?? 15_000,
    };
    const page = await loadWebPage();
    const queue = new GenerationQueue(maxQueue);
    const closing = new AbortController();
    const keyDigest = apiKey ? sha256(apiKey) : null;
    const checkHost = isLoopbackName(host);

    const handle = (req: IncomingMessage, res: ServerResponse) => {
      route(req, res).catch((err: unknown) => sendError(res, toApiError(err, log)));
    };
    // Requests with `Expect: 100-continue` go to the same handler, which tells the client to go on only where it
    // reads the body (so a body over the limit is refused before it is sent).
    const server = createServer(handle).on('checkContinue', handle);
    const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      const path = (req.url ?? '/').split('?')[0]!;
      if (checkHost && !isLoopbackName(hostnameOf(req.headers.host))) {
        throw new ApiError(403, 'this server only answers requests addressed to localhost', 'invalid_request_error', null, 'forbidden_host');
      }
      if (!path.startsWith('/v1/')) {
        if (path === '/health') {
          allowMethods(req, 'GET');
          if (engine.unavailable) sendJson(res, 503, { status: 'unavailable', model: engine.info.modelId, reason: ENGINE_STOPPED });
          else {
            sendJson(res, 200, {
              status: 'ok', model: engine.info.modelId, generating: queue.busy, waiting: queue.waitingCount, max_queue: maxQueue,
            });
          }
        } else serveStatic(page, req, res, path);
        return;
      }
      if (keyDigest) checkApiKey(req, keyDigest);
      if (path === MODELS_PATH) {
        allowMethods(req, 'GET');
        sendJson(res, 200, { object: 'list', data: [modelEntry(engine)] });
      } else if (path.startsWith(`${MODELS_PATH}/`)) {
        allowMethods(req, 'GET');
        sendJson(res, 200, modelNamed(engine, path.slice(MODELS_PATH.length + 1)));
      } else if (path === '/v1/chat/completions') {
        allowMethods(req, 'POST');
        await handleChatCompletion(req, res, { engine, queue, limits, log, closing: closing.signal });
      } else {
        throw new ApiError(404, `no such endpoint: ${req.method} ${path}`, 'invalid_request_error', null, 'not_found');
      }
    };

    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? DEFAULT_PORT, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new ChatServer(server, queue, closing);
  }

  /** The address the server is bound to, e.g. http://127.0.0.1:8080 (IPv6 hosts in brackets). */
  get url(): string {
    const { address, family, port } = this.server.address() as AddressInfo;
    return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}`;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Requests generating now (0 or 1) and waiting. */
  get load(): { generating: boolean; waiting: number } {
    return { generating: this.queue.busy, waiting: this.queue.waitingCount };
  }

  /** Stops accepting connections, aborts every request in flight and closes the connections. The engine stays open. */
  async close(): Promise<void> {
    this.closing.abort(new DOMException('the server is closing', 'AbortError'));
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

function modelEntry(engine: Engine) {
  return { id: engine.info.modelId, object: 'model', created: 0, owned_by: 'omnilmm' };
}

/** The model entry for a percent-encoded id from the path (OpenAI clients encode its slashes), if it is this server's. */
function modelNamed(engine: Engine, encodedId: string) {
  const id = decodePathPart(encodedId) ?? encodedId;
  if (id !== engine.info.modelId) {
    const message = `no model ${describeJson(id)} here: this server runs ${describeJson(engine.info.modelId)}`;
    throw new ApiError(404, message, 'invalid_request_error', 'model', 'model_not_found');
  }
  return modelEntry(engine);
}

/** The percent-decoded text, or null where the percent-encoding is not UTF-8. */
function decodePathPart(encoded: string): string | null {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return null;
  }
}

/** Refuses any other method with a 405; HEAD is served wherever GET is (node:http then sends no body). */
function allowMethods(req: IncomingMessage, method: 'GET' | 'POST'): void {
  const allowed = method === 'GET' ? ['GET', 'HEAD'] : [method];
  if (!allowed.includes(req.method ?? '')) {
    throw new ApiError(405, `use ${method} for ${req.url}`, 'invalid_request_error', null, 'method_not_allowed', { allow: allowed.join(', ') });
  }
}

function checkApiKey(req: IncomingMessage, keyDigest: Buffer): void {
  const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  if (!match || !timingSafeEqual(sha256(match[1]!.trim()), keyDigest)) {
    throw new ApiError(
      401,
      match ? 'the API key is not valid' : 'this server needs an API key: send "Authorization: Bearer <key>"',
      'authentication_error',
      null,
      'invalid_api_key',
      { 'www-authenticate': 'Bearer' },
    );
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function isLoopbackName(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || LOOPBACK_IPV4.test(host) || host.endsWith('.localhost');
}

/** The host name of a Host header, without port or IPv6 brackets. */
function hostnameOf(header: string | undefined): string {
  if (!header) return '';
  const bracketed = /^\[([^\]]*)\]/.exec(header);
  return (bracketed ? bracketed[1]! : header.replace(/:\d*$/, '')).toLowerCase();
}

function serveStatic(page: WebPage, req: IncomingMessage, res: ServerResponse, path: string): void {
  const file = page.files.get(path === '/' ? '/index.html' : path);
  if (!file) throw new ApiError(404, `not found: ${path}`, 'invalid_request_error', null, 'not_found');
  allowMethods(req, 'GET');
  res.writeHead(200, {
    'content-type': file.type,
    'content-length': file.body.length,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': page.contentSecurityPolicy,
  });
  res.end(file.body);
}
