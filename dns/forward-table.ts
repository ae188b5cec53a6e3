/**
 * The bookkeeping of forwarded queries, as a pure core (no sockets, no timers: the
 * caller passes the clock and the random source). dns/upstream.ts wires it to a small
 * pool of UDP sockets.
 *
 * Forwarding through a few long-lived sockets instead of one fresh socket per query
 * must keep the protections of RFC 5452 ("Measures for Making DNS More Resilient
 * against Forged Answers"):
 *  - every forwarded query gets a fresh random 16-bit id (§9.2), unique among the
 *    queries outstanding on its socket, so an answer names exactly one of them;
 *  - each socket has its own random source port (§9.2; chosen by the caller) and is
 *    retired after ROTATE_QUERIES queries or ROTATE_MS, so a port is not long exposed;
 *    a query goes out on a randomly chosen socket;
 *  - an answer is accepted only if it arrives on the socket the query left by, from the
 *    address and port it was sent to, with the id sent, the QR bit set, and the same
 *    question section, byte for byte (§9.1; we send the client's question unchanged);
 *  - outstanding queries are bounded per socket (MAX_PER_SOCKET, which also bounds the
 *    odds of a blind guess hitting an id: at most MAX_PER_SOCKET in 65,536) and in all.
 * Anything else arriving on a socket is dropped (counted by the caller).
 */

/** Outstanding queries per socket at most. */
export const MAX_PER_SOCKET = 128;
/** A socket is retired (no new queries) after this many queries… */
export const ROTATE_QUERIES = 2048;
/** …or this long after it was opened, ms. */
export const ROTATE_MS = 60_000;

/** One forwarded query waiting for its answer. */
export interface Pending<T> {
  /** Index of the socket it left by (see ForwardTable.sockets). */
  socket: number;
  /** The id we sent (not the client's). */
  id: number;
  /** Upstream address and port it was sent to. */
  address: string;
  port: number;
  /** The question section we sent (bytes 12 … end of the first question). */
  question: Buffer;
  /** When it expires (the caller's clock, ms). */
  deadline: number;
  /** The caller's data (the client to answer). */
  data: T;
}

/** A socket slot: how many queries it carried, since when, whether it takes new ones. */
export interface SocketSlot {
  opened: number;
  sent: number;
  outstanding: number;
  retired: boolean;
}

/**
 * The end offset of the question section of a DNS message (one question: a name of
 * uncompressed labels, then type and class), or -1 if it is not well formed within
 * `buf`. Bounded: at most 255 bytes of name (RFC 1035 §2.3.4), no compression
 * pointers (a query's first name is never compressed, and a matching answer repeats it
 * as sent).
 */
export function questionEnd(buf: Uint8Array): number {
  if (buf.length < 12) return -1;
  if (((buf[4] << 8) | buf[5]) !== 1) return -1; // QDCOUNT must be 1
  let off = 12;
  for (let n = 0; ; ) {
    if (off >= buf.length) return -1;
    const len = buf[off];
    if (len === 0) {
      off++;
      break;
    }
    if (len > 63) return -1;
    n += len + 1;
    if (n > 255) return -1;
    off += len + 1;
  }
  off += 4;
  return off <= buf.length ? off : -1;
}

/** True if the question sections (as questionEnd delimits them) are the same bytes. */
function sameQuestion(answer: Uint8Array, question: Buffer): boolean {
  if (answer.length < 12 + question.length) return false;
  for (let i = 0; i < question.length; i++) if (answer[12 + i] !== question[i]) return false;
  return true;
}

/**
 * Outstanding forwarded queries, keyed by (socket, id). Sockets are slots the caller
 * opens and closes: `open()` when the pool needs one, `close(i)` once a retired slot
 * has drained.
 */
export class ForwardTable<T> {
  private readonly pending = new Map<number, Pending<T>>();
  readonly sockets: Array<SocketSlot | undefined> = [];
  private total = 0;

  /**
   * @param poolSize sockets in use at a time (retired ones drain beside them)
   * @param maxOutstanding outstanding queries in all (beyond → allocate() says no)
   */
  constructor(readonly poolSize: number, readonly maxOutstanding: number) {}

  /** Outstanding queries now. */
  get size(): number {
    return this.total;
  }

  /** Record a newly opened socket; returns its index. */
  open(now: number): number {
    const slot: SocketSlot = { opened: now, sent: 0, outstanding: 0, retired: false };
    const free = this.sockets.indexOf(undefined);
    if (free >= 0) {
      this.sockets[free] = slot;
      return free;
    }
    this.sockets.push(slot);
    return this.sockets.length - 1;
  }

  /** Forget a socket slot (the caller closed it); its pending queries are dropped and returned. */
  close(i: number): Array<Pending<T>> {
    const out: Array<Pending<T>> = [];
    for (const [k, p] of this.pending) {
      if (p.socket === i) {
        this.pending.delete(k);
        out.push(p);
      }
    }
    this.total -= out.length;
    this.sockets[i] = undefined;
    return out;
  }

  /** Active (not retired) socket slots. */
  active(): number[] {
    const out: number[] = [];
    this.sockets.forEach((s, i) => s && !s.retired && out.push(i));
    return out;
  }

  /** Retire sockets that carried ROTATE_QUERIES queries or are older than ROTATE_MS; returns the newly retired. */
  rotate(now: number): number[] {
    const out: number[] = [];
    this.sockets.forEach((s, i) => {
      if (s && !s.retired && (s.sent >= ROTATE_QUERIES || now - s.opened >= ROTATE_MS)) {
        s.retired = true;
        out.push(i);
      }
    });
    return out;
  }

  /** Retired sockets with nothing outstanding: the caller may close them now. */
  drained(): number[] {
    const out: number[] = [];
    this.sockets.forEach((s, i) => s && s.retired && s.outstanding === 0 && out.push(i));
    return out;
  }

  /**
   * Record a query to send: a random active socket with room and a random id unused on
   * it. Returns the pending record, or undefined when no socket has room (the caller
   * answers SERVFAIL) or `query` has no well-formed question.
   * @param rng uniform [0, 1)
   */
  add(query: Uint8Array, address: string, port: number, deadline: number, data: T, rng: () => number): Pending<T> | undefined {
    if (this.total >= this.maxOutstanding) return undefined;
    const qEnd = questionEnd(query);
    if (qEnd < 0) return undefined;
    const candidates = this.active().filter((i) => this.sockets[i]!.outstanding < MAX_PER_SOCKET);
    if (!candidates.length) return undefined;
    const socket = candidates[Math.floor(rng() * candidates.length) % candidates.length];
    let id = Math.floor(rng() * 65536) & 0xffff;
    // Unused ids are plentiful (≤ MAX_PER_SOCKET of 65,536 in use): a few draws suffice.
    for (let tries = 0; this.pending.has(socket * 65536 + id); tries++) {
      id = tries < 16 ? Math.floor(rng() * 65536) & 0xffff : (id + 1) & 0xffff;
    }
    const p: Pending<T> = { socket, id, address, port, question: Buffer.from(query.subarray(12, qEnd)), deadline, data };
    this.pending.set(socket * 65536 + id, p);
    const slot = this.sockets[socket]!;
    slot.outstanding++;
    slot.sent++;
    this.total++;
    return p;
  }

  /**
   * An answer arrived on `socket` from `address`:`port`: the pending query it answers
   * (removed from the table), or undefined if it answers none (forged, late, stray).
   */
  match(socket: number, address: string, port: number, answer: Uint8Array): Pending<T> | undefined {
    if (answer.length < 12 || !(answer[2] & 0x80)) return undefined;
    const key = socket * 65536 + ((answer[0] << 8) | answer[1]);
    const p = this.pending.get(key);
    if (!p || p.address !== address || p.port !== port || !sameQuestion(answer, p.question)) return undefined;
    this.take(key, p);
    return p;
  }

  /** Remove `p` (it failed to send); false if it was no longer outstanding. */
  cancel(p: Pending<T>): boolean {
    const key = p.socket * 65536 + p.id;
    if (this.pending.get(key) !== p) return false;
    this.take(key, p);
    return true;
  }

  /** Remove and return the queries whose deadline is ≤ now. */
  expire(now: number): Array<Pending<T>> {
    const out: Array<Pending<T>> = [];
    for (const [k, p] of this.pending) {
      if (p.deadline <= now) {
        this.take(k, p);
        out.push(p);
      }
    }
    return out;
  }

  private take(key: number, p: Pending<T>): void {
    this.pending.delete(key);
    this.total--;
    const slot = this.sockets[p.socket];
    if (slot) slot.outstanding--;
  }
}
