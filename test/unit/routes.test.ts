import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Routes } from '../../router/mesh/routes.js';
import { Topology, type PeerInfo } from '../../router/mesh/topology.js';
import { numToPeerName, peerNameToNum } from '../../router/mesh/peer-name.js';
import { mulberry32 } from '../lib/prng.js';


/** Peer names whose sort order matches the letter order of their labels. */
const P = (label: string): string => numToPeerName(0x020000000000 + label.charCodeAt(0));
const [A, B, C, D, E, F, H] = ['A', 'B', 'C', 'D', 'E', 'F', 'H'].map(P) as [string, string, string, string, string, string, string];

/** What each peer reports: peer → list of [target, established]. */
type Reports = Map<string, Array<[string, boolean]>>;

function undirected(edges: Array<[string, string]>, peers: string[] = []): Reports {
  const r: Reports = new Map(peers.map((p) => [p, []]));
  for (const [x, y] of edges) {
    if (!r.has(x)) r.set(x, []);
    if (!r.has(y)) r.set(y, []);
    r.get(x)!.push([y, true]);
    r.get(y)!.push([x, true]);
  }
  return r;
}

function entryFor(reports: Reports, name: string): PeerInfo {
  return {
    name,
    nickname: name,
    uid: 1,
    version: 2,
    connections: reports.get(name)!.map(([t, established]) => ({ name: t, address: 'x:6783', outbound: true, established })),
  };
}

/** The Routes of peer `self` after it has learned everybody's entry. */
function routesAt(reports: Reports, self: string): { topo: Topology; routes: Routes } {
  const topo = new Topology({ name: self, nickname: self, uid: 1 });
  topo.setLocalConnections(entryFor(reports, self).connections);
  topo.merge([...reports.keys()].filter((n) => n !== self).map((n) => entryFor(reports, n)));
  return { topo, routes: new Routes(topo) };
}

function world(reports: Reports): Map<string, Routes> {
  return new Map([...reports.keys()].map((n) => [n, routesAt(reports, n).routes]));
}

test('chain A-B-C-D', () => {
  const w = world(undirected([[A, B], [B, C], [C, D]]));
  const a = w.get(A)!;
  assert.equal(a.unicast(A), A);
  assert.equal(a.unicast(B), B);
  assert.equal(a.unicast(C), B);
  assert.equal(a.unicast(D), B);
  assert.equal(w.get(C)!.unicast(A), B);
  assert.equal(w.get(C)!.unicast(D), D);
  assert.deepEqual(a.broadcast(A), [B]);
  assert.deepEqual(w.get(B)!.broadcast(A), [C]);
  assert.deepEqual(w.get(C)!.broadcast(A), [D]);
  assert.deepEqual(w.get(D)!.broadcast(A), []);
  assert.deepEqual(w.get(B)!.broadcast(B), [A, C]);
  assert.deepEqual(w.get(C)!.broadcast(B), [D]);
  assert.deepEqual(a.broadcast(D), []);
  assert.deepEqual(w.get(B)!.broadcast(D), [A]);
});

test('ring A-B-C-D-A: ties go to the lower peer name', () => {
  const w = world(undirected([[A, B], [B, C], [C, D], [D, A]]));
  const a = w.get(A)!;
  assert.equal(a.unicast(C), B, 'two equal-length paths; B < D');
  assert.equal(a.unicast(D), D);
  assert.equal(w.get(D)!.unicast(B), A, 'A < C');
  assert.deepEqual(a.broadcast(A), [B, D]);
  assert.deepEqual(w.get(B)!.broadcast(A), [C]);
  assert.deepEqual(w.get(D)!.broadcast(A), []);
  assert.deepEqual(w.get(C)!.broadcast(A), []);
  // tree rooted at C: C→B, C→D, B→A
  assert.deepEqual(w.get(C)!.broadcast(C), [B, D]);
  assert.deepEqual(w.get(B)!.broadcast(C), [A]);
  assert.deepEqual(a.broadcast(C), []);
  assert.deepEqual(w.get(D)!.broadcast(C), []);
  assert.deepEqual(a.unicastAll(), { [A]: A, [B]: B, [C]: B, [D]: D });
  // trees: B→{A,C}, A→D;  D→{A,C}, A→B
  assert.deepEqual(a.broadcastAll(), { [A]: [B, D], [B]: [D], [C]: [], [D]: [B] });
  assert.deepEqual(w.get(B)!.broadcastAll(), { [A]: [C], [B]: [A, C], [C]: [A], [D]: [] });
});

test('star: the hub relays every leaf broadcast to the other leaves', () => {
  const w = world(undirected([[H, A], [H, B], [H, C], [H, D]]));
  const h = w.get(H)!;
  assert.deepEqual(h.broadcast(H), [A, B, C, D]);
  assert.deepEqual(h.broadcast(B), [A, C, D]);
  assert.deepEqual(w.get(B)!.broadcast(B), [H]);
  assert.deepEqual(w.get(A)!.broadcast(B), []);
  assert.equal(w.get(A)!.unicast(D), H);
});

test('full mesh: direct routes, the source sends to everyone', () => {
  const names = [A, B, C, D, E];
  const edges: Array<[string, string]> = [];
  for (let i = 0; i < names.length; i++) for (let j = i + 1; j < names.length; j++) edges.push([names[i]!, names[j]!]);
  const w = world(undirected(edges));
  for (const s of names) {
    for (const d of names) assert.equal(w.get(s)!.unicast(d), d);
    assert.deepEqual(w.get(s)!.broadcast(s), names.filter((n) => n !== s));
    for (const o of names) if (o !== s) assert.deepEqual(w.get(o)!.broadcast(s), []);
  }
});

test('partial mesh picks shortest paths', () => {
  // A-B, A-C, B-D, C-D, D-E, C-E  → A to E: via C (2 hops) not via B (3 hops)
  const w = world(undirected([[A, B], [A, C], [B, D], [C, D], [D, E], [C, E]]));
  assert.equal(w.get(A)!.unicast(E), C);
  assert.equal(w.get(A)!.unicast(D), B, 'both B and C are 2 hops; B sorts first');
  assert.equal(w.get(E)!.unicast(B), D);
  assert.deepEqual(w.get(A)!.broadcast(A), [B, C]);
  assert.deepEqual(w.get(B)!.broadcast(A), [D]);
  assert.deepEqual(w.get(C)!.broadcast(A), [E]);
  assert.deepEqual(w.get(D)!.broadcast(A), []);
});

test('asymmetric or unestablished reports make no edge', () => {
  const r: Reports = new Map([
    [A, [[B, true], [C, true], [D, false]]],
    [B, []],            // B does not list A
    [C, [[A, false]]],  // C lists A but not established
    [D, [[A, true]]],   // A lists D as not established
  ]);
  const w = world(r);
  const a = w.get(A)!;
  for (const x of [B, C, D]) {
    assert.equal(a.unicast(x), undefined);
    assert.equal(w.get(x)!.unicast(A), undefined);
  }
  assert.deepEqual(a.broadcast(A), []);
  assert.deepEqual(a.unicastAll(), { [A]: A });
  assert.deepEqual(a.broadcastAll(), { [A]: [] });
});

test('disconnected parts and unknown peers', () => {
  const w = world(undirected([[A, B], [C, D]]));
  assert.equal(w.get(A)!.unicast(C), undefined);
  assert.equal(w.get(A)!.unicast(P('Z')), undefined);
  assert.deepEqual(w.get(A)!.broadcast(C), []);
  assert.deepEqual(w.get(A)!.broadcast(P('Z')), []);
  assert.deepEqual(w.get(C)!.broadcast(C), [D]);
  assert.deepEqual(Object.keys(w.get(C)!.unicastAll()), [C, D]);
});

test('numeric variants match the named ones', () => {
  const w = world(undirected([[A, B], [B, C], [C, D], [D, A], [B, E]]));
  for (const r of w.values()) {
    for (const d of [A, B, C, D, E, F]) {
      const hop = r.unicast(d);
      assert.equal(r.unicastNum(peerNameToNum(d)), hop === undefined ? undefined : peerNameToNum(hop));
      assert.deepEqual(r.broadcastNum(peerNameToNum(d)), r.broadcast(d).map(peerNameToNum));
    }
    assert.deepEqual(r.broadcastNum(0), []);
    assert.deepEqual(r.broadcastNum(-5), []);
  }
});

test('routes follow topology changes; results are cached per generation', () => {
  const reports = undirected([[A, B], [B, C]]);
  const { topo, routes } = routesAt(reports, A);
  assert.equal(routes.unicast(C), B);
  const first = routes.broadcast(A);
  assert.equal(routes.broadcast(A), first, 'same array while the generation is unchanged');
  assert.ok(Object.isFrozen(first));
  routes.recalculate();
  assert.equal(routes.broadcast(A), first);
  // C now also connects directly to A (both sides report it).
  topo.setLocalConnections([...entryFor(reports, A).connections, { name: C, address: 'x', outbound: true, established: true }]);
  topo.merge([{ ...entryFor(reports, C), version: 3, connections: [...entryFor(reports, C).connections, { name: A, address: 'x', outbound: false, established: true }] }]);
  assert.equal(routes.unicast(C), C);
  assert.notEqual(routes.broadcast(A), first);
  assert.deepEqual(routes.broadcast(A), [B, C]);
  // B goes away: its entry is collected
  topo.setLocalConnections([{ name: C, address: 'x', outbound: true, established: true }]);
  topo.merge([{ ...entryFor(reports, C), version: 4, connections: [{ name: A, address: 'x', outbound: false, established: true }] }]);
  assert.deepEqual(topo.gc(), [B]);
  assert.equal(routes.unicast(B), undefined);
  assert.deepEqual(routes.unicastAll(), { [A]: A, [C]: C });
});

/** Independent reference: symmetric established adjacency straight from the reports. */
function referenceAdjacency(reports: Reports): Map<string, Set<string>> {
  const est = (x: string, y: string) => (reports.get(x) ?? []).some(([t, e]) => t === y && e);
  const adj = new Map<string, Set<string>>();
  for (const x of reports.keys()) {
    adj.set(x, new Set());
    for (const y of reports.keys()) if (x !== y && est(x, y) && est(y, x)) adj.get(x)!.add(y);
  }
  return adj;
}

function distances(adj: Map<string, Set<string>>, from: string): Map<string, number> {
  const dist = new Map([[from, 0]]);
  const q = [from];
  for (let i = 0; i < q.length; i++) {
    for (const y of adj.get(q[i]!)!) {
      if (!dist.has(y)) {
        dist.set(y, dist.get(q[i]!)! + 1);
        q.push(y);
      }
    }
  }
  return dist;
}

test('property: broadcasts reach each reachable peer exactly once; unicast paths are shortest', () => {
  const rnd = mulberry32(99);
  for (let trial = 0; trial < 120; trial++) {
    const n = 2 + Math.floor(rnd() * 13);
    const names: string[] = [];
    while (names.length < n) {
      const name = numToPeerName(0x020000000000 + Math.floor(rnd() * 0xffffff));
      if (!names.includes(name)) names.push(name);
    }
    const density = 0.1 + rnd() * 0.6;
    const reports: Reports = new Map(names.map((x) => [x, []]));
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        if (rnd() >= density) continue;
        const x = names[i]!;
        const y = names[j]!;
        // mostly symmetric established; sometimes one side only or not yet established
        const kind = rnd();
        if (kind < 0.75) {
          reports.get(x)!.push([y, true]);
          reports.get(y)!.push([x, true]);
        } else if (kind < 0.85) {
          reports.get(x)!.push([y, true]);
        } else {
          reports.get(x)!.push([y, rnd() < 0.5]);
          reports.get(y)!.push([x, false]);
        }
      }
    }
    const w = world(reports);
    const adj = referenceAdjacency(reports);
    for (const source of names) {
      const dist = distances(adj, source);
      // flood: each peer forwards per its own Routes instance
      const received = new Map<string, number>(names.map((x) => [x, 0]));
      const queue = [source];
      let sends = 0;
      for (let i = 0; i < queue.length; i++) {
        const at = queue[i]!;
        for (const next of w.get(at)!.broadcast(source)) {
          assert.ok(adj.get(at)!.has(next), `trial ${trial}: ${at} forwards to non-neighbour ${next}`);
          received.set(next, received.get(next)! + 1);
          queue.push(next);
          assert.ok(++sends <= n, 'broadcast storm');
        }
      }
      for (const x of names) {
        const want = x === source ? 0 : dist.has(x) ? 1 : 0;
        assert.equal(received.get(x), want, `trial ${trial}: source ${source}, peer ${x}`);
      }
      // unicast from source to every peer
      for (const dest of names) {
        let at = source;
        let hops = 0;
        if (!dist.has(dest)) {
          assert.equal(w.get(source)!.unicast(dest), undefined);
          continue;
        }
        while (at !== dest) {
          const next = w.get(at)!.unicast(dest);
          assert.ok(next !== undefined && adj.get(at)!.has(next), `trial ${trial}: bad hop from ${at} to ${dest}`);
          at = next;
          hops++;
          assert.ok(hops <= n, 'routing loop');
        }
        assert.equal(hops, dist.get(dest), `trial ${trial}: ${source}→${dest} not shortest`);
      }
      assert.deepEqual(Object.keys(w.get(source)!.unicastAll()).sort(), [...dist.keys()].sort());
    }
  }
});

/** Independent reference for one peer's view: BFS over the scan definition of the graph, ascending names. */
function referenceView(topo: Topology): {
  hop: Map<string, string>;
  children: (source: string) => string[];
  gossip: string[];
} {
  const names = topo.peers().map((p) => p.name);
  const est = (x: string, y: string): boolean => (topo.get(x)?.connections ?? []).some((c) => c.established && c.name === y);
  const adj = new Map<string, string[]>();
  for (const x of names) adj.set(x, names.filter((y) => y !== x && est(x, y) && est(y, x)).sort());
  const parents = (root: string): Map<string, string> => {
    const parent = new Map([[root, root]]);
    const q = [root];
    for (let i = 0; i < q.length; i++) {
      for (const y of adj.get(q[i]!)!) {
        if (parent.has(y)) continue;
        parent.set(y, q[i]!);
        q.push(y);
      }
    }
    return parent;
  };
  const self = topo.selfName;
  const mine = parents(self);
  const hop = new Map<string, string>();
  const hopOf = (d: string): string => {
    let at = d;
    while (mine.get(at) !== self && at !== self) at = mine.get(at)!;
    return at;
  };
  for (const d of mine.keys()) hop.set(d, hopOf(d));
  const children = (source: string): string[] => {
    if (!adj.has(source)) return [];
    const p = parents(source);
    if (!p.has(self)) return [];
    return adj.get(self)!.filter((m) => m !== source && p.get(m) === self);
  };
  const root = [...mine.keys()].sort()[0]!;
  const g = parents(root);
  const gossip: string[] = [];
  if (g.get(self) !== self) gossip.push(g.get(self)!);
  for (const m of adj.get(self)!) if (g.get(m) === self) gossip.push(m);
  return { hop, children, gossip };
}

test('property: routes over slots equal a plain BFS through merges, gc (slot reuse) and local changes', () => {
  const rnd = mulberry32(2020);
  const pool = Array.from({ length: 24 }, (_, i) => numToPeerName(0x020000000000 + ((i * 7919) % 1000)));
  const pick = (): string => pool[Math.floor(rnd() * pool.length)]!;
  for (let round = 0; round < 40; round++) {
    const self = pool[round % pool.length]!;
    const topo = new Topology({ name: self, nickname: 's', uid: 1 });
    const routes = new Routes(topo);
    const version = new Map<string, number>();
    for (let step = 0; step < 60; step++) {
      const op = rnd();
      const conns = (owner: string) => Array.from({ length: Math.floor(rnd() * 5) }, () => ({ name: pick(), address: 'x:1', outbound: true, established: rnd() < 0.85 })).filter((c) => c.name !== owner);
      if (op < 0.2) topo.setLocalConnections(conns(self));
      else if (op < 0.8) {
        const batch: PeerInfo[] = [];
        for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) {
          const n = pick();
          if (n === self) continue;
          const v = (version.get(n) ?? 0) + 1;
          version.set(n, v);
          // Mostly answer the links others list, so the graph has symmetric edges.
          const back = topo.peers().filter((p) => p.connections.some((c) => c.name === n) && rnd() < 0.7).map((p) => ({ name: p.name, address: 'y:1', outbound: false, established: true }));
          batch.push({ name: n, nickname: 'n', uid: 1, version: v, connections: [...back, ...conns(n)] });
        }
        topo.merge(batch);
      } else topo.gc();
      // Query only sometimes, so caches live across several changes.
      if (rnd() < 0.5) continue;
      const ref = referenceView(topo);
      for (const d of pool) {
        assert.equal(routes.unicast(d), ref.hop.get(d), `round ${round} step ${step}: unicast ${d}`);
        const num = routes.unicastNum(peerNameToNum(d));
        assert.equal(num, ref.hop.has(d) ? peerNameToNum(ref.hop.get(d)!) : undefined);
        assert.deepEqual(routes.broadcast(d), ref.children(d), `round ${round} step ${step}: broadcast from ${d}`);
        assert.deepEqual(routes.broadcastNum(peerNameToNum(d)), ref.children(d).map(peerNameToNum));
      }
      assert.deepEqual(routes.gossipNeighbours(), ref.gossip, `round ${round} step ${step}: gossip tree`);
    }
  }
});
