// A loaded OmniLMM-12B: tokenizer, Eva tower + resampler sessions and the Mistral decoder, and the steps of the
// official `OmniLMM12B.chat` (chat.py): prompt → ids → image features over the `<im_patch>` rows → generate().

import { openCheckpoint } from '../../checkpoint/open.js';
import { imageKey } from '../../sha256.js';
import { InvalidRequestError, TokenizerError } from '../../errors.js';
import type { RgbImage } from '../../image/index.js';
import { DecoderRunner, type DecoderSequence } from '../../runtime/decoder-runner.js';
import { loadTokenizer } from '../../tokenizer/load-folder.js';
import { requiredTokenId } from '../../tokenizer/load.js';
import type { StreamDecoder, Tokenizer } from '../../tokenizer/tokenizer.js';
import { llamaDims, type MiniCPMTextDims } from '../parts/decoder.js';
import type { ChatInput, ChatMessage, ImageLimit } from '../messages.js';
import { singleImageConversation, singleImageLimit } from '../single-image.js';
import type { ResamplerDims } from '../parts/resampler.js';
import { vitDims } from '../parts/layers.js';
import { runtimeOptions, type LoadedModel, type LoadOptions } from '../family.js';
import type { OmniLMMConfig } from './config.js';
import { imagePixels, resizeImage } from './image-input.js';
import { buildPrompt, IMAGE_TOKENS } from './prompt.js';
import { decodeResponse, imageFeatureRows, type ImageTokenIds } from './tokens.js';
import { OmniLMMVisionEncoder } from './vision-encoder.js';

/** The prompt of one chat turn, ready for the decoder. */
export interface OmniLMMPrompt {
  /** The full prompt ids, BOS first. */
  ids: number[];
  /** `[first, end)`: the `<im_patch>` rows that receive the image features. */
  imageRows: [number, number];
  image: RgbImage;
  /** A hash of the image's pixels: cached positions after another image cannot be reused. */
  imageKey: string;
}

/**
 * `OmniLMM12B.decode`'s sampling settings (temperature 0.6, top_k 30, top_p 0.9, repetition_penalty 1.1,
 * max_new_tokens 1024). The official chat has no beam mode; beam search here uses no penalty, as the fixture's runs.
 */
export const OMNILMM_CHAT_DEFAULTS = {
  sample: { topP: 0.9, topK: 30, temperature: 0.6, repetitionPenalty: 1.1 },
  beam: { numBeams: 3, repetitionPenalty: 1 },
  maxNewTokens: 1024,
} as const;

/**
 * `init_omni_lmm` sets model_max_length 2048 and `_tokenize_fn` truncates longer prompts (cutting the system message
 * or the image away); we refuse them instead.
 */
export const MAX_INPUT_LENGTH = 2048;

/** `init_omni_lmm` loads transformers' slow LlamaTokenizer (tokenizer.model; the repo has no tokenizer.json). */
export const TOKENIZER_FORMAT = 'sentencepiece';

/** The decoder's checkpoint prefix: OmniLMMForCausalLM's own `model.*` and `lm_head.*` are the Mistral weights. */
const LLM_PREFIX = '';

export class OmniLMMModel implements LoadedModel {
  readonly chatDefaults = OMNILMM_CHAT_DEFAULTS;
  /** chat.py's OmniLMM12B samples with exactly the family's defaults. */
  readonly chatPySettings = { decoding: 'sample' } as const;
  private constructor(
    readonly config: OmniLMMConfig,
    readonly tokenizer: Tokenizer,
    /** The text of the tokenizer's eos token, which ends every turn of the Zephyr prompt. */
    private readonly eosToken: string,
    private readonly imageTokens: ImageTokenIds,
    private readonly vision: OmniLMMVisionEncoder,
    private readonly decoder: DecoderRunner,
  ) {}

  static async load(dir: string, config: OmniLMMConfig, options: LoadOptions = {}): Promise<OmniLMMModel> {
    const tokenizer = loadTokenizer(dir, TOKENIZER_FORMAT);
    const eosToken = tokenizer.idToPiece(requiredTokenId(tokenizer, 'eosId', dir));
    const imageTokens = readImageTokenIds(tokenizer, dir);
    const weights = openCheckpoint(dir);
    try {
      const runtime = runtimeOptions(options);
      const dims = { vision: vitDims(config.vision), resampler: resamplerDims(config) };
      const vision = await OmniLMMVisionEncoder.create(weights, dims, runtime, options.visionPrecision);
      try {
        const decoder = await DecoderRunner.create(weights, textDims(config), {
          ...runtime,
          prefix: LLM_PREFIX,
          maxSeq: config.text.maxPositionEmbeddings,
          maxRows: options.maxBeams ?? 3,
          precision: options.precision,
        });
        return new OmniLMMModel(config, tokenizer, eosToken, imageTokens, vision, decoder);
      } catch (err) {
        await vision.release();
        throw err;
      }
    } finally {
      weights.close();
    }
  }

  /** generate() starts from config.json's bos_token_id (`inputs_embeds` without `input_ids`). */
  get bosTokenId(): number {
    return this.config.text.bosTokenId;
  }

  /** generate_vllm passes no eos: the legacy generation config takes config.json's eos_token_id. */
  get eosTokenId(): number {
    return this.config.text.eosTokenId;
  }

  get eosTokenIds(): readonly number[] {
    return [this.eosTokenId];
  }

  readonly beamSearchVersion = '4.36';

  /** The answer as chat.py returns it: ids 0 and EOS left out, the text stripped. */
  get answerText() {
    return { skipIds: [this.eosTokenId, 0], strip: true };
  }

  get maxBeams(): number {
    return this.decoder.maxRows;
  }

  get contextLength(): number {
    return this.decoder.maxSeq;
  }

  /** The positions an image takes: the resampler's query_num. */
  get minImageTokens(): number {
    return this.config.resampler.queryNum;
  }

  /** One image per conversation. */
  get imageLimit(): ImageLimit {
    return singleImageLimit('OmniLMM-12B');
  }

  detokenizer(): StreamDecoder {
    return this.tokenizer.streamDecoder({ skipSpecialTokens: true });
  }

  /**
   * `wrap_question_for_omni_lmm`: the placeholder in the first message, the Zephyr prompt, its ids (BOS first). Takes
   * exactly one image, in the first message; video, thinking, the 4x mode and system messages are refused.
   */
  prepare(input: ChatInput): OmniLMMPrompt;
  /** The upstream form: text messages and the image of the first one. */
  prepare(messages: readonly ChatMessage[], image: RgbImage | null): OmniLMMPrompt;
  prepare(input: ChatInput | readonly ChatMessage[], upstreamImage: RgbImage | null = null): OmniLMMPrompt {
    const { messages, image } = 'messages' in input ? singleImageConversation(input, 'OmniLMM-12B') : { messages: input, image: upstreamImage };
    if (!image) {
      throw new InvalidRequestError('OmniLMM-12B answers questions about an image: give one (the official chat has no text-only path)');
    }
    const ids = this.tokenizer.encode(buildPrompt(messages, this.config.resampler.queryNum, this.eosToken));
    if (ids.length > MAX_INPUT_LENGTH) {
      throw new InvalidRequestError(
        `the prompt has ${ids.length} tokens, more than the model's input limit of ${MAX_INPUT_LENGTH}: shorten the conversation`,
      );
    }
    const imageRows = imageFeatureRows(ids, this.imageTokens, this.config.resampler.queryNum);
    return { ids, imageRows, image, imageKey: imageKey(image) };
  }

  /**
   * `get_vllm_embedding` for positions [from, L): token embeddings (not scaled) with the resampler output over the
   * `<im_patch>` rows, which must lie all before `from` (the vision path does not run) or all after it.
   */
  async embed(prompt: OmniLMMPrompt, from = 0): Promise<Float32Array> {
    const embeds = this.decoder.embed(prompt.ids.slice(from));
    const [first, end] = prompt.imageRows;
    if (from >= end) return embeds;
    if (from > first) {
      throw new InvalidRequestError(`cannot embed from position ${from}, inside the image rows [${first}, ${end}): start at ≤ ${first} or ≥ ${end}`);
    }
    const side = this.config.imageSize;
    const encoded = await this.vision.encode(imagePixels(resizeImage(prompt.image, side)), side, side);
    embeds.set(encoded.embeds, (first - from) * this.config.text.hiddenSize);
    return embeds;
  }

  /**
   * The prompt bound to the decoder (generation drives it). Leading positions that the previous request left in the
   * KV cache with the same ids and the same image are reused, neither embedded nor prefilled again; the sliding
   * window does not change them, since a position's keys and values depend only on the positions before it.
   * `pause` is awaited before each prefill part after the first.
   */
  startPrompt(prompt: OmniLMMPrompt, pause?: () => Promise<void>): Promise<DecoderSequence> {
    const image = { key: prompt.imageKey, span: prompt.imageRows };
    return this.decoder.startPrompt(prompt.ids, image, (from) => this.embed(prompt, from), pause);
  }

  /** Token ids of a text as the chat path encodes it (BOS first). */
  tokenize(text: string): number[] {
    return this.tokenizer.encode(text);
  }

  /** The answer of generate()'s sequence (BOS + new ids), as `OmniLMM12B.decode` makes it. */
  decodeAnswer(newIds: readonly number[]): string {
    return decodeResponse(this.tokenizer, [this.bosTokenId, ...newIds]);
  }

  async release(): Promise<void> {
    await this.vision.release();
    await this.decoder.release();
  }
}


/** `init_omni_lmm` reads the ids of `<im_patch>`, `<im_start>`, `<im_end>`: they must be tokens of the tokenizer. */
function readImageTokenIds(tokenizer: Tokenizer, dir: string): ImageTokenIds {
  const id = (token: string) => {
    const found = tokenizer.pieceToId(token);
    if (tokenizer.idToPiece(found) !== token) {
      throw new TokenizerError(`the tokenizer in ${dir} has no ${token} token; OmniLMM's tokenizer files define it (download them again)`);
    }
    return found;
  };
  return { patch: id(IMAGE_TOKENS.patch), start: id(IMAGE_TOKENS.start), end: id(IMAGE_TOKENS.end) };
}

function textDims(config: OmniLMMConfig): MiniCPMTextDims {
  const t = config.text;
  return {
    ...llamaDims(t),
    scaleEmb: 1, ...(t.slidingWindow === null ? {} : { slidingWindow: t.slidingWindow }),
  };
}

function resamplerDims(config: OmniLMMConfig): ResamplerDims {
  const r = config.resampler;
  return { queryNum: r.queryNum, embedDim: r.embedDim, numHeads: r.numHeads, kvDim: r.kvDim, normEps: r.normEps };
}
