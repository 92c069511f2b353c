import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { ImageError, InvalidRequestError } from '../src/errors.js';
import { cmykToRgbLikePil, decodeImage, DEFAULT_MAX_PIXELS } from '../src/image/decode.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
const image = (name: string) => readFileSync(fixturePath(FIXTURE, 'images', name));
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

// ---- a minimal PNG writer, so every colour type and bit depth can be written with known sample values ----

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

interface PngSpec {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number; // 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
  rows: Uint8Array[]; // packed scanlines without the filter byte
  chunks?: [string, Uint8Array][]; // written between IHDR and IDAT (PLTE, tRNS, iCCP, …)
}

function writePng(spec: PngSpec): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(spec.width, 0);
  ihdr.writeUInt32BE(spec.height, 4);
  ihdr[8] = spec.bitDepth;
  ihdr[9] = spec.colorType;
  const scanlines = Buffer.concat(spec.rows.map((row) => Buffer.concat([Buffer.from([0]), row])));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    ...(spec.chunks ?? []).map(([type, data]) => pngChunk(type, data)),
    pngChunk('IDAT', deflateSync(scanlines)),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

function u16be(values: number[]): Buffer {
  const out = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => out.writeUInt16BE(v, 2 * i));
  return out;
}

async function decodeToArray(bytes: Uint8Array): Promise<{ size: [number, number]; rgb: number[] }> {
  const img = await decodeImage(bytes);
  return { size: [img.width, img.height], rgb: [...img.data] };
}

// ---- the fixture's inputs ----

test('every fixture input decodes to the RGB bytes PIL produced (rgb_sha256), the JPEG included', async () => {
  for (const stem of ['alpha_320x240', 'checker_1344x1344', 'grad_100x80', 'gray_500x375', 'hk_OCR', 'palette_640x480',
    'shapes_448x448', 'tall_300x1200', 'thin_30x900', 'tie_1125x300', 'wide_1000x300', 'wide_2000x1000']) {
    const golden = readFixtureJson<{ input: { file: string; size: [number, number]; rgb_sha256: string } }>(FIXTURE, 'preprocess', `${stem}.json`);
    const img = await decodeImage(readFileSync(fixturePath(FIXTURE, golden.input.file)));
    assert.deepEqual([img.width, img.height], golden.input.size, stem);
    assert.equal(img.data.length, img.width * img.height * 3);
    assert.equal(sha256(img.data), golden.input.rgb_sha256, `${stem}: RGB bytes differ from PIL's convert('RGB')`);
  }
});

test('hk_OCR.jpg decodes exactly like PIL/libjpeg-turbo (hk_OCR.jpg.decoded.png): max and mean difference 0', async () => {
  const jpeg = await decodeImage(image('hk_OCR.jpg'));
  const png = await decodeImage(image('hk_OCR.jpg.decoded.png'));
  assert.deepEqual([jpeg.width, jpeg.height], [1300, 858]);
  let max = 0;
  let total = 0;
  for (let i = 0; i < jpeg.data.length; i++) {
    const d = Math.abs(jpeg.data[i]! - png.data[i]!);
    max = Math.max(max, d);
    total += d;
  }
  assert.equal(max, 0, `max diff ${max}, mean ${total / jpeg.data.length}`);
});

// ---- PIL's convert('RGB') rules on hand-written PNGs ----

test('RGBA and grey+alpha: alpha is dropped without compositing, even where it is 0', async () => {
  const rgba = writePng({ width: 2, height: 1, bitDepth: 8, colorType: 6, rows: [Uint8Array.from([5, 6, 7, 0, 250, 251, 252, 1])] });
  assert.deepEqual(await decodeToArray(rgba), { size: [2, 1], rgb: [5, 6, 7, 250, 251, 252] });
  const greyAlpha = writePng({ width: 2, height: 1, bitDepth: 8, colorType: 4, rows: [Uint8Array.from([5, 0, 250, 128])] });
  assert.deepEqual(await decodeToArray(greyAlpha), { size: [2, 1], rgb: [5, 5, 5, 250, 250, 250] });
});

test('palette with tRNS: the palette colour, transparency ignored; low bit depths unpacked', async () => {
  const palette = Uint8Array.from([10, 20, 30, 40, 50, 60, 70, 80, 90, 200, 210, 220]);
  // 2-bit indices 0, 1, 2, 3 packed into one byte 0b00_01_10_11; entries 0 and 1 are (partly) transparent.
  const png = writePng({
    width: 4, height: 1, bitDepth: 2, colorType: 3, rows: [Uint8Array.from([0b00011011])],
    chunks: [['PLTE', palette], ['tRNS', Uint8Array.from([0, 128])]],
  });
  assert.deepEqual((await decodeToArray(png)).rgb, [...palette]);
});

test('low bit depth grey is scaled like PIL ("1" → 0/255, "L;2" → ×85, "L;4" → ×17)', async () => {
  const g1 = writePng({ width: 8, height: 1, bitDepth: 1, colorType: 0, rows: [Uint8Array.from([0b10100110])] });
  assert.deepEqual((await decodeToArray(g1)).rgb, [255, 0, 255, 0, 0, 255, 255, 0].flatMap((v) => [v, v, v]));
  const g2 = writePng({ width: 4, height: 1, bitDepth: 2, colorType: 0, rows: [Uint8Array.from([0b00011011])] });
  assert.deepEqual((await decodeToArray(g2)).rgb, [0, 85, 170, 255].flatMap((v) => [v, v, v]));
  const g4 = writePng({ width: 2, height: 1, bitDepth: 4, colorType: 0, rows: [Uint8Array.from([0x1f])] });
  assert.deepEqual((await decodeToArray(g4)).rgb, [17, 17, 17, 255, 255, 255]);
});

test('16-bit samples: high byte for RGB/RGBA/grey+alpha, clipping for plain 16-bit grey (PIL mode "I")', async () => {
  const values = [0, 1, 200, 255, 256, 511, 0x1234, 0x80ff, 0xff00, 0xffff];
  const highByte = values.map((v) => v >> 8);
  const rgb16 = writePng({ width: 10, height: 1, bitDepth: 16, colorType: 2, rows: [u16be(values.flatMap((v) => [v, 0xffff - v, v]))] });
  assert.deepEqual((await decodeToArray(rgb16)).rgb, highByte.flatMap((h) => [h, 255 - h, h]));
  const rgba16 = writePng({ width: 10, height: 1, bitDepth: 16, colorType: 6, rows: [u16be(values.flatMap((v) => [v, v, v, 0]))] });
  assert.deepEqual((await decodeToArray(rgba16)).rgb, highByte.flatMap((h) => [h, h, h]));
  const greyAlpha16 = writePng({ width: 10, height: 1, bitDepth: 16, colorType: 4, rows: [u16be(values.flatMap((v) => [v, 0x8000]))] });
  assert.deepEqual((await decodeToArray(greyAlpha16)).rgb, highByte.flatMap((h) => [h, h, h]));
  // PIL opens 16-bit grey as mode "I" and its I → RGB conversion clips at 255 instead of scaling.
  const grey16 = writePng({ width: 10, height: 1, bitDepth: 16, colorType: 0, rows: [u16be(values)] });
  assert.deepEqual((await decodeToArray(grey16)).rgb, values.map((v) => Math.min(v, 255)).flatMap((v) => [v, v, v]));
});

test('an embedded ICC profile is ignored: the stored values come back', async () => {
  // Borrow a real Display-P3 iCCP chunk from a PNG that sharp writes, then store known values under it.
  const p3 = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#808080' } }).withIccProfile('p3').png().toBuffer();
  const iccp = findPngChunk(p3, 'iCCP');
  const png = writePng({ width: 2, height: 1, bitDepth: 8, colorType: 2, rows: [Uint8Array.from([200, 30, 40, 10, 250, 60])], chunks: [['iCCP', iccp]] });
  assert.equal((await sharp(png).metadata()).hasProfile, true);
  assert.deepEqual((await decodeToArray(png)).rgb, [200, 30, 40, 10, 250, 60]);
});

function findPngChunk(png: Buffer, type: string): Buffer {
  for (let at = 8; at + 8 <= png.length; at += 12 + png.readUInt32BE(at)) {
    if (png.toString('latin1', at + 4, at + 8) === type) return png.subarray(at + 8, at + 8 + png.readUInt32BE(at));
  }
  throw new Error(`no ${type} chunk`);
}

// ---- JPEG, WebP, GIF ----

test('JPEG EXIF orientation is not applied (PIL does not rotate)', async () => {
  const jpeg = await sharp({ create: { width: 4, height: 2, channels: 3, background: '#ff0000' } }).jpeg().withMetadata({ orientation: 6 }).toBuffer();
  assert.equal((await sharp(jpeg).metadata()).orientation, 6);
  assert.deepEqual((await decodeToArray(jpeg)).size, [4, 2]);
});

test('CMYK JPEG: PIL cmyk2rgb arithmetic', async () => {
  // nk = 255 − k; channel = nk − MULDIV255(c, nk) with MULDIV255(a, b) = ((t >> 8) + t) >> 8, t = a·b + 128.
  // c = 159, k = 48: nk = 207, t = 33041, (129 + 33041) >> 8 = 129 → 78. c = 0 → nk. k = 255 → 0.
  assert.equal(cmykToRgbLikePil(159, 48), 78);
  assert.equal(cmykToRgbLikePil(0, 48), 207);
  assert.equal(cmykToRgbLikePil(255, 0), 0);
  assert.equal(cmykToRgbLikePil(77, 255), 0);
  const jpeg = await sharp({ create: { width: 3, height: 2, channels: 3, background: '#c86432' } }).toColourspace('cmyk').jpeg().toBuffer();
  assert.equal((await sharp(jpeg).metadata()).space, 'cmyk');
  const { size, rgb } = await decodeToArray(jpeg);
  assert.deepEqual(size, [3, 2]);
  assert.equal(rgb.length, 18);
  assert.ok(rgb[0]! > rgb[1]! && rgb[1]! > rgb[2]!, `an orange stays orange: ${rgb.slice(0, 3)}`);
});

test('WebP (lossless, with alpha) decodes to the stored RGB', async () => {
  const rgba = Uint8Array.from([1, 2, 3, 0, 250, 251, 252, 255, 9, 8, 7, 128, 100, 0, 200, 255]);
  const webp = await sharp(rgba, { raw: { width: 2, height: 2, channels: 4 } }).webp({ lossless: true, exact: true }).toBuffer();
  assert.deepEqual(await decodeToArray(webp), { size: [2, 2], rgb: [1, 2, 3, 250, 251, 252, 9, 8, 7, 100, 0, 200] });
});

/**
 * A 3x2 GIF with a 4-colour global table (10,20,30) (40,50,60) (70,80,90) (100,110,120) and one 1x1 frame at (1, 1)
 * holding index 1; optionally a graphic control extension that makes index 3 transparent. LZW data (min code size 2,
 * 3-bit codes, LSB first): clear 4, pixel 1, end 5 → 0b101_001_100 → bytes 0x4c 0x01.
 */
function smallGif(transparentIndex3: boolean): Uint8Array {
  return Uint8Array.from([
    ...Buffer.from('GIF89a'), 3, 0, 2, 0, 0b10000001, 0, 0,
    10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120,
    ...(transparentIndex3 ? [0x21, 0xf9, 4, 0b00000001, 0, 0, 3, 0] : []),
    0x2c, 1, 0, 1, 0, 1, 0, 1, 0, 0,
    2, 2, 0x4c, 0x01, 0,
    0x3b,
  ]);
}

test('GIF: PIL fills what the first frame does not cover with the transparent index (or index 0)', async () => {
  // PIL draws frame 0 onto a canvas of the transparent index if there is one, else of index 0; convert('RGB') then
  // shows that palette entry. Only pixel (1, 1) belongs to the frame.
  const withTransparency = await decodeToArray(smallGif(true));
  assert.deepEqual(withTransparency, { size: [3, 2], rgb: [100, 110, 120, 100, 110, 120, 100, 110, 120, 100, 110, 120, 40, 50, 60, 100, 110, 120] });
  const plain = await decodeToArray(smallGif(false));
  assert.deepEqual(plain, { size: [3, 2], rgb: [10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20, 30, 40, 50, 60, 10, 20, 30] });
});

test('GIF: transparent pixels inside the frame show their palette colour', async () => {
  // 2x1 frame with indices 3 (transparent) and 1. LZW codes 4, 3, 1, 5 → 0b101_001_011_100 = 0x0a5c → 0x5c 0x0a.
  const gif = Uint8Array.from([
    ...Buffer.from('GIF89a'), 2, 0, 1, 0, 0b10000001, 0, 0,
    10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120,
    0x21, 0xf9, 4, 0b00000001, 0, 0, 3, 0,
    0x2c, 0, 0, 0, 0, 2, 0, 1, 0, 0,
    2, 2, 0x5c, 0x0a, 0,
    0x3b,
  ]);
  assert.deepEqual(await decodeToArray(gif), { size: [2, 1], rgb: [100, 110, 120, 40, 50, 60] });
});

test('animated GIF: only the first frame', async () => {
  const frames = Uint8Array.from([...Array(4).fill([200, 10, 10]).flat(), ...Array(4).fill([10, 10, 200]).flat()]);
  const gif = await sharp(frames, { raw: { width: 2, height: 4, channels: 3, pageHeight: 2 } }).gif({ dither: 0 }).toBuffer();
  assert.equal((await sharp(gif).metadata()).pages, 2);
  assert.deepEqual(await decodeToArray(gif), { size: [2, 2], rgb: Array(4).fill([200, 10, 10]).flat() });
});

// ---- bad input ----

async function rejectsWith(bytes: Uint8Array, pattern: RegExp, options?: { maxPixels?: number }): Promise<void> {
  await assert.rejects(decodeImage(bytes, options), (err: unknown) => {
    assert.ok(err instanceof ImageError, `expected ImageError, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'), 'one-line message');
    return true;
  });
}

test('empty, text, SVG, TIFF and other non-images are refused as unsupported', async () => {
  await rejectsWith(new Uint8Array(0), /empty \(0 bytes\)/);
  await rejectsWith(Buffer.from('hello, this is a text file\n'), /unsupported image format.*only JPEG, PNG, WebP and GIF/);
  await rejectsWith(Buffer.from('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'), /SVG/);
  await rejectsWith(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'), /SVG/);
  const tiff = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } }).tiff().toBuffer();
  await rejectsWith(tiff, /TIFF.*only JPEG, PNG, WebP and GIF/);
});

test('corrupt and truncated files are refused with a clear message', async () => {
  const grad = image('grad_100x80.png');
  await rejectsWith(grad.subarray(0, grad.length >> 1), /corrupt or truncated/);
  const jpeg = image('hk_OCR.jpg');
  await rejectsWith(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), /JPEG.*corrupt or truncated/);
  await rejectsWith(jpeg.subarray(0, 100), /JPEG.*corrupt or truncated/);
  await rejectsWith(Buffer.concat([grad.subarray(0, 8), Buffer.from('garbage after a PNG signature')]), /PNG.*corrupt or truncated/);
  // A valid signature and IHDR (the first 33 bytes), then an IDAT that is not zlib data.
  const header = writePng({ width: 4, height: 4, bitDepth: 8, colorType: 2, rows: [] }).subarray(0, 33);
  const badIdat = Buffer.concat([header, pngChunk('IDAT', Buffer.from('not zlib data at all')), pngChunk('IEND', new Uint8Array(0))]);
  await rejectsWith(badIdat, /PNG.*corrupt or truncated/);
  await rejectsWith(Buffer.from('RIFF\x10\0\0\0WEBPVP8 garbage!', 'latin1'), /WebP.*corrupt or truncated/);
  await rejectsWith(Buffer.from('GIF89a\x01'), /GIF.*corrupt or truncated/);
});

test('a 30000x30000 PNG (decompression bomb) is refused from its header, without allocating it', async () => {
  // A real IHDR and one compressed row: the header says 9e8 pixels, far above PIL's limit of 2 × 89478485.
  const bomb = writePng({ width: 30000, height: 30000, bitDepth: 8, colorType: 2, rows: [new Uint8Array(90000)] });
  assert.ok(bomb.length < 1000);
  const rssBefore = process.memoryUsage().rss;
  // This message comes from the header check (readImageHeader), which runs before any pixel is decoded.
  await rejectsWith(bomb, /30000x30000 = 900000000 pixels, more than the limit of 178956970/);
  assert.ok(process.memoryUsage().rss - rssBefore < 200e6, 'no pixel buffer was allocated');
  // A GIF whose logical screen is 65535x65535.
  const gifBomb = Uint8Array.from([...Buffer.from('GIF89a'), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x4c, 0x01, 0, 0x3b]);
  await rejectsWith(gifBomb, /65535x65535.*more than the limit/);
});

test('maxPixels is a hard limit (PIL raises above 2 × MAX_IMAGE_PIXELS) and must be a positive whole number', async () => {
  assert.equal(DEFAULT_MAX_PIXELS, 178956970);
  const grad = image('grad_100x80.png');
  await rejectsWith(grad, /100x80 = 8000 pixels, more than the limit of 7999/, { maxPixels: 7999 });
  assert.equal((await decodeImage(grad, { maxPixels: 8000 })).width, 100);
  for (const maxPixels of [0, -1, 1.5, Number.NaN]) await assert.rejects(decodeImage(grad, { maxPixels }), InvalidRequestError);
});
