// A plot of a process's memory over time, as a self-contained SVG (and a PNG rendered from it by sharp).

import sharp from 'sharp';

export interface RssSeries {
  name: string;
  /** [seconds since the start, MiB] */
  points: [number, number][];
}

export interface RssPlot {
  /** The first is drawn boldest. */
  series: RssSeries[];
  /** The warm-up, shaded: samples before it are not part of the bound. */
  warmupSeconds: number;
  title: string;
  /** A second line under the title (the figures). */
  subtitle: string;
}

const WIDTH = 900;
const HEIGHT = 420;
const MARGIN = { left: 70, right: 20, top: 60, bottom: 50 };
const COLOURS = ['#1f5fbf', '#d9822b', '#3a9a4a'];

export function rssSvg(plot: RssPlot): string {
  const samples = plot.series.flatMap((s) => s.points);
  const tMax = Math.max(1, ...samples.map(([t]) => t));
  const values = samples.map(([, v]) => v);
  const vMin = Math.min(...values, Infinity);
  const vMax = Math.max(...values, -Infinity);
  const yStep = niceStep(Math.max(vMax - vMin, 8) / 5);
  const yLow = Math.max(0, Math.floor((Number.isFinite(vMin) ? vMin : 0) / yStep) * yStep - yStep);
  const yHigh = Math.ceil((Number.isFinite(vMax) ? vMax : 1) / yStep) * yStep + yStep;
  const minutes = tMax >= 120;
  const xStep = niceStep((minutes ? tMax / 60 : tMax) / 8) * (minutes ? 60 : 1);
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (t: number) => MARGIN.left + (t / tMax) * plotW;
  const y = (v: number) => MARGIN.top + plotH - ((v - yLow) / (yHigh - yLow)) * plotH;
  const parts: string[] = [];
  parts.push(`<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`);
  const warm = Math.min(plot.warmupSeconds, tMax);
  parts.push(`<rect x="${x(0)}" y="${MARGIN.top}" width="${x(warm) - x(0)}" height="${plotH}" fill="#eeeeee"/>`);
  if (warm > 0) parts.push(text(x(warm / 2), MARGIN.top + 16, 'warm-up', 'middle', 12, '#777777'));
  for (let v = yLow; v <= yHigh + 1e-9; v += yStep) {
    parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y(v)}" y2="${y(v)}" stroke="#dddddd"/>`);
    parts.push(text(MARGIN.left - 8, y(v) + 4, formatNumber(v), 'end', 12));
  }
  for (let t = 0; t <= tMax + 1e-9; t += xStep) {
    parts.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${MARGIN.top + plotH}" y2="${MARGIN.top + plotH + 5}" stroke="#333333"/>`);
    parts.push(text(x(t), MARGIN.top + plotH + 20, formatNumber(minutes ? t / 60 : t), 'middle', 12));
  }
  parts.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333333"/>`);
  plot.series.forEach((series, i) => {
    const points = series.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    const colour = COLOURS[i % COLOURS.length]!;
    parts.push(`<polyline points="${points}" fill="none" stroke="${colour}" stroke-width="${i === 0 ? 2 : 1.2}"/>`);
    const legendY = MARGIN.top + 16 + 16 * i;
    parts.push(`<line x1="${WIDTH - MARGIN.right - 130}" x2="${WIDTH - MARGIN.right - 110}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="${colour}" stroke-width="2"/>`);
    parts.push(text(WIDTH - MARGIN.right - 104, legendY, series.name, 'start', 12));
  });
  parts.push(text(WIDTH / 2, 24, plot.title, 'middle', 16));
  parts.push(text(WIDTH / 2, 44, plot.subtitle, 'middle', 12, '#444444'));
  parts.push(text(MARGIN.left + plotW / 2, HEIGHT - 10, minutes ? 'minutes' : 'seconds', 'middle', 12));
  parts.push(`<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle" font-family="sans-serif" font-size="12">MiB</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}">\n${parts.join('\n')}\n</svg>\n`;
}

export function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png().toBuffer();
}

function text(x: number, y: number, content: string, anchor: 'start' | 'middle' | 'end', size: number, fill = '#222222'): string {
  const escaped = content.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" text-anchor="${anchor}" font-family="sans-serif" font-size="${size}" fill="${fill}">${escaped}</text>`;
}

/** 1, 2 or 5 times a power of ten, at least `rough`. */
function niceStep(rough: number): number {
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 5, 10]) if (m * power >= rough) return m * power;
  return 10 * power;
}

function formatNumber(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}
