// Calls that take turns on one model: each starts when the one before it has finished, in the order they took their
// place (Model's calls, LocalEngine's requests).

/** One place in line: wait for it, then call done() when finished (also when failed or aborted). */
export interface Turn {
  /** Resolves when every earlier turn is done, or rejects with the signal's reason as soon as it aborts. */
  wait(signal: AbortSignal): Promise<void>;
  done(): void;
}

export class Turns {
  /** The end of the last turn in line. */
  private tail: Promise<void> = Promise.resolve();

  /** The next place in line. */
  take(): Turn {
    const previous = this.tail;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    this.tail = Promise.all([previous, finished]).then(() => undefined);
    return { wait: (signal) => waitOrAbort(previous, signal), done };
  }
}

/** Resolves when `turn` does, or rejects with the signal's reason as soon as it aborts. */
function waitOrAbort(turn: Promise<void>, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    void turn.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
