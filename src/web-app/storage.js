// The model's files for the in-browser page: downloaded once with one progress report, each checked against the
// manifest's size and sha256, kept in Cache Storage (keyed by URL and hash) so that a reload downloads nothing.

const CACHE_NAME = 'omnilmm-model-v1';
const MANIFEST_FORMAT = 'omnilmm-web/1';
/** The model's folder, relative to the page; messages name files as `model/<path>`. */
const MODEL_DIR = 'model/';
const KINDS = new Set(['small', 'graph', 'weights']);
const EXPORT_AGAIN = 'the export is incomplete; export it again';

/** A problem with the export or the download, in one line that the page shows as it is. */
export class ModelFileError extends Error {}

/**
 * Reads model/manifest.json next to `pageUrl` and makes every file it lists available, downloading those not stored.
 * onProgress({ file, doneBytes, totalBytes }) follows along (file: the one downloading, null once all are in).
 * Resolves to { manifest, bytes(path), url(path), loadedFromStorage, downloadedBytes }.
 */
export async function loadModelFiles(pageUrl, onProgress) {
  if (!globalThis.caches || !globalThis.crypto?.subtle) {
    throw new ModelFileError('storing and checking the model needs a secure page: open it as http://localhost or over https');
  }
  const base = new URL(MODEL_DIR, pageUrl);
  const manifest = await readManifest(base);
  const cache = await caches.open(CACHE_NAME);
  const keyOf = (file) => `${new URL(file.path, base).href}?sha256=${file.sha256}`;
  const totalBytes = manifest.files.reduce((sum, file) => sum + file.bytes, 0);
  let doneBytes = 0;
  let downloadedBytes = 0;
  for (const file of manifest.files) {
    if (!(await isStored(cache, keyOf(file)))) {
      await download(cache, new URL(file.path, base).href, keyOf(file), file, (received) => {
        onProgress({ file: MODEL_DIR + file.path, doneBytes: doneBytes + received, totalBytes });
      });
      downloadedBytes += file.bytes;
    }
    doneBytes += file.bytes;
    onProgress({ file: MODEL_DIR + file.path, doneBytes, totalBytes });
  }
  onProgress({ file: null, doneBytes, totalBytes });
  await forgetOtherFiles(cache, base, new Set(manifest.files.map(keyOf)));

  const byPath = new Map(manifest.files.map((file) => [file.path, file]));
  const stored = async (path) => {
    const file = byPath.get(path);
    if (!file) throw new ModelFileError(`${MODEL_DIR}${path}: not in the manifest — ${EXPORT_AGAIN}`);
    return { file, response: await cache.match(keyOf(file)) };
  };
  return {
    manifest,
    loadedFromStorage: downloadedBytes === 0,
    downloadedBytes,
    /** A file's bytes from storage, checked again (meant for the small files). */
    async bytes(path) {
      const { file, response } = await stored(path);
      const data = new Uint8Array(await response.arrayBuffer());
      await verify(file, data);
      return data;
    },
    /** A blob: URL of a file's stored copy, for onnxruntime-web to fetch. */
    async url(path) {
      const { response } = await stored(path);
      return URL.createObjectURL(await response.blob());
    },
  };
}

async function readManifest(base) {
  const label = `${MODEL_DIR}manifest.json`;
  const response = await get(new URL('manifest.json', base).href, label);
  let manifest;
  try {
    manifest = await response.json();
  } catch {
    throw new ModelFileError(`${label}: not valid JSON — ${EXPORT_AGAIN}`);
  }
  if (manifest?.format !== MANIFEST_FORMAT) {
    throw new ModelFileError(`${label}: format ${JSON.stringify(manifest?.format)} is not ${MANIFEST_FORMAT} — export the model again with this version of omnilmm`);
  }
  const valid = (file) => typeof file?.path === 'string' && file.path !== '' && !/[?#]/.test(file.path)
    && Number.isSafeInteger(file.bytes) && file.bytes >= 0 && /^[0-9a-f]{64}$/.test(file.sha256) && KINDS.has(file.kind);
  const invalid = Array.isArray(manifest.files) ? manifest.files.find((file) => !valid(file)) : {};
  if (invalid) throw new ModelFileError(`${label}: the file list is damaged (${JSON.stringify(invalid).slice(0, 80)}) — ${EXPORT_AGAIN}`);
  return manifest;
}

/** Fetches from the network (never the HTTP cache), turning failures into messages about `label`. */
async function get(url, label, signal) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-store', signal });
  } catch (err) {
    throw new ModelFileError(`${label}: the download failed (${err.message}) — check the connection and reload the page`);
  }
  if (response.status === 404) throw new ModelFileError(`${label}: not found (HTTP 404) — ${EXPORT_AGAIN}`);
  if (!response.ok) throw new ModelFileError(`${label}: the server answered HTTP ${response.status} — reload the page to try again`);
  return response;
}

/** A file counts as stored once its check passed, which a marker entry beside it records. */
async function isStored(cache, key) {
  return Boolean(await cache.match(verifiedKey(key))) && Boolean(await cache.match(key));
}

const verifiedKey = (key) => `${key}&verified`;

/**
 * Streams one file into the cache while checking its size and sha256; a file that fails is deleted again. The body
 * goes to Cache Storage as a stream: a put of an in-memory Response over about 256 MB fails in Chromium.
 */
async function download(cache, url, key, file, onBytes) {
  const label = MODEL_DIR + file.path;
  const controller = new AbortController();
  const response = await get(url, label, controller.signal);
  const [forStorage, forCheck] = response.body.tee();
  const storing = cache.put(key, new Response(forStorage, { headers: { 'content-type': 'application/octet-stream' } }));
  try {
    await verify(file, await readExactly(forCheck, file, onBytes));
    await storing;
  } catch (err) {
    controller.abort();
    await storing.catch(() => {});
    await cache.delete(key);
    if (err instanceof ModelFileError) throw err;
    throw new ModelFileError(`${label}: could not be downloaded and stored (${err.message}) — reload the page to try again`);
  }
  await cache.put(verifiedKey(key), new Response(file.sha256));
}

/** Reads a body into a buffer of the manifest's size; more or fewer bytes are an error naming both sizes. */
async function readExactly(stream, file, onBytes) {
  const data = new Uint8Array(file.bytes);
  const reader = stream.getReader();
  let received = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (received + value.length > file.bytes) {
      await reader.cancel();
      throw new ModelFileError(`${MODEL_DIR}${file.path}: size over ${file.bytes} bytes, expected ${file.bytes} — the file does not belong to this export; export it again`);
    }
    data.set(value, received);
    received += value.length;
    onBytes(received);
  }
  if (received !== file.bytes) {
    throw new ModelFileError(`${MODEL_DIR}${file.path}: size ${received} bytes, expected ${file.bytes} — ${EXPORT_AGAIN}`);
  }
  return data;
}

async function verify(file, data) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  const hex = Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
  if (hex !== file.sha256) {
    throw new ModelFileError(`${MODEL_DIR}${file.path}: sha256 ${hex.slice(0, 12)}… differs from the manifest's ${file.sha256.slice(0, 12)}… — the file is damaged; export it again`);
  }
}

/** Deletes the stored files of this model folder that the manifest no longer lists (an earlier export's). */
async function forgetOtherFiles(cache, base, keys) {
  for (const request of await cache.keys()) {
    const key = request.url.replace(/&verified$/, '');
    if (key.startsWith(base.href) && !keys.has(key)) await cache.delete(request);
  }
}
