/**
 * Prometheus metrics for one router, computed at scrape time.
 *
 * Names follow Weave Net's `prog/weaver/metrics.go` where Weave had the metric
 * (weave_connections{state,type,encryption}, weave_ips{state}, ...) so existing
 * dashboards keep working; tsweave's own data-path counters use the `tsweave_`
 * prefix. Every value is read from `source.report()` / `source.counters()` in a
 * collect() callback, so the data path only bumps plain numbers and nothing here
 * runs per frame.
 */

import { Counter, Gauge, Registry } from './prom.js';
import type { Report, ReportIpam } from './report.js';

/** Plain counters the data path keeps; all values are totals since start. */
export interface DataPathCounters {
  /** Frames received per path ("sleeve", "fastdp"). */
  framesIn: Record<string, number>;
  framesOut: Record<string, number>;
  /** Bytes of Ethernet frames per path. */
  bytesIn: Record<string, number>;
  bytesOut: Record<string, number>;
  /** Frames dropped per reason ("no-route", "isolation", "replay", "auth", "mtu", ...). */
  drops: Record<string, number>;
  /** Gossip messages and bytes sent+received per channel ("topology", "ipam", ...). */
  gossipMessages: Record<string, number>;
  gossipBytes: Record<string, number>;
  /** Topology deltas sent and applied, and whole entries asked for when a delta's base was not held (gossip.ts). */
  topologyDeltas: { sent: number; applied: number; wanted: number };
  /** Connections torn down since start (Weave's TerminationCount). */
  connectionTerminations: number;
  /** Data-path route rebuilds since start (one per burst of topology changes, issue #20). */
  routeRecomputes: number;
  macCacheSize: number;
  /** Kernel fast-datapath flows; 0 when only the sleeve is in use. */
  flows: number;
  /**
   * TCP segments written to the TAP merged into GSO super-frames, per writer ("router": the
   * router's own TAP writes, "flow-cache": the sleeve's ingress flow cache): segments merged,
   * super-frames written, super-frames the kernel refused (EINVAL fallbacks).
   */
  tapMerge: Record<string, { frames: number; superFrames: number; fallbacks: number }>;
}

export interface MetricsSource {
  report(): Report;
  counters(): DataPathCounters;
}

export interface RouterMetrics {
  registry: Registry;
  /** Value for the Content-Type header of a /metrics response. */
  contentType: string;
  /** The exposition text (Prometheus text format 0.0.4). */
  render(): Promise<string>;
}

/** Weave's connection states, always exported so a state at 0 is a series at 0, not a missing one. */
const CONNECTION_STATES = ['established', 'pending', 'retrying', 'failed', 'connecting'];
/** Connection types (Weave's `Attrs.name`); "unknown" until a connection has chosen its path. */
const CONNECTION_TYPES = ['sleeve', 'fastdp', 'unknown'];
const DATA_PATHS = ['sleeve', 'fastdp'];

/**
 * Number of addresses in an IPv4 range written as "a.b.c.d/len" or Weave's
 * "a.b.c.d-e.f.g.h"; null if it is neither.
 */
export function rangeSize(range: string): number | null {
  const ip = (s: string): number | null => {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
    if (!m) return null;
    const o = m.slice(1).map(Number);
    if (o.some((x) => x > 255)) return null;
    return ((o[0] * 256 + o[1]) * 256 + o[2]) * 256 + o[3];
  };
  const slash = range.indexOf('/');
  if (slash >= 0) {
    const len = /^\d{1,2}$/.test(range.slice(slash + 1)) ? Number(range.slice(slash + 1)) : NaN;
    if (ip(range.slice(0, slash)) === null || !(len >= 0 && len <= 32)) return null;
    return 2 ** (32 - len);
  }
  const dash = range.indexOf('-');
  if (dash >= 0) {
    const a = ip(range.slice(0, dash));
    const b = ip(range.slice(dash + 1));
    if (a === null || b === null || b < a) return null;
    return b - a + 1;
  }
  return null;
}

/**
 * Size of the allocation range: from `Range` when it parses, else the sum of
 * the ring entries (which cover the whole range in Weave's ring).
 */
function maxIps(ipam: ReportIpam): number {
  const fromRange = rangeSize(ipam.Range);
  if (fromRange !== null) return fromRange;
  return ipam.Entries.reduce((n, e) => n + e.Size, 0);
}

/**
 * Addresses in use on this peer. Weave reports the allocator's ActiveIPs; our
 * Report has no such field yet, so fall back to counting the addresses of
 * local endpoints.
 */
function activeIps(r: Report): number {
  const active = (r.IPAM as (ReportIpam & { ActiveIPs?: unknown }) | undefined)?.ActiveIPs;
  if (typeof active === 'number') return active;
  return r.Endpoints.reduce((n, e) => n + e.CIDRs.length, 0);
}

/**
 * Registers every router metric in `registry` (by default a new one; never
 * prom-client's global one, so several routers can live in one process, as in
 * tests). Subsystems add their own metrics to the same registry.
 *
 * `source.report()` and `source.counters()` are called at most once per scrape:
 * all collect() callbacks run in the same synchronous pass of
 * `registry.metrics()`, and the snapshot is dropped at the next microtask.
 * Errors thrown by the source propagate out of `render()` (the HTTP handler
 * should answer 500). Without IPAM, `weave_ips` has no series and the
 * unlabelled IPAM gauges read 0 (prom-client always exports those).
 */
export function createMetrics(source: MetricsSource, registry: Registry = new Registry()): RouterMetrics {
  let snap: { report: Report; counters: DataPathCounters } | null = null;
  const current = (): { report: Report; counters: DataPathCounters } => {
    if (snap === null) {
      snap = { report: source.report(), counters: source.counters() };
      queueMicrotask(() => { snap = null; });
    }
    return snap;
  };

  /** Counters are owned by the data path; re-expose its totals on each scrape. */
  const setCounter = (c: Counter<string>, values: Array<[Record<string, string>, number]>): void => {
    c.reset();
    for (const [labels, v] of values) c.inc(labels, Number.isFinite(v) && v > 0 ? v : 0);
  };
  const perKey = (rec: Record<string, number>, label: string, always: string[], extra: Record<string, string> = {}): Array<[Record<string, string>, number]> => {
    const keys = new Set([...always, ...Object.keys(rec)]);
    return [...keys].sort().map((k) => [{ ...extra, [label]: k }, rec[k] ?? 0]);
  };

  new Gauge({
    name: 'weave_connections',
    help: 'Number of peer-to-peer connections.',
    labelNames: ['state', 'type', 'encryption'],
    registers: [registry],
    collect() {
      this.reset();
      const counts = new Map<string, number>();
      const key = (s: string, t: string, e: string): string => `${s}\u0000${t}\u0000${e}`;
      const states = new Set(CONNECTION_STATES);
      const types = new Set(CONNECTION_TYPES);
      for (const c of current().report.Router.Connections) {
        const t = c.Path ?? 'unknown';
        states.add(c.State);
        types.add(t);
        const k = key(c.State, t, c.Encrypted ? 'yes' : '');
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      for (const s of states) for (const t of types) for (const e of ['yes', '']) {
        this.set({ state: s, type: t, encryption: e }, counts.get(key(s, t, e)) ?? 0);
      }
    },
  });

  new Counter({
    name: 'weave_connection_terminations_total',
    help: 'Number of peer-to-peer connections terminated.',
    registers: [registry],
    collect() { setCounter(this, [[{}, current().counters.connectionTerminations]]); },
  });

  new Gauge({
    name: 'weave_ips',
    help: 'Number of IP addresses.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      const r = current().report;
      if (r.IPAM) this.set({ state: 'local-used' }, activeIps(r));
    },
  });

  new Gauge({
    name: 'weave_max_ips',
    help: 'Size of IP address space used by allocator.',
    registers: [registry],
    collect() {
      this.reset();
      const ipam = current().report.IPAM;
      if (ipam) this.set(maxIps(ipam));
    },
  });

  new Gauge({
    name: 'weave_flows',
    help: 'Number of FastDP flows.',
    registers: [registry],
    collect() { this.set(current().counters.flows); },
  });

  new Gauge({
    name: 'weave_ipam_unreachable_count',
    help: 'Number of unreachable peers owning IP addresses.',
    registers: [registry],
    collect() {
      this.reset();
      const ipam = current().report.IPAM;
      if (ipam) this.set(ipam.Owned.filter((o) => !o.Reachable).length);
    },
  });

  new Gauge({
    name: 'weave_ipam_unreachable_percentage',
    help: 'Percentage of IP addresses owned by unreachable peers.',
    registers: [registry],
    collect() {
      this.reset();
      const ipam = current().report.IPAM;
      if (!ipam) return;
      const total = maxIps(ipam);
      const lost = ipam.Owned.reduce((n, o) => n + (o.Reachable ? 0 : o.Addresses), 0);
      this.set(total > 0 ? (lost * 100) / total : 0);
    },
  });

  new Gauge({
    name: 'weave_ipam_pending_allocates',
    help: 'Number of pending allocates.',
    registers: [registry],
    collect() {
      this.reset();
      const ipam = current().report.IPAM;
      if (ipam) this.set(ipam.PendingAllocates);
    },
  });

  new Counter({
    name: 'tsweave_frames_total',
    help: 'Ethernet frames carried, by direction and path.',
    labelNames: ['direction', 'path'],
    registers: [registry],
    collect() {
      const c = current().counters;
      setCounter(this, [
        ...perKey(c.framesIn, 'path', DATA_PATHS, { direction: 'in' }),
        ...perKey(c.framesOut, 'path', DATA_PATHS, { direction: 'out' }),
      ]);
    },
  });

  new Counter({
    name: 'tsweave_bytes_total',
    help: 'Bytes of Ethernet frames carried, by direction and path.',
    labelNames: ['direction', 'path'],
    registers: [registry],
    collect() {
      const c = current().counters;
      setCounter(this, [
        ...perKey(c.bytesIn, 'path', DATA_PATHS, { direction: 'in' }),
        ...perKey(c.bytesOut, 'path', DATA_PATHS, { direction: 'out' }),
      ]);
    },
  });

  new Counter({
    name: 'tsweave_drops_total',
    help: 'Frames dropped, by reason.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      setCounter(this, perKey(current().counters.drops, 'reason', ['no-route', 'isolation', 'spoof', 'not-local', 'replay', 'auth', 'mtu']));
    },
  });

  new Gauge({
    name: 'tsweave_connection_pmtu_bytes',
    help: 'Overlay MTU discovered on each established connection, in bytes.',
    labelNames: ['peer'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of current().report.Router.Connections) {
        if (c.State === 'established' && c.Name !== undefined && c.MTU !== undefined) this.set({ peer: c.Name }, c.MTU);
      }
    },
  });

  new Counter({
    name: 'tsweave_gossip_messages_total',
    help: 'Gossip messages received from neighbours, by channel.',
    labelNames: ['channel'],
    registers: [registry],
    collect() { setCounter(this, perKey(current().counters.gossipMessages, 'channel', [])); },
  });

  new Counter({
    name: 'tsweave_gossip_bytes_total',
    help: 'Gossip payload bytes received from neighbours, by channel.',
    labelNames: ['channel'],
    registers: [registry],
    collect() { setCounter(this, perKey(current().counters.gossipBytes, 'channel', [])); },
  });

  new Counter({
    name: 'tsweave_topology_deltas_total',
    help: 'Topology entry deltas: sent, applied on receipt, and wanted (a whole entry asked for because the base version was not held).',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      const d = current().counters.topologyDeltas;
      setCounter(this, [[{ event: 'sent' }, d.sent], [{ event: 'applied' }, d.applied], [{ event: 'wanted' }, d.wanted]]);
    },
  });

  const TAP_WRITERS = ['router', 'flow-cache'];
  const perWriter = (pick: (m: { frames: number; superFrames: number; fallbacks: number }) => number): Array<[Record<string, string>, number]> => {
    const tm = current().counters.tapMerge;
    const keys = new Set([...TAP_WRITERS, ...Object.keys(tm)]);
    return [...keys].sort().map((k) => [{ writer: k }, tm[k] ? pick(tm[k]) : 0]);
  };
  new Counter({
    name: 'tsweave_tap_merged_frames_total',
    help: 'TCP segments written to the TAP inside GSO super-frames, by writer (router, flow-cache).',
    labelNames: ['writer'],
    registers: [registry],
    collect() { setCounter(this, perWriter((m) => m.frames)); },
  });
  new Counter({
    name: 'tsweave_tap_super_frames_total',
    help: 'GSO TCP super-frames written to the TAP, by writer (router, flow-cache).',
    labelNames: ['writer'],
    registers: [registry],
    collect() { setCounter(this, perWriter((m) => m.superFrames)); },
  });
  new Counter({
    name: 'tsweave_tap_merge_fallbacks_total',
    help: 'TAP super-frames the kernel refused (EINVAL), written segment by segment instead, by writer.',
    labelNames: ['writer'],
    registers: [registry],
    collect() { setCounter(this, perWriter((m) => m.fallbacks)); },
  });

  new Counter({
    name: 'tsweave_route_recomputes_total',
    help: 'Rebuilds of the unicast and broadcast route tables (one per burst of topology changes).',
    registers: [registry],
    collect() { setCounter(this, [[{}, current().counters.routeRecomputes]]); },
  });

  new Gauge({
    name: 'tsweave_mac_cache_entries',
    help: 'Entries in the MAC cache (local and remote).',
    registers: [registry],
    collect() { this.set(current().counters.macCacheSize); },
  });

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
  };
}
