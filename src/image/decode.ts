// Image bytes → 8-bit RGB, equal to what the official pipeline gets from `PIL.Image.open(f).convert('RGB')`.
//
// sharp (libvips) decodes; PIL's conversion rules are applied on top:
// * alpha is dropped, never composited (fully transparent pixels keep their stored colour);
// * grey is replicated, palettes are looked up (their transparency ignored);
// * 16-bit samples keep their high byte (PIL's "RGB;16B"/"RGBA;16B"/"LA;16B"), except 16-bit grey without alpha,
//   which PIL opens as mode "I" and converts by clipping to 0…255 (so most of such an image turns white);
// * CMYK JPEGs use PIL's `cmyk2rgb` arithmetic (Adobe-inverted storage, as PIL assumes), not a colour profile;
// * embedded ICC profiles and EXIF orientation are ignored (PIL neither converts nor rotates);
// * GIF: the first frame only, with PIL's fill where the frame is transparent or does not reach (see gif.ts).

import sharp, { type Metadata, type SharpOptions } from 'sharp';
import { ImageError, ImageTooLargeError, InvalidRequestError } from '../errors.js';
import { applyGifFill, readGifFirstFrame, readGifScreenSize } from './gif.js';
import type { RgbImage } from './rgb.js';

export interface DecodeOptions {
  /** Refuse images with more pixels than this (read from the header, before any pixel is decoded). */
  maxPixels?: number;
}

/** Pillow raises DecompressionBombError above 2 × Image.MAX_IMAGE_PIXELS (89478485) pixels. */
export const DEFAULT_MAX_PIXELS = 2 * 89_478_485;

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif';

const FORMAT_NAMES: Record<ImageFormat, string> = { jpeg: 'JPEG', png: 'PNG', webp: 'WebP', gif: 'GIF' };

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(bytes: Uint8Array, prefix: ArrayLike<number>, at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false;
  return true;
}

const ascii = (text: string) => Array.from(text, (c) => c.charCodeAt(0));

/** The format from the file's signature, so that nothing else (SVG, TIFF, PDF, …) ever reaches a decoder. */
function sniffFormat(bytes: Uint8Array): ImageFormat | null {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(bytes, PNG_SIGNATURE)) return 'png';
  if (startsWith(bytes, ascii('GIF87a')) || startsWith(bytes, ascii('GIF89a'))) return 'gif';
  if (startsWith(bytes, ascii('RIFF')) && startsWith(bytes, ascii('WEBP'), 8)) return 'webp';
  return null;
}

/** A short guess at what an unsupported file is, for the error message. */
function describeUnsupported(bytes: Uint8Array): string | null {
  const head = Buffer.from(bytes.subarray(0, 256)).toString('latin1').trimStart().toLowerCase();
  if (head.startsWith('<?xml') || head.startsWith('<svg') || head.includes('<svg')) return 'an SVG/XML document';
  if (head.startsWith('<')) return 'an HTML/XML document';
  if (head.startsWith('%pdf')) return 'a PDF document';
  if (startsWith(bytes, ascii('II*\0')) || startsWith(bytes, ascii('MM\0*'))) return 'a TIFF image';
  if (startsWith(bytes, ascii('BM'))) return 'a BMP image';
  if (startsWith(bytes, ascii('ftyp'), 4)) return 'an HEIF/AVIF/MP4 file';
  return null;
}

/** First line of a libvips/sharp message, without its trailing noise. */
function reason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.replace(/[\s:]+$/, '');
}

/** How sharp reads every image: strict about errors, with no colour profile or EXIF rotation applied (as PIL). */
const SHARP_INPUT = { failOn: 'error', ignoreIcc: true, autoOrient: false } as const;

function checkMaxPixels(maxPixels: number): void {
  if (!Number.isSafeInteger(maxPixels) || maxPixels < 1) {
    throw new InvalidRequestError(`maxPixels must be a positive whole number, got ${maxPixels}`);
  }
}

/** What an image's header says: its format, size and (for a JPEG) colour space. */
export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
  /** libvips' interpretation of the stored samples ("cmyk" for a CMYK JPEG). */
  space: Metadata['space'];
}

/**
 * Reads a JPEG, PNG, WebP or GIF header without decoding a pixel: its format and size, within `maxPixels`. Throws
 * ImageError for empty, unsupported or corrupt-header input and ImageTooLargeError above the limit, as decodeImage
 * does; a body that is corrupt past the header is found only by decodeImage.
 */
export async function readImageHeader(bytes: Uint8Array, options: DecodeOptions = {}): Promise<ImageHeader> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  checkMaxPixels(maxPixels);
  if (bytes.length === 0) throw new ImageError('the image is empty (0 bytes); pass the bytes of a JPEG, PNG, WebP or GIF file');
  const format = sniffFormat(bytes);
  if (!format) {
    const what = describeUnsupported(bytes) ?? 'not in a format this engine reads';
    throw new ImageError(`unsupported image format: the data is ${what}; only JPEG, PNG, WebP and GIF are supported`);
  }
  const name = FORMAT_NAMES[format];
  // sharp's own pixel limit is lifted here so that our message (with the size) is the one the caller sees.
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { ...SHARP_INPUT, limitInputPixels: false }).metadata();
  } catch (err) {
    throw new ImageError(`cannot read the ${name} image header (corrupt or truncated file?): ${reason(err)}`);
  }
  if (meta.format !== format) {
    throw new ImageError(`unsupported image: it starts like ${name} but decodes as ${meta.format}; only JPEG, PNG, WebP and GIF are supported`);
  }
  // PIL checks a GIF's logical screen, which libvips may replace by the first frame's size when it is absurd.
  const [width, height] = (format === 'gif' && readGifScreenSize(bytes)) || [meta.width, meta.height];
  if (!(width > 0 && height > 0)) throw new ImageError(`the ${name} image has no pixels (${width}x${height})`);
  if (width * height > maxPixels) {
    throw new ImageTooLargeError(
      `the ${name} image is ${width}x${height} = ${width * height} pixels, more than the limit of ${maxPixels} ` +
        '(a possible decompression bomb)',
      'raise the maxPixels option if you trust this image',
    );
  }
  return { format, width, height, space: meta.space };
}

/**
 * Decodes a JPEG, PNG, WebP or GIF (first frame) into 8-bit RGB exactly as PIL's `Image.open(f).convert('RGB')`.
 * Throws ImageError for empty, corrupt, truncated, unsupported or oversized input.
 */
export async function decodeImage(bytes: Uint8Array, options: DecodeOptions = {}): Promise<RgbImage> {
  // 1. Header only: format and size are checked before any pixel memory is allocated.
  const { format, space } = await readImageHeader(bytes, options);
  const name = FORMAT_NAMES[format];
  // 2. Pixels, converted by PIL's rules; sharp's own pixel limit guards the decode.
  const input = { ...SHARP_INPUT, limitInputPixels: options.maxPixels ?? DEFAULT_MAX_PIXELS };
  try {
    if (format === 'png' && isGrey16Png(bytes)) return await decodeGrey16(bytes, input);
    if (format === 'jpeg' && space === 'cmyk') return await decodeCmyk(bytes, input);
    const { data, info } = await sharp(bytes, input).raw().toBuffer({ resolveWithObject: true });
    const rgb = toRgb(data, info.channels, info.width * info.height);
    if (format === 'gif') {
      const frame = readGifFirstFrame(bytes);
      const alpha = info.channels === 2 || info.channels === 4 ? everyNth(data, info.channels, info.channels - 1) : null;
      if (frame) applyGifFill(rgb, alpha, info.width, info.height, frame);
    }
    return { width: info.width, height: info.height, data: rgb };
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(`cannot decode the ${name} image (corrupt or truncated data?): ${reason(err)}`);
  }
}

/** Interleaved 1–4 channel bytes → RGB: grey is replicated, alpha dropped. */
function toRgb(data: Uint8Array, channels: number, pixels: number): Uint8Array {
  if (channels === 3) return new Uint8Array(data.buffer, data.byteOffset, pixels * 3);
  const out = new Uint8Array(pixels * 3);
  if (channels === 4) {
    for (let i = 0, j = 0; i < out.length; i += 3, j += 4) {
      out[i] = data[j]!;
      out[i + 1] = data[j + 1]!;
      out[i + 2] = data[j + 2]!;
    }
  } else if (channels === 1 || channels === 2) {
    for (let p = 0; p < pixels; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = data[p * channels]!;
  } else {
    throw new ImageError(`cannot convert a ${channels}-channel image to RGB`);
  }
  return out;
}

function everyNth(data: Uint8Array, stride: number, offset: number): Uint8Array {
  const out = new Uint8Array(data.length / stride);
  for (let i = 0; i < out.length; i++) out[i] = data[i * stride + offset]!;
  return out;
}

/** PNG IHDR says 16-bit greyscale without alpha (colour type 0): PIL mode "I". */
function isGrey16Png(bytes: Uint8Array): boolean {
  return bytes.length > 25 && startsWith(bytes, ascii('IHDR'), 12) && bytes[24] === 16 && bytes[25] === 0;
}

/** PIL's I → RGB: clip each 16-bit value to 0…255 (no scaling). */
async function decodeGrey16(bytes: Uint8Array, input: SharpOptions): Promise<RgbImage> {
  const { data, info } = await sharp(bytes, input).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
  const samples = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
  const { width, height, channels } = info;
  const out = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = Math.min(samples[p * channels]!, 255);
  return { width, height, data: out };
}

/** PIL's `cmyk2rgb`: channel = clip(nk − c·nk/255) with nk = 255 − k, using its MULDIV255 integer rounding. */
export function cmykToRgbLikePil(c: number, k: number): number {
  const nk = 255 - k;
  const t = c * nk + 128;
  return Math.min(Math.max(nk - (((t >> 8) + t) >> 8), 0), 255);
}

async function decodeCmyk(bytes: Uint8Array, input: SharpOptions): Promise<RgbImage> {
  // Keeping the pipeline in CMYK makes libvips hand over the decoded ink values untouched.
  const { data, info } = await sharp(bytes, input).pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 4) throw new ImageError(`expected 4 CMYK channels from the JPEG decoder, got ${info.channels}`);
  const { width, height } = info;
  const out = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const k = data[4 * p + 3]!;
    for (let ch = 0; ch < 3; ch++) out[3 * p + ch] = cmykToRgbLikePil(data[4 * p + ch]!, k);
  }
  return { width, height, data: out };
}
