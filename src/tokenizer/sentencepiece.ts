// A SentencePiece processor for BPE models that encodes and decodes exactly as sentencepiece 0.1.97
// (`SentencePieceProcessor::Encode` / `Decode`): normalisation, BPE merges, byte fallback, and decoding with its
// "drop the space of the first piece" rule. Only the identity normaliser is supported (a normaliser with an empty
// character map behaves as identity whatever its name); a model whose normaliser needs a precompiled character map
// (nmt_nfkc and friends), a non-BPE model and one with treat_whitespace_as_suffix are refused with a TokenizerError.
//
// The trainer options split_digits, split_by_whitespace, split_by_number and split_by_unicode_script shape which
// pieces exist when a model is trained; sentencepiece's BPE encoder does not apply them, so neither do we.

import { TokenizerError } from '../errors.js';
import { bpeSegment, type BpeVocabulary } from './bpe.js';
import { ProtobufError } from './protobuf.js';
import { parseModelProto, type ModelPiece, type ModelProto, type NormalizerSpec, type PieceType, type TrainerSpec } from './sentencepiece-model.js';
import { StringTrie } from './trie.js';
import { byteToPiece, couldBecomeValid, decodeUtf8Char, pieceToByte, REPLACEMENT_CHARACTER } from './utf8.js';

/** U+2581, the character that stands for a space inside pieces. */
export const SPACE_SYMBOL = '\u2581';

export interface SentencePieceEncoding {
  pieces: string[];
  ids: number[];
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const utf8Encoder = new TextEncoder();

export class SentencePieceProcessor {
  readonly pieces: readonly ModelPiece[];
  readonly trainerSpec: TrainerSpec;
  readonly normalizerSpec: NormalizerSpec;
  /** sentencepiece's unk_id()/bos_id()/eos_id()/pad_id(): the id of the configured piece, or -1 when absent. */
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  /** NORMAL, USER_DEFINED and UNUSED pieces (sentencepiece's `pieces_`). */
  private readonly mergeable = new Map<string, number>();
  /** CONTROL, UNKNOWN and BYTE pieces (sentencepiece's `reserved_id_map_`). */
  private readonly reserved = new Map<string, number>();
  private readonly unknownPieceId: number;
  private readonly vocabulary: BpeVocabulary;

  /** The model of a `tokenizer.model` file's bytes (`source` names it in errors); a TokenizerError when it is corrupt or unsupported. */
  static fromBytes(bytes: Uint8Array, source = 'tokenizer.model'): SentencePieceProcessor {
    let proto: ModelProto;
    try {
      proto = parseModelProto(bytes);
    } catch (err) {
      if (!(err instanceof ProtobufError)) throw err;
      throw new TokenizerError(`${source} is not a valid SentencePiece model (${err.message}); re-download it`, { cause: err });
    }
    return new SentencePieceProcessor(proto, source);
  }

  private constructor(proto: ModelProto, source: string) {
    const bad = (why: string): TokenizerError => new TokenizerError(`${source} is not a usable SentencePiece model: ${why}`);
    this.pieces = proto.pieces;
    this.trainerSpec = proto.trainerSpec;
    this.normalizerSpec = proto.normalizerSpec;
    if (proto.pieces.length === 0) throw bad('it has no pieces (empty or truncated file?)');
    if (proto.trainerSpec.modelType !== 'BPE') {
      throw new TokenizerError(
        `${source} is a SentencePiece ${proto.trainerSpec.modelType} model; only BPE models are supported so far`,
      );
    }
    if (proto.trainerSpec.treatWhitespaceAsSuffix) {
      throw new TokenizerError(
        `${source} puts the whitespace at the end of pieces (treat_whitespace_as_suffix); only models with the ` +
          'whitespace in front are supported so far',
      );
    }
    if (proto.normalizerSpec.precompiledCharsmap.length > 0) {
      throw new TokenizerError(
        `${source} uses the '${proto.normalizerSpec.name}' normaliser with a precompiled character map; ` +
          'only the identity normaliser is supported so far',
      );
    }
    if (proto.denormalizerSpec !== null && proto.denormalizerSpec.precompiledCharsmap.length > 0) {
      throw new TokenizerError(`${source} has a denormaliser with a character map, which is not supported`);
    }

    // Same checks as sentencepiece's ModelInterface::InitializePieces.
    const userDefined: string[] = [];
    const bytesSeen = new Set<number>();
    let unknownPieceId = -1;
    proto.pieces.forEach((p, id) => {
      if (p.piece === '') throw bad(`piece ${id} is empty`);
      const table = p.type === 'NORMAL' || p.type === 'USER_DEFINED' || p.type === 'UNUSED' ? this.mergeable : this.reserved;
      if (table.has(p.piece)) throw bad(`piece ${JSON.stringify(p.piece)} is defined twice`);
      table.set(p.piece, id);
      if (p.type === 'USER_DEFINED') userDefined.push(p.piece);
      if (p.type === 'UNKNOWN') {
        if (unknownPieceId >= 0) throw bad('it defines more than one unknown piece');
        unknownPieceId = id;
      }
      if (p.type === 'BYTE') {
        if (!proto.trainerSpec.byteFallback) throw bad(`byte piece ${p.piece} exists although byte_fallback is false`);
        const byte = pieceToByte(p.piece);
        if (byte < 0) throw bad(`byte piece ${JSON.stringify(p.piece)} is not of the form <0xNN>`);
        bytesSeen.add(byte);
      }
    });
    if (unknownPieceId < 0) throw bad('it has no unknown (<unk>) piece');
    if (proto.trainerSpec.byteFallback && bytesSeen.size !== 256) {
      throw bad(`byte_fallback is on but only ${bytesSeen.size} of the 256 byte pieces exist`);
    }
    this.unknownPieceId = unknownPieceId;

    const idOfType = (piece: string, type: PieceType): number => {
      const id = this.pieceToId(piece);
      return this.pieceType(id) === type ? id : -1;
    };
    const spec = proto.trainerSpec;
    this.unkId = idOfType(spec.unkPiece, 'UNKNOWN');
    this.bosId = idOfType(spec.bosPiece, 'CONTROL');
    this.eosId = idOfType(spec.eosPiece, 'CONTROL');
    this.padId = idOfType(spec.padPiece, 'CONTROL');

    this.vocabulary = {
      mergeableId: (piece) => this.mergeable.get(piece),
      pieceToId: (piece) => this.pieceToId(piece),
      score: (id) => this.pieces[id]!.score,
      isUnused: (id) => this.pieces[id]!.type === 'UNUSED',
      userDefined: new StringTrie(userDefined),
    };
  }

  /** Number of pieces (sentencepiece's GetPieceSize). */
  get vocabSize(): number {
    return this.pieces.length;
  }

  /** The id of a piece; any string that is not a piece maps to the unknown piece (sentencepiece's PieceToId). */
  pieceToId(piece: string): number {
    return this.reserved.get(piece) ?? this.mergeable.get(piece) ?? this.unknownPieceId;
  }

  idToPiece(id: number): string {
    return this.entry(id).piece;
  }

  pieceType(id: number): PieceType {
    return this.entry(id).type;
  }

  /**
   * The text sentencepiece feeds to the BPE model (normalizer.cc `Normalize` with an empty character map): the
   * dummy-prefix space, optional removal of extra spaces, and spaces written as U+2581. User-defined pieces pass as
   * whole units. Lone UTF-16 surrogates (which Python could not encode) become U+FFFD.
   */
  normalize(text: string): string {
    const spec = this.normalizerSpec;
    const space = spec.escapeWhitespaces ? SPACE_SYMBOL : ' ';
    const input = text.replace(LONE_SURROGATE, REPLACEMENT_CHARACTER);
    let pos = 0;
    if (spec.removeExtraWhitespaces) {
      while (pos < input.length && input[pos] === ' ' && this.unitLength(input, pos) === 1) pos++;
    }
    if (pos >= input.length) return '';

    let out = spec.addDummyPrefix ? space : '';
    let isPrevSpace = spec.removeExtraWhitespaces;
    while (pos < input.length) {
      const length = this.unitLength(input, pos);
      let unit = input.slice(pos, pos + length);
      if (isPrevSpace) unit = unit.replace(/^ +/, '');
      if (unit !== '') {
        out += spec.escapeWhitespaces ? unit.replaceAll(' ', SPACE_SYMBOL) : unit;
        isPrevSpace = spec.removeExtraWhitespaces && unit.endsWith(' ');
      }
      pos += length;
    }
    if (spec.removeExtraWhitespaces) {
      while (out.endsWith(space)) out = out.slice(0, out.length - space.length);
    }
    return out;
  }

  /** Encodes text to pieces and ids (sentencepiece's Encode, then PopulateSentencePieceText). */
  encode(text: string): SentencePieceEncoding {
    const pieces: string[] = [];
    const ids: number[] = [];
    let previousWasUnknown = false;
    for (const piece of bpeSegment(this.normalize(text), this.vocabulary)) {
      const id = this.pieceToId(piece);
      const isUnknown = this.pieces[id]!.type === 'UNKNOWN';
      if (isUnknown && this.trainerSpec.byteFallback) {
        for (const byte of utf8Encoder.encode(piece)) {
          const bytePiece = byteToPiece(byte);
          pieces.push(bytePiece);
          ids.push(this.pieceToId(bytePiece));
        }
      } else if (isUnknown && previousWasUnknown) {
        // A run of unknown characters becomes one unknown piece.
        pieces[pieces.length - 1] += piece;
      } else {
        pieces.push(piece);
        ids.push(id);
      }
      previousWasUnknown = isUnknown;
    }
    return { pieces, ids };
  }

  /** Decodes pieces to text exactly as sentencepiece's Decode(pieces). */
  decodePieces(pieces: readonly string[]): string {
    const decoder = this.runDecoder();
    let text = '';
    for (const piece of pieces) text += decoder.push(piece);
    return text + decoder.finish();
  }

  decodeIds(ids: readonly number[]): string {
    return this.decodePieces(ids.map((id) => this.idToPiece(id)));
  }

  /** A decoder that takes the pieces of one Decode call one at a time. */
  runDecoder(): PieceRunDecoder {
    return new PieceRunDecoder(this);
  }

  private entry(id: number): ModelPiece {
    const entry = Number.isInteger(id) ? this.pieces[id] : undefined;
    if (entry === undefined) {
      throw new TokenizerError(`token id ${id} is outside the SentencePiece vocabulary (0..${this.pieces.length - 1})`);
    }
    return entry;
  }

  /** Length of the normaliser's next unit at `pos`: a user-defined piece, else one code point. */
  private unitLength(text: string, pos: number): number {
    const matched = this.vocabulary.userDefined.longestMatchAt(text, pos);
    if (matched > 0) return matched;
    const unit = text.charCodeAt(pos);
    return unit >= 0xd800 && unit < 0xdc00 && pos + 1 < text.length ? 2 : 1;
  }
}

/**
 * sentencepiece's Decode(pieces) as a stream: push pieces one at a time and get back the text that can no longer
 * change. Consecutive byte pieces are assembled to UTF-8; bytes that a later byte piece could still complete are held
 * back, and bytes that can never form a valid character become U+FFFD each. The leading U+2581 of the first piece
 * is dropped (add_dummy_prefix), and control pieces print nothing. Concatenating every push() and finish() gives
 * exactly what decodePieces returns for the same pieces.
 */
export class PieceRunDecoder {
  private pendingBytes: number[] = [];
  private producedText = false;
  private expectBosSpace = true;
  private lastConsumedBosSpace = false;

  constructor(private readonly sp: SentencePieceProcessor) {}

  push(piece: string): string {
    const id = this.sp.pieceToId(piece);
    const type = this.sp.pieceType(id);
    if (type === 'BYTE') {
      this.pendingBytes.push(pieceToByte(piece));
      return this.drainBytes(false);
    }
    let text = this.drainBytes(true);
    if (this.lastConsumedBosSpace || this.producedText) this.expectBosSpace = false;
    const decoded = this.decodePiece(piece, id, type);
    text += decoded;
    if (decoded !== '') this.producedText = true;
    return text;
  }

  /** Ends the run: held bytes that never completed a character become U+FFFD each. */
  finish(): string {
    return this.drainBytes(true);
  }

  // sentencepiece's DecodeSentencePiece for a non-byte piece.
  private decodePiece(piece: string, id: number, type: PieceType): string {
    this.lastConsumedBosSpace = false;
    if (type === 'CONTROL') return '';
    if (type === 'UNKNOWN') return this.sp.idToPiece(id) === piece ? this.sp.trainerSpec.unkSurface : piece;
    const spec = this.sp.normalizerSpec;
    let text = piece;
    if (this.expectBosSpace && (spec.addDummyPrefix || spec.removeExtraWhitespaces) && text.startsWith(SPACE_SYMBOL)) {
      text = text.slice(SPACE_SYMBOL.length);
      this.lastConsumedBosSpace = !spec.removeExtraWhitespaces;
    }
    return text.replaceAll(SPACE_SYMBOL, ' ');
  }

  private drainBytes(final: boolean): string {
    const bytes = this.pendingBytes;
    let text = '';
    let offset = 0;
    while (offset < bytes.length) {
      const char = decodeUtf8Char(bytes, offset, bytes.length);
      if (char !== null) {
        text += String.fromCodePoint(char.codePoint);
        offset += char.length;
      } else if (!final && couldBecomeValid(bytes, offset, bytes.length)) {
        break;
      } else {
        text += REPLACEMENT_CHARACTER;
        offset += 1;
      }
    }
    this.pendingBytes = bytes.slice(offset);
    if (text !== '') this.producedText = true;
    return text;
  }
}
