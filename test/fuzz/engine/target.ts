// What a fuzz target is: one parser entry point fed untrusted bytes, and the rule for telling its proper refusals
// (our named errors) from findings (any other error, a hang, an unbounded allocation).

import { Xoshiro128StarStar } from '../../../src/generation/rng.js';

/** One parser under fuzzing. `run` returns normally when the parser accepted the input or refused it properly. */
export interface FuzzTarget {
  /** One line for `--list`: what the input bytes are and which entry point reads them. */
  description: string;
  /** Compiled modules (relative to dist/src) whose block coverage guides the fuzzer and is reported. */
  modules: string[];
  /** Feeds one input; throws only for a finding (an error that is not one of the parser's named errors). */
  run(input: Uint8Array): void | Promise<void>;
  /** Tokens the mutator inserts or overwrites with: magic numbers, field names, opcodes. */
  dictionary?: readonly (string | Uint8Array)[];
  /** A structure-aware mutation (keeps lengths, checksums or JSON valid); null when it does not apply. */
  mutate?(input: Uint8Array, rng: Rng, dictionary: readonly Uint8Array[]): Uint8Array | null;
  /** Longest input the mutator produces (default 64 KiB). */
  maxLength?: number;
  /** When the entry point is not present on this branch: why the target does nothing yet. */
  unavailable?(): Promise<string | null>;
}

/** The random choices of the mutators (seeded, so a run can be repeated). */
export class Rng {
  private readonly stream: Xoshiro128StarStar;

  constructor(seed: number) {
    this.stream = Xoshiro128StarStar.fromSeed(seed);
  }

  /** A uniform integer in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : Math.floor(this.stream.nextFloat() * n);
  }

  chance(p: number): boolean {
    return this.stream.nextFloat() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  /** A small number, more often near zero: 1, 2, 4, ... up to `max`. */
  small(max: number): number {
    const limit = 1 << this.below(Math.max(1, Math.floor(Math.log2(Math.max(2, max))) + 1));
    return 1 + this.below(Math.min(limit, max));
  }
}

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * Runs `fn` and swallows the errors that are the parser's proper refusal (instances of `accepted`, and, when given,
 * passing `check`); anything else propagates as a finding.
 */
export async function refusesOnlyWith(
  input: Uint8Array,
  accepted: readonly ErrorClass[],
  fn: () => unknown,
  check: (err: Error) => boolean = () => true,
): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (accepted.some((cls) => err instanceof cls) && check(err as Error)) {
      checkMessage(err as Error, input);
      return;
    }
    throw err;
  }
}

/** Marks a finding that is not an exception of the parser: a broken invariant of its output, or an unhelpful message. */
export class FuzzInvariantError extends Error {
  override readonly name = 'FuzzInvariantError';
}

/**
 * A named error must still say something useful: no "undefined", "NaN" or "[object Object]" from a missed field
 * (unless the input itself holds that text).
 */
function checkMessage(err: Error, input: Uint8Array): void {
  const placeholder = /\bundefined\b|\bNaN\b|\[object Object\]/.exec(err.message);
  if (placeholder && !Buffer.from(input).toString('latin1').includes(placeholder[0])) {
    throw new FuzzInvariantError(`${err.name} message shows "${placeholder[0]}": ${err.message.slice(0, 300)}`, { cause: err });
  }
}

/** Throws a FuzzInvariantError unless `condition` holds. */
export function invariant(condition: boolean, what: string): asserts condition {
  if (!condition) throw new FuzzInvariantError(what);
}
