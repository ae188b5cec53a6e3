/**
 * The fast datapath (fastdp): container frames between directly connected,
 * unencrypted peers travel in the kernel's VXLAN, not through the router.
 *
 * Weave's fastdp used an Open vSwitch datapath with VXLAN vports on UDP 6784; Flannel's
 * vxlan backend programs a Linux VXLAN device's FDB from its control plane. We do the
 * latter on Weave's port:
 *
 *   bridge "weave" ── veths (containers)
 *                  ── TAP vethwe-tap (router; isolated, no learning)
 *                  ── vxlan-6784     (kernel VXLAN, VNI 6784, dstport 6784; isolated, learning)
 *   vxlanhb-6784: a second VXLAN device (VNI 6785, same UDP port) carrying heartbeats.
 *
 * What the kernel does: the bridge floods broadcast/unknown frames from containers to
 * the TAP and to vxlan-6784 alike; vxlan-6784 replicates them to every VTEP in its
 * all-zeros FDB entries (one per peer whose connection is on fastdp) and sends known
 * unicast straight to the VTEP it learned the MAC behind.
 *
 * What the router does (router.ts keeps routing, MAC learning and relaying):
 *  - the TAP and vxlan-6784 ports are `isolated`, so the bridge never forwards between
 *    them: a frame received over VXLAN is never re-sent by the router, a frame the
 *    router delivers is never sent over VXLAN.
 *  - learning is off on the TAP port, so the bridge never sends a frame to the TAP
 *    alone: every frame the router captures was flooded, i.e. also offered to
 *    vxlan-6784. The router therefore skips every fastdp peer as the final
 *    destination of a captured frame (the kernel carried it), and still carries
 *    everything relayed, and a relay-only copy of broadcasts for fastdp neighbours that
 *    forward them further (they do not see what the kernel delivered to their bridge).
 *  - per connection, a heartbeat every 500 ms through the VXLAN port (FastdpPath in
 *    fastdp-path.ts); the FDB flooding entry exists only while the path is up.
 *
 * Why the VXLAN device learns MACs itself (kernel learning) instead of the router
 * programming per-MAC entries: the router never sees fastdp traffic, so it cannot learn
 * where a MAC lives without gossiping MACs; the kernel learns it from each received
 * packet's outer source, which is exactly the peer's VTEP. The router removes learned
 * entries towards any VTEP that is not a current fastdp peer (peers that fell back, or
 * strangers writing to our VXLAN port) and flushes what the bridge learned behind the
 * VXLAN port when a peer leaves fastdp, so frames for it flood to the TAP again.
 *
 * Why heartbeats are crafted VXLAN packets received by a second VXLAN device: the
 * kernel owns UDP 6784, so the router cannot bind it; sending a ready-made VXLAN
 * packet (fastdp-codec.ts) to PEER:6784 and letting the peer's kernel decapsulate it
 * into a link-local address the peer's router listens on exercises the same port,
 * firewall rules and path MTU (heartbeats are padded to a full-MTU frame) as data,
 * with no extra native code.
 *
 * IPv6 underlay (issue #21): a VXLAN device sends and receives over one family (the
 * kernel refuses an IPv6 FDB destination on an IPv4 device), so a second pair of
 * devices, vxlan6-6784 and vxlanhb6-6784, is made with `local ::` (IPv6, source chosen
 * by the route, like the IPv4 device's) on the same UDP port (the kernel's IPv6 VXLAN
 * socket is IPV6_V6ONLY, so both bind 6784). Peers known by an IPv6 address get their
 * flooding entries there and their heartbeats from a udp6 socket to the IPv6 heartbeat
 * device (inner addresses HB6_*). Both data devices are isolated bridge ports, like the
 * TAP: frames between an IPv4-only and an IPv6-only peer are relayed by the router. If
 * the IPv6 devices cannot be made, fastdp runs for IPv4 peers only and IPv6 peers stay
 * on the sleeve. VXLAN adds 70 bytes over IPv6 (50 over IPv4); heartbeats are padded
 * to a full frame, so a path too narrow for that never comes up.
 *
 * Ordering that keeps every frame on exactly one path: going up, the router stops
 * sending captured frames to the peer over the sleeve before the FDB entry is added;
 * going down, the entry is removed (and TAP backlog given GRACE_MS) before the router
 * resumes. A switch can lose a frame, never duplicate one.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { run, ip, ipBatch, BatchError, BRIDGE, TAP_NAME, NetdevError } from '../host/netdev.js';
import { formatMac } from './mac-cache.js';
import { numToPeerName } from '../mesh/peer-name.js';
import { monoNow } from '../mesh/mono-clock.js';
import { BeatTick, sharedBeat } from '../mesh/beat.js';
import {
  DATA_VNI, HEARTBEAT_VNI, HB_DEVICE_IP, HB_SOURCE_IP, HB6_DEVICE_IP, HB6_SOURCE_IP, HB_DEVICE_MAC, encodeHeartbeatPacket, parseHeartbeat,
} from './fastdp-codec.js';
import { DEFAULT_TIMING, FastdpPath, ZERO_MAC, parseFdbJson, planFdb, type FdbEntry, type PathTiming, type Vtep } from './fastdp-path.js';
import { netlink } from '../host/netlink.js';
import { UdpSocket, META_STRIDE } from './udp.js';

/** Time the router keeps treating a peer as fastdp after its FDB entry is gone (ms): lets the TAP backlog drain. */
const GRACE_MS = 100;
/**
 * Heartbeat/path tick (ms) while some path is being confirmed (heartbeats every
 * `DEFAULT_TIMING.intervalMs`, 500 ms: a 250 ms tick keeps their timing), and while
 * every path is up or there are none (heartbeats every 4 s, timeout 13 s: a 2 s tick
 * is fine-grained enough, and on the beat it lands on even seconds with the sleeve's).
 * [scale, issue #20] It was a fixed 100 ms, then 250 ms, then 1 s; the router calls
 * `kick()` when a connection becomes a candidate, so a new peer does not wait for the
 * slow tick.
 */
const TICK_MS = 250;
const IDLE_TICK_MS = 2_000;
/**
 * FDB audit (stale learned entries, flow count) and stats refresh interval (ms). Each
 * audit reads each device's FDB (an rtnetlink dump; a fork of `bridge fdb show` without
 * the addon), so [scale, issue #20] it runs every 30 s (was 10 s); changes of a path
 * sync at once anyway.
 */
const AUDIT_MS = 30_000;

export class FastdpError extends Error {
  override name = 'FastdpError';
}

/** Names of the data and heartbeat VXLAN devices for a VXLAN port (≤ 15 chars), IPv4 and IPv6 underlay. */
export function fastdpDeviceNames(vxlanPort: number): { data: string; heartbeat: string; data6: string; heartbeat6: string } {
  return { data: `vxlan-${vxlanPort}`, heartbeat: `vxlanhb-${vxlanPort}`, data6: `vxlan6-${vxlanPort}`, heartbeat6: `vxlanhb6-${vxlanPort}` };
}

/** Underlay family of a peer address (IPv6 literal: 6). */
function familyOf(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

/** A directly connected peer whose connection may use fastdp (unencrypted, established). */
export interface FastdpCandidate {
  /** Peer name as a 48-bit number. */
  num: number;
  /** Underlay address of the peer. */
  address: string;
  /** The peer's sleeve UDP port; its VXLAN port is this + 1 (6783 → 6784, as in Weave). */
  port: number;
}

/** What fastdp asks of the router. */
export interface FastdpHost {
  readonly selfNum: number;
  /** The peers that may use fastdp now; polled every tick. */
  fastdpCandidates(): FastdpCandidate[];
  /**
   * The connection to `num` is now on fastdp (`on`) or back on the sleeve. Called with
   * `on` before the kernel starts carrying its frames and with `!on` after it stopped.
   */
  setFastdp(num: number, on: boolean, reason: string): void;
  /**
   * A well-formed heartbeat for us from the connected peer `num` arrived (whatever the
   * path's state): the peer is alive, which the sleeve counts for its UDP timeout.
   */
  fastdpHeard?(num: number, now: number): void;
  log(line: string): void;
}

export interface FastdpOptions {
  /** Our sleeve port; VXLAN listens on port + 1. */
  port: number;
  /** Overlay MTU (bytes of IP per frame); the VXLAN device's MTU. */
  mtu: number;
  timing?: PathTiming;
}

/** Kernel counters of the data VXLAN device (frames and bytes of inner Ethernet). */
export interface FastdpTraffic {
  FramesIn: number;
  FramesOut: number;
  BytesIn: number;
  BytesOut: number;
}

interface PeerPath {
  num: number;
  address: string;
  family: 4 | 6;
  vxlanPort: number;
  path: FastdpPath;
  /** The router treats the peer as fastdp (may be true while the FDB entry is absent, never the reverse). */
  marked: boolean;
  /** Its connection is gone; the entry is dropped once unmarked. */
  gone: boolean;
  mtuWarned: boolean;
}

const bridgeCmd = (...args: string[]): Promise<string> => run('bridge', args);

/**
 * [scale, issue #20] The FDB of `dev`, as parseFdbJson gives it: an rtnetlink dump on a
 * libuv thread (router/host/netlink.ts fdbDump), or, without the addon (not built,
 * WEAVE_NO_NETLINK=1), `bridge -j fdb show dev DEV` forked. The fork was half of an idle
 * router's CPU (20-35 ms each, every 30 s). Rejects with a one-line error.
 */
async function readFdb(dev: string): Promise<FdbEntry[]> {
  const nl = netlink();
  if (!nl) return parseFdbJson(await bridgeCmd('-j', 'fdb', 'show', 'dev', dev));
  try {
    return await nl.fdbDump({ dev });
  } catch (err) {
    throw new FastdpError(`reading the FDB of ${dev}: ${(err as Error).message}`);
  }
}

/**
 * dgram's address lookup for the heartbeat sockets: peers' addresses are IP literals, so
 * answer at once instead of going through dns.lookup and a tick per datagram (a few % of
 * a router's CPU in a 30-peer join wave). Anything else still goes to dns.lookup.
 */
function literalLookup(address: string, family: unknown, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const f = net.isIP(address);
  if (f !== 0) return cb(null, address, f);
  dns.lookup(address, family as number, cb);
}

/**
 * [scale, issue #20] Append or delete flooding (or learned) entries of `dev`: rtnetlink
 * messages on a libuv thread (netlink.ts fdbSet, the ones `bridge fdb append|del` sends),
 * or, without the addon, `bridge` forked (one line, or one `-batch` for several). A fork
 * of the router per peer coming up, on every router at each join, was ~15 % of a
 * router's CPU in a 30-router join wave. A delete of an entry already gone is not an
 * error. Rejects with a one-line error.
 */
async function fdbChange(op: 'append' | 'del', dev: string, entries: Array<{ mac: string; dst: string; port?: number }>): Promise<void> {
  if (entries.length === 0) return;
  const nl = netlink();
  if (nl) {
    try {
      return await nl.fdbSet({ dev, op, entries });
    } catch (err) {
      throw new FastdpError(`${op === 'append' ? 'adding to' : 'deleting from'} the FDB of ${dev}: ${(err as Error).message}`);
    }
  }
  const line = (e: { mac: string; dst: string; port?: number }): string[] => ['fdb', op, e.mac, 'dev', dev, 'dst', e.dst, ...(e.port !== undefined ? ['port', String(e.port)] : [])];
  if (op === 'append') {
    if (entries.length === 1) await bridgeCmd(...line(entries[0]!));
    else await batch('bridge', entries.map(line));
    return;
  }
  for (const e of entries) {
    await bridgeCmd(...line(e)).catch((err: Error) => {
      if (!/No such file|not found/i.test(err.message)) throw err;
    });
  }
}

/**
 * [scale, issue #20] Several `ip`/`bridge` commands in one process (`TOOL -batch -`, one
 * command per stdin line, stopping at the first failure): every fork of the router costs
 * tens of milliseconds, seconds on a loaded machine, and set-up ran ~25 of them.
 * @throws NetdevError with the tool's first error line
 */
function batch(tool: 'ip' | 'bridge', lines: string[][]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(tool, ['-batch', '-'], { timeout: 10_000, maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const line = String(stderr).trim().split('\n')[0] || err.message;
      reject(new NetdevError(`${tool} -batch: ${line}`));
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(lines.map((l) => l.join(' ')).join('\n') + '\n');
  });
}

/**
 * Names and ifindexes of this namespace's links: an rtnetlink dump through the addon
 * (no fork: issue #20), else one `ip -j link show`.
 */
async function linkIndexes(): Promise<Map<string, number>> {
  const nl = netlink();
  if (nl) return new Map((await nl.linkList()).map((l) => [l.name, l.index]));
  const links = JSON.parse(await ip('-j', 'link', 'show')) as Array<{ ifname?: string; ifindex?: number }>;
  return new Map(links.filter((l) => typeof l.ifname === 'string' && typeof l.ifindex === 'number').map((l) => [l.ifname!, l.ifindex!]));
}

/**
 * Create the devices and start heartbeats. Returns undefined (after logging why and
 * removing anything half made) if the kernel or iproute2 cannot do it, so the router
 * runs sleeve-only rather than failing to start.
 */
export async function startFastdp(host: FastdpHost, opts: FastdpOptions): Promise<Fastdp | undefined> {
  const f = new Fastdp(host, opts);
  try {
    await f.setup();
    return f;
  } catch (err) {
    host.log(`fastdp: disabled, using the sleeve only: ${(err as Error).message}`);
    await f.close();
    return undefined;
  }
}

export class Fastdp {
  readonly vxlanPort: number;
  readonly devices: { data: string; heartbeat: string; data6: string; heartbeat6: string };
  /** The IPv6 devices and sockets are up (IPv6 peers can use fastdp). */
  ipv6 = false;
  private readonly timing: PathTiming;
  private readonly peers = new Map<number, PeerPath>();
  private recv: UdpSocket | undefined;
  private send: dgram.Socket | undefined;
  private recv6: UdpSocket | undefined;
  private send6: dgram.Socket | undefined;
  private timers: NodeJS.Timeout[] = [];
  private readonly ticker = new BeatTick(() => this.tick(monoNow()));
  private stopAudit: (() => void) | undefined;
  /** Flooding entries (address|port) we appended per data device, as of our last change or audit. */
  private readonly installed = new Map<string, Set<string>>();
  /** The next sync reads the kernel's FDB (periodic audit, or after a peer went down). */
  private auditDue = true;
  /** Learned unicast entries per data device at its last audit. */
  private readonly devFlows = new Map<string, number>();
  private closed = false;
  private syncing = false;
  private syncAgain = false;
  private flowCount = 0;
  private ifindex = -1;
  private ifindex6 = -1;
  private cachedTraffic: FastdpTraffic = { FramesIn: 0, FramesOut: 0, BytesIn: 0, BytesOut: 0 };
  private cachedTraffic6: FastdpTraffic = { FramesIn: 0, FramesOut: 0, BytesIn: 0, BytesOut: 0 };
  /** Heartbeats dropped, by reason (for debugging: "malformed", "not-for-us", "unknown-peer", "mtu"). */
  readonly drops: Record<string, number> = {};

  constructor(private readonly host: FastdpHost, private readonly opts: FastdpOptions) {
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 0xfffd) throw new FastdpError(`port ${opts.port} leaves no room for VXLAN on port + 1`);
    this.vxlanPort = opts.port + 1;
    this.devices = fastdpDeviceNames(this.vxlanPort);
    this.timing = opts.timing ?? DEFAULT_TIMING;
  }

  /** The heartbeat device's inner UDP port on every host: VXLAN port + 1. */
  private get innerPort(): number {
    return this.vxlanPort + 1;
  }

  /**
   * Build the devices (replacing leftovers), bind the heartbeat sockets, start the tick.
   * [scale, issue #20] Both underlays' devices in two `ip -batch` runs (create, then up;
   * the IPv6 lines last, so a kernel without IPv6 fails only them) and the link list over
   * rtnetlink: 2 forks of the router per launch, where there were 6.
   */
  async setup(): Promise<void> {
    const { data, heartbeat, data6, heartbeat6 } = this.devices;
    const mtu = String(this.opts.mtu);
    const port = String(this.vxlanPort);
    const leftovers = [...(await linkIndexes()).keys()].filter((n) => (Object.values(this.devices) as string[]).includes(n));
    if (leftovers.length) await batch('ip', leftovers.map((d) => ['link', 'del', 'dev', d]));
    // The TAP first: from the moment the VXLAN port joins, nothing may pass between them.
    // (Bridge-port flags through `ip ... type bridge_slave`.) Each data device is isolated
    // before it is up.
    const create4 = [
      ['link', 'set', 'dev', TAP_NAME, 'type', 'bridge_slave', 'isolated', 'on', 'learning', 'off'],
      ['link', 'set', 'dev', TAP_NAME, 'type', 'bridge_slave', 'fdb_flush'],
      ['link', 'add', data, 'type', 'vxlan', 'id', String(DATA_VNI), 'dstport', port, 'learning'],
      ['link', 'set', 'dev', data, 'mtu', mtu, 'master', BRIDGE],
      ['link', 'set', 'dev', data, 'type', 'bridge_slave', 'isolated', 'on'],
      ['link', 'add', heartbeat, 'type', 'vxlan', 'id', String(HEARTBEAT_VNI), 'dstport', port, 'nolearning'],
      ['link', 'set', 'dev', heartbeat, 'address', formatMac(HB_DEVICE_MAC), 'mtu', mtu, 'arp', 'off'],
    ];
    // The IPv6 underlay's pair (`local ::`).
    const create6 = [
      ['link', 'add', data6, 'type', 'vxlan', 'id', String(DATA_VNI), 'dstport', port, 'learning', 'local', '::'],
      ['link', 'set', 'dev', data6, 'mtu', mtu, 'master', BRIDGE],
      ['link', 'set', 'dev', data6, 'type', 'bridge_slave', 'isolated', 'on'],
      ['link', 'add', heartbeat6, 'type', 'vxlan', 'id', String(HEARTBEAT_VNI), 'dstport', port, 'nolearning', 'local', '::'],
      ['link', 'set', 'dev', heartbeat6, 'address', formatMac(HB_DEVICE_MAC), 'mtu', mtu, 'arp', 'off'],
    ];
    const up4 = [
      ['link', 'set', 'dev', data, 'up'],
      ['addr', 'add', HB_DEVICE_IP, 'peer', `${HB_SOURCE_IP}/32`, 'dev', heartbeat],
      ['link', 'set', 'dev', heartbeat, 'up'],
    ];
    const up6 = [
      ['link', 'set', 'dev', data6, 'up'],
      ['addr', 'add', HB6_DEVICE_IP, 'peer', `${HB6_SOURCE_IP}/32`, 'dev', heartbeat6],
      ['link', 'set', 'dev', heartbeat6, 'up'],
    ];
    // A failure in the IPv4 lines fails the set-up; one in the IPv6 lines only IPv6.
    let why6: string | undefined;
    const run2 = async (v4: string[][], v6: string[][]): Promise<void> => {
      await ipBatch(undefined, why6 === undefined ? [...v4, ...v6] : v4).catch((err: unknown) => {
        if (!(err instanceof BatchError) || err.line <= v4.length) throw err;
        why6 = err.message;
      });
    };
    await run2(create4, create6);
    for (const d of why6 === undefined ? [heartbeat, heartbeat6] : [heartbeat]) {
      await writeFile(`/proc/sys/net/ipv6/conf/${d}/disable_ipv6`, '1').catch(() => undefined);
    }
    await run2(up4, up6);

    this.recv = this.openHeartbeatSocket(HB_DEVICE_IP, 4);
    this.send = dgram.createSocket({ type: 'udp4', lookup: literalLookup });
    this.send.on('error', (err) => this.host.log(`fastdp: heartbeat send error: ${err.message}`));
    await bindSocket(this.send, 0, undefined);
    if (why6 === undefined) await this.setup6().catch((err: Error) => void (why6 = err.message));
    if (why6 !== undefined) {
      this.host.log(`fastdp: not over IPv6 (IPv6 peers stay on the sleeve): ${why6}`);
      for (const s of [this.recv6, this.send6]) {
        try {
          s?.close();
        } catch { /* not bound */ }
      }
      this.recv6 = this.send6 = undefined;
      for (const d of [data6, heartbeat6]) await ip('link', 'del', 'dev', d).catch(() => undefined);
    }
    // One link list for both data devices' ifindexes (sysfs checks, traffic()).
    const indexes = await linkIndexes().catch(() => new Map<string, number>());
    this.ifindex = indexes.get(data) ?? -1;
    if (this.ipv6) this.ifindex6 = indexes.get(data6) ?? -1;
    this.armTick(TICK_MS);
    // On the shared beat, so the audit wakes the process together with the ticks.
    this.stopAudit = sharedBeat.every(AUDIT_MS, () => {
      this.refreshTraffic();
      this.auditDue = true;
      this.scheduleSync();
    });
    this.host.log(`fastdp: ${data} (VNI ${DATA_VNI}, UDP ${port}, mtu ${mtu}) on bridge ${BRIDGE}, heartbeats via ${heartbeat}${this.ipv6 ? `; IPv6 underlay: ${data6}, ${heartbeat6}` : ''}`);
  }

  /** The IPv6 underlay's heartbeat sockets (its devices are up). */
  private async setup6(): Promise<void> {
    this.recv6 = this.openHeartbeatSocket(HB6_DEVICE_IP, 6);
    this.send6 = dgram.createSocket({ type: 'udp6', ipv6Only: true, lookup: literalLookup });
    this.send6.on('error', (err) => this.host.log(`fastdp: IPv6 heartbeat send error: ${err.message}`));
    await bindSocket(this.send6, 0, '::');
    this.ipv6 = true;
  }

  /**
   * The socket heartbeats of the `family` underlay arrive on (inner IPv4 `address`).
   * [scale, issue #20] Nothing watches it: every tick drains it (drainHeartbeats), so
   * the heartbeats of N peers cost no wake-up of their own (they were half of an idle
   * 30-peer router's wake-ups). A tick runs every 250 ms while a path is confirmed and
   * every 2 s otherwise, well inside the 13 s timeout; the 4 MiB buffer holds two seconds
   * of heartbeats from thousands of peers.
   */
  private openHeartbeatSocket(address: string, family: 4 | 6): UdpSocket {
    let s: UdpSocket;
    try {
      // Any size: a peer with another MTU must still be heard (and told, see onHeartbeat).
      s = UdpSocket.open({ port: this.innerPort, address, batch: 32, slotBytes: 65536, gso: false, gro: false });
    } catch (err) {
      throw new FastdpError(`cannot bind the heartbeat socket to ${address}:${this.innerPort}: ${(err as Error).message}`);
    }
    s.start((slab, meta, count) => {
      for (let i = 0; i < count; i++) {
        const at = meta[i * META_STRIDE]!;
        this.onHeartbeat(slab.subarray(at, at + meta[i * META_STRIDE + 1]!), family);
      }
    }, (err) => this.host.log(`fastdp: ${family === 6 ? 'IPv6 ' : ''}heartbeat socket error: ${err.message}`), { poll: false });
    s.unref();
    return s;
  }

  /** Reads the heartbeats queued since the last tick (see openHeartbeatSocket). */
  private drainHeartbeats(): void {
    this.recv?.drain();
    this.recv6?.drain();
  }

  /** Current path of the connection to `num` as the router should show it. */
  pathOf(num: number): 'fastdp' | 'sleeve' {
    return this.peers.get(num)?.marked ? 'fastdp' : 'sleeve';
  }

  /** Kernel-learned unicast entries (MAC → peer) of the VXLAN device, as of the last audit. */
  flows(): number {
    return this.flowCount;
  }

  /**
   * Counters of the data VXLAN device, read on demand from sysfs when it shows our
   * device (same ifindex: sysfs is per network namespace only where it was remounted,
   * as `ip netns exec` does), else the values `ip -s` gave at the last audit.
   */
  traffic(): FastdpTraffic {
    this.cachedTraffic = readTraffic(this.devices.data, this.ifindex, this.cachedTraffic);
    if (!this.ipv6) return { ...this.cachedTraffic };
    this.cachedTraffic6 = readTraffic(this.devices.data6, this.ifindex6, this.cachedTraffic6);
    const a = this.cachedTraffic;
    const b = this.cachedTraffic6;
    return { FramesIn: a.FramesIn + b.FramesIn, FramesOut: a.FramesOut + b.FramesOut, BytesIn: a.BytesIn + b.BytesIn, BytesOut: a.BytesOut + b.BytesOut };
  }

  private refreshTraffic(): void {
    const read = (dev: string, set: (t: FastdpTraffic) => void): void => {
      // [scale, issue #20] traffic() reads sysfs on demand where it shows our device: no fork then.
      if (sysfsShows(dev, dev === this.devices.data ? this.ifindex : this.ifindex6)) return;
      ip('-s', '-j', 'link', 'show', 'dev', dev).then((s) => {
        const st = (JSON.parse(s) as Array<{ stats64?: { rx: { packets: number; bytes: number }; tx: { packets: number; bytes: number } } }>)[0]?.stats64;
        if (st) set({ FramesIn: st.rx.packets, FramesOut: st.tx.packets, BytesIn: st.rx.bytes, BytesOut: st.tx.bytes });
      }, () => undefined);
    };
    read(this.devices.data, (t) => (this.cachedTraffic = t));
    if (this.ipv6) read(this.devices.data6, (t) => (this.cachedTraffic6 = t));
  }

  // ---- heartbeats ----
  /**
   * (Re-)arm the tick `ms` from now, unless it is already due sooner. The idle tick
   * (IDLE_TICK_MS) rides the router's shared beat (mesh/beat.ts): one wake-up with the
   * sleeve's and the other slow ticks.
   */
  private armTick(ms: number): void {
    if (this.closed) return;
    this.ticker.arm(ms);
  }

  /** A connection may have become a candidate (established, unencrypted): look soon, not at the next slow tick. */
  kick(): void {
    this.armTick(50);
  }

  private tick(now: number): void {
    if (this.closed) return;
    try {
      this.drainHeartbeats();
      this.tickOnce(now);
    } finally {
      let confirming = false;
      for (const p of this.peers.values()) if (p.gone || p.path.confirming(now)) confirming = true;
      this.armTick(confirming ? TICK_MS : IDLE_TICK_MS);
    }
  }

  private tickOnce(now: number): void {
    let changed = false;
    const seen = new Set<number>();
    for (const c of this.host.fastdpCandidates()) {
      seen.add(c.num);
      let p = this.peers.get(c.num);
      // Without the IPv6 devices an IPv6 peer never leaves the sleeve.
      if (familyOf(c.address) === 6 && !this.ipv6) continue;
      if (p === undefined) {
        p = { num: c.num, address: c.address, family: familyOf(c.address), vxlanPort: c.port + 1, path: new FastdpPath(this.timing), marked: false, gone: false, mtuWarned: false };
        this.peers.set(c.num, p);
      } else if (p.address !== c.address || p.vxlanPort !== c.port + 1) {
        p.address = c.address;
        p.family = familyOf(c.address);
        p.vxlanPort = c.port + 1;
        if (p.path.reset('peer address changed')) changed = true;
      }
      p.gone = false;
      if (p.path.due(now)) this.sendHeartbeat(p, now);
    }
    for (const p of this.peers.values()) {
      if (!seen.has(p.num)) {
        p.gone = true;
        if (p.path.reset('connection closed')) changed = true;
        if (!p.marked) this.peers.delete(p.num);
        continue;
      }
      if (this.evaluate(p, now)) changed = true;
    }
    if (changed) this.scheduleSync();
  }

  private evaluate(p: PeerPath, now: number): boolean {
    const t = p.path.evaluate(now);
    if (t === undefined) return false;
    this.host.log(`fastdp: path to ${numToPeerName(p.num)} at ${p.address} is ${t === 'fastdp' ? 'up' : `down (${p.path.reason})`}`);
    return true;
  }

  private sendHeartbeat(p: PeerPath, now: number): void {
    const seq = p.path.sent(now);
    const pkt = encodeHeartbeatPacket({ sender: this.host.selfNum, receiver: p.num, seq, heard: p.path.hearing(now), mtu: this.opts.mtu }, p.vxlanPort + 1, p.family);
    (p.family === 6 ? this.send6 : this.send)?.send(pkt, p.vxlanPort, p.address, (err) => {
      if (err) this.drop('send');
    });
  }

  /** A heartbeat from the IPv4 (`family` 4) or IPv6 heartbeat device: it must match the peer's family. */
  private onHeartbeat(msg: Buffer, family: 4 | 6 = 4): void {
    const hb = parseHeartbeat(msg);
    if (hb === undefined) return this.drop('malformed');
    if (hb.receiver !== this.host.selfNum) return this.drop('not-for-us');
    const p = this.peers.get(hb.sender);
    if (p === undefined || p.gone || p.family !== family) return this.drop('unknown-peer');
    const heardAt = monoNow();
    this.host.fastdpHeard?.(p.num, heardAt);
    if (hb.mtu !== this.opts.mtu) {
      // Frames bigger than the smaller side's bridge ports would be dropped there; the
      // sleeve's PMTU discovery copes with that, the kernel path does not.
      if (!p.mtuWarned) this.host.log(`fastdp: not using VXLAN to ${numToPeerName(p.num)}: its overlay MTU is ${hb.mtu}, ours ${this.opts.mtu}; launch both with the same --mtu`);
      p.mtuWarned = true;
      return this.drop('mtu');
    }
    const now = heardAt;
    p.path.onHeartbeat(now, hb.heard);
    if (this.evaluate(p, now)) this.scheduleSync();
    if (p.path.confirming(now)) this.armTick(TICK_MS);
  }

  private drop(reason: string): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
  }

  // ---- FDB ----
  /** Run (or re-run after the current one) a sync of the kernel state with the paths. */
  private scheduleSync(): void {
    if (this.closed) return;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    void (async () => {
      try {
        do {
          this.syncAgain = false;
          await this.syncOnce();
        } while (this.syncAgain && !this.closed);
      } catch (err) {
        this.auditDue = true; // our record of the table may be wrong now: read it next time
        if (!this.closed) this.host.log(`fastdp: cannot program ${this.devices.data}: ${(err as Error).message}`);
      } finally {
        this.syncing = false;
      }
    })();
  }

  private async syncOnce(): Promise<void> {
    const wanted: Vtep[] = [];
    const wanted6: Vtep[] = [];
    const wantedNums = new Set<number>();
    for (const p of this.peers.values()) {
      if (p.path.state !== 'fastdp' || p.gone) continue;
      if (!p.marked) {
        p.marked = true;
        this.host.setFastdp(p.num, true, '');
      }
      (p.family === 6 ? wanted6 : wanted).push({ address: p.address, port: p.vxlanPort });
      wantedNums.add(p.num);
    }
    let flows = await this.syncDevice(this.devices.data, wanted);
    if (flows === undefined) return;
    if (this.ipv6) {
      const f6 = await this.syncDevice(this.devices.data6, wanted6);
      if (f6 === undefined) return;
      flows += f6;
    }
    this.flowCount = flows;
    this.auditDue = false;
    const down = [...this.peers.values()].filter((p) => p.marked && !wantedNums.has(p.num));
    if (down.length === 0) return;
    await new Promise((r) => setTimeout(r, GRACE_MS));
    for (const p of down) {
      if (p.path.state === 'fastdp' && !p.gone) continue; // came back meanwhile: the next round keeps it
      p.marked = false;
      this.host.setFastdp(p.num, false, p.path.reason || 'connection closed');
      if (p.gone) this.peers.delete(p.num);
    }
    // Until the peer's own heartbeat times out it may keep sending to us over VXLAN, and
    // the kernel relearns its MACs: clean up again once it must have noticed.
    const settle = setTimeout(() => {
      this.auditDue = true; // learned MACs of the gone peer may have come back: read the table
      this.scheduleSync();
    }, this.timing.timeoutMs + 2 * this.timing.intervalMs);
    settle.unref();
    this.timers.push(settle);
  }

  /**
   * Programs one data device's FDB for `wanted` VTEPs (all of its family). Returns the
   * learned unicast entries kept, or undefined if closed meanwhile.
   */
  private async syncDevice(dev: string, wanted: Vtep[]): Promise<number | undefined> {
    // [scale, issue #20] A peer coming up only needs its flooding entry appended: when
    // nothing we installed is unwanted and no audit is due, skip `bridge fdb show` (a
    // fork of the router per peer, times every router on each join). Removals and the
    // periodic audit read the kernel's table and plan from it.
    const installed = this.installed.get(dev) ?? new Set<string>();
    this.installed.set(dev, installed);
    const key = (v: Vtep): string => `${v.address}|${v.port}`;
    const wantedKeys = new Set(wanted.map(key));
    if (!this.auditDue && [...installed].every((k) => wantedKeys.has(k))) {
      const adds = wanted.filter((v) => !installed.has(key(v)));
      if (adds.length === 0) return this.devFlows.get(dev) ?? 0;
      if (this.closed) return undefined;
      await fdbChange('append', dev, adds.map((a) => ({ mac: ZERO_MAC, dst: a.address, port: a.port })));
      for (const a of adds) installed.add(key(a));
      return this.devFlows.get(dev) ?? 0;
    }
    const plan = planFdb(await readFdb(dev), wanted, this.vxlanPort);
    installed.clear();
    for (const v of wanted) installed.add(key(v));
    if (this.closed) return undefined;
    await fdbChange('del', dev, plan.del);
    if (this.closed) return undefined;
    await fdbChange('append', dev, plan.add.map((a) => ({ mac: ZERO_MAC, dst: a.address, port: a.port })));
    // MACs the bridge learned behind the VXLAN port may belong to a peer the kernel no
    // longer reaches: forget them all, so frames for them flood to the TAP (and relearn).
    if (plan.del.length) await ip('link', 'set', 'dev', dev, 'type', 'bridge_slave', 'fdb_flush');
    this.devFlows.set(dev, plan.flows);
    return plan.flows;
  }

  /**
   * Stop heartbeats, remove both VXLAN devices and hand the TAP back to plain bridge
   * behaviour. Idempotent; errors (devices already gone, e.g. after `weave reset`) are
   * ignored. Peers still marked are reported back to the sleeve.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ticker.cancel();
    this.stopAudit?.();
    this.stopAudit = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    for (const s of [this.recv, this.send, this.recv6, this.send6]) {
      try {
        s?.close();
      } catch { /* not bound */ }
    }
    for (const d of Object.values(this.devices)) {
      await ip('link', 'del', 'dev', d).catch((err: unknown) => {
        if (!(err instanceof NetdevError)) throw err;
      });
    }
    for (const p of this.peers.values()) {
      if (p.marked) this.host.setFastdp(p.num, false, 'fastdp stopped');
    }
    this.peers.clear();
    await bridgeCmd('link', 'set', 'dev', TAP_NAME, 'isolated', 'off', 'learning', 'on').catch(() => undefined);
  }
}

/** Counters of a data device from sysfs when it is ours (same ifindex), else `cached`. */
/** Whether /sys/class/net/DEV is our device (same ifindex: sysfs belongs to our network namespace). */
function sysfsShows(dev: string, ifindex: number): boolean {
  if (ifindex < 0) return false;
  try {
    return Number(readFileSync(`/sys/class/net/${dev}/ifindex`, 'utf8')) === ifindex;
  } catch {
    return false;
  }
}

function readTraffic(dev: string, ifindex: number, cached: FastdpTraffic): FastdpTraffic {
  if (ifindex < 0) return cached;
  const base = `/sys/class/net/${dev}`;
  try {
    if (Number(readFileSync(`${base}/ifindex`, 'utf8')) === ifindex) {
      const n = (f: string): number => Number(readFileSync(`${base}/statistics/${f}`, 'utf8'));
      return { FramesIn: n('rx_packets'), FramesOut: n('tx_packets'), BytesIn: n('rx_bytes'), BytesOut: n('tx_bytes') };
    }
  } catch { /* device gone or sysfs not ours: keep the cached values */ }
  return cached;
}

function bindSocket(s: dgram.Socket, port: number, address: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onErr = (err: Error): void => reject(new FastdpError(`cannot bind the heartbeat socket to ${address ?? '0.0.0.0'}:${port}: ${err.message}`));
    s.once('error', onErr);
    s.bind(port, address, () => {
      s.off('error', onErr);
      resolve();
    });
  });
}
