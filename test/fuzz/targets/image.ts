// The image decode entry (image/decode.ts, gif.ts; pixels by sharp/libvips): the bytes of an uploaded image in any
// accepted format (PNG, JPEG, GIF, WebP) or any other bytes, decoded to RGB. Only our modules report block
// coverage; libvips is native code and is exercised without guidance.

import { ImageError } from '../../../src/errors.js';
import { decodeImage } from '../../../src/image/decode.js';
import { fixPngCrcs } from '../engine/formats.js';
import { mutateStacked } from '../engine/mutate.js';
import { invariant, refusesOnlyWith, type FuzzTarget } from '../engine/target.js';

/** The pixel limit while fuzzing: small enough that every decode is quick, the same guard as the server's 40 M. */
const MAX_PIXELS = 2_000_000;

export const target: FuzzTarget = {
  description: `bytes of an image → decodeImage(bytes, { maxPixels: ${MAX_PIXELS} })`,
  modules: ['image/decode.js', 'image/gif.js'],
  dictionary: [
    Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a), 'IHDR', 'PLTE', 'tRNS', 'IDAT', 'IEND', 'iCCP', 'acTL', 'fcTL',
    Uint8Array.of(0xff, 0xd8, 0xff), Uint8Array.of(0xff, 0xc0), Uint8Array.of(0xff, 0xc2), Uint8Array.of(0xff, 0xc4),
    Uint8Array.of(0xff, 0xda), Uint8Array.of(0xff, 0xd9), Uint8Array.of(0xff, 0xee), 'Adobe', 'Exif\0\0', 'GIF89a', 'GIF87a',
    Uint8Array.of(0x21, 0xf9, 0x04), Uint8Array.of(0x2c), Uint8Array.of(0x3b), 'NETSCAPE2.0', 'RIFF', 'WEBP', 'VP8 ', 'VP8L',
    'VP8X', 'ALPH', 'ANIM', 'ANMF', '<svg', 'II*\0', 'BM', Uint8Array.of(0x00, 0x10), Uint8Array.of(0xff, 0xff),
  ],
  maxLength: 64 * 1024,
  run(input) {
    return refusesOnlyWith(input, [ImageError], async () => {
      const image = await decodeImage(input, { maxPixels: MAX_PIXELS });
      invariant(image.width > 0 && image.height > 0 && image.width * image.height <= MAX_PIXELS, `decoded to ${image.width}x${image.height}`);
      invariant(image.data.length === image.width * image.height * 3, `${image.data.length} bytes of RGB for ${image.width}x${image.height}`);
    });
  },
  /** Byte mutations of a PNG with its chunk checksums put right, so the mutation reaches the decoder. */
  mutate(input, rng, dictionary) {
    if (input[0] !== 0x89 || input[1] !== 0x50) return null;
    return fixPngCrcs(mutateStacked(input, rng, dictionary, [], 64 * 1024));
  },
};
