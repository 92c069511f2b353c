// Hugging Face hub downloads into the cache layout of huggingface_hub, so that a model Python fetched is used as is
// and one fetched here is reused by Python:
//   <cache>/models--{org}--{name}/blobs/{etag}                 file contents, named by ETag (the sha256 for LFS files)
//   <cache>/models--{org}--{name}/snapshots/{commit}/{file}    relative symlink to ../../blobs/{etag} (a copy where
//                                                              symlinks fail)
//   <cache>/models--{org}--{name}/refs/{revision}              the commit the revision pointed at
// Only the files a model needs are fetched (never .py code). A transfer writes blobs/{etag}.incomplete and resumes it
// with a Range request after an interruption; the finished file is checked and renamed into place.

import { createHash } from 'node:crypto';
import {
  copyFileSync, createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync,
  symlinkSync, truncateSync, writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { HubError } from '../errors.js';
import { formatBytes, ProgressBar, type ProgressStream } from './progress.js';

export interface HubOptions {
  /** Hub URL; default $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Cache root; default $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Access token; default $HF_TOKEN, else the token file `huggingface-cli login` wrote. null: send none. */
  token?: string | null;
  /** Use only the cache, never the network; default $HF_HUB_OFFLINE. */
  offline?: boolean;
  /** Branch, tag or commit hash; default "main". */
  revision?: string;
  /** Where the progress bar goes (it is drawn only on a TTY); false: no bar. Default process.stderr. */
  progress?: ProgressStream | false;
  /** How many times one call resumes an interrupted transfer before giving up; default 3. */
  maxRetries?: number;
  /**
   * How long a request may receive nothing (no answer, or a body that stops) before it is cut, in milliseconds;
   * default 30 000. A cut transfer is resumed, a cut metadata request (file list, HEAD) reported.
   */
  timeoutMs?: number;
}

export interface HubSettings {
  endpoint: string;
  cacheDir: string;
  token: string | null;
  offline: boolean;
  revision: string;
  progress: ProgressStream | false;
  maxRetries: number;
  timeoutMs: number;
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const COMMIT_HASH = /^[0-9a-f]{40}$/;
const RETRY_DELAY_MS = 500;
const MAX_REDIRECTS = 10;

/** The files a model needs besides its weights (huggingface_hub's own names). */
const MODEL_FILES = new Set([
  'config.json', 'generation_config.json', 'tokenizer.model', 'tokenizer.json', 'tokenizer_config.json',
  'special_tokens_map.json', 'added_tokens.json', 'chat_template.jinja', 'processor_config.json',
]);
const WEIGHT_INDEXES = ['model.safetensors.index.json', 'pytorch_model.bin.index.json'];

/** Fills in every option: explicit values first, then the environment, then huggingface_hub's defaults. */
export function hubSettings(options: HubOptions = {}, env: NodeJS.ProcessEnv = process.env): HubSettings {
  const hfHome = env['HF_HOME'] || join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'huggingface');
  return {
    endpoint: (options.endpoint ?? (env['HF_ENDPOINT'] || DEFAULT_ENDPOINT)).replace(/\/+$/, ''),
    cacheDir: options.cacheDir ?? (env['HF_HUB_CACHE'] || env['HUGGINGFACE_HUB_CACHE'] || join(hfHome, 'hub')),
    token: options.token !== undefined ? options.token : tokenFromEnv(env, hfHome),
    offline: options.offline ?? isTrue(env['HF_HUB_OFFLINE']),
    revision: options.revision ?? 'main',
    progress: options.progress ?? process.stderr,
    maxRetries: options.maxRetries ?? 3,
    timeoutMs: options.timeoutMs ?? 30_000,
  };
}

function tokenFromEnv(env: NodeJS.ProcessEnv, hfHome: string): string | null {
  const fromVar = env['HF_TOKEN'] || env['HUGGING_FACE_HUB_TOKEN'];
  if (fromVar) return fromVar.trim();
  const file = env['HF_TOKEN_PATH'] || join(hfHome, 'token');
  if (!existsSync(file)) return null;
  return readFileSync(file, 'utf8').trim() || null;
}

function isTrue(value: string | undefined): boolean {
  return ['1', 'on', 'yes', 'true'].includes((value ?? '').trim().toLowerCase());
}

/** "org/name" as the hub spells model ids (huggingface_hub `validate_repo_id`, with the org required). */
export function isHubRepoId(text: string): boolean {
  return /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/.test(text) && !text.includes('--') && !text.includes('..') &&
    !text.endsWith('.') && !text.endsWith('.git');
}

/** The cache folder of a model: models--{org}--{name}. */
export function repoCacheDir(cacheDir: string, repoId: string): string {
  return join(cacheDir, `models--${repoId.replace('/', '--')}`);
}

/**
 * The files of a repository listing that a model needs: config, generation config and tokenizer files, and the
 * weights — the root-level *.safetensors (+ index), or, only when there are none, pytorch_model*.bin (+ index).
 */
export function selectModelFiles(files: readonly string[]): string[] {
  const root = files.filter((f) => !f.includes('/'));
  const hasSafetensors = root.some((f) => f.endsWith('.safetensors'));
  const isWeight = hasSafetensors
    ? (f: string) => f.endsWith('.safetensors') || f === 'model.safetensors.index.json'
    : (f: string) => /^pytorch_model.*\.bin$/.test(f) || f === 'pytorch_model.bin.index.json';
  return root.filter((f) => MODEL_FILES.has(f) || isWeight(f));
}

/**
 * Makes sure the model `repoId` is in the cache and returns its snapshot folder. A complete snapshot of the revision
 * is used without any network request; otherwise the missing files are downloaded (nothing in offline mode).
 */
export async function downloadModel(repoId: string, options: HubOptions = {}): Promise<string> {
  if (!isHubRepoId(repoId)) throw new HubError(`"${repoId}" is not a hub model id (expected org/name, e.g. openbmb/MiniCPM-V-2)`);
  const s = hubSettings(options);
  checkRevision(s.revision);
  const repoDir = repoCacheDir(s.cacheDir, repoId);
  const cached = cachedSnapshot(repoDir, s.revision);
  if (cached.missing.length === 0) return cached.dir;
  if (s.offline) {
    throw new HubError(
      `offline mode (HF_HUB_OFFLINE) and ${repoId} at revision "${s.revision}" is not complete in the cache ${repoDir}: ` +
      `missing ${cached.missing.join(', ')}. Download it once with a connection, or pass --model <local dir>`,
    );
  }
  const client = new HubClient(repoId, s);
  const { commit, files } = await client.listFiles();
  const wanted = selectModelFiles(files);
  if (!wanted.includes('config.json')) {
    throw new HubError(`${repoId} has no config.json at revision "${s.revision}": it is not a model this engine can load`);
  }
  writeRef(repoDir, s.revision, commit);
  const snapshotDir = join(repoDir, 'snapshots', commit);
  const isWeightFile = (f: string) => f.endsWith('.safetensors') || f.endsWith('.bin');
  await client.fetchFiles(repoDir, commit, wanted.filter((f) => !isWeightFile(f)));
  await client.fetchFiles(repoDir, commit, weightFilesToFetch(snapshotDir, wanted.filter(isWeightFile), repoId));
  return snapshotDir;
}

/** With an index, only the shards it names (a repo may also hold a consolidated copy); else every weight file. */
function weightFilesToFetch(snapshotDir: string, weights: string[], repoId: string): string[] {
  for (const index of WEIGHT_INDEXES) {
    const shards = indexShards(join(snapshotDir, index));
    if (shards === undefined) continue;
    if (shards === null) throw new HubError(`${index} of ${repoId} is not a valid index (no "weight_map"): the repository is broken`);
    const absent = shards.filter((shard) => !weights.includes(shard));
    if (absent.length > 0) throw new HubError(`${index} of ${repoId} names ${absent.join(', ')}, which the repository does not have`);
    return shards;
  }
  return weights;
}

/** Shard file names of a weight index; undefined when there is no such file, null when it is unreadable. */
function indexShards(indexPath: string): string[] | null | undefined {
  if (!existsSync(indexPath)) return undefined;
  try {
    const map = (JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map?: unknown }).weight_map;
    if (!map || typeof map !== 'object') return null;
    const shards = [...new Set(Object.values(map as Record<string, unknown>))];
    return shards.every((s) => typeof s === 'string' && s !== '' && !s.includes('/') && !s.includes('\\'))
      ? (shards as string[]).sort()
      : null;
  } catch {
    return null;
  }
}

function checkRevision(revision: string): void {
  if (revision === '' || revision.split('/').some((part) => part === '' || part === '.' || part === '..') || revision.includes('\\')) {
    throw new HubError(`invalid revision "${revision}": give a branch, tag or commit hash`);
  }
}

/** The cached snapshot of a revision and what a model would still miss in it (empty: usable as is). */
function cachedSnapshot(repoDir: string, revision: string): { dir: string; missing: string[] } {
  let commit = revision;
  if (!COMMIT_HASH.test(revision)) {
    const refPath = join(repoDir, 'refs', revision);
    if (!existsSync(refPath)) return { dir: '', missing: [`refs/${revision} (never downloaded)`] };
    commit = readFileSync(refPath, 'utf8').trim();
    if (!COMMIT_HASH.test(commit)) return { dir: '', missing: [`a valid refs/${revision} (it holds ${JSON.stringify(commit.slice(0, 60))})`] };
  }
  const dir = join(repoDir, 'snapshots', commit);
  if (!existsSync(dir)) return { dir, missing: [`the snapshot snapshots/${commit}`] };
  return { dir, missing: missingModelFiles(dir) };
}

/** What a snapshot folder lacks to be loadable: config.json, complete weights, a tokenizer model. */
function missingModelFiles(dir: string): string[] {
  const missing: string[] = [];
  if (!existsSync(join(dir, 'config.json'))) missing.push('config.json');
  if (!existsSync(join(dir, 'tokenizer.model')) && !existsSync(join(dir, 'tokenizer.json'))) missing.push('tokenizer.model (or tokenizer.json)');
  for (const index of WEIGHT_INDEXES) {
    const shards = indexShards(join(dir, index));
    if (shards === undefined) continue;
    if (shards === null) return [...missing, `a valid ${index}`];
    return [...missing, ...shards.filter((shard) => !existsSync(join(dir, shard)))];
  }
  const hasWeights = readdirSync(dir).some((f) => f.endsWith('.safetensors') && existsSync(join(dir, f))) ||
    existsSync(join(dir, 'pytorch_model.bin'));
  return hasWeights ? missing : [...missing, 'the weights (model.safetensors or model.safetensors.index.json)'];
}

function writeRef(repoDir: string, revision: string, commit: string): void {
  if (revision === commit) return;
  const refPath = join(repoDir, 'refs', revision);
  if (existsSync(refPath) && readFileSync(refPath, 'utf8').trim() === commit) return;
  mkdirSync(dirname(refPath), { recursive: true });
  writeFileSync(refPath, commit);
}

/** Points snapshots/{commit}/{file} at its blob: a relative symlink like huggingface_hub's, or a copy. */
function linkIntoSnapshot(blobPath: string, pointerPath: string): void {
  mkdirSync(dirname(pointerPath), { recursive: true });
  rmSync(pointerPath, { force: true });
  try {
    symlinkSync(relative(dirname(pointerPath), blobPath), pointerPath);
  } catch {
    copyFileSync(blobPath, pointerPath);
  }
}

/** A file to fetch, from the resolve URL's response headers (huggingface_hub `get_hf_file_metadata`). */
interface RemoteFile {
  filename: string;
  etag: string;
  size: number;
  /** The resolve URL; each GET starts there, so an LFS file gets a fresh CDN location on every attempt. */
  url: string;
  /** LFS files carry X-Linked-Etag, the sha256 of their contents. */
  sha256: string | null;
}

/** Raised inside a transfer when the connection broke; the download resumes or reports it. */
class TransferInterrupted extends Error {}

/** Aborts its signal once nothing was received for `timeoutMs`: a request whose answer or body stalls is cut. */
class StallWatchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout;

  constructor(private readonly timeoutMs: number) {
    this.timer = this.arm();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Data arrived: the wait starts again. */
  received(): void {
    clearTimeout(this.timer);
    this.timer = this.arm();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** Why a request failed: the stall when this watchdog cut it, else the network's reason (the error's cause). */
  why(err: unknown): string {
    if (this.signal.aborted) return (this.signal.reason as Error).message;
    return (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
  }

  private arm(): NodeJS.Timeout {
    // A TimeoutError, so that a request cut before any answer reads "no answer within …" (networkError).
    const stalled = () => this.controller.abort(new DOMException(`no data for ${this.timeoutMs / 1000} s`, 'TimeoutError'));
    return setTimeout(stalled, this.timeoutMs);
  }
}

class HubClient {
  private readonly endpointOrigin: string;

  constructor(private readonly repoId: string, private readonly s: HubSettings) {
    try {
      this.endpointOrigin = new URL(s.endpoint).origin;
    } catch {
      throw new HubError(`HF_ENDPOINT "${s.endpoint}" is not a URL (expected e.g. https://huggingface.co)`);
    }
  }

  /** The revision's commit and its file names (`/api/models/{repo}/revision/{revision}`). */
  async listFiles(): Promise<{ commit: string; files: string[] }> {
    const url = `${this.s.endpoint}/api/models/${this.repoId}/revision/${encodeURIComponent(this.s.revision)}`;
    const watchdog = new StallWatchdog(this.s.timeoutMs);
    let body: string;
    try {
      const res = await this.request('GET', url, { Accept: 'application/json' }, watchdog.signal);
      if (!res.ok) {
        await res.body?.cancel();
        throw this.statusError(res, url);
      }
      body = await this.readBody(res, url, watchdog);
    } finally {
      watchdog.stop();
    }
    let info: { sha?: unknown; siblings?: unknown };
    try {
      info = JSON.parse(body) as typeof info;
    } catch {
      throw new HubError(`${url} did not answer with JSON: is HF_ENDPOINT (${this.s.endpoint}) a Hugging Face hub?`);
    }
    const siblings = Array.isArray(info.siblings) ? (info.siblings as { rfilename?: unknown }[]) : null;
    if (typeof info.sha !== 'string' || !COMMIT_HASH.test(info.sha) || !siblings || siblings.some((f) => typeof f?.rfilename !== 'string')) {
      throw new HubError(`${url} answered without a commit "sha" and "siblings" file list: is HF_ENDPOINT a Hugging Face hub?`);
    }
    return { commit: info.sha, files: siblings.map((f) => f.rfilename as string) };
  }

  /** Downloads whatever `files` lack in the snapshot of `commit` and links them in, with one progress bar. */
  async fetchFiles(repoDir: string, commit: string, files: string[]): Promise<void> {
    const snapshotDir = join(repoDir, 'snapshots', commit);
    const remote: RemoteFile[] = [];
    for (const filename of files) {
      if (!existsSync(join(snapshotDir, filename))) remote.push(await this.fileMetadata(commit, filename));
    }
    const blobPath = (f: RemoteFile) => join(repoDir, 'blobs', f.etag);
    const toDownload = [...new Map(remote.filter((f) => !existsSync(blobPath(f))).map((f) => [f.etag, f])).values()];
    if (toDownload.length > 0) {
      const partSize = (f: RemoteFile) => (existsSync(`${blobPath(f)}.incomplete`) ? statSync(`${blobPath(f)}.incomplete`).size : 0);
      const total = toDownload.reduce((sum, f) => sum + f.size, 0);
      const initial = toDownload.reduce((sum, f) => sum + Math.min(partSize(f), f.size), 0);
      const label = `${this.repoId}: ${toDownload.length} file${toDownload.length > 1 ? 's' : ''}`;
      const stream = this.s.progress || { write: () => true };
      // The bar is drawn only on a terminal: elsewhere (a log, CI) one line says what the wait is for.
      if (stream.isTTY !== true) stream.write(`downloading ${label}, ${formatBytes(total - initial)} from ${this.s.endpoint}\n`);
      const bar = new ProgressBar(label, total, { stream, initial });
      for (const f of toDownload) await this.downloadBlob(f, blobPath(f), bar);
      bar.finish();
    }
    for (const f of remote) linkIntoSnapshot(blobPath(f), join(snapshotDir, f.filename));
  }

  /**
   * HEAD of the resolve URL (huggingface_hub `get_hf_file_metadata`): commit, ETag and size. Redirects within the hub
   * are followed; a redirect to a CDN is not, as the LFS headers (X-Linked-Etag, X-Linked-Size) are on it.
   */
  private async fileMetadata(commit: string, filename: string): Promise<RemoteFile> {
    const url = `${this.s.endpoint}/${this.repoId}/resolve/${commit}/${filename.split('/').map(encodeURIComponent).join('/')}`;
    const res = await this.request('HEAD', url, { 'Accept-Encoding': 'identity' }, 'timeout', 'same-origin');
    if (res.status >= 400) throw this.statusError(res, url, filename);
    const header = (name: string) => res.headers.get(name);
    const repoCommit = header('X-Repo-Commit');
    if (repoCommit !== null && repoCommit !== commit) {
      throw new HubError(`${url} answered for commit ${repoCommit} instead of ${commit}; try again`);
    }
    const linkedEtag = header('X-Linked-Etag');
    const etag = normalizeEtag(linkedEtag ?? header('ETag'));
    const size = Number(header('X-Linked-Size') ?? header('Content-Length') ?? NaN);
    if (!etag || !/^[\w.-]+$/.test(etag) || etag === '.' || etag === '..') {
      throw new HubError(`${url} answered without a usable ETag: is HF_ENDPOINT (${this.s.endpoint}) a Hugging Face hub?`);
    }
    if (!Number.isSafeInteger(size) || size < 0) throw new HubError(`${url} answered without the file size; try again`);
    return { filename, etag, size, url, sha256: linkedEtag !== null && /^[0-9a-f]{64}$/.test(etag) ? etag : null };
  }

  /** Fetches one blob into blobs/{etag}.incomplete, resuming after interruptions, then checks it and renames it. */
  private async downloadBlob(file: RemoteFile, blobPath: string, bar: ProgressBar): Promise<void> {
    const partPath = `${blobPath}.incomplete`;
    mkdirSync(dirname(partPath), { recursive: true });
    if (!existsSync(partPath)) writeFileSync(partPath, '');
    let have = statSync(partPath).size;
    if (have > file.size) {
      truncateSync(partPath, 0);
      bar.advance(-file.size);
      have = 0;
    }
    for (let attempt = 0; have < file.size; attempt++) {
      try {
        have = await this.transfer(file, partPath, have, bar);
        if (have < file.size) throw new TransferInterrupted('the server closed the connection early');
      } catch (err) {
        if (!(err instanceof TransferInterrupted)) throw err;
        have = statSync(partPath).size;
        if (attempt >= this.s.maxRetries) {
          throw new HubError(
            `the download of ${file.filename} (${this.repoId}) was interrupted after ${have} of ${file.size} bytes ` +
            `(${err.message}); run the command again to resume it`, { cause: err },
          );
        }
        await new Promise((resolveDelay) => setTimeout(resolveDelay, RETRY_DELAY_MS * (attempt + 1)));
      }
    }
    if (file.sha256 !== null && (await sha256File(partPath)) !== file.sha256) {
      rmSync(partPath, { force: true });
      throw new HubError(`${file.filename} (${this.repoId}) arrived corrupted (its sha256 differs from the hub's); run the command again`);
    }
    renameSync(partPath, blobPath);
  }

  /**
   * One GET from byte `have` on (a Range request when resuming); returns the bytes now in the part file. A transfer
   * that receives nothing for `timeoutMs` (no answer, or a body that stops) is cut, to be resumed like any other.
   */
  private async transfer(file: RemoteFile, partPath: string, have: number, bar: ProgressBar): Promise<number> {
    const watchdog = new StallWatchdog(this.s.timeoutMs);
    try {
      return await this.transferWatched(file, partPath, have, bar, watchdog);
    } finally {
      watchdog.stop();
    }
  }

  private async transferWatched(
    file: RemoteFile, partPath: string, have: number, bar: ProgressBar, watchdog: StallWatchdog,
  ): Promise<number> {
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
    if (have > 0) headers['Range'] = `bytes=${have}-`;
    let res: Response;
    try {
      res = await this.request('GET', file.url, headers, watchdog.signal);
    } catch (err) {
      throw new TransferInterrupted((err as Error).message, { cause: err });
    }
    if (res.status === 416 || (res.status === 206 && res.headers.get('Content-Range')?.startsWith(`bytes ${have}-`) !== true)) {
      await res.body?.cancel();
      truncateSync(partPath, 0);
      bar.advance(-have);
      throw new TransferInterrupted('the server could not resume the transfer, restarting it');
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw this.statusError(res, file.url, file.filename);
    }
    if (res.status === 200 && have > 0) {
      // The server ignored the Range header and sends the whole file: start over with it.
      bar.advance(-have);
      have = 0;
    }
    const out = await open(partPath, have > 0 ? 'a' : 'w');
    let failure: unknown = null;
    try {
      for await (const chunk of res.body ?? []) {
        watchdog.received();
        await out.write(chunk);
        have += chunk.length;
        bar.advance(chunk.length);
        if (have > file.size) throw new HubError(`the server sent more than the ${file.size} bytes of ${file.filename}; try again`);
      }
    } catch (err) {
      failure = err;
    } finally {
      await out.close();
    }
    if (failure instanceof HubError) {
      rmSync(partPath, { force: true });
      throw failure;
    }
    if (failure !== null) throw new TransferInterrupted(watchdog.why(failure), { cause: failure });
    return have;
  }

  /**
   * The body of a metadata answer, read under the request's watchdog. A body that stalls or breaks off is reported as
   * such: what arrived of it is no answer to judge (the hub's format is blamed only for a complete body).
   */
  private async readBody(res: Response, url: string, watchdog: StallWatchdog): Promise<string> {
    const chunks: Uint8Array[] = [];
    try {
      for await (const chunk of res.body ?? []) {
        watchdog.received();
        chunks.push(chunk);
      }
    } catch (err) {
      throw new HubError(
        `the answer of ${url} was interrupted (${watchdog.why(err)}): check the network and run the command again, ` +
        'or set HF_ENDPOINT to a mirror you can reach', { cause: err },
      );
    }
    return new TextDecoder().decode(Buffer.concat(chunks));
  }

  /**
   * A request that follows redirects itself: the token goes only to the endpoint's own origin (dropped on a redirect
   * to a CDN). With 'same-origin', a redirect to another origin is returned instead of followed. Network failures
   * become HubErrors. `until`: 'timeout', the answer must come within timeoutMs; or the caller's own signal (a
   * StallWatchdog's).
   */
  private async request(
    method: 'GET' | 'HEAD', url: string, headers: Record<string, string>, until: 'timeout' | AbortSignal,
    follow: 'all' | 'same-origin' = 'all',
  ): Promise<Response> {
    let current = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const origin = new URL(current).origin;
      const auth: Record<string, string> = this.s.token && origin === this.endpointOrigin ? { Authorization: `Bearer ${this.s.token}` } : {};
      let res: Response;
      try {
        res = await fetch(current, {
          method, redirect: 'manual',
          headers: { 'User-Agent': `omnilmm; node/${process.versions.node}`, ...headers, ...auth },
          signal: until === 'timeout' ? AbortSignal.timeout(this.s.timeoutMs) : until,
        });
      } catch (err) {
        throw this.networkError(origin, err);
      }
      const location = res.headers.get('Location');
      if (res.status < 300 || res.status >= 400 || location === null) return res;
      const next = new URL(location, current).href;
      if (follow === 'same-origin' && new URL(next).origin !== origin) return res;
      await res.body?.cancel();
      current = next;
    }
    throw new HubError(`${url} redirected more than ${MAX_REDIRECTS} times; check HF_ENDPOINT`);
  }

  private networkError(origin: string, err: unknown): HubError {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const name = (err as Error).name;
    const detail = name === 'TimeoutError' || name === 'AbortError'
      ? `no answer within ${this.s.timeoutMs / 1000} s`
      : cause?.code ?? cause?.message ?? (err as Error).message;
    const where = origin === this.endpointOrigin ? this.s.endpoint : origin;
    return new HubError(`cannot reach ${where} (${detail}): check the connection, or pass --model <local dir>`, { cause: err });
  }

  /** A HubError for an HTTP error status, using the hub's X-Error-Code when it gives one. */
  private statusError(res: Response, url: string, filename?: string): HubError {
    const code = res.headers.get('X-Error-Code');
    const status = `HTTP ${res.status}`;
    const model = `${this.repoId}`;
    if (code === 'RepoNotFound' || (res.status === 404 && filename === undefined)) {
      return new HubError(`no model ${model} on ${this.s.endpoint} (${status}): check the model id; if it is private, set HF_TOKEN`);
    }
    if (code === 'RevisionNotFound') return new HubError(`${model} has no revision "${this.s.revision}" (${status})`);
    if (code === 'EntryNotFound' || res.status === 404) {
      return new HubError(`${model} has no file ${filename} at revision "${this.s.revision}" (${status})`);
    }
    if (code === 'GatedRepo' || res.status === 401 || res.status === 403) {
      const tokenNote = this.s.token
        ? 'the token in HF_TOKEN was refused or has no access to it'
        : `set HF_TOKEN to an access token (${this.s.endpoint}/settings/tokens)`;
      return new HubError(
        `access to ${model} was refused (${status}): the model is gated or private; accept its terms on ` +
        `${this.s.endpoint}/${model} and ${tokenNote}`,
      );
    }
    return new HubError(`${url} answered ${status}${res.statusText ? ` ${res.statusText}` : ''}; try again later`);
  }
}

/** huggingface_hub `_normalize_etag`: drop a weak-validator prefix and the quotes. */
function normalizeEtag(etag: string | null): string | null {
  return etag === null ? null : etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
