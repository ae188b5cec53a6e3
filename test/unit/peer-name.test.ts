import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BROADCAST_PEER_NUM,
  MAX_PEER_NUM,
  PeerNameError,
  isPeerName,
  numToPeerName,
  parsePeerName,
  peerNameToNum,
  randomPeerName,
} from '../../router/mesh/peer-name.js';
import { mulberry32 } from '../lib/prng.js';


test('parsePeerName canonicalises case', () => {
  assert.equal(parsePeerName('8A:2b:3C:4d:5E:6f'), '8a:2b:3c:4d:5e:6f');
  assert.equal(parsePeerName('00:00:00:00:00:00'), '00:00:00:00:00:00');
  assert.equal(parsePeerName('ff:ff:ff:ff:ff:ff'), 'ff:ff:ff:ff:ff:ff');
});

test('parsePeerName rejects malformed names with a clear message', () => {
  const bad = [
    '', '8a:2b:3c:4d:5e', '8a:2b:3c:4d:5e:6f:70', '8a-2b-3c-4d-5e-6f', '8a2b3c4d5e6f', ' 8a:2b:3c:4d:5e:6f',
    '8a:2b:3c:4d:5e:6f ', '8a:2b:3c:4d:5e:6g', '8:2b:3c:4d:5e:6f0', '8a:2b:3c:4d:5e:6f\n', '8a::2b:3c:4d:5e:6f',
  ];
  for (const s of bad) {
    assert.throws(() => parsePeerName(s), (e: unknown) => {
      assert.ok(e instanceof PeerNameError, `${s}: ${String(e)}`);
      assert.equal(e.message, `invalid peer name ${JSON.stringify(s)}: want 6 hex bytes like 8a:2b:3c:4d:5e:6f`);
      return true;
    });
  }
  assert.throws(() => parsePeerName(42 as unknown as string), PeerNameError);
  assert.throws(() => parsePeerName(undefined as unknown as string), PeerNameError);
});

test('isPeerName accepts only canonical names', () => {
  assert.equal(isPeerName('8a:2b:3c:4d:5e:6f'), true);
  assert.equal(isPeerName('8A:2b:3c:4d:5e:6f'), false);
  assert.equal(isPeerName('8a:2b:3c:4d:5e'), false);
  assert.equal(isPeerName(null), false);
  assert.equal(isPeerName(0x8a2b3c4d5e6f), false);
  assert.equal(isPeerName({}), false);
});

test('randomPeerName is locally administered unicast, parseable and varied', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const n = randomPeerName();
    assert.equal(parsePeerName(n), n);
    assert.ok(isPeerName(n));
    const first = parseInt(n.slice(0, 2), 16);
    assert.equal(first & 0x02, 0x02, n);
    assert.equal(first & 0x01, 0, n);
    assert.notEqual(peerNameToNum(n), BROADCAST_PEER_NUM);
    seen.add(n);
  }
  assert.ok(seen.size > 1990, `only ${seen.size} distinct names out of 2000`);
});

test('peerNameToNum / numToPeerName round-trip at the edges', () => {
  assert.equal(peerNameToNum('00:00:00:00:00:00'), 0);
  assert.equal(peerNameToNum('00:00:00:00:00:01'), 1);
  assert.equal(peerNameToNum('01:00:00:00:00:00'), 2 ** 40);
  assert.equal(peerNameToNum('ff:ff:ff:ff:ff:ff'), 2 ** 48 - 1);
  assert.equal(peerNameToNum('8A:2B:3C:4D:5E:6F'), 0x8a2b3c4d5e6f);
  assert.equal(numToPeerName(0), '00:00:00:00:00:00');
  assert.equal(numToPeerName(MAX_PEER_NUM), 'ff:ff:ff:ff:ff:ff');
  assert.equal(numToPeerName(0x8a2b3c4d5e6f), '8a:2b:3c:4d:5e:6f');
  assert.equal(numToPeerName(0x0a), '00:00:00:00:00:0a');
});

test('numToPeerName rejects out-of-range and non-integer numbers', () => {
  for (const n of [-1, 2 ** 48, 1.5, NaN, Infinity, 2 ** 53]) {
    assert.throws(() => numToPeerName(n), PeerNameError, String(n));
  }
  assert.throws(() => peerNameToNum('zz:00:00:00:00:00'), PeerNameError);
});

test('property: numeric and string forms are inverse and order-preserving', () => {
  const rnd = mulberry32(7);
  let prevNum = -1;
  let prevName = '';
  const nums: number[] = [];
  for (let i = 0; i < 3000; i++) nums.push(Math.floor(rnd() * 2 ** 24) * 2 ** 24 + Math.floor(rnd() * 2 ** 24));
  nums.sort((a, b) => a - b);
  for (const n of nums) {
    const s = numToPeerName(n);
    assert.equal(peerNameToNum(s), n);
    assert.equal(numToPeerName(peerNameToNum(s.toUpperCase())), s);
    if (n > prevNum) assert.ok(s > prevName, `${s} should sort after ${prevName}`);
    prevNum = n;
    prevName = s;
  }
});
