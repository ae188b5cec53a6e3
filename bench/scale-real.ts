/**
 * `npm run bench:scale -- --real N`: N real routers (issue #20), each in its own network
 * namespace on one underlay bridge (test/e2e/lib/testbed.ts), launched one after
 * another, router i with router 1 and router i-1 as peers; IPAM is seeded with router
 * 1's name on every router, so no consensus round is involved. Measures each `weave
 * launch`'s wall time, the time until every router lists all N peers and has all its
 * connections established, and, after the mesh has been idle for a while, every
 * router's RSS (/proc/PID/status VmRSS) and CPU over an interval (/proc/PID/stat
 * utime + stime). Everything (namespaces, routers, state) is removed at the end, also
 * on failure or Ctrl-C. Needs root.
 */
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { Testbed, canRunE2E, sleep } from '../test/e2e/lib/testbed.js';

export interface RealResult {
  n: number;
  launchMs: number[];
  /** From the first launch's start until every router sees everything established. */
  allEstablishedMs: number;
  /** From the last launch's return until then. */
  afterLastMs: number;
  rssMiB: number[];
  /** Proportional set size per router (shared pages, like the node binary's, split among their users). */
  pssMiB: number[];
  /** Private (anonymous and private file) memory per router. */
  privateMiB: number[];
  cpuPct: number[];
  /** An idle bare `node` process, started in the same run (anchor): RSS, PSS, private MiB, CPU %. */
  bare: { rssMiB: number; pssMiB: number; privateMiB: number; cpuPct: number };
  load: string;
  /** Load average (1 min) when the first launch started. */
  loadAtStart: string;
}

/** GET a path of one router's API over its unix socket (the CLI's transport, without a node start per call). */
function apiGet(stateDir: string, p: string, timeoutMs = 10_000, text = false): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: path.join(stateDir, 'weaver.sock'), path: p, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const body = Buffer.concat(chunks).toString('utf8');
          resolve(text ? body : JSON.parse(body));
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

interface MiniReport { Router: { Peers: unknown[]; Connections: Array<{ State: string }> } }

/** Whether one router lists all n peers and has every connection established. */
async function routerDone(dir: string, n: number): Promise<boolean> {
  let r: MiniReport;
  try {
    r = (await apiGet(dir, '/report')) as MiniReport;
  } catch {
    return false;
  }
  const conns = r.Router.Connections;
  return r.Router.Peers.length === n && conns.length > 0 && conns.every((c) => c.State === 'established');
}

/**
 * One poll of every router: records in `doneAt[i]` when router i was first seen complete
 * (cleared again if it is seen incomplete later); true when all are complete now.
 */
async function meshDone(dirs: string[], n: number, doneAt: Array<number | undefined>): Promise<boolean> {
  let all = true;
  for (let i = 0; i < dirs.length; i++) {
    const ok = await routerDone(dirs[i]!, n);
    if (!ok) {
      doneAt[i] = undefined;
      all = false;
    } else if (doneAt[i] === undefined) {
      doneAt[i] = Date.now();
    }
  }
  return all;
}

/** Connection closes and failures in the routers' logs, by reason (counts), and the time of the last "established" line. */
function logSummary(dirs: string[]): { reasons: Record<string, number>; lastEstablished: number[] } {
  const reasons: Record<string, number> = {};
  const lastEstablished: number[] = [];
  for (const d of dirs) {
    let last = NaN;
    let text = '';
    try {
      text = readFileSync(path.join(d, 'weaver.log'), 'utf8');
    } catch { /* no log */ }
    for (const line of text.split('\n')) {
      const m = /"time":"([^"]+)".*"msg":"connection [<-]+ \S+ \S+ (closed|failed): ([^"(]*)/.exec(line);
      if (m) {
        const why = m[3]!.replace(/\d+(\.\d+)?/g, 'N').trim().slice(0, 60);
        reasons[`${m[2]}: ${why}`] = (reasons[`${m[2]}: ${why}`] ?? 0) + 1;
      }
      const e = /"time":"([^"]+)".*"msg":"connection .* established over UDP/.exec(line);
      if (e) last = Date.parse(e[1]!);
    }
    lastEstablished.push(last);
  }
  return { reasons, lastEstablished };
}

/**
 * The router's own start-up line from its log ("start-up: N ms since the process started
 * (load a, state b, …)", router/daemon/startup-phases.ts), for attributing a slow launch:
 * the launch's wall time minus N is the CLI's own part (node boot, checks, spawn, wait).
 * @returns the text after "start-up: ", or undefined when the log has none (yet)
 */
function startupLine(dir: string): string | undefined {
  let text = '';
  try {
    text = readFileSync(path.join(dir, 'weaver.log'), 'utf8');
  } catch {
    return undefined;
  }
  const m = /"msg":"start-up: ([^"]{1,400})"/.exec(text);
  return m?.[1];
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Pss and Private_Clean + Private_Dirty of a process, KiB (/proc/PID/smaps_rollup). */
function smapsKiB(pid: number): { pss: number; priv: number } {
  const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const f = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)?.[1] ?? NaN);
  return { pss: f('Pss'), priv: f('Private_Clean') + f('Private_Dirty') };
}

const pct = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * Runs the real-router measurement.
 * @param n routers (2 … 200)
 * @param idleS seconds of idle CPU sampling (after 10 s of settling)
 * @param holdS seconds to keep the mesh up after sampling, for inspection by hand (0 … 1800)
 * @throws Error (one line) when not root or the mesh does not form within the timeout
 */
export async function runReal(n: number, idleS = 30, log: (s: string) => void = (s) => console.error(s), holdS = 0): Promise<RealResult> {
  const why = canRunE2E();
  if (why) throw new Error(`--real ${why}`);
  if (!Number.isInteger(n) || n < 2 || n > 200) throw new Error('--real wants 2 … 200 routers');
  const bed = new Testbed('scl');
  const onSig = (): void => {
    void bed.destroy().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  try {
    log(`creating ${n} namespaces …`);
    const hosts = await bed.up(n);
    const name = (i: number): string => `02:00:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
    const launchMs: number[] = [];
    const loadAtStart = os.loadavg()[0]!.toFixed(1);
    const t0 = Date.now();
    for (let i = 1; i <= n; i++) {
      const h = hosts[i - 1]!;
      const peers = i === 1 ? [] : [...new Set([hosts[0]!.ip, hosts[i - 2]!.ip])];
      const t = Date.now();
      // A loaded machine may take long: the launch's own readiness wait (WEAVE_LAUNCH_TIMEOUT) decides.
      await h.mustWeave(['launch', '--nickname', h.nickname, '--name', name(i), '--no-proxy', '--ipalloc-init', `seed=${name(1)}`, ...peers], { timeoutMs: 200_000, env: { WEAVE_LAUNCH_TIMEOUT: '180' } });
      launchMs.push(Date.now() - t);
      log(`  router ${i} launched in ${launchMs[launchMs.length - 1]} ms (router ${startupLine(h.stateDir) ?? 'start-up line not logged'}; load ${os.loadavg()[0]!.toFixed(1)})`);
    }
    const tLast = Date.now();
    const dirs = hosts.map((h) => h.stateDir);
    const doneAt: Array<number | undefined> = dirs.map(() => undefined);
    while (!(await meshDone(dirs, n, doneAt))) {
      if (Date.now() - t0 > 600_000) throw new Error(`the ${n} routers did not all see each other established within 600 s`);
      await sleep(500);
    }
    const tDone = Date.now();
    log(`all ${n} routers see ${n} peers established, ${((tDone - t0) / 1000).toFixed(1)} s after the first launch; idling 10 s, then sampling ${idleS} s`);
    // Where the time went: per router, when it was last seen becoming complete and when its
    // last connection became established (its log), in s after the last launch returned.
    const logs = logSummary(dirs);
    const rel = (t: number): string => ((t - tLast) / 1000).toFixed(1);
    log(`per router 1…${n}, s after the last launch returned: complete ${doneAt.map((t) => rel(t ?? tDone)).join(' ')}`);
    log(`per router 1…${n}, s after the last launch returned: last connection established ${logs.lastEstablished.map(rel).join(' ')}`);
    log(`connection closes/failures in the logs: ${JSON.stringify(logs.reasons)}`);
    // The join waves' cost: CPU every router used from its start until now (its own start-up
    // plus its share of every later join), the contention every later launch ran in.
    {
      const ticks = hosts.map((h) => cpuTicks(h.pid()!));
      const total = ticks.reduce((a, b) => a + b, 0) / 100; // USER_HZ
      log(`CPU of all routers from their launches until all established: ${total.toFixed(1)} s (per router median ${(median(ticks) / 100).toFixed(2)} s, router 1 ${(ticks[0]! / 100).toFixed(2)} s)`);
    }
    // Anchor: an idle bare Node process (same binary), measured over the same interval.
    const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
    try {
      await sleep(10_000);
      const pids = hosts.map((h) => h.pid()!);
      const all = [...pids, bare.pid!];
      const hz = 100; // USER_HZ on Linux
      const c0 = all.map(cpuTicks);
      const w0 = Date.now();
      await sleep(idleS * 1000);
      const secs = (Date.now() - w0) / 1000;
      const cpu = all.map((p, i) => ((cpuTicks(p) - c0[i]!) / hz / secs) * 100);
      const rss = all.map((p) => rssKiB(p) / 1024);
      const sm = all.map(smapsKiB);
      const k = pids.length;
      // Major collections so far and the heap each left (router/daemon/heap.ts idle collector).
      const gcs: number[] = [];
      const afterGc: number[] = [];
      const recomputes: number[] = [];
      const topoBytes: number[] = [];
      const topoMsgs: number[] = [];
      for (const h of hosts) {
        const m = (await apiGet(h.stateDir, '/metrics', 10_000, true).catch(() => '')) as string;
        gcs.push(Number(/^tsweave_gc_major_total (\S+)/m.exec(m)?.[1] ?? NaN));
        afterGc.push(Number(/^tsweave_heap_after_major_gc_bytes (\S+)/m.exec(m)?.[1] ?? NaN) / 1048576);
        recomputes.push(Number(/^tsweave_route_recomputes_total (\S+)/m.exec(m)?.[1] ?? NaN));
        topoBytes.push(Number(/^tsweave_gossip_bytes_total\{channel="topology"\} (\S+)/m.exec(m)?.[1] ?? NaN));
        topoMsgs.push(Number(/^tsweave_gossip_messages_total\{channel="topology"\} (\S+)/m.exec(m)?.[1] ?? NaN));
      }
      log(`major GCs per router (median / max): ${median(gcs)} / ${Math.max(...gcs)}; heap after the last one, MiB (median): ${median(afterGc).toFixed(1)}`);
      log(`route rebuilds per router since its launch (median / max): ${median(recomputes)} / ${Math.max(...recomputes)}`);
      const sumOf = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
      log(`topology gossip received since launch: ${(sumOf(topoBytes) / 1048576).toFixed(1)} MiB in ${sumOf(topoMsgs)} messages over all routers (per router median ${(median(topoBytes) / 1048576).toFixed(2)} MiB, ${median(topoMsgs)} messages)`);
      if (holdS > 0) {
        log(`holding the mesh for ${holdS} s (Ctrl-C ends it and cleans up): ${hosts.map((h, i) => `router ${i + 1} netns ${h.ns} pid ${pids[i]}`).join('; ')}`);
        await sleep(holdS * 1000);
      }
      return {
        n, launchMs, allEstablishedMs: tDone - t0, afterLastMs: tDone - tLast,
        rssMiB: rss.slice(0, k), pssMiB: sm.slice(0, k).map((x) => x.pss / 1024), privateMiB: sm.slice(0, k).map((x) => x.priv / 1024), cpuPct: cpu.slice(0, k),
        bare: { rssMiB: rss[k]!, pssMiB: sm[k]!.pss / 1024, privateMiB: sm[k]!.priv / 1024, cpuPct: cpu[k]! },
        load: os.loadavg().map((x) => x.toFixed(1)).join(' '), loadAtStart,
      };
    } finally {
      bare.kill('SIGKILL');
    }
  } finally {
    process.off('SIGINT', onSig);
    process.off('SIGTERM', onSig);
    await bed.destroy();
  }
}

/** Markdown lines for a real run. */
export function formatReal(r: RealResult): string[] {
  const f = (x: number, d = 1): string => x.toFixed(d);
  const l = r.launchMs;
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  const b = r.bare;
  return [
    `real routers: ${r.n} namespaces on one underlay bridge, router i launched with routers 1 and i-1 as peers (load average: ${r.loadAtStart} at the first launch, ${r.load} at the end)`,
    '| routers | weave launch ms (first / median / p99 / max / last) | all established after first launch | after last launch | RSS MiB per router (median / max / total) | PSS / private MiB per router (median) | idle CPU % of a core per router (median / max) |',
    '|---|---|---|---|---|---|---|',
    `| ${r.n} | ${l[0]} / ${f(median(l), 0)} / ${pct(l, 0.99)} / ${Math.max(...l)} / ${l[l.length - 1]} | ${f(r.allEstablishedMs / 1000)} s | ${f(r.afterLastMs / 1000)} s | ${f(median(r.rssMiB))} / ${f(Math.max(...r.rssMiB))} / ${f(sum(r.rssMiB), 0)} | ${f(median(r.pssMiB))} / ${f(median(r.privateMiB))} | ${f(median(r.cpuPct), 2)} / ${f(Math.max(...r.cpuPct), 2)} |`,
    `| bare node (same run) | | | | ${f(b.rssMiB)} | ${f(b.pssMiB)} / ${f(b.privateMiB)} | ${f(b.cpuPct, 2)} |`,
    'goals (issue #20): every launch ≤ 2 s; all established ≤ 60 s after the first launch; RSS ≤ 60 MiB per router; idle CPU ≤ 0.5 % per router',
    'before (issue #20, main 67f8a19, 30 routers): launch 0.9 s first, median 2.2 s, 13.9 s for the 30th; all established 119 s after the first launch; RSS median 91 MiB; idle CPU 1.9 % per router',
  ];
}
