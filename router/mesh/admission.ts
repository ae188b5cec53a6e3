/**
 * Pre-authentication admission for inbound control connections (pure: no sockets,
 * no timers; the caller passes the time in ms).
 *
 *  - HalfOpenLimiter: how many not-yet-ready inbound connections one source address
 *    and all sources together may hold. With frames ≤ PRE_AUTH_MAX_FRAME_BYTES and the
 *    10 s handshake timeout this bounds what strangers can make the router buffer:
 *    maxTotal × (4 KiB frame + one 64 KiB socket read) ≈ 17 MiB for maxTotal = 256.
 *  - FailureLog: aggregates log lines about failed unauthenticated connections, so a
 *    stranger cannot fill the disk: the first failure from a source in a window is
 *    logged at once, later ones are counted and reported as
 *    "N failed handshakes from X in the last 60 s" when the window ends.
 */

/** Limits for HalfOpenLimiter. */
export interface HalfOpenLimits {
  /** Most half-open inbound connections from one source address. */
  perSource: number;
  /** Most half-open inbound connections in total. */
  total: number;
}

/** Default limits: 8 per source (a peer reconnecting plus a few retries), 256 in all. */
export const DEFAULT_HALF_OPEN_LIMITS: HalfOpenLimits = { perSource: 8, total: 256 };

/** Counts half-open (accepted, not yet ready or closed) inbound connections per source. */
export class HalfOpenLimiter {
  private readonly bySource = new Map<string, number>();
  private count = 0;

  constructor(readonly limits: HalfOpenLimits = DEFAULT_HALF_OPEN_LIMITS) {
    if (!(limits.perSource >= 1 && limits.total >= 1)) throw new RangeError('half-open limits must be at least 1');
  }

  /** Half-open connections in total. */
  get total(): number {
    return this.count;
  }

  /** Half-open connections from `source`. */
  from(source: string): number {
    return this.bySource.get(source) ?? 0;
  }

  /**
   * Takes a slot for a new connection from `source` (an IP address string).
   * @returns undefined when admitted (the caller must later call release(source) exactly
   *   once), else the reason it was refused.
   */
  tryAcquire(source: string): string | undefined {
    const n = this.from(source);
    if (n >= this.limits.perSource) return `too many half-open connections from ${source} (limit ${this.limits.perSource})`;
    if (this.count >= this.limits.total) return `too many half-open connections in total (limit ${this.limits.total})`;
    this.bySource.set(source, n + 1);
    this.count++;
    return undefined;
  }

  /** Gives back the slot taken by tryAcquire(source). Extra calls are ignored. */
  release(source: string): void {
    const n = this.from(source);
    if (n === 0) return;
    if (n === 1) this.bySource.delete(source);
    else this.bySource.set(source, n - 1);
    this.count--;
  }
}

/** How long FailureLog aggregates, in ms. */
export const FAILURE_LOG_WINDOW_MS = 60_000;
/** Sources tracked at once by FailureLog; failures from further sources go into one "other sources" count. */
export const FAILURE_LOG_MAX_SOURCES = 1024;

interface Window {
  start: number;
  suppressed: number;
  lastReason: string;
}

/**
 * Rate-limits log lines about failed unauthenticated connections, per source address.
 * Memory is bounded by FAILURE_LOG_MAX_SOURCES entries.
 */
export class FailureLog {
  private readonly windows = new Map<string, Window>();
  private overflow = 0;
  private overflowStart = 0;

  /** @param emit receives each line to log (already escaped/aggregated). */
  constructor(private readonly emit: (line: string) => void, private readonly windowMs = FAILURE_LOG_WINDOW_MS) {}

  /**
   * Records a failure of a connection from `source` at time `now` (ms) for `reason`.
   * Logs at once if it is the first from that source in the current window; otherwise counts it.
   */
  failed(source: string, reason: string, now: number): void {
    this.flush(now);
    const w = this.windows.get(source);
    if (w !== undefined) {
      w.suppressed++;
      w.lastReason = reason;
      return;
    }
    if (this.windows.size >= FAILURE_LOG_MAX_SOURCES) {
      if (this.overflow === 0) this.overflowStart = now;
      this.overflow++;
      return;
    }
    this.windows.set(source, { start: now, suppressed: 0, lastReason: reason });
    this.emit(`connection from ${source} failed before authentication: ${reason}`);
  }

  /** Emits the aggregate line of every window that ended by `now` and forgets it. */
  flush(now: number): void {
    for (const [source, w] of this.windows) {
      if (now - w.start < this.windowMs) continue;
      this.windows.delete(source);
      if (w.suppressed > 0) {
        this.emit(`${w.suppressed + 1} failed handshakes from ${source} in the last ${Math.round(this.windowMs / 1000)} s (last: ${w.lastReason})`);
      }
    }
    if (this.overflow > 0 && now - this.overflowStart >= this.windowMs) {
      this.emit(`${this.overflow} failed handshakes from other sources in the last ${Math.round(this.windowMs / 1000)} s (too many sources to list)`);
      this.overflow = 0;
    }
  }
}
