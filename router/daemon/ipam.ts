/**
 * The IPAM subsystem: wires the allocator (ipam/) to the router — its gossip channel
 * ('ipam') on the mesh, persistence in the state directory, Weave's HTTP routes
 * (/ip/...), prime, rmpeer, the endpoint table's address allocator, and the `IPAM`
 * section of `weave report` / `weave status ipam`.
 */
import path from 'node:path';
import { ApiError } from '../api/server.js';
import type { AddressAllocator } from '../host/endpoints.js';
import type { ReportIpam } from '../api/report.js';
import type { Subsystem, SubsystemContext } from './subsystem.js';
import type { Log } from './log.js';
import { Allocator, IpamError, type IpamInit } from '../../ipam/allocator.js';
import { FilePersistence } from '../../ipam/persist.js';
import { parseCidr, overlaps, formatCidr } from '../../ipam/cidr.js';
import { ip } from '../host/netdev.js';
import { netlink } from '../host/netlink.js';

/** The IPAM subsystem; `allocator` is set once started. */
export interface IpamSubsystem extends Subsystem {
  readonly name: 'ipam';
  allocator: AddressAllocator | undefined;
  report(): ReportIpam | undefined;
}

/** How long an HTTP allocation waits (for consensus, a donation) before saying why it failed. */
const ALLOCATE_TIMEOUT_MS = 60_000;

/** Parse --ipalloc-init: consensus[=N] | seed=NAME,... | observer. */
export function parseInit(s: string | undefined, namedPeers: number): IpamInit {
  if (!s || s === 'consensus') return { mode: 'consensus', quorum: namedPeers + 1 };
  let m = /^consensus=(\d+)$/.exec(s);
  if (m && Number(m[1]) >= 1) return { mode: 'consensus', quorum: Number(m[1]) };
  if (s === 'observer') return { mode: 'observer' };
  m = /^seed=(.+)$/.exec(s);
  if (m) return { mode: 'seed', peers: m[1].split(',').map((x) => x.trim()).filter(Boolean) };
  throw new Error(`invalid --ipalloc-init "${s}": want consensus[=N], seed=NAME,... or observer`);
}

/**
 * The host's main-table IPv4 routes through a device, [CIDR, device]: over rtnetlink when
 * the addon is there (no fork at launch: issue #20), else from `ip -4 route show`
 * ("default" is left out there, as before: it overlaps everything and says nothing).
 * [] when neither works.
 */
async function hostRoutes4(): Promise<Array<[string, string]>> {
  const nl = netlink();
  if (nl) {
    const routes = await nl.routeList4().catch(() => undefined);
    if (routes) return routes.filter((x) => x.dst !== '0.0.0.0/0').map((x) => [x.dst, x.dev]);
  }
  const out = await ip('-4', 'route', 'show').catch(() => '');
  const routes: Array<[string, string]> = [];
  for (const line of out.split('\n')) {
    const m = /^(\d+\.\d+\.\d+\.\d+(?:\/\d+)?)\s.*\bdev (\S+)/.exec(line);
    if (m) routes.push([m[1].includes('/') ? m[1] : `${m[1]}/32`, m[2]]);
  }
  return routes;
}

/**
 * Refuse the default range if it overlaps a route this host already has (Weave's
 * check); a range the user chose only warns.
 */
async function checkRangeAgainstRoutes(range: string, userGiven: boolean, log: Log): Promise<void> {
  const r = parseCidr(range);
  for (const [dst, dev] of await hostRoutes4()) {
    if (dev === 'weave') continue;
    let c;
    try {
      c = parseCidr(dst);
    } catch {
      continue;
    }
    if (overlaps(r, c)) {
      const msg = `IPAM range ${range} overlaps the route ${formatCidr(c)} on ${dev}`;
      if (!userGiven) throw new Error(`${msg}: choose another range with --ipalloc-range`);
      log(`warning: ${msg}`, 'warn');
    }
  }
}

/**
 * The IPAM subsystem, or, when launched with `--ipalloc-range ""`, one that only
 * answers /ip/* with 404 "IPAM is disabled".
 */
export function ipamSubsystem(): IpamSubsystem {
  let started: Started | undefined;
  return {
    name: 'ipam',
    reportKey: 'IPAM',
    allocator: undefined,
    async start(ctx) {
      if (!ctx.cfg.ipallocRange) {
        ctx.api.on('GET', '/ip/*', async () => { throw new ApiError(404, 'IPAM is disabled (launched with --ipalloc-range "")'); });
        return;
      }
      started = await startIpam(ctx);
      this.allocator = started.allocator;
      ctx.endpoints.allocator = started.allocator;
    },
    report: () => started?.report(),
    reset: async (o) => started?.handOver(o?.force ?? false),
    close: async () => started?.close(),
  };
}

interface Started {
  allocator: AddressAllocator;
  report(): ReportIpam;
  handOver(force: boolean): Promise<void>;
  close(): Promise<void>;
}

async function startIpam(ctx: SubsystemContext): Promise<Started> {
  const { cfg, router, log, api } = ctx;
  await checkRangeAgainstRoutes(cfg.ipallocRange, cfg.ipallocRange !== '10.32.0.0/12', log);
  const persistence = new FilePersistence(path.join(cfg.stateDir, 'ipam.json'));
  // The channel exists before the allocator it feeds (the allocator needs the channel).
  const holder: { allocator?: Allocator } = {};
  const channel = ctx.registerChannel('ipam', {
    onGossip: (src, payload, kind) => {
      const err = holder.allocator?.onGossip(src, payload, kind);
      if (err) log(err, 'warn');
    },
    fullState: () => holder.allocator?.fullState(),
  });
  const allocator = new Allocator({
    range: cfg.ipallocRange,
    defaultSubnet: cfg.ipallocDefaultSubnet,
    init: parseInit(cfg.ipallocInit, cfg.initialPeerCount),
    channel,
    persistence,
    nicknameOf: (n) => router.topology.get(n)?.nickname ?? '',
    now: () => performance.now(),
    setTimer: (ms, fn) => {
      const t = setTimeout(fn, ms);
      t.unref();
      return { cancel: () => clearTimeout(t) };
    },
    log: (m) => log(m),
  });
  holder.allocator = allocator;
  await allocator.start();
  const a = allocator;
  router.on('peer-gone', (name: string) => a.onPeerGone(name));
  // No IPAM timer of its own: the ring goes to every neighbour with the router's periodic
  // exchange (channel `fullState`, every 30 s) and to everyone at once on each change;
  // [scale, issue #20] a second 30 s broadcast of the whole ring cost every router N-1
  // ring decodes and merges per period for nothing.

  const adapter: AddressAllocator = {
    allocate: (owner, subnet, opts) => a.allocate(owner, subnet, { timeoutMs: ALLOCATE_TIMEOUT_MS, another: opts?.another }),
    claim: (owner, cidr) => a.claim(owner, cidr, { timeoutMs: ALLOCATE_TIMEOUT_MS }),
    free: (owner, addr) => a.free(owner, addr),
    lookup: (owner) => a.lookup(owner),
    inRange: (cidr) => a.covers(cidr.split('/')[0]),
  };

  const report = (): ReportIpam => {
    const s = a.status();
    return {
      Range: s.range,
      DefaultSubnet: s.defaultSubnet,
      Status: s.status === 'ready' ? 'ready' : s.message,
      Entries: s.entries.map((e) => ({ Token: e.token, Size: e.size, Peer: e.peer, Nickname: e.nickname, IsKnownPeer: e.isKnownPeer, Version: e.version })),
      PendingAllocates: s.pendingAllocates,
      Owned: s.owned.map((o) => ({ Peer: o.peer, NickName: o.nickname, Addresses: o.addresses, Percent: o.percent, Reachable: o.reachable })),
    };
  };

  const toApi = (err: unknown): never => {
    const e = err as Error;
    if (e instanceof IpamError && /timed out|awaiting|waiting/.test(e.message)) throw new ApiError(503, e.message);
    if (e instanceof IpamError && /in use|held by|already/.test(e.message)) throw new ApiError(409, e.message);
    throw new ApiError(400, e.message);
  };

  // Weave's IPAM HTTP API: the answer is "ADDR/LEN" as text.
  api.on('POST', '/ip/:id', async ({ path: [id] }) => a.allocate(id, undefined, { timeoutMs: ALLOCATE_TIMEOUT_MS }).catch(toApi));
  api.on('POST', '/ip/:id/:net/:len', async ({ path: [id, net, len] }) => a.allocate(id, `${net}/${len}`, { timeoutMs: ALLOCATE_TIMEOUT_MS }).catch(toApi));
  api.on('PUT', '/ip/:id/:ip/:len', async ({ path: [id, addr, len] }) => {
    if (!a.covers(addr)) throw new ApiError(400, `${addr} is outside the IPAM range ${cfg.ipallocRange}`);
    await a.claim(id, `${addr}/${len}`, { timeoutMs: ALLOCATE_TIMEOUT_MS }).catch(toApi);
    return `${addr}/${len}`;
  });
  api.on('GET', '/ip/:id', async ({ path: [id] }) => {
    const l = a.lookup(id);
    if (!l.length) throw new ApiError(404, `no addresses allocated to ${id}`);
    return l.join('\n');
  });
  api.on('DELETE', '/ip/:id', async ({ path: [id] }) => ({ freed: await a.free(id) }));
  api.on('DELETE', '/ip/:id/:ip', async ({ path: [id, addr] }) => ({ freed: await a.free(id, addr) }));
  api.on('POST', '/ipam/prime', async () => {
    await a.prime();
    return {};
  });
  api.on('DELETE', '/peer/:name', async ({ path: [name] }) => {
    const n = await a.rmpeer(name).catch(toApi);
    return { message: `${n} IPs taken over from ${name}` };
  });

  return {
    allocator: adapter,
    report,
    handOver: async (force) => {
      // A heir that does not answer refuses the reset (409) before anything changes.
      const heir = await a.shutdownHandOver({ force }).catch((err: Error) => {
        throw err instanceof IpamError ? new ApiError(409, err.message) : err;
      });
      if (heir) log(a.unconfirmed ? `handed IPAM space over to ${heir} (not confirmed)` : `handed IPAM space over to ${heir}`);
      await persistence.remove().catch(() => undefined);
    },
    close: async () => {
      a.close();
    },
  };
}
