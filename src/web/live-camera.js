// Live camera mode, shared by the server-backed page and the in-browser page: a standing question about a new frame
// each time the previous answer has finished; a frame that barely changed is replaced by the last one sent, pixel for pixel.

const DEFAULT_LIVE_QUESTION = 'What do you see? What changed?';

/** Frames are compared as grey copies this small: enough to see a person move, blind to sensor noise. */
const THUMBNAIL_WIDTH = 32;
const THUMBNAIL_HEIGHT = 24;
/**
 * A frame whose grey thumbnail differs from the last sent one's by less than this mean absolute difference (0-255 grey
 * levels per pixel) counts as unchanged. Webcam noise and JPEG flicker stay around 1-3; a hand in the picture or a
 * turned camera gives 15 and more.
 */
const CHANGE_THRESHOLD = 6;
/** The log keeps this many answers, newest first. */
const LOG_LENGTH = 20;
/** Waiting for a new video frame gives up after this long, so a stalled camera cannot stall the loop. */
const FRAME_WAIT_MS = 1000;

/** The video's current picture as RGBA pixels, with its grey thumbnail for comparisons. */
export function captureFrame(video) {
  const width = video.videoWidth;
  const height = video.videoHeight;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(video, 0, 0, width, height);
  const { data } = context.getImageData(0, 0, width, height);
  return { width, height, data, grey: greyThumbnail(canvas) };
}

function greyThumbnail(source) {
  const context = new OffscreenCanvas(THUMBNAIL_WIDTH, THUMBNAIL_HEIGHT).getContext('2d', { willReadFrequently: true });
  context.drawImage(source, 0, 0, THUMBNAIL_WIDTH, THUMBNAIL_HEIGHT);
  const rgba = context.getImageData(0, 0, THUMBNAIL_WIDTH, THUMBNAIL_HEIGHT).data;
  const grey = new Float32Array(THUMBNAIL_WIDTH * THUMBNAIL_HEIGHT);
  for (let i = 0; i < grey.length; i++) grey[i] = 0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2];
  return grey;
}

function meanAbsoluteDifference(a, b) {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

function nextVideoFrame(video) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, FRAME_WAIT_MS);
    video.requestVideoFrameCallback?.(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Asks `ask(frame, question, signal, onText)` about one frame after another until stopped. `ask` resolves to
 * `{ text, reencoded }` (reencoded: true/false when the engine says, undefined when it cannot tell). Each answer goes
 * into `log` (a list element, newest first) with its latency; `latency` shows the last one.
 */
export class LiveCamera {
  constructor({ video, questionInput, log, latency, ask, onError }) {
    Object.assign(this, { video, questionInput, log, latency, ask, onError });
    this.controller = null;
    this.frames = 0;
  }

  get running() {
    return this.controller !== null;
  }

  start() {
    if (this.running) return;
    this.controller = new AbortController();
    this.loop(this.controller.signal);
  }

  stop() {
    this.controller?.abort(new DOMException('Live camera stopped', 'AbortError'));
    this.controller = null;
  }

  async loop(signal) {
    let lastSent = null;
    while (!signal.aborted) {
      if (!this.video.videoWidth) {
        await nextVideoFrame(this.video);
        continue;
      }
      const captured = captureFrame(this.video);
      const unchanged = lastSent && lastSent.width === captured.width && lastSent.height === captured.height
        && meanAbsoluteDifference(lastSent.grey, captured.grey) < CHANGE_THRESHOLD;
      const frame = unchanged ? lastSent : captured;
      lastSent = frame;
      const question = this.questionInput.value.trim() || DEFAULT_LIVE_QUESTION;
      const entry = this.addEntry();
      const started = performance.now();
      try {
        const result = await this.ask(frame, question, signal, (text) => {
          entry.text.textContent = text;
        });
        const ms = performance.now() - started;
        entry.text.textContent = result.text;
        entry.item.dataset.state = 'done';
        entry.meta.textContent = describe(entry.number, ms, unchanged, result.reencoded);
        this.latency.textContent = `last frame: ${(ms / 1000).toFixed(1)} s`;
      } catch (err) {
        if (signal.aborted) {
          entry.item.dataset.state = 'stopped';
          entry.meta.textContent = `frame ${entry.number} · stopped`;
          return;
        }
        entry.item.remove();
        this.stop();
        this.onError(err);
        return;
      }
      await nextVideoFrame(this.video);
    }
  }

  addEntry() {
    this.frames += 1;
    const item = document.createElement('li');
    item.dataset.state = 'waiting';
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `frame ${this.frames} · asking…`;
    const text = document.createElement('span');
    text.className = 'text';
    item.append(meta, text);
    this.log.prepend(item);
    while (this.log.children.length > LOG_LENGTH) this.log.lastElementChild.remove();
    return { item, meta, text, number: this.frames };
  }
}

function describe(number, ms, unchanged, reencoded) {
  const parts = [`frame ${number}`, `${(ms / 1000).toFixed(1)} s`, unchanged ? 'unchanged, last frame sent again' : 'new frame'];
  if (reencoded !== undefined) parts.push(reencoded ? 're-encoded' : 'image reused');
  return parts.join(' · ');
}
