// The tiny MiniCPM-V 2.0 fixture as the server tests send it: its images, single_turn_grad and other chat cases as
// OpenAI messages, and one LocalEngine per test file that servers are started on.

import { readFileSync } from 'node:fs';
import { after, before } from 'node:test';
import type OpenAI from 'openai';
import { LocalEngine } from '../../src/chat/local-engine.js';
import { ChatServer, type ServerOptions } from '../../src/server/server.js';
import { fixturePath, readFixtureJson } from './fixtures.js';
import { pngDataUrl } from './server.js';

export const TINY_FIXTURE = 'minicpmv2-tiny';
export const TINY_MODEL = fixturePath(TINY_FIXTURE, 'model');
/** How the server tests load the fixture models: one thread, fp32 throughout. */
export const FP32 = { threads: 1, precision: 'fp32', visionPrecision: 'fp32' } as const;

interface Run {
  chat_kwargs: { sampling: boolean; num_beams?: number; max_new_tokens: number };
  new_token_ids: number[];
  text: string;
}
export interface LlmCase {
  input: { file: string };
  msgs: { role: 'user' | 'assistant'; content: string }[];
  input_ids: number[];
  runs: Record<string, Run>;
}

export const grad = readFixtureJson<LlmCase>(TINY_FIXTURE, 'llm', 'single_turn_grad.json');

/** The bytes of one of the fixture's images (test/fixtures/minicpmv2-tiny/images). */
export function fixturePng(file: string): Buffer {
  return readFileSync(fixturePath(TINY_FIXTURE, 'images', file));
}

/** A fixture file (a path inside test/fixtures/minicpmv2-tiny) as a PNG data: URL. */
export function dataUrl(file: string): string {
  return pngDataUrl(readFileSync(fixturePath(TINY_FIXTURE, file)));
}

/** A fixture case as OpenAI messages: the image goes with the first (user) message. */
export function wireMessages(c: LlmCase, image = dataUrl(c.input.file)): OpenAI.ChatCompletionMessageParam[] {
  return c.msgs.map((m, i) =>
    i === 0
      ? { role: 'user', content: [{ type: 'image_url', image_url: { url: image } }, { type: 'text', text: m.content }] }
      : m.role === 'user' ? { role: 'user', content: m.content } : { role: 'assistant', content: m.content });
}

/**
 * Loads the tiny model before the file's tests and returns a function that starts a server on it (a free port, no
 * log); after the tests every such server and the engine are closed. Call once, at the top of a test file.
 */
export function serveTinyModel(): (options?: Partial<ServerOptions>) => Promise<ChatServer> {
  let engine: LocalEngine;
  const servers: ChatServer[] = [];
  before(async () => {
    engine = await LocalEngine.start(TINY_MODEL, FP32);
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await engine.close();
  });
  return async (options = {}) => {
    const server = await ChatServer.start({ engine, port: 0, log: () => {}, ...options });
    servers.push(server);
    return server;
  };
}
