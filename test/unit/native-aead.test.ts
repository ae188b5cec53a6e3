import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AEAD_OVERHEAD, OPEN_AUTH, OPEN_MALFORMED, OPEN_REPLAY, Opener, Sealer } from '../../router/crypto/aead.js';
import { NATIVE_PUNT, nativeOpen, nativeOpenCurrent, nativeSeal } from '../../router/overlay/native-aead.js';
import { mulberry32 as prng } from '../lib/prng.js';

const KEY = randomBytes(32);
const HEADER = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);

function cSeal(s: Sealer, plain: Buffer): Buffer {
  const out = Buffer.alloc(plain.length + AEAD_OVERHEAD + 5);
  return out.subarray(0, nativeSeal(s, HEADER, plain, 0, plain.length, out));
}
function jsSeal(s: Sealer, plain: Buffer): Buffer {
  const out = Buffer.alloc(plain.length + AEAD_OVERHEAD);
  return out.subarray(0, s.seal(HEADER, plain, 0, plain.length, out));
}
function open(o: Opener, d: Buffer, native: boolean): Buffer | number {
  const out = Buffer.alloc(Math.max(0, d.length - AEAD_OVERHEAD));
  const r = native ? nativeOpenCurrent(o, d, 0, d.length, out) : o.open(d, 0, d.length, out);
  return r >= 0 ? out.subarray(0, r) : r;
}

test('C seal is byte-identical to JS seal for the same key, epoch and counter', () => {
  const rnd = prng(7);
  for (const n of [0, 1, 63, 64, 1400, 9000]) {
    const plain = Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
    const a = new Sealer(KEY, { epoch: 3, firstSeq: 2 ** 40 + n });
    const b = new Sealer(KEY, { epoch: 3, firstSeq: 2 ** 40 + n });
    assert.deepEqual(cSeal(a, plain), jsSeal(b, plain), `size ${n}`);
    assert.equal(a.seq, b.seq);
  }
});

test('interop: C seal -> JS open, and JS seal -> C open', () => {
  const plain = randomBytes(1400);
  const s1 = new Sealer(KEY), o1 = new Opener(KEY);
  assert.deepEqual(open(o1, cSeal(s1, plain), false), plain);
  const s2 = new Sealer(KEY), o2 = new Opener(KEY);
  assert.deepEqual(open(o2, jsSeal(s2, plain), true), plain);
  assert.equal(o1.stats.ok, 1);
  assert.equal(o2.stats.ok, 1);
});

test('interop across many keys interleaved (more than the C key-context cache holds): C seal -> JS open and back', () => {
  const rnd = prng(19);
  const pairs = Array.from({ length: 21 }, () => {
    const k = randomBytes(32);
    return { k, s: new Sealer(k), o: new Opener(k), s2: new Sealer(k), o2: new Opener(k) };
  });
  for (let i = 0; i < 200; i++) {
    const p = pairs[Math.floor(rnd() * pairs.length)], q = pairs[(pairs.indexOf(p) + 1) % pairs.length];
    const plain = randomBytes(Math.floor(rnd() * 1500));
    const c = cSeal(p.s, plain);
    assert.deepEqual(open(p.o, c, false), plain);
    assert.equal(open(new Opener(q.k), c, true), OPEN_AUTH, 'another key must not open it (C)');
    assert.equal(open(new Opener(q.k), c, false), OPEN_AUTH, 'another key must not open it (JS)');
    assert.deepEqual(open(p.o2, jsSeal(p.s2, plain), true), plain);
  }
});

test('JS and C share one counter: interleaved seals never repeat a nonce', () => {
  const s = new Sealer(KEY);
  const seqs: number[] = [];
  for (let i = 0; i < 6; i++) {
    const d = i % 2 ? cSeal(s, Buffer.from('x')) : jsSeal(s, Buffer.from('x'));
    seqs.push(d.readUInt32BE(12));
  }
  assert.deepEqual(seqs, [0, 1, 2, 3, 4, 5]);
  assert.equal(s.seq, 6);
});

test('native path drops replays (also of datagrams the JS side opened) and counts them in Opener.stats', () => {
  const s = new Sealer(KEY), o = new Opener(KEY);
  const d0 = cSeal(s, Buffer.from('zero')), d1 = cSeal(s, Buffer.from('one'));
  assert.deepEqual(open(o, d0, false), Buffer.from('zero'));
  assert.equal(open(o, d0, true), OPEN_REPLAY, 'C sees the window JS updated');
  assert.deepEqual(open(o, d1, true), Buffer.from('one'));
  assert.equal(open(o, d1, false), OPEN_REPLAY, 'JS sees the window C updated');
  assert.equal(open(o, d1, true), OPEN_REPLAY);
  assert.deepEqual({ ...o.stats }, { ok: 2, replay: 3, auth: 0, malformed: 0, unknownKey: 0 });
  // Too old for the window: far ahead then back.
  const far = new Sealer(KEY, { firstSeq: 5000 });
  assert.equal(typeof open(o, cSeal(far, Buffer.from('far')), true), 'object');
  const old = new Sealer(KEY, { firstSeq: 100 });
  assert.equal(open(o, cSeal(old, Buffer.from('old')), true), OPEN_REPLAY);
});

test('native path drops tampered datagrams (any bit of header, sequence field, ciphertext or tag) as auth', () => {
  const s = new Sealer(KEY), o = new Opener(KEY);
  const d = cSeal(s, randomBytes(100));
  let auth = 0;
  for (const i of [0, 7, 9, 15, 16, 60, d.length - 1]) {
    const t = Buffer.from(d);
    t[i]! ^= 0x10;
    const r = open(o, t, true);
    if (i >= 8 && i < 16 && r === NATIVE_PUNT) continue; // flipped the epoch byte: another epoch
    assert.equal(r, OPEN_AUTH, `byte ${i}`);
    auth++;
  }
  assert.equal(o.stats.auth, auth);
  assert.equal(o.stats.ok, 0);
  // The genuine one still opens: a forgery must not advance the window.
  assert.equal((open(o, d, true) as Buffer).length, 100);
  assert.equal(open(o, d.subarray(0, AEAD_OVERHEAD - 1), true), OPEN_MALFORMED);
  assert.equal(o.stats.malformed, 1);
  const wrongKey = new Opener(randomBytes(32));
  assert.equal(open(wrongKey, d, true), OPEN_AUTH);
});

test('re-key: C punts the next epoch to JS, which promotes it; then C opens the new epoch and replays of the old stay dropped', () => {
  const s = new Sealer(KEY), o = new Opener(KEY);
  const e0 = cSeal(s, Buffer.from('e0'));
  assert.deepEqual(open(o, e0, true), Buffer.from('e0'));
  s.rekey();
  const e1a = cSeal(s, Buffer.from('e1a')), e1b = cSeal(s, Buffer.from('e1b'));
  assert.equal(e1a[8], 1);
  assert.equal(open(o, e1a, true), NATIVE_PUNT);
  const out = Buffer.alloc(64);
  assert.equal(out.subarray(0, nativeOpen(o, e1a, 0, e1a.length, out)).toString(), 'e1a');
  assert.equal(o.epoch, 1);
  assert.deepEqual(open(o, e1b, true), Buffer.from('e1b'));
  assert.equal(open(o, e1a, true), OPEN_REPLAY);
  assert.equal(nativeOpen(o, e0, 0, e0.length, out), OPEN_REPLAY, 'previous epoch via JS keeps its window');
});

test('random interleaving of C/JS seal and open with reordering and duplicates matches the JS-only model', () => {
  const rnd = prng(99);
  const s = new Sealer(KEY), o = new Opener(KEY, 128), model = new Opener(KEY, 128);
  const sent: Buffer[] = [];
  for (let i = 0; i < 2000; i++) {
    if (sent.length === 0 || rnd() < 0.4) sent.push(rnd() < 0.5 ? cSeal(s, Buffer.from(String(i))) : jsSeal(s, Buffer.from(String(i))));
    const d = sent[Math.floor(rnd() * sent.length)]!;
    const a = open(o, d, rnd() < 0.5), b = open(model, d, false);
    assert.deepEqual(a, b, `step ${i}`);
  }
  assert.deepEqual({ ...o.stats }, { ...model.stats });
});

test('bad arguments throw one-line errors, not crashes', () => {
  const s = new Sealer(KEY);
  assert.throws(() => nativeSeal(s, HEADER, Buffer.alloc(10), 0, 10, Buffer.alloc(41)), /too small/);
  assert.throws(() => nativeSeal(s, HEADER, Buffer.alloc(10), 5, 20, Buffer.alloc(100)), /pEnd/);
  const exhausted = new Sealer(KEY, { firstSeq: Number.MAX_SAFE_INTEGER });
  assert.throws(() => nativeSeal(exhausted, HEADER, Buffer.alloc(1), 0, 1, Buffer.alloc(64)), /exhausted/);
});
