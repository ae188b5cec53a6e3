/**
 * The connection maker: which addresses we try to keep a connection to, and when.
 *
 * Targets come from `weave launch PEER...`, `weave connect`, and (unless
 * --no-discovery) from gossip: peers we hear of but are not connected to. A failed
 * attempt is retried with exponential backoff (1 s doubling, capped), so a dead
 * peer costs little and a recovered one is found again quickly. A peer we cannot reach
 * while others can (a partitioned link) is redialled at least every ~5 s instead
 * (`hastenAlive`), so a healed link comes back within seconds. An address found to
 * be ourselves is never retried. Like mesh's connection_maker.go, but the decision
 * (`due`) is a pure function of the target table and the clock, so it is testable
 * without sockets.
 */
import { joinHostPort, parsePeerAddress } from './address.js';

export { isHostLike } from './address.js';

export const INITIAL_BACKOFF_MS = 1_000;
export const MAX_BACKOFF_MS = 30_000;
/**
 * Longest wait (±25 % jitter) before redialling a target that we could not reach while
 * the peer at that address is known alive through others (`hastenAlive`).
 */
export const ALIVE_MAX_BACKOFF_MS = 5_000;

/**
 * How long a router holds back its first dial to a peer it discovered through gossip
 * when the peer's name is lower than its own (ms). Both ends of a new pair learn of each
 * other at about the same time; if both dial, both handshakes complete and the
 * duplicate tie-break closes one (the one initiated by the higher name) — at 30 routers
 * that was ~280 wasted handshakes and teardowns, all during joins. The lower name dials
 * at once, which is also the connection the tie-break keeps; the higher name dials only
 * if no connection arrived meanwhile (the peer's discovery is off, its connection limit
 * is reached, or its dial failed). [scale, issue #20]
 */
export const DISCOVERED_DIAL_DELAY_MS = 2_000;

/** When a newly discovered target may first be dialled: at once from the lower peer name, after DISCOVERED_DIAL_DELAY_MS from the higher. */
export function discoveredDialAt(selfName: string, peerName: string, now: number): number {
  return selfName < peerName ? now : now + DISCOVERED_DIAL_DELAY_MS;
}

export type TargetState = 'waiting' | 'connecting' | 'connected' | 'retrying' | 'self';

export interface Target {
  address: string; // "host:port"
  /** From the command line or `weave connect` (kept), or discovered (dropped when the peer goes). */
  direct: boolean;
  state: TargetState;
  attempt: number;
  nextAttempt: number;
  lastError?: string;
  /**
   * Why the host name did not resolve at the last attempt (e.g. "ENOTFOUND"), shown in
   * `weave status targets`; cleared once it resolves. Names are kept as targets: they
   * may resolve later (Weave's behaviour), while invalid literals are refused at once.
   */
  unresolved?: string;
  /**
   * The last attempt never reached the peer (the dial itself failed: timeout, refused,
   * unreachable), as opposed to a peer that answered and then refused or dropped us.
   */
  unreached?: boolean;
}

/**
 * The resolver error code of a failed dial, or undefined when the name resolved (or
 * the address was a literal): Node reports getaddrinfo failures with syscall
 * 'getaddrinfo' and codes like ENOTFOUND (no such name) or EAI_AGAIN (no answer now).
 */
export function resolutionFailure(err: { code?: unknown; syscall?: unknown }): string | undefined {
  return err.syscall === 'getaddrinfo' ? String(err.code ?? 'unresolved') : undefined;
}

/**
 * Normalise a peer address ("host", "host:port", "[v6]", "[v6]:port", bare "v6"; see
 * mesh/address.ts) to its canonical "host:port" form, IPv6 in brackets
 * (`[2001:db8::2]:6783`), so equal addresses compare equal in the target table.
 * @throws Error with a one-line message.
 */
export function normaliseAddress(peer: string, defaultPort: number): string {
  const { host, port } = parsePeerAddress(peer, defaultPort);
  return joinHostPort(host, port);
}

export class TargetTable {
  private readonly targets = new Map<string, Target>();

  constructor(private readonly defaultPort: number) {}

  add(peer: string, direct: boolean, now: number): string {
    const address = normaliseAddress(peer, this.defaultPort);
    const t = this.targets.get(address);
    if (t) {
      if (direct) t.direct = true;
      if (t.state === 'retrying' && direct) t.nextAttempt = now; // an explicit connect retries now
      return address;
    }
    this.targets.set(address, { address, direct, state: 'waiting', attempt: 0, nextAttempt: now });
    return address;
  }

  forget(peer: string): boolean {
    return this.targets.delete(normaliseAddress(peer, this.defaultPort));
  }

  get(address: string): Target | undefined {
    return this.targets.get(address);
  }

  /**
   * Targets to dial now, marked as connecting. `connected(address)` says if we already have it.
   *
   * `discoveredBudget` bounds outbound dials to discovered peers (issue #20; like
   * weaveworks/mesh, which checks its connection limit before dialling, not only on
   * accept): pass `--conn-limit` minus the connections we hold. Direct targets (launch
   * arguments, `weave connect`) are always dialled; discovered ones only while the
   * budget, less the discovered dials still in flight, is positive, taken in address
   * order so every router makes the same choice for the same table. The rest wait and
   * are reconsidered on a later tick (their attempt count is untouched).
   */
  due(now: number, connected: (address: string) => boolean, discoveredBudget = Infinity): Target[] {
    const out: Target[] = [];
    let budget = discoveredBudget;
    for (const t of this.targets.values()) if (!t.direct && t.state === 'connecting') budget--;
    const ts = Number.isFinite(discoveredBudget) ? this.list() : [...this.targets.values()];
    for (const t of ts) {
      if (t.state === 'self' || t.state === 'connecting') continue;
      if (connected(t.address)) {
        t.state = 'connected';
        t.attempt = 0;
        continue;
      }
      if (t.state === 'connected') {
        // The connection went away: try again soon, without counting it as a failure.
        t.state = 'waiting';
        t.nextAttempt = now + INITIAL_BACKOFF_MS;
        continue;
      }
      // The clock stepped back (NTP, a resumed VM, the test clock hook): a wait longer
      // than any backoff would freeze this target for the size of the step. Dial now.
      if (t.nextAttempt > now + MAX_BACKOFF_MS * 1.25) t.nextAttempt = now;
      if (t.nextAttempt <= now) {
        if (!t.direct) {
          if (budget <= 0) continue;
          budget--;
        }
        t.state = 'connecting';
        out.push(t);
      }
    }
    return out;
  }

  /**
   * An attempt failed: back off exponentially with jitter. `unresolved` is the
   * resolver's error code when the host name did not resolve (resolutionFailure);
   * `unreached` says the dial itself failed (no TCP connection was made).
   */
  failed(address: string, err: string, now: number, rand = Math.random, unresolved?: string, unreached = false): void {
    const t = this.targets.get(address);
    if (!t || t.state === 'self') return;
    t.attempt++;
    t.lastError = err;
    t.unresolved = unresolved;
    t.unreached = unreached;
    t.state = 'retrying';
    const base = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** Math.min(t.attempt - 1, 16));
    t.nextAttempt = now + base * (0.75 + 0.5 * rand());
  }

  /**
   * Redial sooner a peer we could not reach while others can: after a partition heals,
   * the mesh carries no signal that one link works again (the peer stayed reachable
   * through others all along), so a target backed off to MAX_BACKOFF_MS would wait up
   * to ~37 s. For every retrying target whose last dial never reached the peer
   * (`unreached`) and that `alive(address)` says is alive through others, the next
   * attempt is pulled in to at most ALIVE_MAX_BACKOFF_MS (±25 % jitter) from `now`
   * (never later than it was). A peer that answered and refused (connection limit,
   * handshake error) keeps its full backoff, so this never adds load on a busy peer;
   * the cost is one failed dial per ~5 s per peer that stays unreachable from here only.
   * `alive` is called only for unreached targets waiting longer than 3.75 s. Returns
   * how many targets were pulled in.
   */
  hastenAlive(now: number, alive: (address: string) => boolean, rand = Math.random): number {
    let n = 0;
    for (const t of this.targets.values()) {
      if (t.state !== 'retrying' || !t.unreached || t.nextAttempt <= now + ALIVE_MAX_BACKOFF_MS * 0.75) continue;
      if (!alive(t.address)) continue;
      const at = now + ALIVE_MAX_BACKOFF_MS * (0.75 + 0.5 * rand());
      if (at < t.nextAttempt) {
        t.nextAttempt = at;
        n++;
      }
    }
    return n;
  }

  /**
   * When the next tick has work (ms clock): now while a target is connecting or waits
   * to be dialled (possibly held back by the connection limit), its next attempt while
   * retrying, Infinity when every target is connected (or is ourselves).
   */
  nextDue(now: number): number {
    let next = Infinity;
    for (const t of this.targets.values()) {
      if (t.state === 'connecting') return now;
      if (t.state === 'waiting' || t.state === 'retrying') next = Math.min(next, Math.min(t.nextAttempt, now + MAX_BACKOFF_MS * 1.25));
    }
    return next;
  }

  succeeded(address: string): void {
    const t = this.targets.get(address);
    if (!t) return;
    t.state = 'connected';
    t.attempt = 0;
    t.lastError = undefined;
    t.unresolved = undefined;
    t.unreached = undefined;
  }

  /** The address turned out to be this router: never try it again. */
  markSelf(address: string): void {
    const t = this.targets.get(address);
    if (t) {
      t.state = 'self';
      t.lastError = 'cannot connect to ourself';
    }
  }

  /** Drop discovered targets that are no longer wanted. */
  prune(keep: (t: Target) => boolean): void {
    for (const [a, t] of this.targets) if (!t.direct && !keep(t)) this.targets.delete(a);
  }

  list(): Target[] {
    // Code-unit order, not localeCompare: the order must not depend on the locale, and
    // localeCompare loads ICU's collation data (+3.0 MiB RSS in bare node, issue #20).
    return [...this.targets.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  }

  directAddresses(): string[] {
    return this.list().filter((t) => t.direct).map((t) => t.address);
  }
}
