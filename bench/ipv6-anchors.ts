/**
 * The anchors of `npm run bench:ipv6` (bench/ipv6-bench.ts): the same IPv4/IPv6
 * combinations carried by something that is not tsweave, measured in the same rounds, so
 * the IPv6 cost that the kernel (or any overlay built like ours) pays anyway can be told
 * from the cost tsweave adds.
 *
 * - `kernel`: two plain namespaces on a Linux bridge, IPv4 and IPv6 (no encapsulation) —
 *   the two endpoint stacks' own IPv6 cost.
 * - `vxlan`: kernel VXLAN (RFC 7348) built into the bench's own hosts and containers:
 *   per host one bridge whose VXLAN ports run over the IPv4 underlay and one whose run
 *   over the IPv6 underlay, every container a veth into each, carrying overlay IPv4 and
 *   IPv6 — what tsweave's fast datapath is made of, without tsweave.
 * - `tinc`: tinc 1.0 in switch mode (TAP, Ethernet frames in UDP, Cipher = none), built
 *   into the same hosts and containers: one tinc network over the IPv4 underlay and one
 *   over the IPv6 underlay, each host's TAP a port of a bridge with its container's veth,
 *   carrying overlay IPv4 and IPv6 — a userspace overlay laid out like the sleeve
 *   (container veth, bridge, TAP, a daemon that sends UDP from an unconnected socket),
 *   without tsweave.
 *
 * The plain anchor is two namespaces `<prefix>ka`/`kb` joined through a bridge in `kbr`,
 * 10.9.0.1–2/24 and fd99:0::1–2/64, with no route anywhere else. The hosted anchors (since
 * session 47) share everything with tsweave's measurement but the data path: the source
 * and far containers, the hosts and their kernels' settings, the underlay, and the far
 * host each underlay family reaches as the bench alternates placement. Every namespace is
 * the Testbed's, whose destroy() kills every process in them (tincd included) and deletes
 * them, and with them every bridge, VXLAN device and veth made here.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { must, sh, sleep, type Testbed } from '../test/e2e/lib/testbed.js';
import type { Combo } from './ipv6-summary.js';

/** An anchor ready to be pinged: the namespace to ping from and the address per combination. */
export interface Anchor {
  /** the anchor's name, also the variant of its samples (ipv6-summary.ts ANCHOR_*) */
  name: string;
  /** namespace the pings are sent from */
  ns: string;
  /** the target address of each combination it carries (the plain anchor: v4/v4 and v4ul/v6 only) */
  targets: Partial<Record<Combo, string>>;
}

/**
 * Two namespaces a and b on a bridge in a third, with underlay 10.9.N.x/24 and fd99:N::x/64
 * (x = 1 for a, 2 for b), IPv6 without duplicate address detection, checked by ping.
 * @returns the names of a and b
 * @throws Error when a command fails or b does not answer on both families
 */
async function pair(bed: Testbed, tag: string, n: number): Promise<[string, string]> {
  const [a, b, br] = ['a', 'b', 'br'].map((s) => `${bed.prefix}${tag}${s}`) as [string, string, string];
  for (const ns of [a, b, br]) {
    await must('ip', ['netns', 'add', ns]);
    bed.namespaces.push(ns);
  }
  await must('ip', ['-n', br, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
  await must('ip', ['-n', br, 'link', 'set', 'br0', 'up']);
  await sh('ip', ['netns', 'exec', br, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0']);
  for (const [i, ns] of [[1, a], [2, b]] as const) {
    await must('ip', ['-n', br, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await must('ip', ['-n', br, 'link', 'set', `v${i}`, 'master', 'br0', 'up']);
    await must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.eth0.accept_dad=0']);
    await must('ip', ['-n', ns, 'addr', 'add', `10.9.${n}.${i}/24`, 'dev', 'eth0']);
    await must('ip', ['-n', ns, 'addr', 'add', `fd99:${n}::${i}/64`, 'dev', 'eth0', 'nodad']);
    await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  for (const to of [`10.9.${n}.2`, `fd99:${n}::2`]) await mustAnswer(a, to, `${tag} anchor underlay`);
  return [a, b];
}

/**
 * Pings `to` from `ns` until it answers (up to `tries` single pings, 1 s each).
 * @throws Error naming the anchor and address when it never answers
 */
async function mustAnswer(ns: string, to: string, what: string, tries = 10): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if ((await sh('ip', ['netns', 'exec', ns, 'ping', '-n', '-c', '1', '-W', '1', to], { timeoutMs: 5000 })).code === 0) return;
    await sleep(200);
  }
  throw new Error(`${what}: ${to} does not answer from ${ns}`);
}

/**
 * The plain anchor: IPv4 and IPv6 between two namespaces on a bridge, no encapsulation.
 * Its combinations are v4/v4 (IPv4) and v4ul/v6 (IPv6; "overlay" IPv6 on nothing).
 */
export async function plainAnchor(bed: Testbed): Promise<Anchor> {
  const [a] = await pair(bed, 'k', 0);
  return { name: 'kernel', ns: a, targets: { 'v4/v4': '10.9.0.2', 'v4ul/v6': 'fd99:0::2' } };
}

/**
 * The bench's own hosts and containers, which the hosted anchors are built into: per
 * host (h1, h2, h3) its namespace and underlay addresses, per host its container's
 * namespace (c1 on h1 is the one the pings go from).
 */
export interface AnchorSite {
  hosts: Array<{ ns: string; ip4: string; ip6: string }>;
  containers: string[];
}

/**
 * An anchor built into the bench's own hosts and containers: `targets(v4, v6)` names the
 * combinations' addresses when far host number `v4` (1-based, 2 or 3) is the one reached
 * over the IPv4 underlay and `v6` the one over IPv6, as the bench's placement of the
 * routers alternates (ipv6-bench.ts setUp).
 */
export interface HostedAnchor {
  name: string;
  ns: string;
  targets(v4: number, v6: number): Partial<Record<Combo, string>>;
}

/** Overlay subnets of the hosted anchors' two links per container: over the IPv4 underlay (`l4`) and over the IPv6 one (`l6`). */
const HOSTED = {
  vxlan: { l4: 48, l6: 46 },
  tinc: { l4: 54, l6: 56 },
} as const;

/** Targets of a hosted anchor whose links carry 10.O.0.x/24 and fdO::x/64 (x = host number). */
const hostedTargets = (o: { l4: number; l6: number }) => (v4: number, v6: number): Partial<Record<Combo, string>> => ({
  'v4/v4': `10.${o.l4}.0.${v4}`, 'v4ul/v6': `fd${o.l4}::${v4}`, 'v6ul/v4': `10.${o.l6}.0.${v6}`, 'v6/v6': `fd${o.l6}::${v6}`,
});

/**
 * Gives container `c` a veth `dev` whose host end `hostDev` is a port of bridge `br` in
 * host namespace `h`, with 10.O.0.x/24 and fdO::x/64 (IPv6 on for this interface only,
 * no duplicate address detection) and an MTU that leaves room for either underlay's
 * header. The bridge must exist.
 */
async function link(h: string, br: string, hostDev: string, c: string, dev: string, o: number, x: number): Promise<void> {
  await must('ip', ['-n', h, 'link', 'add', hostDev, 'type', 'veth', 'peer', 'name', dev, 'netns', c]);
  await must('ip', ['-n', h, 'link', 'set', hostDev, 'master', br, 'up']);
  await must('ip', ['netns', 'exec', c, 'sysctl', '-qw', `net.ipv6.conf.${dev}.disable_ipv6=0`, `net.ipv6.conf.${dev}.accept_dad=0`]);
  await must('ip', ['-n', c, 'link', 'set', dev, 'mtu', '1376']);
  await must('ip', ['-n', c, 'addr', 'add', `10.${o}.0.${x}/24`, 'dev', dev]);
  await must('ip', ['-n', c, 'addr', 'add', `fd${o}::${x}/64`, 'dev', dev, 'nodad']);
  await must('ip', ['-n', c, 'link', 'set', dev, 'up']);
}

/** A bridge `br` in `h` without multicast snooping or IPv6 of its own (like `weave` with --ipalloc-range6). */
async function bridge(h: string, br: string): Promise<void> {
  await must('ip', ['-n', h, 'link', 'add', br, 'type', 'bridge', 'mcast_snooping', '0']);
  await sh('ip', ['netns', 'exec', h, 'sysctl', '-qw', `net.ipv6.conf.${br}.disable_ipv6=1`]);
  await must('ip', ['-n', h, 'link', 'set', br, 'up']);
}

/**
 * Kernel VXLAN (RFC 7348) built into the bench's own hosts and containers, laid out like
 * tsweave's fast datapath: per host a bridge bx4 whose VXLAN ports run over the IPv4
 * underlay and a bridge bx6 whose run over the IPv6 one; h1 has one point-to-point VXLAN
 * device per far host and family (`local`/`remote`, learning off, UDP port 4789, VNI 42,
 * 43, 62, 63 for h2/h3 over IPv4/IPv6), each far host the matching one. Every container
 * gets a veth into each bridge: xa4 (10.48.0.x/24, fd48::x/64) and xa6 (10.46.0.x/24,
 * fd46::x/64). So the anchor's pings leave from the same container, cross the same
 * hosts' kernels and reach the same far container as tsweave's, through veth, bridge,
 * VXLAN, underlay and back: only the router's set-up (its bridge, devices, FDB and
 * filters) differs. Session 47 found that a separate pair of namespaces (this anchor
 * until then) paid 0.5–1.5 µs for the IPv6 underlay where kernel VXLAN built into these
 * hosts pays as much as fastdp does. Our `bridge tsweave` table's base chains see the
 * anchor's frames too (two rules that do not match, per hook).
 * @throws Error when a command fails or a target does not answer
 */
export async function hostedVxlanAnchor(site: AnchorSite): Promise<HostedAnchor> {
  const [h1] = site.hosts;
  const o = HOSTED.vxlan;
  for (const [i, h] of site.hosts.entries()) {
    for (const fam of [4, 6] as const) {
      const br = `bx${fam}`;
      await bridge(h.ns, br);
      const pairs = i === 0 ? [2, 3] : [i + 1];
      for (const far of pairs) {
        const [local, remote] = i === 0 ? [h1!, site.hosts[far - 1]!] : [h, h1!];
        const addr = (x: { ip4: string; ip6: string }): string => (fam === 4 ? x.ip4 : x.ip6);
        const dev = `x${fam}${far}`;
        await must('ip', ['-n', h.ns, 'link', 'add', dev, 'type', 'vxlan', 'id', `${fam}${far}`, 'local', addr(local), 'remote', addr(remote), 'dstport', '4789', 'nolearning']);
        await must('ip', ['-n', h.ns, 'link', 'set', dev, 'master', br, 'up']);
      }
      await link(h.ns, br, `px${fam}`, site.containers[i]!, `xa${fam}`, fam === 4 ? o.l4 : o.l6, i + 1);
    }
  }
  const targets = hostedTargets(o);
  for (const t of [...Object.values(targets(2, 3)), ...Object.values(targets(3, 2))]) await mustAnswer(site.containers[0]!, t!, 'vxlan anchor');
  return { name: 'vxlan', ns: site.containers[0]!, targets };
}

/** The tinc anchor's two networks: name, underlay family, port, overlay subnet octet. */
const TINC_NETS = [
  { net: 't4', family: 'ipv4', port: 6551, o: HOSTED.tinc.l4 },
  { net: 't6', family: 'ipv6', port: 6552, o: HOSTED.tinc.l6 },
] as const;

/**
 * tinc 1.0 (tincd, Debian package tinc) in switch mode, Cipher = none, Digest = none,
 * built into the bench's own hosts and containers and laid out like the sleeve: two tinc
 * networks, t4 over the IPv4 underlay and t6 over the IPv6 one, each with one daemon per
 * host (nodes n1–n3; n2 and n3 ConnectTo n1), whose TAP (named like its network) is a port
 * of bridge bt4 / bt6; every container gets a veth into each bridge, et4 (10.54.0.x/24,
 * fd54::x/64) and et6 (10.56.0.x/24, fd56::x/64). The pings go container to container,
 * through veth, bridge, TAP, tincd, underlay and back, as the sleeve's do, from and to the
 * same containers on the same hosts (session 47; before, the anchor was a pair of
 * namespaces of its own). Waits until PMTU probing between n1 and each far node has
 * converged in both directions (tinc sends frames above the probed minimum over its TCP
 * meta connection until then; the node dump SIGUSR2 writes to the log says
 * "pmtu P (min A max B)"), at most 60 s.
 * @param dir a directory of the bench's own for the daemons' configuration and logs
 * @param background starts a process that the testbed kills at the end
 * @throws Error when tincd is missing, a key cannot be made, or a network never answers
 */
export async function hostedTincAnchor(site: AnchorSite, dir: string, background: (args: string[]) => void): Promise<HostedAnchor> {
  if ((await sh('tincd', ['--version'])).code !== 0) throw new Error('bench:ipv6 needs tincd for its tinc anchor (apt-get install tinc; scripts/setup.sh installs it)');
  const n = site.hosts.length;
  for (const [i, h] of site.hosts.entries()) {
    for (const { net, o } of TINC_NETS) {
      // The bridge tinc-up puts the TAP on, and the container's veth on it.
      await bridge(h.ns, `b${net}`);
      await link(h.ns, `b${net}`, `q${net}`, site.containers[i]!, `e${net}`, o, i + 1);
    }
  }
  const conf = (i: number, net: string): string => path.join(dir, `n${i + 1}-${net}`);
  for (const { net, family, port } of TINC_NETS) {
    for (let i = 0; i < n; i++) {
      const c = conf(i, net);
      mkdirSync(path.join(c, 'hosts'), { recursive: true });
      const h = site.hosts[i]!;
      const addr = family === 'ipv4' ? h.ip4 : h.ip6;
      writeFileSync(path.join(c, 'tinc.conf'), [
        `Name = n${i + 1}`, 'Mode = switch', 'DeviceType = tap', `Interface = ${net}`, `AddressFamily = ${family}`,
        `BindToAddress = ${addr}`, `Port = ${port}`, ...(i > 0 ? ['ConnectTo = n1'] : []), '',
      ].join('\n'));
      writeFileSync(path.join(c, 'tinc-up'), [
        '#!/bin/sh',
        `sysctl -qw net.ipv6.conf.${net}.disable_ipv6=1`,
        `ip link set ${net} master b${net} up`, '',
      ].join('\n'), { mode: 0o755 });
      writeFileSync(path.join(c, 'hosts', `n${i + 1}`), [`Address = ${addr}`, `Port = ${port}`, 'Cipher = none', 'Digest = none', ''].join('\n'));
      const k = await sh('tincd', ['-c', c, '-K', '2048'], { input: '', timeoutMs: 60_000 });
      if (k.code !== 0) throw new Error(`tinc anchor: key generation failed: ${k.stderr.trim().split('\n')[0]?.slice(0, 200) ?? ''}`);
    }
    // Every node knows every other's host file (public key, address).
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      if (i !== j) writeFileSync(path.join(conf(i, net), 'hosts', `n${j + 1}`), readFileSync(path.join(conf(j, net), 'hosts', `n${j + 1}`)));
    }
    for (let i = 0; i < n; i++) {
      const c = conf(i, net);
      background(['ip', 'netns', 'exec', site.hosts[i]!.ns, 'tincd', '-c', c, '-D', '-d1', `--pidfile=${path.join(c, 'pid')}`, `--logfile=${path.join(c, 'log')}`]);
    }
  }
  const targets = hostedTargets(HOSTED.tinc);
  for (const t of [...Object.values(targets(2, 3)), ...Object.values(targets(3, 2))]) await mustAnswer(site.containers[0]!, t!, 'tinc anchor', 30);
  // PMTU probing: until min = max (≠ 0) between n1 and each far node, both ways, a frame
  // above the probed minimum would travel over TCP.
  const converged = (c: string, peer: string): boolean => {
    let log = '';
    try {
      log = readFileSync(path.join(c, 'log'), 'utf8');
    } catch { /* not yet written */ }
    // With --logfile each line starts with a time stamp and `tinc[PID]:`.
    const lines = log.split('\n').filter((l) => new RegExp(`(?:^|\\]:)\\s*${peer} at .*pmtu`).test(l));
    const m = /pmtu (\d+) \(min (\d+) max (\d+)/.exec(lines[lines.length - 1] ?? '');
    return m !== null && m[2] === m[3] && m[2] !== '0';
  };
  const checks = TINC_NETS.flatMap(({ net }) => Array.from({ length: n - 1 }, (_, k) => k + 1).flatMap((far) => [
    { c: conf(0, net), peer: `n${far + 1}` }, { c: conf(far, net), peer: 'n1' },
  ]));
  for (let t = 0; ; t++) {
    for (const { net } of TINC_NETS) {
      for (let i = 0; i < n; i++) {
        const pid = Number(readFileSync(path.join(conf(i, net), 'pid'), 'utf8').trim().split(/\s+/)[0]);
        if (Number.isInteger(pid) && pid > 1) {
          try {
            process.kill(pid, 'SIGUSR2');
          } catch { /* gone: the check below fails */ }
        }
      }
    }
    await sleep(1000);
    if (checks.every(({ c, peer }) => converged(c, peer))) break;
    if (t >= 60) throw new Error(`tinc anchor: PMTU probing did not converge within 60 s (logs in ${dir})`);
  }
  return { name: 'tinc', ns: site.containers[0]!, targets };
}
