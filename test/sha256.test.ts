// The plain-TypeScript SHA-256 against node:crypto's (and the FIPS 180-4 example digests) on inputs of every length
// around the block boundaries, fed whole and in pieces.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { imageKey, Sha256 } from '../src/sha256.js';

test('the FIPS 180-4 examples', () => {
  assert.equal(new Sha256().update('abc').hex(), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(new Sha256().hex(), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(
    new Sha256().update('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq').hex(),
    '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
  );
});

test('equals node:crypto for lengths 0-200 and 1 MB, whole and in uneven pieces', () => {
  const lengths = [...Array.from({ length: 201 }, (_, i) => i), 1_000_003];
  for (const n of lengths) {
    const data = randomBytes(n);
    const expected = createHash('sha256').update(data).digest('hex');
    assert.equal(new Sha256().update(data).hex(), expected, `length ${n}`);
    const pieces = new Sha256();
    for (let at = 0, step = 1; at < n; at += step, step = (step * 7 + 3) % 97 + 1) pieces.update(data.subarray(at, at + step));
    assert.equal(pieces.hex(), expected, `length ${n} in pieces`);
  }
});

test('an image key covers its size and its pixels', () => {
  const data = new Uint8Array(2 * 3 * 3).fill(7);
  const expected = createHash('sha256').update('2x3:').update(data).digest('hex');
  assert.equal(imageKey({ width: 2, height: 3, data }), expected);
  assert.notEqual(imageKey({ width: 3, height: 2, data }), expected);
});
