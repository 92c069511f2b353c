// SentencePiece BPE segmentation, a port of sentencepiece 0.1.97 `bpe::Model::SampleEncode` (without dropout):
//
//   normalized text ──► symbols (one character each; a user-defined piece is one frozen symbol)
//                  ──► repeatedly merge the adjacent pair whose concatenation is the vocabulary piece with the
//                      highest score (ties: the leftmost pair), until no adjacent pair forms a piece
//                  ──► UNUSED pieces are split back into the two symbols they were merged from
//
// Symbols form a doubly linked list over the text and candidate pairs sit in a binary heap, so a 10,000-character
// chunk takes milliseconds. Stale heap entries are recognised as sentencepiece does: by the summed symbol lengths.

import type { StringTrie } from './trie.js';

/** What the merge loop needs to know about the vocabulary. */
export interface BpeVocabulary {
  /** Id of a NORMAL, USER_DEFINED or UNUSED piece (sentencepiece's `pieces_`), else undefined. */
  mergeableId(piece: string): number | undefined;
  /** sentencepiece's PieceToId: control/unknown/byte pieces first, then the others, else the `<unk>` id. */
  pieceToId(piece: string): number;
  score(id: number): number;
  isUnused(id: number): boolean;
  /** User-defined pieces, which are matched first and never merged with neighbours. */
  userDefined: StringTrie;
}

interface Pair {
  left: number;
  right: number;
  score: number;
  /** Length of the merged piece when the pair was queued. */
  size: number;
}

/** Pair a comes out of the heap before pair b. */
function before(a: Pair, b: Pair): boolean {
  return a.score > b.score || (a.score === b.score && a.left < b.left);
}

class PairHeap {
  private readonly items: Pair[] = [];

  get length(): number {
    return this.items.length;
  }

  push(pair: Pair): void {
    const items = this.items;
    let i = items.push(pair) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(pair, items[parent]!)) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = pair;
  }

  pop(): Pair {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= items.length) break;
        const r = l + 1;
        const child = r < items.length && before(items[r]!, items[l]!) ? r : l;
        if (!before(items[child]!, last)) break;
        items[i] = items[child]!;
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}

/** Length of the symbol starting at `text[pos]`: a user-defined piece, else one code point. */
function symbolLength(text: string, pos: number, userDefined: StringTrie): { length: number; frozen: boolean } {
  const matched = userDefined.size > 0 ? userDefined.longestMatchAt(text, pos) : 0;
  if (matched > 0) return { length: matched, frozen: true };
  const unit = text.charCodeAt(pos);
  const next = text.charCodeAt(pos + 1);
  const surrogatePair = unit >= 0xd800 && unit < 0xdc00 && next >= 0xdc00 && next < 0xe000;
  return { length: surrogatePair ? 2 : 1, frozen: false };
}

/** Segments a normalized string into pieces (characters missing from the vocabulary stay single pieces). */
export function bpeSegment(normalized: string, vocab: BpeVocabulary): string[] {
  // 1. Split into symbols; a symbol is alive while start < end.
  const start: number[] = [];
  const end: number[] = [];
  const frozen: boolean[] = [];
  for (let pos = 0; pos < normalized.length;) {
    const symbol = symbolLength(normalized, pos, vocab.userDefined);
    start.push(pos);
    end.push(pos + symbol.length);
    frozen.push(symbol.frozen);
    pos += symbol.length;
  }
  const n = start.length;
  if (n === 0) return [];
  const prev = Array.from({ length: n }, (_, i) => i - 1);
  const next = Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));

  // Reverse merges, for resegmenting UNUSED pieces: merged piece → [left, right].
  const reverseMerges = new Map<string, [string, string]>();
  const heap = new PairHeap();
  const maybeAddPair = (left: number, right: number): void => {
    if (left === -1 || right === -1 || frozen[left] || frozen[right]) return;
    const piece = normalized.slice(start[left]!, end[right]!);
    const id = vocab.mergeableId(piece);
    if (id === undefined) return;
    heap.push({ left, right, score: vocab.score(id), size: piece.length });
    if (vocab.isUnused(id)) {
      reverseMerges.set(piece, [normalized.slice(start[left]!, end[left]!), normalized.slice(start[right]!, end[right]!)]);
    }
  };

  // 2. Queue every adjacent pair, then merge the best one until none is left.
  for (let i = 1; i < n; i++) maybeAddPair(i - 1, i);
  while (heap.length > 0) {
    const top = heap.pop();
    const leftLength = end[top.left]! - start[top.left]!;
    const rightLength = end[top.right]! - start[top.right]!;
    if (leftLength === 0 || rightLength === 0 || leftLength + rightLength !== top.size) continue;
    end[top.left] = end[top.right]!;
    next[top.left] = next[top.right]!;
    if (next[top.right]! >= 0) prev[next[top.right]!] = top.left;
    end[top.right] = start[top.right]!;
    maybeAddPair(prev[top.left]!, top.left);
    maybeAddPair(top.left, next[top.left]!);
  }

  // 3. Read the surviving symbols, splitting UNUSED pieces back into their parts.
  const out: string[] = [];
  const emit = (piece: string): void => {
    const parts = vocab.isUnused(vocab.pieceToId(piece)) ? reverseMerges.get(piece) : undefined;
    if (parts === undefined) {
      out.push(piece);
      return;
    }
    emit(parts[0]);
    emit(parts[1]);
  };
  for (let i = 0; i !== -1; i = next[i]!) emit(normalized.slice(start[i]!, end[i]!));
  return out;
}
