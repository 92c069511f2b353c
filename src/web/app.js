// The chat page: images for a conversation (they go with its first question), answers streamed from
// /v1/chat/completions (server-sent events), the model's reasoning (reasoning_content) shown apart, collapsed.
// Plain browser JavaScript, no framework and nothing loaded from elsewhere.

import { createChatShell, readAsDataUrl } from './chat-shell.js';
import { LiveCamera } from './live-camera.js';

const $ = (id) => document.getElementById(id);

/** Images in these types go as they are; anything else the browser can show is re-encoded as JPEG. */
const SENDABLE_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/gif']);
/** Larger files are scaled down first, to stay under the server's 20 MiB request limit. */
const MAX_SEND_BYTES = 12 * 1024 * 1024;
const MAX_SIDE = 4096;
const DEFAULT_QUESTION = 'What is in this picture?';
const KEY_STORAGE = 'omnilmm.apiKey';

const state = {
  /** The conversation's images, in order: { url } (a data: URL, sent as it is). */
  images: [],
  /** Which image the preview shows (an index into images). */
  shown: -1,
  /** The turns so far: {role: 'user'|'assistant', content}. */
  messages: [],
  /** Aborts the answer being generated. */
  controller: null,
  /** Counts conversations, so that an answer that ends after "New chat" leaves the new one alone. */
  conversation: 0,
  apiKey: localStorage.getItem(KEY_STORAGE) || '',
};

// ---- server status and the API key ------------------------------------------------------------------------------

function authHeaders() {
  return state.apiKey ? { authorization: `Bearer ${state.apiKey}` } : {};
}

async function connect() {
  try {
    const res = await fetch('/v1/models', { headers: authHeaders() });
    if (res.status === 401) {
      setStatus('down', 'API key needed');
      if (await askForKey(state.apiKey ? 'That key was not accepted.' : '')) return connect();
      return;
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const models = await res.json();
    $('model-name').textContent = models.data[0]?.id ?? 'model';
    setStatus('ok', 'ready');
  } catch (err) {
    setStatus('down', `server not reachable: ${err.message}`);
  }
}

function setStatus(kind, title) {
  $('status-dot').className = `dot ${kind}`;
  $('status-dot').title = title;
}

/** Shows the key dialog; resolves true once a key was entered. */
function askForKey(message) {
  const dialog = $('key-dialog');
  $('key-error').hidden = !message;
  $('key-error').textContent = message || '';
  $('api-key').value = state.apiKey;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const key = $('api-key').value.trim();
      if (!key) return resolve(false);
      state.apiKey = key;
      localStorage.setItem(KEY_STORAGE, key);
      resolve(true);
    }, { once: true });
  });
}

// ---- the image --------------------------------------------------------------------------------------------------

/** Adds the image files in order; anything that is not an image gets an error and is skipped. */
async function useImageFiles(files) {
  const urls = [];
  for (const file of files) {
    if (!file || !file.type.startsWith('image/')) {
      showError(`“${file?.name ?? 'that'}” is not an image: choose a JPEG, PNG, WebP or GIF file.`);
      continue;
    }
    try {
      urls.push(SENDABLE_TYPES.has(file.type) && file.size <= MAX_SEND_BYTES ? await readAsDataUrl(file) : await reencode(file));
    } catch {
      showError(`This browser cannot read “${file.name}”: try a JPEG, PNG, WebP or GIF file.`);
    }
  }
  if (urls.length > 0) addImages(urls.map((url) => ({ url })));
}

/** Decodes in the browser and re-encodes as JPEG, at most MAX_SIDE pixels on the longer side. */
async function reencode(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return canvas.toDataURL('image/jpeg', 0.92);
}

// ---- the camera -------------------------------------------------------------------------------------------------

function captureFrame() {
  const video = $('camera-video');
  if (!video.videoWidth) return;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  closeCamera();
  addImages([{ url: canvas.toDataURL('image/jpeg', 0.92) }]);
  if (!$('question').value.trim()) $('question').value = DEFAULT_QUESTION;
  send();
}

/** Live mode: each frame is a new single-turn question (its JPEG and the standing question), answered in the dialog. */
const liveCamera = new LiveCamera({
  video: $('camera-video'),
  questionInput: $('live-question'),
  log: $('live-log'),
  latency: $('live-latency'),
  ask: askAboutFrame,
  onError: (err) => {
    closeCamera();
    showError(err.message);
  },
});

async function askAboutFrame(frame, question, signal, onText) {
  frame.dataUrl ??= await jpegDataUrl(frame);
  const messages = [{ role: 'user', content: [{ type: 'image_url', image_url: { url: frame.dataUrl } }, { type: 'text', text: question }] }];
  let text = '';
  await streamAnswer(signal, (chunk) => {
    text += chunk;
    onText(text);
  }, () => {}, messages);
  return { text };
}

async function jpegDataUrl({ width, height, data }) {
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d').putImageData(new ImageData(data, width, height), 0, 0);
  return readAsDataUrl(await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.92 }));
}

// ---- decoding settings ------------------------------------------------------------------------------------------

function requestSettings() {
  const settings = { max_tokens: Math.max(1, Math.round(numberField('max-tokens', 1024))) };
  const mode = decoding();
  if (mode === 'greedy') settings.temperature = 0;
  else if (mode === 'beam') settings.num_beams = Math.max(2, Math.round(numberField('num-beams', 3)));
  else {
    settings.temperature = numberField('temperature', 0.7);
    settings.top_p = numberField('top-p', 0.8);
  }
  if ($('thinking').checked) settings.thinking = true;
  return settings;
}

// ---- the conversation -------------------------------------------------------------------------------------------

/** The OpenAI-format messages: the images go with the first user message, in order, before its text. */
function wireMessages() {
  return state.messages.map((message, i) => {
    if (i !== 0 || state.images.length === 0) return { role: message.role, content: message.content };
    const images = state.images.map(({ url }) => ({ type: 'image_url', image_url: { url } }));
    return { role: 'user', content: [...images, { type: 'text', text: message.content }] };
  });
}

/** The answer's reasoning in a collapsed block above its text, made when the first reasoning arrives. */
function showReasoning(bubble, text) {
  let block = bubble.querySelector('.reasoning');
  if (!block) {
    block = document.createElement('details');
    block.className = 'reasoning';
    const summary = document.createElement('summary');
    summary.textContent = 'Reasoning';
    const body = document.createElement('div');
    body.className = 'reasoning-text';
    block.append(summary, body);
    bubble.prepend(block);
  }
  block.querySelector('.reasoning-text').textContent = text;
}

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
  let reasoning = '';
  const started = performance.now();
  try {
    const result = await streamAnswer(controller.signal, (chunk) => {
      answer += chunk;
      bubble.dataset.state = 'streaming';
      bubble.querySelector('.text').textContent = answer;
      scrollToEnd();
    }, (chunk) => {
      reasoning += chunk;
      bubble.dataset.state = 'streaming';
      showReasoning(bubble, reasoning);
      scrollToEnd();
    });
    bubble.dataset.state = 'done';
    state.messages.push({ role: 'assistant', content: answer });
    addMeta(bubble, result, performance.now() - started);
  } catch (err) {
    if (conversation !== state.conversation) return;
    if (controller.signal.aborted) {
      bubble.dataset.state = 'stopped';
      addMeta(bubble, null, performance.now() - started);
      // A stopped answer stays in the conversation as it is; one with no text takes its question back out.
      if (answer) state.messages.push({ role: 'assistant', content: answer });
      else if (state.messages.at(-1)?.content === question) {
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

function addMeta(bubble, result, ms) {
  const meta = document.createElement('span');
  meta.className = 'meta';
  const seconds = `${(ms / 1000).toFixed(1)} s`;
  if (!result) meta.textContent = `stopped · ${seconds}`;
  else {
    const tokens = result.usage ? `${result.usage.completion_tokens} tokens · ` : '';
    const reason = result.finishReason === 'length' ? ' · cut at max tokens' : '';
    meta.textContent = `${tokens}${seconds}${reason}`;
  }
  bubble.append(meta);
}

/**
 * POSTs the conversation (or the messages given) and feeds the streamed text to onText (the answer) and onReasoning (its reasoning);
 * resolves with {finishReason, usage}.
 */
async function streamAnswer(signal, onText, onReasoning, messages = wireMessages()) {
  const body = JSON.stringify({
    model: $('model-name').textContent,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    ...requestSettings(),
  });
  let res = await post(body, signal);
  while (res.status === 401) {
    const message = state.apiKey ? 'That key was not accepted.' : '';
    if (!(await askForKey(message))) throw new Error('This server needs an API key.');
    res = await post(body, signal);
  }
  if (!res.ok) throw new Error(await errorMessage(res));
  const result = { finishReason: null, usage: null };
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split('\n').filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trim()).join('\n');
      if (!data || data === '[DONE]') continue;
      const message = JSON.parse(data);
      if (message.error) throw new Error(message.error.message);
      if (message.usage) result.usage = message.usage;
      const choice = message.choices?.[0];
      if (choice?.delta?.reasoning_content) onReasoning(choice.delta.reasoning_content);
      if (choice?.delta?.content) onText(choice.delta.content);
      if (choice?.finish_reason) result.finishReason = choice.finish_reason;
    }
  }
  return result;
}

function post(body, signal) {
  return fetch('/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders() },
    body,
    signal,
  });
}

async function errorMessage(res) {
  try {
    const body = await res.json();
    if (body.error?.message) return body.error.message;
  } catch {
    // Not JSON: fall through to the status line.
  }
  return res.status === 429 ? 'The server is busy: try again in a moment.' : `The server answered HTTP ${res.status}.`;
}

function stop() {
  state.controller?.abort();
}

// ---- wiring -----------------------------------------------------------------------------------------------------

const {
  addImages, closeCamera, decoding, numberField, addBubble, showError, scrollToEnd, setBusy, wire,
} = createChatShell(state, {
  useImageFiles, send, stop, captureFrame, liveCamera, setStatus,
  samplingNote: 'Sampling: varied answers (the model’s defaults: top-k 100, repetition penalty 1.05).',
});
wire();
connect();
