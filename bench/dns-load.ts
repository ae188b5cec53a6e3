/**
 * weaveDNS against dnsmasq while the router's data path carries iperf3 traffic, and the
 * data path's loss of throughput while either DNS server is loaded (issue #14's benchmark,
 * second half; `npm run bench:dns` runs it after the unloaded dnsperf/dnsmasq table).
 *
 * Two hosts of the e2e testbed (test/e2e/lib/testbed.ts, namespaces prefixed tswdl…),
 * routers launched with DNS on. In h1's namespace (the router's) a dnsmasq serves the same
 * names from a hosts file on 127.0.0.54; the router serves them on 169.254.53.53. dnsperf
 * runs in h1's namespace for both servers, so both answer the same client path in the same
 * namespace as the router. Per data path (PATHS, default "sleeve,fastdp"): ONE iperf3 TCP
 * flow (one stream) from container cli on h1 to srv on h2 runs through the whole sequence,
 * reporting every second, and the DNS load changes underneath it in phases of DURATION s:
 *
 *   alone · tsweave max · dnsmasq max · tsweave max · dnsmasq @RATE · tsweave @RATE · alone
 *
 * "max" is dnsperf with 4 clients x 100 outstanding (queries/s); "@RATE" is a fixed rate
 * with per-query latencies (dnsperf -v) for p50/p99, as the unloaded table measures them.
 * Before the sequence (before iperf3 starts) each server gets WARMUP s (default 2) of
 * queries at RATE: the router's 'auto' placement hands UDP to its thread within the first
 * such second (dns/threaded.ts) and V8 compiles the answer path, so the first tsweave max
 * phase measures the serving thread rather than that one-time hand-over, which until then
 * fell inside it (then its q/s was under the second's in 30 of 37 pairs, by a median
 * 15 %); WARMUP=0 keeps it there.
 * The A/B/A order and the two "alone" phases show drift within the run. Each phase's
 * data-path rate is the mean of the iperf3 one-second intervals that lie inside it (the
 * first 0.5 s of a phase is skipped).
 *
 * Everything runs on one machine: the load average is printed, and numbers are only
 * comparable within one run.
 *
 * Per phase it also samples the CPU time of the router's main thread on h1 (from
 * /proc/PID/task/PID/stat: % of one CPU), which shows whether the thread that once
 * answered DNS is busy with the data path, and, for tsweave's phases, the DNS server
 * thread's scheduling class at the phase's end with the budget demotions during it
 * ("fifo", "fifo -2", "normal -1"; from `weave report` DNS.Realtime, dns/rt-budget.ts).
 *
 * MODES (default "auto"): where the router answers UDP queries — "auto" (the router's
 * default: the main thread until queries come, then a worker thread; dns/threaded.ts),
 * "thread" (a worker thread from the start, WEAVE_DNS_THREAD=1), "thread-5" (that at
 * nice -5, WEAVE_DNS_THREAD_NICE=-5), and/or "main" (WEAVE_DNS_THREAD=0: always the
 * main thread); "auto-normal" is "auto" with the server thread kept in the normal
 * scheduling class (WEAVE_DNS_THREAD_RT=0; by default it is SCHED_FIFO within a CPU budget,
 * dns/rt-budget.ts); "main,auto" or "auto-normal,auto" measure both per path in one run
 * (before/after). Each path's line names the server thread's class as the router reported
 * it at the end (priority, demotions).
 *
 * Environment: DURATION (s per phase, default 5), RATE (q/s for latency, default 2000), WARMUP (s, default 2),
 * PATHS, MODES, RESULTS_DIR (JSON, default /tmp/tsweave-bench). Needs root, iperf3, dnsperf,
 * dnsmasq. Exits 1 with a one-line reason on failure; namespaces and processes are removed
 * at the end, also on failure or Ctrl-C.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import type { RealtimeState } from '../dns/server-worker.js';
import { Testbed, canRunE2E, sh, sleep, until, type Container, type Host, type Result } from '../test/e2e/lib/testbed.js';

const DURATION = Number(process.env.DURATION ?? 5);
const RATE = Number(process.env.RATE ?? 2000);
const WARMUP = Number(process.env.WARMUP ?? 2);
const PATHS = (process.env.PATHS ?? 'sleeve,fastdp').split(',').filter(Boolean);
const MODES = (process.env.MODES ?? 'auto').split(',').filter(Boolean);
const RESULTS_DIR = process.env.RESULTS_DIR ?? '/tmp/tsweave-bench';
const OURS = '169.254.53.53';
const DNSMASQ = '127.0.0.54';

type Server = 'tsweave' | 'dnsmasq';
type Kind = 'alone' | 'max' | 'rate';
interface Phase {
  kind: Kind;
  server?: Server;
  /** ms since the iperf3 client was started. */
  from: number;
  to: number;
  load: number;
  /** Mean iperf3 Mbit/s over the phase's intervals. */
  mbps?: number;
  qps?: number;
  lostPct?: number;
  p50?: number;
  p99?: number;
  /** The DNS server thread's class over the phase: 'fifo' | 'normal' at its end, with the demotions in it ('fifo -1'); only for tsweave phases. */
  rt?: string;
  /** CPU of the router's main thread on h1 over the phase, % of one CPU. */
  mainCpu?: number;
}
interface PathResult { path: string; mode: string; phases: Phase[]; thread?: string }

/** The DNS report's thread and scheduling class in words ("worker thread, SCHED_FIFO 1, demoted 3 times"). */
function threadClass(dns: { Thread?: string; Realtime?: RealtimeState } | undefined): string {
  if (!dns || dns.Thread !== 'worker') return `${dns?.Thread ?? 'no'} thread`;
  const rt = dns.Realtime;
  if (!rt) return 'worker thread, normal class';
  if (rt.Error) return `worker thread, normal class (SCHED_FIFO ${rt.Priority} refused: ${rt.Error})`;
  return `worker thread, SCHED_FIFO ${rt.Priority} ${rt.Active ? 'now' : 'demoted now'}, demoted ${rt.Demotions} times`;
}

/** The DNS server thread's real-time state from h1's report (undefined: main thread or normal class). */
async function realtimeOf(h: Host): Promise<RealtimeState | undefined> {
  const rt = (await h.report()).DNS?.Realtime as RealtimeState | undefined;
  return rt && !rt.Error ? rt : undefined;
}

/** utime + stime of the router's main thread, in clock ticks; undefined without a pid. */
function threadTicks(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const st = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return undefined;
  }
}

/** The router's pid in h1's namespace (the node process running weaver.js). */
async function routerPid(h: Host): Promise<number | undefined> {
  const r = await sh('ip', ['netns', 'pids', h.ns]);
  for (const p of r.stdout.split('\n').map(Number).filter((n) => n > 0)) {
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('weaver.js')) return p;
    } catch {
      // gone
    }
  }
  return undefined;
}

const SEQUENCE: Array<[Kind, Server?]> = [['alone'], ['max', 'tsweave'], ['max', 'dnsmasq'], ['max', 'tsweave'], ['rate', 'dnsmasq'], ['rate', 'tsweave'], ['alone']];

const load1 = (): number => loadavg()[0]!;
const fmt = (x: number | undefined, d = 1): string => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(d));
const mean = (xs: Array<number | undefined>): number | undefined => {
  const v = xs.filter((x): x is number => x !== undefined);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
};

async function established(h: Host, p: string): Promise<boolean> {
  const r = await h.report();
  return (r.Router.Connections as Array<{ State: string; Path?: string }>).some((c) => c.State === 'established' && c.Path === p);
}

/** dnsperf summary (queries/s, lost %) and, with -v, per-query latency p50/p99 in ms. */
function parseDnsperf(r: Result): Pick<Phase, 'qps' | 'lostPct' | 'p50' | 'p99'> {
  const out = r.stdout;
  const num = (re: RegExp): number | undefined => {
    const m = re.exec(out);
    return m ? Number(m[1]) : undefined;
  };
  const lat: number[] = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('> ')) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) lat.push(v * 1000);
  }
  lat.sort((a, b) => a - b);
  const pct = (q: number): number | undefined => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * q))] : undefined);
  return { qps: num(/Queries per second:\s+([\d.]+)/), lostPct: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/), p50: pct(0.5), p99: pct(0.99) };
}

async function measurePath(bed: Testbed, h1: Host, cli: Container, srv: Container, queries: string): Promise<Phase[]> {
  const pid = await routerPid(h1);
  if (WARMUP > 0) {
    for (const addr of [OURS, DNSMASQ]) await h1.exec(['setsid', '--wait', 'dnsperf', '-s', addr, '-d', queries, '-l', String(WARMUP), '-Q', String(RATE)], (WARMUP + 60) * 1000);
    await sleep(1000);
  }
  bed.background(['ip', 'netns', 'exec', srv.ns, 'iperf3', '-s', '-1']);
  await sleep(500);
  const total = SEQUENCE.length * (DURATION + 1) + 6;
  const t0 = Date.now();
  const flow = cli.exec(['iperf3', '-c', srv.ips[0]!.split('/')[0]!, '-t', String(total), '-i', '1', '-J', '--connect-timeout', '3000'], (total + 60) * 1000);
  await sleep(2000); // connect and ramp up
  const phases: Phase[] = [];
  for (const [kind, server] of SEQUENCE) {
    const ph: Phase = { kind, server, from: Date.now() - t0, to: 0, load: load1() };
    const rt0 = server === 'tsweave' ? await realtimeOf(h1) : undefined;
    const ticks0 = threadTicks(pid);
    if (kind === 'alone') {
      await sleep(DURATION * 1000);
    } else {
      const addr = server === 'tsweave' ? OURS : DNSMASQ;
      const args = kind === 'max' ? ['-c', '4', '-q', '100'] : ['-Q', String(RATE), '-v'];
      Object.assign(ph, parseDnsperf(await h1.exec(['setsid', '--wait', 'dnsperf', '-s', addr, '-d', queries, '-l', String(DURATION), ...args], (DURATION + 60) * 1000)));
    }
    ph.to = Date.now() - t0;
    const ticks1 = threadTicks(pid);
    if (server === 'tsweave') {
      const rt1 = await realtimeOf(h1);
      if (rt1) ph.rt = `${rt1.Active ? 'fifo' : 'normal'}${rt1.Demotions > (rt0?.Demotions ?? 0) ? ` -${rt1.Demotions - (rt0?.Demotions ?? 0)}` : ''}`;
    }
    // Clock ticks are 1/100 s on Linux (sysconf(_SC_CLK_TCK)).
    if (ticks0 !== undefined && ticks1 !== undefined) ph.mainCpu = (ticks1 - ticks0) / ((ph.to - ph.from) / 1000);
    phases.push(ph);
    await sleep(1000); // gap between phases: queries drain, intervals separate
  }
  const r = await flow;
  if (r.code !== 0) throw new Error(`iperf3 through the data path failed: ${(r.stdout + r.stderr).split('\n').find((l) => /error/i.test(l)) ?? `exit ${r.code}`}`);
  const j = JSON.parse(r.stdout) as { intervals: Array<{ sum: { start: number; end: number; bits_per_second: number } }> };
  for (const ph of phases) {
    // Interval times are relative to the connect, a little after t0: only whole intervals inside count.
    const inside = j.intervals.filter((i) => i.sum.start * 1000 >= ph.from + 500 && i.sum.end * 1000 <= ph.to);
    ph.mbps = mean(inside.map((i) => i.sum.bits_per_second / 1e6));
  }
  return phases;
}

async function main(): Promise<void> {
  const why = canRunE2E();
  if (why) throw new Error(why);
  for (const v of [DURATION, RATE]) if (!Number.isInteger(v) || v < 1 || v > 100_000) throw new Error(`DURATION/RATE must be positive integers, got ${v}`);
  if (!Number.isInteger(WARMUP) || WARMUP < 0 || WARMUP > 600) throw new Error(`WARMUP must be an integer 0..600 (seconds), got ${process.env.WARMUP}`);
  const bed = new Testbed('dl');
  const stop = (): void => {
    void bed.destroy().then(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const results: PathResult[] = [];
  try {
    const [h1, h2] = await bed.up(2);
    const queries = path.join(h1!.stateDir, 'names.q');
    writeFileSync(queries, 'srv.weave.local A\ncli.weave.local A\n');
    const hosts = path.join(h1!.stateDir, 'dnsmasq.hosts');
    writeFileSync(hosts, '10.32.9.1 cli.weave.local\n10.32.9.2 srv.weave.local\n');
    await h1!.exec(['ip', 'link', 'set', 'lo', 'up']);
    // Every server is a daemon in a session of its own, as the router is (`weave launch`
    // detaches it) and as dnsmasq is under an init system; dnsperf gets one too. With the
    // kernel's autogroup scheduling (sched_autogroup_enabled=1, Debian's default) CPU is
    // shared between sessions first: dnsmasq in the bench's session would share one slice
    // with iperf3 and dnsperf, while the router has a slice to itself — a comparison
    // shaped by sessions, not by servers.
    bed.background(['setsid', 'ip', 'netns', 'exec', h1!.ns, 'dnsmasq', '-k', '--no-resolv', '--no-hosts', `--addn-hosts=${hosts}`, `--listen-address=${DNSMASQ}`, '--bind-interfaces', '--pid-file=', '--user=root', '--cache-size=10000', '--local-ttl=1']);
    let cli: Container | undefined;
    let srv: Container | undefined;
    for (const m of MODES) if (m !== 'main' && m !== 'auto' && m !== 'auto-normal' && m !== 'thread' && m !== 'thread-5') throw new Error(`MODES: unknown mode ${m} (want auto, auto-normal, main, thread, thread-5)`);
    for (const p of PATHS) for (const mode of MODES) {
      if (p !== 'sleeve' && p !== 'fastdp') throw new Error(`PATHS: unknown path ${p} (want sleeve, fastdp)`);
      const env: Record<string, string> = { ...(mode === 'auto' || mode === 'auto-normal' ? {} : { WEAVE_DNS_THREAD: mode === 'main' ? '0' : '1' }), ...(mode === 'thread-5' ? { WEAVE_DNS_THREAD_NICE: '-5' } : {}), ...(mode === 'auto-normal' ? { WEAVE_DNS_THREAD_RT: '0' } : {}) };
      const flags = ['--no-proxy', '--no-plugin', '--ipalloc-range', '', ...(p === 'sleeve' ? ['--no-fastdp'] : [])];
      for (const h of [h1!, h2!]) if ((await h.weave(['status'])).code === 0) await h.mustWeave(['stop']);
      await h1!.launch(flags, { env });
      await h2!.launch([...flags, h1!.ip], { env });
      await until(`h2 established on the ${p}`, () => established(h2!, p), 90_000, 300);
      if (cli === undefined) {
        cli = await h1!.container('cli', ['-h', 'cli', 'ip:10.32.9.1/24']);
        srv = await h2!.container('srv', ['-h', 'srv', 'ip:10.32.9.2/24']);
      }
      await cli.mustPing(srv!.ips[0]!.split('/')[0]!, { tries: 20 }, `${p}: cli -> srv`);
      await until('srv named on h1', async () => (await h1!.weave(['dns-lookup', 'srv'])).stdout.trim() === '10.32.9.2', 30_000, 300);
      for (const addr of [OURS, DNSMASQ]) {
        const probe = await h1!.exec(['dnsperf', '-s', addr, '-d', queries, '-n', '1']);
        if (!/Queries completed:\s+2 /.test(probe.stdout)) throw new Error(`${p}: dnsperf in h1's namespace gets no answers from ${addr}: ${probe.stdout.split('\n').filter((l) => /Queries|Response/.test(l)).join('; ')}`);
      }
      const phases = await measurePath(bed, h1!, cli, srv!, queries);
      results.push({ path: p, mode, phases, thread: threadClass((await h1!.report()).DNS) });
      // A clean stop, so a router run with WEAVER_NODE_ARGS="--cpu-prof …" writes its profile.
      for (const h of [h1!, h2!]) await h.weave(['stop']);
      process.stderr.write(`${p} (DNS on ${mode}, ${results[results.length - 1]!.thread}): ${phases.map((ph) => `${ph.kind}${ph.server ? ' ' + ph.server : ''} ${fmt(ph.mbps)} Mbit/s${ph.qps ? ` ${fmt(ph.qps, 0)} q/s` : ''}`).join('; ')}\n`);
    }
  } finally {
    await bed.destroy();
  }
  report(results);
}

function report(results: PathResult[]): void {
  const L: string[] = [];
  L.push(`DNS under data-path load: one iperf3 TCP-1 flow h1 -> h2 through each path; dnsperf in the router's namespace (h1), phases of ${DURATION} s in this order:`);
  L.push(`${'path'.padEnd(14)} ${'phase'.padEnd(17)} ${'Mbit/s'.padStart(8)} ${'q/s'.padStart(9)} ${'lost %'.padStart(7)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'main %'.padStart(6)} ${'load'.padStart(5)} ${'DNS thread'.padStart(10)}`);
  for (const r of results) {
    const label = `${r.path}/${r.mode}`;
    for (const ph of r.phases) {
      const name = ph.kind === 'alone' ? 'no DNS load' : `${ph.server} ${ph.kind === 'max' ? 'max' : '@' + RATE}`;
      L.push(`${label.padEnd(14)} ${name.padEnd(17)} ${fmt(ph.mbps).padStart(8)} ${(ph.qps === undefined ? '' : fmt(ph.qps, 0)).padStart(9)} ${(ph.lostPct === undefined ? '' : fmt(ph.lostPct, 2)).padStart(7)} ${(ph.p50 === undefined ? '' : fmt(ph.p50, 3)).padStart(7)} ${(ph.p99 === undefined ? '' : fmt(ph.p99, 3)).padStart(7)} ${fmt(ph.mainCpu, 0).padStart(6)} ${ph.load.toFixed(1).padStart(5)} ${(ph.rt ?? '').padStart(10)}`);
    }
  }
  L.push('');
  L.push(`${'path'.padEnd(14)} ${'tsweave/dnsmasq q/s'.padStart(20)} ${'tsweave A1 / A2 q/s'.padStart(20)} ${'p99 ts/dm ms'.padStart(14)} ${'Mbit/s: none'.padStart(13)} ${'ts-loaded'.padStart(10)} ${'dm-loaded'.padStart(10)}`);
  const summary = results.map((r) => {
    const ph = r.phases;
    const ts = ph.filter((x) => x.kind === 'max' && x.server === 'tsweave');
    const dm = ph.filter((x) => x.kind === 'max' && x.server === 'dnsmasq');
    const tsRate = ph.find((x) => x.kind === 'rate' && x.server === 'tsweave');
    const dmRate = ph.find((x) => x.kind === 'rate' && x.server === 'dnsmasq');
    const s = {
      path: r.path, mode: r.mode,
      ratio: (mean(ts.map((x) => x.qps)) ?? NaN) / (mean(dm.map((x) => x.qps)) ?? NaN),
      tsP99: tsRate?.p99, dmP99: dmRate?.p99,
      none: mean(ph.filter((x) => x.kind === 'alone').map((x) => x.mbps)),
      tsLoaded: mean(ts.map((x) => x.mbps)), dmLoaded: mean(dm.map((x) => x.mbps)),
    };
    L.push(`${`${r.path}/${r.mode}`.padEnd(14)} ${fmt(s.ratio, 2).padStart(19)}x ${`${fmt(ts[0]?.qps, 0)} / ${fmt(ts[1]?.qps, 0)}`.padStart(20)} ${`${fmt(s.tsP99, 2)} / ${fmt(s.dmP99, 2)}`.padStart(14)} ${fmt(s.none).padStart(13)} ${`${fmt(s.tsLoaded)} (${fmt((s.tsLoaded ?? NaN) / (s.none ?? NaN), 2)}x)`.padStart(10)} ${`${fmt(s.dmLoaded)} (${fmt((s.dmLoaded ?? NaN) / (s.none ?? NaN), 2)}x)`.padStart(10)}`);
    return s;
  });
  for (const r of results) L.push(`${`${r.path}/${r.mode}`.padEnd(14)} DNS answered on the ${r.thread ?? '?'} (at the end)`);
  L.push(`goal: tsweave/dnsmasq q/s >= 1.0x and tsweave p99 <= 2 ms while iperf3 runs; (Nx) = data-path rate with that server loaded / with no DNS load; /main = DNS on the router's main thread, /thread = on its worker thread, /auto-normal = auto with that thread in the normal scheduling class; main % = the router's main thread's CPU (% of one CPU)`);
  process.stdout.write(L.join('\n') + '\n');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(path.join(RESULTS_DIR, `dns-load-${stamp}.json`), JSON.stringify({ duration: DURATION, rate: RATE, modes: MODES, results, summary }, null, 1));
}

main().catch((err: Error) => {
  process.stderr.write(`bench:dns data path: ${err.message.split('\n')[0]}\n`);
  process.exit(1);
});
