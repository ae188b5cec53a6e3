import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Consensus, ConsensusError, validateKnowledge, type PaxosKnowledge } from '../../ipam/consensus.js';
import { Prng } from '../../ipam/sim.js';

interface Msg {
  dst: number;
  table: PaxosKnowledge;
}

/**
 * Gossip Paxos among `reachable` of `n` configured nodes with loss, duplication, reordering and
 * random (duelling) re-proposals. Returns each node's decision.
 */
function runPaxos(seed: number, n: number, reachable: number, steps: number): Array<string[] | undefined> {
  const rng = new Prng(seed);
  const nodes = Array.from({ length: reachable }, (_, i) => new Consensus(`peer${i}`, n));
  const queue: Msg[] = [];
  const bcast = (from: number, table: PaxosKnowledge | undefined): void => {
    if (!table) return;
    for (let j = 0; j < nodes.length; j++) if (j !== from) queue.push({ dst: j, table });
  };
  // A few nodes start proposing at once (duelling proposers).
  for (let i = 0; i < Math.min(reachable, 1 + rng.int(3)); i++) bcast(i, nodes[i]!.propose());
  for (let s = 0; s < steps; s++) {
    const r = rng.next();
    if (r < 0.02) {
      const i = rng.int(nodes.length);
      bcast(i, nodes[i]!.propose());
    } else if (r < 0.1) {
      const i = rng.int(nodes.length);
      bcast(i, nodes[i]!.knowledge()); // periodic full gossip
    } else if (queue.length > 0) {
      const m = queue.splice(rng.int(queue.length), 1)[0]!;
      if (rng.chance(0.1)) continue; // lost
      if (rng.chance(0.05)) queue.push(m); // duplicated
      bcast(m.dst, nodes[m.dst]!.receive(m.table));
    }
  }
  // Then a calm period: reliable full gossip until quiet.
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < nodes.length; i++) bcast(i, nodes[i]!.knowledge());
    while (queue.length > 0) {
      const m = queue.shift()!;
      bcast(m.dst, nodes[m.dst]!.receive(m.table));
    }
  }
  return nodes.map((x) => x.decided());
}

test('with any N/2+1 reachable, gossip Paxos decides one value everywhere (property)', () => {
  for (let n = 1; n <= 7; n++) {
    const quorum = Math.floor(n / 2) + 1;
    for (let reachable = quorum; reachable <= n; reachable++) {
      for (let seed = 1; seed <= 6; seed++) {
        const d = runPaxos(seed * 100 + n * 10 + reachable, n, reachable, 300);
        assert.ok(d.every((x) => x !== undefined), `n=${n} reachable=${reachable} seed=${seed}: not all decided`);
        const v = JSON.stringify(d[0]);
        assert.ok(d.every((x) => JSON.stringify(x) === v), 'agreement');
        assert.ok(d[0]!.length >= quorum, 'the value names at least a quorum of peers');
      }
    }
  }
});

test('agreement under heavy duelling even before the calm period (property)', () => {
  let decidedRuns = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const rng = new Prng(seed);
    const n = 2 + rng.int(5);
    const nodes = Array.from({ length: n }, (_, i) => new Consensus(`p${i}`, n));
    const queue: Msg[] = [];
    let decided: string | undefined;
    for (let s = 0; s < 400; s++) {
      if (rng.chance(0.15)) {
        const i = rng.int(n);
        const t = nodes[i]!.propose();
        if (t) for (let j = 0; j < n; j++) if (j !== i) queue.push({ dst: j, table: t });
      } else if (queue.length > 0) {
        const m = queue.splice(rng.int(queue.length), 1)[0]!;
        if (rng.chance(0.2)) continue;
        const out = nodes[m.dst]!.receive(m.table);
        if (out) for (let j = 0; j < n; j++) if (j !== m.dst) queue.push({ dst: j, table: out });
      }
      for (const x of nodes) {
        const d = x.decided();
        if (!d) continue;
        decided ??= JSON.stringify(d);
        assert.equal(JSON.stringify(d), decided, `seed ${seed}: two different decisions`);
      }
    }
    if (decided) decidedRuns++;
  }
  assert.ok(decidedRuns >= 10, `only ${decidedRuns}/40 runs decided: the property was barely exercised`);
});

test('with fewer than N/2+1 reachable it never decides, and status says what it waits for', () => {
  for (let n = 2; n <= 7; n++) {
    const quorum = Math.floor(n / 2) + 1;
    for (let reachable = 1; reachable < quorum; reachable++) {
      const d = runPaxos(n * 7 + reachable, n, reachable, 200);
      assert.ok(d.every((x) => x === undefined), `n=${n} reachable=${reachable} decided`);
    }
  }
  const c = new Consensus('a', 3);
  c.propose();
  c.receive({ b: { promise: null, accepted: null, value: null } });
  const s = c.status();
  assert.equal(s.quorum, 2);
  assert.equal(s.groupSize, 3);
  assert.deepEqual(s.knownPeers, ['a', 'b']);
  assert.equal(s.decided, undefined);
});

test('a single-peer group decides alone; an observer never proposes', () => {
  const c = new Consensus('solo', 1);
  c.propose();
  assert.deepEqual(c.decided(), ['solo']);
  const o = new Consensus('obs', 3, false);
  assert.equal(o.propose(), undefined);
  assert.deepEqual(o.status().knownPeers, []);
});

test('restore keeps our promises after a restart', () => {
  const a = new Consensus('a', 3);
  const b = new Consensus('b', 3);
  b.receive(a.propose());
  const saved = b.knowledge();
  const b2 = new Consensus('b', 3);
  b2.restore(saved);
  assert.deepEqual(b2.knowledge().b, saved.b);
  assert.equal(b2.knowledge().b!.promise!.proposer, 'a');
});

test('malformed consensus gossip is rejected with ConsensusError and changes nothing', () => {
  const c = new Consensus('a', 3);
  const before = JSON.stringify(c.knowledge());
  const bad: unknown[] = [
    null,
    [],
    'x',
    { b: null },
    { b: { promise: { round: -1, proposer: 'b' }, accepted: null, value: null } },
    { b: { promise: { round: 1, proposer: '' }, accepted: null, value: null } },
    { b: { promise: { round: 1, proposer: 'b' }, accepted: { round: 1, proposer: 'b' }, value: null } },
    { b: { promise: { round: 1, proposer: 'b' }, accepted: { round: 2, proposer: 'b' }, value: ['b'] } },
    { b: { promise: { round: 1, proposer: 'b' }, accepted: { round: 1, proposer: 'b' }, value: [] } },
    { b: { promise: { round: 1, proposer: 'b' }, accepted: { round: 1, proposer: 'b' }, value: [3] } },
    { '': { promise: null, accepted: null, value: null } },
  ];
  for (const b of bad) {
    assert.throws(() => c.receive(b), ConsensusError, JSON.stringify(b));
    assert.throws(() => validateKnowledge(b), ConsensusError);
  }
  assert.equal(JSON.stringify(c.knowledge()), before);
  assert.throws(() => new Consensus('a', 0), ConsensusError);
});
