/**
 * The router: wires the TAP, the sleeve, the control connections and the gossip
 * channels together. Pure decisions live in topology.ts, routes.ts, mac-cache.ts and
 * connection-maker.ts; this file only moves data between them and the world.
 *
 * Data path (per Weave's router design):
 *  - TAP batch → learn source MAC as ours → destination MAC known remote: unicast to its
 *    peer via the next hop; group or unknown: flood along our broadcast tree.
 *  - datagram → each frame: learn source MAC → frame's origin peer; deliver to the TAP
 *    if it is for us (or broadcast), relay it otherwise (next hop, or the origin's
 *    broadcast tree).
 */
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { pack } from 'msgpackr';
import { Topology, type ConnectionSummary } from './mesh/topology.js';
import { Routes } from './mesh/routes.js';
import { GossipBatch } from './mesh/gossip-batch.js';
import { MacCache, formatMac } from './overlay/mac-cache.js';
import { numToPeerName, peerNameToNum, type PeerName } from './mesh/peer-name.js';
import { Connection, type ConnectionHost } from './mesh/connection.js';
import { unpackBounded, type ControlMessage } from './mesh/protocol.js';
import { BUDGETS } from './mesh/msgpack-budget.js';
import { FailureLog, HalfOpenLimiter } from './mesh/admission.js';
import { TargetTable, normaliseAddress } from './mesh/connection-maker.js';
import { Sleeve, SleevePeer, datagramFor, type SleeveHost } from './overlay/sleeve.js';
import { forEachFrame } from './overlay/sleeve-codec.js';
import { dstMac, srcMac, isGroupMac, ipv4DontFragment, fragmentIPv4, icmpFragNeeded } from './overlay/ethernet.js';
import type { Tap } from './overlay/tap.js';
import { Sealer, Opener } from './crypto/aead.js';
import { deriveSessionKeys, randomKeyMaterial } from './crypto/keys.js';
import { PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION } from './mesh/protocol.js';
import type { Report, ReportConnection, RouterEvent } from './api/report.js';
import type { DataPathCounters } from './api/metrics.js';
import { cidrContains } from './policy/cidr-match.js';
import type { Fastdp, FastdpCandidate, FastdpHost } from './overlay/fastdp.js';
import { EGRESS_TEMPLATE_BYTES, FLOW_BATCH_MAX, FLOW_TTL_MS, NO_FLOW_STATS, egressTemplate, flowCacheEnabled, type FlowStats } from './overlay/flow-cache.js';

export const VERSION = '0.1.0';
const GOSSIP_INTERVAL_MS = 30_000;
const CONNECT_TICK_MS = 500;
const CONNECT_TIMEOUT_MS = 5_000;
const MAC_MAX_AGE_MS = 10 * 60_000;

/** A gossip channel's handler (mesh's Gossiper): topology-agnostic, bytes in and out. */
export interface GossipHandler {
  onGossip(src: PeerName, payload: Uint8Array, kind: 'full' | 'update' | 'unicast'): void;
  /** Full state for the periodic exchange with neighbours, if any. */
  fullState(): Uint8Array | undefined;
}

/** What a subsystem (IPAM) gets to talk over the mesh. */
export interface GossipChannel {
  readonly selfName: string;
  broadcast(payload: Uint8Array): void;
  unicast(dst: string, payload: Uint8Array): void;
  knownPeers(): Array<{ name: string; nickname: string; reachable: boolean }>;
}

/**
 * Per-frame subnet isolation (router/isolation.ts): decides, from the local endpoint
 * table alone, whether a frame captured from the TAP may leave this host and whether
 * a frame received from a peer may be delivered here. Returns a drop reason or
 * undefined to allow. Must not allocate per frame.
 */
export interface FramePolicy {
  checkCaptured(buf: Buffer, start: number, end: number): string | undefined;
  checkDelivered(buf: Buffer, start: number, end: number): string | undefined;
}

export interface RouterConfig {
  name: PeerName;
  nickname: string;
  port: number;
  mtu: number;
  connLimit: number;
  discovery: boolean;
  peers: string[];
  passwordKey?: Buffer;
  trustedSubnets: string[];
  ipamRange: string;
  log: (line: string) => void;
  /** Cache forwarding decisions in the addons (router/flow-cache.ts); default: unless WEAVE_NO_FLOW_CACHE=1. */
  flowCache?: boolean;
}

export class Router extends EventEmitter implements ConnectionHost, SleeveHost, FastdpHost {
  readonly selfName: PeerName;
  readonly selfNum: number;
  readonly nickname: string;
  readonly uid: number;
  readonly topology: Topology;
  readonly routes: Routes;
  readonly macs = new MacCache();
  readonly targets: TargetTable;
  readonly sleeve: Sleeve;
  private server: net.Server | undefined;
  private tap: Tap | undefined;
  private readonly connections = new Set<Connection>();
  // [pre-auth] Inbound connections not yet ready hold a HalfOpenLimiter slot; failures of
  // strangers are logged through FailureLog (aggregated per source per 60 s).
  private readonly halfOpen = new HalfOpenLimiter();
  private readonly halfOpenSlot = new WeakSet<Connection>();
  private readonly failureLog = new FailureLog((line) => this.log(line));
  private readonly byPeer = new Map<PeerName, Connection>();
  private readonly sleevePeers = new Map<PeerName, SleevePeer>();
  private readonly channels = new Map<string, GossipHandler>();
  private readonly unicastNext = new Map<number, SleevePeer>();
  private readonly broadcastNext = new Map<number, SleevePeer[]>();
  private readonly localKeyMaterial = new Map<Connection, Buffer>();
  private routesGeneration = -1;
  private readonly gossipBatch = new GossipBatch<Connection>();
  private timers: NodeJS.Timeout[] = [];
  private now = Date.now();
  readonly drops: Record<string, number> = {};
  readonly traffic = { framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0 };
  readonly gossipStats = { messages: {} as Record<string, number>, bytes: {} as Record<string, number> };
  connectionTerminations = 0;
  private framePolicy: FramePolicy | undefined;
  /** Subnet isolation; undefined lets every frame through. Setting it clears the flow cache. */
  get policy(): FramePolicy | undefined {
    return this.framePolicy;
  }
  set policy(p: FramePolicy | undefined) {
    this.framePolicy = p;
    this.clearFlows();
  }
  // [flow cache] router/flow-cache.ts: decisions for small wake-ups are cached in the
  // addons; these hold what an install needs.
  private readonly flowCache: boolean;
  private readonly flowTemplate = Buffer.alloc(EGRESS_TEMPLATE_BYTES);
  private tapVnetBytes = 0;
  /** The peer that sent the datagram being handled, and whether its frames may get ingress flows. */
  private rxHop: SleevePeer | undefined;
  private rxCacheable = false;
  private knownPeerNames = new Set<PeerName>();
  // [fastdp] The kernel fast datapath (router/fastdp.ts) when running, set by the daemon;
  // the peers whose captured frames it carries (never also sent over the sleeve); and the
  // direct neighbours that are the next hop towards some other peer.
  fastdp: Fastdp | undefined;
  private readonly fastdpNums = new Set<number>();
  private readonly relayVia = new Set<number>();

  constructor(readonly config: RouterConfig) {
    super();
    this.selfName = config.name;
    this.selfNum = peerNameToNum(config.name);
    this.nickname = config.nickname;
    this.uid = randomInt(2 ** 47) * 2 + randomInt(2);
    this.topology = new Topology({ name: this.selfName, nickname: this.nickname, uid: this.uid });
    this.routes = new Routes(this.topology);
    this.targets = new TargetTable(config.port);
    this.sleeve = new Sleeve(this, config.port);
    this.knownPeerNames.add(this.selfName);
    this.flowCache = config.flowCache ?? flowCacheEnabled();
  }

  // ---- ConnectionHost ----
  get udpPort(): number { return this.config.port; }
  get listenPort(): number { return this.config.port; }
  get passwordKey(): Buffer | undefined { return this.config.passwordKey; }
  get ipamRange(): string { return this.config.ipamRange; }

  log(line: string): void {
    this.config.log(line);
  }

  drop(reason: string, n = 1): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + n;
  }

  /** Bind TCP and UDP, attach the TAP, start connecting to the configured peers. */
  async start(tap: Tap | undefined): Promise<void> {
    await this.sleeve.listen();
    this.server = net.createServer({ noDelay: true }, (s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', (err: NodeJS.ErrnoException) => reject(new Error(
        err.code === 'EADDRINUSE' ? `TCP port ${this.config.port} is already in use: is another router running in this network namespace?` : `cannot listen on TCP port ${this.config.port}: ${err.message}`)));
      this.server!.listen(this.config.port, () => resolve());
    });
    this.server.on('error', (err) => this.log(`listener error: ${err.message}`));
    this.tap = tap;
    tap?.start(this.onTapBatch, (err) => this.log(`tap: ${err.message}`));
    this.tapVnetBytes = tap?.vnetHeaderBytes ?? 0;
    // [flow cache] Between cached frames the addons wait for the next one themselves.
    const udpPort = this.flowCache ? this.sleeve.fastPort() : undefined;
    if (tap !== undefined && udpPort !== undefined && !tap.linkFastPath(udpPort)) this.log('flow cache: cannot link the TAP and UDP socket; frames still take the cache');
    for (const p of this.config.peers) this.targets.add(p, true, Date.now());
    this.timers.push(setInterval(() => this.connectTick(), CONNECT_TICK_MS));
    this.timers.push(setInterval(() => this.periodicGossip(), GOSSIP_INTERVAL_MS));
    this.timers.push(setInterval(() => {
      this.now = Date.now();
    }, 100));
    this.timers.push(setInterval(() => {
      if (this.macs.expire(Date.now(), MAC_MAX_AGE_MS) > 0) this.clearFlows();
    }, 60_000));
    this.connectTick();
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.clearFlows();
    await this.fastdp?.close().catch(() => undefined); // [fastdp]
    for (const c of [...this.connections]) c.close('router shutting down');
    this.tap?.close();
    this.sleeve.close();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  // ---- connection maker ----
  private connectTick(): void {
    const now = Date.now();
    if (this.config.discovery) this.discover(now);
    for (const t of this.targets.due(now, (a) => this.isConnectedTo(a))) this.dial(t.address);
  }

  private isConnectedTo(address: string): boolean {
    for (const c of this.connections) {
      if (c.target === address && c.state !== 'closed') return true;
      if (c.state === 'ready' && c.address === address) return true;
    }
    return false;
  }

  private dial(address: string): void {
    const i = address.lastIndexOf(':');
    const host = address.slice(0, i);
    const port = Number(address.slice(i + 1));
    const s = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => s.destroy(new Error(`connect timed out after ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
    const onErr = (err: Error): void => {
      clearTimeout(timer);
      this.targets.failed(address, err.message, Date.now());
    };
    s.once('error', onErr);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onErr);
      this.addConnection(new Connection(this, s, true, address));
    });
  }

  private accept(s: net.Socket): void {
    // Accept throttle: handshaking connections count against the limit too.
    if (this.connections.size >= this.config.connLimit * 2) {
      s.destroy();
      return;
    }
    // [pre-auth] per-source and total half-open caps
    const source = (s.remoteAddress ?? '').replace(/^::ffff:/, '');
    const refused = this.halfOpen.tryAcquire(source);
    if (refused !== undefined) {
      s.destroy();
      this.failureLog.failed(source, refused, Date.now());
      return;
    }
    const c = new Connection(this, s, false);
    this.halfOpenSlot.add(c);
    this.addConnection(c);
  }

  private addConnection(c: Connection): void {
    this.connections.add(c);
    c.start();
  }

  connect(peers: string[], replace: boolean): string[] {
    const addrs = peers.map((p) => normaliseAddress(p, this.config.port));
    if (replace) for (const t of this.targets.list()) if (t.direct && !addrs.includes(t.address)) this.targets.forget(t.address);
    const now = Date.now();
    for (const a of addrs) this.targets.add(a, true, now);
    this.connectTick();
    return addrs;
  }

  forget(peers: string[]): void {
    for (const p of peers) this.targets.forget(p);
  }

  private discover(now: number): void {
    for (const p of this.topology.peers()) {
      if (p.name === this.selfName) continue;
      for (const c of p.connections) {
        if (c.name === this.selfName || this.byPeer.has(c.name) || !c.established) continue;
        this.targets.add(c.address, false, now);
      }
    }
    const wanted = new Set<string>();
    for (const p of this.topology.peers()) for (const c of p.connections) if (c.name !== this.selfName && !this.byPeer.has(c.name)) wanted.add(c.address);
    this.targets.prune((t) => wanted.has(t.address) && t.state !== 'self');
  }

  // ---- ConnectionHost callbacks ----
  admit(c: Connection): string | undefined {
    const r = c.remote!;
    if (r.name === this.selfName) {
      if (c.target) this.targets.markSelf(c.target);
      // Same name, another UID: a different router uses our peer name. Never retried.
      return r.uid === this.uid ? 'cannot connect to ourself' : `peer name collision: ${c.address} also uses our name ${r.name} (give one of them another --name)`;
    }
    if (this.config.ipamRange && r.range && r.range !== this.config.ipamRange) {
      return `IPAM range mismatch: peer ${r.name}(${r.nickname}) uses ${r.range}, we use ${this.config.ipamRange}; relaunch one of them with the same --ipalloc-range`;
    }
    const existing = this.byPeer.get(r.name);
    if (existing && existing !== c) {
      if (existing.remote!.uid !== r.uid) {
        existing.close('peer restarted: replaced by a new connection');
      } else {
        const initiator = (x: Connection): PeerName => (x.outbound ? this.selfName : r.name);
        const winner = initiator(c) === initiator(existing) ? existing
          : (initiator(c) < initiator(existing) ? c : existing);
        if (winner === existing) {
          if (c.target) this.targets.succeeded(c.target);
          return 'duplicate connection';
        }
        existing.close('duplicate connection');
      }
    }
    if (!c.outbound && this.byPeer.size >= this.config.connLimit) return `connection limit (${this.config.connLimit}) reached`;
    return undefined;
  }

  /** [pre-auth] Gives back c's half-open slot, if it holds one. */
  private releaseHalfOpen(c: Connection): void {
    if (this.halfOpenSlot.delete(c)) this.halfOpen.release(c.remoteIp);
  }

  onReady(c: Connection): void {
    this.releaseHalfOpen(c);
    const r = c.remote!;
    this.byPeer.set(r.name, c);
    if (c.target) this.targets.succeeded(c.target);
    this.log(`connection ${c.outbound ? '->' : '<-'} ${c.address} ${r.name}(${r.nickname}) ready${c.encrypted ? ' (encrypted)' : ''}`);
    if (this.config.passwordKey) {
      const material = randomKeyMaterial();
      this.localKeyMaterial.set(c, material);
      c.send({ t: 'keys', material, trusted: this.isTrusted(c.remoteIp) });
    } else {
      this.addSleevePeer(c, false);
    }
    c.send(this.topologyMessage('full', this.topology.encode()));
    for (const [name, h] of this.channels) {
      const s = h.fullState();
      if (s) c.send({ t: 'gossip', channel: name, kind: 'full', src: this.selfName, payload: s });
    }
    this.localConnectionsChanged();
    this.emitConnection(c, 'pending');
  }

  private isTrusted(ipAddr: string): boolean {
    return this.config.trustedSubnets.some((s) => cidrContains(s, ipAddr));
  }

  private addSleevePeer(c: Connection, encrypted: boolean, keys?: { sendKey: Buffer; recvKey: Buffer }): void {
    const r = c.remote!;
    const old = this.sleevePeers.get(r.name);
    if (old) this.sleeve.removePeer(old);
    this.clearFlows();
    const sp = new SleevePeer(r.name, peerNameToNum(r.name), c.remoteIp, r.udpPort, datagramFor(this.config.mtu, encrypted), encrypted);
    if (keys) {
      sp.sealer = new Sealer(keys.sendKey);
      sp.opener = new Opener(keys.recvKey);
    }
    this.sleevePeers.set(r.name, sp);
    this.sleeve.addPeer(sp);
  }

  onMessage(c: Connection, m: ControlMessage): void {
    const r = c.remote!;
    switch (m.t) {
      case 'udp-ok': {
        const sp = this.sleevePeers.get(r.name);
        if (sp && !sp.confirmed) {
          sp.confirmed = true;
          if (sp.established) this.onEstablished(c, sp);
        }
        return;
      }
      case 'keys': {
        const local = this.localKeyMaterial.get(c);
        if (!local || !this.config.passwordKey) return c.close('protocol error: unexpected keys');
        const trusted = m.trusted === true && this.isTrusted(c.remoteIp);
        if (trusted) {
          this.addSleevePeer(c, false);
        } else {
          const keys = deriveSessionKeys({ passwordKey: this.config.passwordKey, localMaterial: local, remoteMaterial: Buffer.from(m.material), localName: this.selfName, remoteName: r.name });
          this.addSleevePeer(c, true, keys);
        }
        return;
      }
      case 'gossip':
        return this.onGossipMessage(c, m);
      default:
        return;
    }
  }

  onClosed(c: Connection, reason: string): void {
    const wasHalfOpen = this.halfOpenSlot.has(c);
    this.releaseHalfOpen(c);
    this.connections.delete(c);
    this.localKeyMaterial.delete(c);
    const r = c.remote;
    if (r && this.byPeer.get(r.name) === c) {
      this.byPeer.delete(r.name);
      const sp = this.sleevePeers.get(r.name);
      if (sp) {
        this.sleeve.removePeer(sp);
        this.sleevePeers.delete(r.name);
      }
      this.connectionTerminations++;
      this.log(`connection ${c.outbound ? '->' : '<-'} ${c.address} ${r.name}(${r.nickname}) closed: ${reason}`);
      this.localConnectionsChanged();
    } else if (wasHalfOpen && !/^duplicate connection|cannot connect to ourself/.test(reason)) {
      this.failureLog.failed(c.remoteIp, reason, Date.now()); // [pre-auth] aggregated
    } else if (!/^duplicate connection|cannot connect to ourself/.test(reason)) {
      this.log(`connection ${c.outbound ? '->' : '<-'} ${c.address} failed: ${reason}`);
    }
    if (c.target && this.targets.get(c.target)?.state !== 'self') {
      if (/duplicate connection/.test(reason)) this.targets.succeeded(c.target);
      else this.targets.failed(c.target, reason, Date.now());
      if (r && this.byPeer.has(r.name)) this.targets.succeeded(c.target);
    }
    this.emitConnection(c, 'closed', reason);
  }

  // ---- sleeve callbacks ----
  onHeardFrom(sp: SleevePeer): void {
    const c = this.byPeer.get(sp.name);
    if (!c) return;
    c.send({ t: 'udp-ok' });
    if (sp.established) this.onEstablished(c, sp);
  }

  private onEstablished(c: Connection, sp: SleevePeer): void {
    this.log(`connection ${c.outbound ? '->' : '<-'} ${c.address} ${sp.name}(${c.remote!.nickname}) established over UDP (sleeve${sp.encrypted ? ', encrypted' : ''})`);
    this.localConnectionsChanged();
    this.emitConnection(c, 'established');
  }

  onUdpTimeout(sp: SleevePeer, reason: string): void {
    const c = this.byPeer.get(sp.name);
    if (c) c.close(reason);
  }

  onPmtuChanged(sp: SleevePeer): void {
    this.clearFlows();
    const c = this.byPeer.get(sp.name);
    if (c) this.emitConnection(c, 'established');
  }

  // ---- fastdp callbacks ----
  /** Direct peers over established, unencrypted connections (plaintext or trusted subnet). */
  fastdpCandidates(): FastdpCandidate[] {
    const out: FastdpCandidate[] = [];
    for (const [name, sp] of this.sleevePeers) {
      if (sp.encrypted || !sp.established || this.byPeer.get(name)?.state !== 'ready') continue;
      out.push({ num: sp.num, address: sp.address, port: sp.port });
    }
    return out;
  }

  setFastdp(num: number, on: boolean, reason: string): void {
    if (on === this.fastdpNums.has(num)) return;
    if (on) this.fastdpNums.add(num);
    else this.fastdpNums.delete(num);
    this.clearFlows();
    const name = numToPeerName(num);
    const c = this.byPeer.get(name);
    this.log(`connection to ${name}(${c?.remote?.nickname ?? ''}) now uses ${on ? 'fastdp' : `the sleeve${reason ? ` (${reason})` : ''}`}`);
    if (c) this.emitConnection(c, 'established');
  }

  /** [fastdp] The path a connection's frames take and its MTU, for status. */
  private pathInfo(sp: SleevePeer | undefined): { path: 'fastdp' | 'sleeve' | undefined; mtu: number | undefined } {
    if (sp === undefined) return { path: undefined, mtu: undefined };
    if (this.fastdpNums.has(sp.num)) return { path: 'fastdp', mtu: this.config.mtu };
    return { path: sp.established ? 'sleeve' : undefined, mtu: sp.maxFrame - 14 };
  }

  // ---- topology ----
  private localConnectionsChanged(): void {
    const conns: ConnectionSummary[] = [];
    for (const [name, c] of this.byPeer) {
      conns.push({ name, address: c.address, outbound: c.outbound, established: this.sleevePeers.get(name)?.established ?? false });
    }
    if (this.topology.setLocalConnections(conns)) this.queueTopologyGossip([this.selfName]);
    this.topologyChanged();
  }

  private queueTopologyGossip(names: Iterable<PeerName>, except?: Connection): void {
    // Batch the changes of a 10 ms window into one message.
    if (!this.gossipBatch.add(names, except)) return;
    setTimeout(() => {
      const batch = this.gossipBatch.take();
      const msg = this.topologyMessage('update', this.topology.encode(batch.names));
      for (const c of this.byPeer.values()) if (c !== batch.except) c.send(msg);
    }, 10).unref();
  }

  private topologyMessage(kind: 'full' | 'update', entries: unknown): ControlMessage {
    return { t: 'gossip', channel: 'topology', kind, src: this.selfName, payload: pack(entries) };
  }

  private topologyChanged(): void {
    this.topology.gc();
    const names = new Set(this.topology.peers().map((p) => p.name));
    for (const n of names) {
      if (!this.knownPeerNames.has(n)) {
        this.knownPeerNames.add(n);
        this.emitEvent({ type: 'peer-joined', peer: n, nickname: this.topology.get(n)?.nickname ?? '' });
      }
    }
    for (const n of [...this.knownPeerNames]) {
      if (!names.has(n)) {
        this.knownPeerNames.delete(n);
        this.macs.deletePeer(peerNameToNum(n));
        this.emitEvent({ type: 'peer-left', peer: n, nickname: '' });
        this.emit('peer-gone', n);
      }
    }
    this.recalcRoutes();
  }

  private recalcRoutes(): void {
    this.clearFlows();
    this.routes.recalculate();
    this.unicastNext.clear();
    this.broadcastNext.clear();
    for (const p of this.topology.peers()) {
      if (p.name === this.selfName) continue;
      const hop = this.routes.unicast(p.name);
      const sp = hop === undefined ? undefined : this.sleevePeers.get(hop);
      if (sp && sp.established) this.unicastNext.set(peerNameToNum(p.name), sp);
    }
    // [fastdp] Neighbours that relay towards others still need broadcasts over the sleeve.
    this.relayVia.clear();
    for (const p of this.topology.peers()) {
      const hop = this.routes.unicast(p.name);
      if (hop !== undefined && hop !== p.name && hop !== this.selfName) this.relayVia.add(peerNameToNum(hop));
    }
    this.routesGeneration = this.topology.generation;
  }

  private broadcastFor(source: number): SleevePeer[] {
    let list = this.broadcastNext.get(source);
    if (list === undefined) {
      list = [];
      for (const hop of this.routes.broadcast(numToPeerName(source))) {
        const sp = this.sleevePeers.get(hop);
        if (sp && sp.established) list.push(sp);
      }
      this.broadcastNext.set(source, list);
    }
    return list;
  }

  // ---- gossip ----
  private onGossipMessage(c: Connection, m: Extract<ControlMessage, { t: 'gossip' }>): void {
    this.gossipStats.messages[m.channel] = (this.gossipStats.messages[m.channel] ?? 0) + 1;
    this.gossipStats.bytes[m.channel] = (this.gossipStats.bytes[m.channel] ?? 0) + m.payload.length;
    if (m.channel === 'topology') {
      let changed: PeerName[];
      try {
        changed = this.topology.merge(unpackBounded(m.payload, BUDGETS.topology, 'topology gossip')).changed;
      } catch (err) {
        this.drop('gossip');
        this.log(`gossip: bad topology update from ${c.remote!.name}: ${(err as Error).message}`);
        return;
      }
      if (changed.length) {
        this.queueTopologyGossip(changed, changed.includes(this.selfName) ? undefined : c);
        this.topologyChanged();
      }
      return;
    }
    const h = this.channels.get(m.channel);
    if (m.kind === 'unicast' && m.dst !== undefined && m.dst !== this.selfName) {
      this.relayGossipUnicast(m);
      return;
    }
    if (m.kind === 'update' && m.src !== this.selfName) {
      for (const hop of this.routes.broadcast(m.src)) {
        const next = this.byPeer.get(hop);
        if (next && next !== c) next.send(m);
      }
    }
    if (!h) return;
    try {
      h.onGossip(m.src, m.payload, m.kind);
    } catch (err) {
      this.drop('gossip');
      this.log(`gossip: channel ${m.channel} rejected a message from ${m.src}: ${(err as Error).message}`);
    }
  }

  private relayGossipUnicast(m: Extract<ControlMessage, { t: 'gossip' }>): void {
    const hop = this.routes.unicast(m.dst!);
    const c = hop === undefined ? undefined : this.byPeer.get(hop);
    if (c) c.send(m);
    else this.drop('no-route');
  }

  /** Register a gossip channel (e.g. 'ipam') and get its handle onto the mesh. */
  registerChannel(name: string, handler: GossipHandler): GossipChannel {
    this.channels.set(name, handler);
    return {
      selfName: this.selfName,
      broadcast: (payload) => {
        const m: ControlMessage = { t: 'gossip', channel: name, kind: 'update', src: this.selfName, payload };
        // Send to every neighbour (not only our tree): a neighbour whose UDP path is
        // not up yet is still reachable over TCP, and duplicates are harmless (merge).
        for (const c of this.byPeer.values()) c.send(m);
      },
      unicast: (dst, payload) => {
        this.relayGossipUnicast({ t: 'gossip', channel: name, kind: 'unicast', src: this.selfName, dst, payload });
      },
      knownPeers: () => this.topology.peers().map((p) => ({ name: p.name, nickname: p.nickname, reachable: p.name === this.selfName || this.routes.unicast(p.name) !== undefined })),
    };
  }

  private periodicGossip(): void {
    const topo = this.topologyMessage('full', this.topology.encode());
    for (const c of this.byPeer.values()) {
      c.send(topo);
      for (const [name, h] of this.channels) {
        const s = h.fullState();
        if (s) c.send({ t: 'gossip', channel: name, kind: 'full', src: this.selfName, payload: s });
      }
    }
  }

  // ---- data path ----
  private readonly onTapBatch = (slab: Buffer, frames: Uint32Array, count: number): void => {
    if (this.routesGeneration !== this.topology.generation) this.recalcRoutes();
    const self = this.selfNum;
    const now = this.now;
    const cacheable = this.flowCache && count <= FLOW_BATCH_MAX;
    for (let i = 0; i < count; i++) {
      const start = frames[2 * i];
      const end = start + frames[2 * i + 1];
      if (end - start < 14) {
        this.drop('malformed');
        continue;
      }
      if (this.framePolicy !== undefined) {
        const why = this.framePolicy.checkCaptured(slab, start, end);
        if (why !== undefined) {
          this.drop(why);
          continue;
        }
      }
      const src = srcMac(slab, start);
      if (this.macs.learn(src, self, now) === 'moved') this.clearFlows();
      const dst = dstMac(slab, start);
      if (isGroupMac(dst)) {
        this.flood(self, slab, start, end);
        continue;
      }
      const owner = this.macs.lookup(dst);
      if (owner === undefined) this.flood(self, slab, start, end);
      // [fastdp] A captured frame was flooded by the bridge (no learning on the TAP), so
      // the kernel's VXLAN already carried it to a fastdp owner.
      else if (owner !== self && !this.fastdpNums.has(owner)) {
        this.unicast(self, owner, slab, start, end);
        if (cacheable) this.installEgressFlow(src, dst, owner, end - start);
      }
    }
    this.sleeve.flush();
  };

  /**
   * [flow cache] Caches the decision just made for a captured frame srcM → dstM owned
   * by peer `owner`: only towards a plaintext next hop whose path takes the frame.
   */
  private installEgressFlow(srcM: number, dstM: number, owner: number, len: number): void {
    const sp = this.unicastNext.get(owner);
    const tap = this.tap;
    const fd = this.sleeve.fd;
    if (tap === undefined || sp === undefined || fd < 0 || sp.encrypted || sp.sealer !== undefined || sp.addr < 0 || len > sp.maxFrame) return;
    egressTemplate(this.selfNum, this.selfNum, owner, this.flowTemplate);
    tap.addFlow(srcM, dstM, fd, sp.addr, sp.port, this.flowTemplate, sp.maxFrame, FLOW_TTL_MS);
  }

  /** [flow cache] Empties both directions' caches: a decision's input changed. */
  clearFlows(): void {
    this.tap?.clearFlows();
    this.sleeve.clearFlows();
  }

  /** [flow cache] Counters: egress from the TAP addon, ingress from the UDP addon. */
  flowStats(): { egress: FlowStats; ingress: FlowStats } {
    return { egress: this.tap?.flowStats() ?? NO_FLOW_STATS, ingress: this.sleeve.flowStats() };
  }

  private unicast(origin: number, dst: number, buf: Buffer, start: number, end: number): void {
    const sp = this.unicastNext.get(dst);
    if (sp === undefined) {
      this.drop('no-route');
      return;
    }
    this.send(sp, origin, dst, buf, start, end);
  }

  private flood(origin: number, buf: Buffer, start: number, end: number): void {
    const list = this.broadcastFor(origin);
    // [fastdp] Our own captured broadcasts reached fastdp neighbours' bridges through the
    // kernel; a neighbour that relays further gets a relay-only copy (dst = origin),
    // which it forwards along the tree without delivering it again.
    const captured = origin === this.selfNum && this.fastdpNums.size !== 0;
    for (let i = 0; i < list.length; i++) {
      const sp = list[i];
      if (captured && this.fastdpNums.has(sp.num)) {
        if (this.relayVia.has(sp.num)) this.send(sp, origin, origin, buf, start, end);
        continue;
      }
      this.send(sp, origin, 0, buf, start, end);
    }
  }

  private send(sp: SleevePeer, origin: number, dst: number, buf: Buffer, start: number, end: number): void {
    if (end - start <= sp.maxFrame) {
      this.traffic.framesOut++;
      this.traffic.bytesOut += end - start;
      this.sleeve.enqueue(sp, origin, dst, buf, start, end);
      return;
    }
    this.tooBig(sp, origin, dst, buf, start, end);
  }

  /**
   * A frame larger than the path to `sp` allows: IPv4 with DF gets an ICMP
   * "fragmentation needed" back to its sender (RFC 1191), IPv4 without DF is fragmented
   * here (RFC 791), anything else is dropped and counted.
   */
  private tooBig(sp: SleevePeer, origin: number, dst: number, buf: Buffer, start: number, end: number): void {
    const mtu = sp.maxFrame - 14;
    const df = ipv4DontFragment(buf, start, end);
    if (df === false) {
      const frags = fragmentIPv4(buf, start, end, mtu);
      if (frags) {
        for (const f of frags) this.sleeve.enqueue(sp, origin, dst, f, 0, f.length);
        return;
      }
    } else if (df === true) {
      const icmp = icmpFragNeeded(buf, start, end, mtu);
      if (icmp) {
        this.drop('mtu');
        if (origin === this.selfNum) this.tap?.write(icmp, 0, icmp.length);
        else this.unicast(this.selfNum, origin, icmp, 0, icmp.length);
        return;
      }
    }
    this.drop('mtu');
  }

  onFrames(peer: SleevePeer, buf: Buffer, start: number, end: number): void {
    if (this.routesGeneration !== this.topology.generation) this.recalcRoutes();
    this.rxHop = peer;
    this.rxCacheable = this.flowCache && this.tap !== undefined && this.sleeve.batchSize <= FLOW_BATCH_MAX && peer.opener === undefined && peer.addr >= 0;
    if (!forEachFrame(buf, start, end, this.onFrame)) this.drop('malformed');
    // Relayed frames leave with the sleeve's flush and delivered ones with
    // onBatchEnd, both once per received batch.
  }

  // [sleeve batching] TAP writes of one received datagram batch, as (offset, length)
  // pairs into one buffer, written with one writeSlab call.
  private tapPendingBuf: Buffer | undefined;
  private readonly tapPending = new Uint32Array(2 * 1024);
  private tapPendingCount = 0;

  /** End of a received datagram batch: write the delivered frames to the TAP. */
  onBatchEnd(): void {
    this.flushTap();
  }

  private flushTap(): void {
    const n = this.tapPendingCount;
    if (n === 0) return;
    const buf = this.tapPendingBuf!;
    this.tapPendingCount = 0;
    this.tapPendingBuf = undefined;
    if (this.tap === undefined) return;
    const written = this.tap.writeSlab(buf, this.tapPending, n);
    if (written < n) this.drop('tap', n - written);
  }

  private readonly onFrame = (src: number, dst: number, buf: Buffer, start: number, end: number): void => {
    const self = this.selfNum;
    if (src === self) {
      this.drop('loop');
      return;
    }
    this.traffic.framesIn++;
    this.traffic.bytesIn += end - start;
    if (this.macs.learn(srcMac(buf, start), src, this.now) === 'moved') this.clearFlows();
    if (dst === self) {
      if (this.deliver(buf, start, end) && this.rxCacheable) this.installIngressFlow(src, buf, start);
    } else if (dst === 0) {
      this.deliver(buf, start, end);
      this.flood(src, buf, start, end);
    } else if (dst === src) {
      // [fastdp] relay-only broadcast: the origin's kernel delivered it to our bridge.
      this.flood(src, buf, start, end);
    } else {
      this.unicast(src, dst, buf, start, end);
    }
  };

  /**
   * [flow cache] Caches the decision just made for a frame from origin `src` delivered
   * here: only for a destination MAC learned on our own TAP (unknown ones flood).
   */
  private installIngressFlow(src: number, buf: Buffer, start: number): void {
    const dstM = dstMac(buf, start);
    const hop = this.rxHop;
    if (hop === undefined || isGroupMac(dstM) || this.macs.lookup(dstM) !== this.selfNum) return;
    this.sleeve.addIngressFlow(hop, src, srcMac(buf, start), dstM, this.tap!.fd, this.tapVnetBytes, FLOW_TTL_MS);
  }

  /** Queues a frame for the TAP; false if policy dropped it or there is no TAP. */
  private deliver(buf: Buffer, start: number, end: number): boolean {
    if (this.framePolicy !== undefined) {
      const why = this.framePolicy.checkDelivered(buf, start, end);
      if (why !== undefined) {
        this.drop(why);
        return false;
      }
    }
    if (this.tap === undefined) return false;
    // [sleeve batching] queued for flushTap (the buffer is valid until onBatchEnd).
    if (buf !== this.tapPendingBuf || this.tapPendingCount === 1024) {
      this.flushTap();
      this.tapPendingBuf = buf;
    }
    const i = 2 * this.tapPendingCount++;
    this.tapPending[i] = start;
    this.tapPending[i + 1] = end - start;
    return true;
  }

  // ---- status ----
  private emitEvent(e: RouterEvent): void {
    this.emit('event', e);
  }

  private emitConnection(c: Connection, state: string, info = ''): void {
    const sp = c.remote ? this.sleevePeers.get(c.remote.name) : undefined;
    this.emitEvent({
      type: 'connection', address: c.address, peer: c.remote?.name, nickname: c.remote?.nickname, state,
      ...this.pathInfo(sp), encrypted: sp?.encrypted, info,
    });
  }

  connectionReports(): ReportConnection[] {
    const out: ReportConnection[] = [];
    for (const c of this.connections) {
      const r = c.remote;
      const sp = r ? this.sleevePeers.get(r.name) : undefined;
      let state = 'connecting';
      let info = '';
      if (c.state === 'ready' && r) {
        if (sp?.established) {
          state = 'established';
          const pi = this.pathInfo(sp);
          info = `${pi.path} ${r.name}(${r.nickname}) mtu=${pi.mtu}${sp.encrypted ? ' encrypted' : ' unencrypted'}`;
        } else {
          state = 'pending';
          info = sp ? 'waiting for UDP heartbeats' : 'exchanging session keys';
        }
      }
      out.push({ Address: c.address, Outbound: c.outbound, State: state, Info: info, Name: r?.name, NickName: r?.nickname, Path: this.pathInfo(sp).path, Encrypted: sp?.encrypted, MTU: this.pathInfo(sp).mtu });
    }
    for (const t of this.targets.list()) {
      if (t.state === 'retrying' || t.state === 'self') {
        out.push({ Address: t.address, Outbound: true, State: 'failed', Info: `${t.lastError ?? 'failed'}${t.state === 'retrying' ? `, retry: ${new Date(t.nextAttempt).toISOString()}` : ''}` });
      }
    }
    return out.sort((a, b) => a.Address.localeCompare(b.Address));
  }

  /** Sleeve traffic: frames the router handled plus those the flow cache forwarded. */
  private sleeveTraffic(): { framesIn: number; bytesIn: number; framesOut: number; bytesOut: number; flows: { egress: FlowStats; ingress: FlowStats } } {
    const flows = this.flowStats();
    const t = this.traffic;
    return {
      framesIn: t.framesIn + flows.ingress.frames, bytesIn: t.bytesIn + flows.ingress.bytes,
      framesOut: t.framesOut + flows.egress.frames, bytesOut: t.bytesOut + flows.egress.bytes, flows,
    };
  }

  report(): Omit<Report, 'IPAM' | 'Endpoints'> {
    if (this.routesGeneration !== this.topology.generation) this.recalcRoutes();
    const t = this.sleeveTraffic();
    const fs = t.flows;
    return {
      Version: VERSION,
      Router: {
        Name: this.selfName,
        NickName: this.nickname,
        Port: this.config.port,
        Protocol: 'tsweave',
        ProtocolMinVersion: PROTOCOL_MIN_VERSION,
        ProtocolMaxVersion: PROTOCOL_MAX_VERSION,
        Encryption: this.config.passwordKey !== undefined,
        TrustedSubnets: this.config.trustedSubnets,
        PeerDiscovery: this.config.discovery,
        ConnLimit: this.config.connLimit,
        MTU: this.config.mtu,
        Peers: this.topology.peers().map((p) => ({
          Name: p.name, NickName: p.nickname, UID: p.uid, Version: p.version,
          Connections: p.connections.map((c) => ({ Name: c.name, NickName: this.topology.get(c.name)?.nickname ?? '', Address: c.address, Outbound: c.outbound, Established: c.established })),
        })),
        Connections: this.connectionReports(),
        Targets: this.targets.directAddresses(),
        TargetStates: this.targets.list().map((t) => ({ Address: t.address, State: t.state, NextAttempt: t.state === 'retrying' ? t.nextAttempt : undefined, LastError: t.lastError })),
        UnicastRoutes: this.routes.unicastAll(),
        BroadcastRoutes: this.routes.broadcastAll(),
        MACs: this.macs.size,
        Drops: { ...this.drops },
        Traffic: {
          sleeve: { FramesIn: t.framesIn, FramesOut: t.framesOut, BytesIn: t.bytesIn, BytesOut: t.bytesOut },
          ...(this.fastdp ? { fastdp: this.fastdp.traffic() } : {}),
        },
        FlowCache: {
          Enabled: this.flowCache,
          Egress: { Installs: fs.egress.installs, Clears: fs.egress.clears, Frames: fs.egress.frames, Drops: fs.egress.drops, Errors: fs.egress.errors },
          Ingress: { Installs: fs.ingress.installs, Clears: fs.ingress.clears, Frames: fs.ingress.frames, Drops: fs.ingress.drops, Errors: fs.ingress.errors },
        },
      },
    };
  }

  /** Data-path and gossip counters for metrics. */
  counters(): DataPathCounters {
    const fd = this.fastdp?.traffic(); // [fastdp] kernel counters of the VXLAN device
    const t = this.sleeveTraffic();
    return {
      framesIn: { sleeve: t.framesIn, fastdp: fd?.FramesIn ?? 0 }, framesOut: { sleeve: t.framesOut, fastdp: fd?.FramesOut ?? 0 },
      bytesIn: { sleeve: t.bytesIn, fastdp: fd?.BytesIn ?? 0 }, bytesOut: { sleeve: t.bytesOut, fastdp: fd?.BytesOut ?? 0 },
      drops: { ...this.drops }, gossipMessages: { ...this.gossipStats.messages }, gossipBytes: { ...this.gossipStats.bytes },
      connectionTerminations: this.connectionTerminations, macCacheSize: this.macs.size, flows: this.fastdp?.flows() ?? 0,
    };
  }

  macEntries(): Array<{ mac: string; peer: string }> {
    return this.macs.entries().map((e) => ({ mac: e.mac, peer: numToPeerName(e.peer) }));
  }

  formatMac(n: number): string {
    return formatMac(n);
  }
}
