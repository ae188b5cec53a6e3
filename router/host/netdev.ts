/**
 * Host network setup through iproute2 (`ip`, `bridge`) and `nsenter`.
 *
 * Everything the router does to links goes through here: the `weave` bridge, the TAP
 * port the router captures frames from, and the veth pairs that give a container its
 * `ethwe` interface (Weave's naming: host end `vethwepl<id>`, container end `ethwe`).
 * Commands run with execFile (no shell), so names and addresses are never interpreted.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { mark } from './step-timer.js';
import { macBytes, netlink, type NetlinkFailure } from './netlink.js';

export class NetdevError extends Error {
  override name = 'NetdevError';
}

/** Name of the bridge every container joins (Weave's). */
export const BRIDGE = 'weave';
/** The router's TAP port on the bridge. */
export const TAP_NAME = 'vethwe-tap';
/** Container-side interface name (Weave's). */
export const CONTAINER_IFNAME = 'ethwe';

const CMD_TIMEOUT_MS = 15_000;

/**
 * Run a command; resolve with stdout. Rejects with a NetdevError whose message is the
 * command's first stderr line (one line, no stack), e.g. `ip link add: File exists`.
 */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? CMD_TIMEOUT_MS, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        if (e.code === 'ENOENT') return reject(new NetdevError(`${cmd} not found: install it (Debian: apt-get install ${cmd === 'nsenter' ? 'util-linux' : 'iproute2'})`));
        if (e.killed) return reject(new NetdevError(`${cmd} ${args.join(' ')} timed out after ${opts.timeoutMs ?? CMD_TIMEOUT_MS} ms`));
        const line = String(stderr).trim().split('\n')[0] || e.message;
        return reject(new NetdevError(`${cmd} ${args.slice(0, 3).join(' ')}: ${line}`));
      }
      resolve(String(stdout));
    });
  });
}

/** A token safe on an `ip -batch` line (ip splits lines on blanks and treats # as a comment). */
const BATCH_TOKEN = /^[A-Za-z0-9_.:/-]+$/;

/** A failed `ip -batch`: `line` is the 1-based number of the command that failed (0 if unknown). */
export class BatchError extends NetdevError {
  constructor(message: string, readonly line: number) {
    super(message);
  }
}

/**
 * Run several `ip` commands in one exec (`ip -batch -`, one command per line; ip stops
 * at the first that fails). `nsPath` runs them inside that network namespace (through
 * nsenter, as ipIn). Every token is checked, so nothing can start a second command or a
 * comment.
 * @throws BatchError `ip -batch: <ip's first error line>` with the failed line's number
 */
export function ipBatch(nsPath: string | undefined, lines: string[][]): Promise<void> {
  for (const l of lines) for (const t of l) if (!BATCH_TOKEN.test(t)) throw new NetdevError(`refusing "${t.slice(0, 40)}" in an ip command`);
  const [cmd, args] = nsPath === undefined ? ['ip', ['-batch', '-']] : ['nsenter', [`--net=${nsPath}`, '--', 'ip', '-batch', '-']];
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: CMD_TIMEOUT_MS, maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const e = err as NodeJS.ErrnoException & { killed?: boolean };
      if (e.code === 'ENOENT') return reject(new BatchError(`${cmd} not found: install it (Debian: apt-get install ${cmd === 'nsenter' ? 'util-linux' : 'iproute2'})`, 0));
      if (e.killed) return reject(new BatchError(`ip -batch timed out after ${CMD_TIMEOUT_MS} ms`, 0));
      const text = String(stderr);
      const n = Number(/Command failed -:(\d+)/.exec(text)?.[1] ?? 0);
      const first = text.trim().split('\n')[0] || e.message;
      reject(new BatchError(`ip ${lines[n - 1]?.slice(0, 3).join(' ') ?? '-batch'}: ${first}`, n));
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(lines.map((l) => l.join(' ')).join('\n') + '\n');
  });
}

export const ip = (...args: string[]): Promise<string> => run('ip', args);

/**
 * [IPv6] Turn the host's own IPv6 off on a link of ours (bridge, TAP, host veth end):
 * bridged IPv6 frames pass regardless; the host then sends no router solicitations,
 * MLD reports or DAD probes into the overlay. Best effort (no IPv6 in the kernel: nothing to do).
 */
export async function hostIpv6Off(dev: string): Promise<void> {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(dev)) return;
  await writeFile(`/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`, '1').catch(() => undefined);
}

/**
 * [IPv6] `weave expose` with --ipalloc-range6: put the host on the IPv6 overlay through
 * the bridge with exactly `cidrs6` (link-local fe80::IPv4/64 and the derived global
 * ones, ipam/ipv6.ts): no kernel-made EUI-64 link-local (addrgenmode none, any old one
 * flushed), no router advertisements taken, no DAD (unique by construction). An empty
 * list turns the host's IPv6 on the bridge off again (hostIpv6Off).
 * @throws NetdevError from `ip` when an address cannot be added
 */
export async function bridgeIpv6(dev: string, cidrs6: readonly string[], drop: readonly string[] = []): Promise<void> {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(dev)) return;
  for (const c of drop) await ip('addr', 'del', c, 'dev', dev).catch(() => undefined);
  if (!cidrs6.length) return hostIpv6Off(dev);
  await ip('link', 'set', 'dev', dev, 'addrgenmode', 'none');
  for (const [k, v] of [['accept_ra', '0'], ['accept_dad', '0'], ['disable_ipv6', '0']] as const) {
    await writeFile(`/proc/sys/net/ipv6/conf/${dev}/${k}`, v);
  }
  const have = await ip('-6', '-o', 'addr', 'show', 'dev', dev, 'scope', 'link');
  for (const m of have.matchAll(/inet6 (fe80:\S+)/g)) if (!cidrs6.includes(m[1]!)) await ip('addr', 'del', m[1]!, 'dev', dev).catch(() => undefined);
  for (const c of cidrs6) await ip('addr', 'replace', c, 'dev', dev, 'nodad');
}

/**
 * [IPv6] Give an interface that another program moved into a namespace (Docker's
 * plugin veth, renamed ethweN) the overlay's link-local address instead of the kernel's:
 * find it by MAC, then addrgenmode none, RAs off, every other fe80:: address deleted and
 * `ll6` (fe80::a.b.c.d/64, ipam/ipv6.ts) added without DAD. One `ip -o link` per poll,
 * then one sysctl and one `ip -batch`.
 * @param nsPath the namespace file (validated by the caller; passed to nsenter as argv)
 * @param mac the interface's MAC (lower-case aa:bb:..)
 * @returns the interface name, or undefined when no interface had the MAC
 * @throws NetdevError/BatchError when the interface was found but could not be set up
 */
export async function settleLinkLocal(nsPath: string, mac: string, ll6: string): Promise<string | undefined> {
  const links = await ipIn(nsPath, '-o', 'link', 'show');
  let ifname: string | undefined;
  for (const line of links.split('\n')) {
    const m = /^\d+: ([A-Za-z0-9_.-]{1,15})(?:@\S+)?: .* link\/ether ([0-9a-f:]{17}) /.exec(line);
    if (m && m[2] === mac.toLowerCase()) ifname = m[1];
  }
  if (!ifname) return undefined;
  await ipv6Sysctls(nsPath, ifname);
  const have = await ipIn(nsPath, '-6', '-o', 'addr', 'show', 'dev', ifname, 'scope', 'link');
  const stale = [...have.matchAll(/inet6 (fe80:\S+)/g)].map((m) => m[1]!).filter((c) => c !== ll6);
  await ipBatch(nsPath, [
    ['link', 'set', 'dev', ifname, 'addrgenmode', 'none'],
    ...stale.map((c) => ['address', 'del', c, 'dev', ifname!]),
    ['address', 'replace', ll6, 'dev', ifname, 'nodad'],
  ]);
  return ifname;
}

/** `ip ...` inside the network namespace at nsPath (a /proc/PID/ns/net or /var/run/netns/NAME file). */
export const ipIn = (nsPath: string, ...args: string[]): Promise<string> => run('nsenter', [`--net=${nsPath}`, '--', 'ip', ...args]);

export async function linkExists(name: string): Promise<boolean> {
  try {
    await ip('link', 'show', 'dev', name);
    return true;
  } catch {
    return false;
  }
}

/** Create the bridge if missing (reuse an existing one, as Weave does), bring it up. */
export async function ensureBridge(mtu: number): Promise<void> {
  // [scale, issue #20] One `ip -batch` (was up to 4 forks of the router): create, set the
  // MTU, up. If the bridge exists already (line 1 fails), reuse it with a second batch.
  // The bridge takes the minimum MTU of its ports; setting it keeps an empty bridge sane.
  const mtuLine = ['link', 'set', 'dev', BRIDGE, 'mtu', String(mtu)];
  const upLine = ['link', 'set', 'dev', BRIDGE, 'up'];
  try {
    await ipBatch(undefined, [['link', 'add', 'name', BRIDGE, 'type', 'bridge'], mtuLine, upLine]);
    return;
  } catch (err) {
    if (!(err instanceof BatchError) || err.line === 0) throw err;
    if (err.line === 1 && !(await linkExists(BRIDGE))) throw err;
  }
  // An MTU the bridge refuses is not fatal (as before): only `up` must succeed.
  await ipBatch(undefined, [mtuLine, upLine]).catch(async (err: unknown) => {
    if (err instanceof BatchError && err.line === 1) await ip(...upLine);
    else throw err;
  });
}

/** Enslave the router's TAP to the bridge with a long queue (the default 1000 drops bursts), one `ip` exec. */
export async function setupTap(name: string, mtu: number): Promise<void> {
  await ip('link', 'set', 'dev', name, 'mtu', String(mtu), 'txqueuelen', '10000', 'master', BRIDGE, 'up');
}

/** Resolve a CLI target to its network namespace file. */
export function targetNetns(target: string): string {
  if (target.startsWith('netns:')) {
    const p = target.slice('netns:'.length);
    if (!p.startsWith('/')) throw new NetdevError(`bad target "${target}": netns: needs an absolute path like netns:/var/run/netns/c1`);
    if (!existsSync(p)) throw new NetdevError(`target ${target} not found: no such network namespace file`);
    return p;
  }
  if (target.startsWith('pid:')) {
    const pid = Number(target.slice(4));
    if (!Number.isInteger(pid) || pid <= 0) throw new NetdevError(`bad target "${target}": pid: needs a process id`);
    const p = `/proc/${pid}/ns/net`;
    if (!existsSync(p)) throw new NetdevError(`target ${target} not found: no such process`);
    return p;
  }
  throw new NetdevError(`target ${target} is not netns:PATH or pid:PID`);
}

/** Host-end veth name for an endpoint id: `vethwepl` + 7 chars of a hash (≤ 15 chars). */
export function hostVethName(id: string): string {
  return 'vethwepl' + createHash('sha1').update(id).digest('hex').slice(0, 7);
}

/** What attachVeth does beyond addresses (all optional). */
export interface VethOptions {
  /** On-link routes on the interface before it carries traffic (weaveDNS's "169.254.53.53/32"). */
  routes?: string[];
  /** Container-side interface name (default `ethwe`; a CNI ADD's CNI_IFNAME, e.g. eth0). */
  ifname?: string;
  /** Hairpin mode on the host end (a pod reaching itself through a service: CNI `hairpinMode`). */
  hairpin?: boolean;
  /** A default route via this address (given the addresses attached), if it returns one. */
  gateway?: (cidrs: string[]) => string | undefined;
  /** [IPv6] IPv6 CIDRs to add without DAD (--ipalloc-range6: link-local then global, ipam/ipv6.ts). */
  v6?: string[];
}

/** A random locally administered unicast MAC (IEEE 802: bit 1 of the first octet set, bit 0 clear). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0] & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * Give the namespace an `ethwe` (or `opts.ifname`) on the bridge and add the addresses.
 * Returns the MAC of the container's interface.
 *
 * Traffic must not flow before `beforeUp` (the isolation filters for the port) has run,
 * nor before the routes and addresses are in (weavewait starts a container's process once
 * its interface is RUNNING). A veth carries frames only when both ends are up, so the
 * host end comes up last, after both.
 *
 * A new interface takes two execs (freshVeth): one `ip -batch` in the namespace creates
 * the pair there with a MAC of ours (so nothing needs reading back), sends the host end to
 * our namespace by PID (works for any namespace file), adds addresses, brings the
 * container end up and adds the routes; `beforeUp` runs meanwhile (the filters need only
 * the port's name and our MAC); once both are done, one `ip -batch` here enslaves the
 * host end, sets hairpin and brings it up. An interface that exists already
 * (a repeated attach, re-attachment after a restart) or a fast path that failed goes
 * through the step-by-step path below, which is idempotent.
 *
 * `opts.v6` (with --ipalloc-range6, issue #21): IPv6 CIDRs ("fe80::a20:105/64",
 * "fd00:77::a20:105/120"). IPv6 is turned on for the interface with no kernel-made
 * link-local and no router advertisements, and the addresses are added `nodad` (usable at
 * once: they are unique by derivation from IPAM's IPv4 ones), before the host end comes
 * up. That costs two more execs in the namespace (a sysctl, an `ip -batch`).
 */
export async function attachVeth(id: string, nsPath: string, cidrs: string[], mtu: number, beforeUp?: (mac: string) => Promise<void>, opts: VethOptions = {}): Promise<string> {
  const fresh = await freshVeth(id, nsPath, cidrs, mtu, beforeUp, opts);
  if (fresh !== undefined) return fresh;
  const ifname = opts.ifname ?? CONTAINER_IFNAME;
  const routes = opts.routes ?? [];
  const v6 = opts.v6 ?? [];
  const host = hostVethName(id);
  const hasEthwe = await ipIn(nsPath, 'link', 'show', 'dev', ifname).then(() => true, () => false);
  if (!hasEthwe) {
    if (await linkExists(host)) await ip('link', 'del', 'dev', host).catch(() => undefined);
    await ipIn(nsPath, 'link', 'add', 'name', ifname, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', host, 'mtu', String(mtu), 'netns', String(process.pid));
  }
  const hostExists = await linkExists(host);
  // [IPv6] addresses go in after the interface is up, so the host end comes up last then too.
  const late = routes.length > 0 || v6.length > 0;
  if (hostExists) {
    await ip('link', 'set', 'dev', host, 'master', BRIDGE);
    if (v6.length) await hostIpv6Off(host);
    if (opts.hairpin) await ip('link', 'set', 'dev', host, 'type', 'bridge_slave', 'hairpin', 'on');
    if (!late) await ip('link', 'set', 'dev', host, 'up');
  }
  for (const c of cidrs) {
    await ipIn(nsPath, 'addr', 'replace', c, 'dev', ifname);
  }
  if (v6.length) await ipv6On(nsPath, ifname);
  // Filters for the port go in before the container's interface comes up (weavewait
  // starts the container's process once it is up), so its first frames pass.
  const mac = await endpointMac(nsPath, ifname);
  if (beforeUp) await beforeUp(mac);
  await ipIn(nsPath, 'link', 'set', 'dev', ifname, 'up');
  if (late) {
    for (const r of routes) await ipIn(nsPath, 'route', 'replace', r, 'dev', ifname, 'scope', 'link');
    // [IPv6] a link-local the kernel made before (re-attach of an older interface) goes.
    if (v6.length) await ipBatch(nsPath, [...(hasEthwe ? [['address', 'flush', 'dev', ifname, 'scope', 'link']] : []), ...v6Lines(v6, ifname)]);
    if (hostExists) await ip('link', 'set', 'dev', host, 'up');
  }
  const gw = opts.gateway?.(cidrs);
  if (gw) await ipIn(nsPath, 'route', 'replace', 'default', 'via', gw, 'dev', ifname);
  return mac;
}

/**
 * [IPv6] IPv6 on for `ifname` in the namespace (a container may have it off by default),
 * no router advertisements taken or solicited (the overlay has no routers; the bridge
 * rules drop RAs anyway), and no kernel-made (EUI-64) link-local address: ours is
 * fe80::<IPv4> (ipam/ipv6.ts).
 */
async function ipv6On(nsPath: string, ifname: string): Promise<void> {
  await ipv6Sysctls(nsPath, ifname);
  await ipIn(nsPath, 'link', 'set', 'dev', ifname, 'addrgenmode', 'none');
}

/** [IPv6] The interface's sysctls of ipv6On (one exec). */
const ipv6Sysctls = (nsPath: string, ifname: string): Promise<string> =>
  run('nsenter', [`--net=${nsPath}`, '--', 'sysctl', '-q', '-w', `net.ipv6.conf.${ifname}.disable_ipv6=0`, `net.ipv6.conf.${ifname}.accept_ra=0`]);

/** [IPv6] `ip -batch` lines adding the derived addresses without DAD. */
const v6Lines = (v6: string[], ifname: string): string[][] => v6.map((c) => ['address', 'replace', c, 'dev', ifname, 'nodad']);

/**
 * attachVeth's fast path for an interface that does not exist yet (see there). Returns
 * the MAC, or undefined when the pair could not be created (`ifname` exists in the
 * namespace, or a stale host end has the name): the caller then takes the slow path,
 * which copes with both. A failure after the creation is an error.
 */
async function freshVeth(id: string, nsPath: string, cidrs: string[], mtu: number, beforeUp: ((mac: string) => Promise<void>) | undefined, opts: VethOptions): Promise<string | undefined> {
  const ifname = opts.ifname ?? CONTAINER_IFNAME;
  const host = hostVethName(id);
  const mac = randomMac();
  const gw = opts.gateway?.(cidrs);
  const v6 = opts.v6 ?? [];
  const m = String(mtu);
  mark('netdev prep');
  // The filters need only the port's name and MAC, both known now: they go in while the
  // namespace side is made (the host end stays down and off the bridge until both are done).
  const filters = (beforeUp ? beforeUp(mac) : Promise.resolve()).then(() => mark('nft port rules (in parallel)'));
  filters.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
  const nl = netlink();
  if (nl) {
    // [issue #15] The same steps as the `ip -batch` lines below, as netlink messages from a
    // worker thread (router/host/netlink.ts): no fork.
    try {
      await nl.vethPod({
        ns: nsPath, ifname, host, mac: macBytes(mac), mtu, v4: cidrs,
        routes: (opts.routes ?? []).map((r) => (r.includes('/') ? r : `${r}/32`)),
        ...(gw ? { gw } : {}), ...(v6.length ? { v6 } : {}),
      });
      mark('pod netlink (veth, addrs, up, routes)');
    } catch (err) {
      await filters.catch(() => undefined);
      // Nothing made yet (the namespace could not be entered, the names exist, a refused
      // argument): the slow path copes and says why. Later: the host end goes, and we fail.
      const step = (err as NetlinkFailure).step;
      if (step === undefined || step === 'create' || /namespace|socket/.test(step)) return undefined;
      await ip('link', 'del', 'dev', host).catch(() => undefined);
      throw new NetdevError((err as Error).message);
    }
    try {
      if (v6.length) await hostIpv6Off(host);
      await filters;
      mark('nft port rules (wait)');
      await nl.vethHost({ host, bridge: BRIDGE, hairpin: !!opts.hairpin });
      mark('host netlink (bridge, up)');
    } catch (err) {
      await ip('link', 'del', 'dev', host).catch(() => undefined);
      throw (err as NetlinkFailure).step !== undefined ? new NetdevError((err as Error).message) : err;
    }
    return mac;
  }
  try {
    // The host end arrives here down and on no bridge, so nothing flows while the rest
    // runs; the routes need the container end up ("linkdown" until the host end is up).
    const create = [
      ['link', 'add', 'name', ifname, 'address', mac, 'mtu', m, 'type', 'veth', 'peer', 'name', host, 'mtu', m, 'netns', String(process.pid)],
      ...cidrs.map((c) => ['addr', 'replace', c, 'dev', ifname]),
    ];
    const rest = [
      ['link', 'set', 'dev', ifname, 'up'],
      ...(opts.routes ?? []).map((r) => ['route', 'replace', r, 'dev', ifname, 'scope', 'link']),
      // onlink: the gateway is in the interface's subnet, whose route is "linkdown" for now.
      ...(gw ? [['route', 'replace', 'default', 'via', gw, 'dev', ifname, 'onlink']] : []),
    ];
    if (!v6.length) {
      await ipBatch(nsPath, [...create, ...rest]);
    } else {
      // [IPv6] the interface's IPv6 settings need it to exist, and must be in before it
      // first comes up (else the kernel makes its own link-local address).
      await ipBatch(nsPath, create);
      await ipv6Sysctls(nsPath, ifname);
      await ipBatch(nsPath, [['link', 'set', 'dev', ifname, 'addrgenmode', 'none'], ...rest, ...v6Lines(v6, ifname)]);
    }
    mark('pod ip -batch (veth, addrs, up, routes)');
  } catch (err) {
    await filters.catch(() => undefined);
    // The pair could not be made (line 1), or we cannot tell how far ip got (no line: the
    // namespace is gone, a timeout): the slow path copes with whatever exists (and puts
    // the filters in again), and says why.
    if (err instanceof BatchError && err.line <= 1) return undefined;
    await ip('link', 'del', 'dev', host).catch(() => undefined);
    throw err;
  }
  try {
    if (v6.length) await hostIpv6Off(host);
    await filters;
    mark('nft port rules (wait)');
    await ipBatch(undefined, [
      ['link', 'set', 'dev', host, 'master', BRIDGE],
      ...(opts.hairpin ? [['link', 'set', 'dev', host, 'type', 'bridge_slave', 'hairpin', 'on']] : []),
      ['link', 'set', 'dev', host, 'up'],
    ]);
    mark('host ip -batch (bridge, up)');
  } catch (err) {
    await ip('link', 'del', 'dev', host).catch(() => undefined);
    throw err;
  }
  return mac;
}

/** MAC of the container end (`ifname`, default ethwe) inside nsPath; '' if it has none. */
export async function endpointMac(nsPath: string, ifname = CONTAINER_IFNAME): Promise<string> {
  const out = await ipIn(nsPath, '-o', 'link', 'show', 'dev', ifname);
  const m = /link\/ether ([0-9a-f:]{17})/.exec(out);
  return m ? m[1] : '';
}

/** Remove some addresses, or (none given) the whole ethwe (or `ifname`). */
export async function detachVeth(id: string, nsPath: string | undefined, cidrs: string[] | undefined, ifname = CONTAINER_IFNAME, v6?: string[]): Promise<void> {
  if (cidrs && cidrs.length && nsPath) {
    for (const c of cidrs) await ipIn(nsPath, 'addr', 'del', c, 'dev', ifname).catch(() => undefined);
    // [IPv6] the derived addresses go with their IPv4 ones.
    for (const c of v6 ?? []) await ipIn(nsPath, 'addr', 'del', c, 'dev', ifname).catch(() => undefined);
    return;
  }
  const host = hostVethName(id);
  // [issue #16] rtnetlink when the addon is there: forking `ip` twice per detach stalled
  // the router's event loop under churn.
  const nl = netlink();
  const deleted = nl ? await nl.linkDel({ host }).catch(() => false)
    : (await linkExists(host)) && (await ip('link', 'del', 'dev', host).then(() => true, () => false));
  if (!deleted && nsPath) await ipIn(nsPath, 'link', 'del', 'dev', ifname).catch(() => undefined);
}

/** Remove the bridge and every vethwepl* link we made (weave reset). */
export async function resetLinks(): Promise<void> {
  const out = await ip('-o', '-d', 'link', 'show').catch(() => '');
  for (const line of out.split('\n')) {
    // [fastdp] also its VXLAN devices (router/overlay/fastdp.ts; vxlan6-/vxlanhb6- over IPv6), recognised by name and VNI.
    const m = /^\d+: (vethwepl[0-9a-f]+|vxlan(?:hb)?6?-\d+)[@:]/.exec(line);
    if (m && (m[1].startsWith('vethwepl') || / vxlan id 678[45] /.test(line))) await ip('link', 'del', 'dev', m[1]).catch(() => undefined);
  }
  if (await linkExists(TAP_NAME)) await ip('link', 'del', 'dev', TAP_NAME).catch(() => undefined);
  if (await linkExists(BRIDGE)) await ip('link', 'del', 'dev', BRIDGE).catch(() => undefined);
}
