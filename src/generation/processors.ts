// Logits processors and warpers of transformers 4.36 (logits_process.py) on one row of scores.
// Every `apply*` function and the two softmaxes rewrite `scores` in place; callers copy a model's row first.
// Arithmetic follows torch's float32 CPU kernels: each elementwise result is rounded to float32 (a Float32Array
// store, or Math.fround), and only sums are accumulated in float64, which stays within 1e-6 of torch's float32 sums.

/** Indices of the k largest values, largest first; equal values keep the lower index first. O(n log k). */
export function topKIndices(values: Float32Array, k: number): Int32Array {
  const count = Math.max(0, Math.min(k, values.length));
  // A min-heap of the best `count` indices seen so far: its root is the worst of them.
  const heap = new Int32Array(count);
  const worse = (i: number, j: number): boolean => values[i]! < values[j]! || (values[i] === values[j] && i > j);
  const siftUp = (at: number, index: number): void => {
    while (at > 0 && worse(index, heap[(at - 1) >> 1]!)) {
      heap[at] = heap[(at - 1) >> 1]!;
      at = (at - 1) >> 1;
    }
    heap[at] = index;
  };
  const siftDown = (at: number, index: number): void => {
    for (let child = 2 * at + 1; child < count; at = child, child = 2 * at + 1) {
      if (child + 1 < count && worse(heap[child + 1]!, heap[child]!)) child++;
      if (!worse(heap[child]!, index)) break;
      heap[at] = heap[child]!;
    }
    heap[at] = index;
  };
  for (let i = 0; i < values.length; i++) {
    if (i < count) siftUp(i, i);
    else if (count > 0 && worse(heap[0]!, i)) siftDown(0, i);
  }
  return heap.sort((a, b) => (worse(a, b) ? 1 : worse(b, a) ? -1 : 0));
}

/** Index of the largest score, the first one on ties (torch.argmax). */
export function argmax(scores: Float32Array): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return best;
}

/**
 * RepetitionPenaltyLogitsProcessor: each id in `ids` once, `s < 0 ? s·p : s/p`, in float32 like torch
 * (the penalty is rounded to float32 first).
 */
export function applyRepetitionPenalty(scores: Float32Array, ids: ReadonlySet<number>, penalty: number): void {
  const p = Math.fround(penalty);
  for (const id of ids) {
    const s = scores[id]!;
    scores[id] = s < 0 ? s * p : s / p;
  }
}

/** TemperatureLogitsWarper: `s / t` in float32. */
export function applyTemperature(scores: Float32Array, temperature: number): void {
  const t = Math.fround(temperature);
  for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / t;
}

/**
 * TopKLogitsWarper: sets to -Infinity every score below the k-th largest, so ties with the k-th survive.
 * k is raised to minTokensToKeep and capped at the vocabulary size.
 */
export function applyTopK(scores: Float32Array, topK: number, minTokensToKeep = 1): void {
  const k = Math.min(Math.max(topK, minTokensToKeep), scores.length);
  if (k === 0) return;
  const best = topKIndices(scores, k);
  const threshold = scores[best[k - 1]!]!;
  for (let i = 0; i < scores.length; i++) if (scores[i]! < threshold) scores[i] = -Infinity;
}

/**
 * TopPLogitsWarper: in ascending order of score, sets to -Infinity the tokens whose cumulative softmax probability
 * is ≤ 1 − topP (the token that crosses 1 − topP is kept), never the best minTokensToKeep; among equal scores the
 * higher index goes first. The ascending cumulative probability of a token is the total minus the mass of the
 * tokens above it, so only the best scores are ranked (64, then 1024, then all of them when the distribution is
 * that flat). Sums are float64 like torch's CPU cumsum; summing in another order moves them by ~1e-12, far below
 * the float32 rounding of the comparison.
 */
export function applyTopP(scores: Float32Array, topP: number, minTokensToKeep = 1): void {
  // torch's softmax: float32 exp, multiplied by the float32 reciprocal of the sum.
  // -Infinity scores (after top-k, most of them) add 0 to every sum and are skipped.
  const max = maxOf(scores);
  let sum = 0;
  let finite = 0;
  for (let i = 0; i < scores.length; i++) {
    if (scores[i] === -Infinity) continue;
    sum += Math.fround(Math.exp(Math.fround(scores[i]! - max)));
    finite++;
  }
  const inverse = Math.fround(1 / Math.fround(sum));
  const probability = (score: number): number => Math.fround(Math.fround(Math.exp(Math.fround(score - max))) * inverse);
  let total = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i] !== -Infinity) total += probability(scores[i]!);
  const threshold = Math.fround(1 - topP);
  for (const k of [64, 1024, Infinity]) {
    const best = k < finite ? Float32Array.from(topKIndices(scores, k), (i) => scores[i]!) : finiteDescending(scores, finite);
    let above = 0;
    for (let rank = 0; rank < best.length; rank++) {
      if (rank >= minTokensToKeep && Math.fround(total - above) <= threshold) {
        keepBest(scores, best.subarray(0, rank));
        return;
      }
      above += probability(best[rank]!);
    }
    if (best.length === finite) return;
  }
}

function finiteDescending(scores: Float32Array, finite: number): Float32Array {
  const values = new Float32Array(finite);
  for (let i = 0, j = 0; i < scores.length; i++) if (scores[i]! > -Infinity) values[j++] = scores[i]!;
  return values.sort().reverse();
}

/** Keeps exactly the tokens whose scores are `kept` (descending; on ties the lower indices), the rest → -Infinity. */
function keepBest(scores: Float32Array, kept: Float32Array): void {
  const last = kept[kept.length - 1]!;
  let equalsToKeep = 0;
  for (let j = kept.length - 1; j >= 0 && kept[j] === last; j--) equalsToKeep++;
  for (let i = 0; i < scores.length; i++) {
    if (scores[i]! > last) continue;
    if (scores[i] === last && equalsToKeep > 0) equalsToKeep--;
    else scores[i] = -Infinity;
  }
}

/** torch.log_softmax in float32: `(s − max) − log(Σ exp(s − max))`, in that order. */
export function logSoftmax(scores: Float32Array): void {
  const max = maxOf(scores);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += Math.fround(Math.exp(Math.fround(scores[i]! - max)));
  const logSum = Math.fround(Math.log(Math.fround(sum)));
  for (let i = 0; i < scores.length; i++) scores[i] = Math.fround(scores[i]! - max) - logSum;
}

/** torch.softmax in float32: `exp(s − max) · (1 / Σ exp(s − max))`. -Infinity scores get probability 0. */
export function softmax(scores: Float32Array): void {
  const max = maxOf(scores);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) {
    scores[i] = scores[i] === -Infinity ? 0 : Math.exp(Math.fround(scores[i]! - max));
    sum += scores[i]!;
  }
  const inverse = Math.fround(1 / Math.fround(sum));
  for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! * inverse;
}

function maxOf(scores: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i]! > max) max = scores[i]!;
  return max;
}
