import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecentEntries } from '../../router/mesh/gossip-batch.js';
import { mulberry32 } from '../lib/prng.js';

interface E { v: number }

test('an entry merged from a connection is not sent back to it, but to every other', () => {
  const r = new RecentEntries<string, E>(1000);
  const e = { v: 1 };
  r.changed('p1', e, 0, 'c1');
  assert.deepEqual(r.missing('c1'), []);
  assert.deepEqual(r.missing('c2'), ['p1']);
  assert.deepEqual(r.missing('c2'), [], 'sent once per connection');
});

test('our own change after a merged one goes to every connection (the lost "established" update)', () => {
  const r = new RecentEntries<string, E>(1000);
  r.changed('h2', { v: 1 }, 0, 'c-h2');
  r.changed('h1', { v: 5 }, 0); // our local connections changed: nobody has it
  assert.deepEqual(r.missing('c-h2'), ['h1']);
  assert.deepEqual(r.missing('c-x'), ['h2', 'h1']);
});

test('a newer version starts over: holders of the old one get it again', () => {
  const r = new RecentEntries<string, E>(1000);
  const v1 = { v: 1 };
  r.changed('p', v1, 0);
  assert.deepEqual(r.missing('a'), ['p']);
  r.changed('p', v1, 1, 'b'); // same entry again: only adds a holder
  assert.deepEqual(r.missing('b'), []);
  r.changed('p', { v: 2 }, 2, 'b');
  assert.deepEqual(r.missing('a'), ['p']);
  assert.deepEqual(r.missing('b'), []);
});

test('has() counts only the current version; expire drops old and superseded records', () => {
  const r = new RecentEntries<string, E>(100);
  const e = { v: 3 };
  r.changed('p', e, 0);
  r.has('p', 'a', (x) => x.v === 2);
  assert.deepEqual(r.missing('a'), ['p'], 'an older version does not count');
  r.has('p', 'b', (x) => x.v === 3);
  assert.deepEqual(r.missing('b'), []);
  r.changed('q', { v: 1 }, 50);
  r.expire(120, () => true);
  assert.equal(r.size, 1, 'p (at 0) expired, q (at 50) kept');
  r.expire(120, (n) => n !== 'q');
  assert.equal(r.size, 0, 'q is no longer current');
});

test('random sequences: every connection gets each current entry exactly once unless it holds it', () => {
  const rnd = mulberry32(7);
  const n = (k: number): number => Math.floor(rnd() * k);
  for (let round = 0; round < 500; round++) {
    const r = new RecentEntries<number, E>(1e9);
    const current = new Map<string, E>();
    const holds = new Map<number, Map<string, E>>([[0, new Map()], [1, new Map()], [2, new Map()]]);
    for (let step = 0; step < 30; step++) {
      const name = `p${n(4)}`;
      const op = n(3);
      if (op === 0) {
        const e = { v: step };
        current.set(name, e);
        const from = n(4);
        if (from < 3) holds.get(from)!.set(name, e);
        r.changed(name, e, step, from < 3 ? from : undefined);
      } else if (op === 1) {
        const c = n(3);
        for (const x of r.missing(c)) {
          assert.notEqual(holds.get(c)!.get(x), current.get(x), `round ${round}: ${x} sent to a holder`);
          holds.get(c)!.set(x, current.get(x)!);
        }
      } else {
        const c = n(3);
        if (current.has(name)) {
          holds.get(c)!.set(name, current.get(name)!);
          r.has(name, c, (e) => e === current.get(name));
        }
      }
    }
    for (const c of [0, 1, 2]) {
      r.missing(c).forEach((x) => holds.get(c)!.set(x, current.get(x)!));
      for (const [x, e] of current) assert.equal(holds.get(c)!.get(x), e, `round ${round}: connection ${c} lacks ${x}`);
    }
  }
});
