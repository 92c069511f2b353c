// One generation at a time; the others wait in arrival order, up to a limit. A waiting request whose client goes
// away leaves the line at once.

import { ApiError } from './api-error.js';

interface Waiter {
  grant: () => void;
}

export class GenerationQueue {
  private running = false;
  private readonly waiting: Waiter[] = [];
  /** Recent generation times (ms), for the Retry-After estimate. */
  private averageMs = 0;

  constructor(readonly maxWaiting: number) {}

  get busy(): boolean {
    return this.running;
  }

  get waitingCount(): number {
    return this.waiting.length;
  }

  /**
   * Waits for this request's turn and returns the function that ends it. Rejects at once with a 429 when the line
   * is full, and with the signal's reason when the signal aborts while waiting.
   */
  async acquire(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.running) {
      if (this.waiting.length >= this.maxWaiting) {
        throw new ApiError(
          429,
          `the server is busy: one answer is being generated and ${this.waiting.length} requests are waiting; try again later`,
          'rate_limit_error',
          null,
          'queue_full',
          { 'retry-after': String(this.retryAfterSeconds()) },
        );
      }
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = {
          grant: () => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const onAbort = () => {
          this.waiting.splice(this.waiting.indexOf(waiter), 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        this.waiting.push(waiter);
      });
    }
    this.running = true;
    const started = Date.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const took = Date.now() - started;
      this.averageMs = this.averageMs === 0 ? took : 0.8 * this.averageMs + 0.2 * took;
      this.running = false;
      const next = this.waiting.shift();
      if (next) {
        this.running = true;
        next.grant();
      }
    };
  }

  /** Seconds until a place is likely to be free: the average generation time times the requests ahead. */
  private retryAfterSeconds(): number {
    const estimate = Math.ceil((this.averageMs * (this.waiting.length + 1)) / 1000);
    return Math.min(Math.max(estimate, 1), 600);
  }
}
