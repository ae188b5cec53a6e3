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
 */
import { parseCidr, formatCidr } from '../../ipam/cidr.js';

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
export function renderNat(subnets: string[], bridge: string): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw new Error(`bad bridge name "${bridge}"`);
  const list = [...new Set(subnets.map(subnetOf))].sort();
  const lines = [`table ip ${NAT_TABLE} {}`, `delete table ip ${NAT_TABLE}`];
  if (list.length === 0) return lines.join('\n') + '\n';
  lines.push(`table ip ${NAT_TABLE} {`, `  chain ${NAT_CHAIN} {`, '    type nat hook postrouting priority srcnat; policy accept;');
  for (const c of list) {
    lines.push(`    ip saddr ${c} ip daddr 224.0.0.0/4 return comment "expose ${c}: multicast"`);
    lines.push(`    ip saddr != ${c} ip daddr ${c} oifname "${bridge}" masquerade comment "expose ${c}: host to subnet"`);
    lines.push(`    ip saddr ${c} ip daddr != ${c} oifname != "${bridge}" masquerade fully-random comment "expose ${c}: subnet out via host"`);
  }
  lines.push('  }', '}');
  return lines.join('\n') + '\n';
}

/**
 * Which exposed subnets get NAT: the host's exposed addresses minus those exposed with
 * --no-masq. Both lists hold CIDRs as the endpoint table keeps them ("10.32.0.1/12").
 */
export function masqueradedSubnets(exposed: string[], noMasq: string[]): string[] {
  const skip = new Set(noMasq.map(subnetOf));
  return [...new Set(exposed.map(subnetOf))].filter((s) => !skip.has(s)).sort();
}
