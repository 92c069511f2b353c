// Argument parsing shared by the commands: node:util parseArgs in strict mode, with errors a user can act on.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidRequestError } from '../errors.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parseCommandArgs(command: string, argv: string[], options: OptionSpec, usage: string): Parsed {
  let parsed: { values: object; positionals: string[] };
  try {
    const args = joinNegativeValues(argv, options);
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    const why = (err as Error).message.replace(/\.?\s*To specify a positional argument.*$/s, '');
    throw new InvalidRequestError(`${command}: ${why}\nusage: ${usage}`);
  }
  const values = parsed.values as Parsed['values'];
  refuseBlankValues(values);
  return { values, positionals: parsed.positionals };
}

/**
 * A flag given an empty or blank value (`--video ''`, a variable that expanded to nothing) is refused, whichever
 * command reads it and whenever: every flag of ours that takes a value takes a path, an id, a name, a number or a
 * word from a list, none of them blank.
 */
function refuseBlankValues(values: Parsed['values']): void {
  for (const [name, value] of Object.entries(values)) {
    for (const given of typeof value === 'string' ? [value] : Array.isArray(value) ? value : []) {
      if (given.trim() !== '') continue;
      const got = given === '' ? 'an empty string' : `only whitespace (${JSON.stringify(given)})`;
      throw new InvalidRequestError(`--${name} needs a value, got ${got}`);
    }
  }
}

/**
 * `--max-new-tokens -5` as `--max-new-tokens=-5`: parseArgs takes a value that starts with a dash for an option and
 * calls the argument ambiguous, where the user gave a (negative) number that the range check should answer.
 */
function joinNegativeValues(argv: string[], options: OptionSpec): string[] {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return [...args, ...argv.slice(i)];
    const next = argv[i + 1];
    if (arg.startsWith('--') && options[arg.slice(2)]?.type === 'string' && next !== undefined && /^-\.?\d/.test(next)) {
      args.push(`${arg}=${next}`);
      i++;
    } else {
      args.push(arg);
    }
  }
  return args;
}

export function stringOption(values: Parsed['values'], name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A flag that may be given several times (`multiple: true`), in the order given. */
export function stringsOption(values: Parsed['values'], name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

/** An integer flag's value in plain decimal notation: an optional sign, then digits. */
const DECIMAL_INTEGER = /^[+-]?\d+$/;
/** Any other numeric flag's: an optional sign, digits with an optional fraction (or a fraction alone), an optional exponent. */
const DECIMAL_NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * A numeric flag, in plain decimal notation only: `integer` flags take digits (`--port 8080`, not 8080.0 or 8e3),
 * the others also a fraction and an exponent (`--temperature 0.7`, `1e-3`). Hex, binary and octal forms (0x50,
 * which Number() reads as 80), Infinity and surrounding whitespace are refused. Errors name the flag.
 */
export function numberOption(
  values: Parsed['values'],
  name: string,
  opts: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  const v = Number(raw);
  const kind = opts.integer ? 'a whole number in decimal digits (such as 8)' : 'a decimal number (such as 0.7 or 1e-3)';
  if (!(opts.integer ? DECIMAL_INTEGER : DECIMAL_NUMBER).test(raw) || !Number.isFinite(v)) {
    throw new InvalidRequestError(`--${name} must be ${kind}, got ${JSON.stringify(raw)}`);
  }
  // Past 2^53 a double no longer holds every whole number: 99999999999999999999 would be read as 1e20.
  if (opts.integer && !Number.isSafeInteger(v)) {
    throw new InvalidRequestError(`--${name} must be at most ${Number.MAX_SAFE_INTEGER} in size, got ${raw}`);
  }
  if (opts.min !== undefined && v < opts.min) {
    throw new InvalidRequestError(`--${name} must be ${opts.min === Number.MIN_VALUE ? 'above 0' : `at least ${opts.min}`}, got ${raw}`);
  }
  if (opts.max !== undefined && v > opts.max) throw new InvalidRequestError(`--${name} must be at most ${opts.max}, got ${raw}`);
  return v;
}

export function requireOne(positionals: string[], what: string, usage: string): string {
  if (positionals.length !== 1) {
    throw new InvalidRequestError(`expected exactly one ${what}, got ${positionals.length}\nusage: ${usage}`);
  }
  return positionals[0]!;
}
