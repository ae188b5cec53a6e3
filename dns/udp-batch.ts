/**
 * weaveDNS's batched UDP socket: the native addon `build/Release/dnsudp.node`
 * (dns/native/dns-udp.cc) behind a small typed surface, used by the server (server.ts)
 * instead of node:dgram when it is built.
 *
 * node:dgram makes one receive syscall and one JS event (fresh Buffer, fresh address
 * object) per query, and one send request with one syscall per answer; with answers from
 * the memo costing a few microseconds that is most of a local answer. Here each event-loop
 * wake-up takes up to `batch` queries with one recvmmsg(2) and calls the handler once;
 * the handler packs its answers into one slab and sends them with one sendmmsg(2)
 * ({@link AnswerBatch}).
 *
 * Rows (receive `meta` and send `table`) are {@link ROW} uint32s:
 * `[offset, length, family (4 | 6), port, a0, a1, a2, a3]`; for IPv4 `a0` is the address
 * as a host-order uint32, for IPv6 `a0..a3` are its 16 bytes as four big-endian words.
 * A query longer than {@link MAX_QUERY_BYTES} never reaches JS (counted in
 * `recvTruncated`).
 */
import { loadAddon, CodedError } from '../router/overlay/native-addon.js';
import { formatIpv6 } from '../ipam/ipv6.js';

/** uint32s per meta / table row. */
export const ROW = 8;
/** Longest query the socket takes (answer.ts's MAX_QUERY_BYTES); longer ones are dropped natively. */
export const MAX_QUERY_BYTES = 4096;

/** Counters since open. */
export interface DnsUdpStats {
  /** queries handed to the batch handler */
  recvDatagrams: number;
  /** handler calls (wake-ups with at least one query) */
  recvBatches: number;
  /** queries longer than MAX_QUERY_BYTES, dropped unread */
  recvTruncated: number;
  /** receive errors (ICMP-induced ones are counted and ignored) */
  recvErrors: number;
  /** answers the kernel took */
  sendDatagrams: number;
  /** sendmmsg(2) calls */
  sendCalls: number;
  /** answers dropped because the socket buffer was full */
  sendDropsFull: number;
  /** answers refused for another reason (no route, firewall, closed socket) */
  sendErrors: number;
  recvBufferBytes: number;
  sendBufferBytes: number;
}

/**
 * The queries of one wake-up: query i is `slab.subarray(meta[ROW*i], meta[ROW*i] + meta[ROW*i+1])`.
 * `slab` and `meta` are reused: valid only until the handler returns (copy what you keep).
 */
export type QueryBatchHandler = (slab: Buffer, meta: Uint32Array, count: number) => void;

export interface NativeDnsUdp {
  readonly localPort: number;
  /** This socket's file descriptor (another thread of this process may adopt it: `adopt`). */
  readonly fd: number;
  start(onBatch: QueryBatchHandler, onError: (code: string, message: string) => void): void;
  sendBatch(slab: Uint8Array, table: Uint32Array, count: number): number;
  stats(): DnsUdpStats;
  /** Stop reading; the socket stays open and still sends (idempotent). */
  pause(): void;
  /** Read again after pause(). */
  resume(): void;
  ref(): void;
  unref(): void;
  close(): void;
}

interface Addon {
  DnsUdpSocket: new (o: { address: string; port: number; batch?: number; bufferBytes?: number } | { fd: number; batch?: number }) => NativeDnsUdp;
  rowStride: number;
  threadCpuNs?: () => number;
  setThreadRealtime?: (priority: number) => string;
}

/** The calling thread's scheduling controls (from the same addon), for dns/rt-budget.ts. */
export interface ThreadScheduling {
  /** CPU time of the calling thread so far, ms (CLOCK_THREAD_CPUTIME_ID). */
  cpuMs(): number;
  /**
   * Put the calling thread (only it) in SCHED_FIFO at `priority` 1..99, or back in
   * SCHED_OTHER with 0 (its nice value kept); never inherited across fork.
   * @returns '' when done, else the errno name (EPERM without CAP_SYS_NICE)
   * @throws RangeError (code ERR_OUT_OF_RANGE) for a priority that is not an integer 0..99
   */
  setRealtime(priority: number): string;
}

/**
 * The calling thread's scheduling controls, or a one-line reason they are missing (addon
 * not built, or built before they existed: rebuild with npm run install).
 */
export function threadScheduling(): ThreadScheduling | string {
  let addon: Addon;
  try {
    addon = loadAddon<Addon>('dnsudp', 'DNS UDP');
  } catch (err) {
    return (err as Error).message.split('\n')[0]!;
  }
  const { threadCpuNs, setThreadRealtime } = addon;
  if (!threadCpuNs || !setThreadRealtime) return 'the DNS UDP addon predates thread scheduling: rebuild it (npm run install)';
  return { cpuMs: () => threadCpuNs() / 1e6, setRealtime: (p) => setThreadRealtime(p) };
}

/** Whether the addon is built (the server falls back to node:dgram when not). */
export function dnsUdpAvailable(): boolean {
  try {
    loadAddon<Addon>('dnsudp', 'DNS UDP');
    return true;
  } catch {
    return false;
  }
}

/**
 * Open a batched DNS UDP socket bound to `address`:`port` (0 = any free port).
 * @param batch most queries per wake-up, 1..1024 (default 64)
 * @throws CodedError with code EADDRINUSE, EADDRNOTAVAIL, EACCES, EINVAL, ENOADDON…, one line
 */
export function openDnsUdp(address: string, port: number, batch = 64): NativeDnsUdp {
  return construct({ address, port, batch });
}

/**
 * Adopt the bound DNS UDP socket behind `fd` (a dup(2) of it: closing either leaves the
 * other open), from any thread of this process — how the server thread takes over the
 * socket the main thread bound without losing a queued query (dns/threaded.ts).
 * @throws CodedError EINVAL (not a bound, non-blocking IPv4/IPv6 datagram socket), EBADF, ENOADDON
 */
export function adoptDnsUdp(fd: number, batch = 64): NativeDnsUdp {
  return construct({ fd, batch });
}

function construct(o: { address: string; port: number; batch: number } | { fd: number; batch: number }): NativeDnsUdp {
  let addon: Addon;
  try {
    addon = loadAddon<Addon>('dnsudp', 'DNS UDP');
  } catch (err) {
    throw new CodedError('ENOADDON', (err as Error).message);
  }
  if (addon.rowStride !== ROW) throw new CodedError('ENOADDON', `DNS UDP addon row stride ${addon.rowStride} != ${ROW}: rebuild it (npm run install)`);
  try {
    return new addon.DnsUdpSocket(o);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    throw new CodedError(e.code ?? 'EINVAL', e.message ?? String(err));
  }
}

/** The source address of meta row `r` (an index into `meta`) as text, as node:dgram would give it. */
export function rowAddress(meta: Uint32Array, r: number): string {
  if (meta[r + 2] === 4) {
    const a = meta[r + 4]!;
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  for (let w = 0; w < 4; w++) dv.setUint32(4 * w, meta[r + 4 + w]!);
  return formatIpv6(b);
}

/**
 * Answers of one batch, packed into one slab and sent with one sendBatch. Bounded: at
 * most `rows` answers and `bytes` bytes; add() flushes first when either would overflow.
 */
export class AnswerBatch {
  private readonly slab: Buffer;
  private readonly table: Uint32Array;
  private n = 0;
  private at = 0;

  constructor(private readonly sock: NativeDnsUdp, private readonly rows = 64, bytes = 64 * 4096) {
    this.slab = Buffer.allocUnsafe(bytes);
    this.table = new Uint32Array(ROW * rows);
  }

  /** Queue `answer` to the address of row `r` of `meta` (a receive meta or a saved copy). */
  add(answer: Uint8Array, meta: Uint32Array, r: number): void {
    const len = answer.length;
    if (len === 0 || len > this.slab.length) return;
    if (this.n === this.rows || this.at + len > this.slab.length) this.flush();
    this.slab.set(answer, this.at);
    const t = this.table;
    const o = ROW * this.n;
    t[o] = this.at;
    t[o + 1] = len;
    for (let k = 2; k < ROW; k++) t[o + k] = meta[r + k]!;
    this.at += len;
    this.n++;
  }

  /** Send what is queued (one sendmmsg per 256 answers); returns how many the kernel took. */
  flush(): number {
    if (this.n === 0) return 0;
    const n = this.n;
    this.n = 0;
    this.at = 0;
    return this.sock.sendBatch(this.slab, this.table, n);
  }
}
