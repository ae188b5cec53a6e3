/**
 * weaveDNS's server as the `dns` subsystem sees it: the UDP/TCP server (dns/server.ts)
 * bound on the calling (main) thread, whose UDP side moves to a worker thread
 * (dns/server-worker.ts) once the router actually serves DNS under load.
 *
 * Why a thread: the router's main thread also carries the sleeve's frames; a query that
 * arrives while a batch of frames is being handled waits for it (bench:dns, sleeve under
 * iperf3: p99 77 ms on the main thread, 4.5 ms on a thread). Why not always: a worker
 * thread is a second V8 isolate with its own copy of the DNS code, +13 MiB RSS per router
 * (bench:scale --real, issue #20) on every idle router that never answers a query.
 *
 * Placement (`mode`, WEAVE_DNS_THREAD overrides: 0 = main, 1 = thread):
 *  - 'auto' (default): served on the main thread; a query starts an AUTO_CHECK_MS period
 *    (none runs while idle) whose queries and main-thread event-loop utilisation decide:
 *    AUTO_QPS queries in it, or any while the loop was AUTO_BUSY busy, hand the UDP side
 *    over for good;
 *  - 'thread': handed over at start; 'main': never.
 * The hand-over loses no query: the worker adopts a dup of the bound socket's fd (worker
 * threads share the process's fd table; dns/udp-batch.ts adoptDnsUdp), and the main
 * thread stops reading only once the worker reads — a datagram queued meanwhile sits in
 * the one shared receive queue. The main thread keeps the socket open (answers to
 * queries it forwarded still go out from the address asked) and keeps TCP. If the worker
 * dies, the main thread reads UDP again at once and a new worker adopts the socket after
 * RESTART_MS. Without the native socket (node:dgram fallback) everything stays on the
 * main thread.
 *
 * The registry stays on the main thread (its gossip owns it); setView() gives both
 * servers the answerable snapshot (dns/view.ts) after every change — coalesced by the
 * caller; the worker gets it asynchronously, in order. Counters live in shared memory
 * (dns/counters.ts), one buffer per server, summed by counters().
 */
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { DnsServer } from './server.js';
import { DnsView, type ViewSettings, type ViewSnapshot } from './view.js';
import { CounterReader, CounterWriter, counterBuffer, type CounterValue } from './counters.js';
import type { RealtimeState, WorkerInit, WorkerServerOptions } from './server-worker.js';

/** Delay before a dead server thread is restarted, ms. */
export const RESTART_MS = 1_000;
/**
 * Nice value of the server thread by default: none (it keeps the router's). A lower one
 * would rank DNS above the router's own frame work, but also let a query flood from a
 * container starve the data path and gossip; bench:dns could not tell it apart from noise
 * at load 10–16 (dns7). WEAVE_DNS_THREAD_NICE=-20..19 sets one, for that thread only.
 */
export const THREAD_NICE: number | undefined = undefined;
/**
 * SCHED_FIFO priority of the server thread by default: the lowest real-time one, above
 * every normal-class task, below every other real-time one; kept only while the thread
 * stays within its CPU budget (dns/rt-budget.ts), which bounds what a query flood can
 * take from the data path. WEAVE_DNS_THREAD_RT=0 keeps the normal class, =1..99 sets
 * another priority.
 */
export const THREAD_RT_PRIORITY = 1;
/** How long close() waits for the thread to close its sockets before terminating it, ms. */
export const CLOSE_WAIT_MS = 2_000;
/** 'auto' placement: how often the load is judged, ms. */
export const AUTO_CHECK_MS = 1_000;
/** 'auto' placement: queries in one AUTO_CHECK_MS period that move UDP to the thread. */
export const AUTO_QPS = 20;
/** 'auto' placement: main-thread event-loop utilisation (0..1) at which any query moves UDP to the thread. */
export const AUTO_BUSY = 0.5;

/** Where UDP queries are answered: see the module comment. */
export type ThreadMode = 'auto' | 'thread' | 'main';

export interface ThreadedDnsOptions extends WorkerServerOptions {
  settings: ViewSettings;
  /** The first snapshot to answer from. */
  snapshot: ViewSnapshot;
  /** Placement (default 'auto'; WEAVE_DNS_THREAD=0|1 overrides with 'main'|'thread'). */
  mode?: ThreadMode;
  /** 'auto': queries per AUTO_CHECK_MS that hand over (default AUTO_QPS; tests lower it). */
  autoQps?: number;
  log?: (line: string, level?: string) => void;
}

type FromWorker =
  | { t: 'ready'; port: number; upstreams: string[] }
  | { t: 'error'; message: string }
  | { t: 'log'; line: string; level?: string }
  | { t: 'slot'; slot: number; key: string }
  | { t: 'upstreams'; list: string[] }
  | { t: 'rt'; state: RealtimeState }
  | { t: 'closed' };

/** The placement asked for: WEAVE_DNS_THREAD=0 → 'main', =1 → 'thread', else `asked` or 'auto'. */
export function threadMode(asked: ThreadMode | undefined, env: NodeJS.ProcessEnv = process.env): ThreadMode {
  if (env.WEAVE_DNS_THREAD === '0') return 'main';
  if (env.WEAVE_DNS_THREAD === '1') return 'thread';
  return asked ?? 'auto';
}

/**
 * Whether one AUTO_CHECK_MS period warrants the thread: `queries` counted in it, the main
 * loop `busy` (event-loop utilisation 0..1). Pure.
 */
export function wantsThread(queries: number, busy: number, qps = AUTO_QPS): boolean {
  return queries >= qps || (queries > 0 && busy >= AUTO_BUSY);
}

export class ThreadedDnsServer {
  private readonly localBuf = counterBuffer();
  private readonly localReader = new CounterReader(this.localBuf);
  private readonly workerBuf = counterBuffer();
  private readonly workerReader = new CounterReader(this.workerBuf);
  private readonly log: (line: string, level?: string) => void;
  private worker: Worker | undefined;
  private local: DnsServer | undefined;
  private view: DnsView;
  private snapshot: ViewSnapshot;
  private upstreams: string[] = [];
  private closed = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private autoTimer: NodeJS.Timeout | undefined;
  private handingOver = false;
  /** UDP is answered by the worker now. */
  private threaded = false;
  /** The worker's scheduling class, as it last reported it. */
  private rt: RealtimeState | undefined;
  /** The bound port (useful with port 0). */
  port = 0;
  /** The placement asked for (see ThreadMode). */
  readonly mode: ThreadMode;

  constructor(private readonly opts: ThreadedDnsOptions) {
    this.log = opts.log ?? (() => undefined);
    this.snapshot = opts.snapshot;
    this.view = new DnsView(opts.settings, opts.snapshot);
    this.mode = threadMode(opts.mode);
  }

  /** Whether UDP queries are answered on the worker thread right now. */
  get inThread(): boolean {
    return this.threaded;
  }

  /** The server thread's scheduling (real-time class, demotions), or undefined while UDP is on the main thread. */
  get realtime(): RealtimeState | undefined {
    return this.threaded ? this.rt : undefined;
  }

  /**
   * Bind UDP and TCP on this thread; rejects with the server's one-line Error (address in
   * use, not present). With mode 'thread', also hands UDP to the worker before resolving
   * (a worker that cannot start is logged, and this thread keeps serving).
   */
  async start(): Promise<void> {
    const w = new CounterWriter(this.localBuf, (slot, key) => this.localReader.learn(slot, key));
    const s = new DnsServer({
      ...this.serverOptions(),
      names: (c) => this.view.names(c),
      log: this.log,
      hooks: {
        query: (t, r) => {
          w.query(t, r);
          this.onLocalQuery();
        },
        dropped: (r) => {
          w.dropped(r);
          this.onLocalQuery();
        },
        upstreamFailure: (_u, r) => w.upstream(r),
        upstreams: (l) => (this.upstreams = l),
      },
    });
    await s.start();
    this.local = s;
    this.port = s.port;
    this.upstreams = s.currentUpstreams();
    if (this.mode === 'thread') await this.handOver('asked (WEAVE_DNS_THREAD=1)');
  }

  private serverOptions(): WorkerServerOptions {
    const { host, port, resolvConf, upstreamTimeoutMs, ownAddresses, udpIo, udpBatch } = this.opts;
    return { host, port, resolvConf, upstreamTimeoutMs, ownAddresses, udpIo, udpBatch };
  }

  /**
   * 'auto': a query (or a dropped one) arms one AUTO_CHECK_MS period unless one runs; at
   * its end the period is judged (wantsThread) and either hands over or disarms. An idle
   * server has no timer at all (issue #20: every wake-up of an idle router costs).
   */
  private onLocalQuery(): void {
    if (this.mode !== 'auto' || this.autoTimer || this.threaded || this.closed || this.handingOver || this.worker || this.restartTimer) return;
    const elu0 = performance.eventLoopUtilization();
    const q0 = this.localQueries() - 1;
    this.autoTimer = setTimeout(() => {
      this.autoTimer = undefined;
      if (this.closed || this.threaded || this.handingOver || this.worker) return;
      const busy = performance.eventLoopUtilization(elu0).utilization;
      const n = this.localQueries() - q0;
      if (!wantsThread(n, busy, this.opts.autoQps)) return;
      this.handingOver = true;
      void this.handOver(`${n} queries in ${AUTO_CHECK_MS} ms, main thread ${Math.round(busy * 100)} % busy`).finally(() => (this.handingOver = false));
    }, AUTO_CHECK_MS);
    this.autoTimer.unref();
  }

  private localQueries(): number {
    let n = 0;
    for (const c of this.localReader.read()) if (c.kind === 'query' || c.kind === 'dropped') n += c.n;
    return n;
  }

  /** Move UDP to a worker adopting this thread's socket; logs (never throws) when it cannot. */
  private async handOver(why: string): Promise<void> {
    const fd = this.local?.udpFd();
    if (fd === undefined) {
      this.log('DNS: UDP stays on the main thread (node:dgram socket, no native socket to share with a thread)', 'warn');
      return;
    }
    try {
      await this.spawn(fd);
      this.log(`DNS: answering UDP on a worker thread from now on (${why})`);
    } catch (err) {
      this.log(`DNS: ${(err as Error).message}; the main thread keeps answering`, 'warn');
    }
  }

  /** Start the worker adopting `fd`; resolves once it reads (and this thread stopped), rejects with its one-line error. */
  private spawn(fd: number): Promise<void> {
    const init: WorkerInit = { opts: { ...this.serverOptions(), udpFd: fd, tcp: false }, nice: threadNice(), realtime: threadRealtime(), settings: this.opts.settings, snapshot: this.snapshot, counters: this.workerBuf };
    const w = new Worker(new URL('./server-worker.js', import.meta.url), { workerData: init, name: 'weave-dns' });
    this.worker = w;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      w.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'ready':
            ready = true;
            if (this.closed || this.worker !== w) {
              resolve();
              break;
            }
            // Both read the one queue for a moment; from here only the worker does.
            this.local?.readUdp(false);
            this.threaded = true;
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
            this.workerReader.learn(m.slot, m.key);
            break;
          case 'upstreams':
            this.upstreams = m.list;
            break;
          case 'rt':
            if (this.worker === w) this.rt = m.state;
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
        // Never a moment with nobody reading: this thread takes the queue back at once.
        this.local?.readUdp(true);
        this.threaded = false;
        this.log(`DNS: server thread exited; the main thread answers UDP until a new one starts in ${RESTART_MS} ms`, 'error');
        this.restartTimer = setTimeout(() => {
          this.restartTimer = undefined;
          const again = this.local?.udpFd();
          if (!this.closed && again !== undefined) this.spawn(again).catch((err: Error) => this.log(`DNS: cannot restart the server thread: ${err.message}`, 'error'));
        }, RESTART_MS);
      });
    });
  }

  /** Answer from `snapshot` from now on (the worker gets it asynchronously, in order). */
  setView(snapshot: ViewSnapshot): void {
    this.snapshot = snapshot;
    this.view = new DnsView(this.opts.settings, snapshot);
    this.worker?.postMessage({ t: 'view', snapshot });
  }

  /** The upstream resolvers in use now (after the last re-read of resolv.conf). */
  currentUpstreams(): string[] {
    return [...this.upstreams];
  }

  /** Counter values (queries, drops, upstream failures) counted so far, by both servers. */
  counters(): CounterValue[] {
    const sum = new Map<string, CounterValue>();
    for (const c of [...this.localReader.read(), ...this.workerReader.read()]) {
      const k = `${c.kind}\0${c.labels.join('\0')}`;
      const have = sum.get(k);
      if (have) have.n += c.n;
      else sum.set(k, { ...c, labels: [...c.labels] });
    }
    return [...sum.values()];
  }

  /** Close the sockets (and the thread). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.autoTimer);
    const w = this.worker;
    if (w) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => void w.terminate().then(() => resolve(), () => resolve()), CLOSE_WAIT_MS);
        w.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        w.postMessage({ t: 'close' });
      });
    }
    if (this.local) await this.local.close();
  }

  /** Test hook: end the worker as a crash would (no clean close). */
  async killWorkerForTest(): Promise<void> {
    await this.worker?.terminate();
  }
}

/** The server thread's nice value: WEAVE_DNS_THREAD_NICE if it is an integer in -20..19, else THREAD_NICE. */
export function threadNice(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.WEAVE_DNS_THREAD_NICE;
  if (v === undefined || v.trim() === '') return THREAD_NICE;
  const n = Number(v);
  return Number.isInteger(n) && n >= -20 && n <= 19 ? n : THREAD_NICE;
}

/**
 * The server thread's SCHED_FIFO priority: WEAVE_DNS_THREAD_RT if it is an integer in
 * 0..99 (0: the normal class), else THREAD_RT_PRIORITY.
 */
export function threadRealtime(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.WEAVE_DNS_THREAD_RT;
  if (v === undefined || v.trim() === '') return THREAD_RT_PRIORITY;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 99 ? n : THREAD_RT_PRIORITY;
}
