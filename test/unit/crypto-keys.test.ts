import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, scryptSync } from 'node:crypto';
import {
  KEY_BYTES, KeyDerivationError, PASSWORD_SALT_PREFIX, deriveSessionKeys, handshakePrologue, nextEpochKey, passwordKey, randomKeyMaterial,
} from '../../router/crypto/keys.js';

/** RFC 5869 HKDF-SHA256 for one output block, written out from the RFC for cross-checking. */
function hkdf32(ikm: Buffer, info: string): Buffer {
  const prk = createHmac('sha256', Buffer.alloc(32)).update(ikm).digest();
  return createHmac('sha256', prk).update(Buffer.concat([Buffer.from(info), Buffer.from([1])])).digest();
}

const NET = { ipamRange: '10.32.0.0/12' };

test('passwordKey: scrypt with the per-network salt and N=2^15, r=8, p=1; deterministic; string == its UTF-8 bytes', async () => {
  const k1 = await passwordKey('correct horse', NET);
  assert.equal(k1.length, KEY_BYTES);
  assert.equal(PASSWORD_SALT_PREFIX, 'tsweave-v2 network password');
  // The salt written out independently: SHA-256(prefix ‖ 0 ‖ name ‖ 0 ‖ range).
  const salt = createHash('sha256').update(Buffer.concat([Buffer.from('tsweave-v2 network password'), Buffer.from([0, 0]), Buffer.from('10.32.0.0/12')])).digest();
  const expected = scryptSync('correct horse', salt, 32, { N: 32768, r: 8, p: 1, maxmem: 64 << 20 });
  assert.deepEqual(k1, expected);
  assert.deepEqual(await passwordKey(Buffer.from('correct horse', 'utf8'), NET), k1);
  assert.deepEqual(await passwordKey('pässwörd', NET), await passwordKey(Buffer.from('pässwörd', 'utf8'), NET));
  assert.notDeepEqual(await passwordKey('correct horse ', NET), k1, 'no trimming');
  assert.notDeepEqual(await passwordKey('Correct horse', NET), k1);
  // The cost parameters (N=2^15, r=8, p=1) are proven by the equality with scryptSync above, not by a clock.
});

test('passwordKey: the same password gives a different key in another network (range or name), so no shared dictionary', async () => {
  const k = await passwordKey('correct horse', NET);
  assert.notDeepEqual(await passwordKey('correct horse', { ipamRange: '10.40.0.0/16' }), k);
  assert.notDeepEqual(await passwordKey('correct horse', { ipamRange: '10.32.0.0/12', name: 'prod' }), k);
  assert.deepEqual(await passwordKey('correct horse', { ipamRange: '10.32.0.0/12', name: '' }), k, 'absent name == empty name');
  // NUL separation: moving bytes between name and range changes the key.
  assert.notDeepEqual(await passwordKey('x', { ipamRange: 'b', name: 'a' }), await passwordKey('x', { ipamRange: '', name: 'a\0b' }));
});

test('passwordKey rejects an empty password', async () => {
  await assert.rejects(passwordKey('', NET), KeyDerivationError);
  await assert.rejects(passwordKey(Buffer.alloc(0), NET), /empty/);
});

test('randomKeyMaterial returns fresh 32-byte values', () => {
  const a = randomKeyMaterial();
  const b = randomKeyMaterial();
  assert.equal(a.length, 32);
  assert.notDeepEqual(a, b);
});

const pwA = Buffer.alloc(32, 0xa1);
const pwB = Buffer.alloc(32, 0xb2);
const matA = Buffer.alloc(32, 0x11);
const matB = Buffer.alloc(32, 0x22);
const nameA = '02:00:00:00:00:0a';
const nameB = '02:00:00:00:00:0b';

function both(pw1: Buffer, pw2: Buffer, mA: Buffer = matA, mB: Buffer = matB) {
  const a = deriveSessionKeys({ passwordKey: pw1, localMaterial: mA, remoteMaterial: mB, localName: nameA, remoteName: nameB });
  const b = deriveSessionKeys({ passwordKey: pw2, localMaterial: mB, remoteMaterial: mA, localName: nameB, remoteName: nameA });
  return { a, b };
}

test('session keys: A.send == B.recv, A.recv == B.send, directions differ', () => {
  const { a, b } = both(pwA, pwA);
  assert.equal(a.sendKey.length, 32);
  assert.deepEqual(a.sendKey, b.recvKey);
  assert.deepEqual(a.recvKey, b.sendKey);
  assert.notDeepEqual(a.sendKey, a.recvKey);
});

test('session keys follow the documented HKDF construction (ikm = pw || sorted materials, info names the direction)', () => {
  const { a } = both(pwA, pwA, matB, matA); // A's material sorts after B's here
  const ikm = Buffer.concat([pwA, matA, matB]);
  assert.deepEqual(a.sendKey, hkdf32(ikm, `tsweave sleeve v1 ${nameA}->${nameB}`));
  assert.deepEqual(a.recvKey, hkdf32(ikm, `tsweave sleeve v1 ${nameB}->${nameA}`));
});

test('session keys: different passwords or materials give unrelated keys', () => {
  const same = both(pwA, pwA);
  const diff = both(pwA, pwB);
  assert.notDeepEqual(diff.a.sendKey, diff.b.recvKey, 'mismatched passwords must not agree');
  assert.notDeepEqual(both(pwB, pwB).a.sendKey, same.a.sendKey);
  const otherMat = both(pwA, pwA, randomKeyMaterial(), matB);
  assert.notDeepEqual(otherMat.a.sendKey, same.a.sendKey);
  assert.deepEqual(otherMat.a.sendKey, otherMat.b.recvKey);
});

test('session keys: input validation', () => {
  const ok = { passwordKey: pwA, localMaterial: matA, remoteMaterial: matB, localName: nameA, remoteName: nameB };
  assert.throws(() => deriveSessionKeys({ ...ok, passwordKey: Buffer.alloc(31) }), KeyDerivationError);
  assert.throws(() => deriveSessionKeys({ ...ok, localMaterial: Buffer.alloc(33) }), /local key material must be 32 bytes/);
  assert.throws(() => deriveSessionKeys({ ...ok, remoteMaterial: Buffer.alloc(0) }), /remote key material/);
  assert.throws(() => deriveSessionKeys({ ...ok, remoteName: nameA }), /send and receive keys would coincide/);
  assert.throws(() => deriveSessionKeys({ ...ok, localName: '' }), KeyDerivationError);
  assert.throws(() => deriveSessionKeys({ ...ok, passwordKey: 'x' as unknown as Buffer }), KeyDerivationError);
});

test('handshakePrologue: deterministic, distinct from the password key and per password', () => {
  const p = handshakePrologue(pwA);
  assert.equal(p.length, 32);
  assert.deepEqual(handshakePrologue(pwA), p);
  assert.notDeepEqual(p, pwA);
  assert.notDeepEqual(handshakePrologue(pwB), p);
  assert.deepEqual(p, hkdf32(pwA, 'tsweave noise prologue v1'));
  assert.throws(() => handshakePrologue(Buffer.alloc(16)), KeyDerivationError);
});

test('nextEpochKey: one-way chain with no short cycles', () => {
  const seen = new Set<string>();
  let k: Buffer = Buffer.from(pwA);
  for (let i = 0; i < 600; i++) {
    const hex = k.toString('hex');
    assert.ok(!seen.has(hex), `cycle at step ${i}`);
    seen.add(hex);
    const next = nextEpochKey(k);
    assert.deepEqual(nextEpochKey(k), next);
    k = next;
  }
  assert.deepEqual(nextEpochKey(pwA), hkdf32(pwA, 'tsweave sleeve v1 ratchet'));
  assert.throws(() => nextEpochKey(Buffer.alloc(5)), KeyDerivationError);
});
