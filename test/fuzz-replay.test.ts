// Replays the committed fuzz corpus (test/fuzz/corpus/<target>/): every entry through every target, so that each
// parser also meets the other formats' bytes. Each run must end in acceptance or one of the parser's named errors;
// entries added for fixed findings keep those fixes from regressing.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { COUNTERS, instrument } from './fuzz/engine/instrument.js';
import { loadTarget, TARGET_NAMES } from './fuzz/targets/index.js';
import { repoRoot } from './helpers/fixtures.js';

const corpusRoot = join(repoRoot, 'test', 'fuzz', 'corpus');

function entries(): { target: string; name: string; data: Uint8Array }[] {
  return readdirSync(corpusRoot).flatMap((target) =>
    readdirSync(join(corpusRoot, target)).map((name) => ({ target, name, data: new Uint8Array(readFileSync(join(corpusRoot, target, name))) })),
  );
}

test('every fuzz target has a seed corpus', () => {
  const withSeeds = readdirSync(corpusRoot).filter((t) => readdirSync(join(corpusRoot, t)).length > 0);
  assert.deepEqual(withSeeds.sort(), [...TARGET_NAMES].sort());
});

for (const name of TARGET_NAMES) {
  test(`fuzz target ${name}: every corpus entry is accepted or refused with a named error`, async (t) => {
    const target = await loadTarget(name);
    const unavailable = (await target.unavailable?.()) ?? null;
    if (unavailable !== null) {
      t.diagnostic(`not replayed: ${unavailable}`);
      return;
    }
    const failures: string[] = [];
    for (const entry of entries()) {
      try {
        await target.run(entry.data);
      } catch (err) {
        failures.push(`${entry.target}/${entry.name}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
      }
    }
    assert.deepEqual(failures, []);
  });
}

test('the fuzzer instrumentation counts each function and branch arm, and keeps every line where it was', () => {
  const source = [
    'function pick(a, b) {',
    '  if (a) return b ? 1 : 2;',
    '  for (const x of [1, 2, 3]) b = b || x;',
    '  return b;',
    '}',
  ].join('\n');
  const { code, sites } = instrument(source, 'pick.js');
  assert.equal(code.split('\n').length, 5);
  const hits = new Uint32Array(sites.length);
  const pick = new Function(COUNTERS, `${code}\nreturn pick;`)(hits) as (a: unknown, b: unknown) => unknown;
  assert.equal(pick(true, false), 2);
  assert.equal(pick(false, 0), 1);
  // Sites in source order of their insertion: function, then-arm, `?` true arm, `?` false arm, implicit else,
  // loop body, right side of `||`.
  const atOffset = (text: string) => sites.findIndex((s) => s.offset === source.indexOf(text));
  assert.equal(hits[sites.findIndex((s) => s.isFunction)], 2);
  assert.equal(hits[atOffset('return b ?')], 1);
  assert.equal(hits[atOffset('1 : 2')], 0);
  assert.equal(hits[atOffset('2;')], 1);
  assert.equal(hits[atOffset('b = b || x')], 3);
  assert.equal(hits[atOffset('x;')], 1);
});
