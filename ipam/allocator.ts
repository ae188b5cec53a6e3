/**
 * The IPAM allocator actor: owns a Ring, a Space and a Consensus and connects them to the
 * mesh (a gossip channel), to storage (a Persistence) and to time (an injected timer).
 *
 * Behaviour follows Weave Net's allocator, reorganised around one rule: every decision is a
 * synchronous change to in-memory state, then `persist()`, and only then anything leaves the
 * process (a gossip, a donation reply, an address returned to the caller). So a crash can lose
 * work nobody has seen, but never make two peers believe they own the same address.
 *
 * Waiting requests ("pending operations") are retried by `process()` after every state change:
 *  - no ring yet → run (or wait for) consensus; the status says "awaiting consensus (quorum Q, known K)";
 *  - no free address in our space → ask the reachable peer with the most free space in the subnet
 *    (unicast); it donates a CIDR-aligned block and replies with its ring; on refusal or timeout
 *    we ask the next one; when nobody is left the request fails with "no free addresses in X".
 */
import { contains, formatAddressCidr, formatCidr, formatIp, parseAddressCidr, parseCidr, parseIp, type Cidr, CidrError } from './cidr.js';
import { Ring, RingConflictError, RingError } from './ring.js';
import { Space, SpaceError } from './space.js';
import { Consensus } from './consensus.js';
import { decodeMsg, encodeMsg, IpamMessageError, type GossipMsg, type SpaceReplyMsg, type SpaceRequestMsg } from './messages.js';
import { IpamPersistenceError, type PersistedIpam } from './persist.js';
import type { RingPlain } from './ring.js';
import { IpamError, MAX_REQUESTS_PER_OP, type AllocatorOptions, type InflightRequest, type IpamStatus, type PendingOp, type StatusSnapshot } from './allocator-types.js';
import { PersistPipeline, restoreState, snapshotState } from './allocator-persist.js';
import { PaxosStep } from './paxos-step.js';
import { ipamStatus } from './allocator-status.js';

export { IpamError, MAX_REQUESTS_PER_OP } from './allocator-types.js';
export type { AllocatorOptions, GossipChannel, IpamInit, IpamStatus, StatusSnapshot, Timer } from './allocator-types.js';

/** How many retired (reset) peer names an allocator remembers. */
const RETIRED_MAX = 1024;

export class Allocator {
  readonly self: string;
  private readonly range: Cidr;
  private readonly rangeText: string;
  private readonly defaultSubnet: Cidr;
  private ring: Ring;
  private readonly space = new Space();
  private readonly consensus: Consensus | undefined;
  private pending: PendingOp[] = [];
  private requests = new Map<number, InflightRequest>();
  /** Probes waiting for their answer (shutdownHandOver): id -> resolve with the answerer's ring. */
  private probes = new Map<number, { peer: string; resolve: (ring: RingPlain | undefined) => void }>();
  private nextRequestId = 1;
  private conflict: string | undefined;
  private started: Promise<void> | undefined;
  private ready = false;
  private closed = false;
  /** Consensus for the first ring (consensus mode only). */
  private readonly paxos: PaxosStep | undefined;
  /** Saves, serialised; what was last saved is what gossip sends. */
  private readonly saved: PersistPipeline;
  private readonly requestTimeoutMs: number;
  private readonly paxosRetryMs: number;

  /** @throws CidrError / IpamError for a malformed range or default subnet, or a bad init mode. */
  constructor(private readonly opts: AllocatorOptions) {
    this.self = opts.channel.selfName;
    this.range = parseCidr(opts.range);
    if (this.range.size < 4) throw new IpamError(`IPAM range ${opts.range} is too small: need at least 4 addresses (prefix /30 or shorter)`);
    this.rangeText = formatCidr(this.range);
    this.defaultSubnet = opts.defaultSubnet === undefined ? this.range : this.checkSubnet(opts.defaultSubnet);
    this.ring = new Ring(this.range.start, this.range.size);
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 3000;
    this.paxosRetryMs = opts.paxosRetryMs ?? 2000;
    const init = opts.init;
    if (init.mode === 'consensus') {
      this.consensus = new Consensus(this.self, init.quorum, true);
    } else if (init.mode === 'observer') {
      // An observer does not know N, so it cannot judge a quorum: it simply waits for the ring.
      this.consensus = undefined;
    } else if (init.mode === 'seed') {
      if (!Array.isArray(init.peers) || init.peers.length === 0 || init.peers.some((p) => typeof p !== 'string' || p.length === 0)) {
        throw new IpamError('--ipalloc-init seed= needs at least one peer name');
      }
    } else {
      throw new IpamError(`unknown --ipalloc-init mode ${JSON.stringify((init as { mode: unknown }).mode)}`);
    }
    this.saved = new PersistPipeline(opts.persistence, () => this.snapshot(), () => this.closed, () => new IpamError('IPAM is shut down'));
    const consensus = this.consensus;
    this.paxos = consensus === undefined || init.mode !== 'consensus' ? undefined : new PaxosStep({
      self: this.self, consensus, channel: opts.channel,
      requestTimeoutMs: this.requestTimeoutMs, paxosRetryMs: this.paxosRetryMs,
      setTimer: (ms, fn) => opts.setTimer(ms, fn),
      ringEmpty: () => this.ring.isEmpty(),
      closed: () => this.closed,
      persistThenBroadcast: () => {
        void this.persist()
          .then(() => this.broadcastPaxos())
          .catch((e: Error) => this.log(`IPAM: ${e.message}`));
      },
      adoptDecision: () => this.adoptDecision(),
      notifyProgress: () => this.notifyProgress(),
    });
  }

  private log(msg: string): void {
    this.opts.log?.(msg);
  }

  /** Parse and check a subnet: a network CIDR inside the range with at least 4 addresses. */
  private checkSubnet(text: string): Cidr {
    const c = parseCidr(text);
    if (!contains(this.range, c)) throw new IpamError(`subnet ${text} is outside the IPAM range ${this.rangeText}`);
    if (c.size < 4) throw new IpamError(`subnet ${text} is too small: need at least 4 addresses (prefix /30 or shorter)`);
    return c;
  }

  /** Whether an address ("10.32.0.5" or "10.32.0.5/12") lies inside the IPAM range (so claim() applies to it). */
  covers(addr: string): boolean {
    try {
      const a = addr.includes('/') ? parseAddressCidr(addr).addr : parseIp(addr);
      return a >= this.range.start && a < this.range.start + this.range.size;
    } catch {
      return false;
    }
  }

  /**
   * Load persisted state (ring, allocations, Paxos claims); in seed mode create the seeded ring if
   * there is none. Idempotent.
   * @throws IpamPersistenceError if the state is corrupted or belongs to another peer or range: the
   *   router must not start IPAM then (a fresh ring over lost allocations would duplicate addresses).
   */
  start(): Promise<void> {
    this.started ??= this.doStart();
    return this.started;
  }

  private async doStart(): Promise<void> {
    const p = await this.opts.persistence.load();
    if (p) this.restore(p);
    if (this.ring.isEmpty() && this.opts.init.mode === 'seed') {
      this.ring = Ring.seed(this.range.start, this.range.size, this.opts.init.peers);
      this.ringChanged();
    }
    if (this.ring.isEmpty() && this.consensus?.decided()) this.adoptDecision();
    this.ready = true;
    await this.persist();
    if (!this.ring.isEmpty() || this.saved.savedPaxos) this.opts.channel.broadcast(this.fullState());
    this.process();
  }

  private restore(p: PersistedIpam): void {
    this.ring = restoreState(p, {
      self: this.self, range: this.range, rangeText: this.rangeText, ring: this.ring, space: this.space,
      consensus: this.consensus, persistence: this.opts.persistence, log: (m) => this.log(m),
    });
  }

  /** Stop timers and fail waiting requests (the router is shutting down). */
  close(): void {
    this.closed = true;
    this.paxos?.stop();
    for (const r of this.requests.values()) r.timer.cancel();
    this.requests.clear();
    for (const p of this.probes.values()) p.resolve(undefined);
    this.probes.clear();
    for (const op of [...this.pending]) this.finish(op, new IpamError('IPAM is shutting down'));
  }

  // ---------------------------------------------------------------- persistence

  private snapshot(): PersistedIpam {
    // Remember the owners' nicknames the live topology knows, so rmpeer NICKNAME works
    // after a peer was killed and left the topology (saved and gossiped with the ring).
    for (const p of this.ring.peers()) this.ring.setNickname(p, this.liveNickname(p));
    return snapshotState(this.self, this.rangeText, this.ring, this.space, this.consensus && this.opts.init.mode === 'consensus' ? this.consensus : undefined);
  }

  /** Make the current state durable; resolves once a save that includes it has completed. */
  private persist(): Promise<void> {
    return this.saved.persist();
  }

  /** persist() without waiting; a failure is logged (the next change retries). */
  private persistSoon(): void {
    this.persist().catch((e: Error) => this.log(`IPAM: ${e.message}`));
  }

  // ---------------------------------------------------------------- gossip

  /** Encoded {ring, paxos} as last saved, for the router's periodic full gossip. */
  fullState(): Uint8Array {
    const m: GossipMsg = { v: 1, t: 'gossip' };
    if (this.saved.savedRing) m.ring = this.saved.savedRing;
    if (this.saved.savedPaxos && !this.saved.savedRing) m.paxos = this.saved.savedPaxos;
    return encodeMsg(m);
  }

  private broadcastRing(): void {
    if (!this.saved.savedRing || this.closed) return;
    this.opts.channel.broadcast(encodeMsg({ v: 1, t: 'gossip', ring: this.saved.savedRing }));
  }

  /**
   * Handle a payload from the 'ipam' channel. Never throws: malformed or conflicting input is
   * dropped and described in the returned string (also logged); undefined means accepted.
   */
  onGossip(src: string, payload: Uint8Array, kind: 'full' | 'update' | 'unicast'): string | undefined {
    void kind;
    if (!this.ready || this.closed) return 'IPAM not started';
    try {
      const m = decodeMsg(payload);
      if (m.t === 'gossip') return this.onGossipMsg(src, m);
      if (m.t === 'req') return this.onSpaceRequest(src, m);
      return this.onSpaceReply(src, m);
    } catch (e) {
      const msg = `IPAM: dropped message from ${src}: ${(e as Error).message}`;
      if (e instanceof RingConflictError) this.conflict = (e as Error).message;
      this.log(msg);
      return msg;
    }
  }

  private mergeRing(plain: RingPlain, src: string): void {
    const other = Ring.fromPlain(plain);
    if (other.start !== this.ring.start || other.end !== this.ring.end) {
      throw new RingError(`peer ${src} uses IPAM range ${other.rangeString()} but ours is ${this.rangeText}`);
    }
    if (this.ring.merge(other, this.self)) {
      this.ringChanged();
      this.persistSoon();
    }
    this.reclaimRetired();
  }

  /**
   * Peers that left with `weave reset` (name → heir), as their hand-over gossip said; at most
   * RETIRED_MAX, oldest forgotten first. Kept in memory only: a heir restarted before a
   * late donation arrives leaves that span to `weave rmpeer`.
   */
  private readonly retired = new Map<string, string>();
  /** Set once shutdownHandOver has given our space away. */
  private leaving = false;

  private retire(peer: string, heir: string): void {
    if (peer === this.self) return;
    this.retired.delete(peer);
    this.retired.set(peer, heir);
    while (this.retired.size > RETIRED_MAX) this.retired.delete(this.retired.keys().next().value as string);
  }

  /**
   * A late donation to a peer that has already left (chaos seed 7106): a space request it
   * sent before `weave reset` can reach a donor long after, when the request sat in a
   * connection's send queue through a partition, and the donor then gives space to a name
   * that will never allocate or hand it over. A reset peer's name is never reused (the
   * reset router starts under a new name), so its heir, and only its heir (two takers
   * would conflict), takes such spans over as `weave rmpeer` would, and gossips the ring.
   * Weave leaves this case to a manual rmpeer; here the heir does it, since the reset told it.
   */
  private reclaimRetired(): void {
    if (this.closed || this.leaving || this.ring.isEmpty()) return;
    let n = 0;
    for (const [peer, heir] of this.retired) {
      if (heir !== this.self) continue;
      const got = this.ring.transfer(peer, this.self);
      if (got > 0) this.log(`IPAM: took over ${got} address(es) given to ${peer} after it had handed its space to us (weave reset); a request it sent before leaving was answered late`);
      n += got;
    }
    if (n === 0) return;
    this.commitRingChange();
  }

  /** A ring change we made: update our space, persist, then tell the peers and serve waiting requests. */
  private commitRingChange(): void {
    this.ringChanged();
    void this.persist()
      .then(() => {
        this.broadcastRing();
        this.process();
      })
      .catch((e: Error) => this.log(`IPAM: ${e.message}`));
  }

  private ringChanged(): void {
    const stray = this.space.setOwned(this.ring.ownedRanges(this.self));
    for (const a of stray) this.log(`IPAM: allocation ${formatIp(a.addr)} of ${a.owner} is outside our space after a ring change`);
    if (!this.ring.isEmpty()) this.paxos?.stop();
  }

  private onGossipMsg(src: string, m: GossipMsg): string | undefined {
    if (src !== this.self && (m.ring || m.paxos) && this.paxos) this.paxos.heardFromPeers = true;
    if (m.handover !== undefined && src !== this.self) this.retire(src, m.handover);
    if (m.ring) this.mergeRing(m.ring, src);
    else if (m.handover !== undefined) this.reclaimRetired();
    if (m.paxos && !m.ring && this.saved.savedRing && src !== this.self) {
      // The sender is still looking for a ring that already exists: hand it ours right away.
      this.opts.channel.unicast(src, encodeMsg({ v: 1, t: 'gossip', ring: this.saved.savedRing }));
    }
    if (m.paxos && this.consensus && this.ring.isEmpty()) {
      const out = this.consensus.receive(m.paxos);
      if (this.consensus.decided()) {
        this.adoptDecision();
      } else if (out && this.opts.init.mode === 'consensus') {
        void this.persist()
          .then(() => this.broadcastPaxos())
          .catch((e: Error) => this.log(`IPAM: ${e.message}`));
      }
    }
    this.process();
    return undefined;
  }

  private broadcastPaxos(): void {
    if (this.closed || !this.ring.isEmpty() || !this.saved.savedPaxos) return;
    this.opts.channel.broadcast(encodeMsg({ v: 1, t: 'gossip', paxos: this.saved.savedPaxos }));
  }

  private adoptDecision(): void {
    const peers = this.consensus?.decided();
    if (!peers || !this.ring.isEmpty()) return;
    this.ring = Ring.seed(this.range.start, this.range.size, peers);
    this.log(`IPAM: consensus reached; ring seeded with ${peers.length} peer(s)`);
    this.commitRingChange();
  }

  /** Start consensus for the first ring, if this is a consensus-mode peer without a ring (paxos-step.ts). */
  private ensureConsensus(): void {
    this.paxos?.ensure();
  }

  // ---------------------------------------------------------------- donation (donor side)

  private onSpaceRequest(src: string, m: SpaceRequestMsg): string | undefined {
    const reply = (ok: boolean, reason?: string): void => {
      void this.persist()
        .then(() => {
          if (this.closed) return;
          const r: SpaceReplyMsg = { v: 1, t: 'resp', id: m.id, ok };
          if (reason) r.reason = reason;
          if (this.saved.savedRing) r.ring = this.saved.savedRing;
          this.opts.channel.unicast(src, encodeMsg(r));
          if (ok) this.broadcastRing();
        })
        .catch((e: Error) => this.log(`IPAM: ${e.message}`));
    };
    if (src === this.self) return 'space request from ourselves';
    if (this.retired.has(src)) {
      // It left with weave reset: a request it sent before is answered late; give nothing.
      reply(false, `peer ${src} has left (weave reset)`);
      return undefined;
    }
    if (m.probe) {
      reply(false, 'probe');
      return undefined;
    }
    if (this.ring.isEmpty()) {
      reply(false, `peer ${this.self} has no ring yet`);
      return undefined;
    }
    if (m.addr !== undefined) {
      const owner = this.ring.owner(m.addr);
      if (owner !== this.self) {
        reply(false, `address ${formatIp(m.addr)} is not owned by ${this.self}`);
        return undefined;
      }
      const held = this.space.holder(m.addr);
      if (held) {
        reply(false, `address ${formatIp(m.addr)} is already in use by ${held.owner} on peer ${this.nickname(this.self) || this.self}`);
        return undefined;
      }
      this.ring.give(this.self, m.addr, 1, src);
      this.ringChanged();
      reply(true);
      return undefined;
    }
    const lo = Math.max(m.lo, this.range.start);
    const hi = Math.min(m.hi, this.range.start + this.range.size);
    const blk = lo < hi ? this.space.largestFreeBlock(lo, hi) : undefined;
    if (!blk) {
      reply(false, `peer ${this.self} has no free space there`);
      return undefined;
    }
    // Give the upper half (all of a single address), keeping some space for ourselves.
    const size = blk.size >= 2 ? blk.size / 2 : 1;
    this.ring.give(this.self, blk.start + blk.size - size, size, src);
    this.ringChanged();
    reply(true);
    return undefined;
  }

  // ---------------------------------------------------------------- donation (requester side)

  private onSpaceReply(src: string, m: SpaceReplyMsg): string | undefined {
    let err: string | undefined;
    if (m.ring) {
      try {
        this.mergeRing(m.ring, src);
      } catch (e) {
        if (e instanceof RingConflictError) this.conflict = e.message;
        err = `IPAM: dropped ring from ${src}: ${(e as Error).message}`;
        this.log(err);
      }
    }
    const probe = this.probes.get(m.id);
    if (probe && probe.peer === src) {
      this.probes.delete(m.id);
      probe.resolve(m.ring);
    }
    const req = this.requests.get(m.id);
    if (req && req.donor === src) {
      this.requests.delete(m.id);
      req.timer.cancel();
      req.op.inflight = undefined;
      if (!m.ok) {
        req.op.asked.add(src);
        req.op.lastReason = m.reason ?? `peer ${src} refused`;
      }
    }
    this.process();
    return err;
  }

  private sendRequest(op: PendingOp, donor: string): void {
    const id = this.nextRequestId++;
    const msg: SpaceRequestMsg = { v: 1, t: 'req', id, lo: op.lo, hi: op.hi };
    if (op.addr !== undefined) msg.addr = op.addr;
    op.inflight = id;
    op.requests++;
    const timer = this.opts.setTimer(this.requestTimeoutMs, () => {
      const r = this.requests.get(id);
      if (!r) return;
      this.requests.delete(id);
      r.op.inflight = undefined;
      r.op.asked.add(donor);
      r.op.lastReason = `no reply from peer ${donor} within ${this.requestTimeoutMs} ms`;
      this.process();
    });
    this.requests.set(id, { op, donor, timer });
    this.opts.channel.unicast(donor, encodeMsg(msg));
  }

  /** The mesh lost a peer: stop waiting for its replies. */
  onPeerGone(name: string): void {
    for (const [id, r] of this.requests) {
      if (r.donor !== name) continue;
      r.timer.cancel();
      this.requests.delete(id);
      r.op.inflight = undefined;
      r.op.asked.add(name);
      r.op.lastReason = `peer ${name} went away`;
    }
    this.process();
  }

  private reachableSet(): Set<string> {
    const s = new Set<string>([this.self]);
    for (const p of this.opts.channel.knownPeers()) if (p.reachable) s.add(p.name);
    return s;
  }

  // ---------------------------------------------------------------- pending operations

  /** Retry every waiting operation against the current state. Synchronous; never throws. */
  private process(): void {
    if (!this.ready || this.closed) return;
    for (const op of [...this.pending]) {
      if (!this.pending.includes(op)) continue;
      try {
        this.processOp(op);
      } catch (e) {
        this.finish(op, e as Error);
      }
    }
    this.notifyProgress();
  }

  private notifyProgress(): void {
    for (const op of this.pending) {
      if (!op.onProgress) continue;
      const s = this.status();
      const key = `${s.message}|${(s.knownPeers ?? []).join(',')}`;
      if (key !== op.lastProgress) {
        op.lastProgress = key;
        op.onProgress(s);
      }
    }
  }

  private processOp(op: PendingOp): void {
    if (this.ring.isEmpty()) {
      this.ensureConsensus();
      return;
    }
    if (op.kind === 'prime') return this.finish(op, undefined, undefined);
    if (op.kind === 'alloc') {
      const addr = this.space.allocate(op.owner, op.lo, op.hi, op.prefix);
      if (addr !== undefined) return this.commit(op, addr);
      if (op.inflight !== undefined) return;
      const donor = this.chooseDonor(op);
      if (donor) return this.sendRequest(op, donor);
      return this.finish(op, new IpamError(this.noSpaceMessage(op)));
    }
    // claim
    const addr = op.addr!;
    const owner = this.ring.owner(addr)!;
    if (owner === this.self) {
      this.space.claim(op.owner, addr, op.prefix);
      return this.commit(op, addr);
    }
    if (op.inflight !== undefined) return;
    if (op.asked.has(owner) || op.requests >= MAX_REQUESTS_PER_OP) {
      return this.finish(op, new IpamError(`cannot claim ${formatIp(addr)}: ${op.lastReason ?? `owned by peer ${owner}`}`));
    }
    if (!this.reachableSet().has(owner)) {
      return this.finish(
        op,
        new IpamError(`cannot claim ${formatIp(addr)}: it is in a range owned by unreachable peer ${this.peerLabel(owner)} (if it is gone for good, use weave rmpeer)`),
      );
    }
    this.sendRequest(op, owner);
  }

  private commit(op: PendingOp, addr: number): void {
    this.pending.splice(this.pending.indexOf(op), 1);
    for (const c of op.cleanup) c();
    this.persist().then(
      () => op.resolve(formatAddressCidr(addr, op.prefix)),
      (e: Error) => {
        this.space.free(addr);
        op.reject(new IpamError(`could not record allocation of ${formatIp(addr)}: ${e.message}`));
      },
    );
  }

  private chooseDonor(op: PendingOp): string | undefined {
    if (op.requests >= MAX_REQUESTS_PER_OP) return undefined;
    const reachable = this.reachableSet();
    let best: string | undefined;
    let bestFree = 0;
    for (const [peer, free] of this.ring.freeHints(op.lo, op.hi)) {
      if (peer === this.self || op.asked.has(peer) || !reachable.has(peer) || free <= 0) continue;
      if (free > bestFree || (free === bestFree && best !== undefined && peer < best)) {
        best = peer;
        bestFree = free;
      }
    }
    return best;
  }

  private noSpaceMessage(op: PendingOp): string {
    const reachable = this.reachableSet();
    const unreachable: string[] = [];
    for (const [peer, free] of this.ring.freeHints(op.lo, op.hi)) if (!reachable.has(peer) && free > 0) unreachable.push(this.peerLabel(peer));
    if (unreachable.length > 0) {
      return `no free addresses in ${op.subnet} among reachable peers; free space is owned by unreachable peer(s) ${unreachable.sort().join(', ')} (if gone for good, use weave rmpeer)`;
    }
    return `no free addresses in ${op.subnet}`;
  }

  private finish(op: PendingOp, err: Error | undefined, value?: string): void {
    const i = this.pending.indexOf(op);
    if (i >= 0) this.pending.splice(i, 1);
    if (op.inflight !== undefined) {
      this.requests.get(op.inflight)?.timer.cancel();
      this.requests.delete(op.inflight);
      op.inflight = undefined;
    }
    for (const c of op.cleanup) c();
    if (err) op.reject(err);
    else op.resolve(value);
  }

  /** What an operation is waiting for, for timeout messages. */
  private waitingFor(op: PendingOp): string {
    if (this.ring.isEmpty()) return this.status().message;
    if (op.inflight !== undefined) return `space from peer ${this.peerLabel(this.requests.get(op.inflight)?.donor ?? '?')}`;
    return 'space';
  }

  private enqueue(
    op: Omit<PendingOp, 'resolve' | 'reject' | 'asked' | 'requests' | 'cleanup'>,
    o: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<string | undefined> {
    return new Promise<string | undefined>((resolve, reject) => {
      const full: PendingOp = { ...op, resolve, reject, asked: new Set(), requests: 0, cleanup: [] };
      if (o.signal?.aborted) return reject(new IpamError(`${op.kind} for ${op.owner} aborted`));
      if (o.timeoutMs !== undefined) {
        const t = this.opts.setTimer(o.timeoutMs, () => {
          if (this.pending.includes(full)) this.finish(full, new IpamError(`timed out after ${o.timeoutMs} ms waiting for ${this.waitingFor(full)}`));
        });
        full.cleanup.push(() => t.cancel());
      }
      if (o.signal) {
        const sig = o.signal;
        const onAbort = (): void => {
          if (this.pending.includes(full)) this.finish(full, new IpamError(`${op.kind} for ${op.owner} aborted`));
        };
        sig.addEventListener('abort', onAbort, { once: true });
        full.cleanup.push(() => sig.removeEventListener('abort', onAbort));
      }
      this.pending.push(full);
      this.process();
    });
  }

  private async ensureStarted(): Promise<void> {
    if (!this.started) throw new IpamError('IPAM allocator not started');
    await this.started;
    if (this.closed) throw new IpamError('IPAM is shutting down');
  }

  // ---------------------------------------------------------------- public operations

  /**
   * Allocate the lowest free address in `subnet` (a network CIDR inside the range, >= 4 addresses;
   * default: the default subnet) for `owner` (a container id), never its network or broadcast address.
   * If `owner` already has an address in that subnet, that one is returned (retries are safe),
   * unless `opts.another` is set: then a further address is allocated to the same owner (for an
   * owner that stands for many containers, like the Docker plugin's one owner per pool, which
   * Docker's RequestAddress gives no container id to key by; each is freed by its address).
   * Waits for the ring (consensus) and for donations; rejects on timeoutMs / signal with what it waited for.
   * @returns "10.32.0.1/12" (address with the subnet's prefix length)
   * @throws CidrError (malformed subnet), IpamError (outside range, too small, `no free addresses in X`, timeout)
   */
  async allocate(owner: string, subnet?: string, opts?: { timeoutMs?: number; signal?: AbortSignal; another?: boolean }): Promise<string> {
    const c = subnet === undefined || subnet === 'default' ? this.defaultSubnet : this.checkSubnet(subnet);
    await this.ensureStarted();
    if (!opts?.another) for (const a of this.space.lookup(owner)) {
      if (a.addr >= c.start && a.addr < c.start + c.size && a.prefix === c.prefix) return formatAddressCidr(a.addr, a.prefix);
    }
    const r = await this.enqueue({ kind: 'alloc', owner, lo: c.start + 1, hi: c.start + c.size - 1, prefix: c.prefix, subnet: formatCidr(c) }, opts);
    return r!;
  }

  /**
   * Claim an exact address for `owner`, e.g. "10.32.0.5/12" (from `ip:` on attach). Idempotent for the
   * same owner. If another peer owns the address, it is asked to donate it.
   * @throws CidrError (malformed), IpamError (outside the range — check covers() first; network or
   *   broadcast address; already in use by another container; owner peer unreachable; timeout)
   */
  async claim(owner: string, cidr: string, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<void> {
    const c = parseAddressCidr(cidr);
    if (!this.covers(cidr)) throw new IpamError(`address ${cidr} is outside the IPAM range ${this.rangeText}`);
    if (c.size >= 4 && (c.addr === c.start || c.addr === c.start + c.size - 1)) {
      throw new IpamError(`cannot claim ${cidr}: it is the ${c.addr === c.start ? 'network' : 'broadcast'} address of ${formatCidr(c)}`);
    }
    await this.ensureStarted();
    const held = this.space.holder(c.addr);
    if (held && held.owner !== owner) throw new IpamError(`address ${formatIp(c.addr)} is already in use by ${held.owner}`);
    if (held) return;
    await this.enqueue({ kind: 'claim', owner, lo: c.addr, hi: c.addr + 1, prefix: c.prefix, subnet: formatCidr(c), addr: c.addr }, opts);
  }

  /** Addresses held by `owner`, as "a.b.c.d/len", lowest first. */
  lookup(owner: string): string[] {
    return this.space.lookup(owner).map((a) => formatAddressCidr(a.addr, a.prefix));
  }

  /**
   * Free `addr` ("10.32.0.5" or "10.32.0.5/12") of `owner`, or all of the owner's addresses (and cancel its
   * waiting requests) when addr is omitted. Returns how many addresses were freed.
   * @throws CidrError for a malformed addr.
   */
  async free(owner: string, addr?: string): Promise<number> {
    await this.ensureStarted();
    let n = 0;
    if (addr !== undefined) {
      const a = addr.includes('/') ? parseAddressCidr(addr).addr : parseIp(addr);
      const h = this.space.holder(a);
      if (h && h.owner === owner) {
        this.space.free(a);
        n = 1;
      }
    } else {
      n = this.space.freeOwner(owner).length;
      for (const op of [...this.pending]) {
        if (op.owner === owner && op.kind !== 'prime') this.finish(op, new IpamError(`request for ${owner} cancelled: its addresses were freed`));
      }
    }
    if (n > 0) await this.persist();
    this.process();
    return n;
  }

  /**
   * Wait until the ring exists (starting consensus if needed). `onProgress` gets a status whenever the
   * summary changes (who is known, quorum), for `weave prime` on a terminal.
   */
  async prime(onProgress?: (s: StatusSnapshot) => void, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<void> {
    await this.ensureStarted();
    if (!this.ring.isEmpty()) return;
    const op: Omit<PendingOp, 'resolve' | 'reject' | 'asked' | 'requests' | 'cleanup'> = { kind: 'prime', owner: '', lo: 0, hi: 0, prefix: 0, subnet: '' };
    if (onProgress) op.onProgress = onProgress;
    await this.enqueue(op, opts);
  }

  /** Resolve a peer name or nickname to a name (exact name first). */
  private resolvePeer(nameOrNickname: string): string | undefined {
    if (this.ring.peers().includes(nameOrNickname)) return nameOrNickname;
    const known = this.opts.channel.knownPeers();
    if (known.some((p) => p.name === nameOrNickname)) return nameOrNickname;
    const byNick = new Set<string>();
    for (const p of known) if (p.nickname === nameOrNickname) byNick.add(p.name);
    if (this.opts.nicknameOf) for (const p of this.ring.peers()) if (this.opts.nicknameOf(p) === nameOrNickname) byNick.add(p);
    // Owners that have left the topology (killed): the nickname the ring remembers.
    for (const p of this.ring.peersNamed(nameOrNickname)) if (!this.liveNickname(p)) byNick.add(p);
    if (byNick.size > 1) throw new IpamError(`nickname ${nameOrNickname} is ambiguous (${[...byNick].sort().join(', ')}): use the peer name`);
    return byNick.values().next().value;
  }

  /**
   * `weave rmpeer NAME|NICKNAME`: take over all space of a dead peer, so it can be allocated again.
   * Run it on one peer only, after the peer is gone for good (the taken-over space is treated as free).
   * @returns the number of addresses taken over ("N IPs taken over from X")
   * @throws IpamError if the peer is us, is reachable, or is unknown, or the ring does not exist yet.
   */
  async rmpeer(nameOrNickname: string): Promise<number> {
    await this.ensureStarted();
    const name = this.resolvePeer(nameOrNickname);
    if (name === undefined) throw new IpamError(`unknown peer ${nameOrNickname}: not in the ring and not a known peer`);
    if (name === this.self) throw new IpamError(`cannot rmpeer ${nameOrNickname}: it is this peer (use weave reset)`);
    if (this.opts.channel.knownPeers().some((p) => p.name === name && p.reachable)) {
      throw new IpamError(`cannot rmpeer ${nameOrNickname}: peer ${name} is reachable; stop it first`);
    }
    if (this.ring.isEmpty()) {
      // Nothing to take over yet; a consensus still running may include the peer, so the user must
      // run rmpeer again once the ring exists.
      throw new IpamError(`cannot rmpeer ${nameOrNickname}: the ring does not exist yet (${this.status().message}); run it again once IPAM is ready`);
    }
    const n = this.ring.transfer(name, this.self);
    if (n > 0) {
      this.ringChanged();
      await this.persist();
      this.broadcastRing();
      this.process();
    }
    return n;
  }

  /**
   * Ask `peer` for its ring without asking for space (a `req` with `probe`), as a round
   * trip that proves both directions work now. Resolves with its ring, or undefined when
   * no answer came within `timeoutMs` (one-way or two-way partition, peer gone).
   */
  private probe(peer: string, timeoutMs: number): Promise<RingPlain | undefined> {
    const id = this.nextRequestId++;
    return new Promise((resolve) => {
      const timer = this.opts.setTimer(timeoutMs, () => {
        this.probes.delete(id);
        resolve(undefined);
      });
      this.probes.set(id, {
        peer,
        resolve: (ring) => {
          timer.cancel();
          resolve(ring ?? undefined);
        },
      });
      const lo = this.ring.ownedRanges(this.self)[0]?.[0] ?? this.range.start;
      this.opts.channel.unicast(peer, encodeMsg({ v: 1, t: 'req', id, lo, hi: lo + 1, probe: true }));
    });
  }

  /**
   * On `weave reset`: give all our space to a reachable peer, drop our allocations and stop.
   * The hand-over is confirmed, not fired and forgotten: first a probe round trip to the
   * heir must succeed (else, unless `force`, an IpamError and nothing changes: a one-way
   * partition that still shows the connection as established would otherwise swallow
   * the transfer and strand our space under a name that is gone); after the transfer the
   * ring is sent again and the heir probed until its ring shows it owns our former space
   * (bounded by `confirmMs`). A transfer still unconfirmed then is logged and reported
   * through `unconfirmed` (reclaim with rmpeer if it was lost).
   * @returns the heir's name (undefined if no peer was reachable: our space stays ours until rmpeer).
   */
  async shutdownHandOver(o: { force?: boolean; probeMs?: number; confirmMs?: number } = {}): Promise<string | undefined> {
    await this.ensureStarted();
    const reachable = this.opts.channel.knownPeers().filter((p) => p.reachable && p.name !== this.self).map((p) => p.name).sort();
    const inRing = new Set(this.ring.peers());
    const heir = reachable.find((p) => inRing.has(p)) ?? reachable[0];
    const ours = this.ring.ownedRanges(this.self);
    if (heir !== undefined && !this.ring.isEmpty() && ours.length > 0 && !o.force) {
      if (!(await this.probe(heir, o.probeMs ?? 5000))) {
        throw new IpamError(`peer ${heir} did not answer within ${(o.probeMs ?? 5000) / 1000} s (is the network partitioned?), so our IPAM space cannot be handed over; nothing was changed: retry, or run weave reset --force to abandon the space`);
      }
    }
    for (const op of [...this.pending]) this.finish(op, new IpamError('IPAM is shutting down (weave reset)'));
    if (heir === undefined || this.ring.isEmpty() || ours.length === 0) {
      this.close();
      return heir !== undefined && !this.ring.isEmpty() ? heir : undefined;
    }
    for (const a of this.space.allocations()) this.space.free(a.addr);
    this.leaving = true; // from here on we take nothing over (reclaimRetired): it would be stranded with us
    this.ring.transfer(this.self, heir);
    this.ringChanged();
    await this.persist();
    // handover: every peer learns that our name is retired, and the heir takes over any
    // space a late donation still gives us (reclaimRetired).
    if (this.saved.savedRing) this.opts.channel.broadcast(encodeMsg({ v: 1, t: 'gossip', ring: this.saved.savedRing, handover: heir }));
    const end = this.opts.now() + (o.confirmMs ?? 10_000);
    let confirmed = false;
    while (!confirmed && this.opts.now() < end) {
      if (this.saved.savedRing) this.opts.channel.unicast(heir, encodeMsg({ v: 1, t: 'gossip', ring: this.saved.savedRing, handover: heir }));
      const theirs = await this.probe(heir, Math.max(1, Math.min(2000, end - this.opts.now())));
      if (!theirs) continue;
      try {
        const r = Ring.fromPlain(theirs);
        confirmed = ours.every(([lo]) => r.owner(lo) === heir);
      } catch {
        confirmed = false;
      }
    }
    if (!confirmed) {
      this.unconfirmed = heir;
      this.log(`IPAM: ${heir} did not confirm taking over our space within ${(o.confirmMs ?? 10_000) / 1000} s; if it was lost, reclaim it with weave rmpeer ${this.self} on another peer`);
    }
    this.close();
    return heir;
  }

  /** Set by shutdownHandOver when the heir never confirmed the transfer. */
  unconfirmed: string | undefined;

  /**
   * Diagnostics and tests: a copy of the ring, our owned ranges and our allocations
   * (addresses as numbers), and the number of waiting operations.
   */
  inspect(): { ring: Ring; owned: Array<[number, number]>; allocations: Array<{ addr: number; owner: string; prefix: number }>; pending: number } {
    return { ring: this.ring.clone(), owned: this.space.ownedRanges(), allocations: this.space.allocations(), pending: this.pending.length };
  }

  // ---------------------------------------------------------------- status

  /** The nickname the live topology knows for `name` ('' if none). */
  private liveNickname(name: string): string {
    if (this.opts.nicknameOf) return this.opts.nicknameOf(name);
    return this.opts.channel.knownPeers().find((p) => p.name === name)?.nickname ?? '';
  }

  /** The nickname of `name`: the live topology's, else the one the ring remembers. */
  private nickname(name: string): string {
    return this.liveNickname(name) || (this.ring.nickname(name) ?? '');
  }

  private peerLabel(name: string): string {
    const n = this.nickname(name);
    return n ? `${name}(${n})` : name;
  }

  /** Snapshot for `weave status ipam` / `weave report` (allocator-status.ts). */
  status(): IpamStatus {
    const knownNames = new Set(this.opts.channel.knownPeers().map((p) => p.name));
    knownNames.add(this.self);
    return ipamStatus({
      self: this.self, range: this.range, defaultSubnet: this.defaultSubnet, ring: this.ring, space: this.space,
      init: this.opts.init, consensus: this.consensus, consensusRunning: this.paxos?.running ?? false,
      pendingAllocates: this.pending.filter((o) => o.kind !== 'prime').length, conflict: this.conflict,
      knownNames, reachable: this.reachableSet(), nickname: (n) => this.nickname(n),
    });
  }
}

export { CidrError, RingConflictError, RingError, SpaceError, IpamMessageError, IpamPersistenceError };
