// Hub downloads against a local fake of the Hugging Face hub (API listing, resolve URLs, a CDN on another origin),
// serving the minicpmv2-tiny checkpoint. Every option is passed explicitly; no process-wide environment is touched.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { downloadModel, hubSettings, isHubRepoId, selectModelFiles, type HubOptions } from '../src/checkpoint/hub.js';
import { formatBytes, formatDuration, ProgressBar } from '../src/checkpoint/progress.js';
import { resolveModel } from '../src/checkpoint/resolve.js';
import { FileNotFoundError, HubError } from '../src/errors.js';
import { fixturePath } from './helpers/fixtures.js';

const REPO = 'test-org/tiny-minicpmv';
const COMMIT = createHash('sha1').update('tiny-minicpmv commit').digest('hex');
const MODEL_DIR = fixturePath('minicpmv2-tiny', 'model');
const MODEL_FILES = readdirSync(MODEL_DIR).sort();
/** Files the fake repository also lists, none of which a model needs. */
const EXTRA_FILES: Record<string, string> = {
  'modeling_minicpmv.py': 'import os  # remote code must never be fetched\n',
  'README.md': '# tiny\n',
  '.gitattributes': '*.safetensors filter=lfs\n',
  'pytorch_model.bin': 'not wanted when safetensors exist',
  'consolidated.safetensors': 'not named by the index',
  'onnx/model.safetensors': 'in a subfolder',
};

interface Logged {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  range?: string;
  authorization?: string;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const gitBlobSha1 = (data: Buffer) => createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');

/** A fake hub: LFS files (*.safetensors) redirect to a CDN on another origin, like huggingface.co does. */
class FakeHub {
  readonly log: Logged[] = [];
  readonly files = new Map<string, Buffer>();
  /** Files whose next full GET the CDN cuts off half-way. */
  readonly cutOnce = new Set<string>();
  /** Files whose next full GET the CDN stops sending half-way, keeping the connection open. */
  readonly stallOnce = new Set<string>();
  /** Files whose CDN copy has one byte changed (a transfer corrupted on the way). */
  readonly corrupt = new Set<string>();
  /** Files the listing names but the resolve URL answers 404 for. */
  readonly listedOnly = new Set<string>();
  /**
   * How the next file listing is sent: half of it, then silence (stall) or a closed connection (cut); all of it in
   * six pieces 100 ms apart (slow); or an HTML page in its place (html).
   */
  listingOnce: 'stall' | 'cut' | 'slow' | 'html' | null = null;
  private hub = http.createServer((req, res) => this.serveHub(req, res));
  private cdn = http.createServer((req, res) => this.serveCdn(req, res));
  url = '';
  private cdnUrl = '';

  constructor() {
    for (const name of MODEL_FILES) this.files.set(name, readFileSync(join(MODEL_DIR, name)));
    for (const [name, text] of Object.entries(EXTRA_FILES)) this.files.set(name, Buffer.from(text));
  }

  async start(): Promise<void> {
    this.url = await listen(this.hub);
    this.cdnUrl = await listen(this.cdn);
  }

  async stop(): Promise<void> {
    for (const server of [this.hub, this.cdn]) {
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
    }
  }

  isLfs(name: string): boolean {
    return name.endsWith('.safetensors');
  }

  etag(name: string): string {
    const data = this.files.get(name)!;
    return this.isLfs(name) ? sha256(data) : gitBlobSha1(data);
  }

  private record(server: Logged['server'], req: http.IncomingMessage): void {
    this.log.push({ server, method: req.method!, path: decodeURIComponent(req.url!), range: req.headers.range, authorization: req.headers.authorization });
  }

  private serveHub(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.record('hub', req);
    const path = decodeURIComponent(req.url!);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(path);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const repo = api?.[1] ?? resolve?.[1];
    if (repo === 'test-org/gated') return void res.writeHead(401).end('Access to model test-org/gated is restricted.');
    if (repo !== REPO) return void res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end('Repository not found');
    if (api) {
      const siblings = [...this.files.keys(), ...this.listedOnly].map((rfilename) => ({ rfilename }));
      const body = Buffer.from(JSON.stringify({ id: REPO, sha: COMMIT, siblings }));
      const how = this.listingOnce;
      this.listingOnce = null;
      if (how === 'html') return void res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><title>Sign in to the proxy</title>');
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
      const half = body.subarray(0, body.length >> 1);
      if (how === 'stall') return void res.write(half);
      if (how === 'cut') return void res.write(half, () => setTimeout(() => res.socket?.destroy(), 20));
      if (how === 'slow') {
        const piece = Math.ceil(body.length / 6);
        for (let k = 0; k < 6; k++) setTimeout(() => res.write(body.subarray(k * piece, (k + 1) * piece)), 100 * k);
        return void setTimeout(() => res.end(), 600);
      }
      return void res.end(body);
    }
    const name = resolve![3]!;
    const data = this.files.get(name);
    if (!data) return void res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' }).end('Entry not found');
    const common = { 'X-Repo-Commit': COMMIT, ETag: `"${gitBlobSha1(Buffer.from(name))}"` };
    if (this.isLfs(name)) {
      res.writeHead(302, {
        ...common, 'X-Linked-Etag': `"${this.etag(name)}"`, 'X-Linked-Size': String(data.length),
        Location: `${this.cdnUrl}/lfs/${this.etag(name)}?name=${encodeURIComponent(name)}`,
      });
      return void res.end();
    }
    res.writeHead(200, { ...common, ETag: `"${this.etag(name)}"`, 'Content-Length': String(data.length) });
    res.end(req.method === 'HEAD' ? undefined : data);
  }

  private serveCdn(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.record('cdn', req);
    const url = new URL(req.url!, this.cdnUrl);
    const name = url.searchParams.get('name') ?? '';
    const data = this.files.get(name);
    if (!data || url.pathname !== `/lfs/${this.etag(name)}`) return void res.writeHead(404).end();
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    if (start >= data.length) return void res.writeHead(416).end();
    const headers = { 'Content-Length': String(data.length - start), ETag: `"cdn-${start}"` };
    res.writeHead(range ? 206 : 200, range ? { ...headers, 'Content-Range': `bytes ${start}-${data.length - 1}/${data.length}` } : headers);
    if (req.method === 'HEAD') return void res.end();
    if (!range && this.stallOnce.delete(name)) {
      res.write(data.subarray(0, Math.floor(data.length / 2)));
      return;
    }
    if (!range && this.cutOnce.delete(name)) {
      res.write(data.subarray(0, Math.floor(data.length / 2)), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    const body = Buffer.from(data.subarray(start));
    if (this.corrupt.has(name)) body[body.length >> 1] ^= 0xff;
    res.end(body);
  }
}

function listen(server: http.Server): Promise<string> {
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'omnilmm-hub-'));
  tempDirs.push(dir);
  return dir;
}

describe('hub download', () => {
  const hub = new FakeHub();
  const options = (cacheDir: string, extra: HubOptions = {}): HubOptions =>
    ({ endpoint: hub.url, cacheDir, token: null, offline: false, progress: false, ...extra });
  const repoDir = (cacheDir: string) => join(cacheDir, 'models--test-org--tiny-minicpmv');
  let sharedCache = '';

  before(() => hub.start());
  after(async () => {
    await hub.stop();
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('lays out blobs, snapshots and refs like huggingface_hub, with byte-identical files', async () => {
    sharedCache = tempDir();
    hub.log.length = 0;
    const dir = await downloadModel(REPO, options(sharedCache, { token: 'hf_secret' }));
    assert.equal(dir, join(repoDir(sharedCache), 'snapshots', COMMIT));
    assert.equal(readFileSync(join(repoDir(sharedCache), 'refs', 'main'), 'utf8'), COMMIT);
    assert.deepEqual(readdirSync(dir).sort(), MODEL_FILES);
    for (const name of MODEL_FILES) {
      const pointer = join(dir, name);
      assert.ok(lstatSync(pointer).isSymbolicLink(), `${name} is a symlink`);
      assert.equal(readlinkSync(pointer), `../../blobs/${hub.etag(name)}`);
      assert.ok(readFileSync(pointer).equals(hub.files.get(name)!), `${name} is byte-identical`);
    }
    assert.deepEqual(readdirSync(join(repoDir(sharedCache), 'blobs')).sort(), MODEL_FILES.map((n) => hub.etag(n)).sort());

    const requested = new Set(hub.log.map((r) => r.path));
    for (const extra of Object.keys(EXTRA_FILES)) {
      assert.ok(![...requested].some((p) => p.endsWith(`/${extra}`) || p.endsWith(`name=${extra}`)), `${extra} was not fetched`);
    }
    const hubRequests = hub.log.filter((r) => r.server === 'hub');
    const cdnRequests = hub.log.filter((r) => r.server === 'cdn');
    assert.ok(hubRequests.every((r) => r.authorization === 'Bearer hf_secret'), 'the token reaches the hub');
    assert.equal(cdnRequests.filter((r) => r.method === 'GET').length, 2, 'both shards come from the CDN');
    assert.ok(cdnRequests.every((r) => r.authorization === undefined), 'the token is dropped on the cross-origin redirect');
  });

  it('reuses a complete snapshot without any request, online or offline', async () => {
    hub.log.length = 0;
    assert.equal(await downloadModel(REPO, options(sharedCache)), join(repoDir(sharedCache), 'snapshots', COMMIT));
    assert.equal(await downloadModel(REPO, options(sharedCache, { offline: true })), join(repoDir(sharedCache), 'snapshots', COMMIT));
    assert.equal(await resolveModel(REPO, options(sharedCache)), join(repoDir(sharedCache), 'snapshots', COMMIT));
    assert.equal(hub.log.length, 0);
  });

  it('sends no Authorization header without a token', async () => {
    hub.log.length = 0;
    await downloadModel(REPO, options(tempDir()));
    assert.ok(hub.log.length > 0 && hub.log.every((r) => r.authorization === undefined));
  });

  it('resumes a transfer the server cut half-way with a Range request', async () => {
    const cacheDir = tempDir();
    const shard = 'model-00001-of-00002.safetensors';
    hub.cutOnce.add(shard);
    hub.log.length = 0;
    const dir = await downloadModel(REPO, options(cacheDir));
    const gets = hub.log.filter((r) => r.server === 'cdn' && r.method === 'GET' && r.path.endsWith(`name=${shard}`));
    assert.equal(gets.length, 2);
    assert.equal(gets[0]!.range, undefined);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(gets[1]!.range ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt < hub.files.get(shard)!.length, `resumed at byte ${resumedAt}`);
    assert.ok(readFileSync(join(dir, shard)).equals(hub.files.get(shard)!));
    assert.ok(!readdirSync(join(repoDir(cacheDir), 'blobs')).some((f) => f.endsWith('.incomplete')));
  });

  it('says in one line what it downloads where no progress bar is drawn (not a terminal)', async () => {
    const lines: string[] = [];
    const dir = await downloadModel(REPO, options(tempDir(), { progress: { write: (text: string) => lines.push(text) } }));
    // Two rounds: the small files (config, tokenizer, …) first, then the weights (the model's shards).
    const lfs = MODEL_FILES.filter((name) => hub.isLfs(name));
    const weightBytes = lfs.reduce((sum, name) => sum + hub.files.get(name)!.length, 0);
    const said = lines.filter((line) => line.startsWith('downloading'));
    assert.equal(said.length, 2, lines.join(''));
    assert.match(said[0]!, new RegExp(`^downloading ${REPO}: \\d+ files, [\\d.]+ kB from ${hub.url}\n$`));
    assert.equal(said[1], `downloading ${REPO}: ${lfs.length} files, ${formatBytes(weightBytes)} from ${hub.url}\n`);
    assert.ok(lfs.every((name) => existsSync(join(dir, name))));
  });

  it('cuts a transfer that stops sending for timeoutMs and resumes it', async () => {
    const cacheDir = tempDir();
    const shard = 'model-00001-of-00002.safetensors';
    hub.stallOnce.add(shard);
    hub.log.length = 0;
    const dir = await downloadModel(REPO, options(cacheDir, { timeoutMs: 300 }));
    const gets = hub.log.filter((r) => r.server === 'cdn' && r.method === 'GET' && r.path.endsWith(`name=${shard}`));
    assert.equal(gets.length, 2);
    assert.equal(gets[1]!.range, `bytes=${Math.floor(hub.files.get(shard)!.length / 2)}-`);
    assert.ok(readFileSync(join(dir, shard)).equals(hub.files.get(shard)!));
    // Without retries the stall itself is the reason given.
    hub.stallOnce.add(shard);
    await assert.rejects(downloadModel(REPO, options(tempDir(), { timeoutMs: 300, maxRetries: 0 })), (err: Error) =>
      err instanceof HubError && /interrupted after \d+ of \d+ bytes \(no data for 0\.3 s\)/.test(err.message));
  });

  it('cuts a file listing that stops sending for timeoutMs and says it was interrupted, not that it is no JSON', async () => {
    const listing = `${hub.url}/api/models/${REPO}/revision/main`;
    const advice = 'check the network and run the command again, or set HF_ENDPOINT to a mirror you can reach';
    hub.listingOnce = 'stall';
    await assert.rejects(downloadModel(REPO, options(tempDir(), { timeoutMs: 300 })), (err: Error) =>
      err instanceof HubError && err.message === `the answer of ${listing} was interrupted (no data for 0.3 s): ${advice}`);
    hub.listingOnce = 'cut';
    await assert.rejects(downloadModel(REPO, options(tempDir())), (err: Error) =>
      err instanceof HubError && err.message.startsWith(`the answer of ${listing} was interrupted (`) && err.message.endsWith(`): ${advice}`));
    // The limit is on silence, not on the whole answer: 600 ms of pieces 100 ms apart pass a 300 ms limit.
    hub.listingOnce = 'slow';
    const dir = await downloadModel(REPO, options(tempDir(), { timeoutMs: 300 }));
    assert.deepEqual(readdirSync(dir).sort(), MODEL_FILES);
    // A complete answer that is not JSON is still the endpoint's fault.
    hub.listingOnce = 'html';
    await assert.rejects(downloadModel(REPO, options(tempDir())), (err: Error) =>
      err instanceof HubError && err.message === `${listing} did not answer with JSON: is HF_ENDPOINT (${hub.url}) a Hugging Face hub?`);
  });

  it('keeps the .incomplete file of an interrupted call and resumes it in the next call', async () => {
    const cacheDir = tempDir();
    const shard = 'model-00002-of-00002.safetensors';
    const size = hub.files.get(shard)!.length;
    hub.cutOnce.add(shard);
    await assert.rejects(downloadModel(REPO, options(cacheDir, { maxRetries: 0 })), (err: Error) => {
      assert.ok(err instanceof HubError);
      assert.match(err.message, new RegExp(`download of ${shard} \\(${REPO}\\) was interrupted after \\d+ of ${size} bytes .*run the command again to resume`));
      return true;
    });
    const part = join(repoDir(cacheDir), 'blobs', `${hub.etag(shard)}.incomplete`);
    const partSize = statSync(part).size;
    assert.ok(partSize > 0 && partSize < size);
    hub.log.length = 0;
    const dir = await downloadModel(REPO, options(cacheDir));
    const gets = hub.log.filter((r) => r.server === 'cdn' && r.method === 'GET');
    assert.deepEqual(gets.map((r) => r.range), [`bytes=${partSize}-`]);
    assert.ok(readFileSync(join(dir, shard)).equals(hub.files.get(shard)!));
    assert.ok(!existsSync(part));
  });

  it('refuses an LFS file whose sha256 differs from X-Linked-Etag, keeping nothing of it', async () => {
    const cacheDir = tempDir();
    const shard = 'model-00001-of-00002.safetensors';
    hub.corrupt.add(shard);
    try {
      await assert.rejects(downloadModel(REPO, options(cacheDir)),
        (err: Error) => err instanceof HubError && err.message === `${shard} (${REPO}) arrived corrupted (its sha256 differs from the hub's); run the command again`);
    } finally {
      hub.corrupt.clear();
    }
    assert.ok(!readdirSync(join(repoDir(cacheDir), 'blobs')).some((f) => f.startsWith(hub.etag(shard))));
  });

  it('offline mode uses only the cache and names what is missing', async () => {
    hub.log.length = 0;
    await assert.rejects(downloadModel(REPO, options(tempDir(), { offline: true })),
      (err: Error) => err instanceof HubError && /offline mode \(HF_HUB_OFFLINE\).*missing refs\/main/.test(err.message));
    const cacheDir = tempDir();
    const dir = await downloadModel(REPO, options(cacheDir));
    rmSync(join(dir, 'model-00002-of-00002.safetensors'));
    hub.log.length = 0;
    await assert.rejects(downloadModel(REPO, options(cacheDir, { offline: true })),
      (err: Error) => err instanceof HubError && /missing model-00002-of-00002\.safetensors\. .*--model <local dir>/.test(err.message));
    assert.equal(hub.log.length, 0);
    // Online, only the missing file is fetched again (its blob is still there: just the HEAD).
    await downloadModel(REPO, options(cacheDir));
    assert.deepEqual(hub.log.map((r) => `${r.method} ${r.path}`), [
      `GET /api/models/${REPO}/revision/main`,
      `HEAD /${REPO}/resolve/${COMMIT}/model-00002-of-00002.safetensors`,
    ]);
  });

  it('reports 401, 404, a missing file and an unreachable endpoint as HubErrors that say what to do', async () => {
    await assert.rejects(downloadModel('test-org/gated', options(tempDir())),
      (err: Error) => err instanceof HubError && /access to test-org\/gated was refused \(HTTP 401\).*gated or private.*set HF_TOKEN/.test(err.message));
    await assert.rejects(downloadModel('test-org/gated', options(tempDir(), { token: 'hf_wrong' })),
      (err: Error) => err instanceof HubError && /the token in HF_TOKEN was refused/.test(err.message));
    await assert.rejects(downloadModel('test-org/nothing', options(tempDir())),
      (err: Error) => err instanceof HubError && /no model test-org\/nothing on http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\): check the model id/.test(err.message));
    // The listing names tokenizer.json, but resolving it answers 404 (EntryNotFound).
    hub.listedOnly.add('tokenizer.json');
    await assert.rejects(downloadModel(REPO, options(tempDir())),
      (err: Error) => err instanceof HubError && /has no file tokenizer\.json at revision "main" \(HTTP 404\)/.test(err.message));
    hub.listedOnly.clear();

    const closed = http.createServer();
    const port = await listen(closed);
    await new Promise((done) => closed.close(done));
    await assert.rejects(downloadModel(REPO, options(tempDir(), { endpoint: port })), (err: Error) =>
      err instanceof HubError && err.message.startsWith(`cannot reach ${port} (ECONNREFUSED): check the connection, or pass --model <local dir>`));
  });
});

describe('hub helpers', () => {
  it('takes settings from the options first, then the environment, then the defaults', () => {
    const env = { HF_HOME: '/hf', HF_ENDPOINT: 'https://mirror.example/', HF_TOKEN: ' hf_env ', HF_HUB_OFFLINE: 'YES' };
    const fromEnv = hubSettings({}, env);
    assert.equal(fromEnv.cacheDir, join('/hf', 'hub'));
    assert.equal(fromEnv.endpoint, 'https://mirror.example');
    assert.equal(fromEnv.token, 'hf_env');
    assert.equal(fromEnv.offline, true);
    assert.equal(hubSettings({}, { ...env, HF_HUB_CACHE: '/cache' }).cacheDir, '/cache');
    const explicit = hubSettings({ cacheDir: '/c', endpoint: 'http://h', token: null, offline: false }, env);
    assert.deepEqual([explicit.cacheDir, explicit.endpoint, explicit.token, explicit.offline], ['/c', 'http://h', null, false]);
    const bare = hubSettings({ token: null }, { XDG_CACHE_HOME: '/xdg' });
    assert.deepEqual([bare.cacheDir, bare.endpoint, bare.offline, bare.revision], [join('/xdg', 'huggingface', 'hub'), 'https://huggingface.co', false, 'main']);
  });

  it('recognises hub ids and picks only the files a model needs', () => {
    for (const id of ['openbmb/MiniCPM-V-2', 'org/name.v1_2']) assert.ok(isHubRepoId(id), id);
    for (const id of ['gpt2', 'a/b/c', './x/y', '/abs/path', 'org/../x', 'org--x/y', 'org/x.git', '']) assert.ok(!isHubRepoId(id), id);
    assert.deepEqual(
      selectModelFiles(['config.json', 'modeling_x.py', 'model.safetensors', 'pytorch_model.bin', 'tokenizer.model', 'sub/config.json', 'README.md']),
      ['config.json', 'model.safetensors', 'tokenizer.model'],
    );
    assert.deepEqual(
      selectModelFiles(['config.json', 'pytorch_model-00001-of-00002.bin', 'pytorch_model.bin.index.json', 'added_tokens.json', 'x.py']),
      ['config.json', 'pytorch_model-00001-of-00002.bin', 'pytorch_model.bin.index.json', 'added_tokens.json'],
    );
  });

  it('resolveModel takes folders as they are and refuses what is neither a folder nor a hub id', async () => {
    assert.equal(await resolveModel(MODEL_DIR), MODEL_DIR);
    await assert.rejects(resolveModel(join(MODEL_DIR, 'config.json')), (err: Error) => err instanceof FileNotFoundError && /is a file/.test(err.message));
    for (const name of ['./no/such/dir', 'no/such/dir', 'nonexistent']) {
      await assert.rejects(resolveModel(name), (err: Error) =>
        err instanceof FileNotFoundError && err.message.startsWith(`no such folder ${name}, and not a hub id`));
    }
  });

  it('draws a progress bar on a TTY only', () => {
    const written: string[] = [];
    let clock = 0;
    const tty = { isTTY: true, columns: 200, write: (text: string) => written.push(text) };
    const bar = new ProgressBar('model', 2_000_000, { stream: tty, now: () => clock });
    clock = 1000;
    bar.advance(1_000_000);
    assert.match(written.at(-1)!, /^\rmodel \[#{12}-{12}\]  50% 1\.0 MB\/2\.0 MB 1\.0 MB\/s ETA 0:01/);
    bar.finish();
    assert.equal(written.at(-1), '\n');
    const silent: string[] = [];
    const pipe = new ProgressBar('model', 10, { stream: { isTTY: false, write: (text: string) => silent.push(text) } });
    pipe.advance(10);
    pipe.finish();
    assert.deepEqual(silent, []);
    assert.deepEqual([formatBytes(999), formatBytes(1234567), formatDuration(3725), formatDuration(59)], ['999 B', '1.2 MB', '1:02:05', '0:59']);
  });

  it('fits the bar into the terminal: the bar narrows, then the rate goes, and the ETA is never cut', () => {
    for (const [columns, label] of [[80, 'decoder   '], [80, 'openbmb/OmniLMM-12B: 5 files'], [50, 'decoder   '], [30, 'openbmb/OmniLMM-12B']] as const) {
      const written: string[] = [];
      let clock = 0;
      // OmniLMM-12B's 23.2 GB at 1.7 MB/s: amounts, rate and ETA at their widest.
      const bar = new ProgressBar(label, 23_200_000_000, { stream: { isTTY: true, columns, write: (text: string) => written.push(text) }, now: () => clock });
      clock = 2_000_000;
      bar.advance(3_456_789_012);
      const line = written.at(-1)!.replace(/^\r/, '').replace(/\x1b\[K$/, '');
      assert.ok(line.length <= columns - 1, `${line.length} columns of ${columns}: ${line}`);
      assert.match(line, / 15% (3\.5 GB\/23\.2 GB )?(1\.7 MB\/s )?ETA 3:10:2\d$/, `${columns} columns`);
      bar.complete();
      assert.match(written.at(-2)!, /\] 100% /);
    }
  });
});
