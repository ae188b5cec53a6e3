/**
 * weaveDNS's registry: the pure core (no sockets, timers or files; the clock and the
 * RNG are injected).
 *
 * Following Weave's nameserver design (weave/nameserver/entry.go: every peer owns the
 * entries it registered and gossips them; the set is a CRDT merged entry by entry), an
 * entry is keyed by (origin peer, container id, address, hostname) and carries a version
 * and a tombstone time. Only the origin changes its entries, bumping the version each
 * time. Merging keeps, per key, the higher version, and at equal versions the tombstone
 * (and the later of two tombstones) — so merge is commutative, associative and idempotent, and every peer that has seen
 * the same messages holds the same set, whatever their order, loss (repaired by the
 * periodic full exchange) or duplication.
 *
 * A restarted peer starts empty and re-registers its running containers at version 0;
 * when gossip brings back its own older entries it stays authoritative: an own entry it
 * still holds is re-issued above the version seen, one it no longer holds is tombstoned
 * above it (adoptOwn in merge()).
 *
 * Tombstones are kept for TOMBSTONE_TTL_MS (30 min, as Weave) so a deletion outlives
 * any stale copy still circulating, then purged by gc().
 */
import { unpack } from 'msgpackr';
import { BUDGETS, scanMsgpack } from '../router/mesh/msgpack-budget.js';

import { parseIpv6, formatIpv6 } from '../ipam/ipv6.js';

/** One registration: a hostname (FQDN, lower case, trailing dot) → an IPv4 address (and its IPv6 one). */
export interface DnsEntry {
  /** The container id (Docker id, or the endpoint id such as "netns:/run/netns/x"). */
  containerId: string;
  /** Peer name (MAC-style, "aa:bb:cc:dd:ee:ff") of the router that registered it. */
  origin: string;
  /** Dotted-quad IPv4 address, "10.32.0.5". */
  addr: string;
  /**
   * [IPv6] The container's IPv6 address that goes with `addr` (RFC 5952 text,
   * "fd00:77::a20:5"), when its router has --ipalloc-range6; answered as AAAA. Optional on
   * the wire (a 7th element), so entries without it are as before.
   */
  addr6?: string;
  /** Fully qualified, lower case, with the trailing dot: "db.weave.local.". */
  hostname: string;
  /** Bumped by the origin on every change of this entry. */
  version: number;
  /** 0 while live; the origin's wall-clock time (ms since the epoch) of deletion otherwise. */
  tombstone: number;
}

/** How long a tombstone is kept before gc() purges it (Weave: 30 minutes). */
export const TOMBSTONE_TTL_MS = 30 * 60_000;
/** Bounds on what a gossip message may carry (see decodeEntries). */
export const MAX_ENTRIES_PER_MESSAGE = 100_000;
export const MAX_FIELD_LENGTH = 255;

export { DnsRegistryError, isIpv4, normaliseName, normaliseDomain } from './names.js';
import { DnsRegistryError, shown, isIpv4, normaliseName } from './names.js';

const keyOf = (e: Pick<DnsEntry, 'origin' | 'containerId' | 'addr' | 'hostname'>): string => `${e.origin}\u0000${e.containerId}\u0000${e.addr}\u0000${e.hostname}`;

/**
 * True if `b` supersedes `a` (same key): higher version; at equal versions a tombstone
 * beats a live entry, and of two tombstones the later one wins (a total order, so merge
 * is a join whatever the history, e.g. an origin that deleted one entry twice across a
 * restart).
 */
export function supersedes(b: DnsEntry, a: DnsEntry): boolean {
  if (b.version !== a.version) return b.version > a.version;
  return b.tombstone > a.tombstone;
}

/** What lookups may consult besides the entries. */
export interface LookupOptions {
  /** Origins whose entries are answered (peers in our topology); default: all. */
  originAlive?: (origin: string) => boolean;
  /** Addresses the asker may learn (isolation); default: all. */
  visible?: (addr: string) => boolean;
  /** Uniform [0, 1) for the per-answer shuffle; default: no shuffle. */
  rng?: () => number;
}

export class DnsRegistry {
  private readonly entries = new Map<string, DnsEntry>();

  /**
   * @param self our peer name (entries we add carry it as origin)
   * @param now wall clock in ms since the epoch (tombstone times; gc)
   */
  constructor(readonly self: string, private readonly now: () => number) {}

  /** Every entry (live and tombstoned), copies, sorted by hostname then address. */
  all(): DnsEntry[] {
    // Code-unit order: locale-independent, and no ICU collation data loaded (issue #20).
    const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
    return [...this.entries.values()].map((e) => ({ ...e })).sort((a, b) => cmp(a.hostname, b.hostname) || cmp(a.addr, b.addr) || cmp(a.origin, b.origin) || cmp(a.containerId, b.containerId));
  }

  /** Live entries only. */
  live(): DnsEntry[] {
    return this.all().filter((e) => e.tombstone === 0);
  }

  /**
   * Register `hostname` → `addr` for `containerId` as our own entry. Returns the changed
   * entries (to broadcast): [] if it was already live.
   * @throws DnsRegistryError for a bad address or hostname (hostname must be normalised)
   */
  add(containerId: string, addr: string, hostname: string, addr6?: string): DnsEntry[] {
    checkFields(containerId, addr, hostname, addr6);
    const k = keyOf({ origin: this.self, containerId, addr, hostname });
    const prev = this.entries.get(k);
    // A changed IPv6 address (launched with another --ipalloc-range6) is a new version.
    if (prev && prev.tombstone === 0 && prev.addr6 === addr6) return [];
    const e: DnsEntry = { containerId, origin: this.self, addr, hostname, ...(addr6 !== undefined ? { addr6 } : {}), version: prev ? prev.version + 1 : 0, tombstone: 0 };
    this.entries.set(k, e);
    return [{ ...e }];
  }

  /**
   * Tombstone our own live entries of `containerId`, narrowed to `addr` and/or
   * `hostname` when given. Returns the changed entries (to broadcast).
   */
  remove(containerId: string, addr?: string, hostname?: string): DnsEntry[] {
    const out: DnsEntry[] = [];
    const t = Math.max(1, this.now());
    for (const e of this.entries.values()) {
      if (e.origin !== this.self || e.tombstone !== 0 || e.containerId !== containerId) continue;
      if (addr !== undefined && e.addr !== addr) continue;
      if (hostname !== undefined && e.hostname !== hostname) continue;
      e.version++;
      e.tombstone = t;
      out.push({ ...e });
    }
    return out;
  }

  /**
   * Merge entries from gossip. Returns { changed, reissued }: `changed` are the entries
   * that replaced or added to ours; `reissued` are own entries we re-versioned because a
   * stale copy from before a restart came back (they must be broadcast).
   */
  merge(incoming: readonly DnsEntry[]): { changed: DnsEntry[]; reissued: DnsEntry[] } {
    const changed: DnsEntry[] = [];
    const reissued: DnsEntry[] = [];
    for (const inc of incoming) {
      const k = keyOf(inc);
      const cur = this.entries.get(k);
      if (inc.origin === this.self) {
        // We are authoritative for our entries. A copy that supersedes ours (from
        // before a restart) is overridden just above its version, keeping what we hold
        // now; a live copy of an entry we no longer hold is tombstoned above it; an old
        // deletion we agree with is kept, so it goes on shadowing stale copies until gc.
        if (cur && !supersedes(inc, cur)) continue;
        if (inc.tombstone !== 0 && (!cur || cur.tombstone !== 0)) {
          this.entries.set(k, { ...inc });
          changed.push({ ...inc });
          continue;
        }
        const e: DnsEntry = cur
          ? { ...cur, version: inc.version + 1 }
          : { ...inc, version: inc.version + 1, tombstone: Math.max(1, this.now()) };
        this.entries.set(k, e);
        reissued.push({ ...e });
        continue;
      }
      if (cur && !supersedes(inc, cur)) continue;
      const e = { ...inc };
      this.entries.set(k, e);
      changed.push({ ...e });
    }
    return { changed, reissued };
  }

  /**
   * Addresses of `name` (already normalised: lower case, trailing dot), live entries
   * only, from origins `opts.originAlive` accepts and visible to the asker, each address
   * once, shuffled with `opts.rng` (Fisher–Yates) so successive answers rotate.
   */
  lookup(name: string, opts: LookupOptions = {}): string[] {
    const seen = new Set<string>();
    for (const e of this.entries.values()) {
      if (e.tombstone !== 0 || e.hostname !== name || seen.has(e.addr)) continue;
      if (opts.originAlive && !opts.originAlive(e.origin)) continue;
      if (opts.visible && !opts.visible(e.addr)) continue;
      seen.add(e.addr);
    }
    const out = [...seen].sort();
    if (opts.rng) shuffle(out, opts.rng);
    return out;
  }

  /**
   * [IPv6] The IPv6 addresses (AAAA) of `name`, under the same rules as lookup(); an
   * entry's visibility is that of its IPv4 address (its isolation group).
   */
  lookup6(name: string, opts: LookupOptions = {}): string[] {
    const seen = new Set<string>();
    for (const e of this.entries.values()) {
      if (e.tombstone !== 0 || e.hostname !== name || e.addr6 === undefined || seen.has(e.addr6)) continue;
      if (opts.originAlive && !opts.originAlive(e.origin)) continue;
      if (opts.visible && !opts.visible(e.addr)) continue;
      seen.add(e.addr6);
    }
    const out = [...seen].sort();
    if (opts.rng) shuffle(out, opts.rng);
    return out;
  }

  /** [IPv6] Hostnames registered for the IPv6 address `addr6` (RFC 5952 text), as reverse(). */
  reverse6(addr6: string, opts: LookupOptions = {}): string[] {
    const seen = new Set<string>();
    for (const e of this.entries.values()) {
      if (e.tombstone !== 0 || e.addr6 !== addr6) continue;
      if (opts.originAlive && !opts.originAlive(e.origin)) continue;
      if (opts.visible && !opts.visible(e.addr)) continue;
      seen.add(e.hostname);
    }
    return [...seen].sort();
  }

  /** Hostnames registered for `addr` (reverse lookup), under the same rules as lookup(), sorted. */
  reverse(addr: string, opts: LookupOptions = {}): string[] {
    if (opts.visible && !opts.visible(addr)) return [];
    const seen = new Set<string>();
    for (const e of this.entries.values()) {
      if (e.tombstone !== 0 || e.addr !== addr) continue;
      if (opts.originAlive && !opts.originAlive(e.origin)) continue;
      seen.add(e.hostname);
    }
    return [...seen].sort();
  }

  /** Purge tombstones older than TOMBSTONE_TTL_MS; returns how many were purged. */
  gc(): number {
    const limit = this.now() - TOMBSTONE_TTL_MS;
    let n = 0;
    for (const [k, e] of this.entries) {
      if (e.tombstone !== 0 && e.tombstone < limit) {
        this.entries.delete(k);
        n++;
      }
    }
    return n;
  }

  /** Our own live entries' container ids (to reconcile with the endpoint table). */
  ownContainers(): Set<string> {
    const s = new Set<string>();
    for (const e of this.entries.values()) if (e.origin === this.self && e.tombstone === 0) s.add(e.containerId);
    return s;
  }
}

function shuffle<T>(xs: T[], rng: () => number): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
}

/** True for an IPv6 address in its RFC 5952 text form (as formatIpv6 writes it). */
export function isCanonicalIpv6(s: string): boolean {
  const b = typeof s === 'string' ? parseIpv6(s) : undefined;
  return b !== undefined && formatIpv6(b) === s;
}

function checkFields(containerId: string, addr: string, hostname: string, addr6?: string): void {
  if (addr6 !== undefined && !isCanonicalIpv6(addr6)) throw new DnsRegistryError(`invalid IPv6 address ${shown(addr6)}: want RFC 5952 text like fd00:77::a20:5`);
  if (typeof containerId !== 'string' || !containerId || containerId.length > MAX_FIELD_LENGTH) throw new DnsRegistryError(`invalid container id ${shown(containerId)}`);
  if (typeof addr !== 'string' || !isIpv4(addr)) throw new DnsRegistryError(`invalid address ${shown(addr)}: want an IPv4 address like 10.32.0.5`);
  if (typeof hostname !== 'string' || normaliseName(hostname, 'x.') !== hostname) {
    throw new DnsRegistryError(`invalid hostname ${shown(hostname)}: want a fully qualified name like db.weave.local.`);
  }
}

/**
 * Validate one decoded gossip entry (any shape) into a DnsEntry; throws a one-line
 * DnsRegistryError naming the first bad field.
 */
export function checkEntry(x: unknown): DnsEntry {
  if (!Array.isArray(x) || (x.length !== 6 && x.length !== 7)) throw new DnsRegistryError('entry is not a 6- or 7-element array');
  const [containerId, origin, addr, hostname, version, tombstone, addr6] = x as unknown[];
  if (x.length === 7 && typeof addr6 !== 'string') throw new DnsRegistryError('entry has a non-string IPv6 address');
  if (typeof containerId !== 'string' || typeof origin !== 'string' || typeof addr !== 'string' || typeof hostname !== 'string') throw new DnsRegistryError('entry has a non-string field');
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(origin)) throw new DnsRegistryError(`entry origin ${shown(origin, 40)} is not a peer name`);
  if (!Number.isSafeInteger(version) || (version as number) < 0) throw new DnsRegistryError('entry version is not a non-negative integer');
  if (!Number.isSafeInteger(tombstone) || (tombstone as number) < 0) throw new DnsRegistryError('entry tombstone is not a non-negative integer');
  checkFields(containerId, addr, hostname, addr6 as string | undefined);
  return { containerId, origin, addr, hostname, ...(typeof addr6 === 'string' ? { addr6 } : {}), version: version as number, tombstone: tombstone as number };
}

/**
 * Entries → the gossip payload's plain form (arrays, for a compact msgpack encoding):
 * [containerId, origin, addr, hostname, version, tombstone] plus addr6 as a 7th element
 * when the entry has one. (Routers before issue #21 accept only 6 elements: a mesh
 * that uses --ipalloc-range6 needs every router at this version.)
 */
export function entriesToWire(es: readonly DnsEntry[]): unknown[] {
  return es.map((e) => e.addr6 !== undefined
    ? [e.containerId, e.origin, e.addr, e.hostname, e.version, e.tombstone, e.addr6]
    : [e.containerId, e.origin, e.addr, e.hostname, e.version, e.tombstone]);
}

/**
 * The gossip payload's plain form (as decoded by msgpack) → entries. Bounded: at most
 * MAX_ENTRIES_PER_MESSAGE entries, every field checked (checkEntry).
 * @throws DnsRegistryError on any malformed input
 */
export function entriesFromWire(x: unknown): DnsEntry[] {
  if (!Array.isArray(x)) throw new DnsRegistryError('dns gossip is not a list of entries');
  if (x.length > MAX_ENTRIES_PER_MESSAGE) throw new DnsRegistryError(`dns gossip has ${x.length} entries, more than ${MAX_ENTRIES_PER_MESSAGE}`);
  return x.map(checkEntry);
}

/**
 * Decode a `dns` gossip payload (msgpack bytes from a peer): a bounded pre-scan
 * (BUDGETS.dns: at most MAX_ENTRIES_PER_MESSAGE six-field entries, no extension types)
 * before msgpackr builds any object, then entriesFromWire.
 * @throws DnsRegistryError with a one-line reason on anything malformed
 */
export function decodeGossip(bytes: Uint8Array): DnsEntry[] {
  let x: unknown;
  try {
    scanMsgpack(bytes, BUDGETS.dns);
    x = unpack(bytes);
  } catch (err) {
    throw new DnsRegistryError(`undecodable dns gossip: ${(err as Error).message.split('\n')[0]}`);
  }
  return entriesFromWire(x);
}
