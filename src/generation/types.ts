// The contract between generation and a model, and the options of one generation request.

export interface LogitsModel {
  readonly vocabSize: number;
  /** Runs the prompt once; returns the next-token logits (length vocabSize) of its last position. */
  prefill(): Promise<Float32Array>;
  /**
   * Continues several sequences by one token each. Row i first becomes a copy of the cached row parents[i]
   * (beam search reorders and duplicates rows; undefined = rows continue as they are; the first call after prefill
   * may fan the single prompt row out to several rows), then is fed tokens[i]. Returns one logits row per sequence.
   */
  step(tokens: number[], parents?: number[]): Promise<Float32Array[]>;
}

/**
 * One generation request, with transformers 4.36 meanings and defaults (GenerationConfig): the ids that generation
 * starts from are `[bosTokenId]` (as `generate(inputs_embeds=…)` does), so max_length = maxNewTokens + 1.
 */
export interface GenerationOptions {
  /** The most new tokens to generate (max_new_tokens), counting a final EOS. */
  maxNewTokens: number;
  /**
   * The id that ends an answer, or several (generation_config's eos_token_id may list more than one; the first is
   * the one transformers 4.36 beam search appends to a finished hypothesis).
   */
  eosTokenId: number | readonly number[];
  /** The id generation starts from; it is always in the repetition penalty's set, the prompt never is. */
  bosTokenId: number;
  /** Sample from the warped distribution instead of taking the argmax (do_sample, default false). */
  doSample?: boolean;
  /** Divides the logits before top-k/top-p when sampling (default 1 = off). */
  temperature?: number;
  /** Keeps the k best tokens (and ties with the k-th) when sampling; 0 = off. Default 50, as in transformers. */
  topK?: number;
  /** Keeps the smallest set of best tokens whose probability exceeds topP when sampling (default 1 = off). */
  topP?: number;
  /** `s < 0 ? s·p : s/p` on the scores of `{bos} ∪ generated` (default 1 = off). */
  repetitionPenalty?: number;
  /** Beams for `beamSearch` (num_beams, default 1; `generate` needs 1). */
  numBeams?: number;
  /**
   * Seeds the sampler's xoshiro128** stream (default: a random seed). A seed reproduces our own runs only:
   * torch's multinomial stream cannot be matched, so a transformers seed gives different samples here.
   */
  seed?: number;
  /** Aborting stops generation between model calls; the pending call rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Token-id sequences that end generation once the generated ids end with one (they are still yielded). */
  stopSequences?: readonly (readonly number[])[];
  /**
   * Which transformers' beam search to follow (default '4.36'); they differ in two places (see beam-search.ts):
   * when the search may stop early, and which EOS id ends a finished hypothesis.
   */
  beamSearchVersion?: BeamSearchVersion;
}

/** The transformers release whose beam search `beamSearch` reproduces. */
export type BeamSearchVersion = '4.36' | '5';

/** The outcome of a beam search. */
export interface BeamSearchResult {
  /** The generated ids (without the starting BOS), ending with EOS unless max_length was reached. */
  ids: number[];
  /** transformers' `sequences_scores`: the summed processed log-probs divided by the generated length (float32). */
  score: number;
}
