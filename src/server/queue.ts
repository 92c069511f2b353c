// One generation at a time; the others wait in arrival order, up to a limit. A request takes its place in that order
// (`join`) once its body is in, and asks for its turn (`turn`) once its image has been checked: the line is ordered
// by the places, so a request whose image takes longer to check does not lose its turn to one that arrived later.
// A request that is still sending its body holds nothing: it has no place yet. A waiting request whose client goes
// away leaves the line at once.

import { ApiError } from './api-error.js';

interface Waiter {
  number: number;
  grant: () => void;
}

/** A request's place in the arrival order. */
export interface Place {
  /**
   * Waits for this request's turn and returns the function that ends it. Rejects at once with a 429 when the line
   * is full, and with the signal's reason when the signal aborts while waiting.
   */
  turn(signal: AbortSignal): Promise<() => void>;
  /** Gives the place up (a request that failed its checks or whose client left); nothing once it had its turn. */
  leave(): void;
}

export class GenerationQueue {
  private running = false;
  private nextNumber = 0;
  /** Places taken by requests that have not asked for their turn yet (their image is being checked). */
  private readonly preparing = new Set<number>();
  /** Requests waiting for their turn, by place. */
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

  /** Takes the next place in the arrival order. */
  join(): Place {
    const number = this.nextNumber++;
    this.preparing.add(number);
    return {
      turn: (signal) => this.turn(number, signal),
      leave: () => {
        if (this.preparing.delete(number)) this.dispatch();
      },
    };
  }

  private async turn(number: number, signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    this.preparing.delete(number);
    const earlierWaiting = this.waiting.length > 0 && this.waiting[0]!.number < number;
    const mustWait = this.running || earlierWaiting || this.preparingBefore(number);
    if (!mustWait) {
      this.running = true;
    } else if (this.waiting.length < this.maxWaiting) {
      await this.wait(number, signal);
    } else if (this.running || earlierWaiting) {
      this.dispatch();
      throw new ApiError(
        429,
        `the server is busy: one answer is being generated and ${this.waiting.length} requests are waiting; try again later`,
        'rate_limit_error',
        null,
        'queue_full',
        { 'retry-after': String(this.retryAfterSeconds()) },
      );
    } else {
      // The line is full of later places and nothing is generating: go now rather than keep the engine idle.
      this.running = true;
    }
    const started = Date.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const took = Date.now() - started;
      this.averageMs = this.averageMs === 0 ? took : 0.8 * this.averageMs + 0.2 * took;
      this.running = false;
      this.dispatch();
    };
  }

  /** Joins the line at this place's position; resolves when `dispatch` grants the turn. */
  private wait(number: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        number,
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
      const later = this.waiting.findIndex((w) => w.number > number);
      this.waiting.splice(later < 0 ? this.waiting.length : later, 0, waiter);
      this.dispatch();
    });
  }

  /**
   * Starts the first waiting request when nothing is generating, unless a request with an earlier place is still
   * having its image checked: then the engine waits for it (image checks are short and local).
   */
  private dispatch(): void {
    const first = this.waiting[0];
    if (this.running || !first || this.preparingBefore(first.number)) return;
    this.waiting.shift();
    this.running = true;
    first.grant();
  }

  private preparingBefore(number: number): boolean {
    for (const other of this.preparing) if (other < number) return true;
    return false;
  }

  /** Seconds until a place is likely to be free: the average generation time times the requests ahead. */
  private retryAfterSeconds(): number {
    const estimate = Math.ceil((this.averageMs * (this.waiting.length + 1)) / 1000);
    return Math.min(Math.max(estimate, 1), 600);
  }
}
