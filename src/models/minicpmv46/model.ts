// A loaded MiniCPM-V 4.6: tokenizer.json tokenizer and chat template, the SigLIP2 image encoder and the Qwen3.5 hybrid
// decoder, and the steps of the official `processor(...)` → `model.generate(...)` (prompt with placeholders → ids →
// visual rows scattered over the `<|image_pad|>` / `<|video_pad|>` positions → decoder).

import type { ChatDefaults } from '../../chat/decoding.js';
import type { ModelFiles } from '../../checkpoint/model-files.js';
import type { TensorSource } from '../../checkpoint/safetensors.js';
import { readGenerationConfig, type GenerationConfig } from '../../config/generation.js';
import { InvalidRequestError } from '../../errors.js';
import { imageKey, Sha256 } from '../../sha256.js';
import type { RgbImage } from '../../image/index.js';
import { DecoderRunner, type DecoderSequence } from '../../runtime/decoder-runner.js';
import { ChatTemplate } from '../../tokenizer/chat-template.js';
import { requiredTokenId, tokenizerFromFiles, type TokenizerFormat } from '../../tokenizer/load.js';
import type { StreamDecoder, Tokenizer } from '../../tokenizer/tokenizer.js';
import { runtimeOptions, type LoadOptions } from '../family.js';
import { chatInputOf, type ChatInput, type ChatMessage, type DownsampleMode, type VideoFramePicker, type VideoOptions } from '../messages.js';
import type { MiniCPMV46Config } from './config.js';
import {
  IMAGE_MARKUP,
  imageIdPrefix,
  planImageSlices,
  planSliceShapes,
  preprocessImage,
  sliceImage,
  slicesPlaceholder,
  type HeightWidth,
  type MiniCPMV46ImageOptions,
  type PreprocessedImage,
  type VisionSlice,
} from './image-processor.js';
import { positionsOf, promptText } from './prompt.js';
import { TEXT_NAMES, textDims } from './text.js';
import { planVideo, videoFramePicker, videoOptionsOf } from './video.js';
import { MiniCPMV46VisionEncoder, type MiniCPMV46Slice } from './vision-encoder.js';
import { minicpmv46VisionDims } from './vision-layout.js';

export const TOKENIZER_FORMAT: TokenizerFormat = 'tokenizer.json';

/** Most new tokens of an answer when the request does not say (generation_config.json sets no max_new_tokens). */
const DEFAULT_MAX_NEW_TOKENS = 2048;

/**
 * `model.generate`'s settings: generation_config.json's sampling values (the released one: temperature 0.7, top_k 0,
 * top_p 1.0, repetition_penalty 1.0) over transformers' defaults; beam search with 3 beams.
 */
export function chatDefaultsOf(generation: GenerationConfig | null): ChatDefaults {
  const repetitionPenalty = generation?.repetitionPenalty ?? 1;
  return {
    sample: { temperature: generation?.temperature ?? 1, topK: generation?.topK ?? 50, topP: generation?.topP ?? 1, repetitionPenalty },
    beam: { numBeams: 3, repetitionPenalty },
    maxNewTokens: generation?.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS,
  };
}

/** An image or a video frame of a prompt; the pixels of its slices are made when the vision encoder reaches it. */
export interface PromptVisual {
  /** A hash of the image's pixels and its slice plan: equal keys give equal slices. */
  key: string;
  /** The slices with their pixels, the source first: an image's from its preprocessing, a frame's resized now. */
  slices(): VisionSlice[];
}

/** The prompt of one chat turn, ready for the decoder. */
export interface PreparedPrompt {
  ids: number[];
  /** The images, then the video's kept frames, in the order their slices' rows fill the prompt. */
  visuals: PromptVisual[];
  /** The prompt positions that receive visual rows, in order (image pads, then video pads, each in prompt order). */
  visualPositions: number[];
  downsampleMode: DownsampleMode;
  /** A hash of the visuals and the mode behind the visual rows (null without any): cached rows of another are not reused. */
  visualKey: string | null;
  /** Positions where the decoder keeps its linear-attention state, so that a later turn resumes there. */
  snapshots: number[];
}

export class MiniCPMV46Model {
  readonly chatDefaults: ChatDefaults;
  /** chat.py's OmniLMMChat settings: sampling with the model's own defaults. */
  readonly chatPySettings = { decoding: 'sample' } as const;
  /** transformers 5's beam search (the fixture's goldens come from transformers 5.18). */
  readonly beamSearchVersion = '5' as const;
  /** The detokenizer leaves out the special tokens (EOS among them); the text is not stripped. */
  readonly answerText = { skipIds: [], strip: false } as const;
  readonly eosTokenIds: readonly number[];
  /**
   * The fewest positions an image takes: its id (`<image_id>0</image_id>`, with use_image_id), `<image>`, one visual
   * row and `</image>`. One row is what the source slice of an image more than scale_resolution² times as wide as it
   * is high becomes (1×200705 pixels at 448: a 56×56 slice), so no larger count holds for every image.
   */
  readonly minImageTokens: number;
  /** Any number of images: only the context bounds them. */
  readonly imageLimit = null;
  private readonly imStartId: number;
  private readonly bosId: number;
  /** The last images' preprocessing, so that the next turn about them skips resizing. */
  private lastImages: { key: string; images: PreprocessedImage[] } | null = null;
  /** Prompts whose visual units went through the vision encoder since the model was loaded, and the seconds it took. */
  private encoded = { images: 0, seconds: 0 };
  readonly name = 'MiniCPM-V 4.6';

  private constructor(
    readonly config: MiniCPMV46Config,
    readonly tokenizer: Tokenizer,
    private readonly template: ChatTemplate,
    private readonly vision: MiniCPMV46VisionEncoder,
    private readonly decoder: DecoderRunner,
    generation: GenerationConfig | null,
    dir: string,
  ) {
    this.chatDefaults = chatDefaultsOf(generation);
    // generate() stops on generation_config's eos ids (the released ones: <|endoftext|> and <|im_end|>).
    this.eosTokenIds = generation?.eosTokenIds ?? [requiredTokenId(tokenizer, 'eosId', dir)];
    this.imStartId = tokenizer.pieceToId('<|im_start|>');
    this.bosId = generation?.bosTokenId ?? this.imStartId;
    const smallestImage = imageIdPrefix(config.processor.image.useImageId ? 0 : null) + slicesPlaceholder(null, [1], IMAGE_MARKUP.imagePad);
    this.minImageTokens = tokenizer.encode(smallestImage).length;
  }

  /**
   * The model over a model folder's files (config, tokenizer, template) and an opened checkpoint (or a host's
   * stand-in for one): `where` names the folder in messages. The graphs come from `options.openGraph`.
   */
  static async create(
    config: MiniCPMV46Config,
    files: ModelFiles,
    weights: TensorSource,
    options: LoadOptions,
    where: string,
  ): Promise<MiniCPMV46Model> {
    const generation = readGenerationConfig(files);
    const tokenizer = tokenizerFromFiles(files, TOKENIZER_FORMAT);
    const template = ChatTemplate.fromFiles(files);
    const runtime = runtimeOptions(options);
    const vision = await MiniCPMV46VisionEncoder.create(weights, minicpmv46VisionDims(config), { runtime, precision: options.visionPrecision, keepLoaded: options.keepVisionLoaded });
    try {
      const decoder = await DecoderRunner.create(weights, textDims(config), {
        ...runtime,
        ...TEXT_NAMES,
        maxSeq: config.text.maxPositionEmbeddings,
        maxRows: options.maxBeams ?? 3,
        precision: options.precision,
      });
      return new MiniCPMV46Model(config, tokenizer, template, vision, decoder, generation, where);
    } catch (err) {
      await vision.release();
      throw err;
    }
  }

  /** generation_config's bos_token_id (`<|im_start|>`): a prompt id, so the repetition penalty always covers it. */
  get bosTokenId(): number {
    return this.bosId;
  }

  get maxBeams(): number {
    return this.decoder.maxRows;
  }

  get contextLength(): number {
    return this.decoder.maxSeq;
  }

  /** The prompt of one turn (`processor.apply_chat_template(...)`): text, ids, and where the visual rows go. */
  prepare(input: ChatInput): PreparedPrompt;
  /** The upstream form: text messages, and the image before the first one. */
  prepare(messages: readonly ChatMessage[], image: RgbImage | null): PreparedPrompt;
  prepare(request: ChatInput | readonly ChatMessage[], upstreamImage: RgbImage | null = null): PreparedPrompt {
    const steps = this.prepareInSteps('messages' in request ? request : chatInputOf(request, upstreamImage));
    for (;;) {
      const next = steps.next();
      if (next.done) return next.value;
    }
  }

  /**
   * prepare(input), yielding before each image or video frame is hashed and before each image is resized (streamChat
   * pauses there). Images whose tokens alone fill the context are refused first, from their sizes. A video's frames
   * are only planned here: each is resized when the vision encoder reaches it, so that no more than one frame's slices
   * are held at a time (and none where a follow-up turn reuses the rows).
   */
  *prepareInSteps(input: ChatInput): Generator<void, PreparedPrompt, undefined> {
    const mode = input.downsampleMode ?? this.config.processor.image.downsampleMode;
    const imageOptions: MiniCPMV46ImageOptions = { ...this.config.processor.image, downsampleMode: mode };
    this.checkImagesFit(input.images, imageOptions);
    const { images, keys } = yield* this.preprocessed(input.images, imageOptions);
    const visuals = images.map((image, i): PromptVisual => ({ key: `${keys[i]}/${JSON.stringify(image.plan)}`, slices: () => image.slices }));
    const videoOptions = input.video ? videoOptionsOf(this.config.processor.video, input.video, mode) : null;
    const video = input.video && videoOptions ? planVideo(input.video.frames, { fps: input.video.fps }, videoOptions, input.video.picked) : null;
    for (const { image, plan } of video?.frames ?? []) {
      yield;
      visuals.push({ key: `${imageKey(image)}/${JSON.stringify(plan)}`, slices: () => sliceImage(image, plan, videoOptions!) });
    }
    const text = promptText(this.template, this.tokenizer.namedTokens, {
      messages: input.messages,
      images,
      video,
      imageIds: imageOptions.useImageId,
      videoIds: videoOptions?.useImageId ?? false,
      thinking: input.thinking,
    });
    const ids = this.tokenizer.encode(text);
    const slices = [...images.flatMap((image) => image.slices), ...(video?.frames.flatMap((frame) => frame.slices) ?? [])];
    const imageRows = positionsOf(ids, this.config.imageTokenId);
    const videoRows = this.config.videoTokenId === undefined ? [] : positionsOf(ids, this.config.videoTokenId);
    const visualPositions = [...imageRows, ...videoRows];
    const expected = slices.reduce((sum, slice) => sum + slice.tokens, 0);
    if (visualPositions.length !== expected) {
      throw new InvalidRequestError(`the prompt has ${visualPositions.length} visual positions for ${expected} visual rows: remove image markup from the text`);
    }
    return {
      ids,
      visuals,
      visualPositions,
      downsampleMode: mode,
      visualKey: visuals.length > 0 ? visualKey(visuals, mode) : null,
      snapshots: positionsOf(ids, this.imStartId).filter((p) => p > 0),
    };
  }

  /**
   * The prompt tokens of the image at `index` among a prompt's images (its id, markup and visual rows) when it is
   * `size` (H, W), from its slice plan alone: what its placeholder in prepare()'s ids will take.
   */
  plannedImageTokens(size: HeightWidth, index: number, options: MiniCPMV46ImageOptions): number {
    const plan = planImageSlices(size, options);
    const tokens = planSliceShapes(plan, options).map((slice) => slice.tokens);
    // The placeholder with one pad per slice, so that the tokenizer counts the id and the markup; a pad is one (added)
    // token, so each slice's count then takes the place of its one.
    const onePadEach = slicesPlaceholder(plan.grid, tokens.map(() => 1), IMAGE_MARKUP.imagePad);
    const markup = this.tokenizer.encode(imageIdPrefix(options.useImageId ? index : null) + onePadEach).length - tokens.length;
    return markup + tokens.reduce((sum, n) => sum + n, 0);
  }

  /**
   * Refuses, before any image is hashed or resized, images whose tokens alone fill the context (the prompt's text
   * comes on top), counted from their sizes.
   */
  private checkImagesFit(images: readonly RgbImage[], options: MiniCPMV46ImageOptions): void {
    let tokens = 0;
    images.forEach((image, index) => (tokens += this.plannedImageTokens([image.height, image.width], index, options)));
    if (tokens < this.contextLength) return;
    throw new InvalidRequestError(
      `the prompt's ${images.length} images alone take ${tokens} tokens and fill the ${this.contextLength}-token context: ` +
        'send fewer or smaller images',
    );
  }

  /**
   * The images' preprocessing and their hashes, yielding before each image's hash and each image's resizing; the last
   * images' are kept, so the next turn about them skips resizing.
   */
  private *preprocessed(images: readonly RgbImage[], options: MiniCPMV46ImageOptions): Generator<void, { images: PreprocessedImage[]; keys: string[] }, undefined> {
    if (images.length === 0) return { images: [], keys: [] };
    const keys: string[] = [];
    for (const image of images) {
      yield;
      keys.push(imageKey(image));
    }
    const key = `${options.downsampleMode}:${keys.join(',')}`;
    if (this.lastImages?.key !== key) {
      const processed: PreprocessedImage[] = [];
      for (const image of images) {
        yield;
        processed.push(preprocessImage(image, options));
      }
      this.lastImages = { key, images: processed };
    }
    return { images: this.lastImages.images, keys };
  }

  /** The frames a video's reader keeps for this model (the frames prepare() samples), under the request's options. */
  videoFramePicker(options: VideoOptions): VideoFramePicker | undefined {
    return videoFramePicker(this.config.processor.video, options);
  }

  /**
   * The prompt's input embeddings for positions [from, L): `embed_tokens(ids)` with the visual rows written over their
   * positions (`masked_scatter`). The visual positions must lie either all before `from` (no vision work) or all after.
   */
  async embed(prompt: PreparedPrompt, from = 0, pause?: () => Promise<void>): Promise<Float32Array> {
    const embeds = this.decoder.embed(prompt.ids.slice(from));
    const positions = prompt.visualPositions;
    if (positions.length === 0 || from > positions[positions.length - 1]!) return embeds;
    if (from > positions[0]!) {
      throw new InvalidRequestError(`position ${from} cuts the visual rows [${positions[0]}, ${positions[positions.length - 1]! + 1})`);
    }
    const hidden = this.config.text.hiddenSize;
    const started = performance.now();
    // Each slice's rows go to their positions as its run ends: only one slice's rows are held beside the embeddings.
    let row = 0;
    const place = (rows: Float32Array) => {
      for (let r = 0; r < rows.length / hidden; r++, row++) {
        embeds.set(rows.subarray(r * hidden, (r + 1) * hidden), (positions[row]! - from) * hidden);
      }
    };
    await this.vision.encodeEach(encoderInputs(prompt.visuals), prompt.downsampleMode, place, { pause });
    this.encoded.images += 1;
    this.encoded.seconds += (performance.now() - started) / 1000;
    return embeds;
  }

  /**
   * The prompt bound to the decoder (generation drives it). Positions the previous request left with the same ids and
   * the same visual input are reused from a state snapshot (the linear-attention state cannot be cut back); the
   * image encoder does not run when they cover every visual row.
   */
  startPrompt(prompt: PreparedPrompt, pause?: () => Promise<void>): Promise<DecoderSequence> {
    const positions = prompt.visualPositions;
    const image = prompt.visualKey !== null
      ? { key: prompt.visualKey, span: [positions[0]!, positions[positions.length - 1]! + 1] as const }
      : null;
    return this.decoder.startPrompt(prompt.ids, image, (from) => this.embed(prompt, from, pause), pause, prompt.snapshots);
  }

  /** Token ids of a text as the chat path encodes it (no BOS: Qwen's tokenizer adds none). */
  tokenize(text: string): number[] {
    return this.tokenizer.encode(text);
  }

  /** The answer: `tokenizer.decode(new_ids, skip_special_tokens=True)`, not stripped. */
  decodeAnswer(newIds: readonly number[]): string {
    return this.tokenizer.decode(newIds, { skipSpecialTokens: true });
  }

  detokenizer(): StreamDecoder {
    return this.tokenizer.streamDecoder({ skipSpecialTokens: true });
  }

  /** Prompts whose images or video went through the vision encoder (reused rows are not counted), and the seconds it took. */
  get visionWork(): { readonly images: number; readonly seconds: number } {
    return { ...this.encoded };
  }

  async release(): Promise<void> {
    await this.vision.release();
    await this.decoder.release();
  }
}

/** SHA-256 of the visuals' keys and the mode: equal keys give equal visual rows. */
function visualKey(visuals: readonly PromptVisual[], mode: DownsampleMode): string {
  const hash = new Sha256().update(mode);
  for (const visual of visuals) hash.update(`|${visual.key}`);
  return hash.hex();
}

/** The visuals' slices as the encoder takes them, each visual's pixels made as the encoder reaches it and then let go. */
function* encoderInputs(visuals: readonly PromptVisual[]): Generator<MiniCPMV46Slice, void, undefined> {
  for (const visual of visuals) {
    for (const slice of visual.slices()) yield { pixels: slice.pixels, height: slice.image.height, width: slice.image.width };
  }
}
