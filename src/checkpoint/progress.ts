// A one-line progress bar for byte transfers: bytes done / total, rate, ETA. It draws only on a TTY (stderr by
// default) and at most ten times a second; on anything else it prints nothing. The line fits the terminal's width.

/** The part of a stream the bar needs (process.stderr satisfies it). */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

export interface ProgressOptions {
  stream?: ProgressStream;
  /** Bytes already done before this run (a resumed download); they do not count towards the rate. */
  initial?: number;
  /** Clock in milliseconds (tests pass a fake one). */
  now?: () => number;
}

const REDRAW_INTERVAL_MS = 100;
const BAR_WIDTH = 24;
const MIN_BAR_WIDTH = 10;
/** The width assumed when the stream does not say. */
const DEFAULT_COLUMNS = 80;

export class ProgressBar {
  private done: number;
  private readonly startDone: number;
  private readonly startedAt: number;
  private lastDrawAt = -Infinity;
  private finished = false;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly active: boolean;

  constructor(private label: string, private readonly total: number, options: ProgressOptions = {}) {
    this.stream = options.stream ?? process.stderr;
    this.now = options.now ?? Date.now;
    this.active = this.stream.isTTY === true;
    this.done = options.initial ?? 0;
    this.startDone = this.done;
    this.startedAt = this.now();
  }

  /** Adds `bytes` to the count and redraws when the last draw is old enough. */
  advance(bytes: number): void {
    this.done += bytes;
    if (this.active && this.now() - this.lastDrawAt >= REDRAW_INTERVAL_MS) this.draw();
  }

  /** Names what the bar now counts (one bar over several steps). */
  relabel(label: string): void {
    this.label = label;
  }

  /** Ends the bar at 100 %: the work is done, even where it needed fewer bytes than the total. */
  complete(): void {
    this.done = Math.max(this.done, this.total);
    this.finish();
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    if (!this.active || this.finished) return;
    this.finished = true;
    this.draw();
    this.stream.write('\n');
  }

  private draw(): void {
    const now = this.now();
    this.lastDrawAt = now;
    const seconds = (now - this.startedAt) / 1000;
    const rate = seconds > 0 ? (this.done - this.startDone) / seconds : 0;
    const fraction = this.total > 0 ? Math.min(1, this.done / this.total) : 1;
    const eta = rate > 0 ? formatDuration((this.total - this.done) / rate) : '--:--';
    const percent = `${(fraction * 100).toFixed(0).padStart(3)}%`;
    const amounts = `${formatBytes(this.done)}/${formatBytes(this.total)}`;
    // Within the width (less the last column, where some terminals wrap): the bar narrows first, then the rate goes,
    // then the amounts, then the label is cut.
    const width = (this.stream.columns ?? DEFAULT_COLUMNS) - 1;
    const choices = [`${percent} ${amounts} ${formatBytes(rate)}/s ETA ${eta}`, `${percent} ${amounts} ETA ${eta}`, `${percent} ETA ${eta}`];
    const figures = choices.find((text) => this.label.length + 4 + MIN_BAR_WIDTH + text.length <= width) ?? choices.at(-1)!;
    const room = width - (this.label.length + 4 + figures.length);
    const label = this.label.slice(0, Math.max(0, this.label.length + Math.min(0, room - MIN_BAR_WIDTH)));
    // On a very narrow terminal, once the label is gone, the bar gives up its last columns too.
    const barWidth = Math.max(3, Math.min(BAR_WIDTH, width - (label.length + 4 + figures.length)));
    const filled = Math.round(fraction * barWidth);
    const line = `${label} [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${figures}`;
    this.stream.write(`\r${line.slice(0, width)}\x1b[K`);
  }
}

/** 1234567 → "1.2 MB" (decimal units, like the hub's file sizes). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Seconds → "m:ss" or "h:mm:ss". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const pad = (n: number) => String(n).padStart(2, '0');
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}
