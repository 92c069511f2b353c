// The in-browser engine: a model exported by `omnilmm export-web`, run by the same core as in Node (tokenizer, image
// processing, MiniCPM-V's prompt and vision steps, the decoder runner, generation and chat) with graphs on
// onnxruntime-web. The page downloads and verifies the files and hands them over.

import { DTYPE_BYTES, toFloat32 } from '../checkpoint/dtypes.js';
import { MemoryModelFiles } from '../checkpoint/model-files.js';
import type { RowReader, TensorInfo, TensorSource } from '../checkpoint/safetensors.js';
import { streamChat, type ChatResult, type FinishReason } from '../chat/chat.js';
import type { Decoding } from '../chat/decoding.js';
import { CheckpointError, OmnilmmError } from '../errors.js';
import type { WeightPrecision } from '../graph/quantize.js';
import type { RgbImage } from '../image/rgb.js';
import type { DownsampleMode, Message } from '../models/messages.js';
import type { GraphSpec } from '../runtime/graph-session.js';
import { WebGraphSession, type OrtWebModule, type WebBackend } from '../runtime/session-web.js';
import { WEB_MANIFEST_FORMAT, type WebManifest } from './manifest.js';
import { createWebModel, type WebChatModel } from './web-families.js';

/** The export cannot be used as it is (an unknown format, a file or graph it lacks). */
export class WebModelError extends OmnilmmError {}

export interface WebModelOptions {
  manifest: WebManifest;
  /** A manifest file's verified bytes. */
  bytes(path: string): Promise<Uint8Array>;
  /** A URL onnxruntime-web can fetch for a large manifest file (e.g. a blob: URL of the stored copy). */
  url(path: string): Promise<string>;
  ort: OrtWebModule;
  backend: WebBackend;
  /** WASM threads (more than 1 needs a cross-origin isolated page). */
  threads: number;
}

/** One image as a canvas gives it: RGBA bytes. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8ClampedArray | Uint8Array;
}

export interface WebRequest {
  images: readonly RgbaImage[];
  /** As the library takes them: a content is text or parts (`{type: "image"}`, `{type: "text", text}`). */
  messages: readonly Message[];
  /** MiniCPM-V 4.6's visual token downsampling (left out: the model's default). */
  downsampleMode?: DownsampleMode;
  /** MiniCPM-V 4.6 thinks before it answers. */
  thinking?: boolean;
  decoding: Decoding;
  maxNewTokens?: number;
  seed?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
}

export interface WebTimings {
  /** Seconds the vision encoder took for this request's image (0 when it was reused). */
  encode_s: number;
  /** Seconds from the request to the first new token's logits, less encode_s: embedding and prefill. */
  prefill_s: number;
  /** Seconds spent generating after the first token (new_tokens − 1 decode steps). */
  decode_s: number;
  prompt_tokens: number;
  /** Prompt positions reused from the previous request's KV cache. */
  reused_tokens: number;
  new_tokens: number;
  /** Images whose slices went through the vision encoder (0 when the previous request's image was reused). */
  images_encoded: number;
}

export interface WebResult {
  text: string;
  prompt_ids: number[];
  output_ids: number[];
  finish_reason: FinishReason;
  timings: WebTimings;
}

export interface WebModel {
  readonly backend: WebBackend;
  readonly name: string;
  readonly contextLength: number;
  /** Streams the answer's text; aborting `signal` stops between tokens (the stream rejects with its reason). */
  stream(request: WebRequest, signal?: AbortSignal): AsyncGenerator<string, WebResult, undefined>;
  release(): Promise<void>;
}

/** Loads the exported model: its tokenizer and config, the host tensors, and one session per graph. */
export async function openWebModel(options: WebModelOptions): Promise<WebModel> {
  const { manifest } = options;
  if (manifest.format !== WEB_MANIFEST_FORMAT) {
    throw new WebModelError(`the model's manifest has format "${manifest.format}", not "${WEB_MANIFEST_FORMAT}": export the model again with this version`);
  }
  options.ort.env.wasm.numThreads = options.threads;
  const small = new Map<string, Uint8Array>();
  for (const file of manifest.files) {
    if (file.kind === 'small' && !file.path.startsWith('tensors/')) small.set(file.path, await options.bytes(file.path));
  }
  const files = new MemoryModelFiles('the exported model', small);
  const tensors = await hostTensors(manifest, options.bytes);
  const openGraph = async (graph: GraphSpec) => {
    const entry = manifest.graphs[graph.part];
    if (!entry) throw new WebModelError(`the export has no ${graph.label} graph ("${graph.part}"): export the model again`);
    if (entry.key !== JSON.stringify(graph.key)) {
      throw new WebModelError(`the export's ${graph.label} was built for other options than this page asks for: export the model again`);
    }
    const externalData: { path: string; data: string }[] = [];
    try {
      for (const weights of entry.weights) externalData.push({ path: weights.location, data: await options.url(weights.path) });
      return await WebGraphSession.create(graph.label, await options.bytes(entry.model), { ort: options.ort, backend: options.backend, externalData });
    } finally {
      // Once the session holds the weights, their blob: URLs may go (a URL keeps its blob alive until revoked).
      for (const { data } of externalData) if (data.startsWith('blob:')) URL.revokeObjectURL(data);
    }
  };
  const model = await createWebModel(manifest.model_type, files, tensors, {
    precision: manifest.precision as WeightPrecision, visionPrecision: manifest.vision_precision as WeightPrecision, maxBeams: 3, openGraph,
  }, 'the exported model');
  return new BrowserModel(model, options.backend);
}

class BrowserModel implements WebModel {
  constructor(
    private readonly model: WebChatModel,
    readonly backend: WebBackend,
  ) {}

  get name(): string {
    return this.model.name;
  }

  get contextLength(): number {
    return this.model.contextLength;
  }

  async *stream(request: WebRequest, signal?: AbortSignal): AsyncGenerator<string, WebResult, undefined> {
    const visionBefore = this.model.visionWork;
    const chat = streamChat(this.model, {
      messages: request.messages,
      images: request.images.map(toRgb),
      downsampleMode: request.downsampleMode,
      thinking: request.thinking,
      decoding: request.decoding,
      maxNewTokens: request.maxNewTokens,
      seed: request.seed,
      temperature: request.temperature,
      topP: request.topP,
      topK: request.topK,
      repetitionPenalty: request.repetitionPenalty,
      signal,
    });
    let result: ChatResult;
    for (;;) {
      const next = await chat.next();
      if (next.done) {
        result = next.value;
        break;
      }
      yield next.value;
    }
    const vision = this.model.visionWork;
    const encodeSeconds = vision.seconds - visionBefore.seconds;
    return {
      text: result.text,
      prompt_ids: result.promptIds,
      output_ids: result.outputIds,
      finish_reason: result.finishReason,
      timings: {
        encode_s: encodeSeconds,
        prefill_s: result.seconds.prompt - encodeSeconds,
        decode_s: result.seconds.decode,
        prompt_tokens: result.promptIds.length,
        reused_tokens: result.cachedTokens,
        new_tokens: result.outputIds.length,
        images_encoded: vision.images - visionBefore.images,
      },
    };
  }

  release(): Promise<void> {
    return this.model.release();
  }
}

/** RGBA → RGB, alpha dropped (as the Node decoder and PIL's convert('RGB') do). */
function toRgb(image: RgbaImage): RgbImage {
  const { width, height, data } = image;
  if (data.length !== width * height * 4) {
    throw new WebModelError(`an image of ${width}×${height} pixels needs ${width * height * 4} RGBA bytes, got ${data.length}`);
  }
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < data.length; i += 4, j += 3) {
    rgb[j] = data[i]!;
    rgb[j + 1] = data[i + 1]!;
    rgb[j + 2] = data[i + 2]!;
  }
  return { width, height, data: rgb };
}

/** The exported host tensors in memory, as stored; rows of the token-embedding table are converted as they are read. */
async function hostTensors(manifest: WebManifest, bytes: (path: string) => Promise<Uint8Array>): Promise<TensorSource> {
  const stored = new Map<string, { info: TensorInfo; data: Uint8Array }>();
  for (const t of manifest.tensors) {
    const data = await bytes(t.path);
    stored.set(t.name, { info: { name: t.name, dtype: t.dtype, shape: t.shape, offset: 0, byteLength: data.byteLength, file: t.path }, data });
  }
  const get = (name: string) => {
    const t = stored.get(name);
    if (!t) throw new CheckpointError(`the export has no tensor ${name}: export the model again`);
    return t;
  };
  return {
    names: () => [...stored.keys()],
    has: (name) => stored.has(name),
    info: (name) => get(name).info,
    float32: (name) => toFloat32(get(name).data, get(name).info.dtype, name),
    rows: (name): RowReader => {
      const { info, data } = get(name);
      const [rows, cols] = info.shape as [number, number];
      const rowBytes = cols * DTYPE_BYTES[info.dtype];
      return {
        rows, cols,
        read: (index) => toFloat32(data.subarray(index * rowBytes, (index + 1) * rowBytes), info.dtype, name),
        close: () => {},
      };
    },
    close: () => stored.clear(),
  };
}
