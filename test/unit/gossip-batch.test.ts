import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GossipBatch } from '../../router/mesh/gossip-batch.js';
import { mulberry32 } from '../lib/prng.js';

test('a batch of changes merged from one connection skips that connection', () => {
  const b = new GossipBatch<string>();
  assert.equal(b.add(['p1'], 'c1'), true, 'first addition schedules');
  assert.equal(b.add(['p2', 'p1'], 'c1'), false);
  assert.deepEqual(b.take(), { names: ['p1', 'p2'], except: 'c1' });
});

test('our own change after a merged one goes to every connection (the lost "established" update)', () => {
  const b = new GossipBatch<string>();
  b.add(['h2'], 'c-h2');
  b.add(['h1']); // local connections changed: no origin to skip
  assert.deepEqual(b.take(), { names: ['h2', 'h1'], except: undefined });
  // ... and in the other order
  b.add(['h1']);
  b.add(['h2'], 'c-h2');
  assert.equal(b.take().except, undefined);
});

test('changes from two different connections go to every connection', () => {
  const b = new GossipBatch<string>();
  b.add(['p1'], 'c1');
  b.add(['p2'], 'c2');
  b.add(['p3'], 'c1');
  assert.deepEqual(b.take(), { names: ['p1', 'p2', 'p3'], except: undefined });
});

test('take() starts a fresh batch', () => {
  const b = new GossipBatch<string>();
  b.add(['p1']);
  b.take();
  assert.deepEqual(b.take(), { names: [], except: undefined });
  assert.equal(b.add(['p2'], 'c9'), true, 'the next addition schedules again');
  assert.deepEqual(b.take(), { names: ['p2'], except: 'c9' });
});

test('random sequences: the skipped connection is the origin of every addition, or none', () => {
  const b = new GossipBatch<number>();
  const r = mulberry32(7);
  const rnd = (n: number): number => Math.floor(r() * n);
  for (let round = 0; round < 2000; round++) {
    const origins: Array<number | undefined> = [];
    const names = new Set<string>();
    const k = 1 + rnd(5);
    for (let i = 0; i < k; i++) {
      const o = rnd(4) === 0 ? undefined : rnd(3);
      const n = `p${rnd(6)}`;
      origins.push(o);
      names.add(n);
      assert.equal(b.add([n], o), i === 0);
    }
    const got = b.take();
    const same = origins.every((o) => o !== undefined && o === origins[0]);
    assert.equal(got.except, same ? origins[0] : undefined, `origins ${JSON.stringify(origins)}`);
    assert.deepEqual(new Set(got.names), names);
  }
});
