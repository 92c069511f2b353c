// A character trie answering "which of these strings is the longest one starting here?". SentencePiece uses one for
// its user-defined symbols (normalizer::PrefixMatcher) and transformers one for splitting on added tokens.

interface TrieNode {
  children: Map<number, TrieNode>;
  terminal: boolean;
}

export class StringTrie {
  private readonly root: TrieNode = { children: new Map(), terminal: false };
  private count = 0;

  constructor(words: Iterable<string> = []) {
    for (const word of words) this.add(word);
  }

  get size(): number {
    return this.count;
  }

  add(word: string): void {
    if (word.length === 0) return;
    let node = this.root;
    for (let i = 0; i < word.length; i++) {
      const unit = word.charCodeAt(i);
      let child = node.children.get(unit);
      if (child === undefined) {
        child = { children: new Map(), terminal: false };
        node.children.set(unit, child);
      }
      node = child;
    }
    if (!node.terminal) this.count++;
    node.terminal = true;
  }

  /** Length in UTF-16 units of the longest stored string that starts at `text[pos]`, or 0 when none does. */
  longestMatchAt(text: string, pos: number): number {
    let node: TrieNode | undefined = this.root;
    let best = 0;
    for (let i = pos; i < text.length; i++) {
      node = node.children.get(text.charCodeAt(i));
      if (node === undefined) break;
      if (node.terminal) best = i + 1 - pos;
    }
    return best;
  }
}
