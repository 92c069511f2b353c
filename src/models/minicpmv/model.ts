// A loaded MiniCPM-V model: tokenizer, vision encoder and decoder sessions, and the steps of the official
// `MiniCPMV.chat` (prompt → ids → vision features scattered into the embeddings → decoder).

import type { TensorSource } from '../../checkpoint/safetensors.js';
import { imageKey } from '../../sha256.js';
import { InvalidRequestError } from '../../errors.js';
import type { RgbImage } from '../../image/index.js';
import { DecoderRunner, type DecoderSequence } from '../../runtime/decoder-runner.js';
import { requiredTokenId } from '../../tokenizer/load.js';
import type { StreamDecoder, Tokenizer } from '../../tokenizer/tokenizer.js';
import { llamaDims, type MiniCPMTextDims } from '../parts/decoder-dims.js';
import { prepareImageInput, slicePixels, type ImageInput } from './image-input.js';
import { buildPrompt } from './prompt.js';
import { type ChatInput, type ChatMessage, type ImageLimit } from '../messages.js';
import { singleImageConversation, singleImageLimit } from '../single-image.js';
import { runtimeOptions, type LoadOptions } from '../family.js';
import type { ResamplerDims } from '../parts/resampler.js';
import { modelName, type MiniCPMVConfig } from './config.js';
import { decodeText, imageBound } from './tokens.js';
import { VisionEncoder } from './vision-encoder.js';
import { vitDims } from '../parts/vision-dims.js';

/** The prompt of one chat turn, ready for the decoder. */
export interface PreparedPrompt {
  /** The full prompt ids, BOS first. */
  ids: number[];
  /** `[start, end)` spans of the ids that receive image features, one per slice. */
  imageBound: [number, number][];
  /** The image's slices (empty without an image). */
  slices: RgbImage[];
  /** A hash of the image's pixels (null without an image): positions after a different image cannot be reused. */
  imageKey: string | null;
}

/** `MiniCPMV.chat`'s generation settings: sampling=True, sampling=False, and max_new_tokens. */
export const MINICPMV_CHAT_DEFAULTS = {
  sample: { topP: 0.8, topK: 100, temperature: 0.7, repetitionPenalty: 1.05 },
  beam: { numBeams: 3, repetitionPenalty: 1.2 },
  maxNewTokens: 1024,
} as const;

/** The same for MiniCPM-V 1.0: its sampling preset has temperature 0.6 and no repetition penalty; max_new_tokens 2048. */
export const MINICPMV1_CHAT_DEFAULTS = {
  sample: { topP: 0.8, topK: 100, temperature: 0.6, repetitionPenalty: 1 },
  beam: { numBeams: 3, repetitionPenalty: 1.2 },
  maxNewTokens: 2048,
} as const;

/** LlamaTokenizerWrapper: transformers' slow LlamaTokenizer over tokenizer.model. */
export const TOKENIZER_FORMAT = 'sentencepiece';

/** `chat()`'s max_inp_length: longer prompts are refused (the official code would silently cut them). */
export const MAX_INPUT_LENGTH = 2048;

export class MiniCPMVModel {
  /** The last image's slices, so that the next turn about the same image skips slicing and resizing. */
  private lastImage: { key: string; input: ImageInput } | null = null;
  /** Images whose slices went through the vision encoder since the model was loaded, and the seconds it took. */
  private encoded = { images: 0, seconds: 0 };

  private constructor(
    readonly config: MiniCPMVConfig,
    readonly tokenizer: Tokenizer,
    /** The tokenizer's eos_token_id, which chat() passes to generate(). */
    readonly eosTokenId: number,
    private readonly vision: VisionEncoder,
    private readonly decoder: DecoderRunner,
  ) {}

  /**
   * The model over an opened checkpoint (or a host's stand-in for one) and its tokenizer: `where` names the model's
   * folder in messages. The graphs come from `options.openGraph` (default: built, or taken from Node's cache).
   */
  static async create(
    config: MiniCPMVConfig,
    tokenizer: Tokenizer,
    weights: TensorSource,
    options: LoadOptions,
    where: string,
  ): Promise<MiniCPMVModel> {
    const eosTokenId = requiredTokenId(tokenizer, 'eosId', where);
    const runtime = runtimeOptions(options);
    const dims = { vision: vitDims(config.vision), resampler: resamplerDims(config) };
    const vision = await VisionEncoder.create(weights, dims, { runtime, precision: options.visionPrecision, keepLoaded: options.keepVisionLoaded });
    try {
      const decoder = await DecoderRunner.create(weights, textDims(config), {
        ...runtime,
        maxSeq: config.text.maxPositionEmbeddings,
        maxRows: options.maxBeams ?? 3,
        precision: options.precision,
      });
      return new MiniCPMVModel(config, tokenizer, eosTokenId, vision, decoder);
    } catch (err) {
      await vision.release();
      throw err;
    }
  }

  /** chat.py's OmniLMM3B: `model.chat(..., sampling=True, temperature=0.7)`. */
  readonly chatPySettings = { decoding: 'sample', temperature: 0.7 } as const;

  get chatDefaults(): typeof MINICPMV_CHAT_DEFAULTS | typeof MINICPMV1_CHAT_DEFAULTS {
    return this.config.version === 1 ? MINICPMV1_CHAT_DEFAULTS : MINICPMV_CHAT_DEFAULTS;
  }

  /** The id generate() starts from (generation_config's bos_token_id). */
  get bosTokenId(): number {
    return this.config.text.bosTokenId;
  }

  detokenizer(): StreamDecoder {
    return this.tokenizer.streamDecoder();
  }

  /** chat() passes the tokenizer's eos_token_id to generate(), whose beam search is transformers 4.36's. */
  get eosTokenIds(): readonly number[] {
    return [this.eosTokenId];
  }

  readonly beamSearchVersion = '4.36';

  /** `_decode_text`: ids 0 and EOS left out, the text stripped. */
  get answerText() {
    return { skipIds: [this.eosTokenId, 0], strip: true };
  }

  get maxBeams(): number {
    return this.decoder.maxRows;
  }

  get contextLength(): number {
    return this.decoder.maxSeq;
  }

  /** The fewest positions an image takes: the resampler's query_num, what its one overview slice fills. */
  get minImageTokens(): number {
    return this.config.resampler.queryNum;
  }

  /** The model's name in messages: "MiniCPM-V 1.0" or "MiniCPM-V 2.0". */
  get name(): string {
    return modelName(this.config);
  }

  /** One image per conversation. */
  get imageLimit(): ImageLimit {
    return singleImageLimit(this.name);
  }

  /**
   * Steps 1–2 of `chat`: the prompt text (image placeholder before the first message) and its ids. Takes one image,
   * in the first message; video, thinking, the 4x mode and system messages are refused.
   */
  prepare(input: ChatInput): PreparedPrompt;
  /** The upstream form: text messages and the image that goes before the first one. */
  prepare(messages: readonly ChatMessage[], image: RgbImage | null): PreparedPrompt;
  prepare(request: ChatInput | readonly ChatMessage[], upstreamImage: RgbImage | null = null): PreparedPrompt {
    const { messages, image } = 'messages' in request ? singleImageConversation(request, this.name) : { messages: request, image: upstreamImage };
    const sliced = image ? this.sliced(image) : null;
    const input = sliced?.input ?? null;
    const prompt = buildPrompt(messages, input ? input.placeholder : null);
    const ids = this.tokenizer.encode(prompt);
    if (ids.length > MAX_INPUT_LENGTH) {
      throw new InvalidRequestError(
        `the prompt has ${ids.length} tokens, more than the model's input limit of ${MAX_INPUT_LENGTH}: shorten the conversation`,
      );
    }
    const bounds = input ? imageBound(ids, this.tokenizer.pieceToId('<image>'), this.tokenizer.pieceToId('</image>')) : [];
    const queryNum = this.config.resampler.queryNum;
    if (input && (bounds.length !== input.slices.length || bounds.some(([s, e]) => e - s !== queryNum))) {
      throw new InvalidRequestError('the messages contain image markup such as <image> or </image>: remove it from the text');
    }
    return { ids, imageBound: bounds, slices: input ? input.slices : [], imageKey: sliced?.key ?? null };
  }

  /** The image's key and slices; the last image's are kept, so the next turn about it skips slicing and resizing. */
  private sliced(image: RgbImage): { key: string; input: ImageInput } {
    const key = imageKey(image);
    if (this.lastImage?.key !== key) this.lastImage = { key, input: prepareImageInput(image, this.config) };
    return this.lastImage;
  }

  /**
   * Step 3 (`get_vllm_embedding`) for positions [from, L): text embeddings × scale_emb with each slice's features
   * written over its span. The image spans must lie either all before `from` (no vision work) or all after it.
   */
  async embed(prompt: PreparedPrompt, from = 0, pause?: () => Promise<void>): Promise<Float32Array> {
    const embeds = this.decoder.embed(prompt.ids.slice(from));
    const spans = prompt.imageBound;
    if (spans.length === 0 || from >= spans[spans.length - 1]![1]) return embeds;
    if (from > spans[0]![0]) {
      const [first, end] = [spans[0]![0], spans[spans.length - 1]![1]];
      throw new InvalidRequestError(`position ${from} cuts the image [${first}, ${end}): embed from ≤ ${first} or ≥ ${end}`);
    }
    const started = performance.now();
    const encoded = await this.vision.encode(
      prompt.slices.map((s) => ({ pixels: slicePixels(s), height: s.height, width: s.width })),
      { pause },
    );
    this.encoded.images += 1;
    this.encoded.seconds += (performance.now() - started) / 1000;
    const hidden = this.config.text.hiddenSize;
    spans.forEach(([start], j) => embeds.set(encoded[j]!.embeds, (start - from) * hidden));
    return embeds;
  }

  /** Step 4: a decoder sequence over the prompt embeddings (generation drives it). */
  startDecoding(embeds: Float32Array, seqLen: number) {
    if (seqLen >= this.decoder.maxSeq) {
      throw new InvalidRequestError(`the prompt has ${seqLen} tokens and leaves no room in the ${this.decoder.maxSeq}-token context`);
    }
    return this.decoder.start(embeds, seqLen);
  }

  /**
   * Steps 3–4: the prompt's embeddings bound to the decoder (generation drives it). Positions that the previous
   * request left in the KV cache with the same ids and the same image are reused: neither embedded nor prefilled
   * again, and the vision encoder does not run when they cover the whole image. `pause` is awaited before each
   * vision run and each prefill part after the first.
   */
  startPrompt(prompt: PreparedPrompt, pause?: () => Promise<void>): Promise<DecoderSequence> {
    const spans = prompt.imageBound;
    const image = prompt.imageKey !== null && spans.length > 0
      ? { key: prompt.imageKey, span: [spans[0]![0], spans[spans.length - 1]![1]] as const }
      : null;
    return this.decoder.startPrompt(prompt.ids, image, (from) => this.embed(prompt, from, pause), pause);
  }

  /**
   * Images whose slices went through the vision encoder since the model was loaded (a reused image is not counted),
   * and the seconds that took.
   */
  get visionWork(): { readonly images: number; readonly seconds: number } {
    return { ...this.encoded };
  }

  /** Token ids of a text as the chat path encodes it (BOS first). */
  tokenize(text: string): number[] {
    return this.tokenizer.encode(text);
  }

  /** Step 5 (`_decode_text`): the answer text from generate()'s output (BOS + new ids). */
  decodeAnswer(newIds: readonly number[]): string {
    return decodeText(this.tokenizer, [this.config.text.bosTokenId, ...newIds]);
  }

  async release(): Promise<void> {
    await this.vision.release();
    await this.decoder.release();
  }
}


function textDims(config: MiniCPMVConfig): MiniCPMTextDims {
  const t = config.text;
  return {
    ...llamaDims(t),
    scaleEmb: t.scaleEmb, dimModelBase: t.dimModelBase, scaleDepth: t.scaleDepth,
  };
}

function resamplerDims(config: MiniCPMVConfig): ResamplerDims {
  const r = config.resampler;
  return {
    queryNum: r.queryNum, embedDim: r.embedDim, numHeads: r.numHeads, kvDim: r.kvDim, normEps: r.normEps, adaptive: r.adaptive,
  };
}
