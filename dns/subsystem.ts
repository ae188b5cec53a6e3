/**
 * The weaveDNS subsystem: wires the registry (registry.ts) and the server (server.ts)
 * to the router.
 *
 *  - gossip channel 'dns': every change is broadcast at once as an update; the
 *    router's periodic full exchange with neighbours (fullState) repairs losses. The
 *    payload is a msgpack list of entries (registry.ts entriesToWire), decoded
 *    with a bounded pre-scan and checked entries (registry.ts decodeGossip).
 *  - endpoints: a named endpoint's addresses are registered at attach (and re-registered
 *    from the endpoint table at start, so a restarted router brings its names back);
 *    tombstoned at detach / when the container dies.
 *  - the server on --dns-listen-address (default 169.254.53.53:53 on the bridge, routed
 *    from each container: dns/config.ts, dns/reach.ts), on its own worker thread
 *    (dns/threaded.ts). Answers only names of peers currently reachable in the topology,
 *    and (unless --dns-isolation=off) only addresses in a subnet the asking container
 *    shares: the registry stays here, and every change (registry, reachable peers,
 *    endpoints' subnets) pushes a snapshot of what may be answered (dns/view.ts) to the
 *    server, coalesced to one per event-loop turn; reachability is re-checked when the
 *    router's routes change ('routes', at most once per ROUTES_SETTLE_MS), subnets on every
 *    endpoint attach/detach, and both every VIEW_AUDIT_MS in case a change came by another
 *    way.
 *  - API: POST /dns/add, POST /dns/remove {target, ips?, hostname?}, GET /dns/lookup/:name,
 *    GET /dns (the report section); report section `DNS`; metrics weave_dns_*.
 */
import { pack } from 'msgpackr';
import { Counter, Gauge } from '../router/api/prom.js';
import { ApiError, stringField, stringList, optionalString } from '../router/api/server.js';
import type { Endpoint } from '../router/host/endpoints.js';
import type { Subsystem, SubsystemContext, EndpointChange } from '../router/daemon/subsystem.js';
import { DnsRegistry, decodeGossip, entriesToWire, normaliseName, isIpv4, type DnsEntry } from './registry.js';
import { ThreadedDnsServer } from './threaded.js';
import type { RealtimeState } from './server-worker.js';
import { snapshotOf, type ViewSnapshot } from './view.js';
import { dnsSettings, type DnsSettings } from './config.js';
import { setupHost, removeHost, setupContainer } from './reach.js';
import { derive6, parseRange6 } from '../ipam/ipv6.js';
import { sharedBeat } from '../router/mesh/beat.js';

/** Largest dns gossip payload we decode. */
export const MAX_GOSSIP_BYTES = 16 << 20;
const GC_INTERVAL_MS = 60_000;
/**
 * How often reachable peers and endpoint subnets are re-checked for the server's view
 * besides the events that change them (routes recomputed, endpoint attached/detached), ms.
 * Was a 500 ms poll: two wake-ups a second on every idle router (issue #20).
 */
const VIEW_AUDIT_MS = 10_000;
/** After the routes change, how long weaveDNS waits for them to settle before re-checking reachability, ms. */
const ROUTES_SETTLE_MS = 100;

/** `weave report`'s DNS section. */
export interface ReportDns {
  Domain: string;
  Address: string;
  TTL: number;
  Isolation: boolean;
  Upstream: string[];
  /** Where UDP queries are answered now: 'worker' (its own thread) or 'main' (dns/threaded.ts). */
  Thread: 'worker' | 'main';
  /**
   * The server thread's scheduling while Thread is 'worker': SCHED_FIFO priority asked,
   * whether it holds it now (false: demoted by its CPU budget, or Error says why it never
   * could), demotions so far (dns/rt-budget.ts). Absent on the main thread.
   */
  Realtime?: RealtimeState;
  Entries: Array<{ Hostname: string; Address: string; Address6?: string; ContainerID: string; Origin: string; Version: number; Tombstone: number }>;
}

export interface DnsSubsystem extends Subsystem {
  readonly name: 'dns';
  report(): ReportDns | undefined;
}

/** The start-up log's words for where UDP is answered. */
function placement(server: ThreadedDnsServer): string {
  if (server.inThread) return 'on a worker thread';
  return server.mode === 'auto' ? 'on the main thread until queries come, then on a worker thread' : 'on the main thread';
}

/** The DNS subsystem; with --no-dns only its API routes answer 404 "DNS is disabled". */
export function dnsSubsystem(): DnsSubsystem {
  let started: Started | undefined;
  return {
    name: 'dns',
    reportKey: 'DNS',
    async start(ctx) {
      const s = dnsSettings(ctx.cfg);
      if (!s.enabled) {
        const off = async (): Promise<never> => {
          throw new ApiError(404, 'DNS is disabled (launched with --no-dns)');
        };
        for (const [m, p] of [['POST', '/dns/add'], ['POST', '/dns/remove'], ['GET', '/dns/lookup/:name'], ['GET', '/dns']] as const) ctx.api.on(m, p, off);
        return;
      }
      started = await startDns(ctx, s);
    },
    report: () => started?.report(),
    endpointAttached: (c) => started?.attached(c),
    endpointDetached: (c) => started?.detached(c),
    reset: async () => started?.reset(),
    close: async () => started?.close(),
  };
}

interface Started {
  report(): ReportDns;
  attached(c: EndpointChange): Promise<void>;
  detached(c: EndpointChange): void;
  reset(): Promise<void>;
  close(): Promise<void>;
}

const addrOf = (cidr: string): string => cidr.split('/')[0];

/** True if `addr` lies in the subnet of `cidr` ("10.32.2.5/24") (dns/view.ts). */
export { inSubnetOf } from './view.js';

async function startDns(ctx: SubsystemContext, s: DnsSettings): Promise<Started> {
  const { log, api, endpoints } = ctx;
  // The server counts in shared memory (dns/counters.ts, 256-label cap for query types);
  // the counters catch up when /metrics is read.
  // Assigned once below; closures above it (metrics, view pushes) may run before then.
  // eslint-disable-next-line prefer-const
  let server: ThreadedDnsServer | undefined;
  const sync = (c: Counter<string>, kind: 'query' | 'dropped' | 'upstream', names: string[]): void => {
    for (const v of server?.counters() ?? []) {
      if (v.kind !== kind) continue;
      const labels = Object.fromEntries(names.map((n, i) => [n, v.labels[i] ?? '']));
      const key = v.labels.join('\0');
      const prev = reported.get(`${kind}\0${key}`) ?? 0;
      if (v.n > prev) c.inc(labels, v.n - prev);
      reported.set(`${kind}\0${key}`, v.n);
    }
  };
  const reported = new Map<string, number>();
  new Counter({
    name: 'weave_dns_queries_total', help: 'DNS queries answered, by query type and result (NOERROR, NXDOMAIN, forwarded, SERVFAIL, …)', labelNames: ['type', 'result'], registers: [ctx.metrics],
    collect() {
      sync(this, 'query', ['type', 'result']);
    },
  });
  new Counter({
    name: 'weave_dns_dropped_total', help: 'DNS queries dropped unanswered, by reason (malformed, short, too-big, …)', labelNames: ['reason'], registers: [ctx.metrics],
    collect() {
      sync(this, 'dropped', ['reason']);
    },
  });
  new Counter({
    name: 'weave_dns_upstream_failures_total', help: 'Forwarded queries an upstream resolver failed to answer, by reason (timeout, error, overload)', labelNames: ['reason'], registers: [ctx.metrics],
    collect() {
      sync(this, 'upstream', ['reason']);
    },
  });

  const reg = new DnsRegistry(ctx.router.selfName, Date.now);
  // [IPv6] With --ipalloc-range6 our containers' entries carry their derived IPv6 address.
  const range6 = ctx.cfg.ipallocRange6 ? parseRange6(ctx.cfg.ipallocRange6) : undefined;
  const v6of = (a: string): string | undefined => (range6 ? derive6(range6, a) : undefined);
  const channel = ctx.registerChannel('dns', {
    onGossip: (_src, payload) => {
      if (payload.length > MAX_GOSSIP_BYTES) throw new Error(`dns gossip of ${payload.length} bytes is over the ${MAX_GOSSIP_BYTES} limit`);
      let entries: DnsEntry[];
      try {
        entries = decodeGossip(payload);
      } catch (err) {
        throw new Error(`bad dns gossip: ${(err as Error).message}`);
      }
      const { changed, reissued } = reg.merge(entries);
      if (reissued.length) broadcast(reissued);
      if (changed.length || reissued.length) viewChanged();
    },
    fullState: () => pack(entriesToWire(reg.all())),
  });
  const broadcast = (es: DnsEntry[]): void => {
    if (es.length) {
      channel.broadcast(pack(entriesToWire(es)));
      viewChanged();
    }
  };
  new Gauge({
    name: 'weave_dns_entries', help: 'DNS entries held, by state (live, tombstone)', labelNames: ['state'], registers: [ctx.metrics],
    collect() {
      const all = reg.all();
      const live = all.filter((e) => e.tombstone === 0).length;
      this.set({ state: 'live' }, live);
      this.set({ state: 'tombstone' }, all.length - live);
    },
  });

  // Origins reachable in the topology now (we are always).
  const aliveNow = (): Set<string> => {
    const alive = new Set(channel.knownPeers().filter((p) => p.reachable).map((p) => p.name));
    alive.add(channel.selfName);
    return alive;
  };
  const originAlive = (origin: string): boolean => aliveNow().has(origin);
  // What the server may answer: pushed on every change, coalesced to one per turn.
  const snapshot = (): ViewSnapshot => {
    const alive = aliveNow();
    return snapshotOf(reg.live(), (o) => alive.has(o), endpoints.list(), s.isolation);
  };
  let viewPending = false;
  // What besides the registry decides the snapshot: reachable origins and endpoint subnets.
  const shape = (): string => `${[...aliveNow()].sort().join(' ')}|${s.isolation ? endpoints.list().map((e) => e.cidrs.join(',')).join(' ') : ''}`;
  let lastShape = '';
  const pushView = (): void => {
    viewPending = false;
    if (!server) return;
    lastShape = shape();
    server.setView(snapshot());
  };
  const viewChanged = (): void => {
    if (viewPending) return;
    viewPending = true;
    setImmediate(pushView);
  };
  // Reachability and endpoint subnets change without a registry change: re-check them when
  // the routes or the endpoints change, and on a slow audit.
  const checkShape = (): void => {
    if (server && !viewPending && shape() !== lastShape) viewChanged();
  };
  // A join or a departure recomputes routes many times in a row (one per gossip batch):
  // one look once they settle, not one per recomputation (issue #20).
  let routesTimer: NodeJS.Timeout | undefined;
  const onRoutes = (): void => {
    if (routesTimer !== undefined) return;
    routesTimer = setTimeout(() => {
      routesTimer = undefined;
      checkShape();
    }, ROUTES_SETTLE_MS);
    routesTimer.unref();
  };
  ctx.router.on('routes', onRoutes);
  // Periodic jobs ride the router's shared beat (router/mesh/beat.ts): no wake-ups of their own.
  const stopViewAudit = sharedBeat.every(VIEW_AUDIT_MS, checkShape);

  if (s.onBridge) {
    await setupHost(s.address);
    // New attachments get the route before their ethwe carries traffic (netdev.attachVeth).
    endpoints.containerRoutes = [...endpoints.containerRoutes.filter((r) => r !== `${s.address}/32`), `${s.address}/32`];
  }
  const first = snapshot();
  lastShape = shape();
  server = new ThreadedDnsServer({
    host: s.address, port: s.port, log,
    settings: { domain: s.domain, ttl: s.ttl, isolation: s.isolation },
    snapshot: first,
  });
  await server.start();
  log(`DNS: serving ${s.domain} on ${s.address}:${s.port} (ttl ${s.ttl} s, isolation ${s.isolation ? 'on' : 'off'}, UDP ${placement(server)})`);

  const register = async (e: Endpoint, name: string | undefined, cidrs: string[], routed = false): Promise<void> => {
    // Endpoints attached before this router ran (restart) get the route here; it is idempotent.
    if (s.onBridge && e.netns && !routed) await setupContainer(e.netns, s.address, e.ifname).catch((err: Error) => log(`DNS: no route to ${s.address} in ${e.id}: ${err.message}`, 'warn'));
    if (!name) return;
    const host = normaliseName(name, s.domain);
    if (!host) {
      log(`DNS: endpoint ${e.id}: name "${name.slice(0, 80)}" is not a valid DNS name; not registered`, 'warn');
      return;
    }
    broadcast(cidrs.flatMap((c) => reg.add(e.id, addrOf(c), host, v6of(addrOf(c)))));
  };
  // Re-register the containers still attached (router restart).
  for (const e of endpoints.list()) await register(e, e.name, e.cidrs);
  // Our entries for endpoints that are gone (a stale copy came back) are tombstoned by merge().
  const stopGc = sharedBeat.every(GC_INTERVAL_MS, () => {
    if (reg.gc() > 0) viewChanged();
  });

  /** An endpoint id from an API target: an endpoint id or its prefix, or a container name Docker knows. */
  const endpointFor = async (target: string): Promise<Endpoint> => {
    const list = endpoints.list();
    const exact = list.find((e) => e.id === target);
    if (exact) return exact;
    const prefixed = list.filter((e) => target.length >= 3 && e.id.startsWith(target));
    if (prefixed.length === 1) return prefixed[0];
    let id: string;
    try {
      id = (await endpoints.resolve(target)).id;
    } catch (err) {
      throw new ApiError(404, `${(err as Error).message.split('\n')[0]}`);
    }
    const e = list.find((x) => x.id === id);
    if (!e) throw new ApiError(404, `${target} is not attached to weave: weave attach it first`);
    return e;
  };
  const hostnameFrom = (body: unknown, e: Endpoint): string => {
    const given = optionalString(body, 'hostname') ?? e.name;
    if (!given) throw new ApiError(400, `no hostname: give one with -h FQDN (${e.id} has no name)`);
    const h = normaliseName(given, s.domain);
    if (!h) throw new ApiError(400, `invalid hostname "${given.slice(0, 80)}": want a DNS name like db or db.weave.local`);
    return h;
  };
  const ipsFrom = (body: unknown, e: Endpoint): string[] => {
    const ips = stringList(body, 'ips');
    for (const a of ips) if (!isIpv4(a)) throw new ApiError(400, `invalid address "${a.slice(0, 40)}": want an IPv4 address like 10.32.0.5`);
    return ips.length ? ips : e.cidrs.map(addrOf);
  };
  api.on('POST', '/dns/add', async ({ body }) => {
    const e = await endpointFor(stringField(body, 'target'));
    const host = hostnameFrom(body, e);
    const ips = ipsFrom(body, e);
    broadcast(ips.flatMap((a) => reg.add(e.id, a, host, e.cidrs.some((c) => addrOf(c) === a) ? v6of(a) : undefined)));
    return { hostname: host, ips };
  });
  api.on('POST', '/dns/remove', async ({ body }) => {
    const e = await endpointFor(stringField(body, 'target'));
    const given = optionalString(body, 'hostname');
    const host = given === undefined ? undefined : normaliseName(given, s.domain);
    if (given !== undefined && !host) throw new ApiError(400, `invalid hostname "${given.slice(0, 80)}"`);
    const ips = stringList(body, 'ips');
    const removed = ips.length ? ips.flatMap((a) => reg.remove(e.id, a, host)) : reg.remove(e.id, undefined, host);
    broadcast(removed);
    return { removed: removed.length };
  });
  api.on('GET', '/dns/lookup/:name', async ({ path: [name] }) => {
    const n = normaliseName(name, s.domain);
    if (!n) throw new ApiError(400, `invalid name "${name.slice(0, 80)}"`);
    // IPv4 addresses first, then IPv6 (AAAA) ones.
    const addrs = [...reg.lookup(n, { originAlive }), ...reg.lookup6(n, { originAlive })];
    if (!addrs.length) throw new ApiError(404, `${n} is not known to weaveDNS`);
    return { name: n, addresses: addrs };
  });

  const report = (): ReportDns => ({
    Domain: s.domain, Address: `${s.address}:${s.port}`, TTL: s.ttl, Isolation: s.isolation, Upstream: server!.currentUpstreams(), Thread: server!.inThread ? 'worker' : 'main', ...(server!.realtime ? { Realtime: { ...server!.realtime } } : {}),
    Entries: reg.all().map((e) => ({ Hostname: e.hostname, Address: e.addr, ...(e.addr6 ? { Address6: e.addr6 } : {}), ContainerID: e.containerId, Origin: e.origin, Version: e.version, Tombstone: e.tombstone })),
  });
  api.on('GET', '/dns', async () => report());

  return {
    report,
    attached: async ({ endpoint, name, routesInstalled }) => {
      checkShape();
      await register(endpoint, name ?? endpoint.name, endpoint.cidrs, routesInstalled);
    },
    detached: ({ endpoint }) => {
      checkShape();
      const ips = endpoint.cidrs.map(addrOf);
      broadcast(ips.length ? ips.flatMap((a) => reg.remove(endpoint.id, a)) : reg.remove(endpoint.id));
    },
    reset: async () => {
      for (const id of reg.ownContainers()) broadcast(reg.remove(id));
      if (s.onBridge) await removeHost(s.address);
    },
    close: async () => {
      stopGc();
      stopViewAudit();
      if (routesTimer !== undefined) clearTimeout(routesTimer);
      ctx.router.off('routes', onRoutes);
      await server!.close();
    },
  };
}
