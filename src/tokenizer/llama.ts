// transformers' slow `LlamaTokenizer` (4.36, `legacy=true`) over our SentencePiece processor:
//
//   encode: text ──► split on added-token strings (leftmost, longest) ──► each added token is its id; every other
//           chunk is encoded by SentencePiece on its own (so each chunk gets its own dummy-prefix ▁) ──► BOS + ids
//   decode: ids ──► tokens ──► runs of ordinary pieces decoded by SentencePiece, special tokens verbatim, with the
//           legacy space in front of a run that a special token follows (`PreTrainedTokenizer._decode` +
//           `LlamaTokenizer.convert_tokens_to_string`)

import type { ModelFiles } from '../checkpoint/model-files.js';
import { TokenizerError } from '../errors.js';
import { readLlamaTokenizerConfig, SPECIAL_TOKEN_KEYS, type AddedTokenSpec, type LlamaTokenizerConfig } from './llama-config.js';
import { pythonLstrip, pythonRstrip } from './python-strings.js';
import { SentencePieceProcessor, SPACE_SYMBOL } from './sentencepiece.js';
import { StreamingDetokenizer } from './streaming.js';
import type { DecodeOptions, EncodeOptions, StreamDecoder, Tokenizer } from './tokenizer.js';
import { StringTrie } from './trie.js';

type Chunk = { text: string } | { token: AddedTokenSpec };

export class LlamaTokenizer implements Tokenizer {
  /** transformers' bos_token_id, eos_token_id, unk_token_id, pad_token_id. */
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly padId: number | null;
  readonly addBosToken: boolean;
  readonly addEosToken: boolean;
  /** `_added_tokens_decoder` / `_added_tokens_encoder`. */
  private readonly addedById = new Map<number, AddedTokenSpec>();
  private readonly addedByContent = new Map<string, AddedTokenSpec>();
  private readonly addedTrie: StringTrie;
  readonly namedTokens: Readonly<Record<string, string>>;
  /** `all_special_tokens` and `all_special_ids`. */
  private readonly specialTokens: Set<string>;
  private readonly specialIds: Set<number>;
  /** `_decode`'s legacy_added_tokens: decoded on their own and joined to their neighbours with a space. */
  private readonly legacyAddedTokens: Set<string>;
  private readonly idLimit: number;

  /** Loads tokenizer.model, tokenizer_config.json and (when present) special_tokens_map.json / added_tokens.json. */
  static fromFiles(files: ModelFiles): LlamaTokenizer {
    const modelFile = files.describe('tokenizer.model');
    if (!files.has('tokenizer.model')) {
      throw new TokenizerError(`${modelFile} is missing: this model needs its SentencePiece tokenizer.model (download it again)`);
    }
    let model: Uint8Array;
    try {
      model = files.bytes('tokenizer.model');
    } catch (err) {
      throw new TokenizerError((err as Error).message, { cause: err });
    }
    return new LlamaTokenizer(SentencePieceProcessor.fromBytes(model, modelFile), readLlamaTokenizerConfig(files));
  }

  constructor(readonly sentencePiece: SentencePieceProcessor, config: LlamaTokenizerConfig) {
    this.addBosToken = config.addBosToken;
    this.addEosToken = config.addEosToken;
    for (const token of config.addedTokens) {
      if (!Number.isSafeInteger(token.id) || token.id < 0) throw new TokenizerError(`added token ${token.content} has an invalid id ${token.id}`);
      this.addedById.set(token.id, token);
      this.addedByContent.set(token.content, token);
    }

    // Like PreTrainedTokenizer.__init__: special tokens missing from the added vocabulary join it, with their
    // SentencePiece id when they are a piece, else with the next free id.
    const specialContents = [
      ...SPECIAL_TOKEN_KEYS.flatMap((key) => (config.specialTokens[key] === undefined ? [] : [config.specialTokens[key]!])),
      ...config.additionalSpecialTokens,
    ];
    this.specialTokens = new Set(specialContents);
    let nextId = Math.max(sentencePiece.vocabSize, ...[...this.addedById.keys()].map((id) => id + 1));
    for (const content of this.specialTokens) {
      if (this.addedByContent.has(content)) continue;
      const id = this.isSentencePiece(content) ? sentencePiece.pieceToId(content) : nextId++;
      const token: AddedTokenSpec = { id, content, special: true, lstrip: false, rstrip: false };
      this.addedById.set(id, token);
      this.addedByContent.set(content, token);
    }
    this.idLimit = Math.max(sentencePiece.vocabSize, ...[...this.addedById.keys()].map((id) => id + 1));
    this.addedTrie = new StringTrie(this.addedByContent.keys());
    this.specialIds = new Set([...this.specialTokens].map((t) => this.pieceToId(t)));
    this.legacyAddedTokens = new Set(
      [...this.addedByContent.keys()].filter(
        (t) => !this.specialTokens.has(t) || (config.additionalSpecialTokens.includes(t) && this.pieceToId(t) >= sentencePiece.vocabSize),
      ),
    );

    const required = (key: 'bos_token' | 'eos_token' | 'unk_token'): number => {
      const content = config.specialTokens[key];
      if (content === undefined) throw new TokenizerError(`the tokenizer files define no ${key}; a Llama tokenizer needs one`);
      return this.pieceToId(content);
    };
    this.bosId = required('bos_token');
    this.eosId = required('eos_token');
    this.unkId = required('unk_token');
    this.padId = config.specialTokens.pad_token === undefined ? null : this.pieceToId(config.specialTokens.pad_token);
    this.namedTokens = Object.fromEntries(Object.entries(config.specialTokens).filter((e): e is [string, string] => e[1] !== undefined));
  }

  /** Number of SentencePiece pieces (transformers' `vocab_size`). */
  get vocabSize(): number {
    return this.sentencePiece.vocabSize;
  }

  /** One more than the largest id the tokenizer knows: pieces plus added tokens beyond them. */
  get size(): number {
    return this.idLimit;
  }

  /** The token of an id (`convert_ids_to_tokens`): the added token's text, else the SentencePiece piece. */
  idToPiece(id: number): string {
    const added = this.addedById.get(id);
    if (added !== undefined) return added.content;
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new TokenizerError(`token id ${id} is not in the tokenizer's vocabulary (0..${this.idLimit - 1})`);
    }
    return this.sentencePiece.idToPiece(id);
  }

  /** The id of a token (`convert_tokens_to_ids`): added tokens first, then SentencePiece (unknown → unk id). */
  pieceToId(piece: string): number {
    return this.addedByContent.get(piece)?.id ?? this.sentencePiece.pieceToId(piece);
  }

  /** Whether the token is one of transformers' `all_special_tokens`. */
  isSpecialToken(piece: string): boolean {
    return this.specialTokens.has(piece);
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** Whether `_decode` decodes this token on its own and joins it to its neighbours with a space. */
  isLegacyAddedToken(piece: string): boolean {
    return this.legacyAddedTokens.has(piece);
  }

  /** The tokens of a text without BOS/EOS (`tokenize`). */
  tokenize(text: string): string[] {
    return this.encodeChunks(text).pieces;
  }

  /** Token ids of a text, BOS first when add_bos_token is set (`tokenizer.encode(text)`). */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids = this.encodeChunks(text).ids;
    if (options.addSpecialTokens === false) return ids;
    return [...(this.addBosToken ? [this.bosId] : []), ...ids, ...(this.addEosToken ? [this.eosId] : [])];
  }

  /**
   * Text of token ids (`tokenizer.decode(ids)`, spaces_between_special_tokens and no clean-up of spaces);
   * skipSpecialTokens leaves out bos, eos, unk, pad and the additional special tokens.
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const subTexts: string[] = [];
    let run: string[] = [];
    for (const id of ids) {
      if (options.skipSpecialTokens && this.specialIds.has(id)) continue;
      const token = this.idToPiece(id);
      if (!this.legacyAddedTokens.has(token)) {
        run.push(token);
        continue;
      }
      if (run.length > 0) {
        const text = this.convertTokensToString(run);
        if (text !== '') subTexts.push(text);
        run = [];
      }
      subTexts.push(token);
    }
    if (run.length > 0) subTexts.push(this.convertTokensToString(run));
    return subTexts.join(' ');
  }

  /** Generated ids to text as they arrive (see StreamingDetokenizer). */
  streamDecoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamingDetokenizer(this, options);
  }

  /**
   * Port of LlamaTokenizer.convert_tokens_to_string (legacy): drop the first token's leading ▁, emit special
   * tokens verbatim, decode the pieces between them with SentencePiece, and put a space in front of a run of
   * pieces that a special token follows.
   */
  convertTokensToString(tokens: readonly string[]): string {
    let out = '';
    let run: string[] = [];
    let prevIsSpecial = false;
    tokens.forEach((original, i) => {
      const token = i === 0 && original.startsWith(SPACE_SYMBOL) ? original.slice(SPACE_SYMBOL.length) : original;
      if (this.specialTokens.has(token)) {
        if (!prevIsSpecial && i !== 0) out += ' ';
        out += this.sentencePiece.decodePieces(run) + token;
        run = [];
        prevIsSpecial = true;
      } else {
        run.push(token);
        prevIsSpecial = false;
      }
    });
    return out + this.sentencePiece.decodePieces(run);
  }

  /** `tokenize` + `convert_tokens_to_ids` in one pass. */
  private encodeChunks(text: string): { pieces: string[]; ids: number[] } {
    const pieces: string[] = [];
    const ids: number[] = [];
    for (const chunk of this.splitOnAddedTokens(text)) {
      if ('token' in chunk) {
        pieces.push(chunk.token.content);
        ids.push(chunk.token.id);
      } else if (chunk.text !== '') {
        const encoded = this.sentencePiece.encode(chunk.text);
        encoded.pieces.forEach((piece, i) => {
          pieces.push(piece);
          ids.push(this.addedByContent.get(piece)?.id ?? encoded.ids[i]!);
        });
      }
    }
    return { pieces, ids };
  }

  /**
   * transformers' `tokens_trie.split` (leftmost match, longest at that position), then the lstrip/rstrip of the
   * added tokens applied to the neighbouring text with Python's whitespace rules.
   */
  private splitOnAddedTokens(text: string): Chunk[] {
    const chunks: Chunk[] = [];
    if (this.addedTrie.size === 0) return [{ text }];
    let textStart = 0;
    for (let pos = 0; pos < text.length;) {
      const length = this.addedTrie.longestMatchAt(text, pos);
      if (length === 0) {
        pos++;
        continue;
      }
      if (pos > textStart) chunks.push({ text: text.slice(textStart, pos) });
      chunks.push({ token: this.addedByContent.get(text.slice(pos, pos + length))! });
      pos += length;
      textStart = pos;
    }
    if (textStart < text.length) chunks.push({ text: text.slice(textStart) });
    chunks.forEach((chunk, i) => {
      if (!('token' in chunk)) return;
      const left = chunks[i - 1];
      const right = chunks[i + 1];
      if (chunk.token.lstrip && left !== undefined && 'text' in left) left.text = pythonRstrip(left.text);
      if (chunk.token.rstrip && right !== undefined && 'text' in right) right.text = pythonLstrip(right.text);
    });
    return chunks;
  }

  /** Whether a string is a piece of the SentencePiece vocabulary (and not just mapped to the unknown id). */
  private isSentencePiece(piece: string): boolean {
    const id = this.sentencePiece.pieceToId(piece);
    return this.sentencePiece.idToPiece(id) === piece;
  }
}
