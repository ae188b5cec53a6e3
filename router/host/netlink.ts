/**
 * rtnetlink for the pod start path: the native addon `build/Release/netlink.node`
 * (router/host/native/netlink.cc) gives a namespace its veth on the bridge with a few
 * netlink messages on a libuv worker thread, instead of forking `nsenter` + `ip -batch`
 * in the namespace and `ip -batch` here (netdev.ts freshVeth; issue #15: those two execs
 * were ~35 ms of a ~75 ms CNI ADD). The messages are the ones `ip` sends for the same
 * lines (rtnetlink(7): RTM_NEWLINK with a veth peer moved by IFLA_NET_NS_FD, RTM_NEWADDR,
 * RTM_NEWROUTE), in the same order, so the result is the same interface.
 *
 * Optional: without the addon (not built) or with WEAVE_NO_NETLINK=1, `netlink()` is
 * undefined and netdev.ts forks `ip` as before.
 */
import { loadAddon } from '../overlay/native-addon.js';

/** vethPod's request: all validated again in C (names, CIDRs, MTU range, absolute ns path). */
export interface PodVeth {
  /** The namespace file (absolute path). */
  ns: string;
  /** Interface name in the namespace ("eth0", "ethwe"). */
  ifname: string;
  /** Host end's name (vethwepl…), created in the router's namespace, down, on no bridge. */
  host: string;
  /** The container end's MAC, 6 bytes. */
  mac: Buffer;
  /** MTU of both ends (68..65535). */
  mtu: number;
  /** IPv4 CIDRs to add ("10.32.0.1/12"). */
  v4: string[];
  /** On-link routes (scope link), IPv4 CIDRs ("169.254.53.53/32"). */
  routes: string[];
  /** A default route via this IPv4 address, onlink. */
  gw?: string;
  /** [IPv6] CIDRs added without DAD; with any, IPv6 is turned on (no RAs, addrgenmode none) before the interface comes up. */
  v6?: string[];
}

/** A failed netlink step: `code` the errno name, `step` what failed ("create", "addr", "up", "master", ...). */
export interface NetlinkFailure extends Error {
  code: string;
  step?: string;
}

export interface NetlinkAddon {
  /** In `ns`: create the veth (peer to our namespace), addresses, IPv6 settings, up, routes, default route, IPv6 addresses. */
  vethPod(req: PodVeth): Promise<void>;
  /** Here: `host` on `bridge`, hairpin if asked, up. */
  vethHost(req: { host: string; bridge: string; hairpin: boolean }): Promise<void>;
  /** Here: delete link `host` (a veth takes its peer along); false when there was no such link. */
  linkDel(req: { host: string }): Promise<boolean>;
  /** In `ns`: `ip route replace DST dev IFNAME scope link` for each IPv4 CIDR in `routes`. */
  routeIn(req: { ns: string; ifname: string; routes: string[] }): Promise<void>;
  /**
   * Here: the bridge FDB of device `dev` (RTM_GETNEIGH dump, AF_BRIDGE), what `bridge -j
   * fdb show dev DEV` lists, in parseFdbJson's shape (router/overlay/fastdp-path.ts):
   * MAC lower-case, `dst`/`port` for VXLAN entries, `self` for the device's own table,
   * `state` "permanent"/"static" or absent for learned entries. At most 65,536 entries
   * (rejects with code E2BIG); ENODEV when there is no such device.
   */
  fdbDump(req: { dev: string }): Promise<Array<{ mac: string; dst?: string; port?: number; self: boolean; state?: string }>>;
  /**
   * In the router's namespace, for each entry in order: `bridge fdb append MAC dev DEV dst
   * DST [port PORT]` (op "append") or `bridge fdb del …` (op "del"; an entry already gone
   * is not an error). `mac` "aa:bb:cc:dd:ee:ff", `dst` an IPv4 or IPv6 address, `port`
   * 1…65535; at most 4,096 entries. Rejects with code ENODEV (no such device) or the
   * kernel's errno and `step` "fdb append"/"fdb del"; bad arguments throw (EINVAL).
   */
  fdbSet(req: { dev: string; op: 'append' | 'del'; entries: Array<{ mac: string; dst: string; port?: number }> }): Promise<void>;
  /**
   * Here: every link's name, ifindex and, for links with a 6-byte hardware address, its
   * MAC ("aa:bb:cc:dd:ee:ff") (RTM_GETLINK dump), as `ip -j link show` lists
   * ifname/ifindex/address. At most 65,536 links (rejects with code E2BIG).
   */
  linkList(): Promise<Array<{ name: string; index: number; mac?: string }>>;
  /**
   * Here: the main table's IPv4 routes through a device (RTM_GETROUTE dump), as `ip -4
   * route show` prints "DST dev NAME": `dst` "a.b.c.d/len" (0.0.0.0/0 for the default
   * route), `dev` the device's name. At most 65,536 routes (rejects with code E2BIG).
   */
  routeList4(): Promise<Array<{ dst: string; dev: string }>>;
}

let addon: NetlinkAddon | null | undefined;

/** The addon, or undefined when it is not built or WEAVE_NO_NETLINK=1 (callers then fork `ip`). */
export function netlink(): NetlinkAddon | undefined {
  if (process.env.WEAVE_NO_NETLINK === '1') return undefined;
  if (addon === undefined) {
    try {
      addon = loadAddon<NetlinkAddon>('netlink', 'netlink');
    } catch {
      addon = null;
    }
  }
  return addon ?? undefined;
}

/** "aa:bb:cc:dd:ee:ff" → its 6 bytes. */
export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}
