/**
 * The Docker network plugin subsystem: serves PluginCore (protocol.ts) on the plugin
 * socket, wired to the router — addresses from the IPAM subsystem, veths on the
 * `weave` bridge (Weave's naming: host end `vethwepl<hash>`, the end Docker moves
 * `vethwepg<hash>`), the endpoint table (so isolation filters, `weave ps` and DNS
 * cover plugin containers) and `plugin.json` in the state directory. In the
 * background it creates the Docker network `weave` (driver and IPAM driver
 * `weavemesh`) with a bounded retry, so `weave launch` never waits on dockerd.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Subsystem, SubsystemContext } from '../router/daemon/subsystem.js';
import type { IpamSubsystem } from '../router/daemon/ipam.js';
import { BRIDGE, hostVethName, ip, linkExists, settleLinkLocal } from '../router/host/netdev.js';
import type { AddressAllocator } from '../router/host/endpoints.js';
import { writeFileAtomic } from '../router/host/state-file.js';
import { derive6Cidr, linkLocal6Cidr } from '../ipam/ipv6.js';
import { DRIVER_NAME, PluginCore, type PluginBackend, type PluginState } from './protocol.js';
import { listenPlugin, oneLine } from './server.js';
import { containerNameOfEndpoint, containerPidOfEndpoint, dockerJson, dockerMessage } from './docker.js';
import { dnsBridgeAddress } from '../dns/config.js';

/** The network `weave launch` creates (Weave's name). */
export const DEFAULT_NETWORK = 'weave';
const NETWORK_TRIES = 30;
const NETWORK_RETRY_MS = 2000;
const NETWORK_CALL_TIMEOUT_MS = 90_000;
const NAME_TRIES = 20;
const NAME_RETRY_MS = 250;
/** [IPv6] Polls for the moved interface before its link-local is set (linkLocalWhenMoved): 10 s in all. */
const LL_TRIES = 50;
const LL_RETRY_MS = 200;

/** The end of an endpoint's veth pair that Docker moves into the container. */
export function guestVethName(endpointId: string): string {
  return hostVethName(endpointId).replace(/^vethwepl/, 'vethwepg');
}

const StateSchema = z.object({
  networks: z.record(z.string().max(128), z.object({ pools: z.array(z.string().max(64)).max(16) })),
  endpoints: z.record(z.string().max(128), z.object({ networkId: z.string().max(128), cidr: z.string().max(64), mac: z.string().max(32), dnsSandbox: z.string().max(4096).optional() })),
});

/**
 * Decode plugin.json. Bounded (4 MiB); an unreadable file gives an empty state and a
 * warning (Docker re-creates what it needs), never a crash.
 * @returns the state and, if it was unusable, why.
 */
export function parsePluginState(text: string): { state: PluginState; problem?: string } {
  if (text.length > 4 << 20) return { state: { networks: {}, endpoints: {} }, problem: 'larger than 4 MiB' };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { state: { networks: {}, endpoints: {} }, problem: 'not JSON' };
  }
  const r = StateSchema.safeParse(raw);
  if (!r.success) return { state: { networks: {}, endpoints: {} }, problem: `bad shape at ${r.error.issues[0].path.join('.') || 'top'}` };
  return { state: r.data };
}

export interface PluginReport {
  Socket: string;
  Networks: number;
  Endpoints: number;
  /** State of the Docker network `weave`: created, exists, disabled, or the last error. */
  DefaultNetwork: string;
}

/**
 * PluginBackend.allocate on the router's allocator: a new address of `subnet` ("10.32.0.0/12";
 * the default subnet is passed as undefined) on every call. All containers of a pool share
 * one IPAM owner (Docker's RequestAddress names no container), and the allocator hands an
 * owner back the address it already holds in a subnet unless asked for another — without
 * that, every container of a pool on one host got the same address.
 * @throws Error when IPAM is disabled; the allocator's IpamError (full, timeout)
 */
export async function allocateInPool(allocator: AddressAllocator | undefined, owner: string, subnet: string, defaultSubnet: string): Promise<string> {
  if (!allocator) throw new Error('IPAM is disabled on this router');
  return allocator.allocate(owner, subnet === defaultSubnet ? undefined : subnet, { another: true });
}

/** The plugin subsystem; off with --no-plugin. */
export function pluginSubsystem(): Subsystem {
  let close: (() => Promise<void>) | undefined;
  let report: (() => PluginReport) | undefined;
  let stopped = false;
  return {
    name: 'plugin',
    reportKey: 'Plugin',
    async start(ctx) {
      if (ctx.cfg.plugin === false) return;
      const started = await startPlugin(ctx, () => stopped);
      close = started.close;
      report = started.report;
    },
    report: () => report?.(),
    close: async () => {
      stopped = true;
      await close?.();
    },
  };
}

async function startPlugin(ctx: SubsystemContext, isStopped: () => boolean): Promise<{ close(): Promise<void>; report(): PluginReport }> {
  const { cfg, log, endpoints } = ctx;
  const socket = cfg.pluginSocket ?? path.join(cfg.stateDir, 'plugins', `${DRIVER_NAME}.sock`);
  if (!path.isAbsolute(socket) || Buffer.byteLength(socket) > 100) {
    throw new Error(`plugin socket "${oneLine(socket).slice(0, 120)}" must be an absolute path of at most 100 bytes: fix --plugin-socket`);
  }
  const file = path.join(cfg.stateDir, 'plugin.json');
  let initial: PluginState | undefined;
  try {
    const { state, problem } = parsePluginState(await fsp.readFile(file, 'utf8'));
    if (problem) log(`plugin: ${file} is unusable (${problem}): starting with no networks; Docker re-creates endpoints on the next container start`, 'warn');
    initial = state;
  } catch { /* first start */ }

  const ipamSub = ctx.get<IpamSubsystem>('ipam');
  const range = cfg.ipallocRange;
  const defaultSubnet = cfg.ipallocDefaultSubnet ?? range;
  const names = new Map<string, string>();

  const backend: PluginBackend = {
    ipam: () => (ipamSub?.allocator && range ? { range, defaultSubnet } : undefined),
    inRange: (cidr) => ipamSub?.allocator?.inRange(cidr) ?? false,
    allocate: (owner, subnet) => allocateInPool(ipamSub?.allocator, owner, subnet, defaultSubnet),
    claim: async (owner, cidr) => {
      const a = ipamSub?.allocator;
      if (!a) throw new Error('IPAM is disabled on this router');
      await a.claim(owner, cidr);
    },
    free: async (owner, addr) => ipamSub?.allocator?.free(owner, addr) ?? 0,
    newMac: () => {
      const b = randomBytes(6);
      b[0] = (b[0] & 0xfe) | 0x02; // unicast, locally administered
      return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
    },
    createVeth: async (id, mac) => {
      const host = hostVethName(id);
      const guest = guestVethName(id);
      if (await linkExists(host)) {
        if (await linkExists(guest)) return guest; // a repeated Join
        await ip('link', 'del', 'dev', host).catch(() => undefined);
      }
      const mtu = String(cfg.mtu);
      await ip('link', 'add', 'name', host, 'mtu', mtu, 'type', 'veth', 'peer', 'name', guest, 'mtu', mtu, 'address', mac);
      try {
        await ip('link', 'set', 'dev', host, 'master', BRIDGE);
        await ip('link', 'set', 'dev', host, 'up');
      } catch (err) {
        await ip('link', 'del', 'dev', host).catch(() => undefined);
        throw err;
      }
      return guest;
    },
    deleteVeth: async (id) => {
      const host = hostVethName(id);
      if (await linkExists(host)) await ip('link', 'del', 'dev', host).catch(() => undefined);
    },
    recordEndpoint: async (id, cidr, mac) => {
      await endpoints.record({ id, cidrs: [cidr], mac, name: names.get(id) });
      void announceWhenNamed(id, cidr, mac);
    },
    forgetEndpoint: async (id) => {
      const prev = endpoints.list().find((e) => e.id === id);
      if (await endpoints.forget(id)) {
        ctx.endpointChanged('detached', { endpoint: { id, cidrs: prev?.cidrs ?? [], mac: prev?.mac ?? '' }, name: names.get(id) ?? prev?.name });
      }
      names.delete(id);
    },
    save: (state) => writeFileAtomic(file, JSON.stringify(state)),
    dnsRoute: () => {
      const a = dnsBridgeAddress(cfg);
      return a ? `${a}/32` : undefined;
    },
    // [IPv6] --ipalloc-range6: Docker puts the derived address on the container's interface.
    address6: (cidr4) => (endpoints.range6 ? derive6Cidr(endpoints.range6, cidr4) : undefined),
    ...(endpoints.range6 ? { settleLinkLocal: (id: string, sandbox: string, mac: string, cidr4: string) => void linkLocalWhenMoved(id, sandbox, mac, cidr4) } : {}),
  };
  const core = new PluginCore(backend, initial);

  /**
   * [IPv6] Docker moves the endpoint's veth into the sandbox only after Join returns, and
   * the kernel then gives it an EUI-64 link-local address that isolation drops (the
   * bridge accepts only fe80::a.b.c.d for the endpoint). Wait for the interface
   * (bounded: LL_TRIES × LL_RETRY_MS) and replace that address with the overlay's
   * (netdev.settleLinkLocal). The namespace is Join's SandboxKey when this router's
   * mount namespace sees it (a plain absolute path from dockerd, used only as nsenter's
   * argument), else /proc/PID/ns/net of the container's process (asked from Docker).
   */
  async function linkLocalWhenMoved(id: string, sandbox: string, mac: string, cidr4: string): Promise<void> {
    const ll6 = linkLocal6Cidr(cidr4);
    let plain = /^\/[A-Za-z0-9_./-]{1,4095}$/.test(sandbox) && !sandbox.split('/').includes('..');
    let last = 'the interface did not appear';
    for (let i = 0; i < LL_TRIES && !isStopped(); i++) {
      await new Promise((r) => setTimeout(r, LL_RETRY_MS));
      try {
        // A SandboxKey this mount namespace cannot enter fails at once (EINVAL): not tried again.
        if (plain && (await settleLinkLocal(sandbox, mac, ll6).catch(() => (plain = false, undefined)))) return;
        const networkId = core.snapshot().endpoints[id]?.networkId;
        if (!networkId) return; // left already
        const pid = await containerPidOfEndpoint(cfg.dockerHost, networkId, id);
        if (pid !== undefined && (await settleLinkLocal(`/proc/${pid}/ns/net`, mac, ll6))) return;
      } catch (err) {
        last = oneLine((err as Error).message);
      }
    }
    if (!isStopped()) log(`plugin: link-local ${ll6} not set on the container interface ${mac} within ${(LL_TRIES * LL_RETRY_MS) / 1000} s (${last}): IPv6 link-local traffic of that container is dropped`, 'warn');
  }

  /**
   * Docker records which container holds an endpoint only after Join returns; ask it
   * (bounded: NAME_TRIES × NAME_RETRY_MS), then tell the other subsystems (DNS) with
   * the container's name, or without one if Docker never said.
   */
  async function announceWhenNamed(id: string, cidr: string, mac: string): Promise<void> {
    const networkId = core.snapshot().endpoints[id]?.networkId;
    let name: string | undefined;
    for (let i = 0; i < NAME_TRIES && networkId && !isStopped(); i++) {
      await new Promise((r) => setTimeout(r, NAME_RETRY_MS));
      name = await containerNameOfEndpoint(cfg.dockerHost, networkId, id).catch(() => undefined);
      if (name) break;
    }
    if (isStopped() || !endpoints.list().some((e) => e.id === id)) return;
    if (name) {
      names.set(id, name);
      await endpoints.record({ id, cidrs: [cidr], mac, name }).catch(() => undefined);
    } else {
      log(`plugin: Docker did not name the container of endpoint ${id.slice(0, 12)} within ${(NAME_TRIES * NAME_RETRY_MS) / 1000} s: it is attached without a DNS name`, 'warn');
    }
    ctx.endpointChanged('attached', { endpoint: { id, cidrs: [cidr], mac, name }, name });
  }

  const server = await listenPlugin(socket, core, log);
  log(`plugin: Docker network and IPAM driver "${DRIVER_NAME}" on ${socket}`);

  let networkState = cfg.pluginNetwork ? 'pending' : 'not created (socket not in /run/docker/plugins: pass --plugin-socket to have launch create it)';
  if (cfg.pluginNetwork && range) void ensureDefaultNetwork();
  else if (cfg.pluginNetwork) networkState = 'not created: IPAM is disabled';

  /** Create the network `weave` unless it exists; bounded retries while dockerd is unreachable. */
  async function ensureDefaultNetwork(): Promise<void> {
    for (let i = 1; i <= NETWORK_TRIES && !isStopped(); i++) {
      try {
        const got = await dockerJson(cfg.dockerHost, 'GET', `/networks/${DEFAULT_NETWORK}`, undefined, 10_000);
        if (got.status === 200) {
          networkState = 'exists';
          return;
        }
        const r = await dockerJson(cfg.dockerHost, 'POST', '/networks/create', {
          Name: DEFAULT_NETWORK, Driver: DRIVER_NAME, CheckDuplicate: true, IPAM: { Driver: DRIVER_NAME },
        }, NETWORK_CALL_TIMEOUT_MS);
        if (r.status === 201 || r.status === 409) {
          networkState = r.status === 201 ? 'created' : 'exists';
          log(`plugin: Docker network "${DEFAULT_NETWORK}" ${networkState}`);
          return;
        }
        networkState = `docker network create answered ${r.status}: ${dockerMessage(r.json)}`;
      } catch (err) {
        networkState = (err as Error).message;
      }
      if (i === 1 || i === NETWORK_TRIES) log(`plugin: waiting for the Docker daemon at ${cfg.dockerHost} to create network "${DEFAULT_NETWORK}" (try ${i}/${NETWORK_TRIES}): ${networkState}`, 'warn');
      await new Promise((r) => setTimeout(r, NETWORK_RETRY_MS));
    }
    if (!isStopped()) {
      networkState = `gave up: ${networkState}`;
      log(`plugin: network "${DEFAULT_NETWORK}" not created; create it with: docker network create -d ${DRIVER_NAME} --ipam-driver ${DRIVER_NAME} ${DEFAULT_NETWORK}`, 'warn');
    }
  }

  return {
    close: () => server.close(),
    report: () => {
      const s = core.snapshot();
      return { Socket: socket, Networks: Object.keys(s.networks).length, Endpoints: Object.keys(s.endpoints).length, DefaultNetwork: networkState };
    },
  };
}
