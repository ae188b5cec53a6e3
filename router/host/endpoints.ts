/**
 * Endpoints: the network namespaces attached to the weave network (containers,
 * `netns:` and `pid:` targets) and the host itself when exposed.
 *
 * Attaching resolves the target to a namespace file, turns address specs into CIDRs
 * (explicit `ip:`, or allocated by IPAM from `net:CIDR` / `net:default` / the default
 * subnet), and gives the namespace an `ethwe` veth on the bridge. The table is saved
 * in the state directory (write, fsync, rename) so `weave ps` and re-attachment survive
 * a router restart; the links themselves stay up while the router is stopped.
 */
import path from 'node:path';
import { dockerJson } from './docker-api.js';
import { attachVeth, bridgeIpv6, detachVeth, endpointMac, ip, targetNetns, BRIDGE, NetdevError } from './netdev.js';
import { writeFileAtomic, readStateFile, corruptError, parseJsonArray } from './state-file.js';
import { endpointAddrs6, specToV4, Ipv6Error, type Range6 } from '../../ipam/ipv6.js';
import { mark } from './step-timer.js';

export interface AddressAllocator {
  /**
   * Allocate the lowest free address in `subnet` (undefined = default subnet); "10.32.0.1/12".
   * The owner's address in that subnet if it has one, unless `opts.another` (a further one).
   */
  allocate(owner: string, subnet?: string, opts?: { another?: boolean }): Promise<string>;
  /** Claim exactly this address ("10.32.0.5/12"); rejects if another owner holds it. */
  claim(owner: string, cidr: string): Promise<void>;
  free(owner: string, addr?: string): Promise<number>;
  lookup(owner: string): string[];
  /** True if the address lies inside the IPAM range (so it must be claimed). */
  inRange(cidr: string): boolean;
}

export interface Endpoint {
  id: string;
  netns?: string;
  cidrs: string[];
  mac: string;
  /**
   * The endpoint's name, for DNS: given at attach (`--name`/`-h`), the Docker
   * container's name, or a pod's name; a DNS label or FQDN, validated by the caller.
   */
  name?: string;
  /** Container-side interface name when not `ethwe` (a CNI ADD's CNI_IFNAME). */
  ifname?: string;
}

/** Options of an attach beyond target and address specs. */
export interface AttachOptions {
  /** Name to record on the endpoint (see Endpoint.name). */
  name?: string;
  /** Container-side interface name (default `ethwe`); kept on the endpoint. */
  ifname?: string;
  /** Hairpin mode on the host end of a new veth (CNI `hairpinMode`). */
  hairpin?: boolean;
  /** A default route via the address this returns for the attached addresses (CNI: the host's exposed address). */
  gateway?: (cidrs: string[]) => string | undefined;
}

export const EXPOSE_ID = 'weave:expose';

export class EndpointError extends Error {
  override name = 'EndpointError';
}

const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** Validate "a.b.c.d/len" and return it normalised; throws a one-line EndpointError. */
export function checkCidr(c: string, what = 'address'): string {
  const m = CIDR_RE.exec(c);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) {
    throw new EndpointError(`invalid ${what} "${c}": want an IPv4 address with prefix length like 10.32.0.1/12`);
  }
  return m.slice(1, 5).map(Number).join('.') + '/' + Number(m[5]);
}

/** A parsed address spec from the CLI or WEAVE_CIDR. */
export type AddressSpec = { kind: 'ip'; cidr: string } | { kind: 'net'; cidr?: string };

/**
 * Parse address specs (ip:ADDR/LEN, net:CIDR, net:default, a bare ADDR/LEN). With
 * `range6` (--ipalloc-range6), IPv6 specs of the derived form are accepted and turned
 * into their IPv4 form (ipam/ipv6.ts specToV4), since the IPv6 address follows the IPv4
 * one; any other IPv6 spec is refused with one line.
 * @throws EndpointError (one line)
 */
export function parseSpecs(specs: string[], range6?: Range6): AddressSpec[] {
  return specs.map((s0) => {
    let s = s0;
    try {
      s = specToV4(range6, s0);
    } catch (err) {
      if (err instanceof Ipv6Error) throw new EndpointError(err.message);
      throw err;
    }
    if (s.startsWith('ip:')) return { kind: 'ip', cidr: checkCidr(s.slice(3)) };
    if (s === 'net:default') return { kind: 'net' };
    if (s.startsWith('net:')) return { kind: 'net', cidr: checkCidr(s.slice(4), 'subnet') };
    if (CIDR_RE.test(s)) return { kind: 'ip', cidr: checkCidr(s) };
    throw new EndpointError(`invalid address spec "${s}": want ip:ADDR/LEN, net:CIDR or net:default`);
  });
}

export class Endpoints {
  private readonly table = new Map<string, Endpoint>();
  private readonly file: string;
  allocator: AddressAllocator | undefined;
  /**
   * On-link routes every container gets on ethwe before it can use it (weaveDNS sets
   * its server's address, "169.254.53.53/32"); set by a subsystem at start.
   */
  containerRoutes: string[] = [];
  /** Called when the table changes in a way filters must follow (before a new port comes up). */
  onChange: (() => Promise<void>) | undefined;
  /**
   * --ipalloc-range6 (issue #21): every container interface also gets the IPv6 addresses
   * derived from its IPv4 ones (global and link-local, ipam/ipv6.ts). Undefined: IPv4 only.
   */
  range6: Range6 | undefined;

  /** The global IPv6 CIDRs derived from these IPv4 ones ([] without range6), for `weave ps` and results. */
  cidrs6(cidrs: readonly string[]): string[] {
    return this.range6 ? endpointAddrs6(this.range6, cidrs).global : [];
  }

  /** What attachVeth/detachVeth configure for IPv6: link-local then global CIDRs; undefined without range6. */
  private v6For(cidrs: readonly string[]): string[] | undefined {
    if (!this.range6) return undefined;
    const a = endpointAddrs6(this.range6, cidrs);
    return [...new Set(a.linkLocal), ...a.global];
  }

  constructor(stateDir: string, private readonly mtu: number, private readonly dockerHost: string, private readonly log: (l: string) => void) {
    this.file = path.join(stateDir, 'endpoints.json');
  }

  /**
   * Load the endpoint table from endpoints.json (a JSON array of {id, netns?, cidrs, mac}).
   * A missing file is an empty table; anything unreadable or malformed is refused and
   * the file left byte for byte (validateEndpoints, router/host/state-file.ts).
   * @throws StateFileError `endpoint table PATH is corrupted (why): move it aside or run weave reset`
   */
  async load(): Promise<void> {
    const text = await readStateFile(this.file, 'endpoint table');
    if (text === undefined) return;
    for (const e of validateEndpoints(text, this.file)) this.table.set(e.id, e);
  }

  private saves: Promise<void> = Promise.resolve();

  /**
   * Write the table to endpoints.json. Writes run one at a time, each with the table as it
   * is when that write starts, so concurrent attaches never race on the file or leave an
   * older table written after a newer one.
   */
  private save(): Promise<void> {
    const next = this.saves.catch(() => undefined).then(() => writeFileAtomic(this.file, JSON.stringify([...this.table.values()], null, 1)));
    this.saves = next;
    return next;
  }

  list(): Endpoint[] {
    return [...this.table.values()];
  }

  /** Resolve a target (container id/name, netns:PATH, pid:PID) to a namespace file. */
  async resolve(target: string): Promise<{ id: string; netns: string; name?: string }> {
    if (target.startsWith('netns:') || target.startsWith('pid:')) return { id: target, netns: targetNetns(target) };
    const info = await dockerInspect(this.dockerHost, target);
    if (!info.pid) throw new EndpointError(`container ${target} is not running`);
    return { id: info.id, netns: `/proc/${info.pid}/ns/net`, name: info.name };
  }

  /** Turn specs into CIDRs for `owner`, allocating or claiming through IPAM. */
  async addresses(owner: string, specs: string[]): Promise<string[]> {
    const parsed = parseSpecs(specs.length ? specs : ['net:default'], this.range6);
    const out: string[] = [];
    try {
      for (const s of parsed) {
        if (s.kind === 'ip') {
          if (this.allocator?.inRange(s.cidr)) await this.allocator.claim(owner, s.cidr);
          out.push(s.cidr);
        } else {
          if (!this.allocator) throw new EndpointError('IPAM is disabled (launched with --ipalloc-range ""): give the address explicitly as ip:ADDR/LEN');
          out.push(await this.allocator.allocate(owner, s.cidr));
        }
      }
    } catch (err) {
      // Give back what this call took, so a failed attach leaks nothing.
      for (const c of out) await this.allocator?.free(owner, c.split('/')[0]).catch(() => 0);
      throw err;
    }
    return out;
  }

  async attach(target: string, specs: string[], opts: AttachOptions = {}): Promise<Endpoint> {
    const { id, netns, name } = await this.resolve(target);
    return this.attachNetns(id, netns, specs, { name: opts.name ?? name });
  }

  /**
   * Attach a namespace file under an endpoint id (container id for the proxy). Calls
   * for the same id run one at a time, and repeating one is harmless (idempotent).
   */
  attachNetns(id: string, netns: string, specs: string[], opts: AttachOptions = {}): Promise<Endpoint> {
    return this.serialise(id, () => this.doAttach(id, netns, specs, opts));
  }

  private readonly queues = new Map<string, Promise<unknown>>();

  private serialise<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.queues.set(id, tail);
    void tail.then(() => {
      if (this.queues.get(id) === tail) this.queues.delete(id);
    });
    return next;
  }

  /** Forget an endpoint whose namespace is gone (container removed) and free its addresses. */
  release(id: string): Promise<void> {
    return this.serialise(id, async () => {
      const e = this.table.get(id);
      await this.allocator?.free(id).catch(() => 0);
      if (!e) return;
      await detachVeth(id, undefined, undefined).catch(() => undefined);
      this.table.delete(id);
      await this.save();
    });
  }

  private async doAttach(id: string, netns: string, specs: string[], opts: AttachOptions): Promise<Endpoint> {
    const prev = this.table.get(id);
    const name = opts.name ?? prev?.name;
    const ifname = opts.ifname ?? prev?.ifname;
    // Re-attaching without specs keeps the addresses it had (as after a restart).
    mark('queue');
    const cidrs = !specs.length && prev?.cidrs.length ? prev.cidrs : await this.addresses(id, specs);
    mark('ipam');
    let configured = false;
    // The table is saved while the host end is put on the bridge (it holds what it will
    // hold on success); a failure below saves it again as it was.
    let saving: Promise<void> | undefined;
    try {
      const all = [...new Set([...(prev?.cidrs ?? []), ...cidrs])];
      const mac = await attachVeth(id, netns, cidrs, this.mtu, async (m) => {
        this.table.set(id, { id, netns, cidrs: all, mac: m, name, ...(ifname ? { ifname } : {}) });
        await this.onChange?.();
        saving = this.save();
        saving.catch(() => undefined); // awaited below
      }, { routes: this.containerRoutes, ifname, hairpin: opts.hairpin, gateway: opts.gateway, v6: this.v6For(cidrs) });
      configured = true;
      const e: Endpoint = { id, netns, cidrs: all, mac, name, ...(ifname ? { ifname } : {}) };
      this.table.set(id, e);
      // beforeUp's entry is `e` (same MAC): its write, if started, is the one to wait for.
      await (saving ?? this.save());
      mark('save endpoints.json (wait)');
      return { ...e, cidrs };
    } catch (err) {
      // [reliability] The table could not be saved (disk full, read-only): take back what
      // the container was given, since its addresses are freed below and would otherwise
      // be configured in a container while free in IPAM (handed out twice).
      if (configured) {
        const fresh = cidrs.filter((c) => !prev?.cidrs.includes(c));
        if (!prev) await detachVeth(id, netns, undefined).catch(() => undefined);
        else if (fresh.length) await detachVeth(id, netns, fresh, ifname, this.v6For(fresh)).catch(() => undefined);
      }
      if (prev) this.table.set(id, prev);
      else this.table.delete(id);
      if (saving) await this.save().catch(() => undefined);
      await this.onChange?.().catch(() => undefined);
      if (!prev?.cidrs.length || specs.length) for (const c of cidrs) await this.allocator?.free(id, c.split('/')[0]).catch(() => 0);
      throw err;
    }
  }

  /**
   * Detach `target` (as attach takes it: container id or name, netns:, pid:), all its
   * addresses or those of `specs`. Returns the endpoint id it resolved to (the
   * container's full id when a name was typed: what DNS entries are keyed by) and the
   * CIDRs removed. A target Docker cannot resolve (a stopped container) is looked up in
   * the table by id, then by a unique id prefix or endpoint name.
   */
  async detachEndpoint(target: string, specs: string[]): Promise<{ id: string; cidrs: string[] }> {
    let id = target;
    let netns: string | undefined;
    try {
      ({ id, netns } = await this.resolve(target));
    } catch {
      if (!this.table.has(target)) {
        const byName = this.list().filter((e) => e.name === target || (target.length >= 3 && e.id.startsWith(target)));
        if (byName.length === 1) id = byName[0].id;
      }
      netns = this.table.get(id)?.netns;
    }
    const cidrs = await this.detachResolved(id, netns, specs);
    return { id, cidrs };
  }

  /** detachEndpoint's CIDRs only (kept for callers that pass endpoint ids). */
  async detach(target: string, specs: string[]): Promise<string[]> {
    return (await this.detachEndpoint(target, specs)).cidrs;
  }

  private async detachResolved(id: string, netns: string | undefined, specs: string[]): Promise<string[]> {
    const e = this.table.get(id);
    const cidrs = specs.length ? parseSpecs(specs, this.range6).map((s) => {
      if (s.kind !== 'ip') throw new EndpointError('detach takes ip:ADDR/LEN addresses');
      return s.cidr;
    }) : e?.cidrs ?? [];
    await detachVeth(id, netns ?? e?.netns, specs.length ? cidrs : undefined, e?.ifname, specs.length ? this.v6For(cidrs) : undefined);
    for (const c of cidrs) await this.allocator?.free(id, c.split('/')[0]).catch(() => 0);
    if (e) {
      e.cidrs = specs.length ? e.cidrs.filter((c) => !cidrs.includes(c)) : [];
      if (!e.cidrs.length) this.table.delete(id);
      await this.save();
    }
    return cidrs;
  }

  async expose(specs: string[]): Promise<string[]> {
    const prev = this.table.get(EXPOSE_ID);
    const parsed = parseSpecs(specs.length ? specs : ['net:default'], this.range6);
    const out: string[] = [];
    for (const s of parsed) {
      // Idempotent: exposing a subnet the host already has an address in returns it.
      const have = prev?.cidrs.find((c) => s.kind === 'ip' ? c === s.cidr : s.cidr === undefined || sameSubnet(c, s.cidr));
      if (have) {
        out.push(have);
        continue;
      }
      const [c] = await this.addresses(EXPOSE_ID, [s.kind === 'ip' ? `ip:${s.cidr}` : s.cidr ? `net:${s.cidr}` : 'net:default']);
      await ip('addr', 'replace', c, 'dev', BRIDGE);
      out.push(c);
    }
    const all = [...new Set([...(prev?.cidrs ?? []), ...out])];
    // [IPv6] with range6 the host also gets the derived IPv6 addresses on the bridge.
    const v6 = this.v6For(all);
    if (v6) await bridgeIpv6(BRIDGE, v6);
    const mac = (await ip('-o', 'link', 'show', 'dev', BRIDGE).catch(() => '')).match(/link\/ether ([0-9a-f:]{17})/)?.[1] ?? '';
    this.table.set(EXPOSE_ID, { id: EXPOSE_ID, cidrs: all, mac });
    await this.save();
    return out;
  }

  /**
   * [IPv6] After a restart (the launch turns the host's IPv6 on the bridge off), give the
   * exposed host its derived IPv6 addresses back; nothing without range6 or expose.
   */
  async restoreExpose6(): Promise<void> {
    const e = this.table.get(EXPOSE_ID);
    const v6 = e ? this.v6For(e.cidrs) : undefined;
    if (v6?.length) await bridgeIpv6(BRIDGE, v6);
  }

  async hide(specs: string[]): Promise<string[]> {
    const e = this.table.get(EXPOSE_ID);
    if (!e) return [];
    const parsed = specs.length ? parseSpecs(specs, this.range6) : undefined;
    const gone = e.cidrs.filter((c) => !parsed || parsed.some((s) => s.kind === 'ip' ? s.cidr === c : s.cidr === undefined || sameSubnet(c, s.cidr)));
    for (const c of gone) {
      await ip('addr', 'del', c, 'dev', BRIDGE).catch(() => undefined);
      await this.allocator?.free(EXPOSE_ID, c.split('/')[0]).catch(() => 0);
    }
    e.cidrs = e.cidrs.filter((c) => !gone.includes(c));
    const v6 = this.v6For(e.cidrs);
    if (v6) {
      const keep = new Set(v6);
      await bridgeIpv6(BRIDGE, v6, (this.v6For(gone) ?? []).filter((c) => !keep.has(c)));
    }
    if (!e.cidrs.length) this.table.delete(EXPOSE_ID);
    await this.save();
    return gone;
  }

  /**
   * Record an endpoint whose link another component made (the Docker plugin's veth,
   * whose host end is `hostVethName(id)`), so isolation filters and `weave ps` cover
   * it; `onChange` runs before this resolves. Replaces an entry with the same id.
   */
  record(e: Endpoint): Promise<void> {
    return this.serialise(e.id, async () => {
      this.table.set(e.id, { ...e, cidrs: [...e.cidrs] });
      await this.onChange?.();
      await this.save();
    });
  }

  /** Drop an endpoint recorded with record() (absent is fine); its addresses are the recorder's to free. */
  forget(id: string): Promise<boolean> {
    return this.serialise(id, async () => {
      if (!this.table.delete(id)) return false;
      await this.onChange?.();
      await this.save();
      return true;
    });
  }

  /** Refresh MACs (containers may have been recreated) for `weave ps`. */
  async ps(): Promise<Endpoint[]> {
    for (const e of this.table.values()) {
      if (e.netns) e.mac = await endpointMac(e.netns, e.ifname).catch(() => e.mac);
    }
    return this.list();
  }
}

function sameSubnet(cidr: string, subnet: string): boolean {
  const toNum = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const [a] = cidr.split('/');
  const [b, len] = subnet.split('/');
  const size = 2 ** (32 - Number(len));
  return Math.floor(toNum(a) / size) === Math.floor(toNum(b) / size) && cidr.endsWith('/' + len);
}

/** Docker's GET /containers/NAME/json: id, pid (0 if not running), name without its leading "/". */
export async function dockerInspect(dockerHost: string, name: string): Promise<{ id: string; pid: number; name?: string }> {
  let r: { status: number; json: unknown };
  try {
    r = await dockerJson(dockerHost, 'GET', `/containers/${encodeURIComponent(name)}/json`, undefined, 10_000);
  } catch (err) {
    throw new EndpointError(`${(err as Error).message}: is it running? (or use netns:PATH / pid:PID)`);
  }
  if (r.status === 404) throw new EndpointError(`target ${name} not found: no such container (or use netns:PATH / pid:PID)`);
  if (r.status !== 200) throw new EndpointError(`Docker daemon at ${dockerHost} answered ${r.status} for container ${name}`);
  const j = r.json as { Id?: unknown; Name?: unknown; State?: { Pid?: unknown } } | undefined;
  if (!j || typeof j.Id !== 'string') throw new EndpointError(`Docker daemon at ${dockerHost} sent a bad answer for container ${name}`);
  return { id: j.Id, pid: typeof j.State?.Pid === 'number' ? j.State.Pid : 0, name: typeof j.Name === 'string' ? j.Name.replace(/^\//, '') : undefined };
}

export { NetdevError };

/** Most endpoints accepted from endpoints.json. */
export const MAX_ENDPOINTS = 65_536;

/**
 * Parse and check endpoints.json text: a JSON array (at most MAX_ENDPOINTS) of
 * {id: string, netns?: string, cidrs: string[] of "a.b.c.d/len", mac: string}.
 * @throws StateFileError naming `file` and the first problem
 */
export function validateEndpoints(text: string, file: string): Endpoint[] {
  const bad = corruptError('endpoint table', file);
  const v = parseJsonArray(text, MAX_ENDPOINTS, bad);
  const out: Endpoint[] = [];
  const seen = new Set<string>();
  v.forEach((x: unknown, i) => {
    const o = x as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw bad(`entry ${i} is not an object`);
    if (typeof o.id !== 'string' || !o.id || o.id.length > 4096) throw bad(`entry ${i} has no valid id`);
    if (seen.has(o.id)) throw bad(`entry ${i} repeats id ${JSON.stringify(o.id.slice(0, 80))}`);
    seen.add(o.id);
    if (o.netns !== undefined && (typeof o.netns !== 'string' || o.netns.length > 4096)) throw bad(`entry ${i} has a bad netns`);
    if (!Array.isArray(o.cidrs) || o.cidrs.length > 1024 || !o.cidrs.every((c) => typeof c === 'string' && CIDR_RE.test(c))) throw bad(`entry ${i} has bad cidrs`);
    if (typeof o.mac !== 'string' || o.mac.length > 64) throw bad(`entry ${i} has a bad mac`);
    // name (DNS) and ifname (a CNI pod's interface) survive a restart too.
    if (o.name !== undefined && (typeof o.name !== 'string' || o.name.length > 255)) throw bad(`entry ${i} has a bad name`);
    if (o.ifname !== undefined && (typeof o.ifname !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(o.ifname))) throw bad(`entry ${i} has a bad ifname`);
    out.push({
      id: o.id, ...(o.netns !== undefined ? { netns: o.netns as string } : {}), cidrs: o.cidrs as string[], mac: o.mac,
      ...(o.name !== undefined ? { name: o.name as string } : {}), ...(o.ifname !== undefined ? { ifname: o.ifname as string } : {}),
    });
  });
  return out;
}
