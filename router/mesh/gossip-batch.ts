/**
 * Recently changed topology entries and which connections already hold them (pure:
 * no timers, no sockets; the caller passes the time).
 *
 * Topology gossip (gossip.ts) sends a changed entry over the mesh's gossip tree; to
 * keep that at about one message per peer, it must not send an entry to a connection
 * that already has it — one that sent it to us, or that we sent it to (weaveworks/mesh
 * keeps the same "already known" state per connection for its gossip). Only the
 * current version of an entry counts: a newer version starts with no holder but the
 * connection it came from. Records are kept for `keepMs` so that a peer whose gossip
 * tree changes while a change is spreading can check its new tree neighbours against
 * them; older changes are left to the periodic digest exchange.
 *
 * A record also keeps the version it replaced and that version's holders (if any
 * connection held it), so gossip can send a holder only the difference (a delta,
 * topology-delta.ts) instead of the whole new entry.
 * @typeParam C a connection (compared by identity)
 * @typeParam E an entry (compared by identity: the topology replaces, never mutates, entries)
 */
export class RecentEntries<C, E> {
  private readonly records = new Map<string, { entry: E; at: number; has: Set<C>; prev?: { entry: E; has: Set<C> } }>();

  /** @param keepMs how long a change is remembered (ms) */
  constructor(readonly keepMs: number) {}

  /** Number of remembered changes. */
  get size(): number {
    return this.records.size;
  }

  /**
   * `name`'s entry is now `entry` (at time `now`, ms). A different entry than the
   * remembered one starts a new record; the same one only adds `from` as a holder.
   * @param from the connection it came from, if any (that connection has it)
   */
  changed(name: string, entry: E, now: number, from?: C): void {
    const r = this.records.get(name);
    if (r !== undefined && r.entry === entry) {
      if (from !== undefined) r.has.add(from);
      return;
    }
    this.records.delete(name);
    // The replaced version is a delta base only if some connection holds it; one that
    // never left this peer (replaced within the batch) passes on its own base.
    const prev = r === undefined ? undefined : r.has.size > 0 ? { entry: r.entry, has: r.has } : r.prev;
    this.records.set(name, { entry, at: now, has: new Set(from === undefined ? [] : [from]), ...(prev ? { prev } : {}) });
  }

  /** The version `name`'s current change replaced (held by some connection), if remembered. */
  previous(name: string): E | undefined {
    return this.records.get(name)?.prev?.entry;
  }

  /** The version `name`'s current change replaced, if connection `c` holds it (a base for a delta to `c`). */
  base(name: string, c: C): E | undefined {
    const p = this.records.get(name)?.prev;
    return p !== undefined && p.has.has(c) ? p.entry : undefined;
  }

  /** Connection `c` showed it holds an entry of `name`; it counts if `same(current entry)` says it is ours. */
  has(name: string, c: C, same: (e: E) => boolean): void {
    const r = this.records.get(name);
    if (r !== undefined && same(r.entry)) r.has.add(c);
  }

  /** Forgets changes older than `keepMs` and those whose entry is no longer current (`current(name, entry)` false). */
  expire(now: number, current: (name: string, e: E) => boolean): void {
    for (const [n, r] of this.records) if (now - r.at > this.keepMs || !current(n, r.entry)) this.records.delete(n);
  }

  /** The names whose current change `c` lacks, in change order; `c` is recorded as holding them (the caller sends them). */
  missing(c: C): string[] {
    const out: string[] = [];
    for (const [n, r] of this.records) {
      if (r.has.has(c)) continue;
      r.has.add(c);
      out.push(n);
    }
    return out;
  }
}
