/**
 * Making the DNS server's link-local address reachable (see dns/config.ts for the
 * choice): on the host, the address on the `weave` bridge and a policy-routing rule so
 * that answers sent from it leave by the bridge even though the host has no route to
 * the containers' subnets; in each container, an on-link route to it over `ethwe`.
 * Every step is idempotent (replace, or delete-then-add) and runs `ip` with argv only.
 */
import { readFileSync } from 'node:fs';
import { ip, ipIn, ipBatch, BatchError, BRIDGE, CONTAINER_IFNAME } from '../router/host/netdev.js';
import { netlink } from '../router/host/netlink.js';

/** Routing table of the answers' route ("dns" on a phone keypad: 367). */
export const DNS_ROUTE_TABLE = '367';
/** Priority of our `from ADDR lookup 367` rule: before main (32766). */
export const DNS_RULE_PRIORITY = '3670';

/**
 * Put `addr`/32 on the bridge and route traffic from it out over the bridge. Also pins
 * the bridge's MAC to its current value: Linux otherwise recomputes it (the lowest port
 * MAC) as ports come and go — e.g. when fast datapath's VXLAN port is re-created — and
 * containers' ARP entries for the DNS address would then point at a MAC nobody owns
 * until they expire.
 */
/** True when the bridge's MAC was already set from user space (sysfs addr_assign_type 3). */
function alreadyPinned(): boolean {
  try {
    return readFileSync(`/sys/class/net/${BRIDGE}/addr_assign_type`, 'utf8').trim() === '3';
  } catch {
    return false;
  }
}

export async function setupHost(addr: string): Promise<void> {
  // Setting the address flushes the bridge's neighbour table, and the host may not
  // broadcast ARP from the DNS address: pin only once (a restarted router finds it pinned,
  // addr_assign_type 3 = set by user space), so containers' entries stay valid.
  // [scale, issue #20] In one `ip -batch` (ip stops at the first failure; only the last
  // line, deleting a rule that may not exist, may fail), then the rule: 2–3 forks, was 7.
  const lines: string[][] = [];
  if (!alreadyPinned()) {
    // The bridge's current MAC: over rtnetlink when the addon is there (no fork: issue #20).
    const nl = netlink();
    const mac = nl ? (await nl.linkList()).find((l) => l.name === BRIDGE)?.mac
      : /link\/ether ([0-9a-f:]{17})/.exec(await ip('-d', '-o', 'link', 'show', 'dev', BRIDGE))?.[1];
    if (mac) lines.push(['link', 'set', 'dev', BRIDGE, 'address', mac]);
  }
  lines.push(['addr', 'replace', `${addr}/32`, 'dev', BRIDGE, 'scope', 'link']);
  lines.push(['route', 'replace', 'default', 'dev', BRIDGE, 'table', DNS_ROUTE_TABLE]);
  lines.push(['rule', 'del', 'priority', DNS_RULE_PRIORITY]);
  await ipBatch(undefined, lines).catch((err: unknown) => {
    if (!(err instanceof BatchError) || err.line !== lines.length) throw err;
  });
  await ip('rule', 'add', 'from', `${addr}/32`, 'lookup', DNS_ROUTE_TABLE, 'priority', DNS_RULE_PRIORITY);
}

/** Undo setupHost (weave reset); absent parts are fine. */
export async function removeHost(addr: string): Promise<void> {
  await ip('rule', 'del', 'priority', DNS_RULE_PRIORITY).catch(() => undefined);
  await ip('route', 'flush', 'table', DNS_ROUTE_TABLE).catch(() => undefined);
  await ip('addr', 'del', `${addr}/32`, 'dev', BRIDGE).catch(() => undefined);
}

/** Route to `addr` over ethwe (or `ifname`: a CNI pod's eth0) inside the namespace file `nsPath` (after it is up). */
export async function setupContainer(nsPath: string, addr: string, ifname = CONTAINER_IFNAME): Promise<void> {
  // [issue #16] rtnetlink when the addon is there (no fork of the router per attach).
  const nl = netlink();
  if (nl && nsPath.startsWith('/')) return nl.routeIn({ ns: nsPath, ifname, routes: [`${addr}/32`] });
  await ipIn(nsPath, 'route', 'replace', `${addr}/32`, 'dev', ifname, 'scope', 'link');
}
