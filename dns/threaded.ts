/**
 * weaveDNS's server as the `dns` subsystem sees it: the UDP/TCP server (dns/server.ts)
 * running in a worker thread (dns/server-worker.ts) by default, or on the calling thread
 * when asked (`inThread: false`, or WEAVE_DNS_THREAD=0 in the environment: the A/B switch
 * of bench:dns, and a way out should a platform lack worker threads).
 *
 * Why a thread: the router's main thread also carries the sleeve's frames; a query that
 * arrives while a batch of frames is being handled waits for it. In the worker, local
 * answers depend only on the worker's own loop. The registry stays on the main thread
 * (its gossip owns it); setView() pushes an answerable snapshot (dns/view.ts) after every
 * change — coalesced by the caller — and the worker answers from the latest one it got.
 * Counters live in shared memory (dns/counters.ts), so /metrics reads them without a
 * round trip. If the worker dies it is restarted after RESTART_MS with the latest
 * snapshot (the error is logged on one line).
 */
import { Worker } from 'node:worker_threads';
import { DnsServer } from './server.js';
import { DnsView, type ViewSettings, type ViewSnapshot } from './view.js';
import { CounterReader, CounterWriter, counterBuffer, type CounterValue } from './counters.js';
import type { WorkerInit, WorkerServerOptions } from './server-worker.js';

/** Delay before a dead server thread is restarted, ms. */
export const RESTART_MS = 1_000;
/**
 * Nice value of the server thread by default: none (it keeps the router's). A lower one
 * would rank DNS above the router's own frame work, but also let a query flood from a
 * container starve the data path and gossip; bench:dns could not tell it apart from noise
 * at load 10–16 (dns7). WEAVE_DNS_THREAD_NICE=-20..19 sets one, for that thread only.
 */
export const THREAD_NICE: number | undefined = undefined;
/** How long close() waits for the thread to close its sockets before terminating it, ms. */
export const CLOSE_WAIT_MS = 2_000;

export interface ThreadedDnsOptions extends WorkerServerOptions {
  settings: ViewSettings;
  /** The first snapshot to answer from. */
  snapshot: ViewSnapshot;
  /** Run the server on a worker thread (default true; WEAVE_DNS_THREAD=0 forces false). */
  inThread?: boolean;
  log?: (line: string, level?: string) => void;
}

type FromWorker =
  | { t: 'ready'; port: number; upstreams: string[] }
  | { t: 'error'; message: string }
  | { t: 'log'; line: string; level?: string }
  | { t: 'slot'; slot: number; key: string }
  | { t: 'upstreams'; list: string[] }
  | { t: 'closed' };

export class ThreadedDnsServer {
  private readonly buf = counterBuffer();
  private readonly reader = new CounterReader(this.buf);
  private readonly log: (line: string, level?: string) => void;
  private worker: Worker | undefined;
  private local: DnsServer | undefined;
  private view: DnsView | undefined;
  private snapshot: ViewSnapshot;
  private upstreams: string[] = [];
  private closed = false;
  private restartTimer: NodeJS.Timeout | undefined;
  /** The bound port (useful with port 0). */
  port = 0;
  /** Whether the server runs on a worker thread. */
  readonly inThread: boolean;

  constructor(private readonly opts: ThreadedDnsOptions) {
    this.log = opts.log ?? (() => undefined);
    this.snapshot = opts.snapshot;
    this.inThread = process.env.WEAVE_DNS_THREAD === '0' ? false : opts.inThread ?? true;
  }

  /** Bind UDP and TCP; rejects with the server's one-line Error (address in use, not present). */
  async start(): Promise<void> {
    if (!this.inThread) {
      this.view = new DnsView(this.opts.settings, this.snapshot);
      const w = new CounterWriter(this.buf, (slot, key) => this.reader.learn(slot, key));
      const s = new DnsServer({
        ...this.serverOptions(),
        names: (c) => this.view!.names(c),
        log: this.log,
        hooks: { query: (t, r) => w.query(t, r), dropped: (r) => w.dropped(r), upstreamFailure: (_u, r) => w.upstream(r), upstreams: (l) => (this.upstreams = l) },
      });
      await s.start();
      this.local = s;
      this.port = s.port;
      return;
    }
    await this.spawn(this.opts.port);
  }

  private serverOptions(): WorkerServerOptions {
    const { host, port, resolvConf, upstreamTimeoutMs, ownAddresses, udpIo, udpBatch } = this.opts;
    return { host, port, resolvConf, upstreamTimeoutMs, ownAddresses, udpIo, udpBatch };
  }

  /** Start the worker on `port`; resolves once it is bound, rejects with its one-line error. */
  private spawn(port: number): Promise<void> {
    const init: WorkerInit = { opts: { ...this.serverOptions(), port }, nice: threadNice(), settings: this.opts.settings, snapshot: this.snapshot, counters: this.buf };
    const w = new Worker(new URL('./server-worker.js', import.meta.url), { workerData: init, name: 'weave-dns' });
    this.worker = w;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      w.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'ready':
            ready = true;
            this.port = m.port;
            this.upstreams = m.upstreams;
            resolve();
            break;
          case 'error':
            if (!ready) reject(new Error(m.message));
            else this.log(`DNS: ${m.message}`, 'warn');
            break;
          case 'log':
            this.log(m.line, m.level);
            break;
          case 'slot':
            this.reader.learn(m.slot, m.key);
            break;
          case 'upstreams':
            this.upstreams = m.list;
            break;
          default:
            break;
        }
      });
      w.on('error', (err) => {
        const line = `DNS: server thread failed: ${(err.message ?? String(err)).split('\n')[0]}`;
        if (!ready) reject(new Error(line));
        else this.log(line, 'error');
      });
      w.on('exit', () => {
        if (this.worker === w) this.worker = undefined;
        if (!ready) {
          reject(new Error('DNS: server thread exited during start-up'));
          return;
        }
        if (this.closed) return;
        this.log(`DNS: server thread exited; restarting it in ${RESTART_MS} ms`, 'error');
        this.restartTimer = setTimeout(() => {
          this.restartTimer = undefined;
          if (!this.closed) this.spawn(this.port).catch((err: Error) => this.log(`DNS: cannot restart the server thread: ${err.message}`, 'error'));
        }, RESTART_MS);
      });
    });
  }

  /** Answer from `snapshot` from now on (the worker gets it asynchronously, in order). */
  setView(snapshot: ViewSnapshot): void {
    this.snapshot = snapshot;
    if (this.local) this.view = new DnsView(this.opts.settings, snapshot);
    else this.worker?.postMessage({ t: 'view', snapshot });
  }

  /** The upstream resolvers in use now (after the last re-read of resolv.conf). */
  currentUpstreams(): string[] {
    return [...this.upstreams];
  }

  /** Counter values (queries, drops, upstream failures) counted so far. */
  counters(): CounterValue[] {
    return this.reader.read();
  }

  /** Close the sockets (and the thread). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    if (this.local) await this.local.close();
    const w = this.worker;
    if (!w) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => void w.terminate().then(() => resolve(), () => resolve()), CLOSE_WAIT_MS);
      w.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      w.postMessage({ t: 'close' });
    });
  }
}

/** The server thread's nice value: WEAVE_DNS_THREAD_NICE if it is an integer in -20..19, else THREAD_NICE. */
export function threadNice(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.WEAVE_DNS_THREAD_NICE;
  if (v === undefined || v.trim() === '') return THREAD_NICE;
  const n = Number(v);
  return Number.isInteger(n) && n >= -20 && n <= 19 ? n : THREAD_NICE;
}
