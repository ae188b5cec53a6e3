import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack, unpack } from 'msgpackr';
import {
  MAX_PEER_CONNECTIONS,
  MAX_TOPOLOGY_PEERS,
  Topology,
  TopologyError,
  type ConnectionSummary,
  type PeerInfo,
} from '../../router/mesh/topology.js';
import { numToPeerName } from '../../router/mesh/peer-name.js';
import { mulberry32 } from '../lib/prng.js';


const A = '02:00:00:00:00:0a';
const B = '02:00:00:00:00:0b';
const C = '02:00:00:00:00:0c';
const D = '02:00:00:00:00:0d';

function conn(name: string, established = true, outbound = true, address = '10.0.0.1:6783'): ConnectionSummary {
  return { name, address, outbound, established };
}
function info(name: string, version: number, uid: number, connections: ConnectionSummary[] = [], nickname = 'n'): PeerInfo {
  return { name, nickname, uid, version, connections };
}
/** Round-trips through msgpack, as gossip does. */
function wire(x: unknown): unknown {
  return unpack(pack(x));
}

test('a new topology holds only self at version 1', () => {
  const t = new Topology({ name: A, nickname: 'host-a', uid: 99 });
  assert.equal(t.selfName, A);
  assert.equal(t.generation, 0);
  assert.deepEqual(t.self(), { name: A, nickname: 'host-a', uid: 99, version: 1, connections: [] });
  assert.deepEqual(t.peers(), [t.self()]);
  assert.equal(t.get(B), undefined);
  assert.throws(() => new Topology({ name: 'AA:00:00:00:00:01', nickname: 'x', uid: 1 }), TopologyError);
  assert.throws(() => new Topology({ name: A, nickname: 'x', uid: -1 }), TopologyError);
  assert.throws(() => new Topology({ name: A, nickname: 'x'.repeat(256), uid: 1 }), TopologyError);
});

test('setLocalConnections bumps the version only on a real change, ignoring order', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 1 });
  assert.equal(t.setLocalConnections([]), false);
  assert.equal(t.self().version, 1);
  assert.equal(t.generation, 0);
  assert.equal(t.setLocalConnections([conn(C), conn(B, false)]), true);
  assert.equal(t.self().version, 2);
  assert.equal(t.generation, 1);
  assert.deepEqual(t.self().connections.map((c) => c.name), [B, C]);
  assert.equal(t.setLocalConnections([conn(B, false), conn(C)]), false);
  assert.equal(t.self().version, 2);
  assert.equal(t.setLocalConnections([conn(B, true), conn(C)]), true, 'established flag change');
  assert.equal(t.self().version, 3);
  assert.equal(t.setLocalConnections([conn(B, true), conn(C, true, false)]), true, 'direction change');
  assert.equal(t.setLocalConnections([conn(B, true), conn(C, true, false, '1.2.3.4:1')]), true, 'address change');
  assert.equal(t.self().version, 5);
  assert.equal(t.generation, 4);
  const before = t.self();
  assert.throws(() => t.setLocalConnections([conn('bogus')]), TopologyError);
  assert.throws(() => t.setLocalConnections([{ name: B, address: 5, outbound: true, established: true } as unknown as ConnectionSummary]), TopologyError);
  assert.equal(t.self(), before);
  assert.equal(t.generation, 4);
});

test('merge adds newer entries, ignores stale ones and breaks version ties by uid', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 1 });
  assert.deepEqual(t.merge(wire([info(B, 3, 50, [conn(A)]), info(C, 1, 7)])), { changed: [B, C] });
  assert.equal(t.generation, 1);
  assert.equal(t.get(B)!.version, 3);
  // older or identical: ignored, no generation bump
  assert.deepEqual(t.merge(wire([info(B, 2, 50), info(B, 3, 50, []), info(C, 1, 7)])), { changed: [] });
  assert.equal(t.generation, 1);
  assert.deepEqual(t.get(B)!.connections.map((c) => c.name), [A]);
  // same version, lower uid loses; higher uid wins
  assert.deepEqual(t.merge(wire([info(B, 3, 49, [])])).changed, []);
  assert.deepEqual(t.merge(wire([info(B, 3, 51, [])])).changed, [B]);
  assert.equal(t.get(B)!.uid, 51);
  // newer version wins whatever its uid
  assert.deepEqual(t.merge(wire([info(B, 4, 2, [conn(C)])])).changed, [B]);
  assert.deepEqual(t.get(B), info(B, 4, 2, [conn(C)]));
  assert.equal(t.generation, 3);
});

test('an update repeating a name keeps its best entry', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 1 });
  assert.deepEqual(t.merge([info(B, 2, 1), info(B, 5, 1, [conn(C)]), info(B, 3, 9)]).changed, [B]);
  assert.equal(t.get(B)!.version, 5);
});

test('connection targets without entries are not added', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 1 });
  t.merge([info(B, 1, 1, [conn(C), conn(D)])]);
  assert.deepEqual(t.peers().map((p) => p.name), [A, B]);
  assert.equal(t.get(C), undefined);
});

test('own entry: echoes are ignored, a competing incarnation makes us jump past it', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 100 });
  t.setLocalConnections([conn(B)]);
  t.setLocalConnections([conn(B), conn(C)]); // version 3
  const g = t.generation;
  assert.deepEqual(t.merge(wire([t.self()])).changed, [], 'echo of our own entry');
  assert.deepEqual(t.merge(wire([info(A, 2, 100)])).changed, [], 'older echo');
  assert.deepEqual(t.merge(wire([info(A, 2, 55)])).changed, [], 'older other incarnation loses anyway');
  assert.equal(t.generation, g);
  assert.equal(t.self().version, 3);

  assert.deepEqual(t.merge(wire([info(A, 3, 55)])).changed, [A], 'same version, other uid');
  assert.equal(t.self().version, 4);
  assert.equal(t.self().uid, 100);
  assert.deepEqual(t.self().connections.map((c) => c.name), [B, C], 'our own connections are kept');
  assert.equal(t.generation, g + 1);

  assert.deepEqual(t.merge(wire([info(A, 40, 7, [conn(D)]), info(D, 1, 1)])).changed, [A, D]);
  assert.equal(t.self().version, 41);
  assert.deepEqual(t.self().connections.map((c) => c.name), [B, C]);
  assert.equal(t.self().nickname, 'a');
});

test('restart scenario: a restarted peer overtakes what others remember of it', () => {
  const old = new Topology({ name: A, nickname: 'a', uid: 1 });
  for (let i = 0; i < 6; i++) old.setLocalConnections(i % 2 ? [conn(B)] : [conn(B, false)]);
  const b = new Topology({ name: B, nickname: 'b', uid: 2 });
  b.merge(wire(old.encode()));
  assert.equal(b.get(A)!.version, 7);

  const restarted = new Topology({ name: A, nickname: 'a', uid: 3 });
  restarted.setLocalConnections([conn(B)]); // version 2, below what B remembers
  assert.deepEqual(b.merge(wire(restarted.encode())).changed, [], 'B keeps the higher stale entry for now');
  const r = restarted.merge(wire(b.encode()));
  assert.ok(r.changed.includes(A));
  assert.equal(restarted.self().version, 8);
  assert.deepEqual(b.merge(wire(restarted.encode([A]))).changed, [A]);
  assert.equal(b.get(A)!.uid, 3);
  assert.deepEqual(b.get(A), restarted.self());
});

test('malformed updates throw TopologyError and leave the table untouched', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 1 });
  t.merge([info(B, 2, 5, [conn(A)])]);
  const snapshot = JSON.stringify(t.encode());
  const g = t.generation;
  const good = info(C, 1, 1);
  const bads: unknown[] = [
    null, 'x', { name: B }, 5,
    [good, null],
    [good, { ...info(D, 1, 1), name: 'D' }],
    [good, { ...info(D, 1, 1), name: undefined }],
    [good, { ...info(D, 1, 1), nickname: 3 }],
    [good, { ...info(D, 1, 1), nickname: 'x'.repeat(256) }],
    [good, { ...info(D, 1, 1), uid: -1 }],
    [good, { ...info(D, 1, 1), uid: 1.5 }],
    [good, { ...info(D, 1, 1), uid: 2 ** 60 }],
    [good, { ...info(D, 1, 1), uid: 5n }],
    [good, { ...info(D, 1, 1), version: 0 }],
    [good, { ...info(D, 1, 1), version: '2' }],
    [good, { ...info(D, 1, 1), connections: 'none' }],
    [good, { ...info(D, 1, 1), connections: undefined }],
    [good, info(D, 1, 1, [null as unknown as ConnectionSummary])],
    [good, info(D, 1, 1, [{ ...conn(A), name: 'A' }])],
    [good, info(D, 1, 1, [{ ...conn(A), address: 7 } as unknown as ConnectionSummary])],
    [good, info(D, 1, 1, [{ ...conn(A), address: 'x'.repeat(301) }])],
    [good, info(D, 1, 1, [{ ...conn(A), outbound: 1 } as unknown as ConnectionSummary])],
    [good, info(D, 1, 1, [{ ...conn(A), established: 'yes' } as unknown as ConnectionSummary])],
    // a bad entry for ourselves must not bump us either
    [info(A, 50, 9), { ...info(D, 1, 1), version: -3 }],
  ];
  for (const u of bads) {
    assert.throws(() => t.merge(u), (e: unknown) => {
      assert.ok(e instanceof TopologyError, `${String(e)}`);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
    assert.equal(JSON.stringify(t.encode()), snapshot);
    assert.equal(t.generation, g);
  }
});

test('size limits: peers per update and connections per peer', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 1 });
  const many: PeerInfo[] = [];
  for (let i = 0; i < MAX_TOPOLOGY_PEERS + 1; i++) many.push(info(numToPeerName(0x020000000000 + 0x100 + i), 1, 1));
  assert.throws(() => t.merge(many), /10001 peers/);
  assert.equal(t.peers().length, 1);
  assert.equal(t.merge(many.slice(0, MAX_TOPOLOGY_PEERS)).changed.length, MAX_TOPOLOGY_PEERS);
  const conns: ConnectionSummary[] = [];
  for (let i = 0; i < MAX_PEER_CONNECTIONS + 1; i++) conns.push(conn(numToPeerName(0x060000000000 + i)));
  assert.throws(() => t.merge([info(B, 1, 1, conns)]), /10001 connections/);
  assert.throws(() => t.setLocalConnections(conns), TopologyError);
  assert.deepEqual(t.merge([info(B, 1, 1, conns.slice(1))]).changed, [B]);
});

test('entries handed out are frozen and unaffected by later input mutation', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 1 });
  const input = [info(B, 1, 1, [conn(A)])];
  t.merge(input);
  input[0]!.connections[0]!.established = false;
  input[0]!.version = 99;
  assert.equal(t.get(B)!.version, 1);
  assert.equal(t.get(B)!.connections[0]!.established, true);
  assert.ok(Object.isFrozen(t.get(B)));
  assert.throws(() => {
    (t.self() as { version: number }).version = 10;
  }, TypeError);
  assert.throws(() => t.self().connections.push(conn(B)), TypeError);
});

test('encode returns all entries or a sorted subset, and survives msgpack', () => {
  const t = new Topology({ name: B, nickname: 'b', uid: 1 });
  t.merge([info(D, 1, 1), info(A, 2, 2, [conn(B)]), info(C, 1, 3)]);
  assert.deepEqual(t.encode().map((p) => p.name), [A, B, C, D]);
  assert.deepEqual(t.encode([D, A, 'ff:ff:ff:ff:ff:ff', A]).map((p) => p.name), [A, D]);
  const E = '02:00:00:00:00:0e';
  const u = new Topology({ name: E, nickname: 'e', uid: 3 });
  u.merge(wire(t.encode()));
  assert.deepEqual(u.encode().filter((p) => p.name !== E), t.encode());
});

test('neighbours requires established connections reported by both ends', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 1 });
  t.setLocalConnections([conn(B), conn(C), conn(D, false)]);
  t.merge([
    info(B, 1, 1, [conn(A)]),         // symmetric, established
    info(C, 1, 1, [conn(A, false)]),  // C says not yet established
    info(D, 1, 1, [conn(A)]),         // A says not established
  ]);
  assert.deepEqual(t.neighbours(A), [B]);
  assert.deepEqual(t.neighbours(B), [A]);
  assert.deepEqual(t.neighbours(C), []);
  assert.deepEqual(t.neighbours(D), []);
  assert.deepEqual(t.neighbours('ff:ff:ff:ff:ff:ff'), []);
  // a target without an entry is never a neighbour
  t.setLocalConnections([conn(B), conn('02:00:00:00:00:99')]);
  assert.deepEqual(t.neighbours(A), [B]);
  // self loops and duplicates are ignored
  t.merge([info(B, 2, 1, [conn(A), conn(A, true, false), conn(B)])]);
  assert.deepEqual(t.neighbours(B), [A]);
});

test('gc removes peers no longer reachable through listed connections, never self', () => {
  const t = new Topology({ name: A, nickname: 'a', uid: 1 });
  t.setLocalConnections([conn(B, false)]); // any state counts for reachability
  t.merge([info(B, 1, 1, [conn(C)]), info(C, 1, 1, []), info(D, 1, 1, [conn(A), conn(B)])]);
  const g = t.generation;
  // D lists us, but nobody reachable lists D: its frozen entry is stale.
  assert.deepEqual(t.gc(), [D]);
  assert.equal(t.generation, g + 1);
  assert.deepEqual(t.peers().map((p) => p.name), [A, B, C]);
  assert.deepEqual(t.gc(), []);
  assert.equal(t.generation, g + 1);
  t.setLocalConnections([]);
  assert.deepEqual(t.gc(), [B, C]);
  assert.deepEqual(t.peers().map((p) => p.name), [A]);
  assert.deepEqual(t.gc(), []);
});

test('property: merge is order-independent and idempotent (gossip convergence)', () => {
  const rnd = mulberry32(2024);
  const names = [A, B, C, D, '02:00:00:00:00:0e', '02:00:00:00:00:0f'];
  for (let trial = 0; trial < 200; trial++) {
    // A pool of entries: several versions/uids per name.
    const pool: PeerInfo[] = [];
    for (let i = 0; i < 15; i++) {
      const k = 1 + Math.floor(rnd() * (names.length - 1));
      const version = 1 + Math.floor(rnd() * 4);
      const uid = Math.floor(rnd() * 3);
      // An owner publishes one entry per (version, uid): derive its content from them.
      const own = mulberry32(k * 1000 + version * 10 + uid);
      const conns = names.filter(() => own() < 0.4).map((n) => conn(n, own() < 0.5));
      pool.push(info(names[k]!, version, uid, conns));
    }
    const tops = [0, 1, 2].map(() => new Topology({ name: A, nickname: 'a', uid: 1 }));
    tops.forEach((t, k) => {
      const order = [...pool];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      // deliver in random batches; the last topology gets everything twice
      let at = 0;
      while (at < order.length) {
        const n = 1 + Math.floor(rnd() * 4);
        t.merge(wire(order.slice(at, at + n)));
        at += n;
      }
      if (k === 2) assert.deepEqual(t.merge(wire(order)).changed, []);
    });
    const expect = new Map<string, PeerInfo>();
    for (const p of pool) {
      const cur = expect.get(p.name);
      if (!cur || p.version > cur.version || (p.version === cur.version && p.uid > cur.uid)) expect.set(p.name, p);
    }
    for (const t of tops) {
      assert.deepEqual(JSON.stringify(t.encode()), JSON.stringify(tops[0]!.encode()));
      for (const [name, p] of expect) {
        const got = t.get(name)!;
        assert.equal(got.version, p.version);
        assert.equal(got.uid, p.uid);
      }
    }
  }
});
