// A tokenizer.json tokenizer (Hugging Face `tokenizers`, as transformers' TokenizersBackend drives it) for
// byte-level BPE models such as Qwen3.5:
//
//   encode: text ──► split on added tokens (raw text) ──► NFC ──► split on normalized added tokens
//           ──► Split regex pieces ──► UTF-8 bytes ──► BPE merges ──► ids (plus BOS/EOS only where configured)
//   decode: ids ──► the bytes of each token (byte-level characters → bytes) ──► UTF-8, bad bytes → U+FFFD

import type { ModelFiles } from '../checkpoint/model-files.js';
import { readJsonFile } from '../config/json.js';
import { TokenizerError } from '../errors.js';
import { AddedTokenSplitter, type AddedToken, type Segment } from './added-tokens.js';
import { tokenToBytes } from './byte-level.js';
import { ByteLevelBpe } from './byte-level-bpe.js';
import { onigToRegExp } from './onig-regex.js';
import { parseTokenizerJson, type TokenizerJsonSpec } from './tokenizer-json-spec.js';
import { TokenIndex, TokenList } from './token-table.js';
import type { DecodeOptions, EncodeOptions, StreamDecoder, Tokenizer } from './tokenizer.js';

export class TokenizerJson implements Tokenizer {
  /** transformers' special-token attributes: `bos_token`, `eos_token`, `pad_token`, `unk_token`, `image_token`, … → text. */
  readonly namedTokens: Readonly<Record<string, string>>;
  readonly size: number;
  private readonly bpe: ByteLevelBpe;
  private readonly idToToken: TokenList;
  private readonly tokenToIdMap: TokenIndex;
  private readonly specialIds = new Set<number>();
  private readonly rawSplitter: AddedTokenSplitter;
  private readonly normalizedSplitter: AddedTokenSplitter;
  private readonly splitRegexes: RegExp[];
  private readonly nfc: boolean;
  /** transformers' bos_token_id / eos_token_id (tokenizer_config.json's bos_token / eos_token), null when unset. */
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** The ids encode() puts first and last (add_bos_token / add_eos_token), null when it adds none. */
  private readonly prependId: number | null;
  private readonly appendId: number | null;
  private readonly unkId: number | null;
  /** The bytes of each id, computed when first needed. */
  private readonly bytesCache = new Map<number, Uint8Array>();

  /** Loads tokenizer.json and (when present) tokenizer_config.json from a checkpoint folder. */
  static fromFiles(files: ModelFiles): TokenizerJson {
    const jsonFile = files.describe('tokenizer.json');
    if (!files.has('tokenizer.json')) throw new TokenizerError(`${jsonFile} is missing: this model needs its tokenizer.json (download it again)`);
    const config = files.has('tokenizer_config.json') ? readJsonFile(files, 'tokenizer_config.json', TokenizerError) : undefined;
    return TokenizerJson.fromJson(readJsonFile(files, 'tokenizer.json', TokenizerError), config, jsonFile);
  }

  /** Builds the tokenizer from the parsed tokenizer.json and tokenizer_config.json (`source` names them in errors). */
  static fromJson(tokenizerJson: unknown, tokenizerConfig?: unknown, source = 'tokenizer.json'): TokenizerJson {
    const spec = parseTokenizerJson(tokenizerJson, tokenizerConfig, source);
    try {
      return new TokenizerJson(spec);
    } catch (err) {
      // The vocabulary, merges and regex are checked while they are built: name the file.
      if (err instanceof TokenizerError) throw new TokenizerError(`${source}: ${err.message}`, { cause: err });
      throw err;
    }
  }

  constructor(spec: TokenizerJsonSpec) {
    this.bpe = new ByteLevelBpe(spec.vocab, spec.merges, { ignoreMerges: spec.ignoreMerges });
    const idToToken = new Map<number, string>();
    const tokenToId = new Map<string, number>();
    for (const [token, id] of spec.vocab) {
      idToToken.set(id, token);
      tokenToId.set(token, id);
    }
    // Added tokens, then (as transformers' _post_init does) the special tokens of tokenizer_config.json: an added
    // token becomes special, a vocabulary token becomes a special added token, any other gets the next free id.
    const added = new Map<string, AddedToken>(spec.addedTokens.map((t) => [t.content, t]));
    let nextId = Math.max(largestKey(idToToken), ...spec.addedTokens.map((t) => t.id)) + 1;
    for (const content of [...Object.values(spec.specialTokens), ...spec.extraSpecialTokens]) {
      if (content === '') continue;
      const existing = added.get(content);
      if (existing !== undefined) {
        added.set(content, { ...existing, special: true });
        continue;
      }
      const id = spec.vocab.get(content) ?? nextId++;
      added.set(content, { id, content, special: true, singleWord: false, lstrip: false, rstrip: false, normalized: false });
    }
    for (const token of added.values()) {
      idToToken.set(token.id, token.content);
      tokenToId.set(token.content, token.id);
      if (token.special) this.specialIds.add(token.id);
    }
    this.idToToken = new TokenList(idToToken);
    this.tokenToIdMap = new TokenIndex(tokenToId);
    this.size = this.idToToken.size;

    this.nfc = spec.normalizer === 'NFC';
    const addedTokens = [...added.values()];
    this.rawSplitter = new AddedTokenSplitter(addedTokens.filter((t) => !t.normalized).map((t) => [t.content, t]));
    this.normalizedSplitter = new AddedTokenSplitter(addedTokens.filter((t) => t.normalized).map((t) => [this.normalize(t.content), t]));
    this.splitRegexes = spec.splitPatterns.map(onigToRegExp);
    this.namedTokens = spec.specialTokens;
    const idOf = (key: string): number | null => {
      const content = spec.specialTokens[key];
      return content === undefined ? null : (this.tokenToIdMap.get(content) ?? null);
    };
    this.bosId = idOf('bos_token');
    this.eosId = idOf('eos_token');
    this.prependId = spec.addBos ? this.bosId : null;
    this.appendId = spec.addEos ? this.eosId : null;
    this.unkId = idOf('unk_token');
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecialTokens ?? true;
    const ids: number[] = [];
    if (addSpecial && this.prependId !== null) ids.push(this.prependId);
    for (const segment of this.rawSplitter.split(text)) {
      if ('id' in segment) {
        ids.push(segment.id);
        continue;
      }
      const normalized = this.normalize(segment.text);
      const parts: Segment[] = this.normalizedSplitter.size > 0 ? this.normalizedSplitter.split(normalized) : [{ text: normalized }];
      for (const part of parts) {
        if ('id' in part) {
          ids.push(part.id);
          continue;
        }
        for (const piece of this.preTokenize(part.text)) {
          for (const id of this.bpe.tokenize(piece)) ids.push(id);
        }
      }
    }
    if (addSpecial && this.appendId !== null) ids.push(this.appendId);
    return ids;
  }

  /** Text of ids, as tokenizers' `decode`: ids the tokenizer does not know are left out, as tokenizers does. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const chunks: Uint8Array[] = [];
    let length = 0;
    for (const id of ids) {
      const bytes = this.bytesOf(id, options);
      if (bytes === null) continue;
      chunks.push(bytes);
      length += bytes.length;
    }
    const all = new Uint8Array(length);
    let offset = 0;
    for (const chunk of chunks) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    return newUtf8Decoder().decode(all);
  }

  streamDecoder(options: DecodeOptions = {}): StreamDecoder {
    // TextDecoder in streaming mode holds back an incomplete character and replaces bad bytes exactly as the
    // one-shot decode does (both follow the WHATWG / Unicode "maximal subpart" rule, as Rust's from_utf8_lossy).
    let decoder = newUtf8Decoder();
    return {
      push: (id: number): string => {
        const bytes = this.bytesOf(id, options);
        return bytes === null ? '' : decoder.decode(bytes, { stream: true });
      },
      flush: (): string => {
        const rest = decoder.decode();
        decoder = newUtf8Decoder();
        return rest;
      },
    };
  }

  idToPiece(id: number): string {
    const token = this.idToToken.get(id);
    if (token === undefined) throw new TokenizerError(`token id ${id} is not in the tokenizer's vocabulary (0..${this.size - 1})`);
    return token;
  }

  pieceToId(piece: string): number {
    const id = this.tokenToIdMap.get(piece) ?? this.unkId;
    if (id === null) throw new TokenizerError(`the token ${JSON.stringify(piece)} is not in the vocabulary and the tokenizer has no unknown token`);
    return id;
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }

  private normalize(text: string): string {
    return this.nfc ? text.normalize('NFC') : text;
  }

  /** The Split pre-tokenizers: every match becomes a piece, and so does the text between matches. */
  private preTokenize(text: string): string[] {
    let pieces = [text];
    for (const regex of this.splitRegexes) {
      const next: string[] = [];
      for (const piece of pieces) {
        let offset = 0;
        regex.lastIndex = 0;
        for (let m = regex.exec(piece); m !== null; m = regex.exec(piece)) {
          if (m[0].length === 0) {
            // An empty match isolates nothing; step over one character (the `u` flag steps whole code points).
            regex.lastIndex = m.index + (piece.codePointAt(m.index)! > 0xffff ? 2 : 1);
            continue;
          }
          if (m.index > offset) next.push(piece.slice(offset, m.index));
          next.push(m[0]);
          offset = m.index + m[0].length;
        }
        if (offset < piece.length) next.push(piece.slice(offset));
      }
      pieces = next;
    }
    return pieces;
  }

  /** The bytes an id stands for, or null when it is skipped (special with skipSpecialTokens) or unknown. */
  private bytesOf(id: number, options: DecodeOptions): Uint8Array | null {
    if (options.skipSpecialTokens && this.specialIds.has(id)) return null;
    let bytes = this.bytesCache.get(id);
    if (bytes === undefined) {
      const token = this.idToToken.get(id);
      if (token === undefined) return null;
      bytes = tokenToBytes(token);
      this.bytesCache.set(id, bytes);
    }
    return bytes;
  }
}

/** The largest key of a map of ids (-1 when empty); a loop, as a spread of 250k ids would overflow the stack. */
function largestKey(map: ReadonlyMap<number, unknown>): number {
  let largest = -1;
  for (const key of map.keys()) if (key > largest) largest = key;
  return largest;
}

/** A lenient UTF-8 decoder that keeps a leading byte-order mark (it is text the model produced). */
function newUtf8Decoder() {
  return new TextDecoder('utf-8', { ignoreBOM: true });
}
