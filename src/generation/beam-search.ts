// Beam search as transformers 4.36 runs it (`beam_search`, `BeamSearchScorer`, `BeamHypotheses`) with
// length_penalty 1.0 and early_stopping False, for one prompt; or, with `beamSearchVersion: '5'`, as transformers 5
// does (`GenerationMixin._beam_search`, vectorised). The two pick and score candidates alike and differ in two places:
//   * stopping early: 4.36 stops when the worst kept hypothesis ≥ (best score among ALL of this step's candidates,
//     an EOS one included) / new tokens; 5 uses the best candidate that goes on running (no EOS) instead, so it may
//     stop a step earlier;
//   * the EOS of a finished hypothesis: 4.36 stores the ids before the EOS and appends the first EOS id of the list
//     when it decodes; 5 keeps the EOS id that was generated (they differ only with several EOS ids).

import { InvalidRequestError, RuntimeError } from '../errors.js';
import { checkLogitsRow, resolveOptions } from './options.js';
import { applyRepetitionPenalty, logSoftmax, topKIndices } from './processors.js';
import type { BeamSearchResult, GenerationOptions, LogitsModel } from './types.js';

/** A finished hypothesis: the generated ids before its EOS (or up to max_length), that EOS, and its normalised score. */
interface Hypothesis {
  ids: number[];
  eos: number | null;
  score: number;
}

/**
 * Port of `BeamHypotheses`: keeps the numBeams best finished hypotheses, in insertion order like its Python list.
 * Scores are float64 (Python floats), computed from float32 sums.
 */
class BeamHypotheses {
  readonly kept: Hypothesis[] = [];
  private worstScore = 1e9;

  constructor(private readonly numBeams: number) {}

  /** `add`: score = sumLogprobs / generatedLength (length_penalty 1); the worst is dropped beyond numBeams. */
  add(ids: number[], eos: number | null, sumLogprobs: number, generatedLength: number): void {
    const score = sumLogprobs / generatedLength;
    if (this.kept.length >= this.numBeams && !(score > this.worstScore)) return;
    this.kept.push({ ids, eos, score });
    if (this.kept.length > this.numBeams) {
      // Python sorts (score, index) pairs: the lowest score goes, the earliest one on ties; the next lowest is the new worst.
      const byScore = this.kept.map((h, index) => ({ score: h.score, index })).sort((a, b) => a.score - b.score || a.index - b.index);
      this.kept.splice(byScore[0]!.index, 1);
      this.worstScore = byScore[1]!.score;
    } else {
      this.worstScore = Math.min(score, this.worstScore);
    }
  }

  /** `is_done` with early_stopping False: full, and no beam can beat the worst kept at this step's length. */
  isDone(bestSumLogprobs: number, generatedLength: number): boolean {
    return this.kept.length >= this.numBeams && this.worstScore >= bestSumLogprobs / generatedLength;
  }

  /** `finalize`'s choice: the highest score, the last added one on ties (Python's stable sort, then pop()). */
  best(): Hypothesis {
    let best = this.kept[0]!;
    for (const h of this.kept) if (h.score >= best.score) best = h;
    return best;
  }
}

/**
 * Runs beam search to the end and returns the best hypothesis. Each step, for every beam:
 *   log_softmax(logits) → repetition penalty on {bos} ∪ the beam's ids → + the beam's score (float32),
 * then the top max(2, 1 + number of EOS ids)·numBeams of beams×vocab, best first. Walking them in order, an EOS
 * within the first numBeams ranks closes its beam as a hypothesis (score = sum / new tokens including the EOS), a
 * later EOS is skipped; the first numBeams other candidates become the next beams, in rank order. The search stops
 * when numBeams hypotheses exist and the worst of them ≥ best candidate sum / new tokens (4.36: best of all
 * candidates; 5: best of the next beams), or at maxNewTokens, when the unfinished beams are added as hypotheses.
 * The winner gets an EOS appended when it is shorter than maxNewTokens (4.36: the first EOS id; 5: its own).
 *
 * The prompt is prefilled once; transformers instead expands it to numBeams identical rows with beam scores
 * [0, −1e9, …], so the first step scores numBeams copies of the prompt row with those scores (the −1e9 rows never
 * win) and then fans the single cached row out with parents [0, 0, …].
 */
export async function beamSearch(model: LogitsModel, options: GenerationOptions): Promise<BeamSearchResult> {
  const resolved = resolveOptions(options, model.vocabSize);
  const { maxNewTokens, eosTokenId, eosTokenIds, bosTokenId, numBeams, repetitionPenalty, signal, ...rest } = resolved;
  if (numBeams < 2) throw new InvalidRequestError('beamSearch needs numBeams ≥ 2; use generate for greedy search');
  if (rest.doSample) throw new InvalidRequestError('beam search with doSample (beam sampling) is not supported: set doSample to false');
  if (rest.stopSequences.length > 0) throw new InvalidRequestError('stopSequences are not supported by beam search');
  const vocabSize = model.vocabSize;
  const scores = new Float32Array(numBeams * vocabSize);
  const beamScores = new Float32Array(numBeams).fill(-1e9);
  beamScores[0] = 0;
  let beamIds: number[][] = Array.from({ length: numBeams }, () => []);
  const hypotheses = new BeamHypotheses(numBeams);

  signal?.throwIfAborted();
  const prompt = checkLogitsRow(await model.prefill(), vocabSize);
  let rows: Float32Array[] = new Array<Float32Array>(numBeams).fill(prompt);
  let done = false;
  for (let generatedLength = 1; ; generatedLength++) {
    signal?.throwIfAborted();
    // 1. Processed log-probs plus each beam's running score.
    for (let beam = 0; beam < numBeams; beam++) {
      const row = scores.subarray(beam * vocabSize, (beam + 1) * vocabSize);
      row.set(checkLogitsRow(rows[beam], vocabSize));
      logSoftmax(row);
      if (repetitionPenalty !== 1) applyRepetitionPenalty(row, new Set([bosTokenId, ...beamIds[beam]!]), repetitionPenalty);
      const beamScore = beamScores[beam]!;
      for (let i = 0; i < vocabSize; i++) row[i] = row[i]! + beamScore;
    }
    // 2. BeamSearchScorer.process over the max(2, 1 + EOS ids)·numBeams best candidates.
    const ranked = topKIndices(scores, Math.max(2, 1 + eosTokenIds.length) * numBeams);
    const nextIds: number[][] = [];
    const nextTokens: number[] = [];
    const parents: number[] = [];
    for (let rank = 0; rank < ranked.length && nextTokens.length < numBeams; rank++) {
      const flat = ranked[rank]!;
      const parent = Math.floor(flat / vocabSize);
      const token = flat % vocabSize;
      if (eosTokenIds.includes(token)) {
        if (rank < numBeams) hypotheses.add(beamIds[parent]!, token, scores[flat]!, generatedLength);
        continue;
      }
      beamScores[nextTokens.length] = scores[flat]!;
      nextIds.push([...beamIds[parent]!, token]);
      nextTokens.push(token);
      parents.push(parent);
    }
    if (nextTokens.length < numBeams) {
      throw new RuntimeError(`the vocabulary (${vocabSize} tokens) is too small for ${numBeams} beams`);
    }
    done = hypotheses.isDone(resolved.beamSearchVersion === '5' ? beamScores[0]! : scores[ranked[0]!]!, generatedLength);
    beamIds = nextIds;
    if (done || generatedLength >= maxNewTokens) break;
    // 3. One token per beam; after the first step every beam descends from the single prompt row.
    signal?.throwIfAborted();
    rows = await model.step(nextTokens, generatedLength === 1 ? new Array<number>(numBeams).fill(0) : parents);
    if (rows.length !== numBeams) throw new RuntimeError(`the model returned ${rows.length} logits rows for ${numBeams} beams`);
  }
  // 4. finalize: unfinished beams compete unless the search was done; one EOS closes a hypothesis that stopped early.
  if (!done) for (let beam = 0; beam < numBeams; beam++) hypotheses.add(beamIds[beam]!, null, beamScores[beam]!, beamIds[beam]!.length);
  const best = hypotheses.best();
  const eos = resolved.beamSearchVersion === '5' ? best.eos : eosTokenId;
  const ids = best.ids.length < maxNewTokens && eos !== null ? [...best.ids, eos] : [...best.ids];
  return { ids, score: Math.fround(best.score) };
}
