// Driving a ChatServer from the server tests: serving an engine around a test, posting to /v1/chat/completions, the
// OpenAI client and the API errors it throws, /health, waiting for a condition, and PNGs to send.

import assert from 'node:assert/strict';
import OpenAI from 'openai';
import sharp from 'sharp';
import type { Engine } from '../../src/chat/engine-types.js';
import { ChatServer, type ServerOptions } from '../../src/server/server.js';

/** Serves `engine` on a free port, without logging, while `use` runs; then closes the server (not the engine). */
export async function withServer(engine: Engine, use: (server: ChatServer) => Promise<void>, options: Partial<ServerOptions> = {}): Promise<void> {
  const server = await ChatServer.start({ engine, port: 0, log: () => {}, ...options });
  try {
    await use(server);
  } finally {
    await server.close();
  }
}

/** Starts an engine and serves it while `use` runs; then closes the server and the engine (also when the server cannot start). */
export async function withEngineServer<E extends Engine>(
  start: () => Promise<E>,
  use: (server: ChatServer, engine: E) => Promise<void>,
  options: Partial<ServerOptions> = {},
): Promise<void> {
  const engine = await start();
  try {
    await withServer(engine, (server) => use(server, engine), options);
  } finally {
    await engine.close();
  }
}

/** The official client on the server's /v1, without retries. */
export function client(server: ChatServer, apiKey = 'unused'): OpenAI {
  return new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0 });
}

/** The error object of a refused request, as the server sends it. */
export interface ErrorBody {
  error?: { message: string; type: string; param: string | null; code: string | null };
}

/** What a POST to /v1/chat/completions was answered with. */
export interface Posted {
  status: number;
  headers: Headers;
  body: ErrorBody;
}

/** POSTs `body` to /v1/chat/completions as it is (JSON content type unless `headers` say otherwise). */
export async function postRaw(server: ChatServer, body: string, headers: Record<string, string> = {}): Promise<Posted> {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as ErrorBody };
}

/** POSTs `body` to /v1/chat/completions as JSON. */
export function post(server: ChatServer, body: unknown): Promise<Posted> {
  return postRaw(server, JSON.stringify(body));
}

/** Runs the request and returns the API error it must fail with. */
export async function apiError(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, `expected an API error, got ${String(err)}`);
    assert.ok(!/\n\s+at /.test(err.message), 'no stack trace reaches the client');
    return err;
  }
  assert.fail('the request should have failed');
}

/** GET /health: whether a request is being generated and how many wait. */
export async function health(server: ChatServer): Promise<{ generating: boolean; waiting: number }> {
  return (await (await fetch(`${server.url}/health`)).json()) as { generating: boolean; waiting: number };
}

/**
 * Polls `condition` until it holds; fails the test after `timeoutMs`. The timeout guards against a hang and measures
 * nothing: a test shows how soon something happened by what else happened meanwhile, never by the clock.
 */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The bytes as a data: URL of type image/png (whatever they hold). */
export function pngDataUrl(bytes: Buffer): string {
  return `data:image/png;base64,${bytes.toString('base64')}`;
}

/** A PNG of one mid-grey colour: a few kilobytes however many pixels it has. */
export function grayPng(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: '#808080' } }).png().toBuffer();
}
