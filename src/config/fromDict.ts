// fromDict: turn a JSON object (config.json and friends) into a typed object that has exactly the declared keys.
// Each declared field names its JSON key (by default the property name in snake_case), its type, and either a
// default or that it is required. Wrong types and missing keys throw CheckpointError; values that are valid JSON
// but ask for something the engine cannot run (`oneOf`) throw UnsupportedModelError. Messages name the file and key.

import { CheckpointError, UnsupportedModelError } from '../errors.js';

type Kind = 'integer' | 'number' | 'string' | 'boolean' | 'null' | 'integers' | 'numbers' | 'strings';

export interface Field<T> {
  readonly kind: Kind;
  /** JSON key; defaults to the property name converted to snake_case. */
  readonly key?: string;
  /** Used when the key is absent or null; `undefined` with `required` false means "leave undefined". */
  readonly fallback?: T;
  readonly required: boolean;
  /** Smallest allowed value (numbers only). */
  readonly min?: number;
  /** The only values the engine supports; anything else is an UnsupportedModelError. */
  readonly oneOf?: readonly T[];
  /** Why other values are unsupported (appended to the message). */
  readonly why?: string;
}

export interface FieldOptions<T> {
  key?: string;
  default?: T;
  min?: number;
  oneOf?: readonly T[];
  why?: string;
}

function field<T>(kind: Kind, o: FieldOptions<T> = {}): Field<T> {
  return { kind, key: o.key, fallback: o.default, required: o.default === undefined, min: o.min, oneOf: o.oneOf, why: o.why };
}

/** A safe integer (default minimum: none). */
export const integer = (o?: FieldOptions<number>): Field<number> => field('integer', o);
/** A finite number. */
export const number = (o?: FieldOptions<number>): Field<number> => field('number', o);
export const string = (o?: FieldOptions<string>): Field<string> => field('string', o);
export const boolean = (o?: FieldOptions<boolean>): Field<boolean> => field('boolean', o);
/** An integer or a list of integers, always returned as a list (e.g. `eos_token_id`). */
export const integers = (o?: FieldOptions<number[]>): Field<number[]> => field('integers', o);
/** A number or a list of numbers, always returned as a list (e.g. `image_mean`). */
export const numbers = (o?: FieldOptions<number[]>): Field<number[]> => field('numbers', o);
/** A list of strings (e.g. `layer_types`). */
export const strings = (o?: FieldOptions<string[]>): Field<string[]> => field('strings', o);
/** A key that must be absent or null (a feature the engine does not implement yet). */
export const mustBeNull = (why: string, key?: string): Field<null> =>
  ({ kind: 'null', key, fallback: null, required: false, why });
/** Makes a field optional: absent or null gives `undefined`. */
export function optional<T>(f: Field<T>): Field<T | undefined> {
  return { ...f, required: false, fallback: undefined };
}

export type Schema = Record<string, Field<unknown>>;
export type FromSchema<S extends Schema> = { [K in keyof S]: S[K] extends Field<infer T> ? T : never };

/** Where the dict came from, for messages: the file, and the key path of the dict inside it (e.g. "vision_config"). */
export interface Origin {
  file: string;
  prefix?: string;
}

export function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Reads the declared fields of `raw`; undeclared keys are ignored. */
export function fromDict<S extends Schema>(raw: unknown, schema: S, origin: Origin): FromSchema<S> {
  const dict = asDict(raw, origin);
  const out: Record<string, unknown> = {};
  for (const [prop, f] of Object.entries(schema)) {
    const key = f.key ?? snakeCase(prop);
    out[prop] = readField(dict[key], f, keyPath(origin, key), origin.file);
  }
  return out as FromSchema<S>;
}

/** Checks that `raw` is a JSON object (not null, not an array). */
export function asDict(raw: unknown, origin: Origin): Record<string, unknown> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    const what = origin.prefix ? `"${origin.prefix}"` : 'the file';
    throw new CheckpointError(`${origin.file}: ${what} must be a JSON object, got ${showValue(raw)}`);
  }
  return raw as Record<string, unknown>;
}

export function keyPath(origin: Origin, key: string): string {
  return origin.prefix ? `${origin.prefix}.${key}` : key;
}

function readField(value: unknown, f: Field<unknown>, path: string, file: string): unknown {
  if (value === undefined || value === null) {
    if (f.required) throw new CheckpointError(`${file}: "${path}" is missing; it is required (${expected(f)})`);
    return f.fallback;
  }
  if (f.kind === 'null') {
    throw new UnsupportedModelError(`${file}: "${path}" is ${showValue(value)}, but only null is supported: ${f.why}`);
  }
  const bad = () => new CheckpointError(`${file}: "${path}" must be ${expected(f)}, got ${showValue(value)}`);
  let parsed: unknown;
  switch (f.kind) {
    case 'integer':
      if (!Number.isSafeInteger(value)) throw bad();
      parsed = value;
      break;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw bad();
      parsed = value;
      break;
    case 'string':
      if (typeof value !== 'string') throw bad();
      parsed = value;
      break;
    case 'boolean':
      if (typeof value !== 'boolean') throw bad();
      parsed = value;
      break;
    case 'integers': {
      const list = Array.isArray(value) ? value : [value];
      if (list.length === 0 || !list.every((v) => Number.isSafeInteger(v))) throw bad();
      parsed = list as number[];
      break;
    }
    case 'numbers': {
      const list = Array.isArray(value) ? value : [value];
      if (list.length === 0 || !list.every((v) => typeof v === 'number' && Number.isFinite(v))) throw bad();
      parsed = list as number[];
      break;
    }
    case 'strings':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw bad();
      parsed = value as string[];
      break;
  }
  if (f.min !== undefined) {
    const values = Array.isArray(parsed) ? (parsed as number[]) : [parsed as number];
    if (values.some((v) => v < f.min!)) throw bad();
  }
  if (f.oneOf && !f.oneOf.some((allowed) => sameValue(allowed, parsed))) {
    const list = f.oneOf.map((v) => JSON.stringify(v)).join(', ');
    const because = f.why ? `: ${f.why}` : '';
    throw new UnsupportedModelError(`${file}: "${path}" is ${showValue(value)}; supported: ${list}${because}`);
  }
  return parsed;
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function expected(f: Field<unknown>): string {
  const min = f.min === undefined ? '' : ` ≥ ${f.min}`;
  switch (f.kind) {
    case 'integer': return `an integer${min}`;
    case 'number': return `a number${min}`;
    case 'string': return 'a string';
    case 'boolean': return 'true or false';
    case 'integers': return `an integer or a list of integers${min}`;
    case 'numbers': return `a number or a list of numbers${min}`;
    case 'strings': return 'a list of strings';
    case 'null': return 'null';
  }
}

/** A short rendering of a JSON value for messages. */
export function showValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
