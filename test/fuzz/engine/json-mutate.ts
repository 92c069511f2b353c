// Structure-aware mutation of JSON documents: parse, change one node (replace its value by an awkward one, delete
// or duplicate it, add a key from the dictionary, move a subtree elsewhere), serialise again. Inputs that are not
// JSON are left to the byte mutators.

import type { Rng } from './target.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const AWKWARD_VALUES: Json[] = [
  null, true, false, 0, -1, 1, 0.5, -0, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 2 ** 32, 2 ** 31, 4294967295, 18446744073709552000,
  '', ' ', 'a', '\u0000', '\ud800', '../x', 'x'.repeat(300), [], {}, [0], [-1], [1, 1], [2 ** 40, 2 ** 40], { '': null },
];

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

/** One structural mutation of a JSON document, or null when `input` is not JSON. */
export function mutateJson(input: Uint8Array, rng: Rng, dictionary: readonly Uint8Array[]): Uint8Array | null {
  let doc: Json;
  try {
    doc = JSON.parse(textDecoder.decode(input)) as Json;
  } catch {
    return null;
  }
  const words = dictionary.map((d) => textDecoder.decode(d));
  if (rng.chance(0.03)) return textEncoder.encode(nestDeeply(doc, rng));
  const mutated = mutateJsonValue(doc, rng, words);
  const text = rng.chance(0.8) ? JSON.stringify(mutated) : JSON.stringify(mutated, null, rng.pick([1, 2, '\t']));
  return textEncoder.encode(text);
}

const PLACEHOLDER = '\u0000nest\u0000';

/** Puts one node 2 to 16384 arrays or objects deep (a stack overflow in any recursive reader or printer). */
function nestDeeply(doc: Json, rng: Rng): string {
  const root = structuredClone(doc);
  const slots = collectSlots(root);
  const slot = rng.pick(slots.slice(1).length > 0 ? slots.slice(1) : slots);
  const inner = JSON.stringify(slot.value);
  const depth = 2 << rng.below(14);
  const [open, close] = rng.chance(0.7) ? ['[', ']'] : ['{"a":', '}'];
  if (slot.parent === null) return open.repeat(depth) + inner + close.repeat(depth);
  if (Array.isArray(slot.parent)) slot.parent[slot.key as number] = PLACEHOLDER;
  else setKey(slot.parent, slot.key as string, PLACEHOLDER);
  return JSON.stringify(root).replace(JSON.stringify(PLACEHOLDER), () => open.repeat(depth) + inner + close.repeat(depth));
}

/** Mutates a parsed document (deep-copied first); applies 1 to 4 changes. */
export function mutateJsonValue(doc: Json, rng: Rng, words: readonly string[]): Json {
  let root = structuredClone(doc);
  const rounds = 1 + rng.below(4);
  for (let i = 0; i < rounds; i++) root = mutateOnce(root, rng, words);
  return root;
}

interface Slot {
  parent: Json[] | { [key: string]: Json } | null;
  key: string | number;
  value: Json;
}

function mutateOnce(root: Json, rng: Rng, words: readonly string[]): Json {
  const slots = collectSlots(root);
  const slot = rng.pick(slots);
  const replace = (value: Json) => {
    if (slot.parent === null) root = value;
    else if (Array.isArray(slot.parent)) slot.parent[slot.key as number] = value;
    else setKey(slot.parent, slot.key as string, value);
  };
  switch (rng.below(8)) {
    case 0:
    case 1:
      replace(structuredClone(rng.pick(AWKWARD_VALUES)));
      break;
    case 2: // a value from elsewhere in the document
      replace(structuredClone(rng.pick(slots).value));
      break;
    case 3: // a dictionary word as a string or as a key
      if (words.length === 0) break;
      if (isObject(slot.value) && rng.chance(0.6)) setKey(slot.value, rng.pick(words), structuredClone(rng.pick([...AWKWARD_VALUES, rng.pick(slots).value])));
      else replace(rng.pick(words));
      break;
    case 4: // delete
      if (Array.isArray(slot.parent)) slot.parent.splice(slot.key as number, 1);
      else if (slot.parent) delete slot.parent[slot.key as string];
      break;
    case 5: // duplicate an array element or rename a key
      if (Array.isArray(slot.parent)) slot.parent.splice(slot.key as number, 0, structuredClone(slot.value));
      else if (slot.parent) setKey(slot.parent, `${slot.key}${rng.pick(['', '_', '0', '.weight'])}${rng.below(3)}`, structuredClone(slot.value));
      break;
    case 6: // numbers: nudge; strings: grow or cut
      if (typeof slot.value === 'number') replace(slot.value + rng.pick([-1, 1, -(2 ** 32), 2 ** 32, 0.5]));
      else if (typeof slot.value === 'string') replace(rng.chance(0.5) ? slot.value.repeat(1 + rng.below(20)) : slot.value.slice(0, rng.below(slot.value.length + 1)));
      else if (Array.isArray(slot.value)) slot.value.push(structuredClone(rng.pick(slots).value));
      break;
    default: // wrap in an array or an object
      replace(rng.chance(0.5) ? [slot.value] : { [words.length > 0 ? rng.pick(words) : 'x']: slot.value });
  }
  return root;
}

function collectSlots(root: Json): Slot[] {
  const slots: Slot[] = [{ parent: null, key: 0, value: root }];
  const visit = (value: Json) => {
    if (Array.isArray(value)) {
      value.forEach((v, i) => {
        slots.push({ parent: value, key: i, value: v });
        visit(v);
      });
    } else if (isObject(value)) {
      for (const [k, v] of Object.entries(value)) {
        slots.push({ parent: value, key: k, value: v });
        visit(v);
      }
    }
  };
  visit(root);
  return slots;
}

/** Sets an own property, also for "__proto__" (which plain assignment would treat as the prototype). */
function setKey(object: { [key: string]: Json }, key: string, value: Json): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

function isObject(value: Json): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
