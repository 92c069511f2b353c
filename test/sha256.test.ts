// The plain-TypeScript SHA-256 against node:crypto's (and the FIPS 180-4 example digests) on inputs of every length
// around the block boundaries, fed whole, in pieces and from any offset of any buffer.

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
  // One million 'a': whole, and as 1000 texts of 1000.
  const million = 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0';
  assert.equal(new Sha256().update(new Uint8Array(1_000_000).fill(0x61)).hex(), million);
  const texts = new Sha256();
  for (let i = 0; i < 1000; i++) texts.update('a'.repeat(1000));
  assert.equal(texts.hex(), million);
});

test('equals node:crypto around the block boundaries, split at every offset', () => {
  for (const n of [55, 56, 63, 64, 65, 119, 120, 127, 128, 129]) {
    const data = randomBytes(n);
    const expected = createHash('sha256').update(data).digest('hex');
    for (let cut = 0; cut <= n; cut++) {
      assert.equal(new Sha256().update(data.subarray(0, cut)).update(data.subarray(cut)).hex(), expected, `length ${n} cut at ${cut}`);
    }
  }
});

test('equals node:crypto on bytes at an odd offset of their buffer, and in shared memory', () => {
  const data = randomBytes(10_007);
  const expected = createHash('sha256').update(data).digest('hex');
  const unaligned = new Uint8Array(data.length + 3).subarray(3);
  unaligned.set(data);
  assert.equal(new Sha256().update(unaligned).hex(), expected);
  const shared = new Uint8Array(new SharedArrayBuffer(data.length + 5), 5);
  shared.set(data);
  assert.equal(new Sha256().update(shared).hex(), expected);
  assert.equal(new Sha256().update('größe ✓').hex(), createHash('sha256').update('größe ✓', 'utf8').digest('hex'));
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
