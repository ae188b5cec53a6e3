/**
 * Gossip over the mesh's control connections: the topology channel (peer entries,
 * merged by Topology) and the channel registry other subsystems use (IPAM's ring,
 * DNS, …), after weaveworks/mesh's Gossip/Gossiper split. A channel sees bytes only;
 * this module decides who gets them:
 *  - topology changes are batched for 10 ms (flushes at least 50 ms apart while
 *    changes keep coming) and travel over one spanning tree of the
 *    mesh (Routes.gossipNeighbours: the BFS tree rooted at the smallest peer name, the
 *    same at every peer holding the same table), so one change costs about one
 *    message per peer instead of one per connection (issue #20). Each peer remembers,
 *    per recently changed entry, which connections already have that version (they
 *    sent it to us, or we sent it to them: weaveworks/mesh suppresses gossip a
 *    connection already knows in the same spirit) and, whenever its table (and so
 *    its tree) changes, sends every recent entry to the tree neighbours — and to ready
 *    connections that are not yet edges of the graph — that lack it. While peers'
 *    views differ their trees may too; once the views agree every peer has checked
 *    its final tree neighbours, so the change reaches the whole component without
 *    waiting for the periodic exchange. Loss is repaired by the periodic digest.
 *    An entry that arrives before any entry that lists its owner (a receiver's gc
 *    would drop it) is held back for a while and merged again after the next change;
 *  - topology entries travel in chunks of at most TOPOLOGY_CHUNK_BYTES (a chunk is a
 *    msgpack array of entries, in `Topology.reachOrder` so the receiver's gc keeps
 *    every chunk), so no table size (up to MAX_TOPOLOGY_PEERS) needs a big frame;
 *  - the full exchange is anti-entropy rather than the whole table (issue #20): a new
 *    neighbour gets our summary ({s: [[name, version, uid], …]}) and answers with the
 *    entries we lack; the periodic exchange sends only a 16-byte digest of the summary
 *    ({d: bytes}), and a neighbour whose digest differs answers with its summary.
 *    (weaveworks/mesh sends whole tables; this is the digest/summary exchange of
 *    classic anti-entropy gossip, Demers et al. 1987.) A topology payload that is an
 *    array is entries, as before;
 *  - a channel's `broadcast` goes to every neighbour, and a received update is
 *    relayed along the origin's broadcast tree (routes.ts), so each peer gets it;
 *  - `unicast` follows unicast routes hop by hop;
 *  - a full exchange (topology and each channel's full state) goes to a new
 *    neighbour and to all of them every 30 s, repairing anything lost.
 * The actor needs only a way to reach neighbours (`GossipHost`), so the mesh
 * simulator can drive it over an in-memory transport.
 */
import { createHash } from 'node:crypto';
import { pack } from 'msgpackr';
import type { Topology } from './topology.js';
import type { Routes } from './routes.js';
import { unpackBounded, type ControlMessage } from './protocol.js';
import { BUDGETS } from './msgpack-budget.js';
import { RecentEntries } from './gossip-batch.js';
import type { PeerInfo } from './topology.js';
import { monoNow } from './mono-clock.js';
import { applyDelta, decodeDelta, encodeDelta } from './topology-delta.js';
import { isPeerName, type PeerName } from './peer-name.js';
import { MAX_TOPOLOGY_PEERS, TopologyError } from './topology.js';

/** A gossip channel's handler (mesh's Gossiper): topology-agnostic, bytes in and out. */
export interface GossipHandler {
  onGossip(src: PeerName, payload: Uint8Array, kind: 'full' | 'update' | 'unicast'): void;
  /** Full state for the periodic exchange with neighbours, if any. */
  fullState(): Uint8Array | undefined;
}

/** What a subsystem (IPAM, DNS) gets to talk over the mesh. */
export interface GossipChannel {
  readonly selfName: string;
  broadcast(payload: Uint8Array): void;
  unicast(dst: string, payload: Uint8Array): void;
  knownPeers(): Array<{ name: string; nickname: string; reachable: boolean }>;
}

/** A neighbour's control connection, as gossip sees it. */
export interface GossipNeighbour {
  send(m: ControlMessage): void;
  /**
   * Control protocol version agreed with this neighbour (protocol.ts); from
   * TOPOLOGY_DELTA_VERSION on it takes topology deltas (`{x}`) and asks for whole
   * entries (`{w}`). Absent means 1.
   */
  readonly version?: number;
}

/** What gossip needs from the router. */
export interface GossipHost<C extends GossipNeighbour> {
  readonly selfName: PeerName;
  readonly topology: Topology;
  readonly routes: Routes;
  /** Ready connections, one per neighbour. */
  neighbours(): Iterable<C>;
  neighbour(name: PeerName): C | undefined;
  /** Peer entries changed by a merge (the router recomputes routes, emits events). */
  topologyChanged(): void;
  drop(reason: string): void;
  log(line: string): void;
  /**
   * Runs `fn` once after `ms` milliseconds (the batch window). Optional: the router
   * leaves it out and gets an unref'd setTimeout; the mesh simulator injects its
   * virtual clock here.
   */
  setTimer?(fn: () => void, ms: number): void;
  /** Milliseconds clock (default Date.now; the simulator's virtual clock). */
  now?(): number;
}

type GossipMessage = Extract<ControlMessage, { t: 'gossip' }>;

/** First control protocol version whose peers take topology deltas and `{w}` requests. */
export const TOPOLOGY_DELTA_VERSION = 2;

/** Delay that batches topology changes into one update (ms). */
export const TOPOLOGY_BATCH_MS = 10;
/**
 * Least time between two topology flushes (ms). Under a burst of changes the root of
 * the gossip tree (the hub of a full mesh) otherwise wrote to every neighbour every
 * batch window: ~45 % of its CPU in socket writes during a 30-router join series.
 */
export const TOPOLOGY_FLUSH_INTERVAL_MS = 50;
/** Budget for the encoded entries of one topology message (bytes); one entry bigger than this goes alone. */
export const TOPOLOGY_CHUNK_BYTES = 256 * 1024;
/** How long a changed entry is re-checked against the gossip tree, and an unreachable one held back (ms). */
export const RECENT_ENTRY_MS = 10_000;
/** At most this many entries are held back as not yet reachable. */
const MAX_ORPHANS = 1024;

/** msgpack array header for `n` items (msgpack spec: fixarray, array 16, array 32). */
function arrayHeader(n: number): Buffer {
  if (n < 16) return Buffer.from([0x90 | n]);
  if (n < 0x10000) return Buffer.from([0xdc, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = 0xdd;
  b.writeUInt32BE(n, 1);
  return b;
}

/** Encoded frozen entries (weakly held: gone with the entry's version). */
const ENCODED = new WeakMap<object, Buffer>();

/**
 * Encodes entries as msgpack arrays of at most `budget` bytes of entries each (an
 * entry larger than the budget makes a chunk of its own). Order is kept.
 * @returns the payloads (each decodes to an array of entries); [] for no entries.
 */
export function chunkEntries(entries: readonly unknown[], budget = TOPOLOGY_CHUNK_BYTES): Buffer[] {
  const out: Buffer[] = [];
  // Topology entries are frozen (topology.ts): one encoding per entry version, however
  // many neighbours and flushes it goes to. (A join wave sends each new version of every
  // router's entry to several neighbours; packing was ~10 % of a router's CPU in it.)
  const encode = (e: unknown): Buffer => {
    if (typeof e !== 'object' || e === null || !Object.isFrozen(e)) return pack(e);
    let b = ENCODED.get(e);
    if (b === undefined) {
      // A copy of its own (not from Buffer's shared pool): pack's result is a view of
      // msgpackr's output buffer, which a cached view would keep alive whole.
      const p = pack(e);
      b = Buffer.allocUnsafeSlow(p.length);
      p.copy(b);
      ENCODED.set(e, b);
    }
    return b;
  };
  let parts: Buffer[] = [];
  let size = 0;
  const flush = (): void => {
    if (parts.length === 0) return;
    out.push(Buffer.concat([arrayHeader(parts.length), ...parts]));
    parts = [];
    size = 0;
  };
  for (const e of entries) {
    const b = encode(e);
    if (size > 0 && size + b.length > budget) flush();
    parts.push(b);
    size += b.length;
  }
  flush();
  return out;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
}

export class Gossip<C extends GossipNeighbour> {
  private readonly channels = new Map<string, GossipHandler>();
  private readonly recent = new RecentEntries<C, PeerInfo>(RECENT_ENTRY_MS);
  private flushPending = false;
  /** When the last topology flush ran (ms, `now()`'s clock). */
  private lastFlushAt = -Infinity;
  /** Entries our gc dropped on arrival (no entry we hold lists their owner yet), by name. */
  private readonly orphans = new Map<PeerName, { entry: PeerInfo; at: number }>();
  /** Entries merged since the last flush and the connections that sent them; see `settleMerges`. */
  private merged = new Map<PeerName, { entry: PeerInfo; from: Set<C> }>();
  private digestCache: { gen: number; digest: Buffer } | undefined;
  /** Messages and payload bytes received per channel. */
  readonly stats = {
    messages: {} as Record<string, number>,
    bytes: {} as Record<string, number>,
    /** Topology deltas sent, deltas applied on receipt, and whole entries asked for because a delta's base was not held. */
    deltas: { sent: 0, applied: 0, wanted: 0 },
  };

  constructor(private readonly host: GossipHost<C>) {}

  /** Register a gossip channel (e.g. 'ipam') and get its handle onto the mesh. */
  registerChannel(name: string, handler: GossipHandler): GossipChannel {
    if (name === 'topology' || this.channels.has(name)) throw new Error(`gossip channel ${name} is already registered`);
    this.channels.set(name, handler);
    const h = this.host;
    return {
      selfName: h.selfName,
      broadcast: (payload) => {
        const m: ControlMessage = { t: 'gossip', channel: name, kind: 'update', src: h.selfName, payload };
        // Send to every neighbour (not only our tree): a neighbour whose UDP path is
        // not up yet is still reachable over TCP, and duplicates are harmless (merge).
        for (const c of h.neighbours()) c.send(m);
      },
      unicast: (dst, payload) => {
        this.relayUnicast({ t: 'gossip', channel: name, kind: 'unicast', src: h.selfName, dst, payload });
      },
      knownPeers: () => h.topology.peers().map((p) => ({ name: p.name, nickname: p.nickname, reachable: p.name === h.selfName || h.routes.unicast(p.name) !== undefined })),
    };
  }

  /**
   * Peer entries changed (ours, or merged ones that must travel on): they are sent
   * after the batch window to the gossip-tree neighbours (and not-yet-graph
   * connections) that lack them.
   * @param from the connection they came from (it has them), if any
   */
  queueTopology(names: Iterable<PeerName>, from?: C): void {
    const t = this.host.topology;
    const now = this.now();
    for (const n of names) {
      const e = t.get(n);
      if (e !== undefined) this.recent.changed(n, e, now, from);
    }
    this.scheduleFlush();
  }

  private now(): number {
    return this.host.now ? this.host.now() : monoNow();
  }

  private scheduleFlush(): void {
    if (this.flushPending) return;
    this.flushPending = true;
    const run = (): void => {
      this.flushPending = false;
      this.lastFlushAt = this.now();
      this.flushTopology();
    };
    // The first change after a quiet spell waits one batch window; while changes keep
    // coming (a join: every peer's entry changes within about a second) flushes are at
    // least TOPOLOGY_FLUSH_INTERVAL_MS apart, so each neighbour gets one write per
    // interval instead of one per window.
    const ms = Math.max(TOPOLOGY_BATCH_MS, this.lastFlushAt + TOPOLOGY_FLUSH_INTERVAL_MS - this.now());
    if (this.host.setTimer) this.host.setTimer(run, ms);
    else setTimeout(run, ms).unref();
  }

  /** Sends every recent entry to each gossip-tree neighbour (or non-graph connection) that lacks it. */
  private flushTopology(): void {
    const h = this.host;
    const t = h.topology;
    const now = this.now();
    this.settleMerges(now);
    this.recent.expire(now, (n, e) => t.get(n) === e);
    for (const [n, o] of this.orphans) if (now - o.at > RECENT_ENTRY_MS) this.orphans.delete(n);
    if (this.recent.size === 0) return;
    const targets = new Set<C>();
    for (const n of h.routes.gossipNeighbours()) {
      const c = h.neighbour(n);
      if (c) targets.add(c);
    }
    // Ready connections that are not (yet) edges of the graph get everything too.
    const graph = new Set<C>();
    for (const n of t.neighbourRow(h.selfName)) {
      const c = h.neighbour(n);
      if (c) graph.add(c);
    }
    for (const c of h.neighbours()) if (!graph.has(c)) targets.add(c);
    const sent = new Map<string, ControlMessage[]>();
    for (const c of targets) {
      const names = this.recent.missing(c);
      if (names.length === 0) continue;
      // Only the difference from the version the entry replaced: to a neighbour known
      // to hold it, and otherwise on the bet that it does (a converged neighbour holds
      // it; one that does not asks for the whole entry).
      const { whole, deltas, deltaNames } = this.splitDeltas(c, names as PeerName[], (n) => this.recent.base(n, c) ?? t.previous(n));
      const key = `${whole.join(',')}/${deltaNames.join(',')}`;
      let msgs = sent.get(key);
      if (msgs === undefined) sent.set(key, (msgs = [...this.entryMessages('update', whole), ...this.deltaMessages(deltas)]));
      this.stats.deltas.sent += deltas.length;
      for (const m of msgs) c.send(m);
    }
  }

  /**
   * Which of `names` go to `c` as deltas (from the version `base` gives, when `c`
   * takes deltas and the difference is worth it) and which whole.
   */
  private splitDeltas(c: C, names: readonly PeerName[], base: (n: PeerName) => PeerInfo | undefined): { whole: PeerName[]; deltas: Buffer[]; deltaNames: PeerName[] } {
    const t = this.host.topology;
    const takes = (c.version ?? 1) >= TOPOLOGY_DELTA_VERSION;
    const whole: PeerName[] = [];
    const deltas: Buffer[] = [];
    const deltaNames: PeerName[] = [];
    for (const n of names) {
      const b = takes ? base(n) : undefined;
      const cur = t.get(n);
      const d = b !== undefined && cur !== undefined ? encodeDelta(b, cur) : undefined;
      if (d === undefined) whole.push(n);
      else {
        deltas.push(d);
        deltaNames.push(n);
      }
    }
    return { whole, deltas, deltaNames };
  }

  /** Deltas as `{x: [delta, …]}` topology messages of at most TOPOLOGY_CHUNK_BYTES of deltas each. */
  private deltaMessages(deltas: readonly Buffer[]): ControlMessage[] {
    const out: ControlMessage[] = [];
    let parts: Buffer[] = [];
    let size = 0;
    const flush = (): void => {
      if (parts.length === 0) return;
      // {x: [...]}: fixmap of 1, fixstr "x", then the array (msgpack spec).
      const payload = Buffer.concat([Buffer.from([0x81, 0xa1, 0x78]), arrayHeader(parts.length), ...parts]);
      out.push({ t: 'gossip', channel: 'topology', kind: 'update', src: this.host.selfName, payload } as ControlMessage);
      parts = [];
      size = 0;
    };
    for (const d of deltas) {
      if (size > 0 && size + d.length > TOPOLOGY_CHUNK_BYTES) flush();
      parts.push(d);
      size += d.length;
    }
    flush();
    return out;
  }

  /**
   * Deltas from `c`: each one whose base we hold becomes the entry it makes (merged
   * and validated as a whole entry would be); one for a version we hold already or a
   * newer one only notes that `c` has it; for any other we ask `c` for the whole
   * entry (`{w: [names]}`). Deltas about our own entry are ignored (the digest
   * exchange settles our own versions).
   * @returns the names whose entries changed. @throws TopologyError for a malformed delta (nothing is merged).
   */
  private mergeDeltas(c: C, x: unknown): PeerName[] {
    const t = this.host.topology;
    if (!Array.isArray(x) || x.length > MAX_TOPOLOGY_PEERS) throw new TopologyError(`bad topology deltas: must be an array of at most ${MAX_TOPOLOGY_PEERS}`);
    const ds = x.map(decodeDelta);
    const entries: Array<Record<string, unknown>> = [];
    const wants: PeerName[] = [];
    for (const d of ds) {
      if (d.name === this.host.selfName) continue;
      const held = t.get(d.name);
      if (held !== undefined && held.uid === d.uid && held.version === d.base) entries.push(applyDelta(held, d));
      else if (held !== undefined && (held.version > d.version || (held.version === d.version && held.uid >= d.uid))) {
        if (held.version === d.version && held.uid === d.uid) this.recent.has(d.name, c, (e) => e === held);
      } else wants.push(d.name);
    }
    if (wants.length > 0) {
      this.stats.deltas.wanted += wants.length;
      c.send(this.topologyMessage('full', { w: wants }));
    }
    if (entries.length === 0) return [];
    this.stats.deltas.applied += entries.length;
    return this.mergeEntries(c, entries);
  }

  /**
   * A new connection: send our topology summary (the neighbour answers with the
   * entries we lack, and we do the same for its summary) and every channel's full state.
   */
  fullExchange(c: C): void {
    c.send(this.topologyMessage('full', { s: this.host.topology.summary() }));
    for (const m of this.channelStates()) c.send(m);
  }

  /** The periodic exchange with every neighbour: our topology digest and every channel's full state. */
  periodic(): void {
    const topo = this.topologyMessage('full', { d: this.digest() });
    const states = this.channelStates();
    for (const c of this.host.neighbours()) {
      c.send(topo);
      for (const m of states) c.send(m);
    }
  }

  /** A gossip message arrived on connection `c` from neighbour `from`. */
  onMessage(c: C, from: PeerName, m: GossipMessage): void {
    const h = this.host;
    this.stats.messages[m.channel] = (this.stats.messages[m.channel] ?? 0) + 1;
    this.stats.bytes[m.channel] = (this.stats.bytes[m.channel] ?? 0) + m.payload.length;
    if (m.channel === 'topology') {
      let changed: PeerName[];
      try {
        // Bounded before msgpackr builds anything (msgpack-budget.ts): a gossip bomb is refused in ~1 ms.
        const body: unknown = unpackBounded(m.payload, BUDGETS.topology, 'topology gossip');
        if (isRecord(body) && 'd' in body) {
          // A neighbour's periodic digest: if our tables differ, tell it what we have.
          const d = body.d;
          if (!(d instanceof Uint8Array) || d.length !== 16) throw new Error('topology digest must be 16 bytes');
          if (!Buffer.from(d).equals(this.digest())) c.send(this.topologyMessage('full', { s: h.topology.summary() }));
          return;
        }
        if (isRecord(body) && 'w' in body) {
          // A neighbour could not apply our deltas: send it those entries whole.
          const w = body.w;
          if (!Array.isArray(w) || w.length > MAX_TOPOLOGY_PEERS || !w.every(isPeerName)) {
            throw new TopologyError(`bad topology request: w must be an array of at most ${MAX_TOPOLOGY_PEERS} peer names`);
          }
          for (const msg of this.entryMessages('full', new Set(w as PeerName[]))) c.send(msg);
          return;
        }
        if (isRecord(body) && 'x' in body) changed = this.mergeDeltas(c, body.x);
        else if (isRecord(body) && 's' in body) {
          // A neighbour's summary: send it the entries it lacks; where it holds the
          // version an entry replaced, only the difference.
          const theirs = new Map<PeerName, { version: number; uid: number }>();
          const lacks = h.topology.newerThan(body.s, theirs);
          const { whole, deltas } = this.splitDeltas(c, lacks, (n) => {
            const held = theirs.get(n);
            return held === undefined ? undefined : [this.recent.previous(n), h.topology.previous(n)].find((b) => b !== undefined && b.version === held.version && b.uid === held.uid);
          });
          this.stats.deltas.sent += deltas.length;
          for (const msg of [...this.entryMessages('full', whole), ...this.deltaMessages(deltas)]) c.send(msg);
          return;
        } else changed = this.mergeEntries(c, body);
      } catch (err) {
        h.drop('gossip');
        h.log(`gossip: bad topology update from ${from}: ${(err as Error).message}`);
        return;
      }
      if (changed.length) h.topologyChanged();
      return;
    }
    if (m.kind === 'unicast' && m.dst !== undefined && m.dst !== h.selfName) {
      this.relayUnicast(m);
      return;
    }
    if (m.kind === 'update' && m.src !== h.selfName) {
      for (const hop of h.routes.broadcast(m.src)) {
        const next = h.neighbour(hop);
        if (next && next !== c) next.send(m);
      }
    }
    const handler = this.channels.get(m.channel);
    if (!handler) return;
    try {
      handler.onGossip(m.src, m.payload, m.kind);
    } catch (err) {
      h.drop('gossip');
      h.log(`gossip: channel ${m.channel} rejected a message from ${m.src}: ${(err as Error).message}`);
    }
  }

  /**
   * Merges entries from `c` and notes which of our recent entries `c` holds. What
   * becomes of the changed entries is settled once per batch (`settleMerges`, at the
   * flush), after one gc for all the merges of the batch instead of one per merge.
   * @returns the names whose entries changed (some may be collected at the flush). @throws TopologyError.
   */
  private mergeEntries(c: C, body: unknown): PeerName[] {
    const t = this.host.topology;
    const self = this.host.selfName;
    const { changed } = t.merge(body);
    for (const e of body as Array<{ name: PeerName; version: number; uid: number }>) {
      const same = (x: PeerInfo): boolean => x.version === e.version && x.uid === e.uid;
      this.recent.has(e.name, c, same);
      const m = this.merged.get(e.name);
      if (m !== undefined && same(m.entry)) m.from.add(c);
    }
    for (const n of changed) {
      // Our own entry changed only by a version raise: `c` does not hold the new one.
      this.merged.set(n, { entry: t.get(n)!, from: new Set(n === self ? [] : [c]) });
    }
    if (changed.length > 0) this.scheduleFlush();
    return changed;
  }

  /**
   * Once per batch, before sending: one gc for all entries merged since the last
   * flush; a merged entry that stayed is queued for the tree (with the connections
   * that sent it as holders); one the gc dropped because no entry we hold lists its
   * owner yet is held back, and held-back entries are merged again (the table
   * changed, their owner may be listed now). A collected entry is never relayed.
   * If the gc removed entries or held-back ones stayed, the host is told the topology changed.
   */
  private settleMerges(now: number): void {
    if (this.merged.size === 0) return;
    const t = this.host.topology;
    const self = this.host.selfName;
    const got = this.merged;
    this.merged = new Map();
    let tableChanged = t.gc().length > 0;
    // Another chance for held-back entries and for entries of this batch that are gone
    // already (a host that collects after every merge dropped them before a later
    // merge of the batch listed their owner).
    const again = new Map<PeerName, { entry: PeerInfo; from: Set<C> }>();
    for (const [n, o] of this.orphans) again.set(n, { entry: o.entry, from: new Set() });
    this.orphans.clear();
    for (const [n, m] of got) if (!t.has(n) && n !== self) again.set(n, m);
    if (again.size > 0) {
      const back = t.merge([...again.values()].map((x) => x.entry)).changed;
      if (back.length > 0) {
        tableChanged = true;
        const stored = new Map<PeerName, PeerInfo>();
        for (const n of back) stored.set(n, t.get(n)!);
        t.gc();
        for (const [n, e] of stored) got.set(n, { entry: e, from: again.get(n)!.from });
      }
    }
    for (const [n, { entry, from }] of got) {
      if (t.get(n) === entry) {
        let first = true;
        for (const c of from) {
          this.recent.changed(n, entry, now, c);
          first = false;
        }
        if (first) this.recent.changed(n, entry, now);
      } else if (!t.has(n) && n !== self) {
        if (this.orphans.size >= MAX_ORPHANS) this.orphans.delete(this.orphans.keys().next().value!);
        this.orphans.set(n, { entry, at: now });
      }
    }
    if (tableChanged) this.host.topologyChanged();
  }

  private relayUnicast(m: GossipMessage): void {
    const hop = this.host.routes.unicast(m.dst!);
    const c = hop === undefined ? undefined : this.host.neighbour(hop);
    if (c) c.send(m);
    else this.host.drop('no-route');
  }

  private topologyMessage(kind: 'full' | 'update', body: unknown): ControlMessage {
    return { t: 'gossip', channel: 'topology', kind, src: this.host.selfName, payload: pack(body) };
  }

  /** The named entries (those we hold), in reach order, as chunked topology messages. */
  private entryMessages(kind: 'full' | 'update', names: Iterable<PeerName>): ControlMessage[] {
    const t = this.host.topology;
    const list = [...names].filter((n) => t.has(n));
    let chunks = chunkEntries(list.map((n) => t.get(n)!));
    // Split: reach order, so a receiver's gc keeps every chunk (reachOrder walks the table).
    if (chunks.length > 1) chunks = chunkEntries(t.reachOrder(list).map((n) => t.get(n)!));
    return chunks.map((payload) => ({ t: 'gossip', channel: 'topology', kind, src: this.host.selfName, payload }) as ControlMessage);
  }

  /** First 16 bytes of SHA-256 over our packed summary, cached per topology generation. */
  private digest(): Buffer {
    const t = this.host.topology;
    if (this.digestCache?.gen !== t.generation) {
      const digest = createHash('sha256').update(pack(t.summary())).digest().subarray(0, 16);
      this.digestCache = { gen: t.generation, digest };
    }
    return this.digestCache.digest;
  }

  private channelStates(): ControlMessage[] {
    const out: ControlMessage[] = [];
    for (const [name, h] of this.channels) {
      const s = h.fullState();
      if (s) out.push({ t: 'gossip', channel: name, kind: 'full', src: this.host.selfName, payload: s });
    }
    return out;
  }
}
