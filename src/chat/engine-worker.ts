// The worker thread behind WorkerEngine (worker-engine.ts has the messages): loads the model once, then answers the
// chat requests it is sent one at a time, streaming text chunks back. Between images (decoded here, resized and
// encoded by streamChat) and between tokens the event loop gets a turn, so an abort message stops the running answer
// there.

import { parentPort, workerData } from 'node:worker_threads';
import { withDefaultPrecisions } from '../models/family.js';
import { familyOf, loadModelConfig, type LoadedModel } from '../models/registry.js';
import { streamChat } from './chat.js';
import type { EngineRequest } from './engine-types.js';
import { loadMedia, rememberFrameKeys } from './media-source.js';
import { errorToWire, type FromWorker, type ToWorker, type WorkerData } from './worker-engine.js';

const port = parentPort!;
const send = (message: FromWorker) => port.postMessage(message);
// Warnings (a model cache it cannot write, …) go to the thread that started the engine, to be shown as its own are.
process.removeAllListeners('warning');
process.on('warning', (warning) => send({ type: 'warning', message: warning.message }));

async function load({ dir, options }: WorkerData): Promise<LoadedModel | null> {
  try {
    const config = loadModelConfig(dir);
    const model = await familyOf(config).load(dir, config, withDefaultPrecisions(options));
    const { contextLength, maxBeams, minImageTokens, imageLimit } = model;
    send({ type: 'ready', modelType: config.modelType, contextLength, maxBeams, minImageTokens, imageLimit });
    return model;
  } catch (err) {
    send({ type: 'load-error', error: errorToWire(err) });
    return null;
  }
}

/** Runs one chat request to its end, its abort or its error, and reports each chunk and the outcome. */
async function answer(model: LoadedModel, id: number, request: EngineRequest, videoFrameKeys: readonly (string | null)[] | undefined, signal: AbortSignal): Promise<void> {
  try {
    if (videoFrameKeys) rememberFrameKeys(request.video, videoFrameKeys);
    // The messages are checked by streamChat; images, a video folder or file are read here, in the worker.
    const media = await loadMedia(request, { signal, framePickerOf: (options) => model.videoFramePicker?.(options) });
    const stream = streamChat(model, { ...request, ...media, signal });
    for (;;) {
      const next = await stream.next();
      if (next.done) {
        send({ type: 'done', id, result: next.value });
        return;
      }
      send({ type: 'chunk', id, text: next.value });
    }
  } catch (err) {
    send({ type: 'error', id, error: errorToWire(err) });
  }
}

const model = await load(workerData as WorkerData);
if (model) {
  const controllers = new Map<number, AbortController>();
  let current = Promise.resolve();
  port.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'chat': {
        const controller = new AbortController();
        controllers.set(message.id, controller);
        current = answer(model, message.id, message.request, message.videoFrameKeys, controller.signal).finally(() => controllers.delete(message.id));
        break;
      }
      case 'abort':
        controllers.get(message.id)?.abort();
        break;
      case 'tokenize':
        try {
          send({ type: 'tokens', id: message.id, ids: model.tokenize(message.text) });
        } catch (err) {
          send({ type: 'error', id: message.id, error: errorToWire(err) });
        }
        break;
      case 'close':
        for (const controller of controllers.values()) controller.abort();
        void current.then(() => model.release()).finally(() => port.close());
        break;
    }
  });
}
