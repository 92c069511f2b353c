// The key/value cache of the decoder's full-attention layers, on the host (see decoder-runner.ts for how runs use it).

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
export class KvCache {
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
