import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, randomBytes } from 'node:crypto';
import {
  AEAD_OVERHEAD, AeadError, DEFAULT_REKEY_AFTER, MAX_SEQ, OPEN_AUTH, OPEN_MALFORMED, OPEN_REPLAY, OPEN_UNKNOWN_KEY,
  Opener, SEQ_BYTES, Sealer, TAG_BYTES, openErrorKind,
} from '../../router/crypto/aead.js';
import { deriveSessionKeys, nextEpochKey } from '../../router/crypto/keys.js';
import { mulberry32 as prng } from '../lib/prng.js';


const KEY = Buffer.alloc(32, 0x42);
const HEADER = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04]);

function seal(s: Sealer, plain: Buffer, header = HEADER): Buffer {
  const out = Buffer.alloc(plain.length + AEAD_OVERHEAD + 7, 0xee);
  const n = s.seal(header, plain, 0, plain.length, out);
  return out.subarray(0, n);
}

test('constants describe the layout', () => {
  assert.equal(SEQ_BYTES, 8);
  assert.equal(TAG_BYTES, 16);
  assert.equal(AEAD_OVERHEAD, 32);
  assert.equal(DEFAULT_REKEY_AFTER, 2 ** 48);
});

test('round trip for several sizes; header and sequence field in clear, payload not', () => {
  const s = new Sealer(KEY);
  const o = new Opener(KEY);
  const out = Buffer.alloc(10000);
  let i = 0;
  for (const size of [0, 1, 15, 16, 64, 1400, 1500, 9000]) {
    const plain = randomBytes(size);
    const wire = seal(s, plain);
    assert.equal(wire.length, size + 32);
    assert.deepEqual(wire.subarray(0, 8), HEADER);
    assert.equal(wire.readUInt32BE(8), 0, 'epoch 0, high counter bits 0');
    assert.equal(wire.readUInt32BE(12), i++);
    if (size >= 16) assert.equal(wire.indexOf(plain.subarray(0, 16)), -1, 'plaintext visible on the wire');
    const n = o.open(wire, 0, wire.length, out);
    assert.equal(n, size);
    assert.deepEqual(out.subarray(0, n), plain);
  }
  assert.equal(s.seq, 8);
  assert.equal(o.stats.ok, 8);
  assert.equal(o.lastSequence, 7);
});

test('wire format is standard ChaCha20-Poly1305 IETF: nonce = 4 zero bytes || sequence field, AD = first 16 bytes', () => {
  // Cross-check against Node's OpenSSL implementation, independent of libsodium.
  const s = new Sealer(KEY, { firstSeq: 2 ** 40 + 3 });
  const plain = Buffer.from('the quick brown fox');
  const wire = seal(s, plain);
  assert.deepEqual(wire.subarray(8, 16), Buffer.from([0, 0, 0x01, 0, 0, 0, 0, 3]));
  const nonce = Buffer.concat([Buffer.alloc(4), wire.subarray(8, 16)]);
  const d = createDecipheriv('chacha20-poly1305', KEY, nonce, { authTagLength: 16 });
  d.setAAD(wire.subarray(0, 16), { plaintextLength: plain.length });
  d.setAuthTag(wire.subarray(wire.length - 16));
  const pt = Buffer.concat([d.update(wire.subarray(16, wire.length - 16)), d.final()]);
  assert.deepEqual(pt, plain);
});

test('a flipped bit anywhere (header, sequence, ciphertext, tag) is rejected and counted; the genuine datagram still opens', () => {
  const s = new Sealer(KEY);
  const o = new Opener(KEY);
  const out = Buffer.alloc(2000);
  const wire = seal(s, randomBytes(100));
  let auth = 0;
  let unknown = 0;
  let malformed = 0;
  for (let pos = 0; pos < wire.length; pos++) {
    for (const bit of [0x01, 0x80]) {
      const t = Buffer.from(wire);
      t[pos]! ^= bit;
      const r = o.open(t, 0, t.length, out);
      if (pos === 8) {
        // The epoch byte: 0 -> 1 is the "next" epoch (tag fails), anything else is unknown.
        assert.equal(r, t[8] === 1 ? OPEN_AUTH : OPEN_UNKNOWN_KEY, `epoch byte bit ${bit}`);
        if (r === OPEN_AUTH) auth++; else unknown++;
      } else if (pos === 9 && bit === 0x80) {
        // Sets counter bit 55: beyond 2^53, rejected before any crypto.
        assert.equal(r, OPEN_MALFORMED, 'counter bit 55');
        malformed++;
      } else {
        assert.equal(r, OPEN_AUTH, `byte ${pos} bit ${bit}`);
        auth++;
      }
    }
  }
  assert.equal(o.stats.auth, auth);
  assert.equal(o.stats.unknownKey, unknown);
  assert.equal(o.stats.malformed, malformed);
  assert.equal(auth + unknown + malformed, wire.length * 2);
  assert.equal(o.stats.ok, 0);
  assert.equal(o.epoch, 0, 'a forgery must not advance the key epoch');
  assert.equal(o.open(wire, 0, wire.length, out), 100, 'forgeries must not poison the replay window');
});

test('truncated or extended datagrams are rejected', () => {
  const s = new Sealer(KEY);
  const o = new Opener(KEY);
  const out = Buffer.alloc(2000);
  const wire = seal(s, randomBytes(50));
  assert.equal(o.open(wire, 0, wire.length - 1, out), OPEN_AUTH);
  assert.equal(o.open(Buffer.concat([wire, Buffer.from([0])]), 0, wire.length + 1, out), OPEN_AUTH);
  assert.equal(o.open(wire, 0, 31, out), OPEN_MALFORMED);
  assert.equal(o.open(wire, 0, 0, out), OPEN_MALFORMED);
  assert.equal(o.open(wire, 5, 4, out), OPEN_MALFORMED);
  assert.equal(o.open(wire, -1, wire.length, out), OPEN_MALFORMED);
  assert.equal(o.open(wire, 0, wire.length + 1, out), OPEN_MALFORMED);
  assert.equal(o.open(wire, 0, wire.length, Buffer.alloc(49)), OPEN_MALFORMED, 'output too small');
  assert.equal(o.stats.malformed, 6);
  assert.equal(o.stats.auth, 2);
  assert.equal(o.open(wire, 0, wire.length, out), 50);
});

test('a datagram at an offset inside a larger buffer opens', () => {
  const s = new Sealer(KEY);
  const o = new Opener(KEY);
  const plain = randomBytes(300);
  const wire = seal(s, plain);
  const big = Buffer.concat([randomBytes(13), wire, randomBytes(9)]);
  const out = Buffer.alloc(400);
  assert.equal(o.open(big, 13, 13 + wire.length, out), 300);
  assert.deepEqual(out.subarray(0, 300), plain);
});

test('replays are rejected and counted; reordering within the window is fine; too old is a replay', () => {
  const s = new Sealer(KEY);
  const o = new Opener(KEY, 64); // 32-datagram window
  const out = Buffer.alloc(100);
  const d = Array.from({ length: 60 }, (_, i) => seal(s, Buffer.from([i])));
  assert.equal(o.open(d[10]!, 0, d[10]!.length, out), 1);
  assert.equal(o.open(d[10]!, 0, d[10]!.length, out), OPEN_REPLAY);
  assert.equal(o.open(d[3]!, 0, d[3]!.length, out), 1, 'older but inside the window');
  assert.equal(o.open(d[50]!, 0, d[50]!.length, out), 1);
  assert.equal(o.open(d[19]!, 0, d[19]!.length, out), 1, '19 + 32 > 50: oldest inside the window');
  assert.equal(o.open(d[18]!, 0, d[18]!.length, out), OPEN_REPLAY, '18 + 32 <= 50: too old');
  assert.equal(o.open(d[3]!, 0, d[3]!.length, out), OPEN_REPLAY, 'too old now');
  assert.equal(o.open(d[49]!, 0, d[49]!.length, out), 1);
  assert.equal(o.stats.replay, 3);
  assert.equal(o.stats.ok, 5);
});

test('wrong key, and a datagram reflected back at its sender, fail authentication', () => {
  const out = Buffer.alloc(100);
  const wire = seal(new Sealer(KEY), Buffer.from('hello'));
  const other = new Opener(Buffer.alloc(32, 0x43));
  assert.equal(other.open(wire, 0, wire.length, out), OPEN_AUTH);
  assert.equal(other.stats.auth, 1);

  const a = deriveSessionKeys({ passwordKey: KEY, localMaterial: Buffer.alloc(32, 1), remoteMaterial: Buffer.alloc(32, 2), localName: 'a', remoteName: 'b' });
  const b = deriveSessionKeys({ passwordKey: KEY, localMaterial: Buffer.alloc(32, 2), remoteMaterial: Buffer.alloc(32, 1), localName: 'b', remoteName: 'a' });
  const fromA = seal(new Sealer(a.sendKey), Buffer.from('to b'));
  assert.equal(new Opener(b.recvKey).open(fromA, 0, fromA.length, out), 4);
  assert.equal(new Opener(a.recvKey).open(fromA, 0, fromA.length, out), OPEN_AUTH, 'reflection');
});

test('in-place sealing with the plaintext already at offset 16 of out', () => {
  const plain = randomBytes(200);
  const buf = Buffer.alloc(232);
  plain.copy(buf, 16);
  const n = new Sealer(KEY).seal(HEADER, buf, 16, 216, buf);
  assert.equal(n, 232);
  const out = Buffer.alloc(200);
  assert.equal(new Opener(KEY).open(buf, 0, n, out), 200);
  assert.deepEqual(out, plain);
  assert.throws(() => new Sealer(KEY).seal(HEADER, buf, 0, 100, buf), /in-place/);
});

test('sealer argument errors are AeadErrors with clear messages', () => {
  const s = new Sealer(KEY);
  const p = Buffer.alloc(10);
  assert.throws(() => s.seal(Buffer.alloc(7), p, 0, 10, Buffer.alloc(100)), /header must be 8 bytes/);
  assert.throws(() => s.seal(HEADER, p, 0, 10, Buffer.alloc(41)), /too small for 42-byte datagram/);
  assert.throws(() => s.seal(HEADER, p, 5, 4, Buffer.alloc(100)), AeadError);
  assert.throws(() => s.seal(HEADER, p, 0, 11, Buffer.alloc(100)), AeadError);
  assert.equal(s.seq, 0, 'failed calls do not consume a counter value');
  assert.throws(() => new Sealer(Buffer.alloc(16)), /must be 32 bytes/);
  assert.throws(() => new Opener(Buffer.alloc(33)), AeadError);
  assert.throws(() => new Sealer(KEY, { epoch: 256 }), /epoch/);
  assert.throws(() => new Sealer(KEY, { rekeyAfter: 0 }), /rekeyAfter/);
  assert.throws(() => new Sealer(KEY, { firstSeq: -1 }), /firstSeq/);
  assert.throws(() => new Opener(KEY, 100), RangeError);
});

test('needsRekey() after the threshold; the counter never passes 2^53 - 1', () => {
  const s = new Sealer(KEY, { rekeyAfter: 3 });
  const p = Buffer.alloc(1);
  const out = Buffer.alloc(64);
  for (let i = 0; i < 3; i++) {
    assert.equal(s.needsRekey(), false);
    s.seal(HEADER, p, 0, 1, out);
  }
  assert.equal(s.needsRekey(), true);
  s.rekey();
  assert.equal(s.needsRekey(), false);
  assert.equal(s.seq, 0);
  assert.equal(s.epoch, 1);

  const last = new Sealer(KEY, { firstSeq: MAX_SEQ - 1 });
  assert.equal(last.needsRekey(), true);
  const n = last.seal(HEADER, p, 0, 1, out);
  const o = new Opener(KEY);
  assert.equal(o.open(out, 0, n, Buffer.alloc(8)), 1, 'the last usable counter, 2^53 - 2, opens');
  assert.equal(o.lastSequence, MAX_SEQ - 1);
  assert.throws(() => last.seal(HEADER, p, 0, 1, out), /exhausted/);
});

test('a forged counter beyond 2^53 is malformed, not a replay', () => {
  const wire = seal(new Sealer(KEY), Buffer.from('x'));
  wire.writeUInt32BE(0x00ffffff, 8);
  const o = new Opener(KEY);
  assert.equal(o.open(wire, 0, wire.length, Buffer.alloc(8)), OPEN_MALFORMED);
  assert.equal(o.stats.malformed, 1);
});

test('key rotation: next epoch is picked up, previous epoch still accepted, older and farther epochs are unknown', () => {
  const s = new Sealer(KEY);
  const o = new Opener(KEY);
  const out = Buffer.alloc(64);
  const open = (w: Buffer) => o.open(w, 0, w.length, out);
  const e0a = seal(s, Buffer.from('e0a'));
  const e0late = seal(s, Buffer.from('e0late'));
  assert.equal(open(e0a), 3);
  s.rekey();
  assert.equal(s.epoch, 1);
  const e1 = seal(s, Buffer.from('e1'));
  assert.equal(e1[8], 1, 'epoch byte on the wire');
  assert.equal(e1.readUInt32BE(12), 0, 'counter restarts');
  assert.equal(open(e1), 2);
  assert.equal(o.epoch, 1);
  assert.equal(open(e0late), 6, 'in-flight datagram of the previous epoch');
  assert.equal(open(e0late), OPEN_REPLAY, 'previous epoch keeps its replay window');
  assert.equal(open(e1), OPEN_REPLAY);
  s.rekey();
  s.rekey();
  const e3 = seal(s, Buffer.from('e3'));
  assert.equal(open(e3), OPEN_UNKNOWN_KEY, 'two epochs ahead is unknown');
  const s2 = new Sealer(nextEpochKey(nextEpochKey(KEY)), { epoch: 2 });
  assert.equal(open(seal(s2, Buffer.from('e2'))), 2);
  assert.equal(o.epoch, 2);
  assert.equal(open(e0a), OPEN_UNKNOWN_KEY, 'two epochs back is gone');
  assert.equal(open(e3), 2, 'now e3 is next');
  assert.equal(o.stats.unknownKey, 2);
});

test('a datagram claiming the next epoch but sealed with the current key fails and does not rotate', () => {
  const wire = seal(new Sealer(KEY), Buffer.from('x'));
  wire[8] = 1;
  const o = new Opener(KEY);
  assert.equal(o.open(wire, 0, wire.length, Buffer.alloc(8)), OPEN_AUTH);
  assert.equal(o.epoch, 0);
});

test('epochs wrap mod 256 over 300 re-keys', () => {
  const s = new Sealer(KEY);
  const o = new Opener(KEY);
  const out = Buffer.alloc(64);
  for (let i = 0; i < 300; i++) {
    const w = seal(s, Buffer.from([i & 0xff]));
    assert.equal(w[8], i & 0xff);
    assert.equal(o.open(w, 0, w.length, out), 1, `epoch step ${i}`);
    assert.equal(out[0], i & 0xff);
    s.rekey();
  }
  assert.equal(o.epoch, 299 & 0xff);
});

test('seeded random traffic: reordered and duplicated within the window, every datagram delivered exactly once', () => {
  const rnd = prng(7);
  const s = new Sealer(KEY);
  const o = new Opener(KEY, 256);
  const out = Buffer.alloc(2000);
  const wires: Buffer[] = [];
  const plains: Buffer[] = [];
  for (let i = 0; i < 3000; i++) {
    const p = randomBytes(Math.floor(rnd() * 1400));
    plains.push(p);
    wires.push(seal(s, p));
  }
  // Shuffle within blocks of 100 (well inside the 224-datagram window), duplicate 10%.
  const order: number[] = [];
  for (let b = 0; b < 3000; b += 100) {
    const block = Array.from({ length: 100 }, (_, i) => b + i);
    for (let i = block.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [block[i], block[j]] = [block[j]!, block[i]!];
    }
    for (const x of block) {
      order.push(x);
      if (rnd() < 0.1) order.push(x);
    }
  }
  const delivered = new Set<number>();
  for (const x of order) {
    const n = o.open(wires[x]!, 0, wires[x]!.length, out);
    if (n >= 0) {
      assert.ok(!delivered.has(x), `delivered twice: ${x}`);
      delivered.add(x);
      assert.deepEqual(out.subarray(0, n), plains[x]);
    } else {
      assert.equal(n, OPEN_REPLAY);
      assert.ok(delivered.has(x), `dropped a fresh datagram ${x}`);
    }
  }
  assert.equal(delivered.size, 3000);
  assert.equal(o.stats.replay, order.length - 3000);
});

test('openErrorKind names the codes', () => {
  assert.equal(openErrorKind(OPEN_REPLAY), 'replay');
  assert.equal(openErrorKind(OPEN_AUTH), 'auth');
  assert.equal(openErrorKind(OPEN_MALFORMED), 'malformed');
  assert.equal(openErrorKind(OPEN_UNKNOWN_KEY), 'unknown-key');
  assert.equal(openErrorKind(0), null);
  assert.equal(openErrorKind(1400), null);
});
