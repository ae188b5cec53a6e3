/**
 * Gossip over the mesh's control connections: the topology channel (peer entries,
 * merged by Topology) and the channel registry other subsystems use (IPAM's ring,
 * DNS, …), after weaveworks/mesh's Gossip/Gossiper split. A channel sees bytes only;
 * this module decides who gets them:
 *  - topology changes are batched for 10 ms (GossipBatch) and sent to every
 *    neighbour but, when every change came from one, that one;
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
import type { PeerName } from './peer-name.js';
import type { Topology } from './topology.js';
import type { Routes } from './routes.js';
import { unpackBounded, type ControlMessage } from './protocol.js';
import { BUDGETS } from './msgpack-budget.js';
import { GossipBatch } from './gossip-batch.js';

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
}

type GossipMessage = Extract<ControlMessage, { t: 'gossip' }>;

/** Delay that batches topology changes into one update (ms). */
const TOPOLOGY_BATCH_MS = 10;
/** Budget for the encoded entries of one topology message (bytes); one entry bigger than this goes alone. */
export const TOPOLOGY_CHUNK_BYTES = 256 * 1024;

/** msgpack array header for `n` items (msgpack spec: fixarray, array 16, array 32). */
function arrayHeader(n: number): Buffer {
  if (n < 16) return Buffer.from([0x90 | n]);
  if (n < 0x10000) return Buffer.from([0xdc, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = 0xdd;
  b.writeUInt32BE(n, 1);
  return b;
}

/**
 * Encodes entries as msgpack arrays of at most `budget` bytes of entries each (an
 * entry larger than the budget makes a chunk of its own). Order is kept.
 * @returns the payloads (each decodes to an array of entries); [] for no entries.
 */
export function chunkEntries(entries: readonly unknown[], budget = TOPOLOGY_CHUNK_BYTES): Buffer[] {
  const out: Buffer[] = [];
  let parts: Buffer[] = [];
  let size = 0;
  const flush = (): void => {
    if (parts.length === 0) return;
    out.push(Buffer.concat([arrayHeader(parts.length), ...parts]));
    parts = [];
    size = 0;
  };
  for (const e of entries) {
    const b = pack(e);
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
  private readonly batch = new GossipBatch<C>();
  private digestCache: { gen: number; digest: Buffer } | undefined;
  /** Messages and payload bytes received per channel. */
  readonly stats = { messages: {} as Record<string, number>, bytes: {} as Record<string, number> };

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

  /** Our own topology entries changed (or merged ones must travel on): send them after the batch window. */
  queueTopology(names: Iterable<PeerName>, except?: C): void {
    if (!this.batch.add(names, except)) return;
    const send = (): void => {
      const b = this.batch.take();
      const msgs = this.entryMessages('update', b.names);
      for (const c of this.host.neighbours()) if (c !== b.except) for (const m of msgs) c.send(m);
    };
    if (this.host.setTimer) this.host.setTimer(send, TOPOLOGY_BATCH_MS);
    else setTimeout(send, TOPOLOGY_BATCH_MS).unref();
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
        if (isRecord(body) && 's' in body) {
          // A neighbour's summary: send it the entries it lacks.
          for (const msg of this.entryMessages('full', h.topology.newerThan(body.s))) c.send(msg);
          return;
        }
        changed = h.topology.merge(body).changed;
      } catch (err) {
        h.drop('gossip');
        h.log(`gossip: bad topology update from ${from}: ${(err as Error).message}`);
        return;
      }
      if (changed.length) {
        this.queueTopology(changed, changed.includes(h.selfName) ? undefined : c);
        h.topologyChanged();
      }
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
    const entries = t.reachOrder(names).map((n) => t.get(n)!);
    return chunkEntries(entries).map((payload) => ({ t: 'gossip', channel: 'topology', kind, src: this.host.selfName, payload }) as ControlMessage);
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
