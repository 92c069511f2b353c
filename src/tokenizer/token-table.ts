// A tokenizer's id ↔ token tables as one flat string and typed arrays each, instead of Maps of 250k entries: such a
// Map is millions of slots that every full garbage collection scans, and decoding allocates enough (each step's
// outputs from ONNX Runtime) to run one every few steps.

/** id → token text, for ids 0 … size − 1 (an id without a token gives undefined). */
export class TokenList {
  readonly size: number;
  private readonly text: string;
  private readonly starts: Int32Array;
  /** −1: the id has no token. */
  private readonly lengths: Int32Array;

  constructor(tokens: ReadonlyMap<number, string>) {
    let largest = -1;
    for (const id of tokens.keys()) if (id > largest) largest = id;
    this.size = largest + 1;
    this.starts = new Int32Array(this.size);
    this.lengths = new Int32Array(this.size).fill(-1);
    const pieces: string[] = [];
    let at = 0;
    for (const [id, token] of tokens) {
      this.starts[id] = at;
      this.lengths[id] = token.length;
      pieces.push(token);
      at += token.length;
    }
    this.text = pieces.join('');
  }

  get(id: number): string | undefined {
    if (!(Number.isInteger(id) && id >= 0 && id < this.size)) return undefined;
    const length = this.lengths[id]!;
    if (length < 0) return undefined;
    const start = this.starts[id]!;
    return this.text.slice(start, start + length);
  }
}

/** token text → id: an open-addressing hash table (linear probing) over the tokens' text. */
export class TokenIndex {
  readonly size: number;
  private readonly text: string;
  private readonly starts: Int32Array;
  private readonly lengths: Int32Array;
  private readonly ids: Int32Array;
  /** Entry + 1 in each slot; 0: empty. */
  private readonly slots: Int32Array;
  private readonly mask: number;

  constructor(entries: ReadonlyMap<string, number>) {
    this.size = entries.size;
    let capacity = 16;
    while (capacity < 2 * this.size) capacity *= 2;
    this.mask = capacity - 1;
    this.slots = new Int32Array(capacity);
    this.starts = new Int32Array(this.size);
    this.lengths = new Int32Array(this.size);
    this.ids = new Int32Array(this.size);
    const pieces: string[] = [];
    let at = 0;
    let entry = 0;
    // Map keys are distinct, so each entry only needs a free slot.
    for (const [token, id] of entries) {
      this.starts[entry] = at;
      this.lengths[entry] = token.length;
      this.ids[entry] = id;
      let slot = hashText(token) & this.mask;
      while (this.slots[slot] !== 0) slot = (slot + 1) & this.mask;
      this.slots[slot] = entry + 1;
      pieces.push(token);
      at += token.length;
      entry++;
    }
    this.text = pieces.join('');
  }

  get(token: string): number | undefined {
    for (let slot = hashText(token) & this.mask; ; slot = (slot + 1) & this.mask) {
      const entry = this.slots[slot]! - 1;
      if (entry < 0) return undefined;
      if (this.lengths[entry] === token.length && this.text.startsWith(token, this.starts[entry])) return this.ids[entry];
    }
  }

  has(token: string): boolean {
    return this.get(token) !== undefined;
  }
}

/** 32-bit FNV-1a over the UTF-16 code units. */
function hashText(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}
