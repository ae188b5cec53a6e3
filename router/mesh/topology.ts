/**
 * The peer table, gossiped between routers (Weave Net / weaveworks/mesh "peers").
 *
 * Each peer owns one entry: its nickname, a per-start random `uid`, a `version`
 * and the list of its connections. Only the owner changes its entry, bumping the
 * version each time; everybody else just relays it. Merging keeps, per name, the
 * entry with the larger (version, uid) pair, so all peers converge on the same
 * table whatever order updates arrive in.
 *
 * A restarted peer gets a new uid and starts again at version 1, while others may
 * still remember its old entry at a higher version. When an update shows our own
 * name with an entry that would beat ours (a different uid at a version ≥ ours, or
 * any version above ours), we jump our version past it and report our entry as
 * changed so the caller re-gossips it; the stale entry then loses everywhere.
 * (An echo of our own current entry, same uid and version, is not a change.)
 *
 * Entries stored here are frozen and replaced, never mutated, so `get`, `peers`
 * and `encode` hand them out without copying.
 */
import { isPeerName, type PeerName } from './peer-name.js';

export interface ConnectionSummary {
  /** The peer at the other end. */
  name: PeerName;
  /** "host:port" of the other end's control connection, as the owner sees it. */
  address: string;
  /** True if the owner dialled the connection. */
  outbound: boolean;
  /** True once UDP heartbeats flow both ways (the connection carries traffic). */
  established: boolean;
}

export interface PeerInfo {
  name: PeerName;
  nickname: string;
  /** Random per-start identifier; breaks version ties and detects restarts. */
  uid: number;
  /** Owner's edit counter, ≥ 1. */
  version: number;
  connections: ConnectionSummary[];
}

/** Raised for a malformed topology update or bad local input; the table is left untouched. */
export class TopologyError extends Error {
  override name = 'TopologyError';
}

export const MAX_TOPOLOGY_PEERS = 10_000;
export const MAX_PEER_CONNECTIONS = 10_000;
export const MAX_NICKNAME_LENGTH = 255;
export const MAX_ADDRESS_LENGTH = 300;

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function bad(where: string, what: string): never {
  throw new TopologyError(`bad topology ${where}: ${what}`);
}

function checkConnection(x: unknown, where: string): ConnectionSummary {
  if (!isRecord(x)) bad(where, 'connection must be a map');
  const { name, address, outbound, established } = x;
  if (!isPeerName(name)) bad(where, `connection name ${JSON.stringify(String(name).slice(0, 40))} is not a lowercase peer name`);
  if (typeof address !== 'string' || address.length > MAX_ADDRESS_LENGTH) {
    bad(where, `connection to ${name}: address must be a string of at most ${MAX_ADDRESS_LENGTH} characters`);
  }
  if (typeof outbound !== 'boolean') bad(where, `connection to ${name}: outbound must be a boolean`);
  if (typeof established !== 'boolean') bad(where, `connection to ${name}: established must be a boolean`);
  return Object.freeze({ name, address, outbound, established });
}

function compareConnections(a: ConnectionSummary, b: ConnectionSummary): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return 0;
}

/** Validates and canonicalises (sorts by name, then address) a connection list. */
function checkConnections(x: unknown, where: string): ConnectionSummary[] {
  if (!Array.isArray(x)) bad(where, 'connections must be an array');
  if (x.length > MAX_PEER_CONNECTIONS) bad(where, `${x.length} connections, over the limit of ${MAX_PEER_CONNECTIONS}`);
  const out = x.map((c) => checkConnection(c, where));
  out.sort(compareConnections);
  return out;
}

function checkPeerInfo(x: unknown, label: string): PeerInfo {
  if (!isRecord(x)) bad(label, 'must be a map');
  const { name, nickname, uid, version, connections } = x;
  if (!isPeerName(name)) bad(label, `name ${JSON.stringify(String(name).slice(0, 40))} is not a lowercase peer name`);
  const where = `entry for ${name}`;
  if (typeof nickname !== 'string' || nickname.length > MAX_NICKNAME_LENGTH) {
    bad(where, `nickname must be a string of at most ${MAX_NICKNAME_LENGTH} characters`);
  }
  if (typeof uid !== 'number' || !Number.isSafeInteger(uid) || uid < 0) bad(where, `uid ${String(uid)} is not a non-negative safe integer`);
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) bad(where, `version ${String(version)} is not a positive safe integer`);
  const conns = checkConnections(connections, where);
  return freezeInfo({ name, nickname, uid, version, connections: conns });
}

function freezeInfo(p: PeerInfo): PeerInfo {
  Object.freeze(p.connections);
  return Object.freeze(p);
}

/** (version, uid) order: positive if `a` supersedes `b`. */
function compareEntries(a: PeerInfo, b: PeerInfo): number {
  if (a.version !== b.version) return a.version - b.version;
  return a.uid - b.uid;
}

function sameConnections(a: readonly ConnectionSummary[], b: readonly ConnectionSummary[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.name !== y.name || x.address !== y.address || x.outbound !== y.outbound || x.established !== y.established) return false;
  }
  return true;
}

/** The gossiped peer table seen from one peer ("self"). */
export class Topology {
  readonly selfName: PeerName;
  private readonly entries = new Map<PeerName, PeerInfo>();
  private gen = 0;

  /** @throws TopologyError for a bad name, nickname or uid. */
  constructor(self: { name: PeerName; nickname: string; uid: number }) {
    const info = checkPeerInfo({ ...self, version: 1, connections: [] }, 'local peer');
    this.selfName = info.name;
    this.entries.set(info.name, info);
  }

  /** Increments on every change to the table, so callers can cache derived data such as routes. */
  get generation(): number {
    return this.gen;
  }

  /** Our own entry. */
  self(): PeerInfo {
    return this.entries.get(this.selfName)!;
  }

  /**
   * Replaces our connection list (order does not matter) and bumps our version iff
   * it differs from the current one.
   * @returns true if our entry changed (and so should be gossiped).
   * @throws TopologyError for malformed connections; nothing changes then.
   */
  setLocalConnections(conns: ConnectionSummary[]): boolean {
    const next = checkConnections(conns, 'local connections');
    const cur = this.self();
    if (sameConnections(cur.connections, next)) return false;
    this.entries.set(this.selfName, freezeInfo({ ...cur, version: cur.version + 1, connections: next }));
    this.gen++;
    return true;
  }

  /**
   * Merges a gossiped list of entries (as produced by `encode`, after a msgpack
   * round trip). Everything is validated before anything changes. Entries not
   * newer than ours by (version, uid) are ignored; our own entry is never replaced
   * but may have its version raised (see the module comment).
   * @returns the names whose entries were added or replaced, including our own if
   *   its version was raised; sorted.
   * @throws TopologyError for a malformed update or one over the size limits.
   */
  merge(update: unknown): { changed: PeerName[] } {
    if (!Array.isArray(update)) bad('update', 'must be an array of peer entries');
    if (update.length > MAX_TOPOLOGY_PEERS) bad('update', `${update.length} peers, over the limit of ${MAX_TOPOLOGY_PEERS}`);
    // Validate all first, keeping the best entry per name if an update repeats one.
    const best = new Map<PeerName, PeerInfo>();
    for (let i = 0; i < update.length; i++) {
      const p = checkPeerInfo(update[i], `update entry ${i}`);
      const prev = best.get(p.name);
      if (prev === undefined || compareEntries(p, prev) > 0) best.set(p.name, p);
    }
    const changed: PeerName[] = [];
    for (const [name, p] of best) {
      const cur = this.entries.get(name);
      if (name === this.selfName) {
        const ours = cur!;
        const beatsUs = p.version > ours.version || (p.uid !== ours.uid && p.version === ours.version);
        if (beatsUs) {
          this.entries.set(name, freezeInfo({ ...ours, version: p.version + 1 }));
          changed.push(name);
        }
        continue;
      }
      if (cur === undefined || compareEntries(p, cur) > 0) {
        this.entries.set(name, p);
        changed.push(name);
      }
    }
    if (changed.length > 0) this.gen++;
    changed.sort();
    return { changed };
  }

  /** All entries, or those named (unknown names skipped), sorted by name. Entries are frozen. */
  encode(names?: Iterable<PeerName>): PeerInfo[] {
    if (names === undefined) return this.peers();
    const out: PeerInfo[] = [];
    for (const n of new Set(names)) {
      const p = this.entries.get(n);
      if (p !== undefined) out.push(p);
    }
    out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return out;
  }

  /**
   * Replaces every other peer's entry with `other`'s (our own entry is kept), sharing
   * the frozen entries. For in-process use only (the mesh simulator starts from a
   * converged mesh this way): `other`'s entries were validated when they entered it.
   * @throws TopologyError if `other` lacks an entry for us.
   */
  copyFrom(other: Topology): void {
    if (!other.entries.has(this.selfName)) bad('copy', `source table has no entry for ${this.selfName}`);
    const ours = this.self();
    this.entries.clear();
    for (const [n, p] of other.entries) this.entries.set(n, n === this.selfName ? ours : p);
    this.gen++;
  }

  get(name: PeerName): PeerInfo | undefined {
    return this.entries.get(name);
  }

  has(name: PeerName): boolean {
    return this.entries.has(name);
  }

  /** Number of entries, including our own. */
  get size(): number {
    return this.entries.size;
  }

  /** All entries sorted by name. */
  peers(): PeerInfo[] {
    return [...this.entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Peers X such that `name`'s entry lists an established connection to X and X's
   * entry lists an established connection to `name`. Requiring both reports (as
   * mesh's "established and symmetric") keeps a half-open or stale report from
   * attracting traffic. Sorted; [] for an unknown name.
   */
  neighbours(name: PeerName): PeerName[] {
    const p = this.entries.get(name);
    if (p === undefined) return [];
    const out = new Set<PeerName>();
    for (const c of p.connections) {
      if (!c.established || c.name === name || out.has(c.name)) continue;
      const q = this.entries.get(c.name);
      if (q !== undefined && q.connections.some((d) => d.established && d.name === name)) out.add(c.name);
    }
    return [...out].sort();
  }

  /**
   * Removes entries for peers we can no longer reach by following connections
   * (in any state) as listed by their owners, starting from our own list. Like
   * mesh, only the owner's list counts for the direction: a departed peer's frozen
   * entry still lists its old connections, but nobody lists it any more, so it is
   * collected. A peer we have just dialled is kept as soon as our own list names it.
   * Never removes self.
   * @returns the removed names, sorted.
   */
  gc(): PeerName[] {
    const reached = new Set<PeerName>([this.selfName]);
    const stack: PeerName[] = [this.selfName];
    while (stack.length > 0) {
      const p = this.entries.get(stack.pop()!);
      if (p === undefined) continue;
      for (const c of p.connections) {
        if (!reached.has(c.name)) {
          reached.add(c.name);
          stack.push(c.name);
        }
      }
    }
    const removed: PeerName[] = [];
    for (const name of this.entries.keys()) {
      if (!reached.has(name)) removed.push(name);
    }
    for (const name of removed) this.entries.delete(name);
    if (removed.length > 0) this.gen++;
    return removed.sort();
  }
}
