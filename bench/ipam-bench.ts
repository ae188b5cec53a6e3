/**
 * IPAM benchmark (a script, not a test): prints
 *  1. allocations/s on one peer without network (raw Space, and through the Allocator with a no-op store),
 *  2. time for 3 peers to reach consensus in the simulated mesh (virtual ms, and wall ms),
 *  3. ring size (entries, encoded bytes) and encode/decode/merge times with 1,000 peers.
 * Run: node dist/bench/ipam-bench.js
 */
import { performance } from 'node:perf_hooks';
import { Allocator, type GossipChannel } from '../ipam/allocator.js';
import { parseCidr } from '../ipam/cidr.js';
import { Ring } from '../ipam/ring.js';
import { Space } from '../ipam/space.js';
import { Prng, SimNet } from '../ipam/sim.js';
import type { Persistence } from '../ipam/persist.js';

const RANGE = '10.32.0.0/12';
const R = parseCidr(RANGE);

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function benchSpace(): Promise<void> {
  const s = new Space();
  s.setOwned([[R.start, R.start + R.size]]);
  const n = 200_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) s.allocate(`c${i}`, R.start + 1, R.start + R.size - 1, 12);
  const t1 = performance.now();
  // Free every other address of the first 20,000, then fill the holes again: lowest-free search
  // over 10,000 fragmented runs (each refill also splices the run arrays).
  const holes = 10_000;
  for (let i = 0; i < 2 * holes; i += 2) s.free(R.start + 1 + i);
  const t2 = performance.now();
  for (let i = 0; i < holes; i++) s.allocate(`d${i}`, R.start + 1, R.start + R.size - 1, 12);
  const t3 = performance.now();
  console.log(`space (pure, no persistence): ${fmt(n)} allocations in ${fmt(t1 - t0, 1)} ms = ${fmt(n / ((t1 - t0) / 1000))}/s; ` +
    `refilling ${fmt(holes)} holes among ${fmt(n)} allocations: ${fmt(holes / ((t3 - t2) / 1000))}/s`);
}

async function benchAllocator(): Promise<void> {
  const channel: GossipChannel = { selfName: 'aa:00:00:00:00:01', broadcast: () => undefined, unicast: () => undefined, knownPeers: () => [] };
  let saves = 0;
  const persistence: Persistence = { load: async () => undefined, save: async () => void saves++ };
  const a = new Allocator({
    range: RANGE,
    init: { mode: 'seed', peers: [channel.selfName] },
    channel,
    persistence,
    now: () => performance.now(),
    setTimer: (ms, fn) => {
      const t = setTimeout(fn, ms);
      return { cancel: () => clearTimeout(t) };
    },
  });
  await a.start();
  for (const n of [1_000, 5_000]) {
    saves = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await a.allocate(`s${n}-${i}`);
    const t1 = performance.now();
    console.log(`allocator, one at a time, ${fmt(n)} allocations (state grows to ${fmt(a.inspect().allocations.length)}): ${fmt(n / ((t1 - t0) / 1000))}/s (${saves} saves)`);
  }
  const batch = 10_000;
  saves = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: batch }, (_, i) => a.allocate(`b${i}`)));
  const t1 = performance.now();
  console.log(`allocator, ${fmt(batch)} concurrent requests: ${fmt(batch / ((t1 - t0) / 1000))}/s (${saves} coalesced saves)`);
  a.close();
}

async function benchConsensus(): Promise<void> {
  for (const loss of [0, 0.1]) {
    const virt: number[] = [];
    const wall: number[] = [];
    const msgs: number[] = [];
    for (let seed = 1; seed <= 20; seed++) {
      const net = new SimNet({ seed, loss, latency: [1, 20] });
      const peers = [1, 2, 3].map((i) => net.addPeer(`aa:00:00:00:00:0${i}`, `h${i}`, { range: RANGE, init: { mode: 'consensus', quorum: 3 } }));
      for (const p of peers) await p.boot();
      const w0 = performance.now();
      const v0 = net.now;
      const m0 = net.messages;
      // Every peer asks at once (e.g. three `weave attach` right after launch): duelling proposers.
      const all = Promise.all(peers.map((p) => p.alloc!.prime()));
      let done = false;
      void all.then(() => (done = true));
      // 1 ms steps until every peer has the ring.
      while (!done || peers.some((p) => p.alloc!.inspect().ring.isEmpty())) await net.run(1);
      virt.push(net.now - v0);
      wall.push(performance.now() - w0);
      msgs.push(net.messages - m0);
      for (const p of peers) p.crash();
    }
    console.log(`consensus, 3 peers, latency 1-20 ms, loss ${loss * 100}%: simulated time median ${fmt(median(virt))} ms, max ${fmt(Math.max(...virt))} ms; ` +
      `wall median ${fmt(median(wall), 1)} ms; messages median ${median(msgs)}`);
  }
}

async function benchRing(): Promise<void> {
  const rng = new Prng(42);
  const names = Array.from({ length: 1000 }, (_, i) => `aa:bb:cc:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`);
  const ring = Ring.seed(R.start, R.size, names);
  // Churn: 3,000 donations of aligned blocks between random peers, as allocations move space around.
  let donations = 0;
  for (let k = 0; k < 3000; k++) {
    const from = rng.pick(names);
    const owned = ring.ownedRanges(from);
    if (owned.length === 0) continue;
    const [s, e] = rng.pick(owned);
    let size = 1;
    while (size * 2 <= (e - s) / 2) size *= 2;
    const start = Math.ceil(s / size) * size;
    if (start + size > e) continue;
    let to = rng.pick(names);
    while (to === from) to = rng.pick(names);
    ring.give(from, start, size, to);
    donations++;
  }
  ring.checkInvariants();
  const bytes = ring.encode();
  const iters = 50;
  let t0 = performance.now();
  for (let i = 0; i < iters; i++) ring.encode();
  const enc = (performance.now() - t0) / iters;
  t0 = performance.now();
  for (let i = 0; i < iters; i++) Ring.decode(bytes);
  const dec = (performance.now() - t0) / iters;
  // A peer receiving an update: its copy is behind by 100 free-hint changes and 20 donations.
  const behind = ring.clone();
  const ahead = ring.clone();
  for (let k = 0; k < 100; k++) {
    const p = rng.pick(names);
    ahead.updateFree(p, (s, e) => rng.int(e - s + 1));
  }
  const aheadBytes = ahead.encode();
  t0 = performance.now();
  let changed = false;
  for (let i = 0; i < iters; i++) {
    const mine = behind.clone();
    changed = mine.merge(Ring.decode(aheadBytes), names[0]) || changed;
  }
  const mergeDecode = (performance.now() - t0) / iters;
  const other = Ring.decode(aheadBytes);
  t0 = performance.now();
  for (let i = 0; i < iters; i++) behind.clone().merge(other, names[0]);
  const merge = (performance.now() - t0) / iters;
  t0 = performance.now();
  for (let i = 0; i < iters; i++) ring.clone().merge(ring, names[0]);
  const mergeSame = (performance.now() - t0) / iters;
  console.log(`ring, 1,000 peers after ${fmt(donations)} donations: ${fmt(ring.length)} entries, ${fmt(bytes.length)} bytes encoded (${fmt(bytes.length / ring.length, 1)} B/entry)`);
  console.log(`ring, 1,000 peers: encode ${fmt(enc, 2)} ms, decode+validate ${fmt(dec, 2)} ms, merge ${fmt(merge, 2)} ms (decode+merge ${fmt(mergeDecode, 2)} ms, changed=${changed}), merge of an identical ring ${fmt(mergeSame, 2)} ms`);
}

async function main(): Promise<void> {
  console.log(`# IPAM benchmark (node ${process.version})`);
  await benchSpace();
  await benchAllocator();
  await benchConsensus();
  await benchRing();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
