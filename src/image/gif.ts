// What Pillow shows where libvips leaves a GIF's first frame empty. Pillow (9.4–10.1) draws frame 0 onto a canvas
// filled with the frame's transparent palette index (or index 0 without one) and keeps transparent pixels as their
// palette index, so after convert('RGB') both show that palette colour. libvips instead leaves them black or fully
// transparent. Only the GIF block structure is read here; the LZW pixel data is skipped.

/** The first frame's rectangle and the RGB colour Pillow shows outside it and at its transparent pixels. */
export interface GifFirstFrame {
  left: number;
  top: number;
  width: number;
  height: number;
  fill: [number, number, number];
}

/** The logical screen size from the GIF header: the image size PIL reports (libvips may shrink an absurd one). */
export function readGifScreenSize(bytes: Uint8Array): [number, number] | null {
  return bytes.length >= 10 ? [bytes[6]! | (bytes[7]! << 8), bytes[8]! | (bytes[9]! << 8)] : null;
}

/** Reads the GIF header blocks up to the first image descriptor; null when the structure ends early. */
export function readGifFirstFrame(bytes: Uint8Array): GifFirstFrame | null {
  const u16 = (at: number) => bytes[at]! | (bytes[at + 1]! << 8);
  const tableBytes = (packed: number) => (packed & 0x80 ? 3 << ((packed & 7) + 1) : 0);
  if (bytes.length < 13) return null;
  const globalTable = bytes.subarray(13, 13 + tableBytes(bytes[10]!));
  let at = 13 + globalTable.length;
  let transparentIndex: number | null = null;
  while (at < bytes.length) {
    const block = bytes[at]!;
    if (block === 0x21) {
      // Extension: a label, then data sub-blocks until a zero length. 0xF9 is the graphic control extension.
      if (bytes[at + 1] === 0xf9 && at + 6 < bytes.length) transparentIndex = bytes[at + 3]! & 1 ? bytes[at + 6]! : null;
      at += 2;
      while (at < bytes.length && bytes[at] !== 0) at += bytes[at]! + 1;
      at += 1;
    } else if (block === 0x2c) {
      if (at + 10 > bytes.length) return null;
      const packed = bytes[at + 9]!;
      const localTable = bytes.subarray(at + 10, at + 10 + tableBytes(packed));
      const palette = localTable.length > 0 ? localTable : globalTable;
      const index = transparentIndex ?? 0;
      // Pillow's palettes start as a grey ramp, so an index past the table's end shows as grey `index`.
      const fill: [number, number, number] =
        3 * index + 2 < palette.length ? [palette[3 * index]!, palette[3 * index + 1]!, palette[3 * index + 2]!] : [index, index, index];
      return { left: u16(at + 1), top: u16(at + 3), width: u16(at + 5), height: u16(at + 7), fill };
    } else {
      return null;
    }
  }
  return null;
}

/** Paints `frame.fill` where Pillow would show it: outside the frame rectangle and at pixels whose alpha is 0. */
export function applyGifFill(rgb: Uint8Array, alpha: Uint8Array | null, width: number, height: number, frame: GifFirstFrame): void {
  const [r, g, b] = frame.fill;
  const right = frame.left + frame.width;
  const bottom = frame.top + frame.height;
  for (let y = 0; y < height; y++) {
    const rowInside = y >= frame.top && y < bottom;
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const inside = rowInside && x >= frame.left && x < right;
      if (inside && (alpha === null || alpha[i] !== 0)) continue;
      rgb[3 * i] = r;
      rgb[3 * i + 1] = g;
      rgb[3 * i + 2] = b;
    }
  }
}
