/**
 * The allocator's persistence pipeline: every decision is made in memory, then made
 * durable, and only then may anything leave the process (a gossip, a donation reply,
 * an address returned). Saves are serialised; `persist()` resolves once a save that
 * includes the state as of the call has completed, and rejects with that save's error.
 * What was last saved is what gossip sends (`savedRing`, `savedPaxos`), so no peer
 * ever learns a ring version this peer could lose in a crash.
 */
import type { Consensus, PaxosKnowledge } from './consensus.js';
import { IpamPersistenceError, type PersistedIpam, type Persistence } from './persist.js';
import { Ring, RingError, type RingPlain } from './ring.js';
import type { Space } from './space.js';
import { formatAddressCidr, formatIp, parseAddressCidr, type Cidr } from './cidr.js';

/**
 * What is saved (ipam.json, version 1): the ring, our allocations and, in consensus
 * mode before a ring exists, our Paxos knowledge. Refreshes the ring's free-space
 * hints for our ranges first, so every version gossiped has been saved.
 */
export function snapshotState(self: string, rangeText: string, ring: Ring, space: Space, consensus: Consensus | undefined): PersistedIpam {
  ring.updateFree(self, (s, e) => space.freeCount(s, e));
  return {
    version: 1,
    peer: self,
    range: rangeText,
    ring: ring.isEmpty() ? null : ring.toPlain(),
    allocations: space.allocations().map((a) => ({ owner: a.owner, addr: formatAddressCidr(a.addr, a.prefix) })),
    paxos: consensus ? consensus.knowledge() : null,
  };
}

/** The allocator's state a restore fills in. */
export interface RestoreTarget {
  self: string;
  range: Cidr;
  rangeText: string;
  /** The empty ring of a fresh allocator (returned when nothing was saved). */
  ring: Ring;
  space: Space;
  consensus: Consensus | undefined;
  persistence: Persistence;
  log(msg: string): void;
}

/**
 * Load saved state into `t.space` (and `t.consensus`); returns the ring to use.
 * @throws IpamPersistenceError when the data belongs to another peer or range, or is
 *   corrupted (then, if the persistence supports it, the file is kept aside as is).
 */
export function restoreState(p: PersistedIpam, t: RestoreTarget): Ring {
  const corrupt = (why: string): IpamPersistenceError => {
    const fp = t.persistence as { markCorrupt?(r: string): IpamPersistenceError };
    return fp.markCorrupt ? fp.markCorrupt(why) : new IpamPersistenceError(`IPAM data is corrupted (${why}): move it aside or run weave reset`);
  };
  if (p.peer !== t.self) {
    throw new IpamPersistenceError(`IPAM data belongs to peer ${p.peer} but this peer is ${t.self}: run weave reset or restore the peer name`);
  }
  if (p.range !== t.rangeText) {
    throw new IpamPersistenceError(`IPAM data was created for range ${p.range} but the IPAM range is ${t.rangeText}: use the same --ipalloc-range or run weave reset`);
  }
  let ring = t.ring;
  try {
    if (p.ring) {
      const r = Ring.fromPlain(p.ring);
      if (r.start !== t.range.start || r.size !== t.range.size) throw new RingError('ring range differs from the stored range');
      ring = r;
    }
    t.space.setOwned(ring.ownedRanges(t.self));
    for (const a of p.allocations) {
      const c = parseAddressCidr(a.addr);
      t.space.restore({ addr: c.addr, owner: a.owner, prefix: c.prefix });
    }
    if (p.paxos && t.consensus) t.consensus.restore(p.paxos);
  } catch (e) {
    throw corrupt((e as Error).message);
  }
  const stray = t.space.setOwned(ring.ownedRanges(t.self));
  for (const a of stray) t.log(`IPAM: restored allocation ${formatIp(a.addr)} of ${a.owner} lies outside our space`);
  return ring;
}

export class PersistPipeline {
  /** Counts state changes; `savedGen` is the last one known durable. */
  private gen = 0;
  private savedGen = 0;
  private saving: Promise<void> | undefined;
  /** The ring and Paxos knowledge as last saved (what gossip may send). */
  savedRing: RingPlain | null = null;
  savedPaxos: PaxosKnowledge | null = null;

  /**
   * @param persistence where state goes
   * @param snapshot the state to save now (called once per save)
   * @param isClosed true once the allocator is shut down (persist then rejects)
   * @param closedError the error to reject with when closed
   */
  constructor(
    private readonly persistence: Persistence,
    private readonly snapshot: () => PersistedIpam,
    private readonly isClosed: () => boolean,
    private readonly closedError: () => Error,
  ) {}

  /** Make the current state durable; resolves once a save that includes it has completed. */
  async persist(): Promise<void> {
    if (this.isClosed()) throw this.closedError();
    const want = ++this.gen;
    while (this.savedGen < want) {
      if (this.saving) {
        await this.saving;
        continue;
      }
      const g = this.gen;
      const snap = this.snapshot();
      const p = this.persistence.save(snap).then(() => {
        this.savedGen = Math.max(this.savedGen, g);
        this.savedRing = snap.ring;
        this.savedPaxos = snap.paxos;
      });
      // Other waiters only need to know the save is over (they retry); the failure goes to our caller.
      const tracked: Promise<void> = p.then(
        () => undefined,
        () => undefined,
      ).then(() => {
        if (this.saving === tracked) this.saving = undefined;
      });
      this.saving = tracked;
      await p;
    }
  }
}
