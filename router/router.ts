/**
 * The router's control plane: control connections (dial, accept, admit, close), the
 * connection maker, topology gossip and the gossip channel registry, session keys,
 * and the sleeve/fastdp peer life cycle. Pure decisions live in mesh/ (topology,
 * routes, connection-maker, gossip-batch); the data path is the forwarding core in
 * overlay/forwarder.ts, which this file feeds (sleeve peers, fastdp state, route
 * changes) and reports on.
 *
 * Data path (per Weave's router design, overlay/forwarder.ts):
 *  - TAP batch → learn source MAC as ours → destination MAC known remote: unicast to its
 *    peer via the next hop; group or unknown: flood along our broadcast tree.
 *  - datagram → each frame: learn source MAC → frame's origin peer; deliver to the TAP
 *    if it is for us (or broadcast), relay it otherwise (next hop, or the origin's
 *    broadcast tree).
 */
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Topology, type ConnectionSummary } from './mesh/topology.js';
import { Routes } from './mesh/routes.js';
import { Gossip, type GossipHandler, type GossipChannel } from './mesh/gossip.js';
import { formatMac } from './overlay/mac-cache.js';
import { Forwarder, type FramePolicy } from './overlay/forwarder.js';
import { numToPeerName, peerNameToNum, type PeerName } from './mesh/peer-name.js';
import { monoNow } from './mesh/mono-clock.js';
import { BeatTick, sharedBeat } from './mesh/beat.js';
import { Connection, HEARTBEAT_CHECK_MS, loadNoise, type ConnectionHost } from './mesh/connection.js';
import type { ControlMessage } from './mesh/protocol.js';
import { DEFAULT_HALF_OPEN_LIMITS, FailureLog, HalfOpenLimiter } from './mesh/admission.js';
import { canonicalIp, parsePeerAddress, sourcePrefix } from './mesh/address.js';
import { TargetTable, discoveredDialAt, normaliseAddress, resolutionFailure } from './mesh/connection-maker.js';
import { Sleeve, SleevePeer, datagramFor, type SleeveHost } from './overlay/sleeve.js';
import type { Tap } from './overlay/tap.js';
import { Sealer, Opener } from './crypto/aead.js';
import { deriveSessionKeys, randomKeyMaterial } from './crypto/keys.js';
import { PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION, rangeRefusal } from './mesh/protocol.js';
import type { Report, ReportConnection, RouterEvent } from './api/report.js';
import type { DataPathCounters } from './api/metrics.js';
import { cidrContains } from './policy/cidr-match.js';
import type { Fastdp, FastdpCandidate, FastdpHost } from './overlay/fastdp.js';
import { flowCacheEnabled, type FlowStats } from './overlay/flow-cache.js';

export type { FramePolicy } from './overlay/forwarder.js';

export const VERSION = '0.1.0';
const GOSSIP_INTERVAL_MS = 30_000;
/**
 * The connection maker's tick (discovery, dials due): every CONNECT_TICK_MS while some
 * target is waiting, connecting or retrying soon; every CONNECT_IDLE_TICK_MS when all
 * are connected. A topology change or a closed connection brings the next one forward.
 * [scale, issue #20] It was a fixed 500 ms tick walking the whole table. The idle tick
 * rides the shared beat at multiples of 6 s, which are also grid points of the sleeve's
 * and fastdp's 2 s idle ticks: no wake-up of its own.
 */
const CONNECT_TICK_MS = 500;
const CONNECT_IDLE_TICK_MS = 6_000;
/** Topology changes within this window share one route rebuild (ms). */
const ROUTES_COALESCE_MS = 10;
const CONNECT_TIMEOUT_MS = 5_000;
const MAC_MAX_AGE_MS = 10 * 60_000;
/** [pre-auth] Half-open inbound connections from one IPv6 /64 (each address also stays within the per-source limit). */
export const HALF_OPEN_PER_PREFIX = 32;

export type { GossipHandler, GossipChannel } from './mesh/gossip.js';

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
  /** --ipalloc-range6 prefix in canonical text (issue #21); compared with peers' at connect. */
  ipamRange6?: string;
  log: (line: string) => void;
  /** Cache forwarding decisions in the addons (router/overlay/flow-cache.ts); default: unless WEAVE_NO_FLOW_CACHE=1. */
  flowCache?: boolean;
}

export class Router extends EventEmitter implements ConnectionHost, SleeveHost, FastdpHost {
  readonly selfName: PeerName;
  readonly selfNum: number;
  readonly nickname: string;
  readonly uid: number;
  readonly topology: Topology;
  readonly routes: Routes;
  /** The forwarding core (data path). */
  readonly forwarder: Forwarder;
  readonly targets: TargetTable;
  readonly sleeve: Sleeve;
  private server: net.Server | undefined;
  private readonly connections = new Set<Connection>();
  // [pre-auth] Inbound connections not yet ready hold a HalfOpenLimiter slot; failures of
  // strangers are logged through FailureLog (aggregated per source per 60 s).
  private readonly halfOpen = new HalfOpenLimiter();
  /** IPv6 sources per /64 (HALF_OPEN_PER_PREFIX), on top of the per-address limit. */
  private readonly halfOpenPrefix = new HalfOpenLimiter({ perSource: HALF_OPEN_PER_PREFIX, total: DEFAULT_HALF_OPEN_LIMITS.total });
  private readonly halfOpenSlot = new WeakSet<Connection>();
  private readonly failureLog = new FailureLog((line) => this.log(line));
  private readonly byPeer = new Map<PeerName, Connection>();
  private readonly sleevePeers = new Map<PeerName, SleevePeer>();
  private readonly localKeyMaterial = new Map<Connection, Buffer>();
  /** Topology gossip and the channel registry (mesh/gossip.ts). */
  readonly gossip: Gossip<Connection>;
  /** Stop functions of the router's jobs on the shared beat. */
  private beatJobs: Array<() => void> = [];
  connectionTerminations = 0;
  /** Subnet isolation (the forwarder's); undefined lets every frame through. Setting it clears the flow cache. */
  get policy(): FramePolicy | undefined {
    return this.forwarder.policy;
  }
  set policy(p: FramePolicy | undefined) {
    this.forwarder.policy = p;
  }
  get macs() {
    return this.forwarder.macs;
  }
  get drops(): Record<string, number> {
    return this.forwarder.drops;
  }
  get traffic() {
    return this.forwarder.traffic;
  }
  private knownPeerNames = new Set<PeerName>();
  // [fastdp] The kernel fast datapath (overlay/fastdp.ts) when running, set by the daemon.
  fastdp: Fastdp | undefined;

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
    this.gossip = new Gossip<Connection>({
      selfName: this.selfName, topology: this.topology, routes: this.routes,
      neighbours: () => this.byPeer.values(),
      neighbour: (n) => this.byPeer.get(n),
      topologyChanged: () => this.topologyChanged(),
      drop: (r) => this.drop(r),
      log: (l) => this.log(l),
    });
    this.forwarder = new Forwarder({
      selfName: this.selfName, topology: this.topology, routes: this.routes, sleeve: this.sleeve,
      sleevePeers: this.sleevePeers, flowCache: config.flowCache ?? flowCacheEnabled(),
    });
  }

  // ---- ConnectionHost ----
  get udpPort(): number { return this.config.port; }
  get listenPort(): number { return this.config.port; }
  get passwordKey(): Buffer | undefined { return this.config.passwordKey; }
  get ipamRange(): string { return this.config.ipamRange; }
  get ipamRange6(): string | undefined { return this.config.ipamRange6; }

  log(line: string): void {
    this.config.log(line);
  }

  drop(reason: string, n = 1): void {
    this.forwarder.drop(reason, n);
  }

  /**
   * Bind TCP and UDP, attach the TAP, start connecting to the configured peers.
   * @param opts.dial false: accept connections but dial none until startDialing() — the
   *   daemon dials once its own start-up is done, so a joining router's handshakes and
   *   gossip with a big mesh do not run in between (and stretch) `weave launch` (issue #20)
   */
  async start(tap: Tap | undefined, opts: { dial?: boolean } = {}): Promise<void> {
    // The Noise channel is big (libp2p): only a router with a password loads it.
    if (this.config.passwordKey) await loadNoise();
    await this.sleeve.listen();
    this.server = net.createServer({ noDelay: true }, (s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', (err: NodeJS.ErrnoException) => reject(new Error(
        err.code === 'EADDRINUSE' ? `TCP port ${this.config.port} is already in use: is another router running in this network namespace?` : `cannot listen on TCP port ${this.config.port}: ${err.message}`)));
      this.server!.listen(this.config.port, () => resolve());
    });
    this.server.on('error', (err) => this.log(`listener error: ${err.message}`));
    this.forwarder.attachTap(tap, (l) => this.log(l));
    for (const p of this.config.peers) this.targets.add(p, true, Date.now());
    // The router's periodic jobs ride the shared beat (mesh/beat.ts): they wake the
    // process together with each other and with the overlays' slow ticks.
    // One job checks every control connection's liveness (mesh/connection.ts tick).
    this.beatJobs.push(sharedBeat.every(HEARTBEAT_CHECK_MS, () => {
      const now = monoNow();
      for (const c of [...this.connections]) c.tick(now);
    }));
    this.beatJobs.push(sharedBeat.every(GOSSIP_INTERVAL_MS, () => this.gossip.periodic()));
    this.beatJobs.push(sharedBeat.every(60_000, () => {
      if (this.macs.expire(monoNow(), MAC_MAX_AGE_MS) > 0) this.clearFlows();
    }));
    // [pre-auth] "N failed handshakes from X" summaries are written when their window ends,
    // not only when the next failure happens to arrive.
    this.beatJobs.push(sharedBeat.every(10_000, () => this.failureLog.flush(Date.now())));
    if (opts.dial !== false) this.startDialing();
  }

  /** Start the connection maker (discovery and dials to the targets); idempotent. */
  startDialing(): void {
    if (this.dialing || this.stopped) return;
    this.dialing = true;
    this.connectTick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.routesTimer !== undefined) clearTimeout(this.routesTimer);
    this.routesTimer = undefined;
    this.connectTicker.cancel();
    for (const stop of this.beatJobs) stop();
    this.beatJobs = [];
    this.clearFlows();
    await this.fastdp?.close().catch(() => undefined); // [fastdp]
    for (const c of [...this.connections]) c.close('router shutting down');
    this.forwarder.closeTap();
    this.sleeve.close();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  // ---- connection maker ----
  /** The connection maker's tick; its idle interval rides the shared beat (mesh/beat.ts). */
  private readonly connectTicker = new BeatTick(() => this.connectTick());
  private stopped = false;
  /** Whether the connection maker runs (start() with dial: false defers it to startDialing()). */
  private dialing = false;

  /** (Re-)arm the connection maker's tick `ms` from now, unless it is due sooner already. */
  private armConnectTick(ms: number): void {
    if (this.stopped) return;
    this.connectTicker.arm(ms);
  }

  private connectTick(): void {
    if (!this.dialing || this.stopped) return;
    const now = Date.now();
    try {
      if (this.config.discovery) this.discover(now);
      for (const t of this.targets.due(now, (a) => this.isConnectedTo(a), this.config.connLimit - this.byPeer.size)) this.dial(t.address);
      this.targets.hastenAlive(now, this.aliveThroughOthers());
    } finally {
      const next = this.targets.nextDue(now);
      this.armConnectTick(Math.min(CONNECT_IDLE_TICK_MS, Math.max(CONNECT_TICK_MS, next - now)));
    }
  }

  /**
   * Whether the peer at a target address ("host:port") is known alive through others:
   * a peer we can route to lists an established connection to it at that address, and
   * we can route to it too (symmetric established links, so a departed peer's frozen
   * entry does not count). The address set is built on the first call only.
   */
  private aliveThroughOthers(): (address: string) => boolean {
    let addrs: Set<string> | undefined;
    return (address) => {
      if (addrs === undefined) {
        addrs = new Set();
        for (const n of this.topology.names()) {
          if (n === this.selfName || this.routes.unicast(n) === undefined) continue;
          for (const c of this.topology.get(n)!.connections) {
            if (c.established && c.name !== this.selfName && this.routes.unicast(c.name) !== undefined) addrs.add(c.address);
          }
        }
      }
      return addrs.has(address);
    };
  }

  private isConnectedTo(address: string): boolean {
    for (const c of this.connections) {
      if (c.target === address && c.state !== 'closed') return true;
      if (c.state === 'ready' && c.address === address) return true;
    }
    return false;
  }

  private dial(address: string): void {
    let host: string;
    let port: number;
    try {
      ({ host, port } = parsePeerAddress(address, this.config.port));
    } catch (err) {
      this.targets.failed(address, (err as Error).message, Date.now());
      return;
    }
    const s = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => s.destroy(new Error(`connect timed out after ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
    const onErr = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      const now = Date.now();
      this.targets.failed(address, err.message, now, Math.random, resolutionFailure(err), true);
      // A peer alive through others gets its short wait at once, not at the next tick
      // (until then its full backoff, up to ~37 s, would stand and show in reports).
      this.targets.hastenAlive(now, this.aliveThroughOthers());
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
    // [pre-auth] per-source and total half-open caps; IPv6 sources also per /64
    const ra = s.remoteAddress ?? '';
    const source = canonicalIp(ra) ?? ra;
    const refused = this.acquireHalfOpen(source);
    if (refused !== undefined) {
      s.destroy();
      this.failureLog.failed(sourcePrefix(source) ?? source, refused, Date.now());
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
        // The peer the address leads to is c.name: only the lower name dials at once.
        this.targets.add(c.address, false, discoveredDialAt(this.selfName, c.name, now));
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
    const mismatch = rangeRefusal({ range: this.config.ipamRange, range6: this.config.ipamRange6 }, r);
    if (mismatch) return mismatch;
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

  /**
   * [pre-auth] Takes a half-open slot for `source`: per address and in total, and for
   * IPv6 also per /64 prefix (mesh/address.ts sourcePrefix: one IPv6 host usually holds
   * a whole /64, so per-address limits alone would not bound it; the prefix limit is
   * higher so that peers sharing one LAN /64 can still reconnect at once).
   * @returns undefined when admitted, else why not.
   */
  private acquireHalfOpen(source: string): string | undefined {
    const prefix = sourcePrefix(source);
    if (prefix !== undefined) {
      const why = this.halfOpenPrefix.tryAcquire(prefix);
      if (why !== undefined) return why;
    }
    const why = this.halfOpen.tryAcquire(source);
    if (why !== undefined && prefix !== undefined) this.halfOpenPrefix.release(prefix);
    return why;
  }

  /** [pre-auth] Gives back c's half-open slot, if it holds one. */
  private releaseHalfOpen(c: Connection): void {
    if (!this.halfOpenSlot.delete(c)) return;
    this.halfOpen.release(c.remoteIp);
    const prefix = sourcePrefix(c.remoteIp);
    if (prefix !== undefined) this.halfOpenPrefix.release(prefix);
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
    this.gossip.fullExchange(c);
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
        return this.gossip.onMessage(c, r.name, m);
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
        // [flow cache] at once, not at the next batch's route refresh: flows of an
        // encrypted peer hold a copy of its keys, wiped with them.
        this.clearFlows();
      }
      this.connectionTerminations++;
      this.fastdp?.kick(); // [fastdp] stop using VXLAN to it now, not at the next slow tick
      this.log(`connection ${c.outbound ? '->' : '<-'} ${c.address} ${r.name}(${r.nickname}) closed: ${reason}`);
      this.localConnectionsChanged();
    } else if (wasHalfOpen && !/^duplicate connection|cannot connect to ourself/.test(reason)) {
      this.failureLog.failed(sourcePrefix(c.remoteIp) ?? c.remoteIp, reason, Date.now()); // [pre-auth] aggregated (IPv6 per /64)
    } else if (!/^duplicate connection|cannot connect to ourself/.test(reason)) {
      this.log(`connection ${c.outbound ? '->' : '<-'} ${c.address} failed: ${reason}`);
    }
    this.armConnectTick(CONNECT_TICK_MS);
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
    this.fastdp?.kick();
    this.sleeve.kick();
    this.log(`connection ${c.outbound ? '->' : '<-'} ${c.address} ${sp.name}(${c.remote!.nickname}) established over UDP (sleeve${sp.encrypted ? ', encrypted' : ''})`);
    this.localConnectionsChanged();
    this.emitConnection(c, 'established');
  }

  onUdpTimeout(sp: SleevePeer, reason: string): void {
    const c = this.byPeer.get(sp.name);
    if (c) c.close(reason);
  }

  /** [flow cache] A send key moved to its next epoch: flows holding the old one go. */
  onRekey(_sp: SleevePeer): void {
    this.clearFlows();
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

  fastdpHeard(num: number, now: number): void {
    this.sleeve.heardElsewhere(num, now);
  }

  setFastdp(num: number, on: boolean, reason: string): void {
    if (!this.forwarder.setFastdp(num, on)) return;
    const name = numToPeerName(num);
    const sp = this.sleevePeers.get(name);
    if (sp) {
      sp.onFastdp = on;
      if (!on) {
        sp.lastVerify = 0; // back on the sleeve: re-verify its PMTU now
        this.sleeve.kick();
      }
    }
    const c = this.byPeer.get(name);
    this.log(`connection to ${name}(${c?.remote?.nickname ?? ''}) now uses ${on ? 'fastdp' : `the sleeve${reason ? ` (${reason})` : ''}`}`);
    if (c) this.emitConnection(c, 'established');
  }

  /** [fastdp] The path a connection's frames take and its MTU, for status. */
  private pathInfo(sp: SleevePeer | undefined): { path: 'fastdp' | 'sleeve' | undefined; mtu: number | undefined } {
    if (sp === undefined) return { path: undefined, mtu: undefined };
    if (this.forwarder.fastdpNums.has(sp.num)) return { path: 'fastdp', mtu: this.config.mtu };
    return { path: sp.established ? 'sleeve' : undefined, mtu: sp.maxFrame - 14 };
  }

  // ---- topology ----
  private localConnectionsChanged(): void {
    const conns: ConnectionSummary[] = [];
    for (const [name, c] of this.byPeer) {
      conns.push({ name, address: c.address, outbound: c.outbound, established: this.sleevePeers.get(name)?.established ?? false });
    }
    if (this.topology.setLocalConnections(conns)) this.gossip.queueTopology([this.selfName]);
    this.topologyChanged();
  }

  /**
   * The topology changed (a merge or our own connections): collect unreachable
   * entries now, and rebuild routes and peer events once, ROUTES_COALESCE_MS later,
   * for the whole burst. The data path keeps the last tables meanwhile and never
   * recomputes inline (issue #20). A minimum spacing of 100 ms between rebuilds halved
   * the rebuilds of bench:scale --real 30 (~370 → ~180 per router) without changing
   * launch or convergence times; its runs idled higher (0.33–0.47 vs 0.33–0.37 % of a
   * core, interleaved; possibly noise, a later run without it gave 0.42), so with no
   * measured gain it was taken out again.
   */
  private topologyChanged(): void {
    this.topology.gc();
    if (this.config.discovery) this.armConnectTick(CONNECT_TICK_MS); // new peers to dial, or gone ones to forget
    if (this.routesTimer !== undefined) return;
    this.routesTimer = setTimeout(() => {
      this.routesTimer = undefined;
      this.applyTopology();
    }, ROUTES_COALESCE_MS);
  }

  private routesTimer: NodeJS.Timeout | undefined;

  /** Peer joined/left events and the data-path routes, after a burst of topology changes. */
  private applyTopology(): void {
    const names = new Set([...this.topology.names()].sort());
    for (const n of names) {
      if (!this.knownPeerNames.has(n)) {
        this.knownPeerNames.add(n);
        this.emitEvent({ type: 'peer-joined', peer: n, nickname: this.topology.get(n)?.nickname ?? '' });
      }
    }
    for (const n of [...this.knownPeerNames]) {
      if (!names.has(n)) {
        this.knownPeerNames.delete(n);
        this.forwarder.forgetPeer(n);
        this.emitEvent({ type: 'peer-left', peer: n, nickname: '' });
        this.emit('peer-gone', n);
      }
    }
    this.forwarder.recalcRoutes();
    // Subsystems whose state follows reachability (weaveDNS's answerable origins) re-check now.
    this.emit('routes');
  }

  /** Register a gossip channel (e.g. 'ipam') and get its handle onto the mesh. */
  registerChannel(name: string, handler: GossipHandler): GossipChannel {
    return this.gossip.registerChannel(name, handler);
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
    return out.sort((a, b) => (a.Address < b.Address ? -1 : a.Address > b.Address ? 1 : 0)); // code-unit order (see TargetTable.list)
  }

  /** Sleeve traffic: frames the router handled plus those the flow cache forwarded. */
  private sleeveTraffic() {
    return this.forwarder.sleeveTraffic();
  }

  /** [flow cache] Empties both directions' caches: a decision's input changed. */
  clearFlows(): void {
    this.forwarder.clearFlows();
  }

  /** [flow cache] Counters: egress from the TAP addon, ingress from the UDP addon. */
  flowStats(): { egress: FlowStats; ingress: FlowStats } {
    return this.forwarder.flowStats();
  }

  // ---- SleeveHost: frames go to the forwarding core ----
  onFrames(peer: SleevePeer, buf: Buffer, start: number, end: number): void {
    this.forwarder.onFrames(peer, buf, start, end);
  }

  onBatchEnd(): void {
    this.forwarder.onBatchEnd();
  }

  report(): Omit<Report, 'IPAM' | 'Endpoints'> {
    this.forwarder.refreshRoutes();
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
        TargetStates: this.targets.list().map((t) => ({ Address: t.address, State: t.state, NextAttempt: t.state === 'retrying' ? t.nextAttempt : undefined, LastError: t.lastError, ...(t.unresolved ? { Unresolved: t.unresolved } : {}) })),
        UnicastRoutes: this.routes.unicastAll(),
        BroadcastRoutes: this.routes.broadcastAll(),
        MACs: this.macs.size,
        Drops: { ...this.drops },
        Traffic: {
          sleeve: { FramesIn: t.framesIn, FramesOut: t.framesOut, BytesIn: t.bytesIn, BytesOut: t.bytesOut },
          ...(this.fastdp ? { fastdp: this.fastdp.traffic() } : {}),
        },
        FlowCache: {
          Enabled: this.forwarder.flowCache,
          Egress: { Installs: fs.egress.installs, Clears: fs.egress.clears, Frames: fs.egress.frames, Drops: fs.egress.drops, Errors: fs.egress.errors, Sealed: fs.egress.crypto },
          Ingress: { Installs: fs.ingress.installs, Clears: fs.ingress.clears, Frames: fs.ingress.frames, Drops: fs.ingress.drops, Errors: fs.ingress.errors, Opened: fs.ingress.crypto },
        },
        TapMerge: ((m) => ({
          Router: { Frames: m.router.frames, SuperFrames: m.router.superFrames, Fallbacks: m.router.fallbacks },
          FlowCache: { Frames: m.flowCache.frames, SuperFrames: m.flowCache.superFrames, Fallbacks: m.flowCache.fallbacks },
        }))(this.forwarder.tapMerge()),
        Addons: ((a) => ({ tap: a.tap ? { ...a.tap } : undefined, udp: a.udp ? { ...a.udp } : undefined }))(this.forwarder.addonStats()),
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
      drops: { ...this.drops }, gossipMessages: { ...this.gossip.stats.messages }, gossipBytes: { ...this.gossip.stats.bytes },
      topologyDeltas: { ...this.gossip.stats.deltas },
      connectionTerminations: this.connectionTerminations, routeRecomputes: this.forwarder.routeStats.recomputes, macCacheSize: this.macs.size, flows: this.fastdp?.flows() ?? 0,
      tapMerge: ((m) => ({ router: m.router, 'flow-cache': m.flowCache }))(this.forwarder.tapMerge()),
    };
  }

  macEntries(): Array<{ mac: string; peer: string }> {
    return this.macs.entries().map((e) => ({ mac: e.mac, peer: numToPeerName(e.peer) }));
  }

  formatMac(n: number): string {
    return formatMac(n);
  }
}
