// What the load and soak scripts share: `omnilmm serve` started as a child process on 127.0.0.1, its memory read
// from /proc, and small HTTP helpers for its API (requests go to the URL the server printed, nowhere else).

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface ServerProcess {
  /** e.g. http://127.0.0.1:41234 */
  url: string;
  process: ChildProcess;
  /** What the server wrote to stderr after it started listening. */
  logLines: string[];
}

/**
 * Starts `omnilmm serve --model <model> --host 127.0.0.1` with the given extra arguments (port 0 unless they name
 * one) and resolves once it prints its address.
 */
export async function startServer(model: string, extraArgs: string[] = []): Promise<ServerProcess> {
  const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const port = extraArgs.includes('--port') ? [] : ['--port', '0'];
  const child = spawn(process.execPath, [main, 'serve', '--model', model, '--host', '127.0.0.1', ...port, ...extraArgs], {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  const logLines: string[] = [];
  let log = '';
  let listening = false;
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (data: Buffer) => {
      log += data.toString();
      if (listening) {
        const lines = log.split('\n');
        log = lines.pop()!;
        logLines.push(...lines.filter((line) => line !== ''));
        return;
      }
      const match = /chat page:\s+(http:\/\/127\.0\.0\.1:\d+)\//.exec(log);
      if (match && log.includes('Press Ctrl-C')) {
        listening = true;
        log = log.slice(log.indexOf('Press Ctrl-C')).replace(/^[^\n]*\n?/, '');
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`the server exited with code ${code} before it listened:\n${log}`)));
  });
  return { url, process: child, logLines };
}

/** Asks the server to stop (SIGTERM) and waits up to `timeoutMs` for it to exit; kills it after that. */
export async function stopServer(server: ServerProcess, timeoutMs = 30_000): Promise<number | null> {
  const child = server.process;
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Resident memory of a process in bytes (Linux /proc); 0 where it cannot be read. */
export function readRss(pid: number): number {
  return readMemory(pid).rss;
}

/**
 * A process's resident memory in bytes (Linux /proc/<pid>/status): all of it, its anonymous part (heaps, arenas)
 * and its file-backed part (mapped libraries and weights, which the kernel may drop and read again). 0 where unknown.
 */
export function readMemory(pid: number): { rss: number; anon: number; file: number } {
  let status = '';
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    // the process is gone
  }
  const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return { rss: field('VmRSS'), anon: field('RssAnon'), file: field('RssFile') };
}

export interface PostOptions {
  signal?: AbortSignal;
  /** Gives up after this long (default 60 s). */
  timeoutMs?: number;
  headers?: Record<string, string>;
  /** Request path (default /v1/chat/completions). */
  path?: string;
}

/** POSTs a JSON body (an object, or a string sent as it is) to the chat completions endpoint. */
export function postChat(url: string, body: unknown, options: PostOptions = {}): Promise<Response> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 60_000);
  return fetch(`${url}${options.path ?? '/v1/chat/completions'}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...options.headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
  });
}

/** The text of a streamed answer (the `delta.content` of its server-sent events). */
export function streamedText(events: string): string {
  let text = '';
  for (const line of events.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    text += (JSON.parse(line.slice(6)) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '';
  }
  return text;
}

export interface Health {
  generating: boolean;
  waiting: number;
  max_queue: number;
}

export async function health(url: string): Promise<Health> {
  return (await (await fetch(`${url}/health`, { signal: AbortSignal.timeout(10_000) })).json()) as Health;
}

/** Whether the server became idle (nothing generating, nobody waiting) within `timeoutMs`. */
export function waitForIdle(url: string, timeoutMs = 5000): Promise<boolean> {
  return until(async () => {
    const h = await health(url);
    return !h.generating && h.waiting === 0;
  }, timeoutMs);
}

/** Polls a condition every 20 ms for up to `timeoutMs`. */
export async function until(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  for (const start = Date.now(); Date.now() - start < timeoutMs; await sleep(20)) if (await condition()) return true;
  return false;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
