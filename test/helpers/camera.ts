// A video file for Chromium's fake camera (`--use-file-for-fake-video-capture`), shared by the page tests.

import { writeFileSync } from 'node:fs';

/**
 * A 64x48 4:2:0 video for Chromium's fake camera: a grey picture with a white square whose brightness flickers by
 * up to two levels from frame to frame, as a still camera's sensor noise does (too little to count as a change).
 */
export function writeY4m(path: string): void {
  const [width, height] = [64, 48];
  const frames = Array.from({ length: 9 }, (_, i) => {
    const y = Buffer.alloc(width * height, 90 + (i % 3));
    for (let row = 10; row < 30; row++) y.fill(235 - (i % 3), row * width + 20, row * width + 40);
    const chroma = Buffer.alloc((width / 2) * (height / 2), 128);
    return Buffer.concat([Buffer.from('FRAME\n'), y, chroma, chroma]);
  });
  writeFileSync(path, Buffer.concat([Buffer.from(`YUV4MPEG2 W${width} H${height} F30:1 Ip A1:1 C420jpeg\n`), ...frames]));
}
