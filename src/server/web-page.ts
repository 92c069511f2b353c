// The chat page's static files (src/web, copied beside the compiled server by `npm run build`), read once at start.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { FileNotFoundError } from '../errors.js';

export interface WebPage {
  /** URL path → file. */
  files: Map<string, { type: string; body: Buffer }>;
  contentSecurityPolicy: string;
}

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'live-camera.js': 'text/javascript; charset=utf-8',
  'chat-shell.js': 'text/javascript; charset=utf-8',
};

// Everything comes from this server; images are data: or blob: URLs, the camera is a media stream.
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
  "img-src 'self' data: blob:", "media-src 'self' blob: mediastream:", "base-uri 'none'", "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export async function loadWebPage(): Promise<WebPage> {
  const dir = new URL('../web/', import.meta.url);
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const [name, type] of Object.entries(FILES)) {
    const path = fileURLToPath(new URL(name, dir));
    const body = await readFile(path).catch(() => {
      throw new FileNotFoundError(`the chat page's file ${path} is missing: run "npm run build", which copies src/web there`);
    });
    files.set(`/${name}`, { type, body });
  }
  return { files, contentSecurityPolicy: CONTENT_SECURITY_POLICY };
}
