/**
 * npm run bench:scale — the mesh at 10 … 10,000 simulated peers (issue #20).
 *
 * For each topology (full mesh where it fits, and degree 10) it starts a converged
 * mesh in the simulator (router/mesh/sim.ts: the real Topology, Routes and Gossip),
 * then measures, in virtual time with links of 1–5 ms:
 *  - link: one connection drops; time until every router's table has both new entries
 *  - leave: one router stops; time until every table has dropped it and holds the new entries
 *  - join: a new router connects to 2 peers; time until every table holds it and vice versa
 *  - recompute: CPU ms per routing-graph change of one router's route work (unicast, gossip tree, every next hop, 11 broadcast trees), median of 9
 *  - max frame: the largest control frame body any of the above sent
 *  - steady: control bytes/s per router (mean, busiest) of the periodic (30 s) exchange alone, over 120 virtual s
 * and prints them next to the reference numbers in bench/scale-before.json (measured
 * with the same simulator on main's mesh code), with ratios.
 *
 * Options: --sizes 10,100 (subset), --json (print the rows as JSON, e.g. to refresh
 * the reference file), --seed N, --real N (N real routers in network namespaces
 * instead, see scale-real.ts; root; add --sizes to run the simulation as well),
 * --idle-seconds S (CPU sampling interval of --real, default 30), --hold S (keep the
 * --real mesh up S more seconds after sampling, at most 1800, to inspect it by hand:
 * the log names each router's namespace and pid).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { MeshSim, fullMesh, joinSeries, randomGraph, Prng, type SimRouter } from '../router/mesh/sim.js';
import { MAX_FRAME_BYTES } from '../router/mesh/protocol.js';
import { runReal, formatReal } from './scale-real.js';

export interface ScaleRow {
  n: number;
  graph: string;
  linkMs: number | null;
  leaveMs: number | null;
  joinMs: number | null;
  recomputeMs: number | null;
  maxFrame: number | null;
  oversize: number;
  steadyBps: number | null;
  /** Busiest router's steady-state gossip, bytes/s. */
  steadyMaxBps?: number | null;
  changeMessages: number | null;
  /** Control bytes sent by all routers for the link change. */
  changeBytes?: number | null;
  /** The same with whole topology entries (control protocol 1), same run. */
  changeBytesV1?: number | null;
  note?: string;
}

function settle(sim: MeshSim, what: string): number {
  const t0 = sim.now;
  sim.run();
  const c = sim.converged();
  if (!c.ok) throw new Error(`${what}: not converged: ${c.reason}`);
  return Math.max(0, sim.lastChange() - t0);
}

/**
 * CPU ms (user + system; CPU rather than wall time, since the machine is shared) of
 * what one router computes from its routes after a change of the routing graph:
 * `Routes.recalculate` (unicast), the topology-gossip tree, a next-hop lookup for
 * every peer (as the data path's table rebuild does) and the broadcast trees of self
 * and of 10 other sources. Median over 9 changes, each one of `r`'s own links going
 * down (then back up, unmeasured).
 */
function timeRecompute(r: SimRouter): number {
  const conns = r.topology.self().connections;
  const names = [...r.topology.names()];
  const sources = names.filter((_, i) => i % Math.max(1, Math.floor(names.length / 10)) === 0).slice(0, 10);
  const xs: number[] = [];
  for (let k = 0; k < 9; k++) {
    const down = conns[k % conns.length]!.name;
    r.topology.setLocalConnections(conns.map((c) => ({ ...c, established: c.name !== down })));
    const t = process.cpuUsage();
    r.routes.recalculate();
    r.routes.gossipNeighbours();
    for (const n of names) r.routes.unicast(n);
    r.routes.broadcast(r.name);
    for (const s of sources) r.routes.broadcast(s);
    const d = process.cpuUsage(t);
    xs.push((d.user + d.system) / 1000);
    r.topology.setLocalConnections(conns.map((c) => ({ ...c })));
  }
  xs.sort((a, b) => a - b);
  return xs[4]!;
}

/**
 * Steady-state gossip: a converged mesh running only the periodic exchange (30 s,
 * staggered), measured over `seconds` of virtual time after one interval of warm-up.
 * @returns control bytes sent per second per router (mean and the busiest router).
 */
function steadyGossip(n: number, edges: Array<[number, number]>, seed: number, seconds = 120): { mean: number; max: number } {
  const sim = new MeshSim({ seed, periodic: true });
  sim.seedConverged(n, edges);
  sim.run(30_000);
  sim.resetCounters();
  sim.run(sim.now + seconds * 1000);
  let max = 0;
  for (const r of sim.routers) max = Math.max(max, r.counters.bytes);
  return { mean: sim.totals.bytes / n / seconds, max: max / seconds };
}

/**
 * 10,000 peers: one router holds the table (the others are dormant, since 10,000
 * copies of a 10,000-entry table do not fit one process); a new router joins it.
 * Reports that join's time and frames, and the route recompute on the full table.
 */
function measurePartial(n: number, seed: number): ScaleRow {
  const sim = new MeshSim({ seed });
  const rng = new Prng(seed ^ 0x5eed);
  sim.seedConverged(n, randomGraph(n, 10, rng), [0]);
  const r0 = sim.routers[0]!;
  r0.topology.setLocalConnections(r0.topology.self().connections.map((c) => ({ ...c, established: false })));
  r0.topology.setLocalConnections(r0.topology.self().connections.map((c) => ({ ...c, established: true })));
  const recomputeMs = timeRecompute(r0);
  sim.run();
  sim.resetCounters();
  const t0 = sim.now;
  const j = sim.join([r0]);
  sim.run();
  if (j.topology.size !== r0.topology.size) throw new Error(`10,000-peer join: the new router knows ${j.topology.size} of ${r0.topology.size} peers`);
  const joinMs = Math.max(j.lastChange, r0.lastChange) - t0;
  const maxFrame = sim.totals.maxFrame;
  const oversize = sim.totals.oversize;
  sim.resetCounters();
  r0.gossip.periodic();
  const steadyBps = r0.counters.bytes / 30;
  return { n, graph: 'degree 10', linkMs: null, leaveMs: null, joinMs, recomputeMs, maxFrame: Math.max(maxFrame, sim.totals.maxFrame), oversize: oversize + sim.totals.oversize, steadyBps, steadyMaxBps: steadyBps, changeMessages: null,
    note: 'one router holds the table; join = a new router learning all 10,000 entries from it (no bandwidth model: chunks arrive one link latency later); steady gossip = that router\'s periodic exchange' };
}

/** Control bytes all routers send for one link change in a converged mesh, at control protocol `version` (1: whole topology entries, 2: deltas). */
function linkChangeBytes(n: number, graph: 'full' | 'deg10', seed: number, version: number): number {
  const sim = new MeshSim({ seed, protocolVersion: version });
  const edges = graph === 'full' ? fullMesh(n) : randomGraph(n, 10, new Prng(seed ^ 0x5eed));
  sim.seedConverged(n, edges);
  sim.run();
  sim.resetCounters();
  const [i, j] = edges[edges.length - 1]!;
  sim.unlink(sim.routers[i]!, sim.routers[j]!);
  settle(sim, `link change (protocol ${version})`);
  return sim.totals.bytes;
}

/** One topology's measurements. */
export function measure(n: number, graph: 'full' | 'deg10', seed: number): ScaleRow {
  if (n > 1000) return measurePartial(n, seed);
  const sim = new MeshSim({ seed });
  const rng = new Prng(seed ^ 0x5eed);
  const edges = graph === 'full' ? fullMesh(n) : randomGraph(n, 10, rng);
  sim.seedConverged(n, edges);
  sim.routers[1]!.routes.recalculate();
  sim.run();
  sim.resetCounters();
  const row: ScaleRow = { n, graph: graph === 'full' ? 'full mesh' : 'degree 10', linkMs: null, leaveMs: null, joinMs: null, recomputeMs: null, maxFrame: null, oversize: 0, steadyBps: null, changeMessages: null };

  // Link change: drop a connection that is not on the sampled router.
  const [i, j] = edges[edges.length - 1]!;
  sim.unlink(sim.routers[i]!, sim.routers[j]!);
  row.linkMs = settle(sim, 'link change');
  row.changeMessages = sim.totals.messages;
  row.changeBytes = sim.totals.bytes;
  row.changeBytesV1 = linkChangeBytes(n, graph, seed, 1);

  // A leave or join in a big full mesh changes ~N entries, each still flooded to every
  // neighbour (N³ messages): not simulated there (see the issue notes).
  const big = graph === 'full' && n >= 300;
  if (!big) {
    sim.leave(sim.routers[n - 2]!);
    row.leaveMs = settle(sim, 'peer leave');
    const live = sim.live();
    sim.join([live[rng.int(live.length)]!, live[rng.int(live.length)]!]);
    row.joinMs = settle(sim, 'peer join');
  } else {
    row.note = 'leave/join not simulated: every router\'s routing graph changes ~N times (simulator CPU, not messages)';
  }
  row.maxFrame = sim.totals.maxFrame;
  row.oversize = sim.totals.oversize;
  // Last, since it changes router 1's entry without gossiping it.
  row.recomputeMs = timeRecompute(sim.routers[1]!);

  // Steady state: the periodic exchange only, every router, over 120 s of virtual time.
  const steady = steadyGossip(n, edges, seed);
  row.steadyBps = steady.mean;
  row.steadyMaxBps = steady.max;
  return row;
}

const fmtMs = (x: number | null): string => (x === null ? '—' : x < 10 ? x.toFixed(2) : x.toFixed(0));
const fmtBytes = (x: number | null): string => (x === null ? '—' : x >= 1 << 20 ? `${(x / (1 << 20)).toFixed(2)} MiB` : x >= 1024 ? `${(x / 1024).toFixed(1)} KiB` : `${x.toFixed(0)} B`);
function ratio(after: number | null, before: number | null | undefined): string {
  if (after === null || before === null || before === undefined) return '';
  if (after === 0) return before === 0 ? ' (=)' : ' (→0)';
  return ` (${(before / after).toFixed(1)}× less)`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { sizes: { type: 'string' }, json: { type: 'boolean' }, seed: { type: 'string' }, real: { type: 'string' }, 'idle-seconds': { type: 'string' }, hold: { type: 'string' } } });
  if (values.real !== undefined) {
    const hold = Number(values.hold ?? 0);
    if (!Number.isInteger(hold) || hold < 0 || hold > 1800) throw new Error('--hold wants whole seconds, 0 … 1800');
    const r = await runReal(Number(values.real), Number(values['idle-seconds'] ?? 30), undefined, hold);
    if (values.json) console.log(JSON.stringify(r));
    else for (const l of formatReal(r)) console.log(l);
    if (values.sizes === undefined) return;
  }
  const seed = Number(values.seed ?? 20);
  const plan: Array<[number, 'full' | 'deg10']> = [[10, 'full'], [100, 'full'], [300, 'full'], [100, 'deg10'], [300, 'deg10'], [1000, 'deg10'], [10_000, 'deg10']];
  const sizes = values.sizes ? new Set(values.sizes.split(',').map(Number)) : undefined;
  let before: ScaleRow[] = [];
  try {
    const here = dirname(fileURLToPath(import.meta.url));
    before = JSON.parse(readFileSync(join(here, '..', '..', 'bench', 'scale-before.json'), 'utf8')) as ScaleRow[];
  } catch {
    console.error('bench:scale: bench/scale-before.json not found or unreadable; printing without reference numbers');
  }
  const rows: ScaleRow[] = [];
  for (const [n, g] of plan) {
    if (sizes && !sizes.has(n)) continue;
    const t = performance.now();
    const row = measure(n, g, seed);
    rows.push(row);
    if (values.json) console.error(JSON.stringify(row));
    if (!values.json) console.error(`  measured ${n} ${row.graph} in ${((performance.now() - t) / 1000).toFixed(1)} s wall`);
  }
  if (values.json) {
    console.log(JSON.stringify(rows, null, 1));
    return;
  }
  console.log(`mesh simulation, links 1–5 ms, seed ${seed}; frame limit ${MAX_FRAME_BYTES} B; "before" = bench/scale-before.json (main's mesh code, same simulator)`);
  console.log('| N | graph | link change ms | peer leave ms | peer join ms | route recompute CPU ms | max frame | steady gossip /s per peer (busiest) | messages per link change | bytes per link change (whole entries, protocol 1) |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  const notes: string[] = [];
  for (const r of rows) {
    const b = before.find((x) => x.n === r.n && x.graph === r.graph);
    const two = (a: string, bb: string | undefined): string => (bb === undefined ? a : `${a} (before ${bb})`);
    if (r.note) notes.push(`${r.n} ${r.graph}: ${r.note}`);
    console.log(`| ${r.n} | ${r.graph} | ${two(fmtMs(r.linkMs), b && fmtMs(b.linkMs))} | ${two(fmtMs(r.leaveMs), b && fmtMs(b.leaveMs))} | ${two(fmtMs(r.joinMs), b && fmtMs(b.joinMs))} | ${two(fmtMs(r.recomputeMs), b && fmtMs(b.recomputeMs))}${ratio(r.recomputeMs, b?.recomputeMs)} | ${two(fmtBytes(r.maxFrame), b && fmtBytes(b.maxFrame))}${r.oversize ? ` ${r.oversize} over limit` : ''} | ${two(fmtBytes(r.steadyBps), b && fmtBytes(b.steadyBps))}${ratio(r.steadyBps, b?.steadyBps)}${r.steadyMaxBps == null ? '' : ` (${fmtBytes(r.steadyMaxBps)})`} | ${two(r.changeMessages === null ? '—' : String(r.changeMessages), b && b.changeMessages !== null ? String(b.changeMessages) : undefined)} | ${fmtBytes(r.changeBytes ?? null)}${r.changeBytesV1 == null ? '' : ` (${fmtBytes(r.changeBytesV1)})`} |`);
  }
  for (const x of notes) console.log(`note: ${x}`);
  // Topology deltas (control protocol 2) against whole entries (protocol 1), same run.
  const series = [1, 2].map((v) => {
    const sim = joinSeries({ seed, protocolVersion: v });
    if (!sim.converged().ok) throw new Error(`join series (protocol ${v}) did not converge`);
    return sim.totals;
  });
  console.log(`join series (30 routers one after another, each then linked to all: a full mesh): control bytes ${fmtBytes(series[1]!.bytes)} in ${series[1]!.messages} messages with topology deltas, ${fmtBytes(series[0]!.bytes)} in ${series[0]!.messages} with whole entries (protocol 1), ${(series[0]!.bytes / series[1]!.bytes).toFixed(1)}× less`);
  console.log('times are virtual ms (links 1–5 ms, 10 ms gossip batch); recompute = CPU ms per routing-graph change of Routes.recalculate + gossip tree + next hop of every peer + 11 broadcast trees, median of 9 (reference file: one recalculate(), wall ms on a quieter machine); steady gossip = control bytes sent per router per second by the 30 s periodic exchange over 120 virtual s (mesh topology only: no IPAM/DNS channels in the simulator)');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) => {
    console.error(`bench:scale: ${(err as Error).message}`);
    process.exit(1);
  });
}
