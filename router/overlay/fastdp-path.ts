/**
 * Pure decisions of the fast datapath: when a connection's VXLAN path counts as
 * working (heartbeat state machine), and which kernel FDB entries to add or remove
 * (a diff between `bridge -j fdb show` and the wanted set of peers).
 *
 * No sockets, timers or commands: clock values are passed in, command output is
 * passed in as text.
 */

/** Heartbeat timing of one path (ms). */
export interface PathTiming {
  /** A heartbeat goes to the peer every intervalMs while the path is not up (confirming it). */
  intervalMs: number;
  /**
   * A heartbeat goes to the peer every upIntervalMs while the path is up (default:
   * intervalMs). Must be below timeoutMs, which every peer applies whatever its own state.
   */
  upIntervalMs?: number;
  /** The path is down if nothing was heard for longer than this. */
  timeoutMs: number;
  /** Consecutive heartbeats saying "I hear you" needed before the path goes up. */
  upAfter: number;
}

/**
 * 500 ms heartbeats while a path is being confirmed, 4 s once it is up, 13 s timeout
 * (three up-intervals and some slack, so two lost heartbeats in a row never flap a
 * path): a path comes up after 4 confirmed heartbeats (~2 s), which also damps
 * flapping; a blocked path falls back within ~13–14 s (one heartbeat saying "I do not
 * hear you" takes it down at once, so both ends follow the first one to notice).
 * [scale, issue #20] Heartbeats were every 500 ms with a 2 s timeout, then 2 s with
 * 6.5 s: in a 30-peer mesh the datagrams per peer (sent and received, each through the
 * VXLAN device) were ~40 % of an idle router's CPU (bench:scale --real 30: 1.02 % of a
 * core at 2 s, 0.73 % at 6 s). 4 s stays inside the 6.5 s timeout of routers of the
 * previous release, so a mixed mesh does not flap. Weave Net's own paths likewise
 * confirm fast and then slow down, allowing several missed heartbeats.
 */
export const DEFAULT_TIMING: Readonly<PathTiming> = Object.freeze({ intervalMs: 500, upIntervalMs: 4_000, timeoutMs: 13_000, upAfter: 4 });

export type PathKind = 'sleeve' | 'fastdp';

/** Raised for timing parameters that make no sense. */
export class FastdpPathError extends Error {
  override name = 'FastdpPathError';
}

/**
 * The VXLAN path to one peer. It is up when we have heard the peer within the
 * timeout AND the peer's last `upAfter` heartbeats said it hears ours: both
 * directions of UDP to the VXLAN port work. One heartbeat saying "I do not hear you",
 * or silence beyond the timeout, takes it down at once; coming back needs the full
 * streak again. Both ends run the same machine on the same evidence, so they agree
 * within about one heartbeat interval.
 */
export class FastdpPath {
  state: PathKind = 'sleeve';
  /** Why it is (or last went) down; '' while it has never been up. */
  reason = '';
  lastHeard = Number.NEGATIVE_INFINITY;
  lastSent = Number.NEGATIVE_INFINITY;
  /** Consecutive heartbeats received that carried the HEARD flag. */
  streak = 0;
  seq = 0;
  /** Number of state changes (up and down). */
  changes = 0;
  /**
   * Heartbeats still to send on the fast interval after the path came up here: the
   * peer may need a few more to reach its own streak, and at the slow interval the last
   * of them would come up to `upIntervalMs` later (the two ends would disagree that long).
   */
  fastAfterUp = 0;

  constructor(readonly timing: Readonly<PathTiming> = DEFAULT_TIMING) {
    const t = timing;
    const up = t.upIntervalMs ?? t.intervalMs;
    if (!(t.intervalMs > 0) || !(up > 0) || !(t.timeoutMs > Math.max(t.intervalMs, up)) || !Number.isInteger(t.upAfter) || t.upAfter < 1) {
      throw new FastdpPathError(`bad fastdp timing: interval ${t.intervalMs} ms, up interval ${up} ms, timeout ${t.timeoutMs} ms, upAfter ${t.upAfter} (need intervals > 0, timeout > both intervals, upAfter ≥ 1)`);
    }
  }

  /** A heartbeat from the peer arrived at `now`; `heard` is its HEARD flag. */
  onHeartbeat(now: number, heard: boolean): void {
    this.lastHeard = now;
    this.streak = heard ? this.streak + 1 : 0;
  }

  /** Whether we have heard the peer recently (the HEARD flag we send). */
  hearing(now: number): boolean {
    return now - this.lastHeard <= this.timing.timeoutMs;
  }

  /**
   * Whether a heartbeat is due at `now`: every intervalMs while confirming a path we
   * hear (and for upAfter more after it came up here, so the peer can finish its own
   * streak); every upIntervalMs while it is up, and while we hear nothing from the peer
   * (its end has no fast datapath, or UDP to the VXLAN port is blocked: no need to
   * knock fast; the first heartbeat it sends switches us back to intervalMs).
   */
  due(now: number): boolean {
    return now - this.lastSent >= this.currentInterval(now);
  }

  /** The heartbeat interval in force at `now` (see `due`). */
  currentInterval(now: number): number {
    const up = this.timing.upIntervalMs ?? this.timing.intervalMs;
    if (this.state === 'fastdp') return this.fastAfterUp > 0 ? this.timing.intervalMs : up;
    return this.hearing(now) ? this.timing.intervalMs : up;
  }

  /** Whether heartbeats to this peer are on the fast interval (a tick should come often). */
  confirming(now: number): boolean {
    return this.currentInterval(now) < (this.timing.upIntervalMs ?? this.timing.intervalMs);
  }

  /** Record a heartbeat sent at `now`; returns its sequence number. */
  sent(now: number): number {
    this.lastSent = now;
    if (this.state === 'fastdp' && this.fastAfterUp > 0) this.fastAfterUp--;
    const s = this.seq;
    this.seq = (this.seq + 1) >>> 0;
    return s;
  }

  /** Re-evaluate at `now`; returns the new state if it changed, else undefined. */
  evaluate(now: number): PathKind | undefined {
    const hearing = this.hearing(now);
    if (!hearing) this.streak = 0;
    if (this.state === 'fastdp') {
      if (hearing && this.streak > 0) return undefined;
      this.state = 'sleeve';
      this.reason = hearing ? 'peer does not hear our VXLAN heartbeats' : `no VXLAN heartbeat for ${this.timing.timeoutMs / 1000} s`;
      this.changes++;
      return 'sleeve';
    }
    if (hearing && this.streak >= this.timing.upAfter) {
      this.state = 'fastdp';
      this.fastAfterUp = this.timing.upAfter;
      this.reason = '';
      this.changes++;
      return 'fastdp';
    }
    return undefined;
  }

  /** Forget all evidence (the peer's address changed); goes down if up. */
  reset(reason: string): PathKind | undefined {
    this.lastHeard = Number.NEGATIVE_INFINITY;
    this.streak = 0;
    if (this.state === 'sleeve') return undefined;
    this.state = 'sleeve';
    this.reason = reason;
    this.changes++;
    return 'sleeve';
  }
}

// ---- FDB ----

export const ZERO_MAC = '00:00:00:00:00:00';

/** One entry of `bridge -j fdb show dev VXLAN`. */
export interface FdbEntry {
  mac: string;
  /** Remote VTEP (VXLAN entries only). */
  dst?: string;
  /** Remote UDP port, when iproute2 prints one (it differs from the device's). */
  port?: number;
  /** True for the VXLAN device's own table ("self"), false for the bridge's ("master"). */
  self: boolean;
  /** "permanent", "static", or undefined for learned (dynamic) entries. */
  state?: string;
}

export class FdbParseError extends Error {
  override name = 'FdbParseError';
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * Parses the JSON of `bridge -j fdb show dev DEV` (iproute2 ≥ 4.x prints an array of
 * objects with mac, dst, port, flags, master, state). Entries without a valid MAC are
 * skipped. Throws FdbParseError if the text is not a JSON array.
 */
export function parseFdbJson(text: string): FdbEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text.trim() === '' ? '[]' : text);
  } catch (err) {
    throw new FdbParseError(`bridge fdb output is not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(raw)) throw new FdbParseError('bridge fdb output is not a JSON array');
  const out: FdbEntry[] = [];
  for (const r of raw as Array<Record<string, unknown>>) {
    if (r === null || typeof r !== 'object') continue;
    const mac = typeof r.mac === 'string' ? r.mac.toLowerCase() : '';
    if (!MAC_RE.test(mac)) continue;
    const flags = Array.isArray(r.flags) ? r.flags : [];
    const e: FdbEntry = { mac, self: flags.includes('self') || (r.master === undefined && typeof r.dst === 'string'), state: typeof r.state === 'string' && r.state !== '' ? r.state : undefined };
    if (typeof r.dst === 'string') e.dst = r.dst;
    if (typeof r.port === 'number') e.port = r.port;
    out.push(e);
  }
  return out;
}

/** A remote VTEP: underlay address and its VXLAN UDP port. */
export interface Vtep {
  address: string;
  port: number;
}

export interface FdbPlan {
  /** Flooding (all-zeros MAC) entries to append. */
  add: Vtep[];
  /** VXLAN entries to delete: stale flooding entries and learned entries towards VTEPs we no longer want. */
  del: Array<{ mac: string; dst: string; port?: number }>;
  /** Learned unicast entries towards wanted VTEPs (kernel "flows"). */
  flows: number;
}

/**
 * The changes that make the VXLAN device's FDB flood to exactly `wanted` and forget
 * MACs it learned behind any other VTEP (a peer that fell back to the sleeve, or a
 * stranger sending to our VXLAN port). `devicePort` is the device's dstport: an entry
 * printed without a port uses it. Bridge ("master") entries are never touched.
 */
export function planFdb(entries: readonly FdbEntry[], wanted: readonly Vtep[], devicePort: number): FdbPlan {
  const key = (a: string, p: number): string => `${a}:${p}`;
  const want = new Map<string, Vtep>();
  for (const v of wanted) want.set(key(v.address, v.port), v);
  const wantAddr = new Set(wanted.map((v) => v.address));
  const haveFlood = new Set<string>();
  const del: FdbPlan['del'] = [];
  let flows = 0;
  for (const e of entries) {
    if (!e.self || e.dst === undefined) continue;
    const port = e.port ?? devicePort;
    const k = key(e.dst, port);
    if (e.mac === ZERO_MAC) {
      if (want.has(k)) haveFlood.add(k);
      else del.push({ mac: e.mac, dst: e.dst, ...(e.port !== undefined ? { port: e.port } : {}) });
    } else if (!wantAddr.has(e.dst)) {
      del.push({ mac: e.mac, dst: e.dst, ...(e.port !== undefined ? { port: e.port } : {}) });
    } else {
      flows++;
    }
  }
  const add: Vtep[] = [];
  for (const [k, v] of want) if (!haveFlood.has(k)) add.push(v);
  return { add, del, flows };
}
