/**
 * How the allocator drives the first ring's consensus (gossip Paxos, consensus.ts)
 * when launched with `--ipalloc-init consensus[=N]`: start on the first allocation or
 * `weave prime`, wait briefly for an existing ring when peers are reachable but silent,
 * propose, and retry with a per-peer stagger while no decision is reached (so two
 * proposers do not pre-empt each other forever). Every step is saved before it is
 * gossiped (the host's `persistThenBroadcast`). After Weave's allocator (paxos.go).
 */
import type { Consensus } from './consensus.js';
import type { GossipChannel, Timer } from './allocator-types.js';

/** What the Paxos step needs from the allocator. */
export interface PaxosHost {
  readonly self: string;
  readonly consensus: Consensus;
  readonly channel: GossipChannel;
  readonly requestTimeoutMs: number;
  readonly paxosRetryMs: number;
  setTimer(ms: number, fn: () => void): Timer;
  /** True while no ring exists (consensus still matters). */
  ringEmpty(): boolean;
  closed(): boolean;
  /** Save our Paxos knowledge, then broadcast it (errors logged). */
  persistThenBroadcast(): void;
  /** A decision exists: seed the ring from it. */
  adoptDecision(): void;
  /** Tell waiting callers (prime) how consensus is going. */
  notifyProgress(): void;
}

/** Stable small hash of a peer name, to stagger Paxos retries so proposers do not duel forever. */
export function nameHash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

export class PaxosStep {
  /** Consensus has been started (and the ring does not exist yet). */
  running = false;
  /** Some other peer has gossiped a ring or Paxos knowledge to us. */
  heardFromPeers = false;
  private timer: Timer | undefined;
  private lastSeen = '';

  constructor(private readonly host: PaxosHost) {}

  /** Start consensus if it is not running (no-op once a ring exists or after close). */
  ensure(): void {
    const h = this.host;
    if (!h.ringEmpty() || this.running || h.closed()) return;
    this.running = true;
    const others = h.channel.knownPeers().some((p) => p.reachable && p.name !== h.self);
    if (others && !this.heardFromPeers) {
      // Peers are reachable but none has told us about IPAM yet: a ring may already exist. Announce
      // ourselves (peers holding a ring answer with it) and propose only after a short grace period,
      // so a late peer (especially one with consensus=1) does not form a second ring.
      h.persistThenBroadcast();
      this.timer = h.setTimer(Math.min(h.requestTimeoutMs, 1000), () => {
        this.timer = undefined;
        if (!h.closed() && h.ringEmpty()) this.propose();
      });
      return;
    }
    this.propose();
  }

  /** Stop: the ring exists now, or the allocator is closing. */
  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.running = false;
  }

  private propose(): void {
    this.host.consensus.propose();
    this.afterStep();
  }

  /**
   * After our consensus state moved: adopt the decision if there is one, otherwise
   * save and tell the others (saved first: nothing leaves before it is durable) and
   * come back later. Returns false once decided.
   */
  private afterStep(): boolean {
    const h = this.host;
    if (h.consensus.decided()) {
      h.adoptDecision();
      return false;
    }
    this.lastSeen = JSON.stringify(h.consensus.knowledge());
    h.persistThenBroadcast();
    this.scheduleRetry();
    return true;
  }

  private scheduleRetry(): void {
    const h = this.host;
    const stagger = (nameHash(h.self) % 1000) / 1000;
    this.timer = h.setTimer(Math.round(h.paxosRetryMs * (1 + stagger)), () => {
      this.timer = undefined;
      if (h.closed() || !h.ringEmpty()) return;
      const now = JSON.stringify(h.consensus.knowledge());
      // No progress since last time: our proposal may have been pre-empted or lost; try a higher round.
      if (now === this.lastSeen) h.consensus.propose();
      if (this.afterStep()) h.notifyProgress();
    });
  }
}
