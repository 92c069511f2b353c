// A turn of the event loop on every host: Node's setImmediate (no 1 ms timer floor), else a browser's setTimeout.

/** Resolves after the tasks already queued (I/O, an abort, a message) have had their turn. */
export function nextMacrotask(): Promise<void> {
  const schedule = (globalThis as { setImmediate?: (callback: () => void) => unknown }).setImmediate ?? ((callback: () => void) => setTimeout(callback, 0));
  return new Promise((resolve) => schedule(() => resolve()));
}
