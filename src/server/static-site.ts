// Serves an `export-web` folder as static files, cross-origin isolated (COOP/COEP), so that the page's WASM runs on
// several threads: what `omnilmm serve --web <folder>` runs, and what tests and the browser bench use.

import { createReadStream, existsSync, statSync, type Stats } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { pipeline } from 'node:stream';
import { FileNotFoundError } from '../errors.js';
import { checkListenAddress } from './listen.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png',
};

export interface StaticSiteOptions {
  host?: string;
  port?: number;
  /** Called with each request's path (tests count what the page downloads). */
  onRequest?: (path: string) => void;
}

export class StaticSite {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(root: string, options: StaticSiteOptions = {}): Promise<StaticSite> {
    checkListenAddress(options.host, options.port);
    if (!existsSync(join(root, 'index.html'))) {
      throw new FileNotFoundError(`${root} has no index.html: pass a folder that omnilmm export-web wrote`);
    }
    const base = normalize(root) + sep;
    const server = createServer((req, res) => {
      const path = decodedPath(req.url ?? '/');
      if (path === null) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('malformed URL: not a URL, or percent-encoding that is not UTF-8\n');
        return;
      }
      options.onRequest?.(path);
      const file = normalize(join(base, path.endsWith('/') ? `${path}index.html` : path));
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const stat = file.startsWith(base) ? statFile(file) : undefined;
      if (!stat?.isFile()) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      res.writeHead(200, {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
        'content-length': stat.size,
        'cache-control': 'no-cache',
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-embedder-policy': 'require-corp',
      });
      if (req.method === 'HEAD') res.end();
      // A client that leaves, or a file that goes away after its stat: pipeline closes both, and no one is left to tell.
      else pipeline(createReadStream(file), res, () => {});
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
    });
    const address = server.address() as { address: string; port: number };
    const host = address.address.includes(':') ? `[${address.address}]` : address.address;
    return new StaticSite(server, `http://${host}:${address.port}`);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** The request's path, percent-decoded; null for a URL that does not parse or whose percent-encoding is not UTF-8. */
function decodedPath(url: string): string | null {
  try {
    return decodeURIComponent(new URL(url, 'http://localhost').pathname);
  } catch {
    return null;
  }
}

/** The file's stat, or undefined where the path names nothing to serve: a NUL byte in it, missing, under a file, too long. */
function statFile(file: string): Stats | undefined {
  if (file.includes('\0')) return undefined;
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}
