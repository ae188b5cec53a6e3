/**
 * The anchors of `npm run bench:ipv6` (bench/ipv6-bench.ts): the same IPv4/IPv6
 * combinations carried by something that is not tsweave, measured in the same rounds, so
 * the IPv6 cost that the kernel (or any overlay built like ours) pays anyway can be told
 * from the cost tsweave adds.
 *
 * - `kernel`: two plain namespaces on a Linux bridge, IPv4 and IPv6 (no encapsulation) —
 *   the two endpoint stacks' own IPv6 cost.
 * - `vxlan`: kernel VXLAN (RFC 7348) between two hosts, one VXLAN device over the IPv4
 *   underlay and one over the IPv6 underlay, each a port of a bridge with a container's
 *   veth, carrying overlay IPv4 and IPv6 — what tsweave's fast datapath is made of,
 *   without tsweave.
 * - `tinc`: tinc 1.0 in switch mode (TAP, Ethernet frames in UDP, Cipher = none), one tinc
 *   network over the IPv4 underlay and one over the IPv6 underlay, each TAP a port of a
 *   bridge with a container's veth, carrying overlay IPv4 and IPv6 — a userspace overlay
 *   laid out like the sleeve (container veth, bridge, TAP, a daemon that sends UDP from an
 *   unconnected socket), without tsweave.
 *
 * Each anchor is two namespaces `<prefix><tag>a`/`<tag>b` joined through a bridge in
 * `<tag>br`, underlay 10.9.N.1–2/24 and fd99:N::1–2/64 (N per anchor), with no route
 * anywhere else; the namespaces are registered with the Testbed, whose destroy() kills
 * every process in them (tincd included) and deletes them.
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
 * Kernel VXLAN, laid out like tsweave's fast datapath: per side a host namespace (a, b)
 * with VXLAN device vx4 (VNI 4, local/remote on the IPv4 underlay) on bridge br4 and vx6
 * (VNI 6, on the IPv6 underlay) on bridge br6, and a container namespace (ca, cb) with a
 * veth into each bridge — e4 (overlay 10.48.0.x/24, fd48::x/64) and e6 (10.46.0.x/24,
 * fd46::x/64). UDP port 4789, learning off, the peer as the device's default destination
 * (`remote`). The pings go container to container, through veth, bridge, VXLAN, underlay
 * and back, as fastdp's do; only tsweave (and its bridge filters) is missing.
 */
export async function vxlanAnchor(bed: Testbed): Promise<Anchor> {
  const [a, b] = await pair(bed, 'x', 1);
  const [ca, cb] = ['xca', 'xcb'].map((n) => `${bed.prefix}${n}`) as [string, string];
  for (const [i, ns, c] of [[1, a, ca], [2, b, cb]] as const) {
    const j = 3 - i;
    await must('ip', ['netns', 'add', c]);
    bed.namespaces.push(c);
    await must('ip', ['netns', 'exec', c, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    await must('ip', ['-n', c, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0']);
    await must('ip', ['-n', ns, 'link', 'add', 'vx4', 'type', 'vxlan', 'id', '4', 'local', `10.9.1.${i}`, 'remote', `10.9.1.${j}`, 'dstport', '4789', 'nolearning']);
    await must('ip', ['-n', ns, 'link', 'add', 'vx6', 'type', 'vxlan', 'id', '6', 'local', `fd99:1::${i}`, 'remote', `fd99:1::${j}`, 'dstport', '4789', 'nolearning']);
    for (const [fam, o] of [['4', 48], ['6', 46]] as const) {
      const [br, vx, e] = [`br${fam}`, `vx${fam}`, `e${fam}`];
      await must('ip', ['-n', ns, 'link', 'add', br, 'type', 'bridge', 'mcast_snooping', '0']);
      await must('ip', ['-n', ns, 'link', 'set', vx, 'master', br, 'up']);
      await must('ip', ['-n', ns, 'link', 'add', `p${fam}`, 'type', 'veth', 'peer', 'name', e, 'netns', c]);
      await must('ip', ['-n', ns, 'link', 'set', `p${fam}`, 'master', br, 'up']);
      await must('ip', ['-n', ns, 'link', 'set', br, 'up']);
      // The containers' MTU leaves room for either underlay's VXLAN header.
      await must('ip', ['-n', c, 'link', 'set', e, 'mtu', '1400']);
      await must('ip', ['-n', c, 'addr', 'add', `10.${o}.0.${i}/24`, 'dev', e]);
      await must('ip', ['-n', c, 'addr', 'add', `fd${o}::${i}/64`, 'dev', e, 'nodad']);
      await must('ip', ['-n', c, 'link', 'set', e, 'up']);
    }
  }
  const targets: Anchor['targets'] = { 'v4/v4': '10.48.0.2', 'v4ul/v6': 'fd48::2', 'v6ul/v4': '10.46.0.2', 'v6/v6': 'fd46::2' };
  for (const to of Object.values(targets)) await mustAnswer(ca, to!, 'vxlan anchor');
  return { name: 'vxlan', ns: ca, targets };
}

/** The tinc anchor's two networks: name, underlay family, port, overlay subnet octet. */
const TINC_NETS = [
  { net: 't4', family: 'ipv4', port: 6551, o: 54 },
  { net: 't6', family: 'ipv6', port: 6552, o: 56 },
] as const;

/**
 * tinc 1.0 (tincd, Debian package tinc) in switch mode, Cipher = none, Digest = none, laid
 * out like the sleeve: per side a host namespace (a, b) with one daemon per underlay family
 * (networks t4 and t6, TAP devices of the same names), each TAP a port of bridge bt4 / bt6,
 * and a container namespace (tca, tcb) with a veth into each bridge, e4 and e6, carrying
 * overlay 10.O.0.x/24 and fdO::x/64 (O = 54 for t4, 56 for t6). The pings go container to
 * container, through veth, bridge, TAP, tincd, underlay and back, as the sleeve's do
 * (session 45's anchor pinged from the TAP's own address: no bridge or veth, which over
 * IPv6 cost it less than ours cost us). Waits
 * until both directions' PMTU probing has converged (tinc sends frames above the probed
 * minimum over its TCP meta connection until then; the node dump that SIGUSR2 writes to
 * the log says "pmtu P (min A max B)"), at most 60 s.
 * @throws Error when tincd is missing, a key cannot be made, or a network never answers
 */
export async function tincAnchor(bed: Testbed): Promise<Anchor> {
  if ((await sh('tincd', ['--version'])).code !== 0) throw new Error('bench:ipv6 needs tincd for its tinc anchor (apt-get install tinc; scripts/setup.sh installs it)');
  const ns = await pair(bed, 't', 2);
  const cns = ['tca', 'tcb'].map((n) => `${bed.prefix}${n}`) as [string, string];
  for (const side of [0, 1] as const) {
    const [h, c] = [ns[side], cns[side]];
    await must('ip', ['netns', 'add', c]);
    bed.namespaces.push(c);
    await must('ip', ['netns', 'exec', c, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    await must('ip', ['-n', c, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['netns', 'exec', h, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0']);
    for (const { net, o } of TINC_NETS) {
      // The bridge tinc-up puts the TAP on, and the container's veth on it.
      await must('ip', ['-n', h, 'link', 'add', `b${net}`, 'type', 'bridge', 'mcast_snooping', '0']);
      await sh('ip', ['netns', 'exec', h, 'sysctl', '-qw', `net.ipv6.conf.b${net}.disable_ipv6=1`]);
      await must('ip', ['-n', h, 'link', 'add', `q${net}`, 'type', 'veth', 'peer', 'name', `e${net}`, 'netns', c]);
      await must('ip', ['-n', h, 'link', 'set', `q${net}`, 'master', `b${net}`, 'up']);
      await must('ip', ['-n', h, 'link', 'set', `b${net}`, 'up']);
      // The containers' MTU leaves room for either underlay's tinc header.
      await must('ip', ['-n', c, 'link', 'set', `e${net}`, 'mtu', '1400']);
      await must('ip', ['-n', c, 'addr', 'add', `10.${o}.0.${side + 1}/24`, 'dev', `e${net}`]);
      await must('ip', ['-n', c, 'addr', 'add', `fd${o}::${side + 1}/64`, 'dev', `e${net}`, 'nodad']);
      await must('ip', ['-n', c, 'link', 'set', `e${net}`, 'up']);
    }
  }
  const dir = path.join(bed.dir, 'tinc');
  const conf = (side: 0 | 1, net: string): string => path.join(dir, `${'ab'[side]}-${net}`);
  for (const { net, family, port } of TINC_NETS) {
    for (const side of [0, 1] as const) {
      const c = conf(side, net);
      mkdirSync(path.join(c, 'hosts'), { recursive: true });
      const me = 'ab'[side]!;
      const addr = family === 'ipv4' ? `10.9.2.${side + 1}` : `fd99:2::${side + 1}`;
      writeFileSync(path.join(c, 'tinc.conf'), [
        `Name = ${me}`, 'Mode = switch', 'DeviceType = tap', `Interface = ${net}`, `AddressFamily = ${family}`,
        `BindToAddress = ${addr}`, `Port = ${port}`, ...(side === 1 ? ['ConnectTo = a'] : []), '',
      ].join('\n'));
      writeFileSync(path.join(c, 'tinc-up'), [
        '#!/bin/sh',
        `sysctl -qw net.ipv6.conf.${net}.disable_ipv6=1`,
        `ip link set ${net} master b${net} up`, '',
      ].join('\n'), { mode: 0o755 });
      writeFileSync(path.join(c, 'hosts', me), [`Address = ${addr}`, `Port = ${port}`, 'Cipher = none', 'Digest = none', ''].join('\n'));
      const k = await sh('tincd', ['-c', c, '-K', '2048'], { input: '', timeoutMs: 60_000 });
      if (k.code !== 0) throw new Error(`tinc anchor: key generation failed: ${k.stderr.trim().split('\n')[0]?.slice(0, 200) ?? ''}`);
    }
    for (const side of [0, 1] as const) {
      const other = 'ab'[1 - side]!;
      writeFileSync(path.join(conf(side, net), 'hosts', other), readFileSync(path.join(conf(1 - side as 0 | 1, net), 'hosts', other)));
    }
    for (const side of [0, 1] as const) {
      const c = conf(side, net);
      bed.background(['ip', 'netns', 'exec', ns[side], 'tincd', '-c', c, '-D', '-d1', `--pidfile=${path.join(c, 'pid')}`, `--logfile=${path.join(c, 'log')}`]);
    }
  }
  const targets: Anchor['targets'] = { 'v4/v4': '10.54.0.2', 'v4ul/v6': 'fd54::2', 'v6ul/v4': '10.56.0.2', 'v6/v6': 'fd56::2' };
  for (const to of Object.values(targets)) await mustAnswer(cns[0], to!, 'tinc anchor', 30);
  // PMTU probing: until min = max (≠ 0) on both sides of both networks, a frame above the
  // probed minimum would travel over TCP.
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
  for (let t = 0; ; t++) {
    const all = TINC_NETS.flatMap(({ net }) => [0, 1].map((side) => ({ c: conf(side as 0 | 1, net), peer: 'ab'[1 - side]! })));
    for (const { c } of all) {
      const pid = Number(readFileSync(path.join(c, 'pid'), 'utf8').trim().split(/\s+/)[0]);
      if (Number.isInteger(pid) && pid > 1) {
        try {
          process.kill(pid, 'SIGUSR2');
        } catch { /* gone: the check below fails */ }
      }
    }
    await sleep(1000);
    if (all.every(({ c, peer }) => converged(c, peer))) break;
    if (t >= 60) throw new Error(`tinc anchor: PMTU probing did not converge within 60 s (logs in ${dir})`);
  }
  return { name: 'tinc', ns: cns[0], targets };
}
