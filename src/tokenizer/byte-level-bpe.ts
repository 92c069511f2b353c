// The BPE model of a byte-level tokenizer.json (GPT-2, Qwen2, Qwen3.5), a port of tokenizers' `BPE::tokenize` /
// `Word::merge_all` (no dropout, no unknown token, no byte fallback, no prefixes or suffixes):
//
//   piece ──► UTF-8 bytes ──► one symbol per byte (the id of its byte-level character)
//         ──► repeatedly merge the adjacent pair with the lowest merge rank (ties: the leftmost) ──► ids
//
// Pieces are cached, as tokenizers does, so common words are merged once.

import { TokenizerError } from '../errors.js';
import { BYTE_TO_CHAR, bytesToByteLevel } from './byte-level.js';
import { TokenIndex } from './token-table.js';

const utf8Encoder = new TextEncoder();

/** Pieces longer than this many UTF-16 units are not cached (tokenizers: MAX_LENGTH). */
const MAX_CACHED_PIECE = 256;
/** Cached pieces before the cache starts afresh (tokenizers: DEFAULT_CACHE_CAPACITY). */
const CACHE_CAPACITY = 10_000;

export interface BpeModelOptions {
  /** Look the whole piece up in the vocabulary before merging (tokenizers' `ignore_merges`). */
  ignoreMerges: boolean;
}

/**
 * Merge rank of each pair of ids, in an open-addressing hash table of typed arrays: building and querying it for
 * 248k merges took a third of the time of a Map keyed by `left·2^26 + right` (numbers above 2^31 are boxed), and
 * this lookup is the inner loop of encoding.
 */
class PairTable {
  private readonly lefts: Int32Array;
  private readonly rights: Int32Array;
  private readonly ranks: Int32Array;
  private readonly mask: number;

  constructor(pairs: number) {
    let capacity = 16;
    while (capacity < pairs * 2) capacity *= 2;
    this.lefts = new Int32Array(capacity).fill(-1);
    this.rights = new Int32Array(capacity);
    this.ranks = new Int32Array(capacity);
    this.mask = capacity - 1;
  }

  private slot(left: number, right: number): number {
    let i = (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca77)) & this.mask;
    while (this.lefts[i] !== -1 && (this.lefts[i] !== left || this.rights[i] !== right)) i = (i + 1) & this.mask;
    return i;
  }

  /** Sets the rank of a pair (a later rule for the same pair replaces the earlier one). */
  set(left: number, right: number, rank: number): void {
    const i = this.slot(left, right);
    this.lefts[i] = left;
    this.rights[i] = right;
    this.ranks[i] = rank;
  }

  /** The rank of a pair, or -1 when no rule merges it. */
  get(left: number, right: number): number {
    const i = this.slot(left, right);
    return this.lefts[i] === -1 ? -1 : this.ranks[i]!;
  }
}

/** A queued merge: the pair starting at symbol `pos`, with its rank and the id it merges into. */
interface Merge {
  pos: number;
  rank: number;
  newId: number;
}

function before(a: Merge, b: Merge): boolean {
  return a.rank < b.rank || (a.rank === b.rank && a.pos < b.pos);
}

export class ByteLevelBpe {
  /** Id of the byte-level character of each byte, or -1 when the vocabulary lacks it (that byte is dropped). */
  private readonly byteIds = new Int32Array(256);
  /** (left id, right id) → index of the merge (its rank); the merged id at that index in mergedIds. */
  private readonly mergeRanks: PairTable;
  private readonly mergedIds: Int32Array;
  private readonly cache = new Map<string, readonly number[]>();
  /** The vocabulary, kept only to look whole pieces up (`ignoreMerges`); merging needs only the tables above. */
  private readonly wholePieces: TokenIndex | null;

  /**
   * @param vocab token → id of the learned vocabulary
   * @param merges the merge rules in rank order, each as its two tokens
   */
  constructor(
    vocab: ReadonlyMap<string, number>,
    merges: readonly (readonly [string, string])[],
    options: BpeModelOptions,
  ) {
    this.wholePieces = options.ignoreMerges ? new TokenIndex(vocab) : null;
    for (let b = 0; b < 256; b++) this.byteIds[b] = vocab.get(BYTE_TO_CHAR[b]!) ?? -1;
    this.mergedIds = new Int32Array(merges.length);
    this.mergeRanks = new PairTable(merges.length);
    merges.forEach(([left, right], rank) => {
      const leftId = vocab.get(left);
      const rightId = vocab.get(right);
      const mergedId = vocab.get(left + right);
      if (leftId === undefined || rightId === undefined || mergedId === undefined) {
        const missing = [left, right, left + right].find((t) => !vocab.has(t))!;
        throw new TokenizerError(`merge ${rank} ("${left} ${right}") uses the token ${JSON.stringify(missing)}, which is not in the vocabulary`);
      }
      // Like tokenizers (which collects the rules into a hash map), a later rule for the same pair wins.
      this.mergeRanks.set(leftId, rightId, rank);
      this.mergedIds[rank] = mergedId;
    });
  }

  /** Ids of one pre-tokenized piece (given as text; its UTF-8 bytes are what is merged). */
  tokenize(piece: string): readonly number[] {
    if (piece.length === 0) return [];
    const cached = this.cache.get(piece);
    if (cached !== undefined) return cached;
    const bytes = utf8Encoder.encode(piece);
    let ids: readonly number[] | undefined;
    if (this.wholePieces) {
      const whole = this.wholePieces.get(bytesToByteLevel(bytes));
      if (whole !== undefined) ids = [whole];
    }
    ids ??= this.mergeBytes(bytes);
    if (piece.length <= MAX_CACHED_PIECE) {
      if (this.cache.size >= CACHE_CAPACITY) this.cache.clear();
      this.cache.set(piece, ids);
    }
    return ids;
  }

  // Port of tokenizers' `Word::merge_all`: symbols in a linked list, candidate merges in a binary heap; an entry
  // whose pair has changed since it was queued is skipped.
  private mergeBytes(bytes: Uint8Array): number[] {
    const ids: number[] = [];
    for (const b of bytes) {
      const id = this.byteIds[b]!;
      if (id >= 0) ids.push(id);
    }
    const n = ids.length;
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const heap: Merge[] = [];
    const queue = (pos: number, left: number, right: number): void => {
      const rank = this.mergeRanks.get(left, right);
      if (rank !== -1) heapPush(heap, { pos, rank, newId: this.mergedIds[rank]! });
    };
    for (let i = 0; i + 1 < n; i++) queue(i, ids[i]!, ids[i + 1]!);

    while (heap.length > 0) {
      const top = heapPop(heap);
      const right = next[top.pos]!;
      if (!alive[top.pos] || right === -1) continue;
      const rank = this.mergeRanks.get(ids[top.pos]!, ids[right]!);
      if (rank === -1 || this.mergedIds[rank] !== top.newId) continue;
      // Merge the right symbol into this one, then queue the new pairs with both neighbours.
      ids[top.pos] = top.newId;
      alive[right] = 0;
      next[top.pos] = next[right]!;
      if (next[right]! !== -1) prev[next[right]!] = top.pos;
      if (prev[top.pos]! !== -1) queue(prev[top.pos]!, ids[prev[top.pos]!]!, top.newId);
      if (next[top.pos]! !== -1) queue(top.pos, top.newId, ids[next[top.pos]!]!);
    }

    const out: number[] = [];
    for (let i = 0; i !== -1 && i < n; i = next[i]!) out.push(ids[i]!);
    return out;
  }
}

function heapPush(heap: Merge[], item: Merge): void {
  let i = heap.push(item) - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(item, heap[parent]!)) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = item;
}

function heapPop(heap: Merge[]): Merge {
  const top = heap[0]!;
  const last = heap.pop()!;
  if (heap.length > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const r = l + 1;
      const child = r < heap.length && before(heap[r]!, heap[l]!) ? r : l;
      if (!before(heap[child]!, last)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
  return top;
}
