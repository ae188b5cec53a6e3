import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Space, SpaceError } from '../../ipam/space.js';
import { isAligned } from '../../ipam/cidr.js';
import { Prng } from '../../ipam/sim.js';

test('allocates the lowest free owned address and skips unowned gaps', () => {
  const s = new Space();
  s.setOwned([[10, 13], [20, 22]]);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => s.allocate(`c${i}`, 0, 100, 24)), [10, 11, 12, 20, 21]);
  assert.equal(s.allocate('c5', 0, 100, 24), undefined);
  assert.equal(s.free(11)?.owner, 'c1');
  assert.equal(s.allocate('c6', 0, 100, 24), 11);
  assert.equal(s.allocate('c7', 12, 100, 24), undefined);
});

test('respects [lo, hi) bounds', () => {
  const s = new Space();
  s.setOwned([[0, 256]]);
  assert.equal(s.allocate('a', 1, 255, 24), 1);
  for (let i = 2; i < 255; i++) assert.equal(s.allocate('a', 1, 255, 24), i);
  assert.equal(s.allocate('a', 1, 255, 24), undefined, 'broadcast address never given');
  assert.equal(s.freeCount(0, 256), 2);
});

test('claim: exact address, idempotent per owner, refused for another owner or unowned space', () => {
  const s = new Space();
  s.setOwned([[100, 200]]);
  assert.equal(s.claim('a', 150, 24), true);
  assert.equal(s.claim('a', 150, 24), false);
  assert.throws(() => s.claim('b', 150, 24), (e: unknown) => e instanceof SpaceError && /already in use by a/.test(e.message));
  assert.throws(() => s.claim('b', 50, 24), /not in space owned/);
  assert.equal(s.allocate('b', 150, 152, 24), 151);
});

test('freeOwner, lookup and holder', () => {
  const s = new Space();
  s.setOwned([[0, 10]]);
  s.allocate('a', 0, 10, 28);
  s.allocate('b', 0, 10, 28);
  s.allocate('a', 0, 10, 28);
  assert.deepEqual(s.lookup('a').map((x) => x.addr), [0, 2]);
  assert.equal(s.holder(1)?.owner, 'b');
  assert.deepEqual(s.freeOwner('a').map((x) => x.addr), [0, 2]);
  assert.deepEqual(s.lookup('a'), []);
  assert.equal(s.count, 1);
  assert.deepEqual(s.freeOwner('nobody'), []);
});

test('setOwned reports allocations left outside owned space', () => {
  const s = new Space();
  s.setOwned([[0, 10]]);
  s.allocate('a', 0, 10, 28);
  assert.deepEqual(s.setOwned([[5, 10]]).map((a) => a.addr), [0]);
});

test('largestFreeBlock is aligned, owned and free', () => {
  const s = new Space();
  s.setOwned([[0, 64]]);
  s.claim('x', 5, 26);
  const b = s.largestFreeBlock(0, 64)!;
  assert.deepEqual([b.start, b.size], [32, 32]);
  s.claim('x', 40, 26);
  const c = s.largestFreeBlock(0, 64)!;
  assert.deepEqual([c.start, c.size], [48, 16]);
  const full = new Space();
  full.setOwned([[0, 2]]);
  full.allocate('a', 0, 2, 31);
  full.allocate('a', 0, 2, 31);
  assert.equal(full.largestFreeBlock(0, 2), undefined);
});

test('random allocate/free/claim agrees with a naive model (property)', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const rng = new Prng(seed);
    const s = new Space();
    const owned: Array<[number, number]> = [];
    let at = rng.int(10);
    for (let k = 0; k < 4; k++) {
      const len = 1 + rng.int(40);
      owned.push([at, at + len]);
      at += len + rng.int(10);
    }
    s.setOwned(owned);
    const model = new Map<number, string>();
    const ownedAddr = (a: number): boolean => owned.some(([x, y]) => a >= x && a < y);
    for (let step = 0; step < 400; step++) {
      const r = rng.next();
      if (r < 0.5) {
        const lo = rng.int(at);
        const hi = lo + rng.int(at);
        const got = s.allocate(`c${step}`, lo, hi, 24);
        let want: number | undefined;
        for (let a = lo; a < hi; a++) if (ownedAddr(a) && !model.has(a)) { want = a; break; }
        assert.equal(got, want);
        if (got !== undefined) model.set(got, `c${step}`);
      } else if (r < 0.8 && model.size > 0) {
        const a = rng.pick([...model.keys()]);
        assert.equal(s.free(a)?.addr, a);
        model.delete(a);
      } else {
        const a = rng.int(at);
        if (!ownedAddr(a)) assert.throws(() => s.claim('z', a, 24), SpaceError);
        else if (model.has(a) && model.get(a) !== 'z') assert.throws(() => s.claim('z', a, 24), SpaceError);
        else { s.claim('z', a, 24); model.set(a, 'z'); }
      }
      const lo = rng.int(at);
      const hi = lo + rng.int(at);
      let free = 0;
      for (let a = lo; a < hi; a++) if (ownedAddr(a) && !model.has(a)) free++;
      assert.equal(s.freeCount(lo, hi), free);
      const blk = s.largestFreeBlock(lo, hi);
      if (blk) {
        assert.ok(isAligned(blk.start, blk.size));
        for (let a = blk.start; a < blk.start + blk.size; a++) assert.ok(ownedAddr(a) && !model.has(a) && a >= lo && a < hi);
      } else assert.equal(free, 0);
    }
    assert.deepEqual(s.allocations().map((a) => a.addr), [...model.keys()].sort((x, y) => x - y));
  }
});
