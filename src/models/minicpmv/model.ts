// A loaded MiniCPM-V model: tokenizer, vision encoder and decoder sessions, and the steps of the official
// `MiniCPMV.chat` (prompt → ids → vision features scattered into the embeddings → decoder).

import { SafetensorsCheckpoint } from '../../checkpoint/safetensors.js';
import type { MiniCPMVConfig } from '../../config/minicpmv.js';
import { InvalidRequestError, UnsupportedModelError } from '../../errors.js';
import type { RgbImage } from '../../image/index.js';
import { DecoderRunner } from '../../runtime/decoder-runner.js';
import type { RuntimeOptions } from '../../runtime/session.js';
import { LlamaTokenizer } from '../../tokenizer/llama.js';
import { StreamingDetokenizer } from '../../tokenizer/streaming.js';
import type { MiniCPMTextDims } from './decoder.js';
import { prepareImageInput, slicePixels } from './image-input.js';
import { buildPrompt, type ChatMessage } from './prompt.js';
import type { ResamplerDims } from './resampler.js';
import { decodeText, imageBound } from './tokens.js';
import { VisionEncoder } from './vision-encoder.js';
import type { VisionDims } from './vision.js';

export interface LoadOptions extends RuntimeOptions {
  /** Most sequences decoded at once (beam search needs num_beams; default 3). */
  maxBeams?: number;
}

/** The prompt of one chat turn, ready for the decoder. */
export interface PreparedPrompt {
  /** The full prompt ids, BOS first. */
  ids: number[];
  /** `[start, end)` spans of the ids that receive image features, one per slice. */
  imageBound: [number, number][];
  /** The image's slices (empty without an image). */
  slices: RgbImage[];
}

/** `MiniCPMV.chat`'s generation settings: sampling=True, sampling=False, and max_new_tokens. */
export const MINICPMV_CHAT_DEFAULTS = {
  sample: { topP: 0.8, topK: 100, temperature: 0.7, repetitionPenalty: 1.05 },
  beam: { numBeams: 3, repetitionPenalty: 1.2 },
  maxNewTokens: 1024,
} as const;

/** `chat()`'s max_inp_length: longer prompts are refused (the official code would silently cut them). */
export const MAX_INPUT_LENGTH = 2048;

export class MiniCPMVModel {
  private constructor(
    readonly config: MiniCPMVConfig,
    readonly tokenizer: LlamaTokenizer,
    private readonly vision: VisionEncoder,
    private readonly decoder: DecoderRunner,
  ) {}

  static async load(dir: string, config: MiniCPMVConfig, options: LoadOptions = {}): Promise<MiniCPMVModel> {
    if (config.version !== 2) {
      throw new UnsupportedModelError(`${dir} is MiniCPM-V 1.0 (no slice_mode in config.json); only MiniCPM-V 2.0 runs so far`);
    }
    const tokenizer = LlamaTokenizer.fromDir(dir);
    const weights = new SafetensorsCheckpoint(dir);
    try {
      const runtime: RuntimeOptions = { threads: options.threads, executionProvider: options.executionProvider };
      const vision = await VisionEncoder.create(weights, { vision: visionDims(config), resampler: resamplerDims(config) }, { runtime });
      const decoder = await DecoderRunner.create(weights, textDims(config), {
        ...runtime,
        maxSeq: config.text.maxPositionEmbeddings,
        maxRows: options.maxBeams ?? 3,
      });
      return new MiniCPMVModel(config, tokenizer, vision, decoder);
    } finally {
      weights.close();
    }
  }

  readonly chatDefaults = MINICPMV_CHAT_DEFAULTS;

  /** The id generate() starts from (generation_config's bos_token_id). */
  get bosTokenId(): number {
    return this.config.text.bosTokenId;
  }

  /** chat() passes the tokenizer's eos_token_id to generate(). */
  get eosTokenId(): number {
    return this.tokenizer.eosId;
  }

  detokenizer(): StreamingDetokenizer {
    return new StreamingDetokenizer(this.tokenizer);
  }

  get maxBeams(): number {
    return this.decoder.maxRows;
  }

  get contextLength(): number {
    return this.decoder.maxSeq;
  }

  /** Steps 1–2 of `chat`: the prompt text (image placeholder before the first message) and its ids. */
  prepare(messages: readonly ChatMessage[], image: RgbImage | null): PreparedPrompt {
    const input = image ? prepareImageInput(image, this.config) : null;
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
    return { ids, imageBound: bounds, slices: input ? input.slices : [] };
  }

  /** Step 3 (`get_vllm_embedding`): text embeddings × scale_emb with each slice's features written over its span. */
  async embed(prompt: PreparedPrompt): Promise<Float32Array> {
    const embeds = this.decoder.embed(prompt.ids);
    if (prompt.slices.length === 0) return embeds;
    const encoded = await this.vision.encode(
      prompt.slices.map((s) => ({ pixels: slicePixels(s), height: s.height, width: s.width })),
    );
    const hidden = this.config.text.hiddenSize;
    prompt.imageBound.forEach(([start], j) => embeds.set(encoded[j]!.embeds, start * hidden));
    return embeds;
  }

  /** Step 4: a decoder sequence over the prompt embeddings (generation drives it). */
  startDecoding(embeds: Float32Array, seqLen: number) {
    if (seqLen >= this.decoder.maxSeq) {
      throw new InvalidRequestError(`the prompt has ${seqLen} tokens and leaves no room in the ${this.decoder.maxSeq}-token context`);
    }
    return this.decoder.start(embeds, seqLen);
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
    hiddenSize: t.hiddenSize, numLayers: t.numHiddenLayers, numHeads: t.numAttentionHeads, numKvHeads: t.numKeyValueHeads,
    intermediateSize: t.intermediateSize, rmsNormEps: t.rmsNormEps, ropeTheta: t.ropeTheta, vocabSize: t.vocabSize,
    scaleEmb: t.scaleEmb, dimModelBase: t.dimModelBase, scaleDepth: t.scaleDepth,
  };
}

function visionDims(config: MiniCPMVConfig): VisionDims {
  const v = config.vision;
  return {
    patchSize: v.patchSize, embedDim: v.embedDim, depthUsed: v.usedDepth, numHeads: v.numHeads,
    mlpHidden: v.mlpHiddenDim, normEps: v.normEps, posGrid: v.posEmbedGrid,
  };
}

function resamplerDims(config: MiniCPMVConfig): ResamplerDims {
  const r = config.resampler;
  return { queryNum: r.queryNum, embedDim: r.embedDim, numHeads: r.numHeads, kvDim: r.kvDim, normEps: r.normEps };
}
