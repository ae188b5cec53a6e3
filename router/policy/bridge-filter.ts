/**
 * Subnet isolation in the kernel: nftables rules on the `weave` bridge and for the
 * host's own stack.
 *
 * Frames between two containers on one host are switched by the bridge and never reach
 * the router; with the fast datapath (fastdp.ts) frames between hosts travel in the
 * kernel's VXLAN port and never reach it either. So the router's per-frame policy
 * (subnet-policy.ts) cannot be the only check. These rules enforce the same model —
 * an endpoint sends only from what was attached to it, and a frame stays inside one
 * subnet — in tables of our own (`tsweave`) in the host's network namespace:
 *
 *  - bridge family, prerouting, per container port (`iifname` = the host end of its
 *    veth, vethwepl*): anti-spoofing. The source MAC must be the endpoint's, the IPv4
 *    source / ARP sender IP one of its own addresses (or 0.0.0.0 for an RFC 5227 ARP
 *    probe), the ARP sender hardware address its MAC ('spoof'). Other EtherTypes are
 *    dropped ('isolation'): they carry nothing the subnet model can place. A vethwepl*
 *    port without an endpoint (attached but not synced yet, or stale) drops everything,
 *    so there is no open window.
 *  - bridge family, forward and output, per container port (`oifname`): egress subnet
 *    filter. A frame leaving towards a container must stay inside one of that
 *    container's subnets: IPv4 source and destination (or a group destination), ARP
 *    sender and target, in the same subnet of the container's. This covers local
 *    peers, frames arriving from remote peers through the TAP or the VXLAN port,
 *    floods, and the host's own frames ('isolation'). Spoofing cannot be seen at the
 *    receiver, which is why every host checks its own ports' ingress.
 *  - ip and arp families, input on the bridge device: the same filter with the
 *    subnets the host has exposed (`weave expose`), so the host reaches exactly its
 *    exposed subnets, whichever port a frame came in by; with nothing exposed it hears
 *    nothing from the weave network. (The bridge family's own input hook would need
 *    `meta ibrname` to tell our bridge from others, which not every kernel has.) The
 *    ip6 family's input, with range6, accepts from the bridge only the exposed
 *    subnets' IPv6 prefixes (global and link-local) and drops all other IPv6: an
 *    unexposed host is not on the IPv6 overlay (issue #21).
 *  - IPv6 (issue #21, only with --ipalloc-range6 `range6`): the same model on the
 *    derived addresses (ipam/ipv6.ts: PREFIX::a.b.c.d and fe80::a.b.c.d stand for
 *    a.b.c.d). Ingress: the IPv6 source must be one of the port's derived addresses, or
 *    :: for Duplicate Address Detection (a Neighbour Solicitation for one of its own
 *    addresses); a Neighbour Advertisement's target must be its own; the first
 *    source/target link-layer address option of a Solicitation/Advertisement must be
 *    its MAC; Router Advertisements and Redirects are dropped ('spoof'). Egress: source
 *    and destination (or multicast ff00::/8) in one subnet's IPv6 prefixes, and a
 *    Neighbour Solicitation/Advertisement's target in that subnet too ('isolation').
 *    ND targets are read as raw transport-header payload (`@th`, nft 1.0.6 has no
 *    `icmpv6 taddr`); only the first ND option is checked here, the router checks all.
 *
 * The host's own frames are trusted (it is root). Ports other than container ports
 * (TAP, VXLAN) get no rules of their own: the router checks what crosses the TAP and
 * the receiving host's egress rules check what crosses VXLAN.
 *
 * Every drop rule has a counter and a comment naming its reason; readCounters() sums
 * them by reason. The ports' chains count into the bridge table's named counters `spoof`
 * and `isolation`, so their counts outlive a port's chains. The whole ruleset is applied
 * as one `nft -f` transaction that deletes and recreates all our tables, so applying is
 * atomic and idempotent. Ports reach their chains through two named verdict maps keyed by
 * interface name (`in_ports`, `out_ports`), so a port coming or going is a small
 * transaction of its own (renderPortDelta) that leaves the rest of the ruleset, and its
 * counters, as they are: a pod start costs the same with 1 or 1,000 ports on the host.
 */
import { spawn } from 'node:child_process';
import { loadAddon } from '../overlay/native-addon.js';
import { derive6, linkLocal6Cidr, parseCidr6, subnet6, type Range6 } from '../../ipam/ipv6.js';

/** The name of our tables (families bridge, ip and arp). */
export const TABLE = 'tsweave';

export class BridgeFilterError extends Error {
  override name = 'BridgeFilterError';
}

/** One container port: the host end of its veth, its MAC and its addresses with prefix. */
export interface PortRules {
  port: string;
  mac: string;
  cidrs: string[];
}

const NAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** "10.32.1.5/24" → { addr: "10.32.1.5", subnet: "10.32.1.0/24" }; undefined when malformed. */
export function splitCidr(c: string): { addr: string; subnet: string } | undefined {
  const m = CIDR_RE.exec(c);
  if (!m) return undefined;
  const o = m.slice(1, 5).map(Number);
  const len = Number(m[5]);
  if (o.some((x) => x > 255) || len > 32) return undefined;
  const n = ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const net = (n & mask) >>> 0;
  return { addr: o.join('.'), subnet: `${net >>> 24}.${(net >>> 16) & 255}.${(net >>> 8) & 255}.${net & 255}/${len}` };
}

const set = (xs: string[]): string => `{ ${xs.join(', ')} }`;

/**
 * NO_INTERVAL_SETS: a port's chains hold no anonymous set with a prefix or range in it
 * (an "interval" set), only single prefixes or sets of exact values. nft 1.0.6 reads
 * every element of every interval set in the table before it applies a script that
 * adds elements (its cache), so one such set per port made each pod start read all the
 * other ports' sets: ~700 B and a few netlink round trips per port already attached.
 * Without them, renderPortDelta's transaction reads the same few kB whatever the number
 * of ports, and nothing of other tables (kube-proxy's rules). Sets of exact values
 * (`ip saddr != { … }`, `icmpv6 type { … }`, `@th,… != { … }`) are not read.
 */

/**
 * Accept rules for frames that stay inside one of `subnets`: IPv4 source and
 * destination in the same subnet (or destination the limited broadcast / multicast,
 * which every receiver filters again), ARP sender and target in the same subnet (or an
 * RFC 5227 probe, sender 0.0.0.0, for a target in it). The same "one frame, one subnet"
 * rule as the router's (subnet-policy.ts). The caller appends the drop.
 */
function subnetAccepts(subnets: string[]): string[] {
  const arp = 'arp htype 1 arp ptype ip arp hlen 6 arp plen 4';
  return subnets.flatMap((s) => [
    `ip saddr ${s} ip daddr ${s} accept`,
    `ip saddr ${s} ip daddr 255.255.255.255 accept`,
    `ip saddr ${s} ip daddr 224.0.0.0/4 accept`,
    `${arp} arp saddr ip ${s} arp daddr ip ${s} accept`,
    `${arp} arp saddr ip 0.0.0.0 arp daddr ip ${s} accept`,
  ]);
}

/** Whether a subnetAccepts rule is the IPv4 unicast one (`ip saddr S ip daddr S accept`). */
const isUnicastAccept = (rule: string): boolean => /^ip saddr (\S+) ip daddr \1 accept$/.test(rule);

/** The top `len` bits of an IPv6 address/prefix as an nft integer ("0x…"), for `@th` matches. */
export function prefixBits(cidr6: string, len: number): string {
  const c = parseCidr6(cidr6.includes('/') ? cidr6 : `${cidr6}/128`);
  if (!c) throw new BridgeFilterError(`bad IPv6 address ${cidr6}`);
  const v = BigInt('0x' + c.bytes.toString('hex')) >> BigInt(128 - len);
  return '0x' + v.toString(16);
}

/** A port's IPv6 view: its derived addresses, and per subnet its two prefixes (global, link-local). */
function v6Of(r: Range6, cidrs: string[]): { addrs: string[]; subnets: Array<{ set: string[]; len: number }> } {
  const addrs = cidrs.flatMap((c) => [derive6(r, c.split('/')[0]), linkLocal6Cidr(c).split('/')[0]]);
  const seen = new Map<string, { set: string[]; len: number }>();
  for (const c of cidrs) {
    const sub = splitCidr(c)!.subnet;
    const len = 96 + Number(sub.split('/')[1]);
    seen.set(sub, { set: [subnet6(r, sub), linkLocal6Cidr(sub).replace(/\/64$/, `/${len}`)], len });
  }
  return { addrs: [...new Set(addrs)], subnets: [...seen.values()] };
}

const ND = 'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert }';

/** Ingress (anti-spoofing) rules for a port's IPv6, before its final drop. */
function v6Ingress(r: Range6, mac: string, cidrs: string[]): string[] {
  const { addrs } = v6Of(r, cidrs);
  const own = set(addrs.map((a) => prefixBits(a, 128)));
  const macBits = '0x' + mac.replace(/:/g, '');
  return [
    `ip6 saddr != ${set(['::', ...addrs])} counter name "spoof" drop comment "spoof"`,
    // The source is now "::" or one of the port's own addresses. Fast paths for the
    // latter: what is not ICMPv6, and ICMPv6 that is neither ND nor a Router
    // Advertisement or Redirect, needs no further check (a data frame walks 6 rules of
    // this chain with one set lookup of 16-byte keys; session 47).
    'ip6 saddr != :: meta l4proto != ipv6-icmp accept',
    `ip6 saddr != :: icmpv6 type != { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-redirect } accept`,
    'icmpv6 type { nd-router-advert, nd-redirect } counter name "spoof" drop comment "spoof"',
    'ip6 saddr :: meta l4proto != ipv6-icmp counter name "spoof" drop comment "spoof"',
    'ip6 saddr :: icmpv6 type != nd-neighbor-solicit counter name "spoof" drop comment "spoof"',
    // Left: Neighbour Solicitations (from "::" or an own address) and Advertisements.
    `ip6 saddr :: @th,64,128 != ${own} counter name "spoof" drop comment "spoof"`,
    `icmpv6 type nd-neighbor-advert @th,64,128 != ${own} counter name "spoof" drop comment "spoof"`,
    `icmpv6 type nd-neighbor-solicit @th,192,8 1 @th,208,48 != ${macBits} counter name "spoof" drop comment "spoof"`,
    `icmpv6 type nd-neighbor-advert @th,192,8 2 @th,208,48 != ${macBits} counter name "spoof" drop comment "spoof"`,
    'ether type ip6 accept',
  ];
}

/** Egress (one subnet per frame) rules for a port's IPv6, before its final drop. */
function v6Egress(r: Range6, cidrs: string[]): string[] {
  const subnets = v6Of(r, cidrs).subnets;
  // Fast paths first: a frame inside one subnet that is not ICMPv6, or is ICMPv6 but
  // neither ND nor a Router Advertisement/Redirect, is what the accepts below would pass
  // anyway (the drops only ever match ND, RA and Redirect), so a data frame is accepted
  // within its first rules instead of after the RA set lookup and the ND rules (session 47).
  const out = subnets.flatMap((s) => s.set.flatMap((src) => [...s.set, 'ff00::/8'].flatMap((dst) => [
    `ip6 saddr ${src} ip6 daddr ${dst} meta l4proto != ipv6-icmp accept`,
    `ip6 saddr ${src} ip6 daddr ${dst} icmpv6 type != { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-redirect } accept`,
  ])));
  out.push('icmpv6 type { nd-router-advert, nd-redirect } counter name "isolation" drop comment "isolation"');
  // One rule per prefix rather than an anonymous set of prefixes: see NO_INTERVAL_SETS.
  for (const s of subnets) {
    const bits = set(s.set.map((p) => prefixBits(p, s.len)));
    out.push(
      ...s.set.map((src) => `ip6 saddr ${src} ${ND} @th,64,${s.len} != ${bits} counter name "isolation" drop comment "isolation"`),
      ...s.set.flatMap((src) => [...s.set, 'ff00::/8'].map((dst) => `ip6 saddr ${src} ip6 daddr ${dst} accept`)),
      `ip6 saddr :: icmpv6 type nd-neighbor-solicit @th,64,${s.len} ${bits} accept`,
    );
  }
  return out;
}

/** The (family, table) pairs we own; sync replaces all of them in one transaction. */
export const TABLES: ReadonlyArray<readonly [family: string, name: string]> = [['bridge', TABLE], ['ip', TABLE], ['arp', TABLE], ['ip6', TABLE]];

/** Create-then-delete each of our tables: the delete then always succeeds, and the pair is a no-op on nothing. */
const deleteAll = (): string[] => TABLES.flatMap(([f, t]) => [`table ${f} ${t}`, `delete table ${f} ${t}`]);

/** A port whose rules can be written into a script (see usablePorts). */
export interface UsablePort {
  port: string;
  mac: string;
  addrs: string[];
  subnets: string[];
  /** [IPv6] Its IPv6 ingress and egress rules (with range6; else none: IPv6 is dropped). */
  v6in: string[];
  v6out: string[];
  /** What its rules depend on; two equal keys render equal chains. */
  key: string;
}

/**
 * The ports whose entries are safe to put in a script, in order, each port name once
 * (the first wins); the others are named in `skipped` and fall under the vethwepl*
 * catch-all, which passes nothing. Pure.
 * @param range6 --ipalloc-range6, if any: the ports' IPv6 rules follow their derived
 *   addresses (see the header)
 */
export function usablePorts(ports: PortRules[], range6?: Range6): { usable: UsablePort[]; skipped: string[] } {
  const skipped: string[] = [];
  const usable: UsablePort[] = [];
  const seen = new Set<string>();
  for (const p of ports) {
    if (seen.has(p.port)) {
      skipped.push(`port ${p.port}: named twice (endpoint id hash collision?); only the first one's rules apply`);
      continue;
    }
    seen.add(p.port);
    const mac = p.mac.toLowerCase();
    const parts = p.cidrs.map(splitCidr);
    if (!NAME_RE.test(p.port) || !MAC_RE.test(mac) || !parts.length || parts.some((x) => !x)) {
      skipped.push(`port ${p.port}: unusable endpoint (mac "${p.mac}", addresses ${p.cidrs.join(' ') || 'none'})`);
      continue;
    }
    const addrs = [...new Set(parts.map((x) => x!.addr))];
    const subnets = [...new Set(parts.map((x) => x!.subnet))];
    const v6in = range6 ? v6Ingress(range6, mac, p.cidrs) : [];
    const v6out = range6 ? v6Egress(range6, p.cidrs) : [];
    usable.push({ port: p.port, mac, addrs, subnets, v6in, v6out, key: `${mac} ${addrs.join(',')} ${subnets.join(',')} ${[...v6in, ...v6out].join(';')}` });
  }
  return { usable, skipped };
}

/**
 * nft identifier part for a port name (NAME_RE: letters, digits, `_ . -`): letters and
 * digits as they are, anything else `_` + two hex digits, so distinct ports never share
 * a chain. vethwepl1a2b3c4 → vethwepl1a2b3c4.
 */
export function chainId(port: string): string {
  return port.replace(/[^A-Za-z0-9]/g, (c) => '_' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

/** A port's two chains (ingress anti-spoofing, egress subnet filter), as lines inside its table block. */
function portChains(p: UsablePort): string[] {
  const id = chainId(p.port);
  return [
    `  chain in_${id} {`,
    `    # ${p.port}: anti-spoofing`,
    `    ether saddr != ${p.mac} counter name "spoof" drop comment "spoof"`,
    `    ip saddr != ${set(p.addrs)} counter name "spoof" drop comment "spoof"`,
    '    ether type ip accept',
    // IPv6 before ARP: data frames should not walk the ARP checks (issue #21, ping).
    ...p.v6in.map((r) => '    ' + r),
    `    arp htype != 1 counter name "spoof" drop comment "spoof"`,
    `    arp ptype != ip counter name "spoof" drop comment "spoof"`,
    `    arp hlen != 6 counter name "spoof" drop comment "spoof"`,
    `    arp plen != 4 counter name "spoof" drop comment "spoof"`,
    `    arp saddr ether != ${p.mac} counter name "spoof" drop comment "spoof"`,
    `    arp saddr ip != ${set(['0.0.0.0', ...p.addrs])} counter name "spoof" drop comment "spoof"`,
    '    ether type arp accept',
    '    counter name "isolation" drop comment "isolation"',
    '  }',
    `  chain out_${id} {`,
    `    # ${p.port}: only its subnets ${p.subnets.join(' ')}`,
    // IPv4 unicast first, then IPv6, then IPv4 broadcast/multicast and ARP: the data
    // frames of either family match within a few rules (issue #21, ping).
    ...subnetAccepts(p.subnets).filter(isUnicastAccept).map((r) => '    ' + r),
    ...p.v6out.map((r) => '    ' + r),
    ...subnetAccepts(p.subnets).filter((r) => !isUnicastAccept(r)).map((r) => '    ' + r),
    '    counter name "isolation" drop comment "isolation"',
    '  }',
  ];
}

const mapElement = (p: UsablePort, dir: 'in' | 'out'): string => `"${p.port}" : jump ${dir}_${chainId(p.port)}`;

/**
 * The `nft -f` script that turns the ports' part of a ruleset installed by renderRuleset
 * (whose ports were `prev`: port → UsablePort.key) into that for `next`, touching only the
 * ports that came, went or changed: a new or changed port's chains are (re)filled and
 * its map entries added; a gone port's entries and chains deleted. Everything else (the
 * base chains, the host tables, the counters) stays. Empty script: nothing to do. Pure.
 * The caller applies it as one transaction; it fails as a whole if our table is gone.
 */
export function renderPortDelta(prev: ReadonlyMap<string, string>, next: UsablePort[]): string {
  const t = `bridge ${TABLE}`;
  const lines: string[] = [];
  const now = new Set(next.map((p) => p.port));
  for (const port of prev.keys()) {
    if (now.has(port)) continue;
    const id = chainId(port);
    lines.push(`delete element ${t} in_ports { "${port}" }`, `delete element ${t} out_ports { "${port}" }`,
      `flush chain ${t} in_${id}`, `delete chain ${t} in_${id}`, `flush chain ${t} out_${id}`, `delete chain ${t} out_${id}`);
  }
  for (const p of next) {
    if (prev.get(p.port) === p.key) continue;
    const id = chainId(p.port);
    lines.push(`add chain ${t} in_${id}`, `flush chain ${t} in_${id}`, `add chain ${t} out_${id}`, `flush chain ${t} out_${id}`,
      `table ${t} {`, ...portChains(p), '}',
      `add element ${t} in_ports { ${mapElement(p, 'in')} }`, `add element ${t} out_ports { ${mapElement(p, 'out')} }`);
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

/**
 * The whole `nft -f` script for our tables. Pure. Entries that would not be safe to put
 * in a script (bad port name, MAC or CIDR) are left out and named in `skipped`; such a
 * port then falls under the vethwepl* catch-all and passes nothing.
 *
 * @param ports container ports on the bridge
 * @param hostCidrs the host's exposed addresses ("10.32.1.100/24"); with range6 the host
 *   also hears IPv6 from those subnets' derived prefixes (global and link-local)
 * @param bridge the bridge device ("weave"): the host-input filter matches it as iifname
 * @param dns weaveDNS's link-local server address and port on the bridge (dns/config.ts),
 *   if any: local container ports may reach exactly UDP/TCP `port` on it (and ARP for
 *   it), the host may answer from it; frames for it from any other port (the TAP, the
 *   VXLAN port: other hosts) are dropped ('isolation')
 * @param range6 --ipalloc-range6 (ipam/ipv6.ts), if any: container ports may then send
 *   and receive IPv6 of their derived addresses under the same model; without it every
 *   IPv6 frame from or to a container port is dropped
 * @returns the script, the entries skipped, and the ports rendered (for renderPortDelta)
 * @throws BridgeFilterError if `bridge` is not a plain interface name or `dns` is malformed
 */
export function renderRuleset(ports: PortRules[], hostCidrs: string[], bridge: string, dns?: { address: string; port: number }, range6?: Range6): { script: string; skipped: string[]; ports: UsablePort[] } {
  if (!NAME_RE.test(bridge)) throw new BridgeFilterError(`bad bridge name "${bridge}"`);
  if (dns && (!splitCidr(`${dns.address}/32`) || !Number.isInteger(dns.port) || dns.port < 1 || dns.port > 65535)) throw new BridgeFilterError(`bad DNS address ${dns.address}:${dns.port}`);
  const { usable, skipped } = usablePorts(ports, range6);
  const chains = usable.flatMap(portChains);
  const maps = (['in', 'out'] as const).flatMap((dir) => [
    `  map ${dir}_ports {`,
    '    type ifname : verdict',
    ...(usable.length ? [`    elements = ${set(usable.map((p) => mapElement(p, dir)))}`] : []),
    '  }',
  ]);
  const host = hostCidrs.map(splitCidr);
  for (const [i, h] of host.entries()) if (!h) skipped.push(`exposed address "${hostCidrs[i]}" is not a.b.c.d/len; ignored`);
  const hostSubnets = [...new Set(host.filter((x) => x).map((x) => x!.subnet))];
  const hostRules = subnetAccepts(hostSubnets);
  const host6 = range6 ? [...new Set(v6Of(range6, hostCidrs.filter((c) => splitCidr(c))).subnets.flatMap((x) => x.set))] : [];
  const portMatch = '"vethwepl*"';
  const egress = [
    '    oifname vmap @out_ports',
    `    oifname ${portMatch} counter drop comment "isolation"`,
  ];
  // [dns] the DNS server's address: reachable from local container ports only.
  const dnsIn = dns ? {
    ip: [`ip daddr ${dns.address} udp dport ${dns.port} accept`, `ip daddr ${dns.address} tcp dport ${dns.port} accept`],
    arp: [`arp daddr ip ${dns.address} accept`],
  } : { ip: [], arp: [] };
  // The host answers from the DNS address: DNS replies, ARP replies, and unicast ARP
  // probes (re-confirming a container it already learnt from that container's own ARP);
  // never a broadcast ARP request, so it cannot discover containers of other subnets.
  const dnsOut = dns ? [
    `    ip saddr ${dns.address} udp sport ${dns.port} accept`,
    `    ip saddr ${dns.address} tcp sport ${dns.port} accept`,
    `    arp saddr ip ${dns.address} arp operation reply accept`,
    `    ether daddr != ff:ff:ff:ff:ff:ff arp saddr ip ${dns.address} arp operation request accept`,
  ] : [];
  const dnsBridgeIn = dns ? [
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    iifname != ${portMatch} ip daddr ${dns.address} counter drop comment "isolation"`,
    `    iifname != ${portMatch} arp daddr ip ${dns.address} counter drop comment "isolation"`,
    '  }',
  ] : [];
  const hostTable = (family: 'ip' | 'arp'): string[] => [
    `table ${family} ${TABLE} {`,
    '  chain host_in {',
    `    # the host (weave:expose) hears only its exposed subnets ${hostSubnets.join(' ')}`,
    ...hostRules.filter((r) => r.startsWith(family === 'ip' ? 'ip ' : 'arp ')).map((r) => '    ' + r),
    // [expose NAT] Replies to what the host sent into an exposed subnet from another of
    // its addresses (masqueraded on the way out, restored before input).
    ...(family === 'ip' && hostSubnets.length ? [`    ip saddr ${set(hostSubnets)} ct state established,related accept comment "replies to the exposed host"`] : []),
    '    counter drop comment "isolation"',
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    ...dnsIn[family].map((r) => `    iifname "${bridge}" ${r}`),
    `    iifname "${bridge}" jump host_in`,
    '  }',
    '}',
  ];
  const lines = [
    ...deleteAll(),
    `table bridge ${TABLE} {`,
    '  counter spoof { }',
    '  counter isolation { }',
    ...chains,
    ...maps,
    '  chain prerouting {',
    '    type filter hook prerouting priority filter; policy accept;',
    '    iifname vmap @in_ports',
    `    iifname ${portMatch} counter drop comment "spoof"`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    ...egress,
    '  }',
    '  chain output {',
    '    type filter hook output priority filter; policy accept;',
    ...dnsOut,
    // [expose NAT] The host itself may deliver to its exposed subnets whatever it
    // routed (replies to containers going out through it, de-masqueraded).
    ...(hostSubnets.length ? [`    ip daddr ${set(hostSubnets)} accept comment "routed by the exposed host"`] : []),
    // [IPv6 expose NAT] likewise for the exposed subnets' global IPv6 prefixes (replies to
    // containers whose IPv6 went out through the host, de-masqueraded; router/nat/).
    ...(range6 && hostSubnets.length ? [`    ip6 daddr ${set([...new Set(hostSubnets.map((s) => subnet6(range6, s)))])} accept comment "routed by the exposed host"`] : []),
    ...egress,
    '  }',
    ...dnsBridgeIn,
    '}',
    ...hostTable('ip'),
    ...hostTable('arp'),
    `table ip6 ${TABLE} {`,
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    // [IPv6] the exposed host hears IPv6 only from its exposed subnets' prefixes (global and link-local).
    ...(range6 && host6.length ? [`    iifname "${bridge}" ip6 saddr ${set(host6)} accept comment "exposed subnets"`] : []),
    `    iifname "${bridge}" counter drop comment "isolation"`,
    '  }',
    '}',
    '',
  ];
  return { script: lines.join('\n'), skipped, ports: usable };
}

const NFT_TIMEOUT_MS = 15_000;

function nftError(err: NodeJS.ErrnoException, stderr: string, what: string): BridgeFilterError {
  if (err.code === 'ENOENT') return new BridgeFilterError('nft not found: install nftables (Debian: apt-get install nftables) for same-host subnet isolation');
  const line = stderr.trim().split('\n').find((l) => /Error/.test(l)) ?? stderr.trim().split('\n')[0] ?? err.message;
  return new BridgeFilterError(`nft ${what}: ${line || err.message}`);
}

/** The libnftables addon (router/policy/native/nft.cc): one script on a libuv worker thread. */
interface NftAddon {
  load(): void;
  run(script: string, json: boolean): Promise<{ ok: boolean; out: string; err: string }>;
}

let libnft: NftAddon | null | undefined;
/** Why the addon is not used (set with libnft = null). */
let libnftWhy = '';

/**
 * The addon with libnftables.so.1 opened, or undefined (not built, no library, or
 * WEAVE_NO_LIBNFT=1): nft() then forks the `nft` command as before.
 */
function nftAddon(): NftAddon | undefined {
  if (libnft === undefined) {
    try {
      if (process.env.WEAVE_NO_LIBNFT === '1') throw new Error('WEAVE_NO_LIBNFT=1');
      const a = loadAddon<NftAddon>('nft', 'nftables');
      a.load();
      libnft = a;
    } catch (err) {
      libnft = null;
      libnftWhy = (err as Error).message.split('\n')[0]!.slice(0, 200);
    }
  }
  return libnft ?? undefined;
}

/**
 * How nft scripts run in this process, for the log: "libnftables" or "the nft command
 * (REASON)" — REASON being why the addon is not used (WEAVE_NO_LIBNFT=1, no library...).
 */
export function nftBackend(): string {
  return nftAddon() ? 'libnftables' : `the nft command (${libnftWhy || 'addon not loaded'})`;
}

/**
 * Run `nft ARGS` (script on stdin if given); resolve with stdout; rejects with a
 * one-line BridgeFilterError. ARGS is one of the forms this file uses: `-f -` (the
 * script), `-j ...` (JSON output), or a command's words. Through libnftables when it
 * loads (no fork of the router: issue #16's churn soak), else by forking `nft`.
 */
function nft(args: string[], input?: string): Promise<string> {
  const lib = nftAddon();
  if (!lib) return nftFork(args, input);
  const json = args[0] === '-j';
  const script = args[0] === '-f' ? input ?? '' : (json ? args.slice(1) : args).join(' ');
  const what = args[0] === '-f' ? 'ruleset' : args.join(' ');
  return new Promise((resolve, reject) => {
    // libnftables cannot be interrupted; the caller is told after the same timeout as a fork.
    const timer = setTimeout(() => reject(new BridgeFilterError(`nft ${what}: no answer from libnftables within ${NFT_TIMEOUT_MS} ms`)), NFT_TIMEOUT_MS);
    lib.run(script, json).then((r) => {
      clearTimeout(timer);
      if (r.ok) resolve(r.out);
      else reject(nftError(new Error('refused'), r.err, what));
    }, (e: Error) => {
      clearTimeout(timer);
      reject(new BridgeFilterError(`nft ${what}: ${e.message}`));
    });
  });
}

/** nft() by forking the `nft` command (without the addon). */
function nftFork(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('nft', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), NFT_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(nftError(e, err, args.join(' ')));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(out);
      const e = new Error(signal ? `killed by ${signal} (timeout ${NFT_TIMEOUT_MS} ms?)` : `exit status ${code}`);
      reject(nftError(e, err, args[0] === '-f' ? 'ruleset' : args.join(' ')));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/** Apply a script from renderRuleset() as one transaction. */
export async function applyRuleset(script: string): Promise<void> {
  await nft(['-f', '-'], script);
}

/**
 * Whether every one of our tables exists (`nft list tables`, one exec). Pure part:
 * tablesIn. Rejects with a BridgeFilterError when nft cannot run.
 */
export async function tablesExist(): Promise<boolean> {
  return tablesIn(await nft(['list', 'tables']));
}

/** Pure part of tablesExist: whether `nft list tables` output names each (family, table) of TABLES. */
export function tablesIn(listing: string): boolean {
  const have = new Set(listing.split('\n').map((l) => l.trim()));
  return TABLES.every(([f, t]) => have.has(`table ${f} ${t}`));
}

/**
 * Sum the counters of our drop rules by reason (their comment) over our tables:
 * { spoof, isolation } in packets. undefined when none of the tables exists.
 */
export async function readCounters(): Promise<Record<string, number> | undefined> {
  let out: Record<string, number> | undefined;
  for (const [family, name] of TABLES) {
    let text: string;
    try {
      text = await nft(['-j', 'list', 'table', family, name]);
    } catch (err) {
      if (/No such file|does not exist/i.test((err as Error).message)) continue;
      throw err;
    }
    out ??= {};
    for (const [k, v] of Object.entries(sumCounters(text))) out[k] = (out[k] ?? 0) + v;
  }
  return out;
}

/**
 * Pure part of readCounters: `nft -j` output → packets per reason: per rule comment for
 * rules with their own counter, per name for named counter objects (rules that count
 * into one carry `{"counter": "NAME"}`, no packets, so nothing is counted twice).
 */
export function sumCounters(json: string): Record<string, number> {
  const out: Record<string, number> = {};
  let doc: { nftables?: Array<{ counter?: { name?: string; packets?: number }; rule?: { comment?: string; expr?: Array<{ counter?: { packets?: number } }> } }> };
  try {
    doc = JSON.parse(json);
  } catch {
    throw new BridgeFilterError('nft -j list gave output that is not JSON');
  }
  for (const item of doc.nftables ?? []) {
    // A named counter object (the ports' chains count into these, by reason).
    const c = item.counter;
    if (c && typeof c.name === 'string' && typeof c.packets === 'number') out[c.name] = (out[c.name] ?? 0) + c.packets;
    const r = item.rule;
    if (!r?.comment) continue;
    for (const e of r.expr ?? []) {
      if (e.counter && typeof e.counter.packets === 'number') out[r.comment] = (out[r.comment] ?? 0) + e.counter.packets;
    }
  }
  return out;
}

/** Delete our tables (weave reset), in one transaction; absent is fine. */
export async function removeTables(): Promise<void> {
  await nft(['-f', '-'], deleteAll().join('\n') + '\n');
}
