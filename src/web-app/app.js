// The in-browser chat page: downloads and checks the model once (storage.js), runs it in this tab with
// onnxruntime-web (lib/browser/web-model.js), and streams answers about images. Plain browser JavaScript, served as static files.

import { createChatShell, readAsDataUrl } from './chat-shell.js';
import { LiveCamera, captureFrame } from './live-camera.js';
import { loadModelFiles } from './storage.js';

const $ = (id) => document.getElementById(id);

const DEFAULT_QUESTION = 'What is in this picture?';
const NOT_AN_IMAGE = 'this file is not an image the browser can decode';
const BUNDLES = { wasm: '../vendor/onnxruntime-web/ort.wasm.min.mjs', webgpu: '../vendor/onnxruntime-web/ort.webgpu.min.mjs' };

const engine = { backend: null, threads: 1, loadedFromStorage: false, downloadedBytes: 0 };

const state = {
  /** The conversation's images, in order: { url (for the preview), pixels ({ width, height, data } RGBA) }. */
  images: [],
  /** Which image the preview shows (an index into images). */
  shown: -1,
  /** The turns so far: {role: 'user'|'assistant', content}. */
  messages: [],
  /** Aborts the answer being generated. */
  controller: null,
  /** Counts conversations, so that an answer that ends after "New chat" leaves the new one alone. */
  conversation: 0,
};

// ---- loading the model ------------------------------------------------------------------------------------------

/** WebGPU when asked for with ?backend=webgpu or when a hardware adapter is there; a software (fallback) adapter is slower than WASM. */
async function chooseBackend() {
  const forced = new URLSearchParams(location.search).get('backend');
  if (forced !== null && !(forced in BUNDLES)) throw new Error(`?backend=${forced} is not a backend: use ?backend=wasm or ?backend=webgpu`);
  if (forced === 'wasm') return 'wasm';
  const adapter = await navigator.gpu?.requestAdapter().catch(() => null);
  if (forced === 'webgpu') {
    if (!adapter) throw new Error('this browser has no WebGPU; open the page without ?backend=webgpu to use WASM');
    return 'webgpu';
  }
  const software = adapter?.info?.isFallbackAdapter ?? adapter?.isFallbackAdapter;
  return adapter && !software ? 'webgpu' : 'wasm';
}

async function loadModel() {
  engine.backend = await chooseBackend();
  engine.threads = crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  $('engine-info').textContent = `${engine.backend.toUpperCase()} · ${engine.threads} thread${engine.threads > 1 ? 's' : ''}`;
  const files = await loadModelFiles(location.href, showProgress);
  engine.loadedFromStorage = files.loadedFromStorage;
  engine.downloadedBytes = files.downloadedBytes;
  $('model-name').textContent = files.manifest.name;
  $('load-text').textContent = `${files.loadedFromStorage ? 'Stored model' : 'Downloaded'} (${megabytes(sumBytes(files.manifest))}); starting the engine…`;
  let ort;
  let openWebModel;
  try {
    ort = await import(BUNDLES[engine.backend]);
    ({ openWebModel } = await import('../lib/browser/web-model.js'));
  } catch (err) {
    throw new Error(`the page's engine files could not be loaded (${err.message}) — export the model again`);
  }
  return openWebModel({ manifest: files.manifest, bytes: files.bytes, url: files.url, ort, backend: engine.backend, threads: engine.threads });
}

const sumBytes = (manifest) => manifest.files.reduce((sum, file) => sum + file.bytes, 0);
const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

function showProgress({ file, doneBytes, totalBytes }) {
  $('load-progress').max = Math.max(totalBytes, 1);
  $('load-progress').value = doneBytes;
  $('load-text').textContent = file ? `${file} — ${megabytes(doneBytes)} of ${megabytes(totalBytes)}` : `${megabytes(totalBytes)} checked`;
}

function setStatus(kind, title) {
  $('status-dot').className = `dot ${kind}`;
  $('status-dot').title = title;
}

const ready = loadModel().then((model) => {
  $('load-panel').hidden = true;
  $('send').disabled = false;
  $('live-toggle').disabled = false;
  setStatus('ok', 'ready');
  return model;
}, (err) => {
  const message = err.message || String(err);
  $('model-name').textContent = 'not loaded';
  $('load-error').textContent = message;
  $('load-error').hidden = false;
  $('load-progress').hidden = true;
  $('load-text').hidden = true;
  setStatus('down', message);
  throw new Error(message);
});
// The page shows a load error itself; callers of omnilmm.ready still get the rejection.
ready.catch(() => {});

// ---- running the model ------------------------------------------------------------------------------------------

let engineQueue = Promise.resolve();

/** Runs one generation at a time: the chat, live mode and omnilmm.run share the model. */
function exclusive(task) {
  const run = engineQueue.then(task, task);
  engineQueue = run.catch(() => {});
  return run;
}

/** Streams an answer into onText(text so far); resolves with the engine's result. */
function generate(request, signal, onText) {
  return exclusive(async () => {
    const model = await ready;
    signal?.throwIfAborted();
    const chunks = model.stream(request, signal);
    let text = '';
    for (;;) {
      const next = await chunks.next();
      if (next.done) return next.value;
      text += next.value;
      onText(text);
    }
  });
}

// ---- images -----------------------------------------------------------------------------------------------------

/** Decodes to RGBA exactly as stored (no colour conversion, no premultiplied alpha); `label` names it in the error. */
async function decodeImage(blob, label) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    throw new Error(`${label}: ${NOT_AN_IMAGE}`);
  }
  const data = readUnpremultiplied(bitmap) ?? readThroughCanvas(bitmap);
  const pixels = { width: bitmap.width, height: bitmap.height, data };
  bitmap.close();
  return pixels;
}

/**
 * The bitmap's RGBA bytes through a WebGL texture, which keeps the colour of transparent pixels (as PIL's
 * convert('RGB') does); null where WebGL 2 is missing or the image is larger than a texture may be.
 */
function readUnpremultiplied(bitmap) {
  const gl = new OffscreenCanvas(1, 1).getContext('webgl2', { premultipliedAlpha: false });
  if (!gl || Math.max(bitmap.width, bitmap.height) > gl.getParameter(gl.MAX_TEXTURE_SIZE)) return null;
  const texture = gl.createTexture();
  const framebuffer = gl.createFramebuffer();
  try {
    gl.bindTexture(gl.TEXTURE_2D, texture);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
    gl.bindFramebuffer(gl.FRAMEBUFFER, framebuffer);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, texture, 0);
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) return null;
    const data = new Uint8ClampedArray(bitmap.width * bitmap.height * 4);
    gl.readPixels(0, 0, bitmap.width, bitmap.height, gl.RGBA, gl.UNSIGNED_BYTE, data);
    return gl.getError() === gl.NO_ERROR ? data : null;
  } finally {
    gl.deleteFramebuffer(framebuffer);
    gl.deleteTexture(texture);
    gl.getExtension('WEBGL_lose_context')?.loseContext();
  }
}

/** The bitmap's RGBA bytes through a 2-D canvas (which premultiplies: fully transparent pixels lose their colour). */
function readThroughCanvas(bitmap) {
  const context = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
  context.drawImage(bitmap, 0, 0);
  return context.getImageData(0, 0, bitmap.width, bitmap.height).data;
}

async function decodeDataUrl(url, label) {
  let blob;
  try {
    blob = await (await fetch(url)).blob();
  } catch {
    throw new Error(`${label}: not a data: URL of an image`);
  }
  return decodeImage(blob, label);
}

/** Adds the files that decode, in order; each one that does not gets its own message. */
async function useImageFiles(files) {
  const images = [];
  for (const file of files) {
    try {
      images.push({ pixels: await decodeImage(file, `“${file.name}”`), url: await readAsDataUrl(file) });
    } catch (err) {
      showError(err.message);
    }
  }
  if (images.length > 0) addImages(images);
}

// ---- the camera -------------------------------------------------------------------------------------------------

async function captureAndAsk() {
  if (!$('camera-video').videoWidth) return;
  const { width, height, data } = captureFrame($('camera-video'));
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d').putImageData(new ImageData(data, width, height), 0, 0);
  const url = await readAsDataUrl(await canvas.convertToBlob({ type: 'image/png' }));
  closeCamera();
  addImages([{ url, pixels: { width, height, data } }]);
  if (!$('question').value.trim()) $('question').value = DEFAULT_QUESTION;
  send();
}

/** Live mode: each frame is a new single-turn question; the engine's timings tell whether it encoded the image again. */
const liveCamera = new LiveCamera({
  video: $('camera-video'),
  questionInput: $('live-question'),
  log: $('live-log'),
  latency: $('live-latency'),
  async ask(frame, question, signal, onText) {
    const request = {
      ...decodingSettings(),
      images: [{ width: frame.width, height: frame.height, data: frame.data }],
      messages: [{ role: 'user', content: question }],
    };
    const result = await generate(request, signal, onText);
    return { text: result.text, reencoded: result.timings.images_encoded > 0 };
  },
  onError: (err) => {
    closeCamera();
    showError(err.message);
  },
});

// ---- decoding settings ------------------------------------------------------------------------------------------

function decodingSettings() {
  const settings = { decoding: decoding(), maxNewTokens: Math.max(1, Math.round(numberField('max-tokens', 256))) };
  if (settings.decoding === 'sample') {
    settings.temperature = numberField('temperature', 0.7);
    settings.topP = numberField('top-p', 0.8);
    settings.topK = Math.max(1, Math.round(numberField('top-k', 100)));
  }
  return settings;
}

// ---- the conversation -------------------------------------------------------------------------------------------

async function send() {
  const question = $('question').value.trim();
  if (!question || state.controller) return;
  $('question').value = '';
  state.messages.push({ role: 'user', content: question });
  addBubble('user', question);
  const bubble = addBubble('assistant', '');
  bubble.dataset.state = 'waiting';
  const controller = new AbortController();
  const conversation = state.conversation;
  state.controller = controller;
  setBusy(true);
  let answer = '';
  const started = performance.now();
  const request = { ...decodingSettings(), images: state.images.map((image) => image.pixels), messages: [...state.messages] };
  try {
    const result = await generate(request, controller.signal, (text) => {
      answer = text;
      bubble.dataset.state = 'streaming';
      bubble.querySelector('.text').textContent = text;
      $('transcript').scrollTop = $('transcript').scrollHeight;
    });
    bubble.querySelector('.text').textContent = result.text;
    bubble.dataset.state = 'done';
    state.messages.push({ role: 'assistant', content: result.text });
    addMeta(bubble, describeSpeed(result, performance.now() - started));
  } catch (err) {
    if (conversation !== state.conversation) return;
    if (controller.signal.aborted) {
      bubble.dataset.state = 'stopped';
      addMeta(bubble, `stopped · ${seconds(performance.now() - started)}`);
      // A stopped answer stays in the conversation as it is; one with no text takes its question back out.
      if (answer) state.messages.push({ role: 'assistant', content: answer });
      else {
        state.messages.pop();
        $('question').value = question;
      }
    } else {
      bubble.remove();
      state.messages.pop();
      $('question').value = question;
      showError(err.message);
    }
  } finally {
    if (state.controller === controller) state.controller = null;
    setBusy(false);
  }
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

/** "12 tokens · prefill 85.0 tok/s · decode 3.2 tok/s · 5.3 s": prefill counts the prompt tokens not reused. */
function describeSpeed({ timings, finish_reason: finishReason }, ms) {
  const rate = (tokens, s) => (s > 0 ? `${(tokens / s).toFixed(1)} tok/s` : '–');
  const parts = [
    `${timings.new_tokens} tokens`,
    `prefill ${rate(timings.prompt_tokens - timings.reused_tokens, timings.prefill_s)}`,
    `decode ${rate(timings.new_tokens, timings.decode_s)}`,
  ];
  if (timings.images_encoded > 0) parts.push(`image encoding ${timings.encode_s.toFixed(1)} s`);
  parts.push(seconds(ms));
  if (finishReason === 'length') parts.push('cut at max new tokens');
  return parts.join(' · ');
}

function addMeta(bubble, text) {
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = text;
  bubble.append(meta);
}

// ---- the automation hook ----------------------------------------------------------------------------------------

/** For scripts and tests: one generation from data: URLs and messages, with the result's ids. */
async function run({ images = [], messages, decoding: mode = 'greedy', maxNewTokens, seed, temperature, topP, topK, repetitionPenalty, downsampleMode, thinking }) {
  const pixels = [];
  for (const [i, url] of images.entries()) pixels.push(await decodeDataUrl(url, `image ${i + 1}`));
  const request = { images: pixels, messages, decoding: mode, maxNewTokens, seed, temperature, topP, topK, repetitionPenalty, downsampleMode, thinking };
  for (const key of Object.keys(request)) if (request[key] === undefined) delete request[key];
  const result = await generate(request, undefined, () => {});
  return { ...result, backend: engine.backend };
}

window.omnilmm = {
  ready,
  run,
  status: () => ({ backend: engine.backend, threads: engine.threads, loadedFromStorage: engine.loadedFromStorage, downloadedBytes: engine.downloadedBytes }),
};

// ---- wiring -----------------------------------------------------------------------------------------------------

const { addImages, closeCamera, decoding, numberField, addBubble, showError, setBusy, wire } = createChatShell(state, {
  useImageFiles, send, captureFrame: captureAndAsk, liveCamera, setStatus,
  stop: () => state.controller?.abort(),
  samplingNote: 'Sampling: varied answers.',
});
wire();
