// A one-line progress bar for byte transfers: bytes done / total, rate, ETA. It draws only on a TTY (stderr by
// default) and at most ten times a second; on anything else it prints nothing.

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

export class ProgressBar {
  private done: number;
  private readonly startDone: number;
  private readonly startedAt: number;
  private lastDrawAt = -Infinity;
  private finished = false;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly active: boolean;

  constructor(private readonly label: string, private readonly total: number, options: ProgressOptions = {}) {
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
    const filled = Math.round(fraction * BAR_WIDTH);
    const eta = rate > 0 ? formatDuration((this.total - this.done) / rate) : '--:--';
    const line = `${this.label} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
      `${formatBytes(this.done)}/${formatBytes(this.total)} ${formatBytes(rate)}/s ETA ${eta}`;
    const width = this.stream.columns ?? 100;
    this.stream.write(`\r${line.length >= width ? line.slice(0, width - 1) : line}\x1b[K`);
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
