/**
 * weaveDNS's server thread: the worker_threads entry that runs the UDP/TCP server
 * (dns/server.ts) on its own event loop, so answering never waits behind the data path's
 * frames on the router's main thread (issue #14: on the sleeve the main thread carries
 * every frame; a query arriving behind a batch of frames waited for it, p99 35–44 ms at
 * 2,000 q/s under one iperf3 flow). Started and fed by dns/threaded.ts.
 *
 * Protocol (messages from the parent, all structured-clone data):
 *  - workerData: { opts: server options without callbacks, settings: ViewSettings,
 *    snapshot: ViewSnapshot, counters: SharedArrayBuffer }
 *  - { t: 'view', snapshot }  → answer from this snapshot from now on
 *  - { t: 'close' }           → close the sockets, then post { t: 'closed' } and exit
 * Messages to the parent:
 *  - { t: 'ready', port } once bound, or { t: 'error', message } (one line) and exit
 *  - { t: 'log', line, level }, { t: 'slot', slot, key } (dns/counters.ts),
 *    { t: 'upstreams', list } when resolv.conf's nameservers change,
 *    { t: 'rt', state: RealtimeState } when the thread's scheduling class changes
 * The registry stays owned by the main thread's gossip; this thread only reads snapshots.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { DnsServer, type DnsServerOptions } from './server.js';
import { DnsView, type ViewSettings, type ViewSnapshot } from './view.js';
import { CounterWriter } from './counters.js';
import { threadScheduling } from './udp-batch.js';
import { RealtimeBudget } from './rt-budget.js';

/** The server options that cross the thread boundary (no callbacks). */
export type WorkerServerOptions = Omit<DnsServerOptions, 'names' | 'hooks' | 'log'>;

export interface WorkerInit {
  opts: WorkerServerOptions;
  /** Nice value for this thread alone (-20..19), or undefined to leave it. */
  nice?: number;
  /** SCHED_FIFO priority (1..99) for this thread under its CPU budget (dns/rt-budget.ts); 0 or undefined: the normal class. */
  realtime?: number;
  settings: ViewSettings;
  snapshot: ViewSnapshot;
  counters: SharedArrayBuffer;
}

/**
 * Give this thread (not the process) the nice value `nice`: Linux's setpriority(2) on a
 * thread id affects that thread only. Within the router's scheduling group (all its
 * threads share one autogroup) a lower value lets a query's wake-up preempt the main
 * thread's frame work. Returns an error line, or undefined when done.
 */
function niceThread(nice: number): string | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return 'no thread id';
    setPriority(tid, nice);
    return undefined;
  } catch (err) {
    return ((err as NodeJS.ErrnoException).code ?? (err as Error).message).split('\n')[0];
  }
}

/** This thread's scheduling as `weave report` shows it (DNS.Realtime). */
export interface RealtimeState {
  /** The SCHED_FIFO priority asked for. */
  Priority: number;
  /** In the real-time class now (false: demoted by its budget, or it could not switch). */
  Active: boolean;
  /** Windows over budget that demoted it so far. */
  Demotions: number;
  /** Why it is not real-time at all (EPERM…), when it could not switch. */
  Error?: string;
}

/**
 * Put this thread in SCHED_FIFO at `priority` and return the per-batch check that keeps
 * it there only within its CPU budget (dns/rt-budget.ts), or undefined when it cannot
 * switch (reported once by `report` and logged). Never throws.
 */
function realtimeGovernor(priority: number, report: (s: RealtimeState) => void, log: (line: string) => void): (() => void) | undefined {
  const sched = threadScheduling();
  const fail = (why: string): undefined => {
    log(`DNS: the server thread stays in the normal scheduling class (cannot use real-time priority ${priority}: ${why})`);
    report({ Priority: priority, Active: false, Demotions: 0, Error: why });
    return undefined;
  };
  if (typeof sched === 'string') return fail(sched);
  const err = sched.setRealtime(priority);
  if (err) return fail(err);
  const budget = new RealtimeBudget();
  report({ Priority: priority, Active: true, Demotions: 0 });
  let broken = false;
  return () => {
    if (broken) return;
    const d = budget.check(performance.now(), sched.cpuMs);
    if (d === undefined) return;
    const e = sched.setRealtime(d === 'demote' ? 0 : priority);
    if (e) {
      // Only a promotion can fail (rlimit or cgroup changed under us): stay normal for good.
      broken = true;
      log(`DNS: the server thread stays in the normal scheduling class from now on (cannot return to real-time priority ${priority}: ${e})`);
      report({ Priority: priority, Active: false, Demotions: budget.demotions, Error: e });
      return;
    }
    report({ Priority: priority, Active: budget.active, Demotions: budget.demotions });
  };
}

function main(): void {
  const port = parentPort;
  if (!port) return;
  const init = workerData as WorkerInit;
  if (init.nice !== undefined) {
    const why = niceThread(init.nice);
    if (why) port.postMessage({ t: 'log', line: `DNS: cannot set the server thread's nice value to ${init.nice} (${why}); it keeps the router's`, level: 'warn' });
  }
  const governor = init.realtime ? realtimeGovernor(init.realtime, (state) => port.postMessage({ t: 'rt', state }), (line) => port.postMessage({ t: 'log', line, level: 'warn' })) : undefined;
  let view = new DnsView(init.settings, init.snapshot);
  const counters = new CounterWriter(init.counters, (slot, key) => port.postMessage({ t: 'slot', slot, key }));
  const server = new DnsServer({
    ...init.opts,
    names: (client) => view.names(client),
    log: (line, level) => port.postMessage({ t: 'log', line, level }),
    hooks: {
      query: (qtype, result) => counters.query(qtype, result),
      dropped: (reason) => counters.dropped(reason),
      upstreamFailure: (_up, why) => counters.upstream(why),
      upstreams: (list) => port.postMessage({ t: 'upstreams', list }),
      ...(governor ? { batch: governor } : {}),
    },
  });
  port.on('message', (m: { t: string; snapshot?: ViewSnapshot }) => {
    if (m.t === 'view' && m.snapshot) {
      view = new DnsView(init.settings, m.snapshot);
    } else if (m.t === 'close') {
      void server.close().finally(() => {
        port.postMessage({ t: 'closed' });
        port.close();
      });
    }
  });
  server.start().then(
    () => port.postMessage({ t: 'ready', port: server.port, upstreams: server.currentUpstreams() }),
    (err: Error) => {
      port.postMessage({ t: 'error', message: err.message.split('\n')[0] });
      port.close();
    },
  );
}

main();
