// Module loader hooks (registered by child.ts with module.register) that instrument the target modules as they load:
// each gets its counters from `globalThis.__fuzzRegister(url, offsets, functionFlags)` on its first line.

import { fileURLToPath } from 'node:url';
import { COUNTERS, instrument } from './instrument.js';

interface LoadResult { format?: string | null; source?: string | ArrayBuffer | Uint8Array; shortCircuit?: boolean }
type NextLoad = (url: string, context: object) => Promise<LoadResult>;

let modules: string[] = [];

export function initialize(data: { modules: string[] }): void {
  modules = data.modules;
}

export async function load(url: string, context: object, nextLoad: NextLoad): Promise<LoadResult> {
  const result = await nextLoad(url, context);
  if (!url.startsWith('file:') || !modules.some((m) => url.endsWith(`/dist/src/${m}`)) || result.source === undefined) return result;
  const source = typeof result.source === 'string' ? result.source : Buffer.from(result.source as Uint8Array).toString('utf8');
  const { code, sites } = instrument(source, fileURLToPath(url));
  const offsets = JSON.stringify(sites.map((s) => s.offset));
  const functions = JSON.stringify(sites.flatMap((s, i) => (s.isFunction ? [i] : [])));
  const prologue = `var ${COUNTERS} = globalThis.__fuzzRegister(${JSON.stringify(url)}, ${offsets}, ${functions});`;
  // After a shebang line, so that the line numbers stay the same.
  const cut = code.startsWith('#!') ? code.indexOf('\n') + 1 : 0;
  return { ...result, source: code.slice(0, cut) + prologue + code.slice(cut) };
}
