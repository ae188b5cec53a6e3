/**
 * Mesh at scale (issue #20): the incremental adjacency against its old definition,
 * chunked topology payloads, the summary/digest exchange, and the mesh simulator
 * (router/mesh/sim.ts) running the real Topology/Routes/Gossip at 10, 300 (full
 * mesh) and 1,000 (degree 10) routers, plus a 10,000-peer full exchange.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { unpack } from 'msgpackr';
import { Topology, type ConnectionSummary, type PeerInfo } from '../../router/mesh/topology.js';
import { chunkEntries, Gossip, TOPOLOGY_CHUNK_BYTES, type GossipNeighbour } from '../../router/mesh/gossip.js';
import { Routes } from '../../router/mesh/routes.js';
import { pack } from 'msgpackr';
import type { ControlMessage } from '../../router/mesh/protocol.js';
import { numToPeerName, type PeerName } from '../../router/mesh/peer-name.js';
import { MeshSim, Prng, fullMesh, randomGraph } from '../../router/mesh/sim.js';

const ONE_MIB = 1 << 20;

/** The definition Topology.neighbours had before it kept sets: scan the other side's list. */
function neighboursByScan(t: Topology, name: PeerName): PeerName[] {
  const p = t.get(name);
  if (p === undefined) return [];
  const out = new Set<PeerName>();
  for (const c of p.connections) {
    if (!c.established || c.name === name || out.has(c.name)) continue;
    const q = t.get(c.name);
    if (q !== undefined && q.connections.some((d) => d.established && d.name === name)) out.add(c.name);
  }
  return [...out].sort();
}

function randomConns(rng: Prng, names: PeerName[], self: PeerName): ConnectionSummary[] {
  const out: ConnectionSummary[] = [];
  const k = rng.int(6);
  for (let i = 0; i < k; i++) {
    // Self-loops and duplicates on purpose: the old definition skipped them.
    const n = rng.chance(0.05) ? self : rng.pick(names);
    out.push({ name: n, address: `10.0.0.${rng.int(3)}:6783`, outbound: rng.chance(0.5), established: rng.chance(0.7) });
  }
  return out;
}

test('incremental adjacency equals the scan definition after random merges, local changes, copies and gc', () => {
  const rng = new Prng(7);
  const names = Array.from({ length: 12 }, (_, i) => numToPeerName(i + 1));
  for (let round = 0; round < 60; round++) {
    const t = new Topology({ name: names[0]!, nickname: 'a', uid: 1 });
    const versions = new Map<PeerName, number>();
    for (let step = 0; step < 40; step++) {
      const op = rng.int(4);
      if (op === 0) {
        t.setLocalConnections(randomConns(rng, names, names[0]!));
      } else if (op === 1) {
        const batch: PeerInfo[] = [];
        for (let i = 0; i < 1 + rng.int(4); i++) {
          const n = rng.pick(names.slice(1));
          const v = (versions.get(n) ?? 0) + (rng.chance(0.8) ? 1 : 0) || 1;
          versions.set(n, v);
          batch.push({ name: n, nickname: n, uid: rng.int(3), version: v, connections: randomConns(rng, names, n) });
        }
        t.merge(batch);
      } else if (op === 2) {
        t.gc();
      } else {
        const other = new Topology({ name: names[1]!, nickname: 'b', uid: 9 });
        other.merge(t.peers());
        const copy = new Topology({ name: names[0]!, nickname: 'a', uid: 1 });
        copy.copyFrom(other);
        for (const n of names) {
          if (n === names[0]) continue;
          assert.deepEqual(copy.neighbours(n).filter((m) => m !== names[0]), neighboursByScan(copy, n).filter((m) => m !== names[0]));
        }
      }
      for (const n of names) assert.deepEqual(t.neighbours(n), neighboursByScan(t, n), `round ${round} step ${step} peer ${n}`);
    }
  }
});

test('reachOrder lists every name once, each reachable from an earlier one', () => {
  const rng = new Prng(3);
  const sim = new MeshSim({ seed: 3 });
  sim.seedConverged(50, randomGraph(50, 4, rng));
  const t = sim.routers[7]!.topology;
  const order = t.reachOrder();
  assert.equal(order.length, 50);
  assert.equal(new Set(order).size, 50);
  assert.equal(order[0], t.selfName);
  const seen = new Set<PeerName>([order[0]!]);
  for (const n of order.slice(1)) {
    assert.ok([...seen].some((s) => t.get(s)!.connections.some((c) => c.name === n)), `${n} not reachable from earlier names`);
    seen.add(n);
  }
});

test('chunkEntries: every chunk decodes to its entries in order and stays within the budget', () => {
  const entries = Array.from({ length: 5000 }, (_, i) => ({ name: numToPeerName(i + 1), pad: 'x'.repeat(i % 300) }));
  for (const budget of [1000, 64 * 1024, TOPOLOGY_CHUNK_BYTES]) {
    const chunks = chunkEntries(entries, budget);
    const back = chunks.flatMap((c) => unpack(c) as unknown[]);
    assert.deepEqual(back, entries);
    for (const c of chunks) assert.ok(c.length <= budget + 5, `chunk of ${c.length} bytes over budget ${budget}`);
  }
  assert.deepEqual(chunkEntries([]), []);
  const big = { name: 'x', pad: 'y'.repeat(5000) };
  assert.equal(chunkEntries([big, big], 1000).length, 2, 'an entry over the budget goes alone');
});

test('newerThan: names the entries a summary lacks or has older, and rejects bad summaries', () => {
  const a = new Topology({ name: numToPeerName(1), nickname: 'a', uid: 1 });
  const b = new Topology({ name: numToPeerName(2), nickname: 'b', uid: 2 });
  a.setLocalConnections([{ name: numToPeerName(2), address: 'x:1', outbound: true, established: true }]);
  b.setLocalConnections([{ name: numToPeerName(1), address: 'y:1', outbound: false, established: true }]);
  a.merge([b.self()]);
  assert.deepEqual(a.newerThan(b.summary()).sort(), [numToPeerName(1)]);
  b.merge(a.newerThan(b.summary()).map((n) => a.get(n)!));
  assert.deepEqual(a.newerThan(b.summary()), []);
  assert.deepEqual(b.newerThan(a.summary()), []);
  for (const bad of [{}, [[1, 2, 3]], [['00:00:00:00:00:01', 0, 1]], [['00:00:00:00:00:01', 1, -1]], [['00:00:00:00:00:01', 1]]]) {
    assert.throws(() => a.newerThan(bad), /bad topology summary/);
  }
  assert.throws(() => a.newerThan(Array.from({ length: 10_001 }, () => ['00:00:00:00:00:01', 1, 1])), /over the limit/);
});

function assertConverged(sim: MeshSim, what: string): void {
  const c = sim.converged();
  assert.ok(c.ok, `${what}: ${c.ok ? '' : c.reason}`);
}

test('sim, 10 routers degree 3: link change, leave and join converge; routes agree with the graph', () => {
  const sim = new MeshSim({ seed: 1 });
  const edges = randomGraph(10, 3, new Prng(1));
  sim.seedConverged(10, edges);
  assertConverged(sim, 'seeded');
  const [i, j] = edges[edges.length - 1]!;
  sim.unlink(sim.routers[i]!, sim.routers[j]!);
  sim.run();
  assertConverged(sim, 'link change');
  assert.ok(!sim.routers[0]!.topology.neighbours(sim.routers[i]!.name).includes(sim.routers[j]!.name));
  sim.leave(sim.routers[5]!);
  sim.run();
  assertConverged(sim, 'leave');
  assert.equal(sim.routers[0]!.topology.has(sim.routers[5]!.name), false, 'the departed router was collected');
  const r = sim.join([sim.routers[0]!, sim.routers[9]!]);
  sim.run();
  assertConverged(sim, 'join');
  assert.equal(sim.routers[3]!.routes.unicast(r.name) !== undefined, true, 'the new router is routable');
  assert.equal(sim.totals.oversize, 0);
});

test('sim with 20% message loss: the periodic digest exchange repairs the tables', () => {
  const sim = new MeshSim({ seed: 2, loss: 0.2, periodic: true });
  sim.seedConverged(30, randomGraph(30, 4, new Prng(2)));
  sim.unlink(sim.routers[0]!, sim.routers[1]!);
  sim.leave(sim.routers[10]!);
  sim.join([sim.routers[20]!]);
  sim.run(300_000);
  assertConverged(sim, 'after 300 s with loss');
});

test('sim, tree gossip under loss and a partition: changes on both sides, heal, the digest exchange repairs', () => {
  for (const seed of [5, 6]) {
    const sim = new MeshSim({ seed, loss: 0.3, periodic: true });
    const edges = randomGraph(60, 4, new Prng(seed));
    sim.seedConverged(60, edges);
    // Cut every edge between the halves 0..29 and 30..59, change both sides, heal.
    const cut = edges.filter(([i, j]) => (i < 30) !== (j < 30));
    for (const [i, j] of cut) sim.unlink(sim.routers[i]!, sim.routers[j]!);
    sim.run(sim.now + 5_000);
    sim.leave(sim.routers[3]!);
    sim.unlink(sim.routers[40]!, sim.routers[41]!);
    sim.join([sim.routers[50]!]);
    sim.run(sim.now + 5_000);
    for (const [i, j] of cut) if (sim.routers[i]!.alive && sim.routers[j]!.alive) sim.link(sim.routers[i]!, sim.routers[j]!);
    // Pairwise digest exchanges every 30 s with 30% of messages lost: ~270 s for these seeds.
    sim.run(sim.now + 900_000);
    assertConverged(sim, `seed ${seed}: after the partition healed, with 30% loss`);
  }
});

test('sim, no loss: a link change costs about one message per peer (tree gossip), not one per connection', () => {
  const sim = new MeshSim({ seed: 11 });
  const edges = randomGraph(200, 10, new Prng(11));
  sim.seedConverged(200, edges);
  const [i, j] = edges[edges.length - 1]!;
  sim.unlink(sim.routers[i]!, sim.routers[j]!);
  sim.run();
  assertConverged(sim, 'link change');
  // Flooding sent ≈ N·degree (≈ 2,000 here); the tree ≈ N per changed entry, batched.
  assert.ok(sim.totals.messages <= 2 * 200, `${sim.totals.messages} messages for one link change among 200 peers`);
});

test('sim, 300 routers full mesh: a link change converges, no frame over 1 MiB', () => {
  const sim = new MeshSim({ seed: 300 });
  sim.seedConverged(300, fullMesh(300));
  sim.unlink(sim.routers[298]!, sim.routers[299]!);
  sim.run();
  assertConverged(sim, 'link change');
  // (A join is left to the 1,000-peer test: here it floods ~N² more messages, minutes of CPU.)
  assert.equal(sim.totals.oversize, 0);
  assert.ok(sim.totals.maxFrame <= ONE_MIB, `max frame ${sim.totals.maxFrame} B`);
});

test('sim, 1,000 routers degree 10: link change, leave and join converge, no frame over 1 MiB', () => {
  const sim = new MeshSim({ seed: 1000 });
  const edges = randomGraph(1000, 10, new Prng(1000));
  sim.seedConverged(1000, edges);
  const [i, j] = edges[edges.length - 1]!;
  sim.unlink(sim.routers[i]!, sim.routers[j]!);
  sim.run();
  assertConverged(sim, 'link change');
  assert.ok(sim.totals.messages <= 2 * 1000, `${sim.totals.messages} messages for one link change`);
  sim.leave(sim.routers[500]!);
  sim.run();
  assertConverged(sim, 'leave');
  sim.join([sim.routers[1]!, sim.routers[2]!]);
  sim.run();
  assertConverged(sim, 'join');
  assert.equal(sim.totals.oversize, 0);
  assert.ok(sim.totals.maxFrame <= ONE_MIB, `max frame ${sim.totals.maxFrame} B`);
});

test('a router joining a 10,000-peer mesh gets the whole table in frames of at most 1 MiB', () => {
  const sim = new MeshSim({ seed: 10_000 });
  sim.seedConverged(10_000, randomGraph(10_000, 10, new Prng(10_000)), [0]);
  const r = sim.join([sim.routers[0]!]);
  sim.run();
  assert.equal(r.topology.size, 10_001);
  assert.equal(sim.routers[0]!.topology.get(r.name)?.version, r.topology.self().version);
  assert.equal(sim.totals.oversize, 0);
  assert.ok(sim.totals.maxFrame <= ONE_MIB, `max frame ${sim.totals.maxFrame} B`);
});

/**
 * Gossip settles merged entries once per batch (one gc for all merges of a flush
 * window). Whether the host also collects after every merge (the router) or not (the
 * simulator), a peer that became unreachable in the batch is never announced, a
 * reachable one whose lister arrived later in the same batch is kept and announced,
 * and an entry nobody lists is held back until a later batch lists it.
 */
test('gossip batch: one gc per batch never announces a collected peer and never drops a reachable one', () => {
  const [S, A, B, X, Y, Z] = [1, 2, 3, 4, 5, 6].map(numToPeerName) as [PeerName, PeerName, PeerName, PeerName, PeerName, PeerName];
  const conn = (name: PeerName): ConnectionSummary => ({ name, address: `${name}:6783`, outbound: true, established: true });
  const entry = (name: PeerName, version: number, to: PeerName[]): PeerInfo => ({ name, nickname: name.slice(-2), uid: 7, version, connections: to.map(conn) });
  for (const gcOnChange of [false, true]) {
    const topology = new Topology({ name: S, nickname: 's', uid: 1 });
    topology.setLocalConnections([conn(A), conn(B)]);
    topology.merge([entry(A, 1, [S, X]), entry(B, 1, [S]), entry(X, 1, [A])]);
    topology.gc();
    const routes = new Routes(topology);
    const sent: Record<string, string[]> = { [A]: [], [B]: [] };
    const neighbour = (name: PeerName): GossipNeighbour => ({
      send: (m: ControlMessage) => {
        if (m.t === 'gossip' && m.channel === 'topology') for (const e of unpack(m.payload) as PeerInfo[]) sent[name]!.push(e.name);
      },
    });
    const conns = new Map([[A, neighbour(A)], [B, neighbour(B)]]);
    const timers: Array<() => void> = [];
    let changes = 0;
    const g = new Gossip({
      selfName: S, topology, routes,
      neighbours: () => conns.values(), neighbour: (n) => conns.get(n),
      topologyChanged: () => {
        changes++;
        if (gcOnChange) topology.gc();
      },
      drop: () => assert.fail('drop'), log: (l) => assert.fail(l), setTimer: (fn) => timers.push(fn), now: () => 0,
    });
    const deliver = (from: PeerName, entries: PeerInfo[]): void => g.onMessage(conns.get(from)!, from, { t: 'gossip', channel: 'topology', kind: 'update', src: from, payload: pack(entries) });
    const flush = (): void => {
      for (const fn of timers.splice(0)) fn();
    };
    // Batch 1, all from A: X changes, Y arrives before any entry lists it, then A drops X
    // and lists Y; Z is listed by nobody.
    deliver(A, [entry(X, 2, [A])]);
    deliver(A, [entry(Y, 1, [A])]);
    deliver(A, [entry(A, 2, [S, Y])]);
    deliver(A, [entry(Z, 1, [])]);
    flush();
    const what = gcOnChange ? 'host collects after every merge' : 'gc once per batch';
    assert.deepEqual(topology.peers().map((p) => p.name), [S, A, B, Y], `${what}: table after batch 1`);
    assert.ok(changes > 0);
    assert.deepEqual(sent[B]!.sort(), [A, Y], `${what}: B gets the reachable changes only (not the collected X, not the unlisted Z)`);
    assert.equal(sent[A]!.length, 0, `${what}: A sent them all, so it gets nothing back`);
    // Batch 2: B lists Z; the held-back Z is merged again, kept and announced.
    deliver(B, [entry(B, 2, [S, Z])]);
    flush();
    assert.ok(topology.has(Z), `${what}: Z kept once listed`);
    assert.ok(sent[A]!.includes(Z) && sent[A]!.includes(B), `${what}: A gets B's change and Z`);
    assert.ok(![...sent[A]!, ...sent[B]!].includes(X), `${what}: X never announced after it was collected`);
  }
});
