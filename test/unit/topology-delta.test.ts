/**
 * Topology entry deltas (router/mesh/topology-delta.ts, issue #20): a delta rebuilds
 * exactly the newer entry from the version it names, malformed deltas are refused
 * with a TopologyError, and in the mesh simulator deltas cut the gossip of a join
 * series, interoperate with version-1 routers and fall back to whole entries (`{w}`)
 * when a receiver does not hold the base.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { pack, unpack } from 'msgpackr';
import { Topology, TopologyError, type PeerInfo } from '../../router/mesh/topology.js';
import { applyDelta, decodeDelta, diffEntries, encodeDelta } from '../../router/mesh/topology-delta.js';
import { numToPeerName, type PeerName } from '../../router/mesh/peer-name.js';
import { MeshSim, Prng, joinSeries as simJoinSeries } from '../../router/mesh/sim.js';
import type { ControlMessage } from '../../router/mesh/protocol.js';
import { TOPOLOGY_BATCH_MS, TOPOLOGY_FLUSH_INTERVAL_MS } from '../../router/mesh/gossip.js';

const OWNER = numToPeerName(100);
const NAMES: PeerName[] = Array.from({ length: 40 }, (_, i) => numToPeerName(i + 1));

type RawConn = { name: PeerName; address: string; outbound: boolean; established: boolean };

function randomConns(rng: Prng): RawConn[] {
  const out = new Map<string, RawConn>();
  const k = rng.int(30);
  for (let i = 0; i < k; i++) {
    const c = { name: rng.pick(NAMES), address: `10.0.${rng.int(2)}.${rng.int(4)}:6783`, outbound: rng.chance(0.5), established: rng.chance(0.7) };
    out.set(`${c.name} ${c.address}`, c);
  }
  return [...out.values()];
}

/** A small change of `conns`: a few removed, added or flipped. */
function mutate(rng: Prng, conns: RawConn[]): RawConn[] {
  const out = conns.map((c) => ({ ...c }));
  const n = 1 + rng.int(3);
  for (let i = 0; i < n; i++) {
    const r = rng.int(3);
    if (r === 0 && out.length > 0) out.splice(rng.int(out.length), 1);
    else if (r === 1 && out.length > 0) {
      const c = out[rng.int(out.length)]!;
      c.established = !c.established;
    } else {
      const c = { name: rng.pick(NAMES), address: `10.0.9.${rng.int(250)}:6783`, outbound: rng.chance(0.5), established: rng.chance(0.5) };
      if (!out.some((o) => o.name === c.name && o.address === c.address)) out.push(c);
    }
  }
  return out;
}

/** The frozen, canonical entry a Topology makes of a raw one. */
function canonical(raw: { name: PeerName; nickname: string; uid: number; version: number; connections: RawConn[] }): PeerInfo {
  const t = new Topology({ name: numToPeerName(999), nickname: 'probe', uid: 1 });
  t.merge([raw]);
  return t.get(raw.name)!;
}

test('a delta rebuilds exactly the newer entry from its base (random histories, through the wire form)', () => {
  const rng = new Prng(11);
  let deltas = 0;
  for (let round = 0; round < 300; round++) {
    let conns = randomConns(rng);
    const uid = rng.int(1000);
    let prev = canonical({ name: OWNER, nickname: 'owner', uid, version: 1 + rng.int(5), connections: conns });
    const receiver = new Topology({ name: numToPeerName(998), nickname: 'rx', uid: 2 });
    receiver.merge([prev]);
    for (let step = 0; step < 5; step++) {
      conns = mutate(rng, conns);
      const cur = canonical({ name: OWNER, nickname: 'owner', uid, version: prev.version + 1 + rng.int(3), connections: conns });
      const bytes = encodeDelta(prev, cur);
      if (bytes === undefined) {
        assert.equal(diffEntries(prev, cur), undefined);
        receiver.merge([cur]);
      } else {
        deltas++;
        const d = decodeDelta(unpack(bytes));
        const { changed } = receiver.merge([applyDelta(receiver.get(OWNER)!, d)]);
        assert.deepEqual(changed, [OWNER]);
        if (cur.connections.length >= 8) assert.ok(bytes.length < pack(cur).length, 'a delta is smaller than the whole entry');
      }
      assert.deepEqual(receiver.get(OWNER), cur, `round ${round} step ${step}`);
      prev = cur;
    }
  }
  assert.ok(deltas > 500, `most changes went as deltas (${deltas})`);
});

test('no delta across incarnations, backwards, or when most connections changed', () => {
  const conns = NAMES.slice(0, 10).map((n) => ({ name: n, address: `${n}:6783`, outbound: true, established: true }));
  const a = canonical({ name: OWNER, nickname: 'o', uid: 1, version: 3, connections: conns });
  assert.equal(diffEntries(a, canonical({ name: OWNER, nickname: 'o', uid: 2, version: 4, connections: conns })), undefined, 'other uid');
  assert.equal(diffEntries(a, canonical({ name: OWNER, nickname: 'o', uid: 1, version: 3, connections: conns })), undefined, 'same version');
  assert.equal(diffEntries(a, canonical({ name: OWNER, nickname: 'o', uid: 1, version: 9, connections: conns.slice(0, 2) })), undefined, '8 of 10 removed');
  const one = diffEntries(a, canonical({ name: OWNER, nickname: 'o', uid: 1, version: 4, connections: conns.slice(1) }));
  assert.deepEqual(one && { removed: one.removed, upserted: one.upserted, base: one.base, version: one.version }, { removed: [[NAMES[0], `${NAMES[0]}:6783`]], upserted: [], base: 3, version: 4 });
  assert.throws(() => applyDelta(canonical({ name: OWNER, nickname: 'o', uid: 1, version: 2, connections: conns }), one!), TopologyError, 'wrong base');
});

test('malformed deltas are refused with a TopologyError, random ones never throw anything else', () => {
  const ok = [OWNER, 1, 2, 3, [[NAMES[0], 'a:1']], [{ name: NAMES[1], address: 'b:1', outbound: true, established: false }]];
  assert.equal(decodeDelta(ok).version, 3);
  const bad: unknown[] = [
    null, 'x', [], ok.slice(0, 5),
    ['Not-A-Name', 1, 2, 3, [], []],
    [OWNER, -1, 2, 3, [], []],
    [OWNER, 1, 3, 3, [], []],
    [OWNER, 1, 0, 3, [], []],
    [OWNER, 1, 2, 2 ** 60, [], []],
    [OWNER, 1, 2, 3, [['zz', 'a']], []],
    [OWNER, 1, 2, 3, [[NAMES[0], 'a'.repeat(301)]], []],
    [OWNER, 1, 2, 3, {}, []],
    [OWNER, 1, 2, 3, [], [5]],
    [OWNER, 1, 2, 3, [], [{ name: NAMES[0] }]],
    [OWNER, 1, 2, 3, new Array(10_001).fill([NAMES[0], 'a']), []],
  ];
  for (const b of bad) assert.throws(() => decodeDelta(b), TopologyError, JSON.stringify(b)?.slice(0, 80));
  // An upserted connection of a bad shape passes the delta's check but not the merge.
  const t = new Topology({ name: numToPeerName(998), nickname: 'rx', uid: 2 });
  const base = canonical({ name: OWNER, nickname: 'o', uid: 1, version: 2, connections: [] });
  t.merge([base]);
  const d = decodeDelta([OWNER, 1, 2, 3, [], [{ name: NAMES[1], address: 'b:1', outbound: 'yes', established: false }]]);
  assert.throws(() => t.merge([applyDelta(t.get(OWNER)!, d)]), TopologyError);
  assert.equal(t.get(OWNER)!.version, 2, 'the table is left untouched');
  const rng = new Prng(5);
  const atoms = [OWNER, NAMES[0], 1, 0, -1, 2.5, 'a', '', null, true, [], {}];
  const gen = (depth: number): unknown => {
    if (depth > 2 || rng.chance(0.4)) return rng.pick(atoms);
    return Array.from({ length: rng.int(7) }, () => gen(depth + 1));
  };
  for (let i = 0; i < 5000; i++) {
    const x = gen(0);
    try {
      decodeDelta(x);
    } catch (err) {
      assert.ok(err instanceof TopologyError, `${JSON.stringify(x)}: ${(err as Error).message}`);
    }
  }
});

/** The join series of bench:scale (sim.ts joinSeries), with every control message shown to `observe` first. */
function joinSeries(opts: ConstructorParameters<typeof MeshSim>[0], observe?: (from: number, to: number, m: ControlMessage) => void): MeshSim {
  if (!observe) return simJoinSeries(opts);
  const transmit = MeshSim.prototype.transmit;
  MeshSim.prototype.transmit = function (this: MeshSim, c, m) {
    observe(c.from.protocolVersion, c.to.protocolVersion, m);
    transmit.call(this, c, m);
  };
  try {
    return simJoinSeries(opts);
  } finally {
    MeshSim.prototype.transmit = transmit;
  }
}

function deltaStats(sim: MeshSim): { sent: number; applied: number; wanted: number } {
  const s = { sent: 0, applied: 0, wanted: 0 };
  for (const r of sim.routers) for (const k of ['sent', 'applied', 'wanted'] as const) s[k] += r.gossip.stats.deltas[k];
  return s;
}

test('sim, a 30-router join series: deltas converge with under half the topology bytes of whole entries', () => {
  const v1 = joinSeries({ seed: 7, protocolVersion: 1 });
  const v2 = joinSeries({ seed: 7 });
  assert.deepEqual(v1.converged(), { ok: true });
  assert.deepEqual(v2.converged(), { ok: true });
  assert.equal(deltaStats(v1).sent, 0);
  const s = deltaStats(v2);
  assert.ok(s.applied > 1000, `deltas were applied (${JSON.stringify(s)})`);
  assert.ok(v2.totals.bytes < v1.totals.bytes / 2, `bytes ${v2.totals.bytes} with deltas vs ${v1.totals.bytes} without`);
});

test('sim, mixed mesh: version-1 routers never get a delta or a request, and everyone converges (also under loss)', () => {
  const version = (i: number): number => (i % 3 === 1 ? 1 : 2);
  for (const loss of [0, 0.05]) {
    let toV1 = 0;
    const sim = joinSeries({ seed: 3, protocolVersion: version, loss, periodic: loss > 0 }, (_from, to, m) => {
      if (m.t !== 'gossip' || m.channel !== 'topology' || to !== 1) return;
      const b = unpack(m.payload) as unknown;
      if (!Array.isArray(b) && typeof b === 'object' && b !== null && ('x' in b || 'w' in b)) toV1++;
    });
    assert.deepEqual(sim.converged(), { ok: true }, `loss ${loss}`);
    assert.equal(toV1, 0, 'no {x} or {w} to a version-1 router');
    assert.ok(deltaStats(sim).applied > 100, 'the version-2 routers used deltas');
  }
});

test('sim: a delta whose base the receiver lacks is answered with a {w} request, and the whole entry follows', () => {
  const sim = new MeshSim({ seed: 1 });
  const [a, b, c, d] = [sim.addRouter(), sim.addRouter(), sim.addRouter(), sim.addRouter()];
  sim.link(a, b);
  sim.link(b, c);
  sim.link(a, d);
  sim.link(b, d);
  sim.run();
  assert.deepEqual(sim.converged(), { ok: true });
  // c misses the next versions of a's and d's entries (b → c topology lost), then
  // gets deltas from those versions: it cannot apply them and must ask.
  let drop = true;
  let dropped = 0;
  const transmit = sim.transmit.bind(sim);
  sim.transmit = (conn, m) => {
    if (drop && conn.from === b && conn.to === c && m.t === 'gossip' && m.channel === 'topology') {
      dropped++;
      return;
    }
    transmit(conn, m);
  };
  sim.unlink(a, d);
  sim.run();
  drop = false;
  assert.ok(dropped > 0, 'the update was dropped');
  assert.equal(sim.converged().ok, false, 'c is behind');
  sim.link(a, d);
  sim.run();
  assert.deepEqual(sim.converged(), { ok: true }, 'converged without the periodic exchange');
  assert.ok(c.gossip.stats.deltas.wanted >= 1, `c asked for a whole entry (${JSON.stringify(c.gossip.stats.deltas)})`);
});

test('sim: a burst of changes 12 ms apart is flushed to a neighbour at most every TOPOLOGY_FLUSH_INTERVAL_MS, a lone change after one batch window', () => {
  const sim = new MeshSim({ seed: 2 });
  const a = sim.addRouter();
  const b = sim.addRouter();
  sim.link(a, b);
  const others = Array.from({ length: 20 }, () => sim.addRouter());
  sim.run();
  const updates: number[] = [];
  const transmit = sim.transmit.bind(sim);
  sim.transmit = (c, m) => {
    // One flush may send two messages (whole entries and deltas): count flush times.
    if (c.from === a && c.to === b && m.t === 'gossip' && m.channel === 'topology' && m.kind === 'update' && updates[updates.length - 1] !== sim.now) updates.push(sim.now);
    transmit(c, m);
  };
  const t0 = sim.now + 1000;
  sim.run(t0);
  // A lone change: out after one batch window.
  sim.link(a, others[0]!);
  sim.run(t0 + 500);
  assert.equal(updates.length, 1);
  assert.ok(updates[0]! - t0 <= TOPOLOGY_BATCH_MS + 1, `first flush ${updates[0]! - t0} ms after the change`);
  // A burst: a's entry changes every 12 ms for 228 ms.
  updates.length = 0;
  const t1 = sim.now;
  for (let k = 1; k < 20; k++) sim.after(12 * k, () => sim.link(a, others[k]!));
  sim.run(t1 + 2000);
  for (let i = 1; i < updates.length; i++) assert.ok(updates[i]! - updates[i - 1]! >= TOPOLOGY_FLUSH_INTERVAL_MS - 1e-9, `flushes at ${updates.map((x) => (x - t1).toFixed(0)).join(', ')}`);
  assert.ok(updates.length >= 3 && updates.length <= 7, `${updates.length} flushes for 19 changes in 228 ms`);
  assert.deepEqual(sim.converged(), { ok: true });
});

test('gossip: malformed {x} and {w} payloads are dropped with one log line each, a good {w} gets the entries whole; random ones never throw', () => {
  const sim = new MeshSim({ seed: 4 });
  const [a, b] = [sim.addRouter(), sim.addRouter()];
  sim.link(a, b);
  sim.run();
  const conn = a.conns.get(b.name)!;
  const sentToB: ControlMessage[] = [];
  const transmit = sim.transmit.bind(sim);
  sim.transmit = (c, m) => {
    if (c.from === a) sentToB.push(m);
    transmit(c, m);
  };
  const deliver = (body: unknown): void => a.gossip.onMessage(conn, b.name, { t: 'gossip', channel: 'topology', kind: 'update', src: b.name, payload: pack(body) });
  const bad: unknown[] = [{ w: 'x' }, { w: [1] }, { w: ['Not-A-Name'] }, { w: new Array(10_001).fill(a.name) }, { x: 5 }, { x: [[a.name]] }, { x: new Array(10_001).fill(0) }];
  for (const body of bad) {
    const before = sim.logs.length;
    deliver(body);
    assert.equal(sim.logs.length, before + 1, `one log line for ${JSON.stringify(body).slice(0, 60)}`);
    assert.match(sim.logs[sim.logs.length - 1]!, /bad topology update from/);
  }
  assert.equal(sentToB.length, 0, 'nothing answered to malformed input');
  deliver({ w: [a.name, numToPeerName(4242)] });
  assert.equal(sentToB.length, 1);
  const m = sentToB[0]!;
  assert.ok(m.t === 'gossip');
  const whole = unpack(m.payload) as PeerInfo[];
  assert.deepEqual(whole.map((e) => e.name), [a.name], 'only entries it holds, whole');
  const rng = new Prng(9);
  const atoms = [a.name, b.name, 1, 2, 0, -1, 'x', null, true, {}, []];
  const gen = (depth: number): unknown => (depth > 3 || rng.chance(0.3) ? rng.pick(atoms) : Array.from({ length: rng.int(7) }, () => gen(depth + 1)));
  for (let i = 0; i < 3000; i++) deliver(rng.chance(0.5) ? { x: gen(0) } : { w: gen(1) });
  sim.run();
  assert.deepEqual(sim.converged(), { ok: true }, 'the tables are intact');
});
