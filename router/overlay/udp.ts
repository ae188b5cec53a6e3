/**
 * A batched UDP socket for the sleeve (IPv4 and IPv6, Linux), backed by the native addon
 * `build/Release/udp.node` (router/overlay/native/udp.cc).
 *
 * node:dgram costs one syscall, one request object and one callback per datagram
 * sent, and one event with a fresh Buffer and address object per datagram received.
 * Following wireguard-go's conn/ package, this socket moves whole batches instead:
 *
 *  - receive: each event-loop wake-up drains up to `batch` datagrams with one
 *    recvmmsg(2) into fixed slots of one reused slab and calls the handler once with
 *    `(slab, meta, count)`; row i of `meta` is
 *    `[offset, length, source IPv4 as uint32, source port]`;
 *  - send: the caller packs datagrams into its own slab and a table of
 *    `[offset, length, destination IPv4 as uint32, destination port]` rows
 *    ({@link DatagramBatch} does the bookkeeping) and sends them with one call, one
 *    sendmmsg(2) per 1024 datagrams. Runs of equal-sized datagrams to one destination
 *    flagged {@link COALESCE} become one UDP GSO super-packet (UDP_SEGMENT), and with
 *    UDP_GRO super-packets are received whole and split back into rows natively, so
 *    callers see the same datagrams either way. Sends never block and never throw for I/O
 *    errors: a full socket buffer drops the rest of the batch, an oversized datagram
 *    (EMSGSIZE, DF is always set) drops that datagram; all are counted in stats().
 *
 * IPv4 addresses travel as unsigned 32-bit numbers in host order
 * (`a.b.c.d` = a·2^24 + b·2^16 + c·2^8 + d) so the hot path compares numbers,
 * never strings; {@link ipv4ToUint32} / {@link uint32ToIpv4} convert.
 *
 * IPv6 (issue #21): opened without an `address`, the socket is dual-stack (AF_INET6 on
 * [::], IPV6_V6ONLY off; plain IPv4 if the kernel has no IPv6). The address column of
 * rows stays one uint32: an IPv6 peer is registered with {@link UdpSocket.addressKey},
 * which returns a key in 1..0xffffff (0.0.0.0/8, which is never a valid IPv4 source or
 * destination); rows carry that key, and datagrams from that address arrive with it.
 * Datagrams from IPv6 sources nobody registered arrive with address 0.
 */
import type { FlowStats } from './flow-cache.js';
import { loadAddon, AddonMissing, CodedError } from './native-addon.js';

/** uint32s per row of a receive `meta` or send `table`. */
export const META_STRIDE = 4;
/**
 * Flag OR-ed into a send row's port: the datagram may leave in one UDP GSO send
 * (UDP_SEGMENT, udp(7)) with neighbouring rows to the same address and port whose
 * lengths are equal (the last may be shorter). Set it only for paths known to carry
 * datagrams of this size: on the wire they are ordinary datagrams, but local packet
 * filters (iptables `-m length`, OUTPUT chain) see the whole super-packet.
 */
export const COALESCE = 0x10000;
/** Largest UDP payload over IPv4 (65535 − 20 − 8); IPv6 allows 65527, the sleeve keeps to the smaller. */
export const MAX_UDP_PAYLOAD = 65507;
/** Largest IPv6 address key (UdpSocket.addressKey): keys are 0.0.0.0/8 as IPv4 numbers. */
export const MAX_IPV6_KEY = 0xffffff;

/**
 * A UDP socket failure with an errno-style `code`: EADDRINUSE (port taken; the
 * message says so in one line), EACCES, EADDRNOTAVAIL, EINVAL (bad address or
 * option), ENOADDON (addon not built), ECLOSED / EALREADY (state), or the errno name
 * of a failed receive, reported through start()'s onError.
 */
export class UdpError extends CodedError {}

/**
 * Receives the datagrams of one wake-up. Datagram i is
 * `slab.subarray(meta[4i], meta[4i] + meta[4i+1])`, sent from IPv4 `meta[4i+2]`
 * (uint32) port `meta[4i+3]`. `count` ≥ 1. `slab` and `meta` are reused for every
 * batch: their contents are valid only until the handler returns.
 */
export type DatagramBatchHandler = (slab: Buffer, meta: Uint32Array, count: number) => void;

/** Counters since open. */
export interface UdpStats {
  /** datagrams handed to the batch handler */
  recvDatagrams: number;
  /** handler calls */
  recvBatches: number;
  /** datagrams longer than slotBytes, dropped (the kernel cut them) */
  recvTruncated: number;
  /** receive errors (ICMP-induced ones are counted and ignored; others stop receiving) */
  recvErrors: number;
  /** datagrams the kernel accepted */
  sendDatagrams: number;
  /** sendmmsg() calls made */
  sendCalls: number;
  /** datagrams dropped because the socket buffer was full (EAGAIN / ENOBUFS) */
  sendDropsFull: number;
  /** datagrams dropped as larger than the path allows (EMSGSIZE; DF is set) */
  sendDropsTooBig: number;
  /** datagrams refused for another reason (ENETUNREACH, EPERM from a firewall, sending after close...) */
  sendErrors: number;
  /** errno name of the last failed send, or null */
  lastSendError: string | null;
  /** datagrams sent inside UDP GSO super-packets */
  sendCoalesced: number;
  /** datagrams received inside UDP GRO super-packets */
  recvCoalesced: number;
  /** GSO sends in use (off if asked, or after the kernel refused one with EIO) */
  gso: boolean;
  /** UDP_GRO in use (needs slotBytes 65536 and Linux ≥ 5.0) */
  gro: boolean;
  /** ingress flow cache: TCP segments written to the TAP inside GSO super-frames */
  tapMergedFrames: number;
  /** ingress flow cache: super-frames written to the TAP */
  tapSuperFrames: number;
  /** ingress flow cache: super-frames the kernel refused (EINVAL), written segment by segment */
  tapMergeFallbacks: number;
  /** receive / send buffer sizes the kernel granted, bytes (0 if not set) */
  recvBufferBytes: number;
  sendBufferBytes: number;
}

/** Options of {@link UdpSocket.open}. */
export interface UdpOpenOptions {
  /** Port to bind, 0..65535 (0: the kernel picks one; see localPort). */
  port: number;
  /** IPv4 or IPv6 address to bind; default: all, both families (dual-stack [::], or 0.0.0.0 without IPv6). */
  address?: string;
  /** Most receive messages per batch, 1..1024; default 64 (a GRO super-packet counts once but yields up to 64 rows). */
  batch?: number;
  /**
   * Receive slot size, bytes, 64..65536; default 65536 (any datagram). Longer
   * datagrams are dropped and counted in recvTruncated, so this must exceed the
   * largest datagram a peer may send (its PMTU probes included).
   */
  slotBytes?: number;
  /** SO_RCVBUF and SO_SNDBUF, bytes (forced past rmem_max/wmem_max when privileged); default 4 MiB; 0 leaves the defaults. */
  bufferBytes?: number;
  /** IP_PMTUDISC_PROBE (DF, never fragment locally) when true, the default; IP_PMTUDISC_DONT when false. */
  dontFragment?: boolean;
  /**
   * SO_REUSEADDR; default false. For UDP on Linux it lets several sockets that all set
   * it bind the same port, so a second router would start silently instead of
   * failing with EADDRINUSE: the sleeve leaves it off.
   */
  reuseAddr?: boolean;
  /** Send runs of rows flagged {@link COALESCE} as UDP GSO super-packets; default true. */
  gso?: boolean;
  /** Receive UDP GRO super-packets (UDP_GRO) and split them; default true (needs slotBytes 65536). */
  gro?: boolean;
}

interface NativeUdp {
  readonly fd: number;
  readonly localPort: number;
  readonly slotStride: number;
  start(onBatch: DatagramBatchHandler, onError: (code: string, message: string) => void, poll?: boolean): void;
  drain(): number;
  sendBatch(slab: Uint8Array, table: Uint32Array, count: number): number;
  send(buf: Uint8Array, offset: number, length: number, addr: number, port: number): boolean;
  stats(): UdpStats;
  addFlow(hopPeer: number, hopAddr: number, srcPeer: number, selfPeer: number, srcMac: number, dstMac: number, tapFd: number, vnetLen: number, ttlMs: number, openState?: Uint8Array, key?: Uint8Array, frame?: Uint8Array): boolean;
  clearFlows(): void;
  flowStats(): FlowStats;
  fastPort(): unknown;
  addressKey(address: string): number;
  releaseAddressKey(key: number): void;
  readonly family: number;
  ref(): void;
  unref(): void;
  close(): void;
}

interface NativeAddon {
  UdpSocket: new (opts: UdpOpenOptions) => NativeUdp;
  routeMtu(addr: number | string): number;
}

function native(): NativeAddon {
  try {
    return loadAddon<NativeAddon>('udp', 'UDP');
  } catch (e) {
    throw e instanceof AddonMissing ? new UdpError('ENOADDON', e.message) : e;
  }
}

function asUdpError(e: unknown): Error {
  if (e instanceof UdpError || e instanceof TypeError || e instanceof RangeError) return e;
  const err = e as { code?: unknown; message?: unknown };
  return new UdpError(typeof err?.code === 'string' ? err.code : 'EUNKNOWN', typeof err?.message === 'string' ? err.message : String(e));
}

/** `a.b.c.d` → uint32 in host order, or undefined if not a dotted-quad IPv4 address. */
export function ipv4ToUint32(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m === null) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255) return undefined;
    v = v * 256 + o;
  }
  return v;
}

/** uint32 (host order) → `a.b.c.d`. */
export function uint32ToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * The MTU (bytes, IP header included) the kernel would use towards IPv4 `addr` (a
 * uint32) or IPv6 `addr` (text): the egress device's or the route's MTU, as IP_MTU /
 * IPV6_MTU report it for a connected socket (ip(7), ipv6(7)). 0 if there is no route.
 * Sends nothing.
 * @throws UdpError ENOADDON; RangeError/TypeError for a bad address.
 */
export function routeMtu(addr: number | string): number {
  return native().routeMtu(addr);
}

/** An open, bound UDP socket. */
export class UdpSocket {
  private constructor(private readonly handle: NativeUdp) {}

  /**
   * Creates and binds the socket (non-blocking, close-on-exec, buffers
   * and DF policy as in {@link UdpOpenOptions}). Receiving starts with start().
   * @throws UdpError EADDRINUSE with "UDP port N is already in use: is another
   *   router running in this network namespace?", EACCES, EADDRNOTAVAIL, EINVAL,
   *   ENOADDON; RangeError/TypeError for options out of range.
   */
  static open(opts: UdpOpenOptions): UdpSocket {
    const { UdpSocket: Ctor } = native();
    try {
      return new UdpSocket(new Ctor(opts));
    } catch (e) {
      throw asUdpError(e);
    }
  }

  /** The socket's file descriptor (−1 after close). */
  get fd(): number {
    return this.handle.fd;
  }

  /** 6 for a dual-stack or IPv6 socket, 4 for an IPv4-only one. */
  get family(): 4 | 6 {
    return this.handle.family === 6 ? 6 : 4;
  }

  /**
   * The address column value for a peer at `address` (IPv4 or IPv6 text): an IPv4 (or
   * IPv4-mapped) address as its uint32; an IPv6 address is registered (one more
   * reference) and its key returned, until as many releaseAddressKey(key) calls.
   * @throws UdpError EINVAL (not an IP address), EAFNOSUPPORT (IPv6 on an IPv4-only
   *   socket), ENOSPC (2^24 − 1 IPv6 addresses registered).
   */
  addressKey(address: string): number {
    try {
      return this.handle.addressKey(address);
    } catch (e) {
      throw asUdpError(e);
    }
  }

  /** Drops one reference to an IPv6 key from addressKey(); IPv4 values are ignored. */
  releaseAddressKey(key: number): void {
    this.handle.releaseAddressKey(key);
  }

  /** The bound port (the kernel's pick when opened with port 0). */
  get localPort(): number {
    return this.handle.localPort;
  }

  /**
   * Starts receiving (see {@link DatagramBatchHandler}). A receive failure other than
   * an ICMP-induced one stops receiving and calls `onError` once (without it, an
   * uncaught exception). While started the socket keeps the event loop alive unless
   * unref() is called. Exceptions from the handlers are uncaught exceptions.
   *
   * With `{ poll: false }` nothing watches the socket and it never wakes the process:
   * the owner calls {@link drain} when it wants the queued datagrams (e.g. on a timer
   * it runs anyway), so a socket that only carries periodic heartbeats costs no
   * wake-up per datagram. The socket buffer must then hold what arrives between two
   * drains (bufferBytes).
   * @throws UdpError ECLOSED after close, EALREADY if already started.
   */
  start(onBatch: DatagramBatchHandler, onError?: (err: UdpError) => void, opts: { poll?: boolean } = {}): void {
    const report = (code: string, message: string): void => {
      const err = new UdpError(code, message);
      if (onError === undefined) throw err;
      onError(err);
    };
    try {
      this.handle.start(onBatch, report, opts.poll ?? true);
    } catch (e) {
      throw asUdpError(e);
    }
  }

  /**
   * For a socket started with `{ poll: false }`: reads the datagrams queued now (at
   * most 16 batches), calling the batch handler for each batch before it returns.
   * Returns the number of datagrams read; 0 once closed or after a receive failure
   * (reported once through start()'s onError).
   * @throws UdpError EINVAL if the socket was started with polling (or not at all).
   */
  drain(): number {
    try {
      return this.handle.drain();
    } catch (e) {
      throw asUdpError(e);
    }
  }

  /**
   * Sends `count` datagrams: row i of `table` is `[offset, length, IPv4 uint32, port]`
   * of a datagram held in `slab`. Returns how many the kernel took; the rest were
   * dropped and counted (see {@link UdpStats}). Never throws for I/O errors.
   * The port column may carry {@link COALESCE}.
   * @throws RangeError before sending anything if a row lies outside `slab`, is
   *   longer than 65507 bytes, or has port 0 / > 65535; or count exceeds the rows.
   */
  sendBatch(slab: Uint8Array, table: Uint32Array, count: number): number {
    return this.handle.sendBatch(slab, table, count);
  }

  /** Sends one datagram `buf[offset, offset+length)`; false if dropped (counted). Throws only for bad arguments. */
  send(buf: Uint8Array, offset: number, length: number, addr: number, port: number): boolean {
    return this.handle.send(buf, offset, length, addr, port);
  }

  /** A fresh snapshot of the counters. */
  stats(): UdpStats {
    return this.handle.stats();
  }

  ref(): void {
    this.handle.ref();
  }

  unref(): void {
    this.handle.unref();
  }

  /**
   * Installs an ingress flow (router/overlay/flow-cache.ts): until `ttlMs` ms from now, a
   * wake-up of at most FLOW_BATCH_MAX plaintext FRAMES datagrams, each sent by peer
   * `hopPeer` from IPv4 `hopAddr` (uint32), whose every frame was originated by
   * `srcPeer`, is addressed to `selfPeer` and matches `srcMac` → `dstMac` (or another
   * installed flow), is written by the addon to the TAP fd `tapFd` (after `vnetLen`
   * zero bytes of virtio_net_hdr) and the batch handler is not called. Peers and MACs
   * are 48-bit numbers. With `open` (the hop's Opener: its sharedState and current key)
   * the flow takes ENCRYPTED datagrams instead: opened in C with that key and the
   * Opener's shared replay window (overlay/native/sleeve-aead.h), taken into the window
   * only when every frame hit; one that fails, replays, carries another epoch or misses
   * reaches the handler untouched, and plaintext datagrams from the hop always do. The
   * addon keeps a copy of the key until the flows are cleared or the epoch moves on.
   * With `frame` (the frame just delivered, Ethernet header first) the flow takes only
   * frames with its EtherType and IP source and destination, and a frame that must never
   * be cached (ARP, IPv6 ND, extension headers, other EtherTypes) installs nothing
   * (flow-cache.h FrameKey); without it every frame between the two MACs matches.
   * Returns false (nothing installed) before start() or after close().
   * @throws TypeError/RangeError for a missing or out-of-range argument.
   */
  addFlow(hopPeer: number, hopAddr: number, srcPeer: number, selfPeer: number, srcMac: number, dstMac: number, tapFd: number, vnetLen: number, ttlMs: number,
    open?: { sharedState: Buffer; currentKey: Buffer }, frame?: Uint8Array): boolean {
    if (open === undefined) return this.handle.addFlow(hopPeer, hopAddr, srcPeer, selfPeer, srcMac, dstMac, tapFd, vnetLen, ttlMs, undefined, undefined, frame);
    return this.handle.addFlow(hopPeer, hopAddr, srcPeer, selfPeer, srcMac, dstMac, tapFd, vnetLen, ttlMs, open.sharedState, open.currentKey, frame);
  }

  /** Forgets every ingress flow (the router's decisions changed). */
  clearFlows(): void {
    this.handle.clearFlows();
  }

  /** Ingress flow cache counters. */
  flowStats(): FlowStats {
    return this.handle.flowStats();
  }

  /** An opaque handle to this socket's side of the flow cache's wait, for {@link Tap.linkFastPath}. @throws UdpError ECLOSED after close. */
  fastPort(): unknown {
    try {
      return this.handle.fastPort();
    } catch (e) {
      throw asUdpError(e);
    }
  }

  /** Stops receiving and closes the socket. Idempotent, safe inside the handlers; later sends are counted as errors. */
  close(): void {
    this.handle.close();
  }
}

/**
 * A send batch: one slab of datagram bytes plus the row table {@link UdpSocket.sendBatch}
 * takes. Space is reserved first (a datagram is built in place, its final length
 * known only when it is complete), then committed with its destination. Reserved
 * space is never moved, so several datagrams (one per peer) can be under
 * construction at once. Allocation-free after construction.
 */
export class DatagramBatch {
  readonly slab: Buffer;
  readonly table: Uint32Array;
  /** Committed datagrams. */
  count = 0;
  private top = 0;
  /** Reservations made since reset (each may commit one row). */
  private reserved = 0;
  private readonly rows: number;

  /**
   * @param slabBytes bytes of datagram space (≥ 65536 so any datagram fits)
   * @param rows most datagrams per batch
   * @throws RangeError for sizes out of range.
   */
  constructor(slabBytes = 1 << 21, rows = 1024) {
    if (!Number.isInteger(slabBytes) || slabBytes < 65536 || slabBytes > 1 << 28) throw new RangeError(`DatagramBatch slab must be 65536..2^28 bytes, got ${slabBytes}`);
    if (!Number.isInteger(rows) || rows < 1 || rows > 1 << 20) throw new RangeError(`DatagramBatch rows must be 1..2^20, got ${rows}`);
    this.slab = Buffer.allocUnsafe(slabBytes);
    this.table = new Uint32Array(rows * META_STRIDE);
    this.rows = rows;
  }

  /** Reserves `bytes` at an 8-byte-aligned offset; returns the offset, or −1 if the slab or the table is full (send and reset first). */
  reserve(bytes: number): number {
    const at = (this.top + 7) & ~7;
    if (at + bytes > this.slab.length || this.reserved >= this.rows) return -1;
    this.top = at + bytes;
    this.reserved++;
    return at;
  }

  /**
   * Records a datagram of `length` bytes at `offset` (inside a reservation) for
   * `addr`:`port`; at most one commit per reservation (so the table never overflows).
   */
  commit(offset: number, length: number, addr: number, port: number): void {
    const t = this.table;
    const i = this.count++ * META_STRIDE;
    t[i] = offset;
    t[i + 1] = length;
    t[i + 2] = addr;
    t[i + 3] = port;
  }

  /** Forgets every datagram and reservation. */
  reset(): void {
    this.count = 0;
    this.top = 0;
    this.reserved = 0;
  }
}
