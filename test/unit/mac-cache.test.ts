import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MacCache, formatMac, readMac, writeMac } from '../../router/overlay/mac-cache.js';
import { mulberry32 } from '../lib/prng.js';


const M1 = 0x0a580a200001;
const M2 = 0x0a580a200002;
const M3 = 0x0a580a200003;
const M4 = 0x0a580a200004;

test('learn reports new, same and moved; lookup follows', () => {
  const c = new MacCache();
  assert.equal(c.lookup(M1), undefined);
  assert.equal(c.learn(M1, 7, 1000), 'new');
  assert.equal(c.size, 1);
  assert.equal(c.lookup(M1), 7);
  assert.equal(c.learn(M1, 7, 1500), 'same');
  assert.equal(c.learn(M1, 9, 1600), 'moved');
  assert.equal(c.lookup(M1), 9);
  assert.equal(c.learn(M1, 9, 1700), 'same');
  assert.equal(c.size, 1);
  assert.deepEqual(c.entries(), [{ mac: '0a:58:0a:20:00:01', peer: 9, lastSeen: 1700 }]);
});

test('when full, the earliest learned MAC is evicted (refreshes do not reorder)', () => {
  const c = new MacCache({ maxEntries: 3 });
  c.learn(M1, 1, 0);
  c.learn(M2, 1, 1);
  c.learn(M3, 1, 2);
  assert.equal(c.learn(M1, 2, 3), 'moved');
  assert.equal(c.learn(M4, 1, 4), 'new');
  assert.equal(c.size, 3);
  assert.equal(c.lookup(M1), undefined);
  assert.equal(c.lookup(M2), 1);
  assert.equal(c.lookup(M4), 1);
  c.learn(M1, 1, 5);
  assert.equal(c.lookup(M2), undefined);
  assert.deepEqual(c.entries().map((e) => e.mac), ['0a:58:0a:20:00:01', '0a:58:0a:20:00:03', '0a:58:0a:20:00:04']);
  assert.throws(() => new MacCache({ maxEntries: 0 }), RangeError);
  assert.throws(() => new MacCache({ maxEntries: 1.5 }), RangeError);
});

test('expire drops entries older than maxAge (boundary kept)', () => {
  const c = new MacCache();
  c.learn(M1, 1, 1000);
  c.learn(M2, 1, 2000);
  c.learn(M3, 2, 3000);
  c.learn(M1, 1, 2500); // a refresh restarts the age
  assert.equal(c.expire(5000, 3000), 0, 'M2 is exactly 3000 ms old: kept');
  assert.equal(c.expire(5001, 3000), 1);
  assert.equal(c.lookup(M2), undefined);
  assert.equal(c.lookup(M1), 1);
  assert.equal(c.size, 2);
  assert.equal(c.expire(6000, 0), 2);
  assert.equal(c.size, 0);
  assert.equal(c.expire(7000, 0), 0);
});

test('deletePeer forgets exactly that peer\'s MACs', () => {
  const c = new MacCache();
  c.learn(M1, 1, 0);
  c.learn(M2, 2, 0);
  c.learn(M3, 1, 0);
  c.learn(M4, 3, 0);
  c.learn(M4, 1, 1); // moved to 1
  assert.equal(c.deletePeer(1), 3);
  assert.deepEqual(c.entries(), [{ mac: '0a:58:0a:20:00:02', peer: 2, lastSeen: 0 }]);
  assert.equal(c.deletePeer(1), 0);
  assert.equal(c.deletePeer(99), 0);
});

test('readMac / writeMac / formatMac agree with Buffer big-endian reads', () => {
  const b = Buffer.from('00ffffffffffff0102030405060000', 'hex');
  assert.equal(readMac(b, 1), 2 ** 48 - 1);
  assert.equal(readMac(b, 7), 0x010203040506);
  assert.equal(formatMac(2 ** 48 - 1), 'ff:ff:ff:ff:ff:ff');
  assert.equal(formatMac(0), '00:00:00:00:00:00');
  assert.equal(formatMac(0x0a580a200001), '0a:58:0a:20:00:01');
  const rnd = mulberry32(5);
  const buf = Buffer.alloc(16);
  for (let i = 0; i < 5000; i++) {
    const mac = Math.floor(rnd() * 2 ** 24) * 2 ** 24 + Math.floor(rnd() * 2 ** 24);
    const off = Math.floor(rnd() * 10);
    buf.fill(0xaa);
    writeMac(buf, off, mac);
    assert.equal(buf.readUIntBE(off, 6), mac);
    assert.equal(readMac(buf, off), mac);
    assert.equal(buf[off + 6], 0xaa, 'writeMac wrote past 6 bytes');
    if (off > 0) assert.equal(buf[off - 1], 0xaa);
    assert.equal(formatMac(mac), buf.subarray(off, off + 6).toString('hex').match(/../g)!.join(':'));
  }
});

test('property: behaves like a reference model under random operations', () => {
  const rnd = mulberry32(77);
  const max = 20;
  const c = new MacCache({ maxEntries: max });
  // reference: insertion-ordered list of [mac, peer, lastSeen]
  let ref: Array<[number, number, number]> = [];
  let now = 0;
  for (let i = 0; i < 20000; i++) {
    now += Math.floor(rnd() * 10);
    const op = rnd();
    const mac = 0x020000000000 + Math.floor(rnd() * 40);
    if (op < 0.7) {
      const peer = 1 + Math.floor(rnd() * 4);
      const e = ref.find((r) => r[0] === mac);
      let want: string;
      if (e) {
        want = e[1] === peer ? 'same' : 'moved';
        e[1] = peer;
        e[2] = now;
      } else {
        want = 'new';
        if (ref.length >= max) ref.shift();
        ref.push([mac, peer, now]);
      }
      assert.equal(c.learn(mac, peer, now), want);
    } else if (op < 0.85) {
      assert.equal(c.lookup(mac), ref.find((r) => r[0] === mac)?.[1]);
    } else if (op < 0.95) {
      const age = Math.floor(rnd() * 200);
      const keep = ref.filter((r) => now - r[2] <= age);
      assert.equal(c.expire(now, age), ref.length - keep.length);
      ref = keep;
    } else {
      const peer = 1 + Math.floor(rnd() * 4);
      const keep = ref.filter((r) => r[1] !== peer);
      assert.equal(c.deletePeer(peer), ref.length - keep.length);
      ref = keep;
    }
    assert.equal(c.size, ref.length);
  }
  assert.deepEqual(
    c.entries(),
    [...ref].sort((x, y) => x[0] - y[0]).map(([mac, peer, lastSeen]) => ({ mac: formatMac(mac), peer, lastSeen })),
  );
});
