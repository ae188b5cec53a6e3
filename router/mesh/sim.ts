/**
 * A deterministic discrete-event simulation of N routers' mesh control plane in one
 * process (issue #20), in the style of ipam/sim.ts. Each simulated router runs the
 * real Topology, Routes and Gossip (with its batching); control connections are an
 * in-memory transport with a per-link latency (ms) and an optional loss rate; time
 * is virtual and advances only through `run()`, so no real timers are involved and
 * a seed fixes every run.
 *
 * Every message is sized with the real `encodeFrame` (so an over-limit frame throws
 * exactly as on a socket; the simulation records it and drops the message), and
 * counted per sender for the byte rates the benchmark reports.
 *
 * Connections are given, not dialled: `link(a, b)` makes an established, ready
 * connection (both ends run the router's on-ready sequence: full exchange, then the
 * local connection list changes), `unlink` drops it (both ends notice after the
 * link's latency). `leave` takes a router away with all its links; `join` adds one
 * linked to the given peers. Convergence is checked by comparing every live router's
 * table against the live routers' own entries (`converged()`).
 */
import { Prng } from '../../ipam/sim.js';
import { encodeFrame, PROTOCOL_MAX_VERSION, type ControlMessage } from './protocol.js';
import { numToPeerName, type PeerName } from './peer-name.js';
import { Topology, type PeerInfo } from './topology.js';
import { Routes } from './routes.js';
import { Gossip, type GossipNeighbour } from './gossip.js';

export { Prng };

interface SimEvent {
  at: number;
  seq: number;
  run(): void;
}

/** A binary min-heap of events by (time, sequence): equal times run in scheduling order. */
class EventQueue {
  private readonly h: SimEvent[] = [];
  get size(): number {
    return this.h.length;
  }
  push(e: SimEvent): void {
    const h = this.h;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  peek(): SimEvent | undefined {
    return this.h[0];
  }
  pop(): SimEvent | undefined {
    const h = this.h;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function less(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

export interface MeshSimOptions {
  seed: number;
  /** Link latency is drawn uniformly from [min, max] ms per link (default 1–5). */
  latencyMs?: [number, number];
  /** Probability that a control message is lost (default 0; TCP would retransmit, so this is pessimistic). */
  loss?: number;
  /** Also run the 30 s periodic exchange on every router (default false: only change-driven gossip). */
  periodic?: boolean;
  /** Periodic exchange interval, ms (default 30 000, the router's). */
  periodicMs?: number;
  /** Collect (Topology.gc) after every merge as the router does, not only once per gossip batch (default false). */
  gcEveryChange?: boolean;
  /**
   * Control protocol version each router speaks (a number for all, or per router
   * index; default PROTOCOL_MAX_VERSION). A link uses the lower of its two ends', so
   * mixed meshes (version-1 routers that take no topology deltas) can be simulated.
   */
  protocolVersion?: number | ((index: number) => number);
}

/** Message and byte counters of one simulated router, or of the whole mesh. */
export interface SimCounters {
  messages: number;
  bytes: number;
  /** Largest encoded control frame body seen, in bytes. */
  maxFrame: number;
  /** Messages that could not be encoded (over the frame limit); they are dropped. */
  oversize: number;
}

class SimConn implements GossipNeighbour {
  open = true;
  /** The control protocol version of the link (MeshSimOptions.protocolVersion). */
  readonly version: number;
  constructor(
    readonly sim: MeshSim,
    readonly from: SimRouter,
    readonly to: SimRouter,
    readonly latency: number,
  ) {
    this.version = Math.min(from.protocolVersion, to.protocolVersion);
  }
  send(m: ControlMessage): void {
    if (!this.open) return;
    this.sim.transmit(this, m);
  }
}

/** One simulated router: the real mesh cores wired to the simulated world. */
export class SimRouter {
  readonly topology: Topology;
  readonly routes: Routes;
  readonly gossip: Gossip<SimConn>;
  readonly conns = new Map<PeerName, SimConn>();
  alive = true;
  /** Holds only its own entry and ignores messages (for partial 10,000-peer runs; see seedConverged). */
  dormant = false;
  readonly counters: SimCounters = { messages: 0, bytes: 0, maxFrame: 0, oversize: 0 };
  /** Virtual time of the last change to this router's table. */
  lastChange = 0;
  /** Control protocol version it speaks (MeshSimOptions.protocolVersion). */
  readonly protocolVersion: number;

  constructor(readonly sim: MeshSim, readonly name: PeerName, readonly index: number) {
    const v = sim.opts.protocolVersion ?? PROTOCOL_MAX_VERSION;
    this.protocolVersion = typeof v === 'number' ? v : v(index);
    this.topology = new Topology({ name, nickname: `r${index}`, uid: index + 1 });
    this.routes = new Routes(this.topology);
    this.gossip = new Gossip<SimConn>({
      selfName: name,
      topology: this.topology,
      routes: this.routes,
      neighbours: () => this.conns.values(),
      neighbour: (n) => this.conns.get(n),
      topologyChanged: () => this.topologyChanged(),
      drop: () => {},
      log: (line) => sim.log(`${name}: ${line}`),
      now: () => sim.now,
      setTimer: (fn, ms) => sim.after(ms, () => {
        if (this.alive) fn();
      }),
    });
  }

  /** Local connection list changed: as the router's localConnectionsChanged (which collects at once). */
  localConnectionsChanged(): void {
    const conns = [...this.conns.keys()].map((n) => ({ name: n, address: `sim:${n}`, outbound: n > this.name, established: true }));
    if (this.topology.setLocalConnections(conns)) this.gossip.queueTopology([this.name]);
    this.topology.gc();
    this.topologyChanged();
  }

  /**
   * Gossip changed the table (a merge, or its once-per-batch gc). Unlike the router,
   * which also collects here after every merge, the simulator leaves collection to
   * gossip's batch (`Gossip.settleMerges`): one reachability walk per batch instead
   * of one per message, which is most of the simulator's CPU at 1,000 peers. With
   * `gcEveryChange` it collects here too, as the router does.
   */
  private topologyChanged(): void {
    if (this.sim.opts.gcEveryChange) this.topology.gc();
    this.lastChange = this.sim.now;
  }
}

/** The simulated mesh. */
export class MeshSim {
  now = 0;
  readonly routers: SimRouter[] = [];
  readonly rng: Prng;
  readonly totals: SimCounters = { messages: 0, bytes: 0, maxFrame: 0, oversize: 0 };
  private readonly queue = new EventQueue();
  private seq = 0;
  private readonly latency: [number, number];
  private readonly loss: number;
  private readonly periodicMs: number;
  readonly logs: string[] = [];
  private readonly sizes = new WeakMap<ControlMessage, number>();
  /** Events run so far. */
  events = 0;

  constructor(readonly opts: MeshSimOptions) {
    this.rng = new Prng(opts.seed);
    this.latency = opts.latencyMs ?? [1, 5];
    this.loss = opts.loss ?? 0;
    this.periodicMs = opts.periodicMs ?? 30_000;
  }

  log(line: string): void {
    if (this.logs.length < 1000) this.logs.push(`${this.now.toFixed(1)} ${line}`);
  }

  /** Schedules `fn` at now + ms (virtual). */
  after(ms: number, fn: () => void): void {
    this.queue.push({ at: this.now + ms, seq: this.seq++, run: fn });
  }

  /** Adds a router (not linked to anything yet). Peer names are 00:00:00:00:00:01, … */
  addRouter(): SimRouter {
    const i = this.routers.length;
    const r = new SimRouter(this, numToPeerName(i + 1), i);
    this.routers.push(r);
    if (this.opts.periodic) {
      const tick = (): void => {
        if (!r.alive) return;
        r.gossip.periodic();
        this.after(this.periodicMs, tick);
      };
      // Stagger the routers' periodic exchanges across one interval, as real launches would.
      this.after(this.rng.next() * this.periodicMs, tick);
    }
    return r;
  }

  /**
   * Connects two routers with an established connection, as if it had just become
   * ready on both ends: each sends its full exchange, then updates its own entry.
   */
  link(a: SimRouter, b: SimRouter): void {
    if (a === b || a.conns.has(b.name)) return;
    const [lo, hi] = this.latency;
    const lat = lo + this.rng.next() * (hi - lo);
    const ab = new SimConn(this, a, b, lat);
    const ba = new SimConn(this, b, a, lat);
    a.conns.set(b.name, ab);
    b.conns.set(a.name, ba);
    for (const [r, c] of [[a, ab], [b, ba]] as const) {
      r.gossip.fullExchange(c);
      r.localConnectionsChanged();
    }
  }

  /** Drops the connection between a and b: `a` notices at once, `b` after the link latency. */
  unlink(a: SimRouter, b: SimRouter): void {
    const ab = a.conns.get(b.name);
    const ba = b.conns.get(a.name);
    if (!ab || !ba) return;
    ab.open = false;
    ba.open = false;
    a.conns.delete(b.name);
    if (a.alive) a.localConnectionsChanged();
    this.after(ab.latency, () => {
      if (b.conns.get(a.name) !== ba) return;
      b.conns.delete(a.name);
      if (b.alive) b.localConnectionsChanged();
    });
  }

  /** The router stops: its connections close; each neighbour notices after the link latency. */
  leave(r: SimRouter): void {
    r.alive = false;
    for (const c of [...r.conns.values()]) this.unlink(r, c.to);
  }

  /** A new router linked to `peers`. */
  join(peers: SimRouter[]): SimRouter {
    const r = this.addRouter();
    for (const p of peers) this.link(r, p);
    return r;
  }

  /** Called by a connection: size the frame, count it, deliver after the latency (unless lost). */
  transmit(c: SimConn, m: ControlMessage): void {
    let size = this.sizes.get(m);
    try {
      // Gossip sends one message object to many neighbours: encode it once.
      if (size === undefined) this.sizes.set(m, (size = encodeFrame(m).length - 4));
    } catch (err) {
      c.from.counters.oversize++;
      this.totals.oversize++;
      this.log(`${c.from.name} -> ${c.to.name}: ${(err as Error).message}`);
      return;
    }
    for (const k of [c.from.counters, this.totals]) {
      k.messages++;
      k.bytes += size;
      if (size > k.maxFrame) k.maxFrame = size;
    }
    if (this.loss > 0 && this.rng.chance(this.loss)) return;
    const back = c.to.conns.get(c.from.name);
    this.after(c.latency, () => {
      if (!c.to.alive || c.to.dormant || !back || c.to.conns.get(c.from.name) !== back) return;
      if (m.t === 'gossip') c.to.gossip.onMessage(back, c.from.name, m);
    });
  }

  /**
   * Runs events until the queue is empty, virtual time passes `untilMs`, or
   * `maxEvents` events ran (then it throws, naming what it was waiting for).
   * @returns the virtual time reached.
   */
  run(untilMs = Infinity, maxEvents = 50_000_000): number {
    let n = 0;
    for (;;) {
      const e = this.queue.peek();
      if (e === undefined || e.at > untilMs) break;
      this.queue.pop();
      this.now = e.at;
      e.run();
      this.events++;
      if (++n > maxEvents) throw new Error(`mesh simulation still busy after ${maxEvents} events at t=${this.now.toFixed(1)} ms (waiting for gossip to settle)`);
    }
    if (untilMs !== Infinity && this.now < untilMs) this.now = untilMs;
    return this.now;
  }

  get pending(): number {
    return this.queue.size;
  }

  live(): SimRouter[] {
    return this.routers.filter((r) => r.alive);
  }

  /**
   * True iff every live router's table holds exactly the live routers, each with the
   * entry (version and uid) its owner has. Returns a one-line reason otherwise.
   */
  converged(): { ok: true } | { ok: false; reason: string } {
    const live = this.live();
    const own = new Map<PeerName, PeerInfo>();
    for (const o of live) own.set(o.name, o.topology.self());
    for (const r of live) {
      if (r.topology.size !== live.length) return { ok: false, reason: `${r.name} knows ${r.topology.size} peers, ${live.length} are live` };
      // Walk r's table (sequential) against the owners' entries (one shared map): with
      // equal sizes, every owner's entry is then held at its version and uid.
      for (const e of r.topology.allEntries()) {
        const o = own.get(e.name);
        if (o === undefined) return { ok: false, reason: `${r.name} holds ${e.name}, which is not live` };
        if (e !== o && (e.version !== o.version || e.uid !== o.uid)) {
          return { ok: false, reason: `${r.name} has ${e.name} at version ${e.version}, its owner is at ${o.version}` };
        }
      }
    }
    return { ok: true };
  }

  /** Latest virtual time any live router's table changed. */
  lastChange(): number {
    let t = 0;
    for (const r of this.live()) if (r.lastChange > t) t = r.lastChange;
    return t;
  }

  /** Zeroes the message counters (totals and per router). */
  resetCounters(): void {
    for (const k of [this.totals, ...this.routers.map((r) => r.counters)]) {
      k.messages = 0;
      k.bytes = 0;
      k.maxFrame = 0;
      k.oversize = 0;
    }
  }

  /**
   * Starts the given graph already converged, without simulating its formation:
   * links every pair in `edges` (no gossip sent), then hands every router the same
   * table. Cheap enough for 1,000 routers; see `Topology.copyFrom`.
   * @param only if given, only these routers get the table; the others are dormant
   *   (keep their own entry and ignore messages), so one router can hold a table of
   *   10,000 peers without 10,000 copies of it.
   */
  seedConverged(n: number, edges: Array<[number, number]>, only?: number[]): void {
    const [lo, hi] = this.latency;
    while (this.routers.length < n) this.addRouter();
    for (const [i, j] of edges) {
      const a = this.routers[i]!;
      const b = this.routers[j]!;
      if (a === b || a.conns.has(b.name)) continue;
      const lat = lo + this.rng.next() * (hi - lo);
      a.conns.set(b.name, new SimConn(this, a, b, lat));
      b.conns.set(a.name, new SimConn(this, b, a, lat));
    }
    for (const r of this.routers) {
      const conns = [...r.conns.keys()].map((m) => ({ name: m, address: `sim:${m}`, outbound: m > r.name, established: true }));
      r.topology.setLocalConnections(conns);
    }
    const master = this.routers[0]!.topology;
    master.merge(this.routers.slice(1).map((r) => r.topology.self()));
    // Links are symmetric, so in a connected graph every entry is reachable from every
    // router: collect once here and the copies need no gc walk of their own.
    const connected = isConnected(this.routers.length, edges);
    if (connected) master.gc();
    const keep = only === undefined ? undefined : new Set(only);
    for (const r of this.routers.slice(1)) {
      if (keep === undefined || keep.has(r.index)) r.topology.copyFrom(master, connected);
      else r.dormant = true;
    }
    if (keep !== undefined && !keep.has(0)) {
      this.routers[0]!.topology.gc();
      this.routers[0]!.dormant = true;
    }
  }
}

/** True iff the undirected graph on routers 0..n-1 with these edges is connected. */
function isConnected(n: number, edges: Array<[number, number]>): boolean {
  const adj: number[][] = Array.from({ length: n }, () => []);
  for (const [i, j] of edges) {
    adj[i]!.push(j);
    adj[j]!.push(i);
  }
  const seen = new Uint8Array(n);
  const stack = [0];
  seen[0] = 1;
  let count = n > 0 ? 1 : 0;
  while (stack.length > 0) {
    for (const m of adj[stack.pop()!]!) {
      if (seen[m]) continue;
      seen[m] = 1;
      count++;
      stack.push(m);
    }
  }
  return count === n;
}

/**
 * A join series like `bench:scale --real`'s: `n` routers added one after another,
 * each linked to router 1 and its predecessor, then `discoverMs` later to every other
 * router (discovery makes a full mesh), `gapMs` between launches; runs until settled
 * (with the periodic exchange on, two intervals after the last join).
 */
export function joinSeries(opts: MeshSimOptions, n = 30, gapMs = 1300, discoverMs = 50): MeshSim {
  const sim = new MeshSim(opts);
  const first = sim.addRouter();
  let t = 0;
  for (let i = 1; i < n; i++) {
    const r = sim.join([first, sim.routers[sim.routers.length - 1]!]);
    t += discoverMs;
    sim.run(t);
    for (const o of sim.routers) if (o !== r) sim.link(r, o);
    t += gapMs;
    sim.run(t);
  }
  sim.run(opts.periodic ? t + 2 * (opts.periodicMs ?? 30_000) : Infinity);
  return sim;
}

/** Edges of a full mesh of n routers. */
export function fullMesh(n: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) out.push([i, j]);
  return out;
}

/**
 * Edges of a connected random graph of n routers where each has about `degree`
 * connections: a ring (connectivity) plus random chords until the average degree is
 * reached. Seeded.
 */
export function randomGraph(n: number, degree: number, rng: Prng): Array<[number, number]> {
  if (degree >= n - 1) return fullMesh(n);
  const seen = new Set<number>();
  const out: Array<[number, number]> = [];
  const add = (i: number, j: number): boolean => {
    if (i === j) return false;
    const a = Math.min(i, j);
    const b = Math.max(i, j);
    const k = a * n + b;
    if (seen.has(k)) return false;
    seen.add(k);
    out.push([a, b]);
    return true;
  };
  for (let i = 0; i < n; i++) add(i, (i + 1) % n);
  const want = Math.floor((n * degree) / 2);
  let guard = 0;
  while (out.length < want && guard++ < want * 20) add(rng.int(n), rng.int(n));
  return out;
}
