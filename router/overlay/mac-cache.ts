/**
 * MAC cache: which peer owns each container MAC address, learned from the source
 * MAC of frames as a learning bridge does (IEEE 802.1D; Weave's router keeps the
 * same table to pick a unicast destination peer instead of flooding).
 *
 * MACs and peers are 48-bit numbers (see peer-name.ts) so the per-frame
 * `learn`/`lookup` never build strings; a refresh of a known entry only writes
 * numbers into the existing entry object. The clock is passed in (milliseconds).
 *
 * When full, the entry learned earliest (first inserted and still present) is
 * evicted; refreshing or moving an entry does not change its position, to keep
 * the hot path free of Map re-insertion.
 */

interface Entry {
  peer: number;
  lastSeen: number;
}

export const DEFAULT_MAC_CACHE_ENTRIES = 100_000;

export class MacCache {
  private readonly maxEntries: number;
  private readonly map = new Map<number, Entry>();

  /** @param opts.maxEntries capacity (default 100 000); must be a positive integer. */
  constructor(opts: { maxEntries?: number } = {}) {
    const max = opts.maxEntries ?? DEFAULT_MAC_CACHE_ENTRIES;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`MacCache maxEntries must be a positive integer, got ${max}`);
    this.maxEntries = max;
  }

  /** Number of MACs known. */
  get size(): number {
    return this.map.size;
  }

  /**
   * Records that `mac` was seen as the source of a frame from `peer` at time `now` (ms).
   * @returns 'new' for an unknown MAC, 'moved' if it belonged to another peer,
   *   'same' if only the timestamp was refreshed.
   */
  learn(mac: number, peer: number, now: number): 'new' | 'moved' | 'same' {
    const e = this.map.get(mac);
    if (e !== undefined) {
      e.lastSeen = now;
      if (e.peer === peer) return 'same';
      e.peer = peer;
      return 'moved';
    }
    if (this.map.size >= this.maxEntries) {
      // Map iterates in insertion order, so the first key is the oldest learned.
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
    this.map.set(mac, { peer, lastSeen: now });
    return 'new';
  }

  /** The peer owning `mac`, or undefined if unknown. */
  lookup(mac: number): number | undefined {
    return this.map.get(mac)?.peer;
  }

  /**
   * Drops entries not refreshed within `maxAgeMs` of `now` (now - lastSeen > maxAgeMs).
   * @returns how many were dropped.
   */
  expire(now: number, maxAgeMs: number): number {
    let n = 0;
    for (const [mac, e] of this.map) {
      if (now - e.lastSeen > maxAgeMs) {
        this.map.delete(mac);
        n++;
      }
    }
    return n;
  }

  /** Forgets every MAC owned by `peer` (when it leaves). @returns how many. */
  deletePeer(peer: number): number {
    let n = 0;
    for (const [mac, e] of this.map) {
      if (e.peer === peer) {
        this.map.delete(mac);
        n++;
      }
    }
    return n;
  }

  /** Snapshot for reports, sorted by MAC; MACs formatted "aa:bb:cc:dd:ee:ff". */
  entries(): Array<{ mac: string; peer: number; lastSeen: number }> {
    const macs = [...this.map.keys()].sort((a, b) => a - b);
    return macs.map((mac) => {
      const e = this.map.get(mac)!;
      return { mac: formatMac(mac), peer: e.peer, lastSeen: e.lastSeen };
    });
  }
}

/**
 * Reads the 6-byte big-endian MAC at `offset` as a number in [0, 2^48).
 * The caller guarantees offset + 6 ≤ buf.length (no bounds check on the hot path).
 */
export function readMac(buf: Buffer, offset: number): number {
  return (
    (buf[offset]! * 0x10000 + buf[offset + 1]! * 0x100 + buf[offset + 2]!) * 0x1000000 +
    ((buf[offset + 3]! << 16) | (buf[offset + 4]! << 8) | buf[offset + 5]!)
  );
}

/** Writes a 48-bit number as 6 big-endian bytes at `offset`. */
export function writeMac(buf: Buffer, offset: number, mac: number): void {
  const hi = Math.floor(mac / 0x1000000);
  const lo = mac - hi * 0x1000000;
  buf[offset] = hi >>> 16;
  buf[offset + 1] = (hi >>> 8) & 0xff;
  buf[offset + 2] = hi & 0xff;
  buf[offset + 3] = lo >>> 16;
  buf[offset + 4] = (lo >>> 8) & 0xff;
  buf[offset + 5] = lo & 0xff;
}

/** Formats a 48-bit MAC number as lowercase "aa:bb:cc:dd:ee:ff". */
export function formatMac(mac: number): string {
  const hex = mac.toString(16).padStart(12, '0');
  let s = hex.slice(0, 2);
  for (let i = 2; i < 12; i += 2) s += ':' + hex.slice(i, i + 2);
  return s;
}
