/**
 * A deterministic discrete-event simulation of IPAM peers on an in-memory mesh, for property
 * tests and the benchmark. No sockets, no real timers: virtual time advances only through
 * `run()`, messages get a random latency (which reorders them), and may be lost, duplicated,
 * or blocked by partitions. Peers can crash (losing everything not yet saved) and restart
 * from their last saved state.
 */
import { Allocator, type AllocatorOptions, type GossipChannel, type Timer } from './allocator.js';
import { validatePersisted, type PersistedIpam, type Persistence } from './persist.js';

/** mulberry32: a small seeded PRNG (public-domain algorithm by Tommy Ettinger). */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

interface SimEvent {
  at: number;
  seq: number;
  run(): void;
}

export interface SimNetOptions {
  seed: number;
  /** Probability that a message is lost (default 0). */
  loss?: number;
  /** Probability that a message is delivered twice (default 0). */
  dup?: number;
  /** Latency range in ms (default [1, 20]); random latency reorders messages. */
  latency?: [number, number];
}

/** Allocator options the simulation does not provide itself. */
export type SimPeerConfig = Omit<AllocatorOptions, 'channel' | 'persistence' | 'now' | 'setTimer'>;

/** A peer's storage that survives crashes; saves from a crashed incarnation are refused. */
class SimStore {
  data: string | undefined;
  saves = 0;
  bind(peer: SimPeer, epoch: number): Persistence {
    return {
      load: async (): Promise<PersistedIpam | undefined> => (this.data === undefined ? undefined : validatePersisted(JSON.parse(this.data))),
      // A save takes a little virtual time (like fsync) and is lost if the peer crashes meanwhile.
      save: (state: PersistedIpam): Promise<void> => {
        const data = JSON.stringify(state);
        return new Promise<void>((resolve, reject) => {
          peer.net.setTimer(peer.net.rng.next() * peer.net.saveDelayMs, () => {
            if (peer.epoch !== epoch || !peer.alive) return reject(new Error('peer crashed'));
            this.data = data;
            this.saves++;
            resolve();
          });
        });
      },
    };
  }
  peek(): PersistedIpam | undefined {
    return this.data === undefined ? undefined : validatePersisted(JSON.parse(this.data));
  }
}

export class SimPeer {
  alloc: Allocator | undefined;
  epoch = 0;
  alive = false;
  /** Removed for good (rmpeer'd): never restarted. */
  removed = false;
  group = 0;
  readonly store = new SimStore();
  readonly log: string[] = [];

  constructor(
    readonly net: SimNet,
    readonly name: string,
    readonly nickname: string,
    public config: SimPeerConfig,
  ) {}

  /** Start (or restart) this peer from its saved state. */
  async boot(): Promise<void> {
    if (this.alive) throw new Error(`${this.name} is already running`);
    this.epoch++;
    this.alive = true;
    const epoch = this.epoch;
    const net = this.net;
    const live = (): boolean => this.alive && this.epoch === epoch;
    const channel: GossipChannel = {
      selfName: this.name,
      broadcast: (payload) => {
        if (live()) for (const p of net.peers.values()) if (p !== this) net.send(this, p, payload, 'update');
      },
      unicast: (dst, payload) => {
        const p = net.peers.get(dst);
        if (live() && p) net.send(this, p, payload, 'unicast');
      },
      knownPeers: () =>
        [...net.peers.values()].filter((p) => p !== this).map((p) => ({ name: p.name, nickname: p.nickname, reachable: net.reachable(this, p) })),
    };
    this.alloc = new Allocator({
      ...this.config,
      channel,
      persistence: this.store.bind(this, epoch),
      now: () => net.now,
      setTimer: (ms, fn) => net.setTimer(ms, () => live() && fn()),
      nicknameOf: (n) => net.peers.get(n)?.nickname ?? '',
      log: (m) => {
        if (this.log.length < 1000) this.log.push(m);
      },
    });
    await this.net.drive(this.alloc.start());
  }

  /** Crash: lose all in-memory state; pending operations fail. */
  crash(): void {
    if (!this.alive) return;
    this.alive = false;
    this.alloc?.close();
    this.alloc = undefined;
    this.net.reachabilityChanged();
  }
}

/** The simulated mesh and clock. */
export class SimNet {
  now = 0;
  readonly rng: Prng;
  readonly peers = new Map<string, SimPeer>();
  private events: SimEvent[] = [];
  private seq = 0;
  loss: number;
  dup: number;
  latency: [number, number];
  messages = 0;
  bytes = 0;
  /** Longest virtual time a save takes (each takes a random part of it, like a slow fsync). */
  saveDelayMs = 2;

  constructor(o: SimNetOptions) {
    this.rng = new Prng(o.seed);
    this.loss = o.loss ?? 0;
    this.dup = o.dup ?? 0;
    this.latency = o.latency ?? [1, 20];
  }

  addPeer(name: string, nickname: string, config: SimPeerConfig): SimPeer {
    const p = new SimPeer(this, name, nickname, config);
    this.peers.set(name, p);
    return p;
  }

  /**
   * The peer has left the topology (a real router forgets a dead peer once no one has
   * a connection to it): the others no longer know its name or nickname. Crash it first.
   */
  forget(p: SimPeer): void {
    if (p.alive) throw new Error(`${p.name} is still running: crash it first`);
    this.peers.delete(p.name);
  }

    reachable(a: SimPeer, b: SimPeer): boolean {
    return a.alive && b.alive && a.group === b.group;
  }

  private schedule(at: number, run: () => void): void {
    const ev: SimEvent = { at, seq: this.seq++, run };
    // Binary insertion keeps events ordered by (time, insertion order).
    let lo = 0;
    let hi = this.events.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const e = this.events[mid]!;
      if (e.at < at || (e.at === at && e.seq < ev.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.events.splice(lo, 0, ev);
  }

  setTimer(ms: number, fn: () => void): Timer {
    let live = true;
    this.schedule(this.now + Math.max(0, ms), () => {
      if (live) fn();
    });
    return { cancel: () => (live = false) };
  }

  send(src: SimPeer, dst: SimPeer, payload: Uint8Array, kind: 'update' | 'unicast' | 'full'): void {
    const copies = this.rng.chance(this.loss) ? 0 : this.rng.chance(this.dup) ? 2 : 1;
    const data = Uint8Array.from(payload);
    for (let i = 0; i < copies; i++) {
      const [lo, hi] = this.latency;
      this.schedule(this.now + lo + this.rng.next() * (hi - lo), () => {
        // A partition at delivery time drops the message (a broken TCP connection), and so does a
        // crashed receiver; a message already sent by a peer that crashed since is still delivered.
        if (src.group !== dst.group || !dst.alive || !dst.alloc) return;
        this.messages++;
        this.bytes += data.length;
        dst.alloc.onGossip(src.name, data, kind);
      });
    }
  }

  /** Every live peer gossips its full state to every other (what the router does periodically). */
  fullGossip(): void {
    for (const p of this.peers.values()) {
      if (!p.alive || !p.alloc) continue;
      const st = p.alloc.fullState();
      for (const q of this.peers.values()) if (q !== p) this.send(p, q, st, 'full');
    }
  }

  /** Tell every peer about peers it can no longer reach (the router calls onPeerGone). */
  reachabilityChanged(): void {
    for (const p of this.peers.values()) {
      if (!p.alive || !p.alloc) continue;
      for (const q of this.peers.values()) if (q !== p && !this.reachable(p, q)) p.alloc.onPeerGone(q.name);
    }
  }

  /** Put peers into partition groups (peers in the same group can talk). */
  partition(groups: Map<string, number>): void {
    for (const [n, g] of groups) this.peers.get(n)!.group = g;
    this.reachabilityChanged();
  }

  heal(): void {
    for (const p of this.peers.values()) p.group = 0;
  }

  get pendingEvents(): number {
    return this.events.length;
  }

  /**
   * Run the simulation until `p` settles and return its outcome.
   * @throws SimTimeoutError if it has not settled after maxMs of virtual time.
   */
  async drive<T>(p: Promise<T>, maxMs = 60000): Promise<T> {
    let done = false;
    p.then(
      () => (done = true),
      () => (done = true),
    );
    await flush();
    for (let t = 0; !done && t < maxMs; t += 10) await this.run(10);
    if (!done) throw new SimTimeoutError(`did not settle within ${maxMs} ms of simulated time`);
    return p;
  }

  /** Run events up to now + ms of virtual time, letting promise callbacks run after each event. */
  async run(ms: number, maxEvents = 100000): Promise<void> {
    const until = this.now + ms;
    let n = 0;
    while (this.events.length > 0 && this.events[0]!.at <= until && n < maxEvents) {
      const ev = this.events.shift()!;
      this.now = Math.max(this.now, ev.at);
      ev.run();
      n++;
      await flush();
    }
    if (this.events.length === 0 || this.events[0]!.at > until) this.now = Math.max(this.now, until);
    await flush();
  }
}

/** Raised by SimNet.drive when a promise does not settle within the virtual time limit. */
export class SimTimeoutError extends Error {
  override name = 'SimTimeoutError';
}

/** Let every queued promise callback run (a macrotask boundary drains the microtask queue). */
export function flush(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
