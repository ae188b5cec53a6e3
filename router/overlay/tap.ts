/**
 * TAP device access for the router: the Linux TUN/TAP driver
 * (kernel Documentation/networking/tuntap.rst) exposes a virtual Ethernet
 * interface as a file descriptor where one read() is one frame the kernel sent
 * out of the interface and one write() is one frame received "from the wire".
 *
 * The I/O lives in the native addon `build/Release/tap.node`
 * (router/overlay/native/tap.cc): a uv_poll watcher on the main loop drains every ready
 * frame into one reused slab and calls JavaScript once per wake-up; writes are
 * synchronous non-blocking write() calls. No libuv threadpool is involved, so
 * throughput is high and process.exit() is never blocked by a pending read.
 *
 * Bringing the link up, its MTU, txqueuelen and bridge membership are
 * netdev.ts's job (`ip` commands); this module only opens the device.
 */
import type { FlowStats } from './flow-cache.js';
import { loadAddon, AddonMissing, CodedError } from './native-addon.js';
import type { Socket } from 'node:dgram';

/**
 * A TAP failure with an errno-style `code`:
 * `ENAMETOOLONG` / `EINVAL` (bad name or options), `ENOENT` (no /dev/net/tun),
 * `EPERM` / `EACCES` (no CAP_NET_ADMIN), `EBUSY` (name attached elsewhere),
 * `ENOADDON` (the native addon is not built), `ECLOSED` / `EALREADY` (state),
 * or the errno name of a failed read (`EBADFD`, `EBADF`...), reported via
 * `start()`'s onError.
 */
export class TapError extends CodedError {}

/**
 * Receives one batch of frames read from the TAP in one event-loop wake-up.
 * Frame i is `slab.subarray(frames[2*i], frames[2*i] + frames[2*i+1])`
 * (offset, length in bytes; a whole Ethernet frame starting at the destination
 * MAC, no preamble/FCS). `count` ≥ 1.
 *
 * `slab` and `frames` are reused for every batch: their contents are valid
 * only until the handler returns. Copy anything that must outlive the call.
 */
export type FrameBatchHandler = (slab: Buffer, frames: Uint32Array, count: number) => void;

/** Counters since open (all plain counts of frames / events). */
export interface TapStats {
  /** frames delivered to the batch handler */
  readFrames: number;
  /** handler calls (wake-ups that found at least one frame) */
  readBatches: number;
  /** frames longer than maxFrame, dropped because the read cut them short */
  readTruncated: number;
  /** read or poll failures (each one stops reading and is reported once) */
  readErrors: number;
  /** frames the kernel accepted */
  writeFrames: number;
  /** frames not written because the device queue was full (EAGAIN) */
  writeDrops: number;
  /** frames refused for another reason: EIO while the link is down, EINVAL for a runt, or writing after close */
  writeErrors: number;
  /** errno name of the last failed write, or null */
  lastWriteError: string | null;
  /** opened with a virtio-net header ({@link TapOpenOptions.vnetHdr}) */
  vnetHdr: boolean;
  /** frames written merged into TCP super-frames by writeSlab (vnetHdr only), included in writeFrames */
  writeCoalesced: number;
  /** TCP super-frames writeSlab wrote (each carrying several of writeCoalesced) */
  writeSuperFrames: number;
  /** super-frames the kernel refused (EINVAL): merging of that IP family stopped, the segments went one by one */
  writeMergeFallbacks: number;
  /** the kernel granted read offloads ({@link TapOpenOptions.readOffload}) */
  readOffload: boolean;
  /** TCP super-frames read (read offloads), each cut into segments */
  readSuperFrames: number;
  /** segments cut from super-frames, included in readFrames */
  readSegments: number;
  /** datagrams the egress flow cache sent in UDP GSO runs (port | COALESCE flows) */
  egressGso: number;
  /**
   * frames the egress flow cache sent several to a FRAMES datagram: consecutive small (< 512 B)
   * frames of one wake-up to one next hop, packed while their records fit the path (issue #19)
   */
  egressPacked: number;
  /**
   * Wake-ups the egress flow cache handed to JavaScript (native tap.cc ForwardCached), by the
   * first reason met: a runt or group-addressed frame; a small (< 512 B) frame in a multi-frame
   * wake-up that is not the tail of a bulk frame (only with WEAVE_NO_SMALL_PACK=1: such frames
   * are packed in C otherwise); no live flow for the MAC pair; a frame longer
   * than the flow's path takes; an encrypted flow that cannot seal now (re-key, counter).
   */
  missGroup: number;
  missSmall: number;
  missFlow: number;
  missLong: number;
  missSeal: number;
  /**
   * Egress flows to an IPv6 next hop send from a UDP socket connected to that hop, so the
   * kernel keeps the route instead of looking it up (and choosing a source) per datagram
   * (native tap.cc, Conn6; off with WEAVE_NO_CONNECTED6=1): such sockets open now, opened
   * since the TAP opened, that failed to open (those flows send from the sleeve socket), and
   * sends repeated because an ICMPv6 error to an earlier datagram was left on the socket.
   */
  conn6Sockets: number;
  conn6Opened: number;
  conn6Failed: number;
  conn6Retries: number;
}

/** Options of {@link Tap.open}. */
export interface TapOpenOptions {
  /**
   * Largest frame to accept, bytes, in [64, 1048576]; default 65553
   * (65535-byte MTU + 14-byte Ethernet header + 4-byte VLAN tag). Must be at
   * least the interface MTU + 18: longer frames are dropped and counted as
   * `readTruncated`.
   */
  maxFrame?: number;
  /** Most frames per handler call, in [1, 65536]; default 256. */
  batch?: number;
  /**
   * Read slab size, bytes, ≥ maxFrame + 1; default batch × 2048 + maxFrame + 1
   * (a full batch of 1500-MTU frames). Frames are packed contiguously and a
   * read is only attempted while maxFrame + 1 bytes remain, so large frames
   * make batches shorter, never truncated.
   */
  slabBytes?: number;
  /**
   * Open with IFF_VNET_HDR (default false). Reads still deliver plain frames (the
   * kernel is granted no offloads, so it keeps segmenting and checksumming); but
   * {@link Tap.writeSlab} merges consecutive IPv4/TCP or IPv6/TCP (no extension
   * headers; IPv6 off with WEAVE_NO_TAP_MERGE6=1) segments of one flow with contiguous sequence numbers and identical headers (what Linux's TCP GRO merges)
   * into one super-frame with a GSO header, written with one syscall, so the
   * bridge and the receiving container handle one packet instead of up to 64.
   */
  vnetHdr?: boolean;
  /**
   * Read offloads (needs `vnetHdr`; default: on with `vnetHdr` unless the
   * environment sets WEAVE_NO_TAP_TSO=1). The TAP is granted TUN_F_CSUM,
   * TUN_F_TSO4 and TUN_F_TSO6, so the kernel hands over a container's TCP
   * super-frames (up to 64 KiB) with one read instead of one read per segment;
   * the addon cuts each into exactly the MTU-sized segments Linux's GSO would
   * have made (checksums complete) before the batch handler sees them, so frames
   * look the same to every consumer. Without kernel support it stays off
   * ({@link TapStats.readOffload}).
   */
  readOffload?: boolean;
}

interface NativeTap {
  readonly fd: number;
  readonly name: string;
  start(onBatch: FrameBatchHandler, onError: (code: string, message: string) => void): void;
  write(frame: Uint8Array, offset?: number, length?: number): boolean;
  writeBatch(frames: Uint8Array[], count?: number): number;
  writeSlab(slab: Uint8Array, frames: Uint32Array, count: number): number;
  stats(): TapStats;
  addFlow(srcMac: number, dstMac: number, udpFd: number, addr: number | string, port: number, template: Uint8Array, maxFrame: number, ttlMs: number, sealState?: Uint8Array, key?: Uint8Array, frame?: Uint8Array): boolean;
  clearFlows(): void;
  flowStats(): FlowStats;
  linkFastPath(udpPort: unknown): boolean;
  ref(): void;
  unref(): void;
  close(): void;
}

interface NativeAddon {
  Tap: new (name: string, maxFrame?: number, batch?: number, slabBytes?: number, vnetHdr?: boolean, readOffload?: boolean) => NativeTap;
  setDontFragment(fd: number, on: boolean): void;
  segmentTso(frame: Uint8Array, gsoType: number, gsoSize: number, csumStart: number): Buffer[];
  mergeTcp(slab: Uint8Array, frames: Uint32Array, count: number): Buffer[];
  defaultMaxFrame: number;
}

/** Loads the addon on first use, so importing this module never fails. */
function native(): NativeAddon {
  try {
    return loadAddon<NativeAddon>('tap', 'TAP');
  } catch (e) {
    throw e instanceof AddonMissing ? new TapError('ENOADDON', e.message) : e;
  }
}

/** Rethrows a native error (which carries `code`) as a TapError. */
function asTapError(e: unknown): TapError {
  if (e instanceof TapError) return e;
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === 'string' ? err.code : 'EUNKNOWN';
  const message = typeof err?.message === 'string' ? err.message : String(e);
  return new TapError(code, message);
}

/** Linux's dev_valid_name(): 1–15 bytes, not "." or "..", no '/', ':' or whitespace. */
function checkName(name: string): void {
  if (typeof name !== 'string') throw new TapError('EINVAL', 'TAP name must be a string');
  const bytes = Buffer.byteLength(name);
  if (bytes === 0) throw new TapError('EINVAL', 'TAP name must not be empty');
  if (bytes > 15) throw new TapError('ENAMETOOLONG', `TAP name '${name}' is ${bytes} bytes; Linux allows at most 15`);
  // '%' would let the kernel pick a name (tap%d); the router needs the exact one.
  if (name === '.' || name === '..' || /[/:%\s]/.test(name)) {
    throw new TapError('EINVAL', `TAP name '${name}' is not a valid interface name (no '/', ':', '%' or whitespace; not '.' or '..')`);
  }
}

function checkInt(what: string, v: number | undefined, lo: number, hi: number): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw new TapError('EINVAL', `TAP ${what} must be an integer in [${lo}, ${hi}], got ${String(v)}`);
  }
}

/**
 * An open TAP device. The device exists while it is open (unless something
 * made it persistent) and vanishes when closed or when the process dies.
 */
export class Tap {
  /** Interface name as the kernel reports it. */
  readonly name: string;
  /** The /dev/net/tun file descriptor (−1 after close). */
  get fd(): number {
    return this.handle.fd;
  }
  private readonly handle: NativeTap;

  private constructor(handle: NativeTap) {
    this.handle = handle;
    this.name = handle.name;
  }

  /**
   * Opens (creating if needed) TAP `name` with IFF_TAP | IFF_NO_PI, non-blocking
   * and close-on-exec. The link is left down.
   * With `vnetHdr`, IFF_VNET_HDR too (see {@link TapOpenOptions.vnetHdr}).
   * @throws TapError ENAMETOOLONG/EINVAL for a bad name or option, ENOENT when
   *   /dev/net/tun is missing, EPERM without CAP_NET_ADMIN, EBUSY when another
   *   open file holds the name, EINVAL when a non-TAP device has the name,
   *   ENOADDON when the addon is not built.
   */
  static open(name: string, opts: TapOpenOptions = {}): Tap {
    checkName(name);
    checkInt('maxFrame', opts.maxFrame, 64, 1 << 20);
    checkInt('batch', opts.batch, 1, 65536);
    const maxFrame = opts.maxFrame ?? 65535 + 18;
    checkInt('slabBytes', opts.slabBytes, maxFrame + 1, 256 * 1024 * 1024);
    if (opts.vnetHdr !== undefined && typeof opts.vnetHdr !== 'boolean') throw new TapError('EINVAL', `TAP vnetHdr must be a boolean, got ${String(opts.vnetHdr)}`);
    if (opts.readOffload !== undefined && typeof opts.readOffload !== 'boolean') throw new TapError('EINVAL', `TAP readOffload must be a boolean, got ${String(opts.readOffload)}`);
    if (opts.readOffload === true && opts.vnetHdr !== true) throw new TapError('EINVAL', 'TAP readOffload needs vnetHdr');
    const readOffload = opts.readOffload ?? (opts.vnetHdr === true && process.env.WEAVE_NO_TAP_TSO !== '1');
    const { Tap: NativeTapCtor } = native();
    try {
      return new Tap(new NativeTapCtor(name, opts.maxFrame, opts.batch, opts.slabBytes, opts.vnetHdr, readOffload));
    } catch (e) {
      throw asTapError(e);
    }
  }

  /**
   * Starts reading: `onBatch` runs once per wake-up with every frame that was
   * ready (see {@link FrameBatchHandler} for the reuse rule). A read failure
   * (e.g. EBADFD when the interface is deleted) stops reading and calls
   * `onError` once; without `onError` it becomes an uncaught exception. While
   * started the TAP keeps the event loop alive unless {@link unref} is called.
   * Exceptions thrown by the handlers are uncaught exceptions.
   * @throws TapError ECLOSED after close, EALREADY if already started.
   */
  start(onBatch: FrameBatchHandler, onError?: (err: TapError) => void): void {
    const report = (code: string, message: string): void => {
      const err = new TapError(code, message);
      if (onError === undefined) throw err;
      onError(err);
    };
    try {
      this.handle.start(onBatch, report);
    } catch (e) {
      throw asTapError(e);
    }
  }

  /**
   * Writes one frame (`frame[offset, offset+length)`, default the whole buffer).
   * Returns false if it was not sent: EAGAIN (queue full, counted in
   * `writeDrops`) or another error such as EIO while the link is down
   * (counted in `writeErrors`, see `lastWriteError`). Never throws for I/O;
   * throws TypeError/RangeError for a non-buffer or out-of-range offset/length.
   */
  write(frame: Uint8Array, offset?: number, length?: number): boolean {
    return this.handle.write(frame, offset, length);
  }

  /**
   * Writes `frames[0..count)` (default all), each buffer one whole frame.
   * Returns how many the kernel took; stops at the first EAGAIN and counts the
   * rest as drops; other errors are counted and skipped.
   */
  writeBatch(frames: Uint8Array[], count?: number): number {
    return this.handle.writeBatch(frames, count);
  }

  /**
   * Writes `count` frames held in one buffer: frame i is
   * `slab[frames[2i], frames[2i] + frames[2i+1])` (the same layout a
   * {@link FrameBatchHandler} receives). All pairs are bounds-checked first
   * (RangeError); then as {@link writeBatch}. With {@link TapOpenOptions.vnetHdr},
   * runs of mergeable TCP segments go out as one super-frame each (counted per
   * segment in the result and in writeFrames / writeCoalesced); if the kernel
   * refuses one (EINVAL), merging stops for this TAP and its segments go one by one.
   */
  writeSlab(slab: Uint8Array, frames: Uint32Array, count: number): number {
    return this.handle.writeSlab(slab, frames, count);
  }

  /** A fresh snapshot of the counters. */
  stats(): TapStats {
    return this.handle.stats();
  }

  /**
   * Installs an egress flow (router/overlay/flow-cache.ts): until `ttlMs` ms from now, a
   * wake-up whose every frame (at most FLOW_BATCH_MAX) is `srcMac` → `dstMac` (48-bit
   * numbers) or another installed flow, and at most `maxFrame` bytes, is sent by the
   * addon as FRAMES datagrams to `addr` (IPv4 as uint32, or IPv6 text) : `port` on the
   * UDP socket `udpFd` (IPv4 or dual-stack IPv6; IPv6 on an IPv4 socket installs
   * nothing and returns false) — `template` (20 bytes, egressTemplate()), the frame's length, the frame —
   * and the batch handler is not called. A later install for the same slot replaces it.
   * Returns false (nothing installed) before start(), after close(), or when `udpFd` is
   * not a socket of a fitting family.
   * With `seal` (the next hop's Sealer: its sharedState and current key), every such
   * datagram is sealed in C first (overlay/native/sleeve-aead.h: ENCRYPTED header, the
   * Sealer's own counter, the same bytes Sealer.seal would write); the addon keeps a copy
   * of the key until the flows are cleared, and never seals once the Sealer's epoch moved
   * on (the flow then misses).
   * `port` may carry COALESCE (udp.ts): the flow's datagrams may then leave as UDP GSO runs.
   * With `frame` (the frame the router just judged, Ethernet header first) the flow takes
   * only frames with its EtherType and IP source and destination, and a frame that must
   * never be cached (ARP, IPv6 neighbour discovery, IPv6 extension headers, other
   * EtherTypes) installs nothing (false): the policy's per-frame checks are not bypassed
   * (flow-cache.h, FrameKey). Without it every frame between the two MACs matches (the
   * addon's own tests).
   * @throws TypeError/RangeError for a missing or out-of-range argument.
   */
  addFlow(srcMac: number, dstMac: number, udpFd: number, addr: number | string, port: number, template: Uint8Array, maxFrame: number, ttlMs: number,
    seal?: { sharedState: Buffer; currentKey: Buffer }, frame?: Uint8Array): boolean {
    if (seal === undefined) return this.handle.addFlow(srcMac, dstMac, udpFd, addr, port, template, maxFrame, ttlMs, undefined, undefined, frame);
    return this.handle.addFlow(srcMac, dstMac, udpFd, addr, port, template, maxFrame, ttlMs, seal.sharedState, seal.currentKey, frame);
  }

  /** Forgets every egress flow (the router's decisions changed). */
  clearFlows(): void {
    this.handle.clearFlows();
  }

  /** Egress flow cache counters. */
  flowStats(): FlowStats {
    return this.handle.flowStats();
  }

  /**
   * Lets the addons wait for the next frame themselves after a wake-up the flow cache
   * forwarded (router/overlay/native/flow-cache.h, RunNested), on this TAP and the UDP socket
   * whose {@link UdpSocket.fastPort} is given, until libuv has other work or a timer is
   * due. Call after start(); once per TAP. Returns false if it could not link.
   * @throws TypeError if `udpPort` is not a fastPort() handle.
   */
  linkFastPath(udpPort: unknown): boolean {
    return this.handle.linkFastPath(udpPort);
  }

  /** Bytes of virtio_net_hdr that precede every frame on the fd: 10 with vnetHdr, else 0. */
  get vnetHeaderBytes(): number {
    return this.handle.stats().vnetHdr ? 10 : 0;
  }

  /** Lets a started TAP keep the process alive (the default). */
  ref(): void {
    this.handle.ref();
  }

  /** Lets the process exit even while this TAP is started. */
  unref(): void {
    this.handle.unref();
  }

  /**
   * Stops reading and closes the fd (the kernel removes a non-persistent TAP).
   * Idempotent and safe inside the handlers; later writes return false.
   */
  close(): void {
    this.handle.close();
  }
}

/**
 * Sets the "don't fragment" policy of a UDP socket: `on` selects
 * IP_PMTUDISC_PROBE (DF set on every datagram, never fragmented locally, and
 * ICMP "fragmentation needed" does not shrink the socket's cached path MTU —
 * the sleeve discovers each peer's PMTU itself, as Weave's does), `off` selects
 * IP_PMTUDISC_DONT (no DF; the kernel fragments as needed). IPv6 sockets get
 * IPV6_MTU_DISCOVER too. See ip(7) / ipv6(7).
 * @throws TapError EBADF/ENOTSOCK (`fd` is not a socket), EAFNOSUPPORT, ENOADDON.
 */
export function setDontFragment(fd: number, on: boolean): void {
  try {
    native().setDontFragment(fd, on);
  } catch (e) {
    throw asTapError(e);
  }
}

/**
 * Cuts a TCP super-frame (Ethernet + IPv4/IPv6 + TCP header + payload) into the
 * segments a TAP read with {@link TapOpenOptions.readOffload} delivers: `gsoType`
 * 1 (VIRTIO_NET_HDR_GSO_TCPV4) or 4 (TCPV6), `gsoSize` payload bytes per segment,
 * `csumStart` the TCP header offset the kernel names (used for IPv6 with extension
 * headers). The addon's own code path, exported for tests.
 * @throws TapError ERR_OUT_OF_RANGE for a frame it does not cut, ENOADDON.
 */
export function segmentTso(frame: Uint8Array, gsoType: number, gsoSize: number, csumStart: number): Buffer[] {
  try {
    return native().segmentTso(frame, gsoType, gsoSize, csumStart);
  } catch (e) {
    throw asTapError(e);
  }
}

/**
 * What {@link Tap.writeSlab} on a `vnetHdr` TAP writes for the frames `frames`
 * ([offset, length] pairs into `slab`, `count` of them): one Buffer per write,
 * the 10-byte virtio_net_hdr (host byte order) followed by the frame. Runs of
 * IPv4/TCP or IPv6/TCP segments that TCP GRO would merge come back as one
 * super-frame (GSO TCPV4 = 1 / TCPV6 = 4, partial checksum); anything else as
 * itself behind an all-zero header. The addon's own code path, exported for tests.
 * @throws TapError ERR_OUT_OF_RANGE for a pair outside the slab, ENOADDON.
 */
export function mergeTcp(slab: Uint8Array, frames: Uint32Array, count: number): Buffer[] {
  try {
    return native().mergeTcp(slab, frames, count);
  } catch (e) {
    throw asTapError(e);
  }
}

/**
 * The OS file descriptor of a bound `node:dgram` socket, or undefined if it is
 * not bound/open or Node's internals differ. Node keeps the socket's state
 * (with the UDP handle, whose `fd` getter reads the descriptor) under a
 * non-exported Symbol, so it is found by shape among the own symbol keys.
 */
export function udpSocketFd(sock: Socket): number | undefined {
  for (const sym of Object.getOwnPropertySymbols(sock)) {
    const state = (sock as unknown as Record<symbol, unknown>)[sym];
    if (state === null || typeof state !== 'object' || !('handle' in state)) continue;
    const handle = (state as { handle?: unknown }).handle;
    if (handle === null || typeof handle !== 'object') continue;
    const fd = (handle as { fd?: unknown }).fd;
    if (typeof fd === 'number' && Number.isInteger(fd) && fd >= 0) return fd;
  }
  return undefined;
}
