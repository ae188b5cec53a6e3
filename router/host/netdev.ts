/**
 * Host network setup through iproute2 (`ip`, `bridge`) and `nsenter`.
 *
 * Everything the router does to links goes through here: the `weave` bridge, the TAP
 * port the router captures frames from, and the veth pairs that give a container its
 * `ethwe` interface (Weave's naming: host end `vethwepl<id>`, container end `ethwe`).
 * Commands run with execFile (no shell), so names and addresses are never interpreted.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';

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

export const ip = (...args: string[]): Promise<string> => run('ip', args);

/**
 * `ip -batch -` inside the namespace at nsPath: one process for several commands (one
 * per line, e.g. "address replace fd00::1/120 dev ethwe nodad"). Rejects with a
 * NetdevError naming the first failing line (`ip` stops there).
 */
export function ipBatchIn(nsPath: string, lines: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('nsenter', [`--net=${nsPath}`, '--', 'ip', '-batch', '-'], { timeout: CMD_TIMEOUT_MS, maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const line = String(stderr).trim().split('\n')[0] || err.message;
      reject(new NetdevError(`ip -batch: ${line}`));
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(lines.join('\n') + '\n');
  });
}

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
  if (!(await linkExists(BRIDGE))) {
    try {
      await ip('link', 'add', 'name', BRIDGE, 'type', 'bridge');
    } catch (err) {
      if (!(await linkExists(BRIDGE))) throw err;
    }
  }
  // The bridge takes the minimum MTU of its ports; setting it keeps an empty bridge sane.
  await ip('link', 'set', 'dev', BRIDGE, 'mtu', String(mtu)).catch(() => undefined);
  await ip('link', 'set', 'dev', BRIDGE, 'up');
}

/** Enslave the router's TAP to the bridge with a long queue (the default 1000 drops bursts). */
export async function setupTap(name: string, mtu: number): Promise<void> {
  await ip('link', 'set', 'dev', name, 'mtu', String(mtu), 'txqueuelen', '10000');
  await ip('link', 'set', 'dev', name, 'master', BRIDGE);
  await ip('link', 'set', 'dev', name, 'up');
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

/**
 * Give the namespace an `ethwe` on the bridge (creating the veth pair if it does not
 * exist yet) and add the addresses. The pair is created inside the target namespace
 * and its host end sent back to ours by PID, which works for any namespace file.
 * Returns the MAC of the container's interface: `ifname`, default `ethwe` (a CNI ADD's
 * CNI_IFNAME, e.g. eth0).
 *
 * `routes` (e.g. weaveDNS's "169.254.53.53/32") are added on-link on that interface before
 * the container can use it: a route needs the interface up, so then the host end comes up
 * last — the interface has no carrier (is not RUNNING, which weavewait waits for) until
 * the routes are in.
 *
 * `v6` (with --ipalloc-range6, issue #21): IPv6 CIDRs ("fe80::a20:105/64",
 * "fd00:77::a20:105/120"). IPv6 is turned on for the interface with no kernel-made
 * link-local and no router advertisements, and the addresses are added `nodad` once it is
 * up, again before the host end comes up.
 */
export async function attachVeth(id: string, nsPath: string, cidrs: string[], mtu: number, beforeUp?: (mac: string) => Promise<void>, routes: string[] = [], ifname = CONTAINER_IFNAME, v6?: string[]): Promise<string> {
  const host = hostVethName(id);
  const hasEthwe = await ipIn(nsPath, 'link', 'show', 'dev', ifname).then(() => true, () => false);
  if (!hasEthwe) {
    if (await linkExists(host)) await ip('link', 'del', 'dev', host).catch(() => undefined);
    await ipIn(nsPath, 'link', 'add', 'name', ifname, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', host, 'mtu', String(mtu), 'netns', String(process.pid));
  }
  const hostExists = await linkExists(host);
  // [IPv6] addresses go in after the interface is up, so the host end comes up last then too.
  const late = routes.length > 0 || (v6?.length ?? 0) > 0;
  if (hostExists) {
    await ip('link', 'set', 'dev', host, 'master', BRIDGE);
    if (v6?.length) await hostIpv6Off(host);
    if (!late) await ip('link', 'set', 'dev', host, 'up');
  }
  for (const c of cidrs) {
    await ipIn(nsPath, 'addr', 'replace', c, 'dev', ifname);
  }
  if (v6?.length) {
    // IPv6 on for this interface (a container may have it off by default), no router
    // advertisements taken or solicited (the overlay has no routers; the policy drops RAs
    // anyway), and no kernel-made (EUI-64) link-local address: ours is fe80::<IPv4> (ipam/ipv6.ts).
    await run('nsenter', [`--net=${nsPath}`, '--', 'sysctl', '-q', '-w', `net.ipv6.conf.${ifname}.disable_ipv6=0`, `net.ipv6.conf.${ifname}.accept_ra=0`]);
    await ipIn(nsPath, 'link', 'set', 'dev', ifname, 'addrgenmode', 'none');
  }
  // Filters for the port go in before the container's interface comes up (weavewait
  // starts the container's process once it is up), so its first frames pass.
  const mac = await endpointMac(nsPath, ifname);
  if (beforeUp) await beforeUp(mac);
  await ipIn(nsPath, 'link', 'set', 'dev', ifname, 'up');
  if (late) {
    for (const r of routes) await ipIn(nsPath, 'route', 'replace', r, 'dev', ifname, 'scope', 'link');
    // [IPv6] nodad: usable at once (the address is unique by derivation from IPAM's);
    // a link-local the kernel made before (re-attach of an older interface) goes.
    if (v6?.length) {
      const lines = v6.map((c) => `address replace ${c} dev ${ifname} nodad`);
      if (hasEthwe) lines.unshift(`address flush dev ${ifname} scope link`);
      await ipBatchIn(nsPath, lines);
    }
    if (hostExists) await ip('link', 'set', 'dev', host, 'up');
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
  if (await linkExists(host)) await ip('link', 'del', 'dev', host).catch(() => undefined);
  else if (nsPath) await ipIn(nsPath, 'link', 'del', 'dev', ifname).catch(() => undefined);
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
