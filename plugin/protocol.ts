/**
 * The Docker network plugin's request handlers, as a pure core: libnetwork's remote
 * network driver protocol (docs/remote.md in moby/libnetwork) and its remote IPAM
 * driver protocol (docs/ipam.md), as dockerd 20.10 speaks them. Every call is an
 * HTTP POST of a JSON object to `/<Interface>.<Method>`; the answer is a JSON object,
 * or `{"Err": "one line"}` on failure.
 *
 * The design follows Weave Net's plugin (driver name `weavemesh`, one network driver
 * and one IPAM driver in one process): the IPAM driver hands out addresses from the
 * router's IPAM ring (so the proxy, `weave attach` and the plugin never hand out one
 * address twice), and Join gives Docker a veth whose host end is on the `weave`
 * bridge and whose other end Docker moves into the container as `ethwe<N>`.
 *
 * This module takes no sockets, timers or files: the world (IPAM, links, the
 * endpoint table, persistence) comes in through `PluginBackend`. Inputs are decoded
 * with zod schemas; anything else gets a one-line error.
 */
import { z } from 'zod';

/** Content type of every plugin answer (Docker's plugin API v1.2). */
export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';
/** Name of the driver (network and IPAM) Docker finds us under. */
export const DRIVER_NAME = 'weavemesh';
/** The prefix Docker gives the interface it moves into the container (ethwe0, ethwe1, …). */
export const CONTAINER_IF_PREFIX = 'ethwe';
/** Address spaces we answer GetDefaultAddressSpaces with (opaque to Docker). */
export const LOCAL_ADDRESS_SPACE = 'weavelocal';
export const GLOBAL_ADDRESS_SPACE = 'weaveglobal';
/** Docker's option marking a RequestAddress for the network's gateway. */
const REQUEST_ADDRESS_TYPE = 'RequestAddressType';
const GATEWAY_TYPE = 'com.docker.network.gateway';
/** Bounds on what one router keeps for Docker (a request beyond them is refused). */
export const MAX_NETWORKS = 1024;
export const MAX_ENDPOINTS = 16384;

/** An error the handler turns into `{"Err": message}`; the message is one line. */
export class PluginError extends Error {
  override name = 'PluginError';
}

/** A network Docker created with our driver: its IPv4 pools (CIDRs). */
export interface PluginNetwork {
  pools: string[];
}

/** An endpoint Docker created on one of our networks. */
export interface PluginEndpoint {
  networkId: string;
  /** "10.32.0.3/12" as Docker gave it (from our IPAM driver, or a static --ip). */
  cidr: string;
  mac: string;
  /**
   * The SandboxKey of the container this endpoint joined, while joined and only when
   * the Join answer carried the DNS server's route (see PluginCore.join).
   */
  dnsSandbox?: string;
}

/** What the core persists (plain JSON). */
export interface PluginState {
  networks: Record<string, PluginNetwork>;
  endpoints: Record<string, PluginEndpoint>;
}

/** The world as the core sees it. Every method rejects with a one-line Error. */
export interface PluginBackend {
  /** IPAM on: the range ("10.32.0.0/12") and default subnet; undefined when IPAM is disabled. */
  ipam(): { range: string; defaultSubnet: string } | undefined;
  /** True if the CIDR's network lies inside the IPAM range. */
  inRange(cidr: string): boolean;
  /**
   * Allocate the lowest free address of `subnet` for `owner`: "10.32.5.1/24". A new one on
   * every call: `owner` is the pool's (poolOwner), shared by all its containers.
   */
  allocate(owner: string, subnet: string): Promise<string>;
  /** Claim exactly `cidr` for `owner`. */
  claim(owner: string, cidr: string): Promise<void>;
  /** Free `addr` ("10.32.5.1") held by `owner`; resolves with how many were freed. */
  free(owner: string, addr: string): Promise<number>;
  /** A fresh locally administered unicast MAC, "aa:bb:cc:dd:ee:ff". */
  newMac(): string;
  /**
   * Make the veth pair of an endpoint: host end on the bridge (up), the other end,
   * with `mac`, left for Docker to move. Idempotent. Resolves with the other end's name.
   */
  createVeth(endpointId: string, mac: string): Promise<string>;
  /** Delete the endpoint's veth pair if it exists. */
  deleteVeth(endpointId: string): Promise<void>;
  /** Put the endpoint in the router's endpoint table (isolation filters follow) before its link is up. */
  recordEndpoint(endpointId: string, cidr: string, mac: string): Promise<void>;
  /** Remove it from the endpoint table (filters follow); absent is fine. */
  forgetEndpoint(endpointId: string): Promise<void>;
  /** Persist the state (atomically). */
  save(state: PluginState): Promise<void>;
  /**
   * The weaveDNS server's address as a host route ("169.254.53.53/32") that joined
   * containers need on-link over their ethwe, or undefined when DNS is off or not on
   * the bridge.
   */
  dnsRoute?(): string | undefined;
  /**
   * With --ipalloc-range6 (issue #21): the IPv6 CIDR derived from an endpoint's IPv4 CIDR
   * ("10.32.0.2/12" → "fd00:77::a20:2/108", ipam/ipv6.ts); undefined (or absent) without.
   */
  address6?(cidr4: string): string | undefined;
  /**
   * [IPv6] After Join: give the endpoint's interface in the sandbox (Docker moves it in
   * after Join returns) the overlay's link-local address. Runs in the background and
   * must not throw; absent without --ipalloc-range6.
   */
  settleLinkLocal?(endpointId: string, sandbox: string, mac: string, cidr4: string): void;
}

// Docker's ids are 64 hex digits; we take any plain token, but never one that names an
// Object property with a meaning (the state is kept in plain objects keyed by id).
const Id = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'want a Docker id (1-128 letters, digits, _ . -)')
  .refine((s) => !['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf'].includes(s), 'want a Docker id, not a reserved name');
const OptMap = z.record(z.string(), z.unknown()).nullish();
const StrMap = z.record(z.string(), z.string()).nullish();
const Cidr = z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/, 'want an IPv4 CIDR like 10.32.5.0/24');
const Addr = z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, 'want an IPv4 address');
const Mac = z.string().regex(/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/, 'want a MAC like 02:42:0a:20:00:03');

const schemas = {
  CreateNetwork: z.object({
    NetworkID: Id,
    Options: OptMap,
    IPv4Data: z.array(z.object({ AddressSpace: z.string().max(256).nullish(), Pool: Cidr, Gateway: z.string().max(64).nullish() }).passthrough()).max(16).nullish(),
    IPv6Data: z.array(z.unknown()).max(16).nullish(),
  }),
  NetworkId: z.object({ NetworkID: Id }),
  CreateEndpoint: z.object({
    NetworkID: Id,
    EndpointID: Id,
    Options: OptMap,
    Interface: z.object({ Address: z.string().max(64).nullish(), AddressIPv6: z.string().max(64).nullish(), MacAddress: z.string().max(64).nullish() }).nullish(),
  }),
  Endpoint: z.object({ NetworkID: Id, EndpointID: Id }),
  Join: z.object({ NetworkID: Id, EndpointID: Id, SandboxKey: z.string().max(4096).nullish(), Options: OptMap }),
  RequestPool: z.object({ AddressSpace: z.string().max(256).nullish(), Pool: z.string().max(64).nullish(), SubPool: z.string().max(64).nullish(), Options: StrMap, V6: z.boolean().nullish() }),
  ReleasePool: z.object({ PoolID: z.string().max(64) }),
  RequestAddress: z.object({ PoolID: z.string().max(64), Address: z.string().max(64).nullish(), Options: StrMap }),
  ReleaseAddress: z.object({ PoolID: z.string().max(64), Address: z.string().max(64) }),
};

/** One line naming the first problem zod found, e.g. `EndpointID: want a Docker id …`. */
function decode<T extends z.ZodTypeAny>(schema: T, body: unknown, method: string): z.infer<T> {
  const r = schema.safeParse(body ?? {});
  if (r.success) return r.data;
  const i = r.error.issues[0];
  const where = i.path.length ? i.path.join('.') : 'body';
  throw new PluginError(`${method}: bad request: ${where}: ${i.message.replace(/\s+/g, ' ').slice(0, 200)}`);
}

function octetsOk(a: string): boolean {
  return a.split('/')[0].split('.').every((o) => Number(o) <= 255) && (!a.includes('/') || Number(a.split('/')[1]) <= 32);
}

/** The network address of a CIDR, normalised: "10.32.5.7/24" → "10.32.5.0/24". */
export function networkOf(cidr: string): string {
  const [a, l] = cidr.split('/');
  const len = Number(l);
  const n = a.split('.').reduce((x, o) => x * 256 + Number(o), 0);
  const size = 2 ** (32 - len);
  const base = Math.floor(n / size) * size;
  return [24, 16, 8, 0].map((s) => Math.floor(base / 2 ** s) % 256).join('.') + '/' + len;
}

/** IPAM owner of the container addresses of one pool on this router. */
export const poolOwner = (pool: string): string => `weavemesh:${pool}`;
/** IPAM owner of the gateway address Docker asks for when it creates a network. */
export const gatewayOwner = (pool: string): string => `weavemesh-gateway:${pool}`;

/**
 * The plugin's handlers. `handle(path, body)` answers one request: it resolves with
 * the answer object, or rejects with a PluginError (or the backend's Error) whose
 * message the caller sends as `{"Err": …}`. Calls that change nothing (a repeated
 * DeleteEndpoint, Leave of an unknown endpoint) succeed.
 */
export class PluginCore {
  private readonly state: PluginState;

  constructor(private readonly backend: PluginBackend, state?: PluginState) {
    this.state = { networks: { ...(state?.networks ?? {}) }, endpoints: { ...(state?.endpoints ?? {}) } };
  }

  /** A copy of the current state (networks and endpoints Docker told us about). */
  snapshot(): PluginState {
    return JSON.parse(JSON.stringify(this.state)) as PluginState;
  }

  /**
   * Answer `POST path` with the decoded JSON `body`.
   * @param path "/Plugin.Activate", "/NetworkDriver.Join", "/IpamDriver.RequestAddress", …
   * @throws PluginError for an unknown path or a malformed request (one line).
   */
  async handle(path: string, body: unknown): Promise<Record<string, unknown>> {
    if (body !== undefined && body !== null && (typeof body !== 'object' || Array.isArray(body))) {
      throw new PluginError(`${path}: bad request: the body must be a JSON object`);
    }
    switch (path) {
      case '/Plugin.Activate': return { Implements: ['NetworkDriver', 'IpamDriver'] };
      // Network driver.
      case '/NetworkDriver.GetCapabilities': return { Scope: 'local' };
      case '/NetworkDriver.CreateNetwork': return this.createNetwork(body);
      case '/NetworkDriver.DeleteNetwork': return this.deleteNetwork(body);
      case '/NetworkDriver.CreateEndpoint': return this.createEndpoint(body);
      case '/NetworkDriver.DeleteEndpoint': return this.deleteEndpoint(body);
      case '/NetworkDriver.EndpointOperInfo': {
        const r = decode(schemas.Endpoint, body, 'EndpointOperInfo');
        const e = Object.hasOwn(this.state.endpoints, r.EndpointID) ? this.state.endpoints[r.EndpointID] : undefined;
        return { Value: e ? { Address: e.cidr, MacAddress: e.mac } : {} };
      }
      case '/NetworkDriver.Join': return this.join(body);
      case '/NetworkDriver.Leave': return this.leave(body);
      case '/NetworkDriver.DiscoverNew':
      case '/NetworkDriver.DiscoverDelete':
      case '/NetworkDriver.ProgramExternalConnectivity':
      case '/NetworkDriver.RevokeExternalConnectivity':
        return {};
      case '/NetworkDriver.AllocateNetwork':
      case '/NetworkDriver.FreeNetwork':
        throw new PluginError(`${path.slice(1)}: weavemesh is a local-scope driver and does not take part in swarm network allocation`);
      // IPAM driver.
      case '/IpamDriver.GetCapabilities': return { RequiresMACAddress: false, RequiresRequestReplay: false };
      case '/IpamDriver.GetDefaultAddressSpaces': return { LocalDefaultAddressSpace: LOCAL_ADDRESS_SPACE, GlobalDefaultAddressSpace: GLOBAL_ADDRESS_SPACE };
      case '/IpamDriver.RequestPool': return this.requestPool(body);
      case '/IpamDriver.ReleasePool':
        decode(schemas.ReleasePool, body, 'ReleasePool');
        return {};
      case '/IpamDriver.RequestAddress': return this.requestAddress(body);
      case '/IpamDriver.ReleaseAddress': return this.releaseAddress(body);
      default:
        throw new PluginError(`unknown plugin call ${JSON.stringify(path.slice(0, 100))}: weavemesh implements Plugin.Activate, NetworkDriver.* and IpamDriver.*`);
    }
  }

  private ipamOrThrow(what: string): { range: string; defaultSubnet: string } {
    const i = this.backend.ipam();
    if (!i) throw new PluginError(`${what}: IPAM is disabled on this router (launched with --ipalloc-range ""): relaunch with a range to use the weavemesh IPAM driver`);
    return i;
  }

  private async requestPool(body: unknown): Promise<Record<string, unknown>> {
    const r = decode(schemas.RequestPool, body, 'RequestPool');
    if (r.V6) throw new PluginError('RequestPool: weavemesh does not do IPv6: create the network without --ipv6');
    if (r.SubPool) throw new PluginError('RequestPool: --ip-range is not supported by weavemesh: give only --subnet');
    const ipam = this.ipamOrThrow('RequestPool');
    let pool = ipam.defaultSubnet;
    if (r.Pool) {
      if (!Cidr.safeParse(r.Pool).success || !octetsOk(r.Pool)) throw new PluginError(`RequestPool: bad subnet "${r.Pool}": want an IPv4 CIDR like 10.32.5.0/24`);
      pool = networkOf(r.Pool);
      if (pool !== r.Pool) throw new PluginError(`RequestPool: subnet ${r.Pool} has host bits set: did you mean ${pool}?`);
      if (!this.backend.inRange(pool)) throw new PluginError(`RequestPool: subnet ${pool} is outside the IPAM range ${ipam.range}: choose a subnet inside it`);
    }
    // The pool id is the subnet itself: stateless, so a router restart loses nothing.
    return { PoolID: pool, Pool: pool, Data: {} };
  }

  private poolOf(poolId: string, what: string): string {
    if (!Cidr.safeParse(poolId).success || !octetsOk(poolId) || networkOf(poolId) !== poolId) {
      throw new PluginError(`${what}: unknown pool "${poolId.slice(0, 64)}": weavemesh pools are subnets like 10.32.0.0/12`);
    }
    return poolId;
  }

  private async requestAddress(body: unknown): Promise<Record<string, unknown>> {
    const r = decode(schemas.RequestAddress, body, 'RequestAddress');
    this.ipamOrThrow('RequestAddress');
    const pool = this.poolOf(r.PoolID, 'RequestAddress');
    const len = pool.split('/')[1];
    const owner = r.Options?.[REQUEST_ADDRESS_TYPE] === GATEWAY_TYPE ? gatewayOwner(pool) : poolOwner(pool);
    if (r.Address) {
      if (!Addr.safeParse(r.Address).success || !octetsOk(r.Address)) throw new PluginError(`RequestAddress: bad address "${r.Address}": want an IPv4 address`);
      const cidr = `${r.Address}/${len}`;
      if (networkOf(cidr) !== pool) throw new PluginError(`RequestAddress: ${r.Address} is not in the pool ${pool}`);
      if (this.backend.inRange(cidr)) await this.backend.claim(owner, cidr);
      return { Address: cidr, Data: {} };
    }
    const cidr = await this.backend.allocate(owner, pool);
    return { Address: cidr, Data: {} };
  }

  private async releaseAddress(body: unknown): Promise<Record<string, unknown>> {
    const r = decode(schemas.ReleaseAddress, body, 'ReleaseAddress');
    const pool = this.poolOf(r.PoolID, 'ReleaseAddress');
    if (!Addr.safeParse(r.Address).success) throw new PluginError(`ReleaseAddress: bad address "${r.Address.slice(0, 64)}": want an IPv4 address`);
    if (!this.backend.ipam()) return {};
    // Docker does not say whether this was the gateway: try the containers' owner first.
    const n = await this.backend.free(poolOwner(pool), r.Address);
    if (!n) await this.backend.free(gatewayOwner(pool), r.Address);
    return {};
  }

  private async createNetwork(body: unknown): Promise<Record<string, unknown>> {
    const r = decode(schemas.CreateNetwork, body, 'CreateNetwork');
    if (r.IPv6Data?.length) throw new PluginError('CreateNetwork: weavemesh does not do IPv6: create the network without --ipv6');
    const pools = (r.IPv4Data ?? []).map((d) => d.Pool);
    for (const p of pools) if (!octetsOk(p)) throw new PluginError(`CreateNetwork: bad pool "${p}"`);
    const prev = this.state.networks[r.NetworkID];
    if (!prev && Object.keys(this.state.networks).length >= MAX_NETWORKS) {
      throw new PluginError(`CreateNetwork: this router already has ${MAX_NETWORKS} weavemesh networks: remove unused ones (docker network prune)`);
    }
    this.state.networks[r.NetworkID] = { pools };
    await this.backend.save(this.snapshot());
    return {};
  }

  private async deleteNetwork(body: unknown): Promise<Record<string, unknown>> {
    const r = decode(schemas.NetworkId, body, 'DeleteNetwork');
    if (!this.state.networks[r.NetworkID]) return {};
    delete this.state.networks[r.NetworkID];
    await this.backend.save(this.snapshot());
    return {};
  }

  private async createEndpoint(body: unknown): Promise<Record<string, unknown>> {
    const r = decode(schemas.CreateEndpoint, body, 'CreateEndpoint');
    if (r.Interface?.AddressIPv6) throw new PluginError('CreateEndpoint: weavemesh gives IPv6 itself (derived from the IPv4 address with weave launch --ipalloc-range6): create the network without --ipv6');
    const addr = r.Interface?.Address || undefined;
    if (!addr) throw new PluginError('CreateEndpoint: no IPv4 address: create the network with --ipam-driver weavemesh (or give --subnet)');
    if (!Cidr.safeParse(addr).success || !octetsOk(addr)) throw new PluginError(`CreateEndpoint: bad address "${addr.slice(0, 64)}": want an IPv4 CIDR`);
    const given = r.Interface?.MacAddress || undefined;
    if (given && !Mac.safeParse(given).success) throw new PluginError(`CreateEndpoint: bad MAC address "${given.slice(0, 64)}"`);
    const prev = this.state.endpoints[r.EndpointID];
    if (!prev && Object.keys(this.state.endpoints).length >= MAX_ENDPOINTS) {
      throw new PluginError(`CreateEndpoint: this router already has ${MAX_ENDPOINTS} weavemesh endpoints: remove stopped containers`);
    }
    const mac = (given ?? prev?.mac ?? this.backend.newMac()).toLowerCase();
    this.state.endpoints[r.EndpointID] = { networkId: r.NetworkID, cidr: addr, mac };
    await this.backend.save(this.snapshot());
    // Docker refuses an answer that sets a MAC it chose itself. The IPv6 address (if
    // range6 is set) is ours to give: the remote driver protocol lets CreateEndpoint set
    // AddressIPv6 when Docker's IPAM gave none (a network without --ipv6), and Docker
    // then adds it to the container's interface (no DAD) with its prefix route.
    const v6 = this.backend.address6?.(addr);
    const iface = { ...(given ? {} : { MacAddress: mac }), ...(v6 ? { AddressIPv6: v6 } : {}) };
    return Object.keys(iface).length ? { Interface: iface } : {};
  }

  private async deleteEndpoint(body: unknown): Promise<Record<string, unknown>> {
    const r = decode(schemas.Endpoint, body, 'DeleteEndpoint');
    await this.backend.deleteVeth(r.EndpointID);
    await this.backend.forgetEndpoint(r.EndpointID);
    if (this.state.endpoints[r.EndpointID]) {
      delete this.state.endpoints[r.EndpointID];
      await this.backend.save(this.snapshot());
    }
    return {};
  }

  private async join(body: unknown): Promise<Record<string, unknown>> {
    const r = decode(schemas.Join, body, 'Join');
    const e = Object.hasOwn(this.state.endpoints, r.EndpointID) ? this.state.endpoints[r.EndpointID] : undefined;
    if (!e) throw new PluginError(`Join: unknown endpoint ${r.EndpointID.slice(0, 12)}: it was not created through weavemesh (disconnect and connect the container again)`);
    // Filters first: the endpoint is in the table before its link can carry a frame.
    await this.backend.recordEndpoint(r.EndpointID, e.cidr, e.mac);
    const srcName = await this.backend.createVeth(r.EndpointID, e.mac);
    // weaveDNS's server is reached by an on-link route over ethwe (as `weave attach`
    // gives). A route is per container, not per interface: a second weavemesh network
    // the same container (SandboxKey) joins gets none, since the same destination on
    // ethwe1 would clash ("file exists") and Docker would fail the connect. No
    // multicast route for the same reason.
    const dns = this.backend.dnsRoute?.();
    const sandbox = r.SandboxKey || undefined;
    const routed = dns !== undefined && sandbox !== undefined &&
      !Object.entries(this.state.endpoints).some(([id, x]) => id !== r.EndpointID && x.dnsSandbox === sandbox);
    const want = routed ? sandbox : undefined;
    if (want !== e.dnsSandbox) {
      if (want === undefined) delete e.dnsSandbox;
      else e.dnsSandbox = want;
      await this.backend.save(this.snapshot());
    }
    this.backend.settleLinkLocal?.(r.EndpointID, sandbox ?? '', e.mac, e.cidr);
    return {
      InterfaceName: { SrcName: srcName, DstPrefix: CONTAINER_IF_PREFIX },
      // RouteType 1 = connected (on-link over this interface, no next hop).
      ...(routed ? { StaticRoutes: [{ Destination: dns, RouteType: 1 }] } : {}),
      // The overlay is not the container's way out (no default route, no docker_gwbridge).
      DisableGatewayService: true,
    };
  }

  private async leave(body: unknown): Promise<Record<string, unknown>> {
    const r = decode(schemas.Endpoint, body, 'Leave');
    await this.backend.deleteVeth(r.EndpointID);
    await this.backend.forgetEndpoint(r.EndpointID);
    const e = Object.hasOwn(this.state.endpoints, r.EndpointID) ? this.state.endpoints[r.EndpointID] : undefined;
    if (e?.dnsSandbox !== undefined) {
      delete e.dnsSandbox;
      await this.backend.save(this.snapshot());
    }
    return {};
  }
}
