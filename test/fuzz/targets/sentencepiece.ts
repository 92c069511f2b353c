// The SentencePiece model reader (tokenizer/protobuf.ts, sentencepiece-model.ts, sentencepiece.ts): the bytes of a
// tokenizer.model, loaded, then a few texts encoded and every id decoded.

import { TokenizerError } from '../../../src/errors.js';
import { SentencePieceProcessor } from '../../../src/tokenizer/sentencepiece.js';
import { invariant, refusesOnlyWith, type FuzzTarget } from '../engine/target.js';

const TEXTS = ['', ' ', 'Hello world', '  two  spaces ', 'naïve café 東京 🙂', 'a\u0000b\ud800c', '<s>x</s><unk>', '12345 abc'];

/** Field tags (field number << 3 | wire type) of ModelProto, SentencePiece, TrainerSpec and NormalizerSpec. */
const TAGS = [0x0a, 0x12, 0x1a, 0x2a, 0x15, 0x18, 0x20, 0x28, 0x30, 0xa8, 0xb0, 0xb8, 0xc0, 0xc8, 0x98, 0x02, 0x0d, 0x09];

export const target: FuzzTarget = {
  description: 'bytes of a tokenizer.model → SentencePieceProcessor.fromBytes(), encode() of sample texts, decodeIds() of every id',
  modules: ['tokenizer/protobuf.js', 'tokenizer/sentencepiece-model.js', 'tokenizer/sentencepiece.js', 'tokenizer/bpe.js', 'tokenizer/utf8.js', 'tokenizer/trie.js'],
  dictionary: [
    ...TAGS.map((t) => Uint8Array.of(t)), Uint8Array.of(0x98, 0x02, 0x01), Uint8Array.of(0x18, 0x02), Uint8Array.of(0x18, 0x01),
    Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x0f), Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
    '<unk>', '<s>', '</s>', '<0x41>', '<0xFF>', '\u2581', '\u2581a', 'nmt_nfkc', 'identity',
  ],
  maxLength: 16 * 1024,
  run(input) {
    return refusesOnlyWith(input, [TokenizerError], () => {
      const sp = SentencePieceProcessor.fromBytes(input);
      const texts = [...TEXTS, sp.pieces.slice(0, 16).map((p) => p.piece.replaceAll('\u2581', ' ')).join('')];
      for (const text of texts) {
        const { pieces, ids } = sp.encode(text);
        invariant(ids.every((id) => Number.isInteger(id) && id >= 0 && id < sp.vocabSize), `encode(${JSON.stringify(text)}) gave an id outside the vocabulary`);
        sp.decodePieces(pieces);
        sp.decodeIds(ids);
      }
      sp.decodeIds(Array.from({ length: Math.min(sp.vocabSize, 512) }, (_, id) => id));
    });
  },
};
