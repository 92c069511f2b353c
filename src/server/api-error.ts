// Errors in OpenAI's wire shape, `{"error": {"message", "type", "param", "code"}}`, with their HTTP status.
// Library errors map to 4xx with their own message; anything else is a 500 whose details stay in the server log.

import type { ServerResponse } from 'node:http';
import { ImageError, InvalidRequestError, OmnilmmError } from '../errors.js';

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error' | 'service_unavailable';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new ApiError(400, message, 'invalid_request_error', param, code);

export const tooLarge = (message: string, param: string | null = null) =>
  new ApiError(413, message, 'invalid_request_error', param, 'payload_too_large');

/** What a client is told once the engine cannot answer any more; why goes to the server log. */
export const ENGINE_STOPPED = "the model's engine has stopped and cannot answer: restart the server";

/** The 503 of a chat request once the engine cannot answer (its worker thread has stopped, or it was closed). */
export const engineStopped = () => new ApiError(503, ENGINE_STOPPED, 'service_unavailable', null, 'engine_unavailable');

/** The wire form of any error: our own ApiErrors as they are, library errors by kind, the rest as a bare 500. */
export function toApiError(err: unknown, log: (line: string) => void): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ImageError) return badRequest(err.message, 'messages', 'invalid_image');
  if (err instanceof InvalidRequestError) return badRequest(err.message);
  const detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  log(`internal error: ${detail}`);
  const message = err instanceof OmnilmmError
    ? 'the model failed to answer; the server log has the details'
    : 'internal server error; the server log has the details';
  return new ApiError(500, message, 'server_error');
}

export function errorBody(error: ApiError) {
  return { error: { message: error.message, type: error.type, param: error.param, code: error.code } };
}

/** Sends an error as JSON, unless the response has already started or the client has gone. */
export function sendError(res: ServerResponse, error: ApiError): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(errorBody(error));
  res.writeHead(error.status, {
    ...error.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}
