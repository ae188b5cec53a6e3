/**
 * The addresses one peer has handed out inside the ranges it owns (pure).
 *
 * Owned ranges come from the ring; allocations are (address → container id, prefix length).
 * Allocated addresses are also kept as sorted maximal runs [start, end), so "lowest free
 * address in [lo, hi)" is a binary search rather than a scan (Weave's space keeps a free list
 * per owned range; runs of used addresses suit lowest-first allocation better).
 */
import { alignedBlocks, formatIp, type Cidr } from './cidr.js';

/** An allocation request the space cannot satisfy as asked (address held by someone else, not ours...). */
export class SpaceError extends Error {
  override name = 'SpaceError';
}

export interface Allocation {
  addr: number;
  owner: string;
  prefix: number;
}

export class Space {
  /** Owned ranges, sorted, disjoint, coalesced: [start, end). */
  private owned: Array<[number, number]> = [];
  /** Allocated runs, sorted, disjoint, maximal. */
  private runStart: number[] = [];
  private runEnd: number[] = [];
  private byAddr = new Map<number, Allocation>();
  private byOwner = new Map<string, Set<number>>();

  /**
   * Replace the owned ranges (sorted, disjoint [start, end) pairs, as from Ring.ownedRanges).
   * Returns allocations that now lie outside owned space; they are kept, and the caller decides
   * (normally the list is empty: we never give away allocated addresses).
   */
  setOwned(ranges: ReadonlyArray<readonly [number, number]>): Allocation[] {
    this.owned = ranges.map(([s, e]) => [s, e] as [number, number]);
    const stray: Allocation[] = [];
    for (const a of this.byAddr.values()) if (!this.owns(a.addr)) stray.push(a);
    return stray;
  }

  /** Owned ranges (a copy). */
  ownedRanges(): Array<[number, number]> {
    return this.owned.map(([s, e]) => [s, e] as [number, number]);
  }

  /** Whether addr lies in an owned range. */
  owns(addr: number): boolean {
    let lo = 0;
    let hi = this.owned.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [s, e] = this.owned[mid]!;
      if (addr < s) hi = mid - 1;
      else if (addr >= e) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /** Index of the last run with start <= addr, or -1. */
  private runAtOrBefore(addr: number): number {
    let lo = 0;
    let hi = this.runStart.length - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.runStart[mid]! <= addr) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  /** The first unallocated address >= addr (not checking ownership). */
  private firstUnallocated(addr: number): number {
    const i = this.runAtOrBefore(addr);
    return i >= 0 && this.runEnd[i]! > addr ? this.runEnd[i]! : addr;
  }

  /**
   * Allocate the lowest owned, unallocated address in [lo, hi) to `owner` (a container id),
   * remembering `prefix` for lookups. Returns the address, or undefined if there is none.
   */
  allocate(owner: string, lo: number, hi: number, prefix: number): number | undefined {
    for (const [s, e] of this.owned) {
      if (e <= lo) continue;
      if (s >= hi) break;
      const a = this.firstUnallocated(Math.max(s, lo));
      if (a < Math.min(e, hi)) {
        this.record({ addr: a, owner, prefix });
        return a;
      }
    }
    return undefined;
  }

  /**
   * Claim the exact address for `owner`. Returns false if `owner` already holds it (idempotent).
   * @throws SpaceError if we do not own the address or another container holds it.
   */
  claim(owner: string, addr: number, prefix: number): boolean {
    const held = this.byAddr.get(addr);
    if (held) {
      if (held.owner === owner) return false;
      throw new SpaceError(`address ${formatIp(addr)} is already in use by ${held.owner}`);
    }
    if (!this.owns(addr)) throw new SpaceError(`address ${formatIp(addr)} is not in space owned by this peer`);
    this.record({ addr, owner, prefix });
    return true;
  }

  /** Put back an allocation (restoring persisted state); unlike claim it does not require ownership. */
  restore(a: Allocation): void {
    if (this.byAddr.has(a.addr)) throw new SpaceError(`address ${formatIp(a.addr)} is allocated twice`);
    this.record({ ...a });
  }

  private record(a: Allocation): void {
    this.byAddr.set(a.addr, a);
    let set = this.byOwner.get(a.owner);
    if (!set) this.byOwner.set(a.owner, (set = new Set()));
    set.add(a.addr);
    // Insert a into the runs, joining neighbours.
    const i = this.runAtOrBefore(a.addr);
    const joinLeft = i >= 0 && this.runEnd[i] === a.addr;
    const joinRight = i + 1 < this.runStart.length && this.runStart[i + 1] === a.addr + 1;
    if (joinLeft && joinRight) {
      this.runEnd[i] = this.runEnd[i + 1]!;
      this.runStart.splice(i + 1, 1);
      this.runEnd.splice(i + 1, 1);
    } else if (joinLeft) {
      this.runEnd[i] = a.addr + 1;
    } else if (joinRight) {
      this.runStart[i + 1] = a.addr;
    } else {
      this.runStart.splice(i + 1, 0, a.addr);
      this.runEnd.splice(i + 1, 0, a.addr + 1);
    }
  }

  /** Free one address. Returns the allocation removed, or undefined if it was not allocated. */
  free(addr: number): Allocation | undefined {
    const a = this.byAddr.get(addr);
    if (!a) return undefined;
    this.byAddr.delete(addr);
    const set = this.byOwner.get(a.owner)!;
    set.delete(addr);
    if (set.size === 0) this.byOwner.delete(a.owner);
    const i = this.runAtOrBefore(addr);
    const s = this.runStart[i]!;
    const e = this.runEnd[i]!;
    if (s === addr && e === addr + 1) {
      this.runStart.splice(i, 1);
      this.runEnd.splice(i, 1);
    } else if (s === addr) {
      this.runStart[i] = addr + 1;
    } else if (e === addr + 1) {
      this.runEnd[i] = addr;
    } else {
      this.runEnd[i] = addr;
      this.runStart.splice(i + 1, 0, addr + 1);
      this.runEnd.splice(i + 1, 0, e);
    }
    return a;
  }

  /** Free every address held by `owner`; returns them in address order. */
  freeOwner(owner: string): Allocation[] {
    const set = this.byOwner.get(owner);
    if (!set) return [];
    const addrs = [...set].sort((x, y) => x - y);
    return addrs.map((a) => this.free(a)!);
  }

  /** Allocations of one owner in address order. */
  lookup(owner: string): Allocation[] {
    const set = this.byOwner.get(owner);
    if (!set) return [];
    return [...set].sort((x, y) => x - y).map((a) => ({ ...this.byAddr.get(a)! }));
  }

  /** Who holds addr, if anyone. */
  holder(addr: number): Allocation | undefined {
    const a = this.byAddr.get(addr);
    return a ? { ...a } : undefined;
  }

  /** Every allocation in address order. */
  allocations(): Allocation[] {
    return [...this.byAddr.values()].sort((x, y) => x.addr - y.addr).map((a) => ({ ...a }));
  }

  /** Number of allocated addresses. */
  get count(): number {
    return this.byAddr.size;
  }

  /** Number of allocated addresses inside [lo, hi). */
  allocatedIn(lo: number, hi: number): number {
    let n = 0;
    for (let i = Math.max(0, this.runAtOrBefore(lo)); i < this.runStart.length; i++) {
      const s = this.runStart[i]!;
      if (s >= hi) break;
      const overlap = Math.min(this.runEnd[i]!, hi) - Math.max(s, lo);
      if (overlap > 0) n += overlap;
    }
    return n;
  }

  /** Number of owned, unallocated addresses in [lo, hi). */
  freeCount(lo: number, hi: number): number {
    let n = 0;
    for (const [s, e] of this.owned) {
      const a = Math.max(s, lo);
      const b = Math.min(e, hi);
      if (a < b) n += b - a - this.allocatedIn(a, b);
    }
    return n;
  }

  /** Owned, unallocated intervals inside [lo, hi), in address order. */
  freeIntervals(lo: number, hi: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const [s, e] of this.owned) {
      let a = Math.max(s, lo);
      const b = Math.min(e, hi);
      while (a < b) {
        a = this.firstUnallocated(a);
        if (a >= b) break;
        const i = this.runAtOrBefore(a);
        const nextUsed = i + 1 < this.runStart.length ? this.runStart[i + 1]! : Infinity;
        const stop = Math.min(b, nextUsed);
        out.push([a, stop]);
        a = stop;
      }
    }
    return out;
  }

  /**
   * The largest CIDR-aligned block of owned, unallocated addresses inside [lo, hi) (highest on a tie,
   * so a donor keeps its low, densely used addresses), or undefined when nothing is free.
   */
  largestFreeBlock(lo: number, hi: number): Cidr | undefined {
    let best: Cidr | undefined;
    for (const [a, b] of this.freeIntervals(lo, hi)) {
      for (const blk of alignedBlocks(a, b)) if (!best || blk.size >= best.size) best = blk;
    }
    return best;
  }
}
