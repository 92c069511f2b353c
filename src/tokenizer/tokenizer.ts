// What the rest of the code may ask of a tokenizer, whichever model it comes from (SentencePiece or tokenizer.json):
// nothing outside tokenizer/ names a concrete tokenizer class.

export interface EncodeOptions {
  /** Add the special tokens the tokenizer's post-processor adds (BOS/EOS where configured; transformers' default: true). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out the ids of tokens flagged special. Default false. */
  skipSpecialTokens?: boolean;
}

/** Text of generated ids as they arrive: never half a UTF-8 character; push + flush equals decode of the same ids. */
export interface StreamDecoder {
  push(id: number): string;
  flush(): string;
}

export interface Tokenizer {
  /** tokenizer_config.json's named tokens (`bos_token` → its text, `image_token` → `<|image_pad|>`, …), as chat templates see them. */
  readonly namedTokens: Readonly<Record<string, string>>;
  /** One more than the largest id the tokenizer knows (learned vocabulary plus added tokens). */
  readonly size: number;
  /** transformers' `bos_token_id`: the id of the configured beginning-of-sequence token; null when there is none. */
  readonly bosId: number | null;
  /** transformers' `eos_token_id`: the id of the configured end-of-sequence token; null when there is none. */
  readonly eosId: number | null;
  /** Token ids of a text (`tokenizer(text).input_ids`, or `encode(text)`), special tokens added as configured. */
  encode(text: string, options?: EncodeOptions): number[];
  /** Text of token ids (`tokenizer.decode(ids)`). */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** The token of an id (`convert_ids_to_tokens`). */
  idToPiece(id: number): string;
  /** The id of a token (`convert_tokens_to_ids`); unknown tokens give the unknown-token id, or throw when there is none. */
  pieceToId(piece: string): number;
  /** Whether an id is one of the tokenizer's special ids (what skipSpecialTokens leaves out). */
  isSpecialId(id: number): boolean;
  /** A streaming decoder for generated ids. */
  streamDecoder(options?: DecodeOptions): StreamDecoder;
}
