// `omnilmm serve`: the OpenAI-compatible API and the chat page on one engine, until Ctrl-C.

import { createServer } from 'node:net';
import { WorkerEngine } from '../../chat/worker-engine.js';
import { InvalidRequestError } from '../../errors.js';
import { ChatServer, DEFAULT_MAX_QUEUE, DEFAULT_PORT } from '../../server/server.js';
import { StaticSite } from '../../server/static-site.js';
import { numberOption, parseCommandArgs, stringOption } from '../args.js';
import { precisionOption } from './chat.js';
import { DEFAULT_MODEL, THREADS_HELP, threadsOption, type Command } from './common.js';

const USAGE =
  'omnilmm serve --model <dir|org/name> [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--max-queue N] ' +
  '[--allow-remote-images] [--threads N] [--precision P] [--vision-precision P] [--keep-vision-loaded]\n       omnilmm serve --web <folder> [--host 127.0.0.1] [--port 8080]';

export const serveCommand: Command = {
  name: 'serve',
  summary: 'serve an OpenAI-compatible API and a chat page in the browser',
  help: `usage: ${USAGE}

  --model <dir|org/name>   checkpoint folder or hub id (default ${DEFAULT_MODEL})
  --web <folder>           serve a folder that export-web wrote instead (the model runs in the browser), with the
                           headers that let its WASM use several threads (COOP/COEP); no model is loaded here
  --host <address>         address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every network).
                           On a loopback address only requests addressed to localhost are answered (a guard
                           against DNS rebinding): a reverse proxy in front must pass "Host: localhost"
  --port <n>               port (default ${DEFAULT_PORT}; 0 picks a free one)
  --api-key <key>          require "Authorization: Bearer <key>" on every /v1 request (the page asks for it);
                           also read from OMNILMM_API_KEY
  --max-queue <n>          requests that may wait while one answer is generated (default ${DEFAULT_MAX_QUEUE});
                           more get HTTP 429 with Retry-After
  --allow-remote-images    fetch http(s) image URLs (public addresses only); otherwise images must be
                           base64 data: URLs
  --threads <n>            ${THREADS_HELP}
  --precision <p>          the language model's linear layers (lm_head included): int8-dq (default), fp32
                           (exact), int8 or int4, as for chat
  --vision-precision <p>   the vision tower's linear layers: int8-dq (default: int8 compute, 1–2% RMS on the
                           fixtures' image features), fp32 (exact), int8 or int4, as for chat
  --keep-vision-loaded     keep the vision tower open between images: each new image (live camera frames) starts
                           sooner, for more memory held while answering (MiniCPM-V 2.0 at int8: 0.2–0.5 s, ~0.5 GB;
                           4.6: ~1.7 s for 1344², ~1 GB; by default the tower is closed after each image)

Endpoints: GET / (chat page), GET /health (200 while the model answers, 503 once its worker has stopped),
GET /v1/models, POST /v1/chat/completions (OpenAI format, with "stream", "max_tokens", "temperature" (0 = greedy),
"top_p", "seed", "stop", and the extensions "top_k", "repetition_penalty", "num_beams"; 503 too once the worker has
stopped). One answer is generated at a time; the others wait in order.`,
  async run(argv) {
    const { values, positionals } = parseCommandArgs('serve', argv, {
      model: { type: 'string' },
      web: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key': { type: 'string' },
      'max-queue': { type: 'string' },
      'allow-remote-images': { type: 'boolean' },
      threads: { type: 'string' },
      precision: { type: 'string' },
      'vision-precision': { type: 'string' },
      'keep-vision-loaded': { type: 'boolean' },
    }, USAGE);
    if (positionals.length > 0) throw new InvalidRequestError(`serve takes no arguments, got "${positionals[0]}"\nusage: ${USAGE}`);
    const apiKey = stringOption(values, 'api-key') ?? apiKeyFromEnvironment();
    const port = numberOption(values, 'port', { integer: true, min: 0, max: 65535 }) ?? DEFAULT_PORT;
    // A blank --host is refused with the other blank flags (parseCommandArgs), the port's range just above.
    const host = stringOption(values, 'host');
    const maxQueue = numberOption(values, 'max-queue', { integer: true, min: 0, max: 10_000 }) ?? DEFAULT_MAX_QUEUE;
    const threads = threadsOption(values);
    const precision = precisionOption(values);
    const visionPrecision = precisionOption(values, 'vision-precision');
    const web = stringOption(values, 'web');
    if (web !== undefined) {
      const others = ['model', 'api-key', 'max-queue', 'allow-remote-images', 'threads', 'precision', 'vision-precision', 'keep-vision-loaded'].filter((k) => values[k] !== undefined);
      if (others.length > 0) throw new InvalidRequestError(`--web serves static files only; --${others[0]} does not apply to it\nusage: ${USAGE}`);
      await serveWebFolder(web, host, port);
      return;
    }
    const modelId = stringOption(values, 'model') ?? DEFAULT_MODEL;
    await checkCanListen(host, port);

    process.stderr.write(`loading ${modelId}…\n`);
    const keepVisionLoaded = values['keep-vision-loaded'] === true;
    const engine = await WorkerEngine.start(modelId, { threads, precision, visionPrecision, keepVisionLoaded });
    let server: ChatServer;
    try {
      server = await ChatServer.start({
        engine,
        host,
        port,
        apiKey,
        maxQueue,
        allowRemoteImages: values['allow-remote-images'] === true,
      });
    } catch (err) {
      await engine.close();
      throw listenError(err, port);
    }
    if (!apiKey && !isLoopback(server.url)) {
      process.stderr.write('warning: no --api-key, and the server is reachable from the network: anyone there can use it\n');
    }
    process.stderr.write(
      `omnilmm is serving ${modelId}\n  chat page:  ${server.url}/\n  OpenAI API: ${server.url}/v1` +
        `${apiKey ? ' (API key required)' : ''}\nPress Ctrl-C to stop.\n`,
    );
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    process.stderr.write('stopping…\n');
    await server.close();
    await engine.close();
  },
};

/** OMNILMM_API_KEY, where --api-key is not given; set but blank, it is refused as such. */
function apiKeyFromEnvironment(): string | undefined {
  const key = process.env.OMNILMM_API_KEY;
  if (key !== undefined && key.trim() === '') {
    throw new InvalidRequestError('the OMNILMM_API_KEY environment variable is set but empty: set it to the key, or unset it');
  }
  return key;
}

function isLoopback(url: string): boolean {
  const host = new URL(url).hostname;
  return host.startsWith('127.') || host === '[::1]';
}

function listenError(err: unknown, port: number): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new InvalidRequestError(`port ${port} is in use: pick another with --port`);
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return new InvalidRequestError('--host is not an address of this machine');
  if (code === 'EACCES') return new InvalidRequestError(`not allowed to listen on port ${port}: use a port above 1023`);
  return err;
}

/**
 * Fails now, before the model loads (minutes on a first run), where the server could not listen: a port in use, a
 * host that is no address of this machine. Port 0 (any free port) cannot be taken.
 */
async function checkCanListen(host: string | undefined, port: number): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, host ?? '127.0.0.1', () => resolve());
    });
  } catch (err) {
    throw listenError(err, port);
  }
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

/** `serve --web`: the export's files until Ctrl-C. */
async function serveWebFolder(folder: string, host: string | undefined, port: number): Promise<void> {
  let site: StaticSite;
  try {
    site = await StaticSite.start(folder, { host, port });
  } catch (err) {
    throw listenError(err, port);
  }
  process.stderr.write(`serving ${folder} (cross-origin isolated)\n  page: ${site.url}/\nPress Ctrl-C to stop.\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await site.close();
}
