// The state of the decoder's linear-attention layers on the host (src/models/parts/gated-delta-net.ts): per layer a
// conv state [rows, conv_dim, K−1] and a recurrent state [rows, Hv, dk, dv], and snapshots of them at chosen
// prompt positions so that a later prompt sharing a prefix can resume there.
//
// Unlike keys and values, these states do not grow: each run reads them whole (as inputs, without a copy) and
// returns them whole (as outputs), and the output arrays simply become the state. An array, once it is a state,
// is never written again; so a snapshot is a reference to the arrays of the moment (no copy), and reordering beams
// builds new arrays. A recurrence cannot be truncated: the state after position p exists only if it was kept then.

import { RuntimeError } from '../errors.js';
import type { HostTensor } from './session.js';

/** The linear-attention state of every linear layer for one row, after the first `length` positions of `ids`. */
export interface StateSnapshot {
  length: number;
  /** The ids of positions [0, length) (what the state summarises). */
  ids: readonly number[];
  conv: readonly Float32Array[];
  recurrent: readonly Float32Array[];
}

export interface LinearLayerShapes {
  /** The decoder layers that are linear attention, in order. */
  layers: readonly number[];
  conv: readonly [number, number];
  recurrent: readonly [number, number, number];
}

export class LinearStates {
  /** Per linear layer (in the order of `shapes.layers`): [rows, conv_dim, K−1]. */
  private conv: Float32Array[] = [];
  /** Per linear layer: [rows, Hv, dk, dv]. */
  private recurrent: Float32Array[] = [];
  rows = 0;
  private readonly convSize: number;
  private readonly recurrentSize: number;

  constructor(readonly shapes: LinearLayerShapes) {
    this.convSize = shapes.conv[0] * shapes.conv[1];
    this.recurrentSize = shapes.recurrent[0] * shapes.recurrent[1] * shapes.recurrent[2];
  }

  /** One row of zeros: the state before position 0. */
  reset(): void {
    const conv = new Float32Array(this.convSize);
    const recurrent = new Float32Array(this.recurrentSize);
    this.conv = this.shapes.layers.map(() => conv);
    this.recurrent = this.shapes.layers.map(() => recurrent);
    this.rows = 1;
  }

  /** One row: the state a snapshot kept. */
  restore(snapshot: StateSnapshot): void {
    this.conv = [...snapshot.conv];
    this.recurrent = [...snapshot.recurrent];
    this.rows = 1;
  }

  /** Row 0 as a snapshot of the first `length` positions of `ids` (copies only when several rows are held). */
  snapshot(ids: readonly number[], length: number): StateSnapshot {
    const first = (arrays: Float32Array[], size: number) => arrays.map((a) => (this.rows === 1 ? a : a.slice(0, size)));
    return { length, ids: ids.slice(0, length), conv: first(this.conv, this.convSize), recurrent: first(this.recurrent, this.recurrentSize) };
  }

  /** Row i := row parents[i], in new arrays (the old ones may be held by snapshots). */
  reorder(parents: readonly number[]): void {
    if (parents.length === this.rows && parents.every((p, i) => p === i)) return;
    const gather = (arrays: Float32Array[], size: number) =>
      arrays.map((a) => {
        const out = new Float32Array(parents.length * size);
        parents.forEach((p, i) => out.set(a.subarray(p * size, (p + 1) * size), i * size));
        return out;
      });
    this.conv = gather(this.conv, this.convSize);
    this.recurrent = gather(this.recurrent, this.recurrentSize);
    this.rows = parents.length;
  }

  /** The graph inputs `past_conv_{i}` and `past_recurrent_{i}` of the rows held. */
  addFeeds(feeds: Record<string, HostTensor>): void {
    this.shapes.layers.forEach((layer, j) => {
      feeds[`past_conv_${layer}`] = { type: 'float32', data: this.conv[j]!, dims: [this.rows, ...this.shapes.conv] };
      feeds[`past_recurrent_${layer}`] = { type: 'float32', data: this.recurrent[j]!, dims: [this.rows, ...this.shapes.recurrent] };
    });
  }

  /** Takes the graph outputs `conv_{i}` and `recurrent_{i}` of a run over the rows held as the state. */
  update(out: Record<string, HostTensor>): void {
    const take = (name: string, size: number) => {
      const data = out[name]?.data;
      if (!(data instanceof Float32Array) || data.length !== this.rows * size) {
        throw new RuntimeError(`the decoder graph returned no float32 ${name} for ${this.rows} rows`);
      }
      return data;
    };
    this.conv = this.shapes.layers.map((layer) => take(`conv_${layer}`, this.convSize));
    this.recurrent = this.shapes.layers.map((layer) => take(`recurrent_${layer}`, this.recurrentSize));
  }

  /** Bytes of the state held now (all rows, all linear layers). */
  get bytes(): number {
    return this.rows * this.shapes.layers.length * (this.convSize + this.recurrentSize) * Float32Array.BYTES_PER_ELEMENT;
  }
}

/** Bytes of one snapshot (one row). */
export function snapshotBytes(snapshot: StateSnapshot): number {
  return [...snapshot.conv, ...snapshot.recurrent].reduce((sum, a) => sum + a.byteLength, 0);
}
