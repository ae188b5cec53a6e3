import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  alignedBlocks,
  CidrError,
  contains,
  formatCidr,
  formatIp,
  isAligned,
  largestAlignedBlock,
  overlaps,
  parseAddressCidr,
  parseCidr,
  parseIp,
} from '../../ipam/cidr.js';
import { Prng } from '../../ipam/sim.js';

test('parseIp / formatIp round trip and edge values', () => {
  const table: Array<[string, number]> = [
    ['0.0.0.0', 0],
    ['10.32.0.1', 10 * 2 ** 24 + 32 * 2 ** 16 + 1],
    ['255.255.255.255', 2 ** 32 - 1],
    ['192.168.1.254', 3232236030],
  ];
  for (const [s, n] of table) {
    assert.equal(parseIp(s), n, s);
    assert.equal(formatIp(n), s);
  }
});

test('parseIp rejects malformed text with a one-line CidrError', () => {
  for (const bad of ['', '10.1.2', '10.1.2.3.4', '256.0.0.1', '10.01.0.1', '10.-1.0.1', ' 10.1.2.3', '10.1.2.3 ', 'a.b.c.d', '0x10.0.0.1', '1e1.0.0.1']) {
    assert.throws(() => parseIp(bad), (e: unknown) => e instanceof CidrError && !e.message.includes('\n') && e.message.includes(JSON.stringify(bad)), bad);
  }
});

test('parseCidr table', () => {
  assert.deepEqual(parseCidr('10.32.0.0/12'), { start: parseIp('10.32.0.0'), size: 2 ** 20, prefix: 12 });
  assert.deepEqual(parseCidr('0.0.0.0/0'), { start: 0, size: 2 ** 32, prefix: 0 });
  assert.deepEqual(parseCidr('10.1.2.3/32'), { start: parseIp('10.1.2.3'), size: 1, prefix: 32 });
  assert.equal(formatCidr(parseCidr('10.32.0.0/12')), '10.32.0.0/12');
});

test('parseCidr errors: prefix, missing slash, host bits, bad address', () => {
  assert.throws(() => parseCidr('10.32.0.0/33'), { name: 'CidrError', message: 'invalid CIDR "10.32.0.0/33": prefix must be 0..32' });
  assert.throws(() => parseCidr('10.32.0.0/-1'), /prefix must be 0..32/);
  assert.throws(() => parseCidr('10.32.0.0/'), /prefix must be 0..32/);
  assert.throws(() => parseCidr('10.32.0.0/1x'), /prefix must be 0..32/);
  assert.throws(() => parseCidr('10.32.0.0'), /missing "\/prefix"/);
  assert.throws(() => parseCidr('10.32.0.5/12'), { message: '10.32.0.5/12 is not a network address (did you mean 10.32.0.0/12?)' });
  assert.throws(() => parseCidr('10.320.0.0/12'), /invalid CIDR "10.320.0.0\/12": address/);
  assert.throws(() => parseCidr(undefined as unknown as string), CidrError);
});

test('parseAddressCidr keeps the host part', () => {
  const c = parseAddressCidr('10.32.0.5/12');
  assert.equal(c.addr, parseIp('10.32.0.5'));
  assert.equal(c.start, parseIp('10.32.0.0'));
  assert.equal(c.prefix, 12);
  assert.throws(() => parseAddressCidr('10.32.0.5/40'), CidrError);
});

test('alignedBlocks decomposes any interval into maximal CIDR blocks (property)', () => {
  const rng = new Prng(7);
  for (let i = 0; i < 500; i++) {
    const lo = rng.int(2 ** 20);
    const hi = lo + rng.int(5000);
    const blocks = alignedBlocks(lo, hi);
    let at = lo;
    for (const b of blocks) {
      assert.equal(b.start, at);
      assert.ok(isAligned(b.start, b.size), `${b.start}+${b.size}`);
      assert.equal(b.size, 2 ** (32 - b.prefix));
      at += b.size;
    }
    assert.equal(at, hi);
    // Maximal: no two neighbours of equal size could be merged into an aligned block.
    for (let k = 1; k < blocks.length; k++) {
      const a = blocks[k - 1]!;
      const b = blocks[k]!;
      assert.ok(!(a.size === b.size && isAligned(a.start, a.size * 2)), 'mergeable neighbours');
    }
    const best = largestAlignedBlock(lo, hi);
    if (lo === hi) assert.equal(best, undefined);
    else assert.equal(best!.size, Math.max(...blocks.map((b) => b.size)));
  }
  assert.deepEqual(alignedBlocks(0, 2 ** 32), [{ start: 0, size: 2 ** 32, prefix: 0 }]);
});

test('overlaps / contains / isAligned', () => {
  const a = { start: 0, size: 16 };
  assert.ok(overlaps(a, { start: 15, size: 1 }));
  assert.ok(!overlaps(a, { start: 16, size: 1 }));
  assert.ok(contains(a, { start: 4, size: 12 }));
  assert.ok(!contains(a, { start: 4, size: 13 }));
  assert.ok(isAligned(16, 16));
  assert.ok(!isAligned(8, 16));
  assert.ok(!isAligned(0, 3));
});
