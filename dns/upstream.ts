/**
 * Forwarding over UDP to one upstream resolver through a small pool of sockets (the
 * bookkeeping and the RFC 5452 rules are dns/forward-table.ts). Each socket is bound
 * to a port we draw at random (1024-65535; RFC 5452 §10 / RFC 6056) and connected to
 * the upstream's port 53, so the kernel itself drops datagrams from any other address
 * or port, and an ICMP "port unreachable" from the upstream fails its queries at once
 * (as the old socket-per-query did) instead of after the timeout. Sockets are rotated
 * (ROTATE_QUERIES / ROTATE_MS) and closed once drained. Replaces one socket per query,
 * which cost a socket(), bind() and close() each and capped forwarding at ~3,000 q/s.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomFillSync } from 'node:crypto';
import { ForwardTable, type Pending } from './forward-table.js';

/**
 * Uniform [0, 1) from the kernel's CSPRNG (ids and ports must not be predictable:
 * RFC 5452 §9.2), drawn from a refilled 4 KiB buffer so a query costs no syscall.
 */
export function cryptoRng(): () => number {
  const buf = Buffer.alloc(4096);
  let off = buf.length;
  return () => {
    if (off + 4 > buf.length) {
      randomFillSync(buf);
      off = 0;
    }
    const v = buf.readUInt32BE(off);
    off += 4;
    return v / 4294967296;
  };
}

/** Sockets per upstream taking new queries. */
export const POOL_SIZE = 4;
/** Sweep for timed-out queries this often while any is outstanding, ms. */
const SWEEP_MS = 100;
const BIND_TRIES = 8;

type Done = (err: Error | undefined, answer?: Buffer) => void;

export class UpstreamPool {
  private readonly table: ForwardTable<Done>;
  private readonly socks: Array<dgram.Socket | undefined> = [];
  private opening: Promise<void> | undefined;
  private sweep: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * @param address the upstream resolver (IPv4 or IPv6 literal); queries go to port `port`
   * @param maxOutstanding queries outstanding at most (beyond: rejected at once with 'overload')
   * @param rng uniform [0, 1) for ids, ports and socket choice (crypto-quality in production)
   */
  constructor(readonly address: string, private readonly port: number, maxOutstanding: number, private readonly rng: () => number) {
    this.table = new ForwardTable<Done>(POOL_SIZE, maxOutstanding);
  }

  /**
   * Send `query` (a client's DNS message) upstream with a fresh id; resolves with the
   * answer carrying the client's id again. Rejects with Error('timeout' | 'overload' |
   * 'closed' | a socket error).
   */
  async exchange(query: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.closed) throw new Error('closed');
    await this.ensureSockets();
    return new Promise<Buffer>((resolve, reject) => {
      const clientId = query.readUInt16BE(0);
      const done: Done = (err, answer) => {
        if (err) return reject(err);
        answer!.writeUInt16BE(clientId, 0);
        resolve(answer!);
      };
      const p = this.table.add(query, this.address, this.port, performance.now() + timeoutMs, done, this.rng);
      if (!p) return reject(new Error('overload'));
      const out = Buffer.from(query);
      out.writeUInt16BE(p.id, 0);
      const s = this.socks[p.socket];
      if (!s) {
        this.fail(this.table.close(p.socket), new Error('closed'));
        return;
      }
      s.send(out, (err) => {
        if (err) this.failOne(p, err);
      });
      this.armSweep();
    });
  }

  /** Close every socket; outstanding queries reject with 'closed'. */
  close(): void {
    this.closed = true;
    if (this.sweep) clearInterval(this.sweep);
    this.sweep = undefined;
    for (let i = 0; i < this.socks.length; i++) this.drop(i, new Error('closed'));
  }

  private async ensureSockets(): Promise<void> {
    // Retired sockets take no new queries and are closed once drained.
    this.table.rotate(performance.now());
    for (const i of this.table.drained()) this.drop(i, new Error('closed'));
    if (this.table.active().length >= POOL_SIZE) return;
    if (!this.opening) {
      this.opening = (async () => {
        while (!this.closed && this.table.active().length < POOL_SIZE) await this.openOne();
      })().finally(() => (this.opening = undefined));
    }
    await this.opening;
  }

  private async openOne(): Promise<void> {
    const type = net.isIPv6(this.address) ? 'udp6' : 'udp4';
    let last: Error | undefined;
    for (let t = 0; t < BIND_TRIES; t++) {
      const s = dgram.createSocket({ type });
      // Port 0 (the kernel's choice) only when random draws kept colliding.
      const port = t < BIND_TRIES - 1 ? 1024 + Math.floor(this.rng() * (65536 - 1024)) : 0;
      try {
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.bind(port, () => s.connect(this.port, this.address, () => {
            s.off('error', reject);
            resolve();
          }));
        });
      } catch (err) {
        last = err as Error;
        try {
          s.close();
        } catch { /* closed */ }
        continue;
      }
      const i = this.table.open(performance.now());
      this.socks[i] = s;
      s.on('message', (msg, rinfo) => {
        const p = this.table.match(i, rinfo.address, rinfo.port, msg);
        if (p) p.data(undefined, msg);
      });
      // Connected UDP: an ICMP error from the upstream (port unreachable, …) arrives here;
      // it concerns every query this socket sent, all to the same upstream.
      s.on('error', (err) => this.drop(i, err));
      return;
    }
    throw last ?? new Error('cannot open a socket');
  }

  /** Close socket `i` and fail what it carried. */
  private drop(i: number, err: Error): void {
    const s = this.socks[i];
    if (!s) return;
    this.socks[i] = undefined;
    try {
      s.close();
    } catch { /* closed */ }
    this.fail(this.table.close(i), err);
  }

  private fail(ps: Array<Pending<Done>>, err: Error): void {
    for (const p of ps) p.data(err);
  }

  private failOne(p: Pending<Done>, err: Error): void {
    if (this.table.cancel(p)) p.data(err);
  }

  private armSweep(): void {
    if (this.sweep) return;
    this.sweep = setInterval(() => {
      for (const p of this.table.expire(performance.now())) p.data(new Error('timeout'));
      if (this.table.size === 0 && this.sweep) {
        clearInterval(this.sweep);
        this.sweep = undefined;
      }
    }, SWEEP_MS);
    this.sweep.unref?.();
  }
}
