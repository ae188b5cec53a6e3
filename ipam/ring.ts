/**
 * The IPAM ring: a state-based CRDT that partitions an address range among peers (pure).
 *
 * Design after Weave Net's ring (ipam/ring): the range [start, end) is cut by tokens;
 * the entry at token t owns [t, next token) (the last entry owns up to `end`). Unlike
 * Weave we always keep a token at `start`, so the ring never wraps. Each entry carries
 * the owning peer, a version, and the owner's count of free addresses in its span
 * (a hint other peers use to choose whom to ask for space).
 *
 * Rules that make merge a join (commutative, associative, idempotent):
 *  - tokens are never removed;
 *  - only the current owner of a span writes it: it may insert a token inside its span
 *    (new tokens start at version 0) or change an entry it owns (version + 1), e.g. to
 *    give the span to another peer (donation) or to update the free hint;
 *  - merge keeps, per token, the entry with the higher version. Equal versions with
 *    different contents mean two writers raced for one token: a RingConflictError.
 * `rmpeer` is the one exception to single-writer: the taker rewrites a dead peer's
 * entries with a large version jump, which is safe only if the dead peer never returns.
 *
 * The ring also remembers the nickname of each owner (as Weave's allocator keeps its
 * peers' nicknames with its state), so `weave rmpeer NICKNAME` still finds a peer that
 * was killed and has left the topology. Nicknames are a hint, not part of the CRDT's
 * ownership: merge adopts a nickname for a peer that has none here, the allocator sets
 * them from the live topology before every save, and only owners' nicknames are kept.
 */
import { Packr, Unpackr } from 'msgpackr';
import { formatCidr, formatIp, sizePrefix } from './cidr.js';
import { isValidNickname } from '../router/mesh/peer-name.js';

/** Malformed ring data or an operation the ring does not allow (e.g. giving away space we do not own). */
export class RingError extends Error {
  override name = 'RingError';
}

/** Two writers changed the same part of the ring: merging would make two peers own the same addresses. */
export class RingConflictError extends RingError {
  override name = 'RingConflictError';
}

/** One token of the ring. `free` is the owner's count of unallocated addresses in the span (a hint). */
export interface RingEntry {
  token: number;
  peer: string;
  version: number;
  free: number;
}

/** A span as seen by readers: [token, end) owned by `peer`. */
export interface RingSpan extends RingEntry {
  end: number;
}

/**
 * The msgpack-ready form: range start `s`, size `n`, peer table `p`, and `e`, flattened
 * entries [token, peerIndex, version, free, ...]. A peer table keeps 1,000-peer rings small.
 * Optional `k`: the owners' nicknames, parallel to `p` ('' when unknown); absent when no
 * nickname is known. Readers that predate it ignore it (an extra map key).
 */
export interface RingPlain {
  s: number;
  n: number;
  p: string[];
  e: number[];
  k?: string[];
}

/** Version jump used by rmpeer so the takeover wins over updates from the dead peer that we have not seen yet. */
export const RMPEER_VERSION_BUMP = 2 ** 20;

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

export class Ring {
  /** First address of the range. */
  readonly start: number;
  /** One past the last address of the range. */
  readonly end: number;
  /** Entries sorted by token; either empty (no ring yet) or entries[0].token === start. */
  private entries: RingEntry[] = [];
  /** Nicknames of peers (a hint for rmpeer and status; see the module comment). */
  private nicks = new Map<string, string>();

  /** An empty ring (no owner yet) for the range [start, start+size). */
  constructor(start: number, size: number) {
    if (!Number.isInteger(start) || !Number.isInteger(size) || start < 0 || size < 1 || start + size > 2 ** 32) {
      throw new RingError(`invalid ring range start=${start} size=${size}`);
    }
    this.start = start;
    this.end = start + size;
  }

  /** Number of addresses in the range. */
  get size(): number {
    return this.end - this.start;
  }

  /** "10.32.0.0/12" when the range is a CIDR block, else "a.b.c.d-e.f.g.h". */
  rangeString(): string {
    try {
      return formatCidr({ start: this.start, prefix: sizePrefix(this.size) });
    } catch {
      return `${formatIp(this.start)}-${formatIp(this.end - 1)}`;
    }
  }

  /**
   * The initial ring shared by the given peers (from consensus or `seed=`): the range is cut into
   * equal shares in sorted peer-name order, so every peer that computes it from the same set gets
   * an identical ring (all versions 0) and their merges agree.
   */
  static seed(start: number, size: number, peers: readonly string[]): Ring {
    const r = new Ring(start, size);
    const names = [...new Set(peers)].sort();
    if (names.length === 0) throw new RingError('cannot seed a ring with no peers');
    const k = Math.min(names.length, size);
    for (let i = 0; i < k; i++) {
      const token = start + Math.floor((i * size) / k);
      const next = start + Math.floor(((i + 1) * size) / k);
      r.entries.push({ token, peer: names[i]!, version: 0, free: next - token });
    }
    return r;
  }

  isEmpty(): boolean {
    return this.entries.length === 0;
  }

  /** Number of tokens. */
  get length(): number {
    return this.entries.length;
  }

  clone(): Ring {
    const r = new Ring(this.start, this.size);
    r.entries = this.entries.map((e) => ({ ...e }));
    r.nicks = new Map(this.nicks);
    return r;
  }

  /** The remembered nickname of `peer`, or undefined. */
  nickname(peer: string): string | undefined {
    return this.nicks.get(peer);
  }

  /**
   * Remember `nickname` for `peer` (from the live topology). Empty or invalid nicknames
   * (isValidNickname: ≤ 255 characters, no control characters) are ignored.
   * @returns whether the remembered nickname changed
   */
  setNickname(peer: string, nickname: string): boolean {
    if (!nickname || !isValidNickname(nickname) || this.nicks.get(peer) === nickname) return false;
    this.nicks.set(peer, nickname);
    return true;
  }

  /** Peers owning a span whose nickname is `nickname`, sorted. */
  peersNamed(nickname: string): string[] {
    return this.peers().filter((p) => this.nicks.get(p) === nickname);
  }

  /** Every span in token order (a copy). */
  spans(): RingSpan[] {
    return this.entries.map((e, i) => ({ ...e, end: this.spanEnd(i) }));
  }

  private spanEnd(i: number): number {
    return i + 1 < this.entries.length ? this.entries[i + 1]!.token : this.end;
  }

  /** Index of the entry whose span contains addr, or -1 (empty ring or addr outside the range). */
  private indexOf(addr: number): number {
    if (this.entries.length === 0 || addr < this.start || addr >= this.end) return -1;
    let lo = 0;
    let hi = this.entries.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.entries[mid]!.token <= addr) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The peer owning addr, or undefined if the ring is empty or addr is outside the range. */
  owner(addr: number): string | undefined {
    const i = this.indexOf(addr);
    return i < 0 ? undefined : this.entries[i]!.peer;
  }

  /** Ranges [start, end) owned by `peer`, with adjacent spans coalesced, in address order. */
  ownedRanges(peer: string): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let i = 0; i < this.entries.length; i++) {
      if (this.entries[i]!.peer !== peer) continue;
      const s = this.entries[i]!.token;
      const e = this.spanEnd(i);
      const last = out[out.length - 1];
      if (last && last[1] === s) last[1] = e;
      else out.push([s, e]);
    }
    return out;
  }

  /** Distinct peers that own at least one span, sorted. */
  peers(): string[] {
    return [...new Set(this.entries.map((e) => e.peer))].sort();
  }

  /**
   * Check the invariants: tokens strictly increasing, inside the range, the first at `start`,
   * versions and free counts non-negative integers, free <= span, peer names non-empty.
   * @throws RingError naming the first violation.
   */
  checkInvariants(): void {
    const es = this.entries;
    if (es.length === 0) return;
    if (es[0]!.token !== this.start) throw new RingError(`ring does not start at the range start ${formatIp(this.start)}`);
    for (let i = 0; i < es.length; i++) {
      const e = es[i]!;
      if (!Number.isInteger(e.token) || e.token < this.start || e.token >= this.end) throw new RingError(`ring token ${e.token} is outside the range`);
      if (i > 0 && e.token <= es[i - 1]!.token) throw new RingError(`ring tokens are not sorted and unique at ${formatIp(e.token)}`);
      if (typeof e.peer !== 'string' || e.peer.length === 0) throw new RingError(`ring entry ${formatIp(e.token)} has no peer`);
      if (!Number.isInteger(e.version) || e.version < 0) throw new RingError(`ring entry ${formatIp(e.token)} has invalid version ${e.version}`);
      const span = this.spanEnd(i) - e.token;
      if (!Number.isInteger(e.free) || e.free < 0 || e.free > span) throw new RingError(`ring entry ${formatIp(e.token)} has free ${e.free} outside 0..${span}`);
    }
  }

  /**
   * Set the free hint of every span `self` owns from `freeIn(start, end)`, bumping the version of
   * entries that change. Returns whether anything changed.
   */
  updateFree(self: string, freeIn: (start: number, end: number) => number): boolean {
    let changed = false;
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e.peer !== self) continue;
      const f = freeIn(e.token, this.spanEnd(i));
      if (f !== e.free) {
        e.free = f;
        e.version++;
        changed = true;
      }
    }
    return changed;
  }

  /**
   * Donation: `self` gives [start, start+size) to `to`. The block must lie entirely in spans that
   * `self` owns and must be free (the caller checks its allocations). Tokens are inserted at the
   * block's edges when needed; the given entries get version + 1 (or 0 when new) and a full free hint.
   * @throws RingError if the ring is empty, the block is outside the range, or not all ours.
   */
  give(self: string, start: number, size: number, to: string): void {
    const end = start + size;
    if (this.entries.length === 0) throw new RingError('cannot give space: the ring is empty');
    if (size < 1 || start < this.start || end > this.end) throw new RingError(`cannot give ${formatIp(start)}+${size}: outside the range`);
    if (to === self) throw new RingError('cannot give space to ourselves');
    for (let i = this.indexOf(start); i < this.entries.length && this.entries[i]!.token < end; i++) {
      if (this.entries[i]!.peer !== self) {
        throw new RingError(`cannot give ${formatIp(start)}+${size}: ${formatIp(this.entries[i]!.token)} is owned by ${this.entries[i]!.peer}`);
      }
    }
    if (end < this.end) this.split(end);
    this.split(start);
    for (let i = this.indexOf(start); i < this.entries.length && this.entries[i]!.token < end; i++) {
      const e = this.entries[i]!;
      e.peer = to;
      e.version++;
      e.free = this.spanEnd(i) - e.token;
    }
  }

  /** Ensure a token at addr, splitting the owner's span; the new token starts as the owner's with version 0. */
  private split(addr: number): void {
    const i = this.indexOf(addr);
    const e = this.entries[i]!;
    if (e.token === addr) return;
    const rightSpan = this.spanEnd(i) - addr;
    const leftSpan = addr - e.token;
    // The free hint is split conservatively; the owner refreshes it from its space afterwards.
    const rightFree = Math.min(e.free, rightSpan);
    const leftFree = Math.min(e.free - rightFree, leftSpan);
    if (leftFree !== e.free) {
      e.free = leftFree;
      e.version++;
    }
    // A new token starts at version 0, one below the first written version (give() bumps it to 1).
    // Version 0 is unique to this insertion because only the span's owner can insert here.
    this.entries.splice(i + 1, 0, { token: addr, peer: e.peer, version: 0, free: rightFree });
  }

  /**
   * rmpeer: `taker` takes over every span owned by `dead` (version + RMPEER_VERSION_BUMP).
   * Returns the number of addresses taken over. Only safe when `dead` will never run again
   * and the taker has seen the dead peer's last ring (otherwise merges will report conflicts).
   */
  transfer(dead: string, taker: string): number {
    let n = 0;
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e.peer !== dead) continue;
      e.peer = taker;
      e.version += RMPEER_VERSION_BUMP;
      n += this.spanEnd(i) - e.token;
    }
    return n;
  }

  /** Sum of free hints per peer over spans overlapping [lo, hi), each clipped to the overlap. */
  freeHints(lo: number, hi: number): Map<string, number> {
    const m = new Map<string, number>();
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      const s = e.token;
      const t = this.spanEnd(i);
      const overlap = Math.min(t, hi) - Math.max(s, lo);
      if (overlap <= 0) continue;
      m.set(e.peer, (m.get(e.peer) ?? 0) + Math.min(e.free, overlap));
    }
    return m;
  }

  /**
   * Merge another peer's ring into this one (the CRDT join), atomically: on error nothing changes.
   * When `self` is given, also refuse updates that only a faulty or conflicting writer could make:
   * a newer version of a token we own, or a new token inside a span we own.
   * Returns whether this ring changed.
   * @throws RingError if `other` covers a different range or is malformed;
   *   RingConflictError if two writers disagree (equal versions, or our own space changed by another peer).
   */
  merge(other: Ring, self?: string): boolean {
    if (other.start !== this.start || other.end !== this.end) {
      throw new RingError(`ring range ${other.rangeString()} differs from ours ${this.rangeString()}`);
    }
    other.checkInvariants();
    if (other.entries.length === 0) return false;
    const mine = this.entries;
    const theirs = other.entries;
    const out: RingEntry[] = [];
    let changed = false;
    let i = 0;
    let j = 0;
    while (i < mine.length || j < theirs.length) {
      const a = mine[i];
      const b = theirs[j];
      if (b === undefined || (a !== undefined && a.token < b.token)) {
        out.push(a!);
        i++;
      } else if (a === undefined || b.token < a.token) {
        if (self !== undefined && mine.length > 0) {
          const ownerHere = this.owner(b.token);
          if (ownerHere === self) {
            throw new RingConflictError(
              `ring conflict: a peer inserted token ${formatIp(b.token)} (owner ${b.peer}) inside our range: was this peer removed with rmpeer, or did two rings form?`,
            );
          }
        }
        out.push({ ...b });
        changed = true;
        j++;
      } else {
        if (b.version > a.version) {
          if (self !== undefined && a.peer === self) {
            throw new RingConflictError(
              `ring conflict: our token ${formatIp(a.token)} was changed to owner ${b.peer} version ${b.version} by another peer: was this peer removed with rmpeer?`,
            );
          }
          out.push({ ...b });
          changed = true;
        } else {
          if (b.version === a.version && (b.peer !== a.peer || b.free !== a.free)) {
            throw new RingConflictError(
              `ring conflict at token ${formatIp(a.token)} version ${a.version}: owned by ${a.peer} here and by ${b.peer} in the update (two rings formed, or rmpeer ran on two peers)`,
            );
          }
          out.push(a);
        }
        i++;
        j++;
      }
    }
    if (changed) {
      // Each side may be valid alone and the join not (found by fuzzing: their entry's free
      // hint counted for a span that one of our tokens splits): refuse such an update whole,
      // so our ring — saved and gossiped — never breaks its invariants.
      const joined = new Ring(this.start, this.size);
      joined.entries = out;
      try {
        joined.checkInvariants();
      } catch (err) {
        throw new RingError(`ring update refused: the merged ring would be invalid (${(err as Error).message})`);
      }
      this.entries = out;
    }
    // Nicknames: adopt the other ring's for peers we have none for (never overwrite: the
    // allocator refreshes them from the live topology, which knows renames).
    for (const [peer, nick] of other.nicks) {
      if (!this.nicks.has(peer)) {
        this.nicks.set(peer, nick);
        changed = true;
      }
    }
    return changed;
  }

  /** Whether both rings have the same range and identical entries (nicknames are not compared). */
  equals(other: Ring): boolean {
    if (other.start !== this.start || other.end !== this.end || other.entries.length !== this.entries.length) return false;
    return this.entries.every((e, i) => {
      const o = other.entries[i]!;
      return e.token === o.token && e.peer === o.peer && e.version === o.version && e.free === o.free;
    });
  }

  /** The msgpack-ready plain form (see RingPlain). */
  toPlain(): RingPlain {
    const peers = new Map<string, number>();
    const e: number[] = new Array(this.entries.length * 4);
    let k = 0;
    for (const en of this.entries) {
      let idx = peers.get(en.peer);
      if (idx === undefined) {
        idx = peers.size;
        peers.set(en.peer, idx);
      }
      e[k++] = en.token;
      e[k++] = idx;
      e[k++] = en.version;
      e[k++] = en.free;
    }
    const p = [...peers.keys()];
    const plain: RingPlain = { s: this.start, n: this.size, p, e };
    if (p.some((x) => this.nicks.has(x))) plain.k = p.map((x) => this.nicks.get(x) ?? '');
    return plain;
  }

  /**
   * Rebuild a ring from its plain form, validating every field and the invariants.
   * @throws RingError with what is wrong.
   */
  static fromPlain(plain: unknown): Ring {
    if (typeof plain !== 'object' || plain === null) throw new RingError('malformed ring: not an object');
    const o = plain as Record<string, unknown>;
    const { s, n, p, e } = o;
    if (!isUint(s) || !isUint(n) || n < 1 || s + n > 2 ** 32) throw new RingError('malformed ring: bad range');
    if (!Array.isArray(p) || !p.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 255)) {
      throw new RingError('malformed ring: bad peer table');
    }
    if (!Array.isArray(e) || e.length % 4 !== 0 || !e.every(isUint)) throw new RingError('malformed ring: bad entries');
    const { k } = o;
    if (k !== undefined && (!Array.isArray(k) || k.length !== p.length || !k.every(isValidNickname))) {
      throw new RingError('malformed ring: bad nickname table (want one nickname of at most 255 printable characters per peer)');
    }
    const r = new Ring(s, n);
    if (k) for (let i = 0; i < k.length; i++) if (k[i] !== '') r.nicks.set(p[i] as string, k[i] as string);
    for (let k = 0; k < e.length; k += 4) {
      const peer = p[e[k + 1] as number];
      if (peer === undefined) throw new RingError('malformed ring: peer index out of range');
      r.entries.push({ token: e[k] as number, peer, version: e[k + 2] as number, free: e[k + 3] as number });
    }
    r.checkInvariants();
    return r;
  }

  /** msgpack bytes of toPlain() (plain maps, no msgpackr records), for gossip payloads. */
  encode(): Uint8Array {
    return packr.pack(this.toPlain());
  }

  /**
   * Decode bytes produced by encode().
   * @throws RingError on undecodable or invalid data.
   */
  static decode(bytes: Uint8Array): Ring {
    let plain: unknown;
    try {
      plain = unpackr.unpack(bytes);
    } catch (err) {
      throw new RingError(`malformed ring: not msgpack (${(err as Error).message})`);
    }
    return Ring.fromPlain(plain);
  }
}

function isUint(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}
