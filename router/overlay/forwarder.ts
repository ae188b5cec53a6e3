/**
 * The forwarding core: frames in → decisions → transports. Captured frames (a TAP
 * batch) and received ones (sleeve datagrams) are checked against the isolation
 * policy, their source MACs learned, and each goes to the TAP, to one next hop
 * (unicast route) or along a broadcast tree, over the sleeve — or is skipped when
 * the kernel's fast datapath already carried it. Decisions for small wake-ups are
 * installed in the addons' flow cache (flow-cache.ts).
 *
 * Inputs it does not own: the mesh's routes (router/mesh/routes.ts, recomputed by
 * the router), the sleeve's per-peer senders and the fastdp state. The data-path
 * route tables (next hop per destination peer, per-source broadcast lists) are
 * derived here from those when the router says so (recalcRoutes, on a coalescing
 * timer after a topology change); the frame handlers never recompute. Per Weave's router
 * design; the data path must not allocate per frame.
 */
import { numToPeerName, peerNameToNum, type PeerName } from '../mesh/peer-name.js';
import type { Topology } from '../mesh/topology.js';
import type { Routes } from '../mesh/routes.js';
import { MacCache } from './mac-cache.js';
import type { Sleeve, SleevePeer } from './sleeve.js';
import { forEachFrame } from './sleeve-codec.js';
import { dstMac, srcMac, isGroupMac, ipv4DontFragment, fragmentIPv4, icmpFragNeeded, etherType } from './ethernet.js';
import { ETHERTYPE_IPV6, packetTooBig } from './ipv6.js';
import type { Tap, TapStats } from './tap.js';
import { EGRESS_TEMPLATE_BYTES, FLOW_BATCH_MAX, FLOW_BULK_FRAME, FLOW_TTL_MS, NO_FLOW_STATS, bulkFlowsEnabled, bulkIngressEnabled, egressTemplate, type FlowStats } from './flow-cache.js';
import { COALESCE, type UdpStats } from './udp.js';
import { monoNow } from '../mesh/mono-clock.js';

/**
 * Per-frame subnet isolation (router/policy/isolation.ts): decides, from the local
 * endpoint table alone, whether a frame captured from the TAP may leave this host and
 * whether a frame received from a peer may be delivered here. Returns a drop reason
 * or undefined to allow. Must not allocate per frame.
 */

/** TAP write-merge counters of one writer ({@link Forwarder.tapMerge}). */
export interface TapMergeStats {
  frames: number;
  superFrames: number;
  fallbacks: number;
}

export interface FramePolicy {
  checkCaptured(buf: Buffer, start: number, end: number): string | undefined;
  checkDelivered(buf: Buffer, start: number, end: number): string | undefined;
}

/**
 * A transport the forwarding core hands frames to (Weave's NetworkOverlay; the sleeve
 * implements it). `enqueue` queues one frame for a peer's next datagram; `flush`
 * sends what is queued, once per batch.
 */
export interface Overlay {
  enqueue(peer: SleevePeer, origin: number, dst: number, buf: Buffer, start: number, end: number): void;
  flush(): void;
  clearFlows(): void;
}

export interface ForwarderOptions {
  selfName: PeerName;
  topology: Topology;
  routes: Routes;
  sleeve: Sleeve;
  /** The sleeve peer of each direct neighbour (owned by the router). */
  sleevePeers: ReadonlyMap<PeerName, SleevePeer>;
  /** Cache forwarding decisions in the addons. */
  flowCache: boolean;
}

export class Forwarder {
  readonly macs = new MacCache();
  readonly drops: Record<string, number> = {};
  readonly traffic = { framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0 };
  /** Read once per TAP batch or received datagram (no periodic timer: an idle router stays asleep). */
  now = monoNow();
  private readonly selfName: PeerName;
  private readonly selfNum: number;
  private readonly topology: Topology;
  private readonly routes: Routes;
  private readonly sleeve: Sleeve;
  private readonly sleevePeers: ReadonlyMap<PeerName, SleevePeer>;
  private tap: Tap | undefined;
  private readonly unicastNext = new Map<number, SleevePeer>();
  private readonly broadcastNext = new Map<number, SleevePeer[]>();
  private routesGeneration = -1;
  private framePolicy: FramePolicy | undefined;
  // [flow cache] flow-cache.ts: decisions for small wake-ups are cached in the
  // addons; these hold what an install needs.
  readonly flowCache: boolean;
  /** [flow cache] bulk frames are cached in batches too (flow-cache.ts bulkFlowsEnabled). */
  private readonly bulkFlows: boolean;
  private readonly flowTemplate = Buffer.alloc(EGRESS_TEMPLATE_BYTES);
  private tapVnetBytes = 0;
  /** The peer that sent the datagram being handled, and whether its frames may get ingress flows. */
  private rxHop: SleevePeer | undefined;
  private rxCacheable = false;
  /** [flow cache] ingress flows are installed from batches of any size (flow-cache.ts bulkIngressEnabled). */
  private readonly bulkIngress = bulkIngressEnabled();
  // [fastdp] The peers whose captured frames the kernel carries (never also sent over
  // the sleeve), and the direct neighbours that are the next hop towards some other peer.
  readonly fastdpNums = new Set<number>();
  private readonly relayVia = new Set<number>();

  constructor(o: ForwarderOptions) {
    this.selfName = o.selfName;
    this.selfNum = peerNameToNum(o.selfName);
    this.topology = o.topology;
    this.routes = o.routes;
    this.sleeve = o.sleeve;
    this.sleevePeers = o.sleevePeers;
    this.flowCache = o.flowCache;
    this.bulkFlows = o.flowCache && bulkFlowsEnabled();
  }

  /** Subnet isolation; undefined lets every frame through. Setting it clears the flow cache. */
  get policy(): FramePolicy | undefined {
    return this.framePolicy;
  }
  set policy(p: FramePolicy | undefined) {
    this.framePolicy = p;
    this.clearFlows();
  }

  drop(reason: string, n = 1): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + n;
  }

  /** Start taking frames from the TAP (or none: a router without a TAP, in tests). */
  attachTap(tap: Tap | undefined, log: (line: string) => void): void {
    this.tap = tap;
    tap?.start(this.onTapBatch, (err) => log(`tap: ${err.message}`));
    this.tapVnetBytes = tap?.vnetHeaderBytes ?? 0;
    // [flow cache] Between cached frames the addons wait for the next one themselves.
    const udpPort = this.flowCache ? this.sleeve.fastPort() : undefined;
    if (tap !== undefined && udpPort !== undefined && !tap.linkFastPath(udpPort)) log('flow cache: cannot link the TAP and UDP socket; frames still take the cache');
  }

  closeTap(): void {
    this.tap?.close();
  }

  /** Make the data-path route tables current (after a topology or neighbour change). */
  refreshRoutes(): void {
    if (this.routesGeneration !== this.topology.generation) this.recalcRoutes();
  }

  /** Topology-independent inputs changed (a sleeve peer came or went): rebuild on next use. */
  invalidateRoutes(): void {
    this.routesGeneration = -1;
  }

  /** [fastdp] Frames captured for `num` are (not) carried by the kernel from now on. */
  setFastdp(num: number, on: boolean): boolean {
    if (on === this.fastdpNums.has(num)) return false;
    if (on) this.fastdpNums.add(num);
    else this.fastdpNums.delete(num);
    this.clearFlows();
    return true;
  }

  /** The MAC cache forgets a peer that left the topology. */
  forgetPeer(name: PeerName): void {
    this.macs.deletePeer(peerNameToNum(name));
  }

  /** Sleeve traffic: frames the router handled plus those the flow cache forwarded. */
  sleeveTraffic(): { framesIn: number; bytesIn: number; framesOut: number; bytesOut: number; flows: { egress: FlowStats; ingress: FlowStats } } {
    const flows = this.flowStats();
    const t = this.traffic;
    return {
      framesIn: t.framesIn + flows.ingress.frames, bytesIn: t.bytesIn + flows.ingress.bytes,
      framesOut: t.framesOut + flows.egress.frames, bytesOut: t.bytesOut + flows.egress.bytes, flows,
    };
  }

  /**
   * Rebuilds the data-path route tables from the mesh's routes. Called by the router
   * on a coalescing timer after topology or neighbour changes (and by `refreshRoutes`),
   * never from the frame handlers: until it runs, frames keep using the last tables.
   * Our own broadcast list is rebuilt here; another source's is built when its first
   * broadcast after the rebuild arrives (one BFS that stops at our row). [scale, issue
   * #20] Rebuilding every source seen before was ~30 BFS per rebuild in a 30-peer mesh,
   * ~15 rebuilds per join on every router, for sources that rarely broadcast again.
   */
  recalcRoutes(): void {
    const t0 = process.hrtime.bigint();
    this.clearFlows();
    this.routes.recalculate();
    this.unicastNext.clear();
    this.broadcastNext.clear();
    // [fastdp] Neighbours that relay towards others still need broadcasts over the sleeve.
    this.relayVia.clear();
    const t = this.topology;
    for (let slot = 0; slot < t.slotCapacity; slot++) {
      const name = t.nameAt(slot);
      if (name === undefined || name === this.selfName) continue;
      const hop = this.routes.unicast(name);
      if (hop === undefined) continue;
      const sp = this.sleevePeers.get(hop);
      // The topology keeps each peer's 48-bit number (no parse of the name per rebuild).
      if (sp && sp.established) this.unicastNext.set(t.numAt(slot), sp);
      if (hop !== name) this.relayVia.add(t.numAt(t.slotOf(hop)!));
    }
    this.broadcastFor(this.selfNum);
    this.routesGeneration = this.topology.generation;
    this.routeStats.recomputes++;
    this.routeStats.lastMs = Number(process.hrtime.bigint() - t0) / 1e6;
  }

  /** Data-path route rebuilds (`recalcRoutes`) so far and the wall time of the last one (ms). */
  readonly routeStats = { recomputes: 0, lastMs: 0 };

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


  private readonly onTapBatch = (slab: Buffer, frames: Uint32Array, count: number): void => {
    const self = this.selfNum;
    const now = (this.now = monoNow());
    const cacheable = this.flowCache && count <= FLOW_BATCH_MAX;
    // Bulk frames are cached in batches too (FLOW_BULK_FRAME); one install per
    // conversation and batch (a batch is often one TCP super-frame's segments).
    const bulk = this.bulkFlows;
    let lastSrc = -1;
    let lastDst = -1;
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
        if ((cacheable || (bulk && end - start >= FLOW_BULK_FRAME)) && (src !== lastSrc || dst !== lastDst)) {
          this.installEgressFlow(src, dst, owner, slab.subarray(start, end));
          lastSrc = src;
          lastDst = dst;
        }
      }
    }
    this.sleeve.flush();
  };

  /**
   * [flow cache] Caches the decision just made for a captured frame srcM → dstM owned
   * by peer `owner`, towards a next hop whose path takes the frame; an encrypted next
   * hop's datagrams are sealed by the addon with that peer's Sealer (shared counter).
   * The flow is keyed by `frame`'s EtherType and IP addresses (the policy just passed
   * exactly those), so a forged source, ARP or ND between the same MACs still comes here.
   */
  private installEgressFlow(srcM: number, dstM: number, owner: number, frame: Buffer): void {
    const len = frame.length;
    const sp = this.unicastNext.get(owner);
    const tap = this.tap;
    const fd = this.sleeve.fd;
    if (tap === undefined || sp === undefined || fd < 0 || sp.addr < 0 || len > sp.maxFrame) return;
    if (sp.encrypted && sp.sealer === undefined) return;
    egressTemplate(this.selfNum, this.selfNum, owner, this.flowTemplate);
    // COALESCE: the addon may send this flow's datagrams as UDP GSO runs, when the sleeve would.
    const port = this.sleeve.mayCoalesce(sp) ? sp.port | COALESCE : sp.port;
    tap.addFlow(srcM, dstM, fd, sp.family === 6 ? sp.address : sp.addr, port, this.flowTemplate, sp.maxFrame, FLOW_TTL_MS, sp.sealer, frame);
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

  /**
   * TCP segments written to the TAP merged into GSO super-frames (native gso-merge.h), per
   * writer: `router` = the router's own writes (Tap.writeSlab), `flowCache` = the ingress flow
   * cache in the UDP addon. frames: segments inside super-frames; superFrames: super-frames
   * written; fallbacks: super-frames the kernel refused (EINVAL; merging of that IP family then
   * stops for that writer and the segments go one by one). All totals since start.
   */
  tapMerge(): Record<'router' | 'flowCache', TapMergeStats> {
    const t = this.tap?.stats();
    const u = this.sleeve.udpStats();
    return {
      router: { frames: t?.writeCoalesced ?? 0, superFrames: t?.writeSuperFrames ?? 0, fallbacks: t?.writeMergeFallbacks ?? 0 },
      flowCache: { frames: u?.tapMergedFrames ?? 0, superFrames: u?.tapSuperFrames ?? 0, fallbacks: u?.tapMergeFallbacks ?? 0 },
    };
  }

  /**
   * The addons' raw counters since open, for `weave report` (Router.Addons) and benches:
   * the TAP's (reads, read-offload super-frames and the segments cut from them, egress UDP
   * GSO datagrams, writes) and the sleeve UDP socket's (datagrams, GRO/GSO, ingress merges).
   * Undefined where there is no TAP or socket.
   */
  addonStats(): { tap: TapStats | undefined; udp: UdpStats | undefined } {
    return { tap: this.tap?.stats(), udp: this.sleeve.udpStats() };
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
   * here (RFC 791), IPv6 gets ICMPv6 Packet Too Big (RFC 4443 §3.2; IPv6 is never
   * fragmented en route, RFC 8200 §5), anything else is dropped and counted.
   */
  private tooBig(sp: SleevePeer, origin: number, dst: number, buf: Buffer, start: number, end: number): void {
    const mtu = sp.maxFrame - 14;
    const df = ipv4DontFragment(buf, start, end);
    let icmp: Buffer | undefined;
    if (df === false) {
      const frags = fragmentIPv4(buf, start, end, mtu);
      if (frags) {
        for (const f of frags) this.sleeve.enqueue(sp, origin, dst, f, 0, f.length);
        return;
      }
    } else if (df === true) {
      icmp = icmpFragNeeded(buf, start, end, mtu);
    } else if (etherType(buf, start) === ETHERTYPE_IPV6) {
      icmp = packetTooBig(buf, start, end, mtu);
    }
    this.drop('mtu');
    if (icmp === undefined) return;
    if (origin === this.selfNum) this.tap?.write(icmp, 0, icmp.length);
    else this.unicast(this.selfNum, origin, icmp, 0, icmp.length);
  }

  onFrames(peer: SleevePeer, buf: Buffer, start: number, end: number): void {
    this.now = monoNow();
    this.rxHop = peer;
    this.rxCacheable = this.flowCache && this.tap !== undefined && (this.bulkIngress || this.sleeve.batchSize <= FLOW_BATCH_MAX) && peer.addr >= 0;
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
      if (this.deliver(buf, start, end) && this.rxCacheable) this.installIngressFlow(src, buf, start, end);
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
   * here: only for a destination MAC learned on our own TAP (unknown ones flood), keyed
   * by the frame's EtherType and IP addresses (what the policy just passed).
   */
  private installIngressFlow(src: number, buf: Buffer, start: number, end: number): void {
    const dstM = dstMac(buf, start);
    const hop = this.rxHop;
    if (hop === undefined || isGroupMac(dstM) || this.macs.lookup(dstM) !== this.selfNum) return;
    this.sleeve.addIngressFlow(hop, src, srcMac(buf, start), dstM, this.tap!.fd, this.tapVnetBytes, FLOW_TTL_MS, buf.subarray(start, end));
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
}
