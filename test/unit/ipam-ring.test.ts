import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack, unpack } from 'msgpackr';
import { Ring, RingConflictError, RingError, RMPEER_VERSION_BUMP } from '../../ipam/ring.js';
import { parseCidr, isAligned } from '../../ipam/cidr.js';
import { Prng } from '../../ipam/sim.js';

const R = parseCidr('10.32.0.0/12');
const A = 'aa:00:00:00:00:01';
const B = 'aa:00:00:00:00:02';
const C = 'aa:00:00:00:00:03';

function snapshot(r: Ring): string {
  return JSON.stringify(r.toPlain().e) + JSON.stringify(r.spans().map((s) => s.peer));
}

test('seed splits the range evenly, sorted by peer name, identically everywhere', () => {
  const r = Ring.seed(R.start, R.size, [C, A, B]);
  r.checkInvariants();
  const spans = r.spans();
  assert.deepEqual(spans.map((s) => s.peer), [A, B, C]);
  assert.equal(spans[0]!.token, R.start);
  assert.equal(spans.reduce((n, s) => n + (s.end - s.token), 0), R.size);
  assert.ok(spans.every((s) => s.free === s.end - s.token && s.version === 0));
  assert.ok(r.equals(Ring.seed(R.start, R.size, [B, C, A, A])));
  assert.throws(() => Ring.seed(R.start, R.size, []), RingError);
  // More peers than addresses: every address still has exactly one owner.
  const tiny = Ring.seed(0, 2, [A, B, C]);
  tiny.checkInvariants();
  assert.equal(tiny.length, 2);
});

test('owner, ownedRanges and give (donation) keep invariants and bump versions', () => {
  const r = Ring.seed(R.start, R.size, [A, B]);
  const half = R.size / 2;
  assert.equal(r.owner(R.start), A);
  assert.equal(r.owner(R.start + half), B);
  assert.equal(r.owner(R.start - 1), undefined);
  assert.equal(r.owner(R.start + R.size), undefined);
  r.give(A, R.start + 256, 256, C);
  r.checkInvariants();
  assert.equal(r.owner(R.start + 255), A);
  assert.equal(r.owner(R.start + 256), C);
  assert.equal(r.owner(R.start + 511), C);
  assert.equal(r.owner(R.start + 512), A);
  assert.deepEqual(r.ownedRanges(A), [[R.start, R.start + 256], [R.start + 512, R.start + half]]);
  assert.deepEqual(r.ownedRanges(C), [[R.start + 256, R.start + 512]]);
  const given = r.spans().find((s) => s.token === R.start + 256)!;
  assert.equal(given.version, 1);
  assert.throws(() => r.give(A, R.start + 256, 1, B), /owned by/);
  assert.throws(() => r.give(A, R.start + R.size - 1, 2, B), /outside the range/);
  assert.throws(() => r.give(A, R.start, 1, A), /ourselves/);
  assert.throws(() => new Ring(R.start, R.size).give(A, R.start, 1, B), /empty/);
});

test('merge: newer version wins, peers learn donations, idempotent', () => {
  const a = Ring.seed(R.start, R.size, [A, B]);
  const b = a.clone();
  a.give(A, R.start, 1024, B);
  assert.equal(b.merge(a, B), true);
  assert.ok(b.equals(a));
  assert.equal(b.merge(a, B), false);
  const empty = new Ring(R.start, R.size);
  assert.equal(empty.merge(a, C), true);
  assert.ok(empty.equals(a));
  assert.equal(a.merge(new Ring(R.start, R.size), A), false);
});

test('merge conflicts raise RingConflictError and change nothing', () => {
  // Two rings formed independently (e.g. two consensus groups).
  const x = Ring.seed(R.start, R.size, [A, B]);
  const y = Ring.seed(R.start, R.size, [A, C]);
  const before = snapshot(x);
  assert.throws(() => x.merge(y), RingConflictError);
  assert.equal(snapshot(x), before);

  // Another peer rewrote our token (e.g. we were rmpeer'd while alive).
  const mine = Ring.seed(R.start, R.size, [A, B]);
  const theirs = mine.clone();
  theirs.transfer(A, C);
  assert.throws(() => mine.merge(theirs, A), (e: unknown) => e instanceof RingConflictError && /rmpeer/.test(e.message));
  assert.doesNotThrow(() => mine.clone().merge(theirs, B), 'a third peer accepts the takeover');

  // A token inserted inside our range by someone else.
  const ours = Ring.seed(R.start, R.size, [A, B]);
  ours.updateFree(A, () => 10); // small enough to stay valid after the forged split below
  const plain = ours.toPlain();
  plain.p.push(C);
  plain.e.splice(4, 0, R.start + 16, 2, 0, 0); // a token in A's span that only A could have written
  const forged = Ring.fromPlain(plain);
  assert.throws(() => ours.merge(forged, A), (e: unknown) => e instanceof RingConflictError && /inside our range/.test(e.message));
  assert.doesNotThrow(() => ours.clone().merge(forged, B), 'peers that do not own the span cannot tell');
  // Giving part of our span bumps our own token too: a copy changed elsewhere is also caught.
  const other = Ring.seed(R.start, R.size, [A, B]);
  other.give(A, R.start + 16, 16, C);
  assert.throws(() => Ring.seed(R.start, R.size, [A, B]).merge(other, A), RingConflictError);

  // Equal version, different contents.
  const p = Ring.seed(R.start, R.size, [A, B]);
  const q = p.clone();
  p.updateFree(A, () => 5);
  q.updateFree(A, () => 6);
  assert.throws(() => p.merge(q), /ring conflict at token/);
});

test('merge refuses a ring for another range with a message naming both', () => {
  const a = Ring.seed(R.start, R.size, [A]);
  const other = parseCidr('10.40.0.0/16');
  const b = Ring.seed(other.start, other.size, [B]);
  assert.throws(() => a.merge(b), { name: 'RingError', message: 'ring range 10.40.0.0/16 differs from ours 10.32.0.0/12' });
});

test('transfer (rmpeer) moves every span of the dead peer with a large version jump', () => {
  const r = Ring.seed(R.start, R.size, [A, B, C]);
  r.give(B, R.start + Math.floor(R.size / 3) + 1, 1, A);
  const bOwned = r.ownedRanges(B).reduce((n, [s, e]) => n + e - s, 0);
  assert.equal(r.transfer(B, C), bOwned);
  assert.deepEqual(r.ownedRanges(B), []);
  assert.ok(r.spans().filter((s) => s.peer === C).some((s) => s.version >= RMPEER_VERSION_BUMP));
  r.checkInvariants();
  assert.equal(r.transfer(B, C), 0);
});

test('encode/decode round trip, and malformed input gives RingError', () => {
  const r = Ring.seed(R.start, R.size, [A, B, C]);
  r.give(A, R.start + 64, 64, B);
  const bytes = r.encode();
  assert.ok(Ring.decode(bytes).equals(r));
  assert.ok(Ring.decode(Ring.fromPlain(r.toPlain()).encode()).equals(r));
  const bad: unknown[] = [
    null,
    42,
    { s: R.start, n: R.size, p: [A], e: [R.start, 1, 0, 0] }, // peer index out of range
    { s: R.start, n: R.size, p: [A], e: [R.start + 1, 0, 0, 0] }, // does not start at range start
    { s: R.start, n: R.size, p: [A], e: [R.start, 0, 0, R.size + 1] }, // free > span
    { s: R.start, n: R.size, p: [A], e: [R.start, 0, 0, 0, R.start, 0, 1, 0] }, // duplicate token
    { s: R.start, n: R.size, p: [A], e: [R.start, 0, -1, 0] }, // negative version
    { s: R.start, n: R.size, p: [A], e: [R.start, 0, 0] }, // not a multiple of 4
    { s: R.start, n: 0, p: [], e: [] },
    { s: 2 ** 32 - 1, n: 2, p: [], e: [] },
    { s: R.start, n: R.size, p: [''], e: [R.start, 0, 0, 0] },
    { s: R.start, n: R.size, p: [A], e: [R.start, 0, 0.5, 0] },
    { s: R.start, n: R.size, p: 'x', e: [] },
  ];
  for (const b of bad) assert.throws(() => Ring.fromPlain(b), RingError, JSON.stringify(b));
  for (const b of bad) assert.throws(() => Ring.decode(pack(b)), RingError);
  assert.throws(() => Ring.decode(new Uint8Array([0x82, 0xa1])), /not msgpack/);
  assert.throws(() => Ring.decode(new Uint8Array([])), RingError);
});

/**
 * Random histories: each peer keeps its own view; owners donate aligned parts of their free
 * space and refresh free hints; views merge pairwise at random. Every state stays valid, no two
 * peers ever believe they own the same address, and merge is a join over all observed states.
 */
test('random donation/merge histories keep invariants; merge is commutative, associative, idempotent (property)', () => {
  const range = parseCidr('10.0.0.0/16');
  for (let seed = 1; seed <= 25; seed++) {
    const rng = new Prng(seed);
    const names = Array.from({ length: 2 + rng.int(4) }, (_, i) => `p${i}`);
    const initial = names.slice(0, 1 + rng.int(names.length));
    const views = new Map(names.map((n) => [n, initial.includes(n) ? Ring.seed(range.start, range.size, initial) : new Ring(range.start, range.size)]));
    const history: Ring[] = [];
    for (let step = 0; step < 120; step++) {
      const me = rng.pick(names);
      const view = views.get(me)!;
      if (rng.chance(0.4) && !view.isEmpty()) {
        const owned = view.ownedRanges(me);
        if (owned.length > 0) {
          const [s, e] = rng.pick(owned);
          let size = 1;
          while (size * 2 <= e - s && rng.chance(0.7)) size *= 2;
          const start = s + Math.floor(rng.int(e - s - size + 1) / size) * size;
          if (start + size <= e && isAligned(start, size)) {
            const to = rng.pick(names.filter((n) => n !== me));
            view.give(me, start, size, to);
          }
        }
      } else if (rng.chance(0.3)) {
        view.updateFree(me, (s, e) => rng.int(e - s + 1));
      } else {
        const other = rng.pick(names);
        view.merge(views.get(other)!, me);
      }
      view.checkInvariants();
      history.push(view.clone());
      // Ownership as each peer sees it for itself never overlaps.
      const claims: Array<[number, number, string]> = [];
      for (const [n, v] of views) for (const [s, e] of v.ownedRanges(n)) claims.push([s, e, n]);
      claims.sort((x, y) => x[0] - y[0]);
      for (let k = 1; k < claims.length; k++) assert.ok(claims[k]![0] >= claims[k - 1]![1], `overlap ${claims[k - 1]} ${claims[k]} (seed ${seed})`);
    }
    const join = (x: Ring, y: Ring): Ring => {
      const z = x.clone();
      z.merge(y);
      return z;
    };
    for (let k = 0; k < 40; k++) {
      const a = rng.pick(history);
      const b = rng.pick(history);
      const c = rng.pick(history);
      assert.ok(join(a, b).equals(join(b, a)), 'commutative');
      assert.ok(join(join(a, b), c).equals(join(a, join(b, c))), 'associative');
      assert.ok(join(a, a).equals(a), 'idempotent');
      join(a, b).checkInvariants();
    }
    // Everyone converges to the join of all views, which covers the whole range.
    const all = [...views.values()].reduce((x, y) => join(x, y));
    for (const [n, v] of views) {
      v.merge(all, n);
      assert.ok(v.equals(all));
    }
    if (!all.isEmpty()) {
      const total = all.peers().reduce((t, p) => t + all.ownedRanges(p).reduce((u, [s, e]) => u + e - s, 0), 0);
      assert.equal(total, range.size);
    }
  }
});

test('nicknames of owners: kept in the plain form (optional k), validated, adopted on merge, pruned with ownership', () => {
  const r = Ring.seed(R.start, R.size, [A, B, C]);
  assert.equal(r.setNickname(A, 'host-a'), true);
  assert.equal(r.setNickname(A, 'host-a'), false);
  assert.equal(r.setNickname(B, '\u001b]0;x\u0007'), false, 'control characters refused');
  assert.equal(r.setNickname(B, 'x'.repeat(256)), false, 'over 255 characters refused');
  assert.equal(r.setNickname(B, ''), false);
  const plain = r.toPlain();
  assert.deepEqual(plain.k, ['host-a', '', '']);
  const back = Ring.fromPlain(unpack(pack(plain)));
  assert.equal(back.nickname(A), 'host-a');
  assert.equal(back.nickname(B), undefined);
  assert.deepEqual(back.peersNamed('host-a'), [A]);
  // Without nicknames the plain form is what older peers send and read (no k).
  assert.equal(Ring.seed(R.start, R.size, [A]).toPlain().k, undefined);
  const old = Ring.fromPlain({ s: plain.s, n: plain.n, p: plain.p, e: plain.e });
  assert.ok(old.equals(r));
  // Malformed tables are refused like a malformed ring.
  for (const k of [['a'], ['a', 'b', 7], ['a', 'b', '\u009b2J'], 'abc', ['a', 'b', 'x'.repeat(256)]]) {
    assert.throws(() => Ring.fromPlain({ ...plain, k }), /bad nickname table/, JSON.stringify(k));
  }
  // Merge adopts nicknames it lacks, never overwrites, and reports the change.
  const mine = Ring.seed(R.start, R.size, [A, B, C]);
  mine.setNickname(B, 'host-b');
  const theirs = Ring.fromPlain({ ...plain, k: ['host-a', 'other-b', ''] });
  assert.equal(mine.merge(theirs), true);
  assert.equal(mine.nickname(A), 'host-a');
  assert.equal(mine.nickname(B), 'host-b');
  assert.equal(mine.merge(theirs), false, 'idempotent');
  // After a takeover the dead peer owns nothing and its nickname leaves the plain form.
  mine.transfer(C, A);
  mine.setNickname(C, 'host-c');
  assert.deepEqual(mine.toPlain().p, [A, B]);
  assert.deepEqual(mine.toPlain().k, ['host-a', 'host-b']);
});

test('fuzz finding: an update whose join would break the invariants is refused whole', () => {
  const s = R.start;
  const half = R.size / 2;
  // Ours: B split its span at s+half+256 (new token at version 0).
  const mine = Ring.fromPlain({ s, n: R.size, p: [A, B], e: [s, 0, 0, half, s + half, 1, 0, 256, s + half + 256, 1, 0, half - 256] });
  // Theirs: a newer version of B's entry at s+half whose free hint counts the whole half.
  const theirs = Ring.fromPlain({ s, n: R.size, p: [A, B], e: [s, 0, 0, half, s + half, 1, 5, half] });
  const before = JSON.stringify(mine.toPlain());
  assert.throws(() => mine.merge(theirs), (e: Error) => e instanceof RingError && /ring update refused: the merged ring would be invalid \(ring entry 10\.40\.0\.0 has free 524288 outside 0\.\.256\)/.test(e.message));
  assert.equal(JSON.stringify(mine.toPlain()), before, 'nothing changed');
  mine.checkInvariants();
});
