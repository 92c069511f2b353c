// Runs the decoder graph (src/models/parts/decoder.ts: MiniCPM, Mistral, Qwen3.5) with its per-layer state on the
// host: a key/value cache for each full-attention layer (./kv-cache.ts) and, for each linear-attention layer, its
// conv and recurrent state (./linear-state.ts).
//
// Key/value cache layout, per layer and for keys and values alike: one Float32Array [rows][kv_heads][capacity][head_dim].
// Its first `rows` rows are exactly the graph's `past_key_{i}` input [rows, kv_heads, capacity, head_dim], so every
// run hands the buffers to ONNX Runtime as views: onnxruntime-node wraps an input typed array without copying it
// (measured: feeding a 400 MB input costs ~1 ms), and the graph reads its P used positions.
// What one decoded token costs (rows = beams, hidden = kv_heads · head_dim when there is no GQA):
//   * JS copies: only the new keys and values, 2 · layers · rows · kv_heads copies of head_dim floats, i.e.
//     2 · layers · hidden · 4 bytes per row (6 KiB for the tiny model, 720 KiB for MiniCPM-V 2.0). The cached past
//     is never copied in JS and never comes back as an output.
//   * inside the graph: no copy of the past either. Attention reads the whole cache buffer in place (the slots
//     past the P used ones are masked), in a part of its own beside the new positions, so nothing is sliced or
//     concatenated (the earlier Slice + Concat + Transpose copied 5 · layers · rows · P · hidden · 4 bytes per step).
//   * beam reordering (`parents`) copies the used positions of each row whose parent is another row; rows that keep
//     their own history cost nothing.
//   * linear-attention layers: their whole state comes back from every run (for MiniCPM-V 4.6, 18 layers × 1.1 MiB
//     per row) and becomes the state as it is; beam reordering copies the rows of it.
// Measured on the tiny fixture model (1 thread, depth 121–321): 1.2 ms per step for 1 row, 1.7 ms for 3 rows,
// 2.5 ms for 3 rows permuted at every step; nearly all of it inside session.run.
// Rows are allocated as steps feed them (beams) and the capacity grows in steps of 64 positions (up to maxSeq), so
// memory follows what is used; a new prompt gives back what the previous answer grew beyond it.
//
// Prefix reuse: when a prompt is started with its ids, the runner remembers which ids each cached row holds (row 0
// after a chat turn: the prompt plus every token fed since). A later prompt that starts with the same ids keeps those
// positions and prefills only the rest, after them (the attention bias lets new positions see the whole past).
// Ids alone do not say what an image position held: `startPrompt` takes the image's key and span, forgets the cache
// when the image behind the placeholders changes, and never reuses part of an image.
// A linear-attention state cannot be cut back to an earlier position, so a model with such layers resumes only
// where it kept one: at a snapshot taken during an earlier prefill (at the positions the caller names, and at the
// end of the image span), or at the end of what row 0 holds. The reused length is the longest of those within the
// shared prefix.

import { InvalidRequestError, RuntimeError } from '../errors.js';
import type { RowReader, TensorSource } from '../checkpoint/safetensors.js';
import type { WeightPrecision } from '../graph/quantize.js';
import {
  ATTENTION_MASKED, DEFAULT_LINEAR_CHUNK, decoderNames, headDim, layerType, linearStateShapes, type DecoderDims,
} from '../models/parts/decoder-dims.js';
import { KvCache } from './kv-cache.js';
import { LinearStates, snapshotBytes, type StateSnapshot } from './linear-state.js';
import { openGraph, type GraphSession, type HostTensor, type RuntimeOptions } from './graph-session.js';

export interface DecoderRunnerOptions extends RuntimeOptions {
  /** Checkpoint name prefix of the language model (default `llm.`; see DecoderGraphOptions). */
  prefix?: string;
  /** Where the model body lives when not at `${prefix}model.` (MiniCPM-V 4.6: `model.language_model.`). */
  bodyPrefix?: string;
  /** Most positions (prompt + generated tokens) one sequence may reach. */
  maxSeq: number;
  /** Most rows one step may feed, e.g. the number of beams (default 1). */
  maxRows?: number;
  /** How the decoder's linear layers keep their weights (default fp32). */
  precision?: WeightPrecision;
  /**
   * Most prompt positions one prefill run takes (default 128): a longer prompt runs in parts, each after the cached
   * ones, so its keys, values and activations are held for one part at a time. Measured on MiniCPM-V 2.0 (int4,
   * 2 threads, 528-token prompt): parts of 128 held 0.3 GB less than parts of 256 at the same prefill speed within
   * the noise (37.9–38.2 against 34.9–40.9 tok/s). A model with linear-attention layers also stays within
   * `linearChunk`, its parts starting at multiples of it (as upstream's chunks do).
   */
  prefillChunk?: number;
  /** Models with linear-attention layers: most positions per run, built into the graph (a power of two; default 64). */
  linearChunk?: number;
  /** Models with linear-attention layers: most state snapshots kept for prefix reuse (default 6; the latest positions stay). */
  maxSnapshots?: number;
}

const DEFAULT_PREFILL_CHUNK = 128;
const DEFAULT_MAX_SNAPSHOTS = 6;

/**
 * The additive attention bias [rows, 1, seq, past+seq]: every cached position is visible, the new positions are
 * causal among themselves (so a prompt can also be prefilled after a reused prefix).
 */
export function attentionBias(rows: number, seq: number, past: number): Float32Array {
  const total = past + seq;
  const bias = new Float32Array(rows * seq * total);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < seq; i++) bias.fill(ATTENTION_MASKED, (r * seq + i) * total + past + i + 1, (r * seq + i + 1) * total);
  }
  return bias;
}

/**
 * The token-embedding table: read row by row where the source can (a checkpoint folder: nothing held in memory), else
 * (a source built in memory, as tests make) kept as float32.
 */
function openEmbeddings(source: TensorSource, name: string): RowReader {
  if (source.rows) return source.rows(name);
  const table = source.float32(name);
  const [rows, cols] = source.info(name).shape as [number, number];
  return { rows, cols, read: (index) => table.subarray(index * cols, (index + 1) * cols), close: () => {} };
}

/** How `start` binds a prompt to what the cache already holds. */
export interface PromptBinding {
  /** The prompt's ids (seqLen of them), remembered so that a later prompt can reuse the positions it shares. */
  ids: readonly number[];
  /**
   * Leading positions taken from the cache (default 0): at most `cachedPrefixLength(ids)`, and for a model with
   * linear-attention layers a position where it can resume (`reusableLength` gives the longest).
   */
  reuse?: number;
  /** Awaited before each prefill part after the first (e.g. a turn of the event loop that throws on an abort). */
  pause?: () => Promise<void>;
  /**
   * Models with linear-attention layers: positions p (reuse < p ≤ seqLen) after which the prefill keeps the state,
   * so that a later prompt sharing the first p ids resumes there (e.g. the start of the last turn); only the latest
   * maxSnapshots of them are kept. Ignored otherwise.
   */
  snapshots?: readonly number[];
}

/** Which image a prompt holds and the positions [first, end) its features fill. */
export interface PromptImage {
  key: string;
  span: readonly [number, number];
}

/** Where a model with linear-attention layers resumes: from zeros, from row 0 as it is, or from a snapshot. */
type ResumePoint = 'start' | 'live' | StateSnapshot;

/** Owns the decoder session, the token-embedding table and the per-layer state; `start` binds a prompt to it. */
export class DecoderRunner {
  readonly vocabSize: number;
  private readonly cache: KvCache;
  /** The full-attention layers, whose keys/values the cache holds in this order. */
  private readonly attentionLayers: readonly number[];
  /** The linear-attention state (null: the model has no such layer). */
  private readonly linear: LinearStates | null;
  /** States kept at prompt positions, latest position last. */
  private snapshots: StateSnapshot[] = [];
  private active: DecoderSequence | null = null;
  /** The ids each cached row holds, or null when unknown (a prompt started without ids, a failed run). */
  private rowIds: number[][] | null = null;
  /** The key of the image behind the cached positions (null: none). */
  private imageKey: string | null = null;

  private constructor(
    private readonly session: GraphSession,
    private readonly embeddings: RowReader,
    readonly dims: DecoderDims,
    readonly maxSeq: number,
    readonly maxRows: number,
    readonly prefillChunk: number,
    /** Most positions per run of a model with linear-attention layers (Infinity without them). */
    readonly linearChunk: number,
    private readonly maxSnapshots: number,
  ) {
    this.vocabSize = dims.vocabSize;
    const layers = Array.from({ length: dims.numLayers }, (_, i) => i);
    this.attentionLayers = layers.filter((i) => layerType(dims, i) === 'full_attention');
    this.cache = new KvCache(this.attentionLayers.length, dims.numKvHeads, headDim(dims), maxSeq, maxRows);
    const linearLayers = layers.filter((i) => layerType(dims, i) === 'linear_attention');
    this.linear = linearLayers.length === 0 ? null : new LinearStates({ layers: linearLayers, ...linearStateShapes(dims.linearAttention!) });
  }

  /** Builds the graph (logits of the last position), or takes it from the converted-model cache, and starts its session. */
  static async create(source: TensorSource, dims: DecoderDims, options: DecoderRunnerOptions): Promise<DecoderRunner> {
    const prefix = options.prefix ?? 'llm.';
    const maxRows = options.maxRows ?? 1;
    const prefillChunk = options.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
    const hybrid = dims.layerTypes?.includes('linear_attention') ?? false;
    const linearChunk = hybrid ? (options.linearChunk ?? DEFAULT_LINEAR_CHUNK) : undefined;
    const maxSnapshots = options.maxSnapshots ?? DEFAULT_MAX_SNAPSHOTS;
    if ([options.maxSeq, maxRows, prefillChunk, linearChunk ?? 1].some((n) => !Number.isInteger(n) || n < 1) || !(maxSnapshots >= 0)) {
      throw new InvalidRequestError(
        `maxSeq (${options.maxSeq}), maxRows (${maxRows}), prefillChunk (${prefillChunk}) and linearChunk (${linearChunk}) ` +
          `must be positive integers and maxSnapshots (${maxSnapshots}) ≥ 0`,
      );
    }
    if (linearChunk !== undefined && !Number.isInteger(Math.log2(linearChunk))) {
      throw new InvalidRequestError(`linearChunk must be a power of two, got ${linearChunk}`);
    }
    const graphOptions = { prefix, bodyPrefix: options.bodyPrefix, logits: 'last', precision: options.precision, linearChunk } as const;
    const session = await openGraph({
      part: 'decoder', label: 'language-model decoder', source, key: { dims, graphOptions },
      build: async (weights) => (await import('../models/parts/decoder.js')).buildDecoder(weights, dims, graphOptions).serialize(),
    }, options);
    try {
      const embeddings = openEmbeddings(source, decoderNames(graphOptions, dims).embedTokens);
      return new DecoderRunner(session, embeddings, dims, options.maxSeq, maxRows, prefillChunk, linearChunk ?? Infinity, maxSnapshots);
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /** Token embeddings × scale_emb when the model has one (upstream `embed_tokens(ids) * scale_emb`), row after row. */
  embed(ids: readonly number[]): Float32Array {
    const d = this.dims.hiddenSize;
    const scale = this.dims.scaleEmb ?? 1;
    const out = new Float32Array(ids.length * d);
    const table = this.embeddings;
    ids.forEach((id, k) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.dims.vocabSize) {
        throw new InvalidRequestError(`token id ${id} is outside the vocabulary [0, ${this.dims.vocabSize})`);
      }
      const row = table.read(id);
      if (scale === 1) out.set(row, k * d);
      else for (let j = 0; j < d; j++) out[k * d + j] = row[j]! * scale;
    });
    return out;
  }

  /**
   * How many leading positions of a prompt with these ids the key/value cache holds: the ids it shares with cached
   * row 0, but never the whole prompt (its last position must run to give the next-token logits). A model with
   * linear-attention layers resumes only at some of them (`reusableLength`).
   */
  cachedPrefixLength(ids: readonly number[]): number {
    const cached = this.rowIds?.[0] ?? [];
    const limit = Math.min(cached.length, ids.length - 1);
    let n = 0;
    while (n < limit && cached[n] === ids[n]) n++;
    return n;
  }

  /**
   * How many leading positions `startPrompt` reuses for a prompt with these ids and this image: the shared prefix,
   * cut back to before the image when it ends inside it, and for a model with linear-attention layers the longest
   * snapshot (or row 0's end) within that.
   */
  reusableLength(ids: readonly number[], image: PromptImage | null): number {
    if ((image?.key ?? null) !== this.imageKey) return 0;
    let limit = this.cachedPrefixLength(ids);
    if (image && limit < image.span[1]) limit = Math.min(limit, image.span[0]);
    if (!this.linear) return limit;
    const candidates = [this.rowIds?.[0]?.length ?? 0, ...this.snapshots.map((s) => s.length)];
    return Math.max(0, ...candidates.filter((p) => p <= limit && this.resumePoint(ids, p)));
  }

  /** Where a model with linear-attention layers can resume after the first `reuse` positions of `ids` (null: nowhere). */
  private resumePoint(ids: readonly number[], reuse: number): ResumePoint | null {
    if (reuse === 0) return 'start';
    if (reuse > this.cachedPrefixLength(ids)) return null;
    if (this.rowIds?.[0]?.length === reuse) return 'live';
    return this.snapshots.find((s) => s.length === reuse && s.ids.every((id, i) => id === ids[i])) ?? null;
  }

  /** Makes every cached position unusable for reuse (the cache holds an image that the next prompt does not). */
  forgetCache(): void {
    this.rowIds = null;
    this.snapshots = [];
  }

  /**
   * Starts a prompt, reusing what the cache holds of it (`reusableLength`): the cache is forgotten when the image
   * differs from the one behind it, and a shared prefix that ends inside the image is cut back to before the image
   * (so its features are either all reused or all recomputed). `embed(from)` returns the embeddings of positions
   * [from, L). `snapshots`: see PromptBinding (the end of the image span is added).
   */
  async startPrompt(
    ids: readonly number[],
    image: PromptImage | null,
    embed: (from: number) => Promise<Float32Array>,
    pause?: () => Promise<void>,
    snapshots: readonly number[] = [],
  ): Promise<DecoderSequence> {
    if (ids.length >= this.maxSeq) {
      throw new InvalidRequestError(`the prompt has ${ids.length} tokens and leaves no room in the ${this.maxSeq}-token context`);
    }
    const key = image?.key ?? null;
    if (key !== this.imageKey) {
      this.forgetCache();
      this.imageKey = key;
    }
    const reuse = this.reusableLength(ids, image);
    if (reuse === 0) {
      // Nothing cached is kept: the keys and values go before the image is encoded, not after.
      this.active = null;
      this.forgetCache();
      this.cache.restart(0);
      this.linear?.reset();
    }
    const at = image ? [...snapshots, image.span[1]] : snapshots;
    return this.start(await embed(reuse), ids.length, { ids, reuse, pause, snapshots: at });
  }

  /**
   * Binds a prompt given as embeddings [seqLen − reuse, hidden] (text embeddings × scale_emb with image features
   * scattered in) of its positions [reuse, seqLen); see PromptBinding. Starting another sequence invalidates this
   * one: the runner has one cache.
   */
  start(inputsEmbeds: Float32Array, seqLen: number, binding?: PromptBinding): DecoderSequence {
    const d = this.dims.hiddenSize;
    const reuse = binding?.reuse ?? 0;
    if (binding && binding.ids.length !== seqLen) {
      throw new InvalidRequestError(`the prompt has ${binding.ids.length} ids for ${seqLen} positions`);
    }
    const cached = binding ? this.cachedPrefixLength(binding.ids) : 0;
    if (!Number.isInteger(reuse) || reuse < 0 || reuse > cached) {
      throw new InvalidRequestError(`cannot reuse ${reuse} positions: the cache holds the first ${cached} of this prompt`);
    }
    if (this.linear && binding && !this.resumePoint(binding.ids, reuse)) {
      throw new InvalidRequestError(
        `cannot reuse ${reuse} positions: the linear-attention state was not kept there (reusableLength gives where it was)`,
      );
    }
    if (!Number.isInteger(seqLen) || seqLen < 1 || inputsEmbeds.length !== (seqLen - reuse) * d) {
      throw new InvalidRequestError(
        `the prompt embeddings hold ${inputsEmbeds.length} values, expected ${seqLen - reuse} positions × ${d}`,
      );
    }
    if (seqLen > this.maxSeq) {
      throw new InvalidRequestError(
        `the prompt has ${seqLen} positions but the decoder was set up for at most ${this.maxSeq} (raise maxSeq)`,
      );
    }
    const snapshots = this.linear && binding ? this.keptSnapshots(binding.snapshots ?? [], reuse, seqLen) : [];
    this.active = new DecoderSequence(this, inputsEmbeds, seqLen, binding ? [...binding.ids] : null, reuse, binding?.pause, snapshots);
    return this.active;
  }

  /**
   * The snapshot positions in (reuse, seqLen] whose states keepSnapshot would still hold after the prefill: the latest
   * maxSnapshots. A prefill run ends at each of them, so the others would only cut it into more runs (a prompt of
   * thousands of turns, a snapshot asked at each, ran in thousands of runs that each read the whole cache).
   */
  private keptSnapshots(asked: readonly number[], reuse: number, seqLen: number): number[] {
    const positions = [...new Set(asked)].filter((p) => Number.isInteger(p) && p > reuse && p <= seqLen).sort((a, b) => a - b);
    return positions.slice(Math.max(0, positions.length - this.maxSnapshots));
  }

  /**
   * @internal Used by DecoderSequence: where the prefill of positions [reuse, length) ends its runs, in order. Runs
   * take at most prefillChunk positions; with linear-attention layers they also end at the multiples of linearChunk
   * and at every snapshot position.
   */
  prefillEnds(reuse: number, length: number, snapshots: readonly number[]): number[] {
    if (!this.linear) {
      const ends: number[] = [];
      for (let from = reuse; from < length; from += this.prefillChunk) ends.push(Math.min(length, from + this.prefillChunk));
      return ends;
    }
    const step = Math.min(this.prefillChunk, this.linearChunk);
    const ends = new Set([length, ...snapshots]);
    for (let p = (Math.floor(reuse / step) + 1) * step; p < length; p += step) ends.add(p);
    return [...ends].sort((a, b) => a - b);
  }

  /**
   * @internal Used by DecoderSequence: reorders the cached rows when `parents` is given, runs `rows` rows of `seq`
   * new positions and appends their keys/values (and takes the new linear-attention state). `newIds` (rows × seq,
   * row after row), when known, extend the remembered ids of the rows.
   */
  async forward(
    owner: DecoderSequence,
    embeds: Float32Array,
    rows: number,
    seq: number,
    parents: readonly number[] | undefined,
    newIds: readonly number[] | null,
  ): Promise<Float32Array> {
    if (owner !== this.active) throw new InvalidRequestError('this sequence was replaced by a later start(); start it again');
    const past = this.cache.length;
    if (past + seq > this.maxSeq) {
      throw new InvalidRequestError(`the sequence would reach ${past + seq} positions, more than maxSeq ${this.maxSeq}`);
    }
    if (seq > this.linearChunk) throw new RuntimeError(`internal error: a run of ${seq} positions exceeds linearChunk ${this.linearChunk}`);
    // Unknown until the run succeeds: a failed run may leave rows reordered or half written.
    const history = this.rowIds;
    this.rowIds = null;
    this.cache.reserve(past + seq, rows);
    if (parents) {
      this.cache.reorder(parents);
      this.linear?.reorder(parents);
    }
    const positions = new BigInt64Array(rows * seq);
    for (let r = 0; r < rows; r++) for (let i = 0; i < seq; i++) positions[r * seq + i] = BigInt(past + i);
    const feeds: Record<string, HostTensor> = {
      inputs_embeds: { type: 'float32', data: embeds, dims: [rows, seq, this.dims.hiddenSize] },
    };
    if (this.attentionLayers.length > 0) {
      feeds.position_ids = { type: 'int64', data: positions, dims: [rows, seq] };
      feeds.attention_bias = { type: 'float32', data: attentionBias(rows, seq, past), dims: [rows, 1, seq, past + seq] };
    }
    // Without cached positions the past is fed empty: the graph then neither scores nor normalises capacity slots
    // that are all masked (for a 528-token prompt that was a third of the prefill's time). A session that cannot
    // take an empty input (WebGPU) gets the whole buffer, every slot masked (the graph reads P from the bias).
    const emptyPast = past === 0 && this.session.acceptsEmptyInputs;
    const capacity = emptyPast ? 0 : this.cache.capacity;
    const pastDims = [rows, this.cache.kvHeads, capacity, this.cache.headDim];
    const pastOf = (buffer: Float32Array) => (emptyPast ? new Float32Array(0) : this.cache.view(buffer, rows));
    this.attentionLayers.forEach((layer, j) => {
      feeds[`past_key_${layer}`] = { type: 'float32', data: pastOf(this.cache.keys[j]!), dims: pastDims };
      feeds[`past_value_${layer}`] = { type: 'float32', data: pastOf(this.cache.values[j]!), dims: pastDims };
    });
    this.linear?.addFeeds(feeds);
    const out = await this.session.run(feeds);
    if (owner !== this.active) throw new InvalidRequestError('this sequence was replaced by a later start() while it ran');
    this.attentionLayers.forEach((layer, j) => {
      this.cache.append(this.cache.keys[j]!, out[`key_${layer}`]!.data as Float32Array, rows, seq);
      this.cache.append(this.cache.values[j]!, out[`value_${layer}`]!.data as Float32Array, rows, seq);
    });
    this.cache.length = past + seq;
    this.linear?.update(out);
    const logits = out.logits;
    if (!logits || logits.type !== 'float32') throw new RuntimeError('the decoder graph returned no float32 logits');
    if (history && newIds) this.rowIds = extendRows(history, parents, newIds, seq);
    return logits.data;
  }

  /**
   * @internal Used by DecoderSequence before a prefill: keeps the first `reuse` positions of row 0, which must
   * still hold `ids[0..reuse)`, forgets the rest and makes room for the `length` positions of the prompt. A model
   * with linear-attention layers takes the state it kept at `reuse` and drops the snapshots this prompt does not share.
   */
  truncate(owner: DecoderSequence, ids: readonly number[] | null, reuse: number, length: number): void {
    if (owner !== this.active) throw new InvalidRequestError('this sequence was replaced by a later start(); start it again');
    if (this.cachedPrefixLength(ids ?? []) < reuse) {
      throw new InvalidRequestError('the cache no longer holds the reused part of this prompt: start it again');
    }
    if (this.linear) {
      const point = this.resumePoint(ids ?? [], reuse);
      if (!point) throw new InvalidRequestError('the linear-attention state of the reused part is gone: start the prompt again');
      if (point === 'start') this.linear.reset();
      else this.linear.restore(point === 'live' ? this.linear.snapshot(ids!, reuse) : point);
      this.snapshots = this.snapshots.filter((s) => s.length <= reuse && s.ids.every((id, i) => id === ids![i]));
    }
    this.cache.restart(reuse, length);
    this.rowIds = ids ? [ids.slice(0, reuse)] : null;
  }

  /** @internal Used by DecoderSequence during a prefill: keeps row 0's linear-attention state after `length` positions of `ids`. */
  keepSnapshot(owner: DecoderSequence, ids: readonly number[], length: number): void {
    if (owner !== this.active || !this.linear || this.cache.length !== length) return;
    this.snapshots = this.snapshots.filter((s) => s.length !== length);
    this.snapshots.push(this.linear.snapshot(ids, length));
    this.snapshots.sort((a, b) => a.length - b.length);
    if (this.snapshots.length > this.maxSnapshots) this.snapshots = this.snapshots.slice(this.snapshots.length - this.maxSnapshots);
  }

  /** The positions at which a linear-attention state is kept now, in order (for diagnostics and tests). */
  get snapshotPositions(): number[] {
    return this.snapshots.map((s) => s.length);
  }

  /** Bytes the key/value cache holds now (keys and values of every full-attention layer). */
  get kvCacheBytes(): number {
    return [...this.cache.keys, ...this.cache.values].reduce((sum, buffer) => sum + buffer.byteLength, 0);
  }

  /** Bytes of linear-attention state held now: the rows' state and the snapshots (0 without such layers). */
  get linearStateBytes(): number {
    return (this.linear?.bytes ?? 0) + this.snapshots.reduce((sum, s) => sum + snapshotBytes(s), 0);
  }

  async release(): Promise<void> {
    this.active = null;
    this.snapshots = [];
    this.embeddings.close();
    await this.session.release();
  }
}

/**
 * One prompt bound to a runner: `prefill` once, then `step` with one token per row. Satisfies the generation
 * layer's `LogitsModel` interface.
 */
export class DecoderSequence {
  readonly vocabSize: number;
  private rows = 0;
  private busy = false;

  constructor(
    private readonly runner: DecoderRunner,
    private readonly promptEmbeds: Float32Array,
    private readonly promptLength: number,
    private readonly promptIds: readonly number[] | null,
    /** Prompt positions taken from the cache instead of being prefilled. */
    readonly reusedLength: number,
    private readonly pause?: () => Promise<void>,
    /** Positions after which the prefill keeps the linear-attention state (see PromptBinding). */
    private readonly snapshots: readonly number[] = [],
  ) {
    this.vocabSize = runner.vocabSize;
  }

  /**
   * Runs the bound prompt (positions reusedLength..L-1 after the reused ones), in runs of at most the runner's
   * `prefillChunk` positions (`prefillEnds`; awaiting the binding's `pause` between them), and returns its last
   * position's logits.
   */
  async prefill(): Promise<Float32Array> {
    return this.exclusive(async () => {
      const reuse = this.reusedLength;
      this.runner.truncate(this, this.promptIds, reuse, this.promptLength);
      this.rows = 0;
      const d = this.runner.dims.hiddenSize;
      let logits: Float32Array = new Float32Array(0);
      let from = reuse;
      for (const to of this.runner.prefillEnds(reuse, this.promptLength, this.snapshots)) {
        if (from > reuse) await this.pause?.();
        const embeds = this.promptEmbeds.subarray((from - reuse) * d, (to - reuse) * d);
        logits = await this.runner.forward(this, embeds, 1, to - from, undefined, this.promptIds?.slice(from, to) ?? null);
        if (this.promptIds && this.snapshots.includes(to)) this.runner.keepSnapshot(this, this.promptIds, to);
        from = to;
      }
      this.rows = 1;
      return logits;
    });
  }

  /**
   * Feeds tokens[i] to row i, where row i first becomes a copy of the cached row parents[i] (default: itself).
   * The first step after prefill may fan the single prompt row out to several (parents all 0).
   */
  async step(tokens: number[], parents?: number[]): Promise<Float32Array[]> {
    return this.exclusive(async () => {
      if (this.rows === 0) throw new InvalidRequestError('step() needs the prompt first: call prefill()');
      const n = tokens.length;
      if (n < 1 || n > this.runner.maxRows) {
        throw new InvalidRequestError(`step() got ${n} tokens; the decoder was set up for 1 to ${this.runner.maxRows} rows`);
      }
      if (parents) {
        if (parents.length !== n || parents.some((p) => !Number.isInteger(p) || p < 0 || p >= this.rows)) {
          throw new InvalidRequestError(
            `step() parents [${parents}] must name one of the ${this.rows} cached rows for each of the ${n} tokens`,
          );
        }
      } else if (n !== this.rows) {
        throw new InvalidRequestError(
          `step() got ${n} tokens for ${this.rows} cached rows; pass parents to change the number of rows`,
        );
      }
      const logits = await this.runner.forward(this, this.runner.embed(tokens), n, 1, parents, tokens);
      this.rows = n;
      const v = this.vocabSize;
      return Array.from({ length: n }, (_, r) => logits.subarray(r * v, (r + 1) * v));
    });
  }

  private async exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.busy) throw new InvalidRequestError('the decoder is still running the previous call; await it first');
    this.busy = true;
    try {
      return await work();
    } finally {
      this.busy = false;
    }
  }
}

/**
 * The rows' ids after a run: row i continues row parents[i] (default: itself) with its `seq` new ids. Rows that
 * continue themselves are extended in place; the others start from a copy of their parent's ids.
 */
function extendRows(
  history: number[][],
  parents: readonly number[] | undefined,
  newIds: readonly number[],
  seq: number,
): number[][] {
  const rows = newIds.length / seq;
  const next = Array.from({ length: rows }, (_, r) => {
    const parent = parents ? parents[r]! : r;
    return parent === r ? history[r]! : [...history[parent]!];
  });
  next.forEach((ids, r) => {
    for (let i = 0; i < seq; i++) ids.push(newIds[r * seq + i]!);
  });
  return next;
}
