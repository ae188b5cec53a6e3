/**
 * weaveDNS's server: the thin actor around answer.ts. Listens on UDP and TCP (port 53
 * by default, RFC 1035 §4.2), answers names under the weave domain from the registry,
 * and forwards everything else to the host's resolvers from /etc/resolv.conf — in
 * order, each given UPSTREAM_TIMEOUT_MS, SERVFAIL when all fail (Weave's fallback
 * behaviour). UDP queries are forwarded through a small pool of sockets per upstream
 * with random ports and fresh random ids (dns/upstream.ts, dns/forward-table.ts:
 * RFC 5452's protections); TCP queries over a connection each. resolv.conf is re-read when its mtime or size changes (checked at most
 * once a second, when a query is forwarded); our own listening addresses are never
 * used as upstreams.
 *
 * Bounds: queries over MAX_QUERY_BYTES are dropped; at most MAX_INFLIGHT forwards at a
 * time (more → SERVFAIL); TCP: at most MAX_TCP_CONNECTIONS connections, each idle at
 * most TCP_IDLE_MS, messages length-prefixed (RFC 1035 §4.2.2) and at most
 * MAX_QUERY_BYTES, at most TCP_PIPELINE queries outstanding per connection.
 * Malformed queries are counted (hooks.dropped) and dropped without an answer.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import { answerQuery, servfail, MAX_QUERY_BYTES, type NameSource, type Outcome } from './answer.js';
import { UpstreamPool, cryptoRng } from './upstream.js';
import { openDnsUdp, adoptDnsUdp, rowAddress, AnswerBatch, ROW, type DnsUdpStats } from './udp-batch.js';

export const UPSTREAM_TIMEOUT_MS = 5_000;
export const MAX_INFLIGHT = 1024;
export const MAX_TCP_CONNECTIONS = 256;
export const TCP_IDLE_MS = 10_000;
/** start() with port 0: how many ephemeral ports it tries when TCP finds UDP's taken. */
export const EPHEMERAL_TRIES = 8;
export const TCP_PIPELINE = 16;
/** resolv.conf allows 3 nameservers (resolv.conf(5), MAXNS); we read at most that many. */
export const MAX_UPSTREAMS = 3;

/** Counters the subsystem turns into metrics; called synchronously, must not throw. */
export interface ServerHooks {
  /** A query answered locally or forwarded: qtype ("A"), result ("NOERROR", "NXDOMAIN", "forwarded", "SERVFAIL"…). */
  query(qtype: string, result: string): void;
  /** A query dropped unanswered, by reason ('malformed', 'short', 'too-big', 'not-a-query'). */
  dropped(reason: string): void;
  /** One upstream did not answer in time or failed ('timeout' | 'error'). */
  upstreamFailure(upstream: string, why: string): void;
  /** The upstream resolvers changed (resolv.conf re-read): the new list. */
  upstreams(list: string[]): void;
  /** A wake-up of the batched UDP socket was handled, its local answers sent (the server thread's CPU budget checks here). */
  batch(): void;
}

export interface DnsServerOptions {
  /** Address to listen on ("169.254.53.53", "127.0.0.1", "0.0.0.0"). */
  host: string;
  /** Port (53; 0 picks one, for tests). */
  port: number;
  /** Names for a client (its source address decides isolation). */
  names(client: string): NameSource;
  /** Path of the resolver configuration (default /etc/resolv.conf). */
  resolvConf?: string;
  /** Per-upstream timeout, ms (default UPSTREAM_TIMEOUT_MS). */
  upstreamTimeoutMs?: number;
  /** Addresses that are ours: never forwarded to (besides `host`). */
  ownAddresses?: string[];
  /**
   * UDP I/O: 'batched' (default) uses the native recvmmsg/sendmmsg socket
   * (dns/udp-batch.ts) and falls back to node:dgram when the addon is not built;
   * 'dgram' always uses node:dgram. WEAVE_DNS_DGRAM=1 in the environment forces 'dgram'.
   */
  udpIo?: 'batched' | 'dgram';
  /** Most queries taken per event-loop wake-up by the batched socket, 1..1024 (default 64). */
  udpBatch?: number;
  /**
   * Serve UDP on the batched socket bound elsewhere in this process behind this fd (a dup
   * is taken: dns/udp-batch.ts `adoptDnsUdp`) instead of binding `host`:`port`; needs the
   * addon. How the server thread takes over from the main thread (dns/threaded.ts).
   */
  udpFd?: number;
  /** Listen on TCP as well (default true; the server thread serves UDP only). */
  tcp?: boolean;
  hooks?: Partial<ServerHooks>;
  log?: (line: string, level?: string) => void;
}

/**
 * The nameservers of a resolv.conf text (resolv.conf(5) `nameserver ADDR` lines), IPv4
 * or IPv6, at most MAX_UPSTREAMS, without `own` addresses. Pure.
 */
export function parseResolvConf(text: string, own: readonly string[] = []): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n').slice(0, 1000)) {
    const m = /^\s*nameserver\s+(\S+)/.exec(raw);
    if (!m) continue;
    const addr = m[1].replace(/%.*$/, '');
    if (!net.isIP(addr) || own.includes(addr) || out.includes(addr)) continue;
    out.push(addr);
    if (out.length >= MAX_UPSTREAMS) break;
  }
  return out;
}

export class DnsServer {
  private udp: dgram.Socket | undefined;
  private batched: ReturnType<typeof openDnsUdp> | undefined;
  private answers: AnswerBatch | undefined;
  /** The last IPv4 client (uint32) and its text: a burst comes from few clients. */
  private lastClientNum = -1;
  private lastClientText = '';
  private tcp: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();
  private inflight = 0;
  private upstreams: string[] = [];
  private resolvStamp = '';
  private resolvCheckedAt = -Infinity;
  private closed = false;
  /** UDP forwarding: a socket pool per upstream (dns/upstream.ts). */
  private readonly pools = new Map<string, UpstreamPool>();
  private readonly rng = cryptoRng();
  private readonly hooks: ServerHooks;
  private readonly log: (line: string, level?: string) => void;
  /** The bound port (useful with port 0). */
  port = 0;

  constructor(private readonly opts: DnsServerOptions) {
    this.hooks = { query: () => undefined, dropped: () => undefined, upstreamFailure: () => undefined, upstreams: () => undefined, batch: () => undefined, ...opts.hooks };
    this.log = opts.log ?? (() => undefined);
  }

  /**
   * Bind UDP and TCP; rejects with a one-line Error (address in use, not present). With
   * port 0 (any free port, the same for both: tests, benches) the port the kernel picks for
   * UDP may be taken for TCP; then both are given up and another is picked, at most
   * EPHEMERAL_TRIES times.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startOnce();
        return;
      } catch (err) {
        const retry = this.opts.port === 0 && this.opts.udpFd === undefined && (err as { tcpInUse?: boolean }).tcpInUse === true && attempt < EPHEMERAL_TRIES;
        if (!retry) throw err;
      }
    }
  }

  private async startOnce(): Promise<void> {
    const { host } = this.opts;
    if (await this.startBatched()) {
      // bound natively
    } else {
      // Answers go to the literal address a query came from: a synchronous lookup spares
      // dgram's default (dns.lookup, one process.nextTick per answer).
      const udp = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', reuseAddr: false, lookup: literalLookup });
      this.udp = udp;
      await new Promise<void>((resolve, reject) => {
        udp.once('error', (err) => reject(new Error(`DNS: cannot listen on udp ${host}:${this.opts.port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
        udp.bind(this.opts.port, host, () => resolve());
      });
      this.port = udp.address().port;
      udp.on('error', (err) => this.log(`DNS: udp socket: ${err.message}`, 'warn'));
      udp.on('message', (msg, rinfo) => this.onUdp(msg, rinfo));
    }
    if (this.opts.tcp === false) {
      await this.refreshUpstreams(true);
      return;
    }
    const tcp = net.createServer({ pauseOnConnect: false }, (s) => this.onTcp(s));
    tcp.maxConnections = MAX_TCP_CONNECTIONS;
    this.tcp = tcp;
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', (err) => {
        const code = (err as NodeJS.ErrnoException).code;
        reject(Object.assign(new Error(`DNS: cannot listen on tcp ${host}:${this.port}: ${code ?? err.message}`), { tcpInUse: code === 'EADDRINUSE' }));
      });
      tcp.listen(this.port, host, () => resolve());
    }).catch((err: Error) => {
      // Do not keep the UDP side bound when TCP cannot be.
      this.batched?.close();
      this.batched = undefined;
      this.answers = undefined;
      this.udp?.close();
      this.udp = undefined;
      this.tcp = undefined;
      this.port = 0;
      throw err;
    });
    tcp.on('error', (err) => this.log(`DNS: tcp listener: ${err.message}`, 'warn'));
    await this.refreshUpstreams(true);
  }

  /**
   * Bind the batched native socket unless asked not to; false when the addon is not
   * built (then node:dgram serves). Bind failures reject with the one-line message.
   */
  private async startBatched(): Promise<boolean> {
    const { host } = this.opts;
    if (this.opts.udpFd === undefined && ((this.opts.udpIo ?? 'batched') === 'dgram' || process.env.WEAVE_DNS_DGRAM === '1')) return false;
    const batch = Math.max(1, Math.min(1024, Math.floor(this.opts.udpBatch ?? 64)));
    const fd = this.opts.udpFd;
    let sock: ReturnType<typeof openDnsUdp>;
    try {
      sock = fd === undefined ? openDnsUdp(host, this.opts.port, batch) : adoptDnsUdp(fd, batch);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (fd !== undefined) throw new Error(`DNS: cannot take over the udp socket (fd ${fd}): ${(err as Error).message.split('\n')[0]}`);
      if (code === 'ENOADDON') {
        this.log(`DNS: ${(err as Error).message.split('\n')[0]}; serving UDP through node:dgram`, 'warn');
        return false;
      }
      throw new Error(`DNS: cannot listen on udp ${host}:${this.opts.port}: ${code ?? (err as Error).message}`);
    }
    this.batched = sock;
    this.answers = new AnswerBatch(sock, batch);
    this.port = sock.localPort;
    sock.start((slab, meta, count) => this.onBatch(slab, meta, count), (_code, message) => this.log(`DNS: ${message}`, 'warn'));
    return true;
  }

  /**
   * The batched UDP socket's fd, for another thread to adopt (udpFd); undefined when
   * node:dgram serves (its socket cannot be shared) or before start().
   */
  udpFd(): number | undefined {
    return this.batched && !this.closed ? this.batched.fd : undefined;
  }

  /**
   * Stop (false) or restart (true) reading UDP queries. While paused the socket stays
   * bound and still sends the answers of queries already taken (forwarded ones come
   * back later); another thread that adopted the socket reads the queue. Only for the
   * batched socket; a no-op otherwise.
   */
  readUdp(on: boolean): void {
    if (!this.batched || this.closed) return;
    if (on) this.batched.resume();
    else this.batched.pause();
  }

  /** Counters of the batched UDP socket; undefined when node:dgram serves. */
  udpStats(): DnsUdpStats | undefined {
    return this.batched?.stats();
  }

  /**
   * One wake-up of the batched socket: every query answered (or dropped) in order, the
   * local answers sent together; forwarded ones are copied out and answered when the
   * upstream replies. Never throws (decide() catches the answer path's errors).
   */
  private onBatch(slab: Buffer, meta: Uint32Array, count: number): void {
    const answers = this.answers;
    if (!answers || this.closed) return;
    for (let i = 0; i < count; i++) {
      const r = ROW * i;
      const msg = slab.subarray(meta[r], meta[r] + meta[r + 1]);
      let client: string;
      if (meta[r + 2] === 4) {
        if (meta[r + 4] !== this.lastClientNum) {
          this.lastClientNum = meta[r + 4];
          this.lastClientText = rowAddress(meta, r);
        }
        client = this.lastClientText;
      } else {
        client = rowAddress(meta, r);
      }
      const out = this.decide(msg, client, 'udp');
      if (out === undefined) continue;
      if (out.kind === 'answer') {
        answers.add(out.response, meta, r);
        continue;
      }
      // The slab is reused after this call: keep copies of the query and its source.
      const dest = meta.slice(r, r + ROW);
      this.forwarded(Buffer.from(msg), out.qtype, 'udp').then((b) => {
        if (b && !this.closed) {
          answers.add(b, dest, 0);
          answers.flush();
        }
      }, (err: Error) => this.log(`DNS: internal error on a query (please report): ${err.message}`, 'error'));
    }
    answers.flush();
    this.hooks.batch();
  }

  /** The upstream resolvers in use now (after the last re-read). */
  currentUpstreams(): string[] {
    return [...this.upstreams];
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.conns) s.destroy();
    for (const p of this.pools.values()) p.close();
    this.pools.clear();
    this.batched?.close();
    await Promise.all([
      new Promise<void>((r) => (this.udp ? this.udp.close(() => r()) : r())),
      new Promise<void>((r) => (this.tcp ? this.tcp.close(() => r()) : r())),
    ]).catch(() => undefined);
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    // Local answers synchronously (no promise per query); only forwarding waits.
    const out = this.decide(msg, rinfo.address, 'udp');
    if (out === undefined) return;
    if (out.kind === 'answer') {
      if (!this.closed) this.udp?.send(out.response, rinfo.port, rinfo.address);
      return;
    }
    this.forwarded(msg, out.qtype, 'udp').then((b) => {
      if (b && !this.closed) this.udp?.send(b, rinfo.port, rinfo.address);
    }, (err: Error) => this.log(`DNS: internal error on a query (please report): ${err.message}`, 'error'));
  }

  /** answerQuery with the counters: an answer or 'forward', or undefined when dropped. */
  private decide(msg: Buffer, client: string, transport: 'udp' | 'tcp'): Extract<Outcome, { kind: 'answer' | 'forward' }> | undefined {
    let out: Outcome;
    try {
      out = answerQuery(msg, this.opts.names(client), transport);
    } catch (err) {
      this.hooks.dropped('internal');
      this.log(`DNS: cannot answer a query (please report): ${(err as Error).message}`, 'warn');
      return undefined;
    }
    if (out.kind === 'drop') {
      this.hooks.dropped(out.reason);
      return undefined;
    }
    if (out.kind === 'answer') this.hooks.query(out.qtype, out.rcode);
    return out;
  }

  private async forwarded(msg: Buffer, qtype: string, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    const r = await this.forward(msg, transport);
    this.hooks.query(qtype, r ? 'forwarded' : 'SERVFAIL');
    return r ?? servfail(msg);
  }

  private onTcp(s: net.Socket): void {
    this.conns.add(s);
    s.setTimeout(TCP_IDLE_MS, () => s.destroy());
    s.on('error', () => undefined);
    s.on('close', () => this.conns.delete(s));
    let buf: Buffer = Buffer.alloc(0);
    let outstanding = 0;
    // Answers go out in query order (a chain), as clients pipelining over TCP expect.
    let chain: Promise<void> = Promise.resolve();
    s.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len > MAX_QUERY_BYTES || len < 12) {
          this.hooks.dropped(len > MAX_QUERY_BYTES ? 'too-big' : 'short');
          s.destroy();
          return;
        }
        if (buf.length < 2 + len) {
          break;
        }
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        if (++outstanding > TCP_PIPELINE) {
          this.hooks.dropped('too-many');
          s.destroy();
          return;
        }
        const answer = this.handle(Buffer.from(msg), s.remoteAddress ?? '', 'tcp');
        chain = chain.then(async () => {
          const b = await answer.catch(() => undefined);
          outstanding--;
          if (!b || s.destroyed) return;
          const hdr = Buffer.alloc(2);
          hdr.writeUInt16BE(b.length);
          s.write(Buffer.concat([hdr, b]));
        });
      }
      if (buf.length > 2 + MAX_QUERY_BYTES) s.destroy();
    });
  }

  /** One query → the bytes to send back, or undefined to send nothing. */
  private async handle(msg: Buffer, client: string, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    const out = this.decide(msg, client, transport);
    if (out === undefined) return undefined;
    return out.kind === 'answer' ? out.response : this.forwarded(msg, out.qtype, transport);
  }

  private async refreshUpstreams(force = false): Promise<void> {
    const now = performance.now();
    if (!force && now - this.resolvCheckedAt < 1000) return;
    this.resolvCheckedAt = now;
    const file = this.opts.resolvConf ?? '/etc/resolv.conf';
    try {
      const st = await fsp.stat(file);
      const stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (stamp === this.resolvStamp) return;
      this.resolvStamp = stamp;
      if (st.size > 1 << 20) throw new Error('larger than 1 MiB');
      const own = [this.opts.host, ...(this.opts.ownAddresses ?? [])];
      const next = parseResolvConf(await fsp.readFile(file, 'utf8'), own);
      const changed = next.join(' ') !== this.upstreams.join(' ');
      if (changed) this.log(`DNS: upstream resolvers from ${file}: ${next.join(' ') || 'none'}`);
      this.upstreams = next;
      if (changed) this.hooks.upstreams([...next]);
      for (const [up, p] of this.pools) {
        if (!next.includes(up)) {
          p.close();
          this.pools.delete(up);
        }
      }
    } catch (err) {
      if (this.resolvStamp !== 'error') this.log(`DNS: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): non-weave names get SERVFAIL until it is readable`, 'warn');
      this.resolvStamp = 'error';
      if (this.upstreams.length) this.hooks.upstreams([]);
      this.upstreams = [];
    }
  }

  /** Relay the query to each upstream in turn; the first answer, or undefined when all fail. */
  private async forward(msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    if (this.inflight >= MAX_INFLIGHT) {
      this.hooks.upstreamFailure('-', 'overload');
      return undefined;
    }
    this.inflight++;
    try {
      await this.refreshUpstreams();
      const timeout = this.opts.upstreamTimeoutMs ?? UPSTREAM_TIMEOUT_MS;
      for (const up of this.upstreams) {
        if (this.closed) return undefined;
        try {
          return transport === 'udp' ? await this.pool(up).exchange(msg, timeout) : await tcpExchange(up, msg, timeout);
        } catch (err) {
          const why = (err as Error).message;
          this.hooks.upstreamFailure(up, why === 'timeout' || why === 'overload' ? why : 'error');
        }
      }
      return undefined;
    } finally {
      this.inflight--;
    }
  }

  private pool(up: string): UpstreamPool {
    let p = this.pools.get(up);
    if (!p) {
      p = new UpstreamPool(up, 53, MAX_INFLIGHT, this.rng);
      this.pools.set(up, p);
    }
    return p;
  }
}

/** dgram's lookup for literal addresses: calls back at once (no resolver, no tick). */
function literalLookup(address: string, family: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  cb(null, address, net.isIPv6(address) ? 6 : 4);
}

/** Send `msg` to `server`:53 over TCP (length-prefixed); the first answer (at most 65535 B). */
function tcpExchange(server: string, msg: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: server, port: 53 });
    let buf: Buffer = Buffer.alloc(0);
    const done = (err: Error | undefined, b?: Buffer): void => {
      clearTimeout(t);
      s.destroy();
      if (err) reject(err);
      else resolve(b!);
    };
    const t = setTimeout(() => done(new Error('timeout')), timeoutMs);
    s.on('error', (err) => done(err));
    s.on('connect', () => {
      const hdr = Buffer.alloc(2);
      hdr.writeUInt16BE(msg.length);
      s.write(Buffer.concat([hdr, msg]));
    });
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(undefined, buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    s.on('end', () => done(new Error('closed')));
  });
}
