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
import { MAX_NICKNAME_LENGTH, isPeerName, isValidNickname, peerNameToNum, type PeerName } from './peer-name.js';

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
export { MAX_NICKNAME_LENGTH };
export const MAX_ADDRESS_LENGTH = 300;

const NO_NAMES: readonly PeerName[] = Object.freeze([]);
const NO_SLOTS = new Int32Array(0);

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function bad(where: string, what: string): never {
  throw new TopologyError(`bad topology ${where}: ${what}`);
}

/**
 * Connection summaries this module has validated and frozen. A rebuilt entry (a
 * topology delta applied to its base) hands them in again: they are taken as they
 * are, so versions of one entry share their unchanged connections.
 */
const CHECKED = new WeakSet<object>();

function checkConnection(x: unknown, where: string): ConnectionSummary {
  if (typeof x === 'object' && x !== null && CHECKED.has(x)) return x as ConnectionSummary;
  if (!isRecord(x)) bad(where, 'connection must be a map');
  const { name, address, outbound, established } = x;
  if (!isPeerName(name)) bad(where, `connection name ${JSON.stringify(String(name).slice(0, 40))} is not a lowercase peer name`);
  if (typeof address !== 'string' || address.length > MAX_ADDRESS_LENGTH) {
    bad(where, `connection to ${name}: address must be a string of at most ${MAX_ADDRESS_LENGTH} characters`);
  }
  if (typeof outbound !== 'boolean') bad(where, `connection to ${name}: outbound must be a boolean`);
  if (typeof established !== 'boolean') bad(where, `connection to ${name}: established must be a boolean`);
  const c = Object.freeze({ name, address, outbound, established });
  CHECKED.add(c);
  return c;
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
  if (!isValidNickname(nickname)) {
    bad(where, `nickname must be at most ${MAX_NICKNAME_LENGTH} printable characters (no control characters)`);
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
  private entries = new Map<PeerName, PeerInfo>();
  /** Per peer, the entry its current one replaced (`previous`). */
  private replaced = new Map<PeerName, PeerInfo>();
  /**
   * Per peer, the names its entry lists an established connection to (self-loops
   * left out), kept in step with `entries` by `put`/`remove` so `neighbours` costs
   * O(degree) set look-ups instead of a scan of the other side's list per connection.
   */
  private estTo = new Map<PeerName, Set<PeerName>>();
  /**
   * Symmetric established adjacency (the routing graph), kept incrementally: per peer,
   * its neighbours sorted by name. Rows are replaced, never mutated, so they can be
   * handed out (frozen) without copying.
   */
  private sym = new Map<PeerName, readonly PeerName[]>();
  /**
   * Dense small-integer "slots" for the peers that have an entry, so Routes can run its
   * searches over typed arrays instead of maps of strings (issue #20: route
   * recomputation at 1,000 peers). A slot is given when an entry is stored and freed
   * (for reuse) when it is removed. `symSlots[s]` is the `sym` row of the peer in slot
   * s as slots, in the same (name) order; rows are replaced, never mutated.
   */
  private slot = new Map<PeerName, number>();
  private slotByNum = new Map<number, number>();
  private slotNames: Array<PeerName | undefined> = [];
  private slotNums: number[] = [];
  private freeSlots: number[] = [];
  private symSlots: Int32Array[] = [];
  private gen = 0;
  private adjGen = 0;
  /**
   * Names that may have become unreachable since the last gc: new names and names an
   * entry stopped listing (reachability changes only through those); 'all' after a
   * copy. `gc` stops its walk as soon as it has reached all of them.
   */
  private gcCandidates: Set<PeerName> | 'all' = 'all';

  /** @throws TopologyError for a bad name, nickname or uid. */
  constructor(self: { name: PeerName; nickname: string; uid: number }) {
    const info = checkPeerInfo({ ...self, version: 1, connections: [] }, 'local peer');
    this.selfName = info.name;
    this.put(info);
  }

  /** Stores an entry and refreshes its established set. */
  private put(p: PeerInfo): void {
    const prev = this.entries.get(p.name);
    this.entries.set(p.name, p);
    if (prev !== undefined && prev.uid === p.uid && prev.version < p.version) this.replaced.set(p.name, prev);
    else this.replaced.delete(p.name);
    if (prev === undefined) this.takeSlot(p.name);
    if (prev !== undefined && prev.connections === p.connections) return;
    const cand = this.gcCandidates;
    if (cand !== 'all') {
      if (prev === undefined) cand.add(p.name);
      else {
        const now = new Set<PeerName>();
        for (const c of p.connections) now.add(c.name);
        for (const c of prev.connections) if (!now.has(c.name)) cand.add(c.name);
      }
    }
    const est = new Set<PeerName>();
    for (const c of p.connections) if (c.established && c.name !== p.name) est.add(c.name);
    const old = this.estTo.get(p.name);
    this.estTo.set(p.name, est);
    if (old !== undefined) for (const m of old) if (!est.has(m) && this.estTo.get(m)?.has(p.name)) this.unlinkSym(p.name, m);
    for (const m of est) if (!old?.has(m) && this.estTo.get(m)?.has(p.name)) this.linkSym(p.name, m);
  }

  private remove(name: PeerName): void {
    const old = this.estTo.get(name);
    this.entries.delete(name);
    this.replaced.delete(name);
    this.estTo.delete(name);
    if (old !== undefined) for (const m of old) if (this.estTo.get(m)?.has(name)) this.unlinkSym(name, m);
    this.sym.delete(name);
    const s = this.slot.get(name);
    if (s !== undefined) {
      this.slot.delete(name);
      this.slotByNum.delete(this.slotNums[s]!);
      this.slotNames[s] = undefined;
      this.symSlots[s] = NO_SLOTS;
      this.freeSlots.push(s);
    }
  }

  private takeSlot(name: PeerName): void {
    let s = this.freeSlots.pop();
    if (s === undefined) {
      s = this.slotNames.length;
      this.slotNames.push(name);
      this.slotNums.push(0);
      this.symSlots.push(NO_SLOTS);
    }
    const num = peerNameToNum(name);
    this.slot.set(name, s);
    this.slotByNum.set(num, s);
    this.slotNames[s] = name;
    this.slotNums[s] = num;
    this.symSlots[s] = NO_SLOTS;
  }

  /** Re-derives the slot row of `name` from its `sym` row (both in name order). */
  private refreshSlotRow(name: PeerName): void {
    const s = this.slot.get(name);
    if (s === undefined) return;
    const row = this.sym.get(name);
    if (row === undefined) {
      this.symSlots[s] = NO_SLOTS;
      return;
    }
    const out = new Int32Array(row.length);
    for (let i = 0; i < row.length; i++) out[i] = this.slot.get(row[i]!)!;
    this.symSlots[s] = out;
  }

  private static insertSorted(row: readonly PeerName[] | undefined, n: PeerName): readonly PeerName[] {
    const r = row === undefined ? [] : [...row];
    let i = r.length;
    while (i > 0 && r[i - 1]! > n) i--;
    if (r[i - 1] !== n) r.splice(i, 0, n);
    return Object.freeze(r);
  }

  private linkSym(a: PeerName, b: PeerName): void {
    this.sym.set(a, Topology.insertSorted(this.sym.get(a), b));
    this.sym.set(b, Topology.insertSorted(this.sym.get(b), a));
    this.refreshSlotRow(a);
    this.refreshSlotRow(b);
    this.adjGen++;
  }

  private unlinkSym(a: PeerName, b: PeerName): void {
    for (const [x, y] of [[a, b], [b, a]] as const) {
      const row = this.sym.get(x);
      if (row === undefined) continue;
      const next = row.filter((n) => n !== y);
      if (next.length === 0) this.sym.delete(x);
      else this.sym.set(x, Object.freeze(next));
      this.refreshSlotRow(x);
    }
    this.adjGen++;
  }

  /** Increments on every change to the table, so callers can cache derived data such as routes. */
  get generation(): number {
    return this.gen;
  }

  /**
   * Increments whenever the symmetric established adjacency (`neighbours`) changes,
   * and only then: routes depend on nothing else, so they are cached per this number.
   */
  get adjacencyGeneration(): number {
    return this.adjGen;
  }

  /** `neighbours(name)` without a copy: a frozen, sorted, shared row (do not keep it across changes). */
  neighbourRow(name: PeerName): readonly PeerName[] {
    return this.sym.get(name) ?? NO_NAMES;
  }

  /**
   * One more than the largest slot in use (slots are dense small integers, reused
   * after a removal): the size typed arrays indexed by slot need.
   */
  get slotCapacity(): number {
    return this.slotNames.length;
  }

  /** The slot of a peer that has an entry, else undefined. */
  slotOf(name: PeerName): number | undefined {
    return this.slot.get(name);
  }

  /** The slot of a peer given as its 48-bit number (peerNameToNum), else undefined. */
  slotOfNum(num: number): number | undefined {
    return this.slotByNum.get(num);
  }

  /** The peer in `slot`, or undefined for a free slot. */
  nameAt(slot: number): PeerName | undefined {
    return this.slotNames[slot];
  }

  /** The 48-bit number of the peer in `slot` (meaningless for a free slot). */
  numAt(slot: number): number {
    return this.slotNums[slot] ?? 0;
  }

  /** `neighbourRow` of the peer in `slot`, as slots in the same (name) order; shared, do not modify or keep. */
  neighbourSlots(slot: number): Int32Array {
    return this.symSlots[slot] ?? NO_SLOTS;
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
    this.put(freezeInfo({ ...cur, version: cur.version + 1, connections: next }));
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
          this.put(freezeInfo({ ...ours, version: p.version + 1 }));
          changed.push(name);
        }
        continue;
      }
      if (cur === undefined || compareEntries(p, cur) > 0) {
        this.put(p);
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
   * @param collected the caller vouches that every entry of `other` is reachable from
   *   our own name too (connection lists symmetric within one connected graph, as in
   *   the simulator's seeding); if `other` has also been collected since its last
   *   change, our next `gc` then has nothing to walk. Otherwise (default) the next
   *   `gc` walks the whole table.
   * @throws TopologyError if `other` lacks an entry for us.
   */
  copyFrom(other: Topology, collected = false): void {
    if (!other.entries.has(this.selfName)) bad('copy', `source table has no entry for ${this.selfName}`);
    const ours = this.self();
    // Whole-map copies (much faster than entry by entry at 1,000 × 1,000 in the simulator).
    this.entries = new Map(other.entries);
    this.replaced = new Map(other.replaced);
    this.estTo = new Map(other.estTo);
    this.sym = new Map(other.sym);
    this.slot = new Map(other.slot);
    this.slotByNum = new Map(other.slotByNum);
    this.slotNames = [...other.slotNames];
    this.slotNums = [...other.slotNums];
    this.freeSlots = [...other.freeSlots];
    this.symSlots = [...other.symSlots];
    this.gcCandidates = collected && other.gcCandidates !== 'all' && other.gcCandidates.size === 0 ? new Set() : 'all';
    // Our entry as `other` holds it, then ours: put() moves the adjacency over by the difference.
    this.put(ours);
    this.gen++;
    this.adjGen++;
  }

  get(name: PeerName): PeerInfo | undefined {
    return this.entries.get(name);
  }

  /**
   * The version of a peer's entry that its current one replaced (same
   * incarnation), if any: what a converged neighbour most likely holds, so the base
   * of a topology delta (topology-delta.ts). Versions share their unchanged
   * connection objects, so keeping it costs little more than the list itself.
   */
  previous(name: PeerName): PeerInfo | undefined {
    return this.replaced.get(name);
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
    return [...this.neighbourRow(name)];
  }

  /** Every entry in the table, unordered (frozen; cheaper than `peers()` when order does not matter). */
  allEntries(): IterableIterator<PeerInfo> {
    return this.entries.values();
  }

  /** Every peer name in the table, unordered (cheaper than `peers()` when order does not matter). */
  names(): IterableIterator<PeerName> {
    return this.entries.keys();
  }

  /**
   * Peer names ordered so that each one is reachable, following owners' connection
   * lists (as `gc` does), from self or from a name earlier in the order; names not
   * reachable from self come last, sorted. Sending entries in this order lets a
   * receiver that lists us keep every chunk of a split update through its `gc`.
   * @param only restrict the result to these names (default: all).
   */
  reachOrder(only?: Iterable<PeerName>): PeerName[] {
    const want = only === undefined ? undefined : new Set(only);
    const seen = new Set<PeerName>([this.selfName]);
    const order: PeerName[] = [this.selfName];
    for (let i = 0; i < order.length; i++) {
      const p = this.entries.get(order[i]!);
      if (p === undefined) continue;
      for (const c of p.connections) if (!seen.has(c.name) && this.entries.has(c.name)) {
        seen.add(c.name);
        order.push(c.name);
      }
    }
    const rest = [...this.entries.keys()].filter((n) => !seen.has(n)).sort();
    const all = order.concat(rest);
    return want === undefined ? all : all.filter((n) => want.has(n));
  }

  /**
   * Compact summary of the table for anti-entropy: [name, version, uid] per entry,
   * sorted by name (what a neighbour compares against in `newerThan`).
   */
  summary(): Array<[PeerName, number, number]> {
    return this.peers().map((p) => [p.name, p.version, p.uid]);
  }

  /**
   * Names of our entries that beat (version, uid) the given summary or are missing
   * from it — what the summary's sender lacks. Validates the summary first.
   * @param theirs if given, filled with the summary's (version, uid) per name
   * @throws TopologyError for a malformed summary or one over MAX_TOPOLOGY_PEERS.
   */
  newerThan(summary: unknown, theirs = new Map<PeerName, { version: number; uid: number }>()): PeerName[] {
    if (!Array.isArray(summary)) bad('summary', 'must be an array of [name, version, uid]');
    if (summary.length > MAX_TOPOLOGY_PEERS) bad('summary', `${summary.length} peers, over the limit of ${MAX_TOPOLOGY_PEERS}`);
    theirs.clear();
    for (const x of summary) {
      if (!Array.isArray(x) || x.length !== 3) bad('summary', 'each item must be [name, version, uid]');
      const [name, version, uid] = x as unknown[];
      if (!isPeerName(name)) bad('summary', `name ${JSON.stringify(String(name).slice(0, 40))} is not a lowercase peer name`);
      if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) bad('summary', `version of ${name} is not a positive safe integer`);
      if (typeof uid !== 'number' || !Number.isSafeInteger(uid) || uid < 0) bad('summary', `uid of ${name} is not a non-negative safe integer`);
      theirs.set(name, { version, uid });
    }
    const out: PeerName[] = [];
    for (const p of this.entries.values()) {
      const t = theirs.get(p.name);
      if (t === undefined || p.version > t.version || (p.version === t.version && p.uid > t.uid)) out.push(p.name);
    }
    return out;
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
    const cand = this.gcCandidates;
    this.gcCandidates = new Set();
    if (cand !== 'all') cand.delete(this.selfName);
    let left = cand === 'all' ? -1 : [...cand].filter((n) => this.entries.has(n)).length;
    if (left === 0) return [];
    const reached = new Set<PeerName>([this.selfName]);
    const stack: PeerName[] = [this.selfName];
    walk: while (stack.length > 0) {
      const p = this.entries.get(stack.pop()!);
      if (p === undefined) continue;
      for (const c of p.connections) {
        if (!reached.has(c.name)) {
          reached.add(c.name);
          stack.push(c.name);
          // Every candidate is still reachable: nothing else can have become garbage.
          if (cand !== 'all' && cand.has(c.name) && this.entries.has(c.name) && --left === 0) break walk;
        }
      }
    }
    if (left === 0) return [];
    const removed: PeerName[] = [];
    for (const name of this.entries.keys()) {
      if (!reached.has(name)) removed.push(name);
    }
    for (const name of removed) this.remove(name);
    if (removed.length > 0) this.gen++;
    return removed.sort();
  }
}
