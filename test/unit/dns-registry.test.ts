/**
 * weaveDNS registry (dns/registry.ts): merge laws, tombstones, GC, lookups, the wire
 * form's bounds, and random histories on a lossy simulated mesh (message loss,
 * duplication, reordering, partitions, router restarts) → after a repair every peer's
 * view is the same, and it holds exactly the names each origin currently registers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack, unpack } from 'msgpackr';
import { DnsRegistry, TOMBSTONE_TTL_MS, decodeGossip, entriesFromWire, entriesToWire, normaliseName, normaliseDomain, supersedes, type DnsEntry } from '../../dns/registry.js';
import { mulberry32 } from '../lib/prng.js';

const A = 'aa:00:00:00:00:01';
const B = 'aa:00:00:00:00:02';
const C = 'aa:00:00:00:00:03';
const H = 'db.weave.local.';

const entry = (over: Partial<DnsEntry> = {}): DnsEntry => ({ containerId: 'c1', origin: B, addr: '10.32.0.5', hostname: H, version: 0, tombstone: 0, ...over });
const view = (r: DnsRegistry): string => JSON.stringify(r.all());

test('names: case-insensitive, single labels qualified, invalid rejected', () => {
  assert.equal(normaliseName('DB', 'weave.local.'), 'db.weave.local.');
  assert.equal(normaliseName('Db.Weave.Local', 'weave.local.'), 'db.weave.local.');
  assert.equal(normaliseName('db.weave.local.', 'weave.local.'), 'db.weave.local.');
  for (const bad of ['', '.', 'a..b', 'a b', 'x'.repeat(64), 'a;rm -rf', '-a', 'a\u0000b', 'ä']) assert.equal(normaliseName(bad, 'weave.local.'), undefined, bad);
  assert.equal(normaliseDomain('Weave.Local'), 'weave.local.');
  assert.throws(() => normaliseDomain('a..b'), /invalid DNS domain/);
});

test('add/remove: versions bump, tombstone wins at equal version', () => {
  let t = 1000;
  const r = new DnsRegistry(A, () => t);
  const [e0] = r.add('c1', '10.32.0.1', H);
  assert.equal(e0.version, 0);
  assert.deepEqual(r.add('c1', '10.32.0.1', H), [], 'adding a live entry again changes nothing');
  t = 2000;
  const [e1] = r.remove('c1');
  assert.equal(e1.version, 1);
  assert.equal(e1.tombstone, 2000);
  assert.deepEqual(r.lookup(H), []);
  const [e2] = r.add('c1', '10.32.0.1', H);
  assert.equal(e2.version, 2);
  assert.deepEqual(r.lookup(H), ['10.32.0.1']);
  assert.ok(supersedes(entry({ version: 1, tombstone: 5 }), entry({ version: 1 })));
  assert.ok(!supersedes(entry({ version: 1 }), entry({ version: 1, tombstone: 5 })));
  assert.ok(supersedes(entry({ version: 2 }), entry({ version: 1, tombstone: 5 })));
  assert.throws(() => r.add('c1', '10.32.0.256', H), /invalid address/);
  assert.throws(() => r.add('c1', '10.32.0.2', 'db'), /invalid hostname/);
});

test('merge is commutative, associative and idempotent (random entry sets)', () => {
  const rng = mulberry32(7);
  const randomEntry = (): DnsEntry => entry({
    origin: [B, C][Math.floor(rng() * 2)],
    containerId: `c${Math.floor(rng() * 3)}`,
    addr: `10.32.0.${Math.floor(rng() * 3) + 1}`,
    version: Math.floor(rng() * 4),
    tombstone: rng() < 0.4 ? 1 + Math.floor(rng() * 100) : 0,
  });
  for (let round = 0; round < 300; round++) {
    const sets = [0, 1, 2].map(() => Array.from({ length: 1 + Math.floor(rng() * 6) }, randomEntry));
    const [x, y, z] = sets;
    const mergeAll = (...order: DnsEntry[][]): string => {
      const r = new DnsRegistry(A, () => 0);
      for (const s of order) r.merge(s);
      return view(r);
    };
    assert.equal(mergeAll(x, y), mergeAll(y, x), 'commutative');
    assert.equal(mergeAll(x, y, z), mergeAll(z, y, x), 'associative');
    assert.equal(mergeAll(x, y, z, y, x), mergeAll(x, y, z), 'idempotent');
  }
});

test('a restarted origin stays authoritative: its stale live copy is tombstoned, a live one re-issued above', () => {
  const old = new DnsRegistry(A, () => 10);
  old.add('c1', '10.32.0.1', H);
  old.add('c2', '10.32.0.2', H);
  old.remove('c1');
  old.add('c1', '10.32.0.1', H); // c1 v2 live, c2 v0 live
  const peer = new DnsRegistry(B, () => 10);
  peer.merge(old.all());
  // A restarts: only c2 is still running; it re-registers at version 0.
  const fresh = new DnsRegistry(A, () => 20);
  fresh.add('c2', '10.32.0.2', H);
  const { reissued } = fresh.merge(peer.all());
  const c1 = reissued.find((e) => e.containerId === 'c1')!;
  assert.equal(c1.version, 3);
  assert.ok(c1.tombstone > 0, 'c1 is gone: tombstoned above the stale copy');
  assert.equal(reissued.find((e) => e.containerId === 'c2'), undefined, 'c2 v0 equals the copy: nothing to re-issue');
  peer.merge(reissued);
  assert.deepEqual(peer.lookup(H), ['10.32.0.2']);
  assert.equal(view(peer), view(fresh));
});

test('lookup: live only, each address once, reachable origins, visibility, shuffled per answer', () => {
  const r = new DnsRegistry(A, () => 0);
  r.merge([entry({ origin: B, addr: '10.32.0.1' }), entry({ origin: C, addr: '10.32.0.2' }), entry({ origin: C, containerId: 'c2', addr: '10.32.0.2' }), entry({ origin: B, containerId: 'c3', addr: '10.32.0.3', version: 1, tombstone: 9 })]);
  assert.deepEqual(r.lookup(H), ['10.32.0.1', '10.32.0.2']);
  assert.deepEqual(r.lookup(H, { originAlive: (o) => o !== C }), ['10.32.0.1']);
  assert.deepEqual(r.lookup(H, { visible: (a) => a === '10.32.0.2' }), ['10.32.0.2']);
  assert.deepEqual(r.reverse('10.32.0.2'), [H]);
  assert.deepEqual(r.reverse('10.32.0.3'), [], 'tombstoned');
  r.merge(['10.32.0.4', '10.32.0.5', '10.32.0.6'].map((addr) => entry({ addr, containerId: addr })));
  const rng = mulberry32(3);
  const firsts = new Set<string>();
  const orders = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const got = r.lookup(H, { rng });
    assert.deepEqual([...got].sort(), ['10.32.0.1', '10.32.0.2', '10.32.0.4', '10.32.0.5', '10.32.0.6']);
    firsts.add(got[0]);
    orders.add(got.join());
  }
  assert.ok(firsts.size >= 4 && orders.size >= 20, `shuffled: ${firsts.size} first addresses, ${orders.size} orders`);
});

test('gc purges tombstones after 30 min, not before, and never live entries', () => {
  let t = 1_000_000;
  const r = new DnsRegistry(A, () => t);
  r.add('c1', '10.32.0.1', H);
  r.add('c2', '10.32.0.2', H);
  r.remove('c1');
  t += TOMBSTONE_TTL_MS - 1;
  assert.equal(r.gc(), 0);
  t += 2;
  assert.equal(r.gc(), 1);
  assert.deepEqual(r.all().map((e) => e.containerId), ['c2']);
});

test('wire form: round trip, and bounded, checked decoding', () => {
  const es = [entry(), entry({ containerId: 'netns:/run/netns/x', version: 3, tombstone: 77 })];
  assert.deepEqual(entriesFromWire(unpack(pack(entriesToWire(es)))), es);
  assert.throws(() => entriesFromWire({}), /not a list/);
  assert.throws(() => entriesFromWire([[1, 2]]), /6- or 7-element/);
  assert.throws(() => entriesFromWire([['c', 'not-a-peer', '10.0.0.1', H, 0, 0]]), /not a peer name/);
  assert.throws(() => entriesFromWire([['c', B, '10.0.0.1', 'x\u001b[2J.weave.local.', 0, 0]]), /invalid hostname/);
  assert.throws(() => entriesFromWire([['c', B, '10.0.0.1', H, -1, 0]]), /version/);
  assert.throws(() => entriesFromWire([['c', B, '10.0.0.1', H, 0, 1.5]]), /tombstone/);
  assert.throws(() => entriesFromWire(new Array(100_001).fill(0)), /more than/);
  // Fuzz findings: a peer's control characters come back escaped in the one-line error;
  // gossip bytes are pre-scanned (no ext types, bounded elements) before msgpackr.
  assert.throws(() => entriesFromWire([['c', '\u0000\u009b2J', '10.0.0.1', H, 0, 0]]), (e: Error) => /origin "\\u0000\\u009b2J"/.test(e.message) && !/[\u0000-\u001f\u007f-\u009f]/.test(e.message));
  assert.deepEqual(decodeGossip(pack(entriesToWire(es))), es);
  assert.throws(() => decodeGossip(Buffer.from([0xd4, 0x62, 0x00])), /undecodable dns gossip: .*ext/i);
  assert.throws(() => decodeGossip(Buffer.concat([Buffer.from([0xdd, 0x00, 0x10, 0x00, 0x00]), Buffer.alloc(1 << 20, 0x90)])), /undecodable dns gossip/);
  const rng = mulberry32(11);
  for (let i = 0; i < 2000; i++) {
    const bytes = Buffer.from(Array.from({ length: Math.floor(rng() * 64) }, () => Math.floor(rng() * 256)));
    try {
      entriesFromWire(unpack(bytes));
    } catch (err) {
      assert.ok(err instanceof Error && err.message.length < 300, 'one-line error');
    }
  }
});

// ---- simulated mesh ----

interface SimPeer {
  name: string;
  reg: DnsRegistry;
  /** What this origin currently registers: containerId → [addr, hostname]. */
  running: Map<string, [string, string]>;
  up: boolean;
}

test('random histories on a lossy, partitioned mesh with restarts: after repair all views are equal and exact', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const rng = mulberry32(seed);
    let now = 1_000_000;
    const names = [A, B, C, 'aa:00:00:00:00:04'];
    const peers: SimPeer[] = names.map((name) => ({ name, reg: new DnsRegistry(name, () => now), running: new Map(), up: true }));
    const queue: Array<{ at: number; to: SimPeer; es: DnsEntry[] }> = [];
    let partitioned = new Set<string>();
    const send = (from: SimPeer, es: DnsEntry[], lossy = true): void => {
      if (!es.length) return;
      for (const to of peers) {
        if (to === from || (partitioned.has(from.name) !== partitioned.has(to.name))) continue;
        if (lossy && rng() < 0.3) continue;
        const copies = lossy && rng() < 0.1 ? 2 : 1;
        for (let i = 0; i < copies; i++) queue.push({ at: now + 1 + rng() * 50, to, es: es.map((e) => ({ ...e })) });
      }
    };
    const deliver = (until: number): void => {
      queue.sort((x, y) => x.at - y.at);
      while (queue.length && queue[0].at <= until) {
        const m = queue.shift()!;
        if (!m.to.up) continue;
        const { reissued } = m.to.reg.merge(m.es);
        send(m.to, reissued);
        queue.sort((x, y) => x.at - y.at);
      }
    };
    for (let step = 0; step < 300; step++) {
      now += Math.floor(rng() * 20);
      const p = peers[Math.floor(rng() * peers.length)];
      const r = rng();
      if (!p.up) {
        if (r < 0.3) {
          // Restart: empty registry; re-registers what is still running.
          p.up = true;
          p.reg = new DnsRegistry(p.name, () => now);
          for (const [id, [addr, host]] of p.running) send(p, p.reg.add(id, addr, host));
        }
      } else if (r < 0.45) {
        const id = `c${Math.floor(rng() * 4)}`;
        const pair: [string, string] = [`10.32.${names.indexOf(p.name)}.${Math.floor(rng() * 3) + 1}`, ['db', 'web', 'cache'][Math.floor(rng() * 3)] + '.weave.local.'];
        if (p.running.has(id)) continue;
        p.running.set(id, pair);
        send(p, p.reg.add(id, ...pair));
      } else if (r < 0.75) {
        const id = `c${Math.floor(rng() * 4)}`;
        p.running.delete(id);
        send(p, p.reg.remove(id));
      } else if (r < 0.8) {
        p.up = false; // crash: its containers keep running (names come back at restart)
      } else if (r < 0.85) {
        partitioned = new Set(names.filter(() => rng() < 0.5));
      } else if (r < 0.9) {
        partitioned = new Set();
      } else if (r < 0.95) {
        send(p, p.reg.all()); // periodic full exchange, also lossy
      }
      deliver(now);
    }
    // Repair: everyone up, partitions healed, reliable full exchanges until quiet.
    partitioned = new Set();
    for (const p of peers) {
      if (!p.up) {
        p.up = true;
        p.reg = new DnsRegistry(p.name, () => now);
        for (const [id, [addr, host]] of p.running) p.reg.add(id, addr, host);
      }
    }
    deliver(Infinity);
    for (let round = 0; round < 6; round++) {
      for (const p of peers) send(p, p.reg.all(), false);
      deliver(Infinity);
    }
    const views = peers.map((p) => view(p.reg));
    for (const v of views) assert.equal(v, views[0], `seed ${seed}: views differ`);
    const expected = peers.flatMap((p) => [...p.running].map(([id, [addr, host]]) => `${p.name} ${id} ${addr} ${host}`)).sort();
    const got = peers[0].reg.live().map((e) => `${e.origin} ${e.containerId} ${e.addr} ${e.hostname}`).sort();
    assert.deepEqual(got, expected, `seed ${seed}: live entries are exactly what origins register`);
  }
});
