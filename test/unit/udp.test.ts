/**
 * Pure parts of router/overlay/udp.ts: IPv4 ⇄ uint32 conversion and the DatagramBatch
 * bookkeeping (no sockets; the native socket is tested in test/e2e/udp.test.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DatagramBatch, META_STRIDE, ipv4ToUint32, uint32ToIpv4 } from '../../router/overlay/udp.js';
import { xorshift32 as prng } from '../lib/prng.js';


describe('ipv4ToUint32 / uint32ToIpv4', () => {
  it('converts in host order', () => {
    assert.equal(ipv4ToUint32('127.0.0.1'), 0x7f000001);
    assert.equal(ipv4ToUint32('0.0.0.0'), 0);
    assert.equal(ipv4ToUint32('255.255.255.255'), 0xffffffff);
    assert.equal(ipv4ToUint32('192.168.99.2'), 0xc0a86302);
    assert.equal(uint32ToIpv4(0xc0a86302), '192.168.99.2');
    assert.equal(uint32ToIpv4(0xffffffff), '255.255.255.255');
  });

  it('rejects anything that is not a dotted quad', () => {
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.-4', '::ffff:1.2.3.4', 'fe80::1', ' 1.2.3.4', '1.2.3.4 ', 'a.b.c.d', '1..2.3', '1234.1.1.1']) {
      assert.equal(ipv4ToUint32(bad), undefined, bad);
    }
  });

  it('round-trips random addresses', () => {
    const r = prng(42);
    for (let i = 0; i < 2000; i++) {
      const n = r();
      assert.equal(ipv4ToUint32(uint32ToIpv4(n)), n);
    }
  });
});

describe('DatagramBatch', () => {
  it('reserves aligned, non-overlapping space and records rows in commit order', () => {
    const b = new DatagramBatch(65536, 8);
    const a1 = b.reserve(13);
    const a2 = b.reserve(100);
    const a3 = b.reserve(1);
    assert.deepEqual([a1, a2, a3], [0, 16, 120]);
    // Interleaved construction: the later reservation commits first.
    b.commit(a2, 90, 0x01020304, 6783);
    b.commit(a1, 13, 0x05060708, 1);
    assert.equal(b.count, 2);
    assert.deepEqual([...b.table.subarray(0, 2 * META_STRIDE)], [16, 90, 0x01020304, 6783, 0, 13, 0x05060708, 1]);
  });

  it('refuses a reservation when the slab or the row table is full, and reset frees both', () => {
    const b = new DatagramBatch(65536, 3);
    assert.equal(b.reserve(65536), 0);
    assert.equal(b.reserve(1), -1, 'slab full');
    b.reset();
    assert.equal(b.reserve(10), 0);
    assert.equal(b.reserve(10), 16);
    assert.equal(b.reserve(10), 32);
    assert.equal(b.reserve(10), -1, 'three reservations for three rows, even before any commit');
    b.reset();
    assert.equal(b.count, 0);
    assert.equal(b.reserve(65530), 0);
  });

  it('random reservations never overlap or leave the slab', () => {
    const r = prng(9);
    const b = new DatagramBatch(1 << 17, 64);
    for (let round = 0; round < 200; round++) {
      b.reset();
      const spans: Array<[number, number]> = [];
      for (;;) {
        const len = 1 + (r() % 9000);
        const at = b.reserve(len);
        if (at < 0) break;
        assert.equal(at % 8, 0);
        assert.ok(at + len <= b.slab.length);
        for (const [s, e] of spans) assert.ok(at >= e || at + len <= s, 'overlap');
        spans.push([at, at + len]);
      }
      assert.ok(spans.length >= 1 && spans.length <= 64);
    }
  });

  it('rejects bad sizes', () => {
    assert.throws(() => new DatagramBatch(1000), RangeError);
    assert.throws(() => new DatagramBatch(65536, 0), RangeError);
    assert.throws(() => new DatagramBatch(65536.5), RangeError);
  });
});
