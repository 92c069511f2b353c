// The coverage feedback of the fuzzer: the counters that instrumented modules (instrument-hooks.ts) increment, read
// and reset after every input. A feature is (counter, hit-count class), as AFL counts edges; an input is kept when it
// shows a feature no earlier input showed.

export interface ModuleCoverage {
  url: string;
  functions: { covered: number; known: number };
  blocks: { covered: number; known: number };
  /** Source offsets (in the compiled module) of the counters that never ran. */
  uncovered: number[];
}

interface ModuleCounters {
  url: string;
  start: number;
  offsets: number[];
  functions: number[];
}

const CAPACITY = 1 << 16;

/** AFL's hit-count classes as bits: 1, 2, 3, 4–7, 8–15, 16–31, 32–127, 128+. */
function classBit(count: number): number {
  if (count <= 3) return 1 << (count - 1);
  if (count < 8) return 8;
  if (count < 16) return 16;
  if (count < 32) return 32;
  return count < 128 ? 64 : 128;
}

export class CounterCoverage {
  private readonly hits = new Uint32Array(CAPACITY);
  /** Per counter, the hit-count classes seen so far (a bit each). */
  private readonly seen = new Uint8Array(CAPACITY);
  private readonly modules: ModuleCounters[] = [];
  private used = 0;
  private features = 0;

  /** Makes the counters reachable for modules as they load (call before importing any target module). */
  install(): void {
    (globalThis as Record<string, unknown>).__fuzzRegister = (url: string, offsets: number[], functions: number[]) => {
      if (this.used + offsets.length > CAPACITY) throw new Error('too many coverage counters for the fuzzer');
      const start = this.used;
      this.used += offsets.length;
      this.modules.push({ url, start, offsets, functions });
      return this.hits.subarray(start, this.used);
    };
  }

  /** Reads and resets the counters; returns how many new features the last input showed (and remembers them). */
  take(): number {
    let added = 0;
    const { hits, seen } = this;
    for (let i = 0; i < this.used; i++) {
      const count = hits[i]!;
      if (count === 0) continue;
      hits[i] = 0;
      const bit = classBit(count);
      if ((seen[i]! & bit) === 0) {
        seen[i]! |= bit;
        added++;
      }
    }
    this.features += added;
    return added;
  }

  get featureCount(): number {
    return this.features;
  }

  summary(): ModuleCoverage[] {
    return this.modules.map((m) => {
      const ran = (i: number) => this.seen[m.start + i] !== 0;
      const uncovered = m.offsets.filter((_, i) => !ran(i));
      return {
        url: m.url,
        functions: { covered: m.functions.filter(ran).length, known: m.functions.length },
        blocks: { covered: m.offsets.length - uncovered.length, known: m.offsets.length },
        uncovered,
      };
    });
  }
}
