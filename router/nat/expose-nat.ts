/**
 * `weave expose` NAT, as Weave's `WEAVE` chain in the nat table (Weave's weave script,
 * expose_nat), written for nftables: for each exposed subnet C,
 *  - multicast from C is left alone;
 *  - traffic from the host to C (not already from C) leaving on the bridge is
 *    masqueraded to the host's bridge address, so containers can answer it;
 *  - traffic from C to anywhere outside C that leaves through another interface
 *    (containers whose route out goes through this host) is masqueraded to the
 *    host's address on that interface, with fully random source ports.
 * `weave hide` removes exactly the rules of the subnets it hides; `--no-masq` exposes
 * without them. The table is ours alone (`ip tsweave-nat`), replaced as a whole in one
 * nft transaction, so other tables (isolation's `tsweave`, Docker's, the user's) are
 * never touched. Pure: renders the script; the subsystem runs nft.
 *
 * [IPv6] With --ipalloc-range6 an exposed IPv4 subnet C has an IPv6 twin C6 (the range6
 * prefix + C's bits, ipam/ipv6.ts subnet6), and containers route IPv6 out through the
 * exposed host as they do IPv4. The same three rules are rendered for C6 in a second
 * table of ours, `ip6 tsweave-nat` (multicast is ff00::/8; link-local is never routed,
 * so it needs no rule). IPv6 has no private-address convention of IPv4's kind, but a
 * ULA range6 (RFC 4193) is not routed on the Internet either, so masquerading is what
 * makes the overlay's IPv6 reach the outside, as Weave's NAT does for IPv4.
 */
import { parseCidr, formatCidr } from '../../ipam/cidr.js';
import { parseCidr6, formatIpv6 } from '../../ipam/ipv6.js';

export const NAT_TABLE = 'tsweave-nat';
/** Weave's chain name. */
export const NAT_CHAIN = 'WEAVE';

/** "10.32.0.1/12" (an exposed address) → "10.32.0.0/12" (its subnet). @throws Error for a bad CIDR. */
export function subnetOf(cidr: string): string {
  return formatCidr(parseCidr(cidr.replace(/^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/, (_, a: string, l: string) => {
    const n = a.split('.').reduce((x, o) => x * 256 + Number(o), 0);
    const size = 2 ** (32 - Number(l));
    const base = Math.floor(n / size) * size;
    return [24, 16, 8, 0].map((s) => Math.floor(base / 2 ** s) % 256).join('.') + '/' + l;
  })));
}

/**
 * The nft script that makes the table exactly this: delete it (creating it first, so
 * the delete cannot fail) and, if any subnet is masqueraded, define it again.
 * @param subnets masqueraded subnets ("10.32.0.0/12"); duplicates are ignored.
 * @param bridge the bridge's name ("weave").
 */
export function renderNat(subnets: string[], bridge: string, subnets6?: string[]): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw new Error(`bad bridge name "${bridge}"`);
  const list = [...new Set(subnets.map(subnetOf))].sort();
  const lines = [...natTable('ip', list, bridge, '224.0.0.0/4')];
  if (subnets6) {
    const list6 = [...new Set(subnets6.map((c) => {
      const p = parseCidr6(c);
      if (!p) throw new Error(`bad IPv6 subnet "${String(c).slice(0, 60)}"`);
      return `${formatIpv6(p.bytes)}/${p.len}`;
    }))].sort();
    lines.push(...natTable('ip6', list6, bridge, 'ff00::/8'));
  }
  return lines.join('\n') + '\n';
}

/** One family's table: created then deleted (so the delete cannot fail), then defined if any subnet. */
function natTable(family: 'ip' | 'ip6', list: string[], bridge: string, multicast: string): string[] {
  const lines = [`table ${family} ${NAT_TABLE} {}`, `delete table ${family} ${NAT_TABLE}`];
  if (list.length === 0) return lines;
  lines.push(`table ${family} ${NAT_TABLE} {`, `  chain ${NAT_CHAIN} {`, '    type nat hook postrouting priority srcnat; policy accept;');
  for (const c of list) {
    lines.push(`    ${family} saddr ${c} ${family} daddr ${multicast} return comment "expose ${c}: multicast"`);
    lines.push(`    ${family} saddr != ${c} ${family} daddr ${c} oifname "${bridge}" masquerade comment "expose ${c}: host to subnet"`);
    lines.push(`    ${family} saddr ${c} ${family} daddr != ${c} oifname != "${bridge}" masquerade fully-random comment "expose ${c}: subnet out via host"`);
  }
  lines.push('  }', '}');
  return lines;
}

/**
 * Which exposed subnets get NAT: the host's exposed addresses minus those exposed with
 * --no-masq. Both lists hold CIDRs as the endpoint table keeps them ("10.32.0.1/12").
 */
export function masqueradedSubnets(exposed: string[], noMasq: string[]): string[] {
  const skip = new Set(noMasq.map(subnetOf));
  return [...new Set(exposed.map(subnetOf))].filter((s) => !skip.has(s)).sort();
}
