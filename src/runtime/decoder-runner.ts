// Runs the decoder graph (src/models/parts/decoder.ts: MiniCPM and Mistral) with a KV cache that lives on the host.
//
// Cache layout, per layer and for keys and values alike: one Float32Array [rows][kv_heads][capacity][head_dim].
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

import { InvalidRequestError, RuntimeError } from '../errors.js';
import { TensorRows } from '../checkpoint/rows.js';
import type { TensorSource } from '../checkpoint/safetensors.js';
import { ShardedCheckpoint } from '../checkpoint/sharded.js';
import type { WeightPrecision } from '../graph/quantize.js';
import { ATTENTION_MASKED, buildDecoder, headDim, type MiniCPMTextDims } from '../models/parts/decoder.js';
import { cachedSession } from './model-cache.js';
import type { GraphSession, HostTensor, RuntimeOptions } from './session.js';

export interface DecoderRunnerOptions extends RuntimeOptions {
  /** Checkpoint name prefix of the language model (default `llm.`). */
  prefix?: string;
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
   * the noise (37.9–38.2 against 34.9–40.9 tok/s).
   */
  prefillChunk?: number;
}

const DEFAULT_PREFILL_CHUNK = 128;

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
 * The token-embedding table: read row by row from the checkpoint file when the source is a checkpoint folder (nothing
 * held in memory), else (a source built in memory, as tests make) kept as float32.
 */
type EmbeddingTable = TensorRows | Float32Array;

function openEmbeddings(source: TensorSource, name: string): EmbeddingTable {
  return source instanceof ShardedCheckpoint ? new TensorRows(source.info(name)) : source.float32(name);
}

/** How `start` binds a prompt to what the cache already holds. */
export interface PromptBinding {
  /** The prompt's ids (seqLen of them), remembered so that a later prompt can reuse the positions it shares. */
  ids: readonly number[];
  /** Leading positions taken from the cache, at most `cachedPrefixLength(ids)` (default 0). */
  reuse?: number;
  /** Awaited before each prefill part after the first (e.g. a turn of the event loop that throws on an abort). */
  pause?: () => Promise<void>;
}

/** Which image a prompt holds and the positions [first, end) its features fill. */
export interface PromptImage {
  key: string;
  span: readonly [number, number];
}

/** Owns the decoder session, the token-embedding table and the KV cache; `start` binds a prompt to it. */
export class DecoderRunner {
  readonly vocabSize: number;
  private readonly cache: KvCache;
  private active: DecoderSequence | null = null;
  /** The ids each cached row holds, or null when unknown (a prompt started without ids, a failed run). */
  private rowIds: number[][] | null = null;
  /** The key of the image behind the cached positions (null: none). */
  private imageKey: string | null = null;

  private constructor(
    private readonly session: GraphSession,
    private readonly embeddings: EmbeddingTable,
    readonly dims: MiniCPMTextDims,
    readonly maxSeq: number,
    readonly maxRows: number,
    readonly prefillChunk: number,
  ) {
    this.vocabSize = dims.vocabSize;
    this.cache = new KvCache(dims.numLayers, dims.numKvHeads, headDim(dims), maxSeq, maxRows);
  }

  /** Builds the graph (logits of the last position), or takes it from the converted-model cache, and starts its session. */
  static async create(source: TensorSource, dims: MiniCPMTextDims, options: DecoderRunnerOptions): Promise<DecoderRunner> {
    const prefix = options.prefix ?? 'llm.';
    const maxRows = options.maxRows ?? 1;
    const prefillChunk = options.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
    if ([options.maxSeq, maxRows, prefillChunk].some((n) => !Number.isInteger(n) || n < 1)) {
      throw new InvalidRequestError(
        `maxSeq (${options.maxSeq}), maxRows (${maxRows}) and prefillChunk (${prefillChunk}) must be positive integers`,
      );
    }
    const graphOptions = { prefix, logits: 'last', precision: options.precision } as const;
    const session = await cachedSession({
      part: 'decoder', label: 'language-model decoder', source, key: { dims, graphOptions },
      build: (weights) => buildDecoder(weights, dims, graphOptions).serialize(),
    }, options);
    try {
      return new DecoderRunner(session, openEmbeddings(source, `${prefix}model.embed_tokens.weight`), dims, options.maxSeq, maxRows, prefillChunk);
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /** Token embeddings × scale_emb (upstream `embed_tokens(ids) * scale_emb`), row after row. */
  embed(ids: readonly number[]): Float32Array {
    const d = this.dims.hiddenSize;
    const out = new Float32Array(ids.length * d);
    const table = this.embeddings;
    ids.forEach((id, k) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.dims.vocabSize) {
        throw new InvalidRequestError(`token id ${id} is outside the vocabulary [0, ${this.dims.vocabSize})`);
      }
      const row = table instanceof TensorRows ? table.read(id) : table.subarray(id * d, (id + 1) * d);
      for (let j = 0; j < d; j++) out[k * d + j] = row[j]! * this.dims.scaleEmb;
    });
    return out;
  }

  /**
   * How many leading positions of a prompt with these ids the cache can give back: the ids it shares with cached
   * row 0, but never the whole prompt (its last position must run to give the next-token logits).
   */
  cachedPrefixLength(ids: readonly number[]): number {
    const cached = this.rowIds?.[0] ?? [];
    const limit = Math.min(cached.length, ids.length - 1);
    let n = 0;
    while (n < limit && cached[n] === ids[n]) n++;
    return n;
  }

  /** Makes every cached position unusable for reuse (the cache holds an image that the next prompt does not). */
  forgetCache(): void {
    this.rowIds = null;
  }

  /**
   * Starts a prompt, reusing what the cache holds of it: the cache is forgotten when the image differs from the one
   * behind it, and a shared prefix that ends inside the image is cut back to before the image (so its features are
   * either all reused or all recomputed). `embed(from)` returns the embeddings of positions [from, L).
   */
  async startPrompt(
    ids: readonly number[],
    image: PromptImage | null,
    embed: (from: number) => Promise<Float32Array>,
    pause?: () => Promise<void>,
  ): Promise<DecoderSequence> {
    if (ids.length >= this.maxSeq) {
      throw new InvalidRequestError(`the prompt has ${ids.length} tokens and leaves no room in the ${this.maxSeq}-token context`);
    }
    const key = image?.key ?? null;
    if (key !== this.imageKey) {
      this.forgetCache();
      this.imageKey = key;
    }
    let reuse = this.cachedPrefixLength(ids);
    if (image && reuse < image.span[1]) reuse = Math.min(reuse, image.span[0]);
    if (reuse === 0) {
      // Nothing cached is kept: the keys and values go before the image is encoded, not after.
      this.active = null;
      this.forgetCache();
      this.cache.restart(0);
    }
    return this.start(await embed(reuse), ids.length, { ids, reuse, pause });
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
    this.active = new DecoderSequence(this, inputsEmbeds, seqLen, binding ? [...binding.ids] : null, reuse, binding?.pause);
    return this.active;
  }

  /**
   * @internal Used by DecoderSequence: reorders the cached rows when `parents` is given, runs `rows` rows of `seq`
   * new positions and appends their keys/values. `newIds` (rows × seq, row after row), when known, extend the
   * remembered ids of the rows.
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
    // Unknown until the run succeeds: a failed run may leave rows reordered or half written.
    const history = this.rowIds;
    this.rowIds = null;
    this.cache.reserve(past + seq, rows);
    if (parents) this.cache.reorder(parents);
    const positions = new BigInt64Array(rows * seq);
    for (let r = 0; r < rows; r++) for (let i = 0; i < seq; i++) positions[r * seq + i] = BigInt(past + i);
    const feeds: Record<string, HostTensor> = {
      inputs_embeds: { type: 'float32', data: embeds, dims: [rows, seq, this.dims.hiddenSize] },
      position_ids: { type: 'int64', data: positions, dims: [rows, seq] },
      attention_bias: { type: 'float32', data: attentionBias(rows, seq, past), dims: [rows, 1, seq, past + seq] },
    };
    // Without cached positions the past is fed empty: the graph then neither scores nor normalises capacity slots
    // that are all masked (for a 528-token prompt that was a third of the prefill's time).
    const capacity = past === 0 ? 0 : this.cache.capacity;
    const pastDims = [rows, this.cache.kvHeads, capacity, this.cache.headDim];
    const pastOf = (buffer: Float32Array) => (past === 0 ? new Float32Array(0) : this.cache.view(buffer, rows));
    for (let i = 0; i < this.dims.numLayers; i++) {
      feeds[`past_key_${i}`] = { type: 'float32', data: pastOf(this.cache.keys[i]!), dims: pastDims };
      feeds[`past_value_${i}`] = { type: 'float32', data: pastOf(this.cache.values[i]!), dims: pastDims };
    }
    const out = await this.session.run(feeds);
    if (owner !== this.active) throw new InvalidRequestError('this sequence was replaced by a later start() while it ran');
    for (let i = 0; i < this.dims.numLayers; i++) {
      this.cache.append(this.cache.keys[i]!, out[`key_${i}`]!.data as Float32Array, rows, seq);
      this.cache.append(this.cache.values[i]!, out[`value_${i}`]!.data as Float32Array, rows, seq);
    }
    this.cache.length = past + seq;
    const logits = out.logits;
    if (!logits || logits.type !== 'float32') throw new RuntimeError('the decoder graph returned no float32 logits');
    if (history && newIds) this.rowIds = extendRows(history, parents, newIds, seq);
    return logits.data;
  }

  /**
   * @internal Used by DecoderSequence before a prefill: keeps the first `reuse` positions of row 0, which must
   * still hold `ids[0..reuse)`, forgets the rest and makes room for the `length` positions of the prompt.
   */
  truncate(owner: DecoderSequence, ids: readonly number[] | null, reuse: number, length: number): void {
    if (owner !== this.active) throw new InvalidRequestError('this sequence was replaced by a later start(); start it again');
    if (this.cachedPrefixLength(ids ?? []) < reuse) {
      throw new InvalidRequestError('the cache no longer holds the reused part of this prompt: start it again');
    }
    this.cache.restart(reuse, length);
    this.rowIds = ids ? [ids.slice(0, reuse)] : null;
  }

  /** Bytes the KV cache holds now (keys and values of every layer). */
  get kvCacheBytes(): number {
    return [...this.cache.keys, ...this.cache.values].reduce((sum, buffer) => sum + buffer.byteLength, 0);
  }

  async release(): Promise<void> {
    this.active = null;
    if (this.embeddings instanceof TensorRows) this.embeddings.close();
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
  ) {
    this.vocabSize = runner.vocabSize;
  }

  /**
   * Runs the bound prompt (positions reusedLength..L-1 after the reused ones), in runs of at most the runner's
   * `prefillChunk` positions (awaiting the binding's `pause` between them), and returns its last position's logits.
   */
  async prefill(): Promise<Float32Array> {
    return this.exclusive(async () => {
      const reuse = this.reusedLength;
      this.runner.truncate(this, this.promptIds, reuse, this.promptLength);
      this.rows = 0;
      const d = this.runner.dims.hiddenSize;
      let logits: Float32Array = new Float32Array(0);
      for (let from = reuse; from < this.promptLength; from += this.runner.prefillChunk) {
        if (from > reuse) await this.pause?.();
        const to = Math.min(this.promptLength, from + this.runner.prefillChunk);
        const embeds = this.promptEmbeds.subarray((from - reuse) * d, (to - reuse) * d);
        logits = await this.runner.forward(this, embeds, 1, to - from, undefined, this.promptIds?.slice(from, to) ?? null);
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

/** Cache positions are allocated in steps of this many. */
const CAPACITY_STEP = 64;

/**
 * Per-layer key and value buffers [rows][kvHeads][capacity][headDim]; every row holds `length` positions. Memory
 * follows what is used: rows are added when a step feeds more of them (beams), the capacity grows in steps of 64
 * positions (up to maxSeq), and a new prompt gives back what the previous answer needed beyond it. Each buffer is a
 * resizable ArrayBuffer: it grows and shrinks in place (its blocks moved within it), and what it gives back returns
 * to the system at once instead of waiting for the garbage collector. Attention reads every capacity slot, so the
 * unused ones are kept few: growing by 64 positions moves the cache within its buffers once every 64 tokens (for
 * MiniCPM-V 2.0 at 600 positions, 0.4 GB, a few ms per token), where doubling had it read up to twice the used
 * positions at every step and score as many masked slots in a prefill.
 */
class KvCache {
  keys: Float32Array[] = [];
  values: Float32Array[] = [];
  capacity = 0;
  rows = 0;
  length = 0;
  /** The layers' key buffers, then their value buffers. */
  private readonly buffers: ArrayBuffer[];
  private scratch = new Float32Array(0);

  constructor(
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly maxSeq: number,
    maxRows: number,
  ) {
    const mostBytes = maxRows * kvHeads * maxSeq * headDim * Float32Array.BYTES_PER_ELEMENT;
    this.buffers = Array.from({ length: 2 * layers }, () => new ArrayBuffer(0, { maxByteLength: mostBytes }));
  }

  /** The first `rows` rows of a layer buffer: exactly the graph's past input, no copy. */
  view(buffer: Float32Array, rows: number): Float32Array {
    return buffer.subarray(0, rows * this.kvHeads * this.capacity * this.headDim);
  }

  /** Makes room for `needed` positions in `rows` rows (the used positions of the rows there are kept). */
  reserve(needed: number, rows: number): void {
    if (needed <= this.capacity && rows <= this.rows) return;
    this.resize(Math.max(this.capacity, this.capacityFor(needed)), Math.max(rows, this.rows));
  }

  /**
   * Starts a new prompt after the first `keep` positions of row 0, with room for `room` positions in that one row.
   * What the previous answer grew beyond that (beam rows, positions) is given back; with nothing kept and no room
   * asked for, everything is.
   */
  restart(keep: number, room = 0): void {
    this.length = Math.min(this.length, keep);
    if (keep === 0) this.resize(0, 0);
    if (keep > 0 || room > 0) this.resize(this.capacityFor(Math.max(keep, room)), 1);
  }

  private capacityFor(positions: number): number {
    return Math.min(this.maxSeq, Math.ceil(positions / CAPACITY_STEP) * CAPACITY_STEP);
  }

  /**
   * Brings the buffers to `capacity` positions × `rows` rows in place, keeping the used positions of the rows both
   * have: a buffer grows first and its blocks move towards the end, last block first; it shrinks after its blocks
   * moved towards the start, first block first. Slots past the used positions may hold stale entries: attention
   * masks them.
   */
  private resize(capacity: number, rows: number): void {
    const used = this.length * this.headDim;
    const from = this.capacity * this.headDim;
    const to = capacity * this.headDim;
    const kept = Math.min(rows, this.rows) * this.kvHeads;
    const bytes = rows * this.kvHeads * to * Float32Array.BYTES_PER_ELEMENT;
    for (const buffer of this.buffers) {
      if (bytes > buffer.byteLength) buffer.resize(bytes);
      const all = new Float32Array(buffer);
      if (to > from) for (let block = kept - 1; block > 0; block--) all.copyWithin(block * to, block * from, block * from + used);
      if (to < from) for (let block = 1; block < kept; block++) all.copyWithin(block * to, block * from, block * from + used);
      if (bytes < buffer.byteLength) buffer.resize(bytes);
    }
    const floats = bytes / Float32Array.BYTES_PER_ELEMENT;
    const views = this.buffers.map((buffer) => new Float32Array(buffer, 0, floats));
    this.keys = views.slice(0, this.layers);
    this.values = views.slice(this.layers);
    this.capacity = capacity;
    this.rows = rows;
  }

  /** Writes new entries [rows, kvHeads, seq, headDim] at positions [length, length+seq) of each row. */
  append(buffer: Float32Array, fresh: Float32Array, rows: number, seq: number): void {
    const span = seq * this.headDim;
    for (let block = 0; block < rows * this.kvHeads; block++) {
      buffer.set(fresh.subarray(block * span, (block + 1) * span), (block * this.capacity + this.length) * this.headDim);
    }
  }

  /**
   * Row i := row parents[i] in every buffer. Only rows whose parent is another row are written, and only their
   * used positions; a written row that is also some row's parent is first saved to a reused scratch buffer.
   */
  reorder(parents: readonly number[]): void {
    const moved = parents.flatMap((p, i) => (p !== i ? [i] : []));
    if (moved.length === 0) return;
    const sources = new Set(moved.map((i) => parents[i]!));
    const saved = moved.filter((i) => sources.has(i));
    const headStride = this.capacity * this.headDim;
    const used = this.length * this.headDim;
    const rowSpan = this.kvHeads * used;
    if (this.scratch.length < saved.length * rowSpan) this.scratch = new Float32Array(saved.length * rowSpan);
    const head = (buffer: Float32Array, row: number, h: number) => {
      const at = (row * this.kvHeads + h) * headStride;
      return buffer.subarray(at, at + used);
    };
    const savedHead = (k: number, h: number) => this.scratch.subarray(k * rowSpan + h * used, k * rowSpan + (h + 1) * used);
    for (const buffer of [...this.keys, ...this.values]) {
      saved.forEach((row, k) => {
        for (let h = 0; h < this.kvHeads; h++) savedHead(k, h).set(head(buffer, row, h));
      });
      for (const i of moved) {
        const k = saved.indexOf(parents[i]!);
        for (let h = 0; h < this.kvHeads; h++) {
          buffer.set(k >= 0 ? savedHead(k, h) : head(buffer, parents[i]!, h), (i * this.kvHeads + h) * headStride);
        }
      }
    }
  }
}
