/**
 * The pending topology update of one batching window (pure: no timers, no sockets).
 *
 * The router batches the topology changes of one short window into one `update`
 * message (after mesh's gossip, which also coalesces pending updates). A change merged
 * from connection C need not be echoed back to C, so an addition may name a connection
 * to skip. The skip is only safe if it holds for *everything* in the batch: once a
 * change with another origin (or our own change, which names none) joins, the batch
 * goes to every connection. Skipping the origin of the first change for the whole
 * window lost our own "connection established" update when it came right after a
 * merged one, and left both peers without a route until the next full gossip (30 s).
 */
export class GossipBatch<C> {
  private readonly names = new Set<string>();
  /** The connection every addition so far agreed to skip; null when none (send to all). */
  private skip: C | null = null;
  private empty = true;

  /**
   * Adds peer entries to the batch.
   * @param names peer names whose entries changed
   * @param except the connection the change came from (it already has it), if any
   * @returns true if the batch was empty before (the caller schedules the send)
   */
  add(names: Iterable<string>, except?: C): boolean {
    const first = this.empty;
    for (const n of names) this.names.add(n);
    if (first) this.skip = except ?? null;
    else if (this.skip !== (except ?? null)) this.skip = null;
    this.empty = false;
    return first;
  }

  /** Takes the batch and starts a new one: the names (insertion order) and the connection to skip, if any. */
  take(): { names: string[]; except: C | undefined } {
    const out = { names: [...this.names], except: this.skip ?? undefined };
    this.names.clear();
    this.skip = null;
    this.empty = true;
    return out;
  }
}
