// The SentencePiece `tokenizer.model` file: a serialized `sentencepiece.ModelProto` (sentencepiece_model.proto).
// Only the fields that encoding and decoding depend on are kept; defaults are the proto2 defaults of that file.

import { ProtobufError, ProtoReader, WIRE_FIXED32, WIRE_LENGTH_DELIMITED, WIRE_VARINT } from './protobuf.js';

export type PieceType = 'NORMAL' | 'UNKNOWN' | 'CONTROL' | 'USER_DEFINED' | 'UNUSED' | 'BYTE';
export type ModelType = 'UNIGRAM' | 'BPE' | 'WORD' | 'CHAR';

const PIECE_TYPES: Record<number, PieceType> = {
  1: 'NORMAL', 2: 'UNKNOWN', 3: 'CONTROL', 4: 'USER_DEFINED', 5: 'UNUSED', 6: 'BYTE',
};
const MODEL_TYPES: Record<number, ModelType> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };

export interface ModelPiece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface TrainerSpec {
  modelType: ModelType;
  vocabSize: number;
  byteFallback: boolean;
  splitDigits: boolean;
  splitByWhitespace: boolean;
  splitByNumber: boolean;
  splitByUnicodeScript: boolean;
  allowWhitespaceOnlyPieces: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
  /** What decoding prints for the `<unk>` piece. */
  unkSurface: string;
}

export interface NormalizerSpec {
  name: string;
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface ModelProto {
  pieces: ModelPiece[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
  /** Present only when the file has one; a non-empty charsmap there rewrites decoded text. */
  denormalizerSpec: NormalizerSpec | null;
}

/** Parses a serialized ModelProto; throws ProtobufError when the bytes are not one. */
export function parseModelProto(bytes: Uint8Array): ModelProto {
  const reader = new ProtoReader(bytes);
  const pieces: ModelPiece[] = [];
  let trainerSpec = defaultTrainerSpec();
  let normalizerSpec = defaultNormalizerSpec();
  let denormalizerSpec: NormalizerSpec | null = null;
  for (let f = reader.nextField(); f !== null; f = reader.nextField()) {
    switch (f.field) {
      case 1:
        reader.expect(f.wireType, WIRE_LENGTH_DELIMITED, 'ModelProto.pieces');
        pieces.push(parsePiece(reader.message(), pieces.length));
        break;
      case 2:
        reader.expect(f.wireType, WIRE_LENGTH_DELIMITED, 'ModelProto.trainer_spec');
        trainerSpec = parseTrainerSpec(reader.message());
        break;
      case 3:
        reader.expect(f.wireType, WIRE_LENGTH_DELIMITED, 'ModelProto.normalizer_spec');
        normalizerSpec = parseNormalizerSpec(reader.message());
        break;
      case 5:
        reader.expect(f.wireType, WIRE_LENGTH_DELIMITED, 'ModelProto.denormalizer_spec');
        denormalizerSpec = parseNormalizerSpec(reader.message());
        break;
      default:
        reader.skip(f.wireType);
    }
  }
  return { pieces, trainerSpec, normalizerSpec, denormalizerSpec };
}

function parsePiece(reader: ProtoReader, index: number): ModelPiece {
  const out: ModelPiece = { piece: '', score: 0, type: 'NORMAL' };
  for (let f = reader.nextField(); f !== null; f = reader.nextField()) {
    if (f.field === 1) {
      reader.expect(f.wireType, WIRE_LENGTH_DELIMITED, `pieces[${index}].piece`);
      out.piece = reader.string();
    } else if (f.field === 2) {
      reader.expect(f.wireType, WIRE_FIXED32, `pieces[${index}].score`);
      out.score = reader.float();
    } else if (f.field === 3) {
      reader.expect(f.wireType, WIRE_VARINT, `pieces[${index}].type`);
      const code = reader.varint();
      const type = PIECE_TYPES[code];
      if (type === undefined) throw new ProtobufError(`pieces[${index}] has an unknown type ${code}`);
      out.type = type;
    } else {
      reader.skip(f.wireType);
    }
  }
  return out;
}

function defaultTrainerSpec(): TrainerSpec {
  return {
    modelType: 'UNIGRAM', vocabSize: 8000, byteFallback: false, splitDigits: false, splitByWhitespace: true,
    splitByNumber: true, splitByUnicodeScript: true, allowWhitespaceOnlyPieces: false, treatWhitespaceAsSuffix: false,
    unkId: 0, bosId: 1, eosId: 2, padId: -1, unkPiece: '<unk>', bosPiece: '<s>', eosPiece: '</s>', padPiece: '<pad>',
    unkSurface: ' \u2047 ',
  };
}

function defaultNormalizerSpec(): NormalizerSpec {
  return {
    name: '', precompiledCharsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
}

// Field numbers of TrainerSpec that we keep, by kind.
const TRAINER_BOOLS: Record<number, keyof TrainerSpec> = {
  35: 'byteFallback', 25: 'splitDigits', 22: 'splitByWhitespace', 23: 'splitByNumber', 21: 'splitByUnicodeScript',
  26: 'allowWhitespaceOnlyPieces', 24: 'treatWhitespaceAsSuffix',
};
const TRAINER_INTS: Record<number, keyof TrainerSpec> = { 4: 'vocabSize', 40: 'unkId', 41: 'bosId', 42: 'eosId', 43: 'padId' };
const TRAINER_STRINGS: Record<number, keyof TrainerSpec> = {
  45: 'unkPiece', 46: 'bosPiece', 47: 'eosPiece', 48: 'padPiece', 44: 'unkSurface',
};

function parseTrainerSpec(reader: ProtoReader): TrainerSpec {
  const spec = defaultTrainerSpec();
  const fields = spec as unknown as Record<string, unknown>;
  for (let f = reader.nextField(); f !== null; f = reader.nextField()) {
    const boolName = TRAINER_BOOLS[f.field];
    const intName = TRAINER_INTS[f.field];
    const stringName = TRAINER_STRINGS[f.field];
    if (f.field === 3) {
      reader.expect(f.wireType, WIRE_VARINT, 'trainer_spec.model_type');
      const code = reader.varint();
      const type = MODEL_TYPES[code];
      if (type === undefined) throw new ProtobufError(`trainer_spec.model_type ${code} is unknown`);
      spec.modelType = type;
    } else if (boolName !== undefined) {
      reader.expect(f.wireType, WIRE_VARINT, `trainer_spec.${boolName}`);
      fields[boolName] = reader.bool();
    } else if (intName !== undefined) {
      reader.expect(f.wireType, WIRE_VARINT, `trainer_spec.${intName}`);
      fields[intName] = reader.int32();
    } else if (stringName !== undefined) {
      reader.expect(f.wireType, WIRE_LENGTH_DELIMITED, `trainer_spec.${stringName}`);
      fields[stringName] = reader.string();
    } else {
      reader.skip(f.wireType);
    }
  }
  // An empty piece name means "use the default" (ModelInterface::unk_piece() and friends).
  const defaults = defaultTrainerSpec();
  for (const key of ['unkPiece', 'bosPiece', 'eosPiece', 'padPiece'] as const) {
    if (spec[key] === '') spec[key] = defaults[key];
  }
  return spec;
}

function parseNormalizerSpec(reader: ProtoReader): NormalizerSpec {
  const spec = defaultNormalizerSpec();
  for (let f = reader.nextField(); f !== null; f = reader.nextField()) {
    switch (f.field) {
      case 1:
        reader.expect(f.wireType, WIRE_LENGTH_DELIMITED, 'normalizer_spec.name');
        spec.name = reader.string();
        break;
      case 2:
        reader.expect(f.wireType, WIRE_LENGTH_DELIMITED, 'normalizer_spec.precompiled_charsmap');
        spec.precompiledCharsmap = reader.bytesField();
        break;
      case 3:
        reader.expect(f.wireType, WIRE_VARINT, 'normalizer_spec.add_dummy_prefix');
        spec.addDummyPrefix = reader.bool();
        break;
      case 4:
        reader.expect(f.wireType, WIRE_VARINT, 'normalizer_spec.remove_extra_whitespaces');
        spec.removeExtraWhitespaces = reader.bool();
        break;
      case 5:
        reader.expect(f.wireType, WIRE_VARINT, 'normalizer_spec.escape_whitespaces');
        spec.escapeWhitespaces = reader.bool();
        break;
      default:
        reader.skip(f.wireType);
    }
  }
  return spec;
}
