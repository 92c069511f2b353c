// Serves an `export-web` folder as static files, cross-origin isolated (COOP/COEP), so that the page's WASM runs on
// several threads: what `omnilmm serve --web <folder>` runs, and what tests and the browser bench use.

import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { FileNotFoundError } from '../errors.js';

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
    if (!existsSync(join(root, 'index.html'))) {
      throw new FileNotFoundError(`${root} has no index.html: pass a folder that omnilmm export-web wrote`);
    }
    const base = normalize(root) + sep;
    const server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
      options.onRequest?.(path);
      const file = normalize(join(base, path.endsWith('/') ? `${path}index.html` : path));
      const stat = file.startsWith(base) ? statSync(file, { throwIfNoEntry: false }) : undefined;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
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
      else createReadStream(file).pipe(res);
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
