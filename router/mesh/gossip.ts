/**
 * Gossip over the mesh's control connections: the topology channel (peer entries,
 * merged by Topology) and the channel registry other subsystems use (IPAM's ring,
 * DNS, …), after weaveworks/mesh's Gossip/Gossiper split. A channel sees bytes only;
 * this module decides who gets them:
 *  - topology changes are batched for 10 ms (GossipBatch) and sent to every
 *    neighbour but, when every change came from one, that one;
 *  - a channel's `broadcast` goes to every neighbour, and a received update is
 *    relayed along the origin's broadcast tree (routes.ts), so each peer gets it;
 *  - `unicast` follows unicast routes hop by hop;
 *  - a full exchange (topology and each channel's full state) goes to a new
 *    neighbour and to all of them every 30 s, repairing anything lost.
 * The actor needs only a way to reach neighbours (`GossipHost`), so the mesh
 * simulator can drive it over an in-memory transport.
 */
import { pack, unpack } from 'msgpackr';
import type { PeerName } from './peer-name.js';
import type { Topology } from './topology.js';
import type { Routes } from './routes.js';
import type { ControlMessage } from './protocol.js';
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

export class Gossip<C extends GossipNeighbour> {
  private readonly channels = new Map<string, GossipHandler>();
  private readonly batch = new GossipBatch<C>();
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
      const msg = this.topologyMessage('update', this.host.topology.encode(b.names));
      for (const c of this.host.neighbours()) if (c !== b.except) c.send(msg);
    };
    if (this.host.setTimer) this.host.setTimer(send, TOPOLOGY_BATCH_MS);
    else setTimeout(send, TOPOLOGY_BATCH_MS).unref();
  }

  /** Send the full topology and every channel's full state to one neighbour (a new connection). */
  fullExchange(c: C): void {
    c.send(this.topologyMessage('full', this.host.topology.encode()));
    for (const m of this.channelStates()) c.send(m);
  }

  /** The periodic full exchange with every neighbour. */
  periodic(): void {
    const topo = this.topologyMessage('full', this.host.topology.encode());
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
        changed = h.topology.merge(unpack(m.payload as Buffer)).changed;
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

  private topologyMessage(kind: 'full' | 'update', entries: unknown): ControlMessage {
    return { t: 'gossip', channel: 'topology', kind, src: this.host.selfName, payload: pack(entries) };
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
