/**
 * `npm run soak -- --minutes M [--hosts N] [--sample-s S] [--out DIR]`: the soak of
 * issue #16, as root, on the e2e testbed (one network namespace per host). N routers
 * (default 3, sleeve only so every frame crosses the routers) each with two
 * containers carry steady traffic — iperf3 at a bounded rate h2 → h1, a ping every 50 ms
 * h3 → h1 and h1 → h2 — while churn attaches and detaches containers on every host as
 * fast as the API answers: --churn-workers W (default 8) concurrent workers per host,
 * each with its own pre-created netns target, POST /attach then /detach on the router's
 * root-only unix socket (the channel the CLI uses, without forking the CLI); the table
 * prints cycles/s (the issue asks ≥ 20/s) and errors. --router-nice N (default 0) renices
 * every router thread to N: for soaks on a shared machine, so other users' load does not
 * count against the router's event-loop bound (a negative N needs root). A partition flap cuts one host
 * off the underlay for 3 s every 30 s, and a /events WebSocket client connects and leaves on every
 * sample. Every S seconds (default 5) it samples each router's RSS and open fds (/proc),
 * heap, heap total, external and array-buffer memory and event-loop delay p99/max (its
 * /metrics: tsweave_heap_used_bytes, tsweave_memory_bytes{kind},
 * tsweave_event_loop_delay_seconds) and data-path drops (/report) into DIR/soak.csv,
 * and at the end writes DIR/soak.png (gnuplot) and a table, and checks bounds after a
 * warm-up (the first 20 %, at least one minute):
 *  - live-heap slope: the least-squares slope of tsweave_heap_after_major_gc_bytes (the heap
 *    in use just after the last major collection, i.e. garbage excluded) ≤ --max-heap-slope
 *    MiB per 10 min (default 1), judged when ≥ 20 min follow the warm-up (shorter windows
 *    measure V8's JIT warm-up: they bound the live heap's size, --max-heap-mib, default 32). RSS itself is not bounded by slope: the router runs
 *    `--no-memory-reducer`, so V8 defers major collections and RSS climbs with garbage
 *    for minutes (docs/ARCHITECTURE.md, "Pauses"). If fewer than 2 major collections
 *    happened after warm-up the live heap was not re-measured and the table says so;
 *  - RSS sanity: every sample's RSS after warm-up ≤ --max-rss-mib (default 256), and,
 *    only if given, the RSS slope ≤ --max-rss-slope MiB per 10 min;
 *  - open fds flat: the median of the last third ≤ the median of the first third + 2;
 *  - event-loop delay p99 ≤ --max-loop-ms (default 50) in the median sample.
 * Exits 1 naming the bound that failed (or a router that died).
 */
import { Command } from 'commander';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { Testbed, canRunE2E, must, sh, sleep, type Host } from '../e2e/lib/testbed.js';
import { api, procStats } from './mesh.js';

/** One router's sample; memory in MiB (rss from /proc; heapTotal/external/arrayBuffers from its tsweave_memory_bytes gauge). */
interface Sample { t: number; host: number; rss: number; fds: number; heap: number; heapTotal: number; external: number; arrayBuffers: number; rssAnon: number; rssFile: number; gcMajor: number; heapLive: number; p99: number; max: number; drops: number }

function num(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`invalid ${name} "${v}": want a number from ${min} to ${max}`);
    return n;
  };
}

/** RssAnon and RssFile (+ RssShmem) of a process in MiB, from /proc/PID/status (NaN if unreadable). */
function rssParts(pid: number | undefined): { rssAnon: number; rssFile: number } {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st)?.[1] ?? NaN);
    return { rssAnon: kb('RssAnon') / 1024, rssFile: (kb('RssFile') + kb('RssShmem')) / 1024 };
  } catch {
    return { rssAnon: NaN, rssFile: NaN };
  }
}

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

export function median(xs: number[]): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Parse one gauge value (with optional labels) out of Prometheus text. */
function gauge(text: string, name: string, labels = ''): number {
  const m = new RegExp(`^${name}${labels.replace(/[{}"]/g, (c) => `\\${c}`)} ([0-9.eE+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function main(): Promise<number> {
  const p = new Command('soak')
    .option('--minutes <m>', 'duration', num('--minutes', 0.5, 24 * 60), 5)
    .option('--hosts <n>', 'routers', num('--hosts', 2, 8), 3)
    .option('--sample-s <s>', 'sampling period, seconds', num('--sample-s', 1, 600), 5)
    .option('--out <dir>', 'where soak.csv and soak.png go', '/tmp/tsweave-soak')
    .option('--max-heap-slope <mib>', 'bound: growth of the heap after major GC after warm-up, MiB per 10 min', num('--max-heap-slope', 0, 1e6), 1)
    .option('--max-heap-mib <mib>', 'bound for runs under 20 min (no slope judged there): heap after major GC of any sample after warm-up, MiB', num('--max-heap-mib', 1, 1e6), 32)
    .option('--max-rss-mib <mib>', 'bound (sanity): RSS of any sample after warm-up, MiB', num('--max-rss-mib', 1, 1e6), 256)
    .option('--max-rss-slope <mib>', 'bound (off unless given): RSS growth after warm-up, MiB per 10 min', num('--max-rss-slope', 0, 1e6))
    .option('--max-loop-ms <ms>', 'bound: median sample of the event-loop delay p99, ms', num('--max-loop-ms', 0, 1e6), 50)
    .option('--iperf-rate <r>', 'iperf3 -b rate', '20M')
    .option('--churn-workers <n>', 'concurrent attach+detach workers per host, each on its own netns', num('--churn-workers', 1, 64), 8)
    .option('--router-nice <n>', 'nice value for the routers (for soaks on a shared machine; negative needs root)', num('--router-nice', -20, 19), 0)
    .exitOverride();
  p.parse(process.argv);
  const o = p.opts<{ minutes: number; hosts: number; sampleS: number; out: string; maxHeapSlope: number; maxHeapMib: number; maxRssMib: number; maxRssSlope?: number; maxLoopMs: number; iperfRate: string; churnWorkers: number; routerNice: number }>();
  const why = canRunE2E();
  if (why) throw new Error(`soak ${why}`);
  for (const bin of ['iperf3', 'gnuplot', 'iptables']) {
    try {
      execFileSync(bin, ['--version'], { stdio: 'ignore' });
    } catch {
      throw new Error(`soak needs ${bin} (scripts/setup.sh installs it)`);
    }
  }
  if (!/^[\w./-]{1,200}$/.test(o.out)) throw new Error(`invalid --out "${o.out}": want a plain path (letters, digits, . _ - /)`);
  if (!/^\d+[KMG]?$/.test(o.iperfRate)) throw new Error(`invalid --iperf-rate "${o.iperfRate}": want e.g. 20M`);
  mkdirSync(o.out, { recursive: true });
  const bed = new Testbed('sk');
  const procs: ChildProcess[] = [];
  let stopping = false;
  let t0 = Date.now();
  try {
    const hosts = await bed.up(o.hosts);
    for (const h of hosts) await h.launch(['--no-proxy', '--no-plugin', '--no-fastdp', ...hosts.filter((x) => x !== h).map((x) => x.ip)]);
    await hosts[0].mustWeave(['prime'], { timeoutMs: 120_000 });
    if (o.routerNice !== 0) for (const h of hosts) await renice(h.pid(), o.routerNice);
    const steady = [];
    for (const h of hosts) {
      steady.push(await h.container(`a${h.index}`, []));
      await h.container(`b${h.index}`, []);
    }
    const durS = Math.round(o.minutes * 60);
    t0 = Date.now(); // the soak's clock starts when the testbed is up
    const bg = (args: string[]): ChildProcess => {
      const c = spawn(args[0], args.slice(1), { stdio: 'ignore' });
      procs.push(c);
      return c;
    };
    bg(['ip', 'netns', 'exec', steady[0].ns, 'iperf3', '-s']);
    await sleep(1000);
    // A client that is restarted if the stream breaks (a flap can end it).
    let iperfRuns = 0;
    const iperfLoop = (async () => {
      while (!stopping) {
        iperfRuns++;
        const left = Math.max(5, durS - Math.round((Date.now() - t0) / 1000));
        const c = bg(['ip', 'netns', 'exec', steady[1].ns, 'iperf3', '-c', steady[0].ips[0], '-t', String(left), '-b', o.iperfRate]);
        await new Promise((r) => c.once('exit', r));
        if (!stopping) await sleep(1000);
      }
    })();
    bg(['ip', 'netns', 'exec', steady[2 % hosts.length].ns, 'ping', '-q', '-i', '0.05', steady[0].ips[0]]);
    bg(['ip', 'netns', 'exec', steady[0].ns, 'ping', '-q', '-i', '0.05', steady[1].ips[0]]);

    // Churn: W concurrent attach/detach workers per host, each on its own netns, through the API.
    let churned = 0;
    let churnErrors = 0;
    for (const h of hosts) {
      for (let w = 0; w < o.churnWorkers; w++) {
        const ns = `${bed.prefix}ch${h.index}w${w}`;
        await must('ip', ['netns', 'add', ns]);
        bed.namespaces.push(ns);
      }
    }
    const churnT0 = Date.now();
    const churn = hosts.flatMap((h) => Array.from({ length: o.churnWorkers }, (_, w) => (async () => {
      const target = JSON.stringify({ target: `netns:/var/run/netns/${bed.prefix}ch${h.index}w${w}`, specs: [] });
      while (!stopping) {
        const a = await apiPost(h, '/attach', target);
        const d = await apiPost(h, '/detach', target);
        if (a !== 200 || d !== 200) {
          churnErrors++;
          await sleep(500);
        } else churned++;
      }
    })()));
    const rate = (): string => (churned / Math.max(1, (Date.now() - churnT0) / 1000)).toFixed(1);
    // Connection flaps: the last host loses its underlay for 3 s every 30 s.
    let flaps = 0;
    const last = hosts[hosts.length - 1];
    await must('ip', ['netns', 'exec', last.ns, 'iptables', '-w', '-N', 'TSWSOAK']);
    await must('ip', ['netns', 'exec', last.ns, 'iptables', '-w', '-I', 'OUTPUT', '-j', 'TSWSOAK']);
    const flapLoop = (async () => {
      while (!stopping) {
        await sleep(27_000);
        if (stopping) break;
        await must('ip', ['netns', 'exec', last.ns, 'iptables', '-w', '-A', 'TSWSOAK', '-p', 'tcp', '-m', 'multiport', '--ports', '6783', '-j', 'DROP']);
        await sleep(3000);
        await must('ip', ['netns', 'exec', last.ns, 'iptables', '-w', '-F', 'TSWSOAK']);
        flaps++;
      }
    })();

    const samples: Sample[] = [];
    const csv: string[] = ['t_s,host,rss_mib,fds,heap_mib,loop_p99_ms,loop_max_ms,drops,heap_total_mib,external_mib,array_buffers_mib,rss_anon_mib,rss_file_mib,gc_major,heap_after_major_gc_mib'];
    const pids = hosts.map((h) => h.pid());
    console.log(`soak: ${o.hosts} routers (pids ${pids.join(' ')}), ${durS} s, sampling every ${o.sampleS} s into ${path.join(o.out, 'soak.csv')}`);
    const end = t0 + durS * 1000;
    let nextLine = 0;
    while (Date.now() < end) {
      await sleep(o.sampleS * 1000);
      const t = (Date.now() - t0) / 1000;
      for (const h of hosts) {
        const pid = pids[h.index - 1];
        const st = procStats(pid);
        if (st.rss === 0) throw new Error(`router h${h.index} (pid ${pid}) died during the soak at ${t.toFixed(0)} s:\n${h.logTail(20)}`);
        const m = await api(h, 'GET', '/metrics');
        const rep = await api(h, 'GET', '/report');
        let drops = NaN;
        try {
          drops = Object.values(JSON.parse(rep.body).Router.Drops as Record<string, number>).reduce((a, b) => a + b, 0);
        } catch { /* no report this time */ }
        const s: Sample = {
          t, host: h.index, rss: st.rss / 2 ** 20, fds: st.fds,
          heap: gauge(m.body, 'tsweave_heap_used_bytes') / 2 ** 20,
          heapTotal: gauge(m.body, 'tsweave_memory_bytes', '{kind="heap_total"}') / 2 ** 20,
          external: gauge(m.body, 'tsweave_memory_bytes', '{kind="external"}') / 2 ** 20,
          arrayBuffers: gauge(m.body, 'tsweave_memory_bytes', '{kind="array_buffers"}') / 2 ** 20,
          ...rssParts(pid),
          gcMajor: gauge(m.body, 'tsweave_gc_major_total'),
          heapLive: gauge(m.body, 'tsweave_heap_after_major_gc_bytes') / 2 ** 20,
          p99: gauge(m.body, 'tsweave_event_loop_delay_seconds', '{quantile="0.99"}') * 1000,
          max: gauge(m.body, 'tsweave_event_loop_delay_seconds', '{quantile="1"}') * 1000,
          drops,
        };
        samples.push(s);
        csv.push([s.t.toFixed(1), s.host, s.rss.toFixed(2), s.fds, s.heap.toFixed(2), s.p99.toFixed(2), s.max.toFixed(2), s.drops, s.heapTotal.toFixed(2), s.external.toFixed(2), s.arrayBuffers.toFixed(2), s.rssAnon.toFixed(2), s.rssFile.toFixed(2), s.gcMajor, s.heapLive.toFixed(2)].join(','));
      }
      writeFileSync(path.join(o.out, 'soak.csv'), csv.join('\n') + '\n');
      // An /events client connects and leaves.
      await eventsClient(hosts[Math.floor(t / o.sampleS) % hosts.length]);
      if (Date.now() >= nextLine) {
        nextLine = Date.now() + 60_000;
        const cur = samples.slice(-hosts.length);
        console.log(`soak: ${t.toFixed(0)} s: RSS MiB ${cur.map((s) => s.rss.toFixed(0)).join('/')} (anon ${cur.map((s) => s.rssAnon.toFixed(0)).join('/')}, heap ${cur.map((s) => s.heap.toFixed(0)).join('/')}, heap after major GC ${cur.map((s) => s.heapLive.toFixed(0)).join('/')} (${cur.map((s) => s.gcMajor).join('/')} major GCs), external ${cur.map((s) => s.external.toFixed(0)).join('/')}, arrayBuffers ${cur.map((s) => s.arrayBuffers.toFixed(0)).join('/')}), fds ${cur.map((s) => s.fds).join('/')}, loop p99 ms ${cur.map((s) => s.p99.toFixed(1)).join('/')}; churn ${churned} attach+detach (${rate()}/s, ${churnErrors} errors), ${flaps} flaps, iperf3 runs ${iperfRuns}`);
      }
    }
    stopping = true;
    const churnRate = rate();
    await Promise.all([...churn, flapLoop]);
    for (const c of procs) c.kill('SIGKILL');
    await iperfLoop;

    // Bounds after warm-up.
    const warm = Math.max(60, 0.2 * durS);
    const fails: string[] = [];
    const rows: string[] = ['host  RSS MiB start→end  slope MiB/10min  fds start→end  heap MiB end  loop p99 ms median/max  drops  external/arrayBuffers MiB start→end  heap after major GC MiB start→end (major GCs)'];
    for (const h of hosts) {
      const ss = samples.filter((s) => s.host === h.index && s.t >= warm);
      if (ss.length < 3) {
        fails.push(`too few samples after the ${warm} s warm-up: run longer`);
        break;
      }
      const sl = slope(ss.map((s) => s.t), ss.map((s) => s.rss)) * 600;
      const hsl = slope(ss.map((s) => s.t), ss.map((s) => s.heapLive)) * 600;
      const majors = ss[ss.length - 1].gcMajor - ss[0].gcMajor;
      const rssMax = Math.max(...ss.map((s) => s.rss));
      const third = Math.max(1, Math.floor(ss.length / 3));
      const fd0 = median(ss.slice(0, third).map((s) => s.fds));
      const fd1 = median(ss.slice(-third).map((s) => s.fds));
      const p99med = median(ss.map((s) => s.p99).filter((x) => !Number.isNaN(x)));
      const p99max = Math.max(...ss.map((s) => s.p99).filter((x) => !Number.isNaN(x)));
      rows.push(`h${h.index}    ${ss[0].rss.toFixed(1)}→${ss[ss.length - 1].rss.toFixed(1)}      ${sl.toFixed(2).padStart(6)}        ${fd0}→${fd1}          ${ss[ss.length - 1].heap.toFixed(1)}        ${p99med.toFixed(1)}/${p99max.toFixed(1)}              ${ss[ss.length - 1].drops}  ${ss[0].external.toFixed(1)}/${ss[0].arrayBuffers.toFixed(1)}→${ss[ss.length - 1].external.toFixed(1)}/${ss[ss.length - 1].arrayBuffers.toFixed(1)}  ${ss[0].heapLive.toFixed(1)}→${ss[ss.length - 1].heapLive.toFixed(1)} (${majors}), slope ${majors >= 2 ? hsl.toFixed(2) : 'n/a (< 2 major GCs after warm-up)'} MiB/10min, RSS max ${rssMax.toFixed(1)}`);
      // The slope is judged on windows of ≥ 20 min only: in the first minutes of churn V8 is
      // still compiling (a heap-snapshot diff of a router 75 s → 195 s into a churn soak: all
      // +0.6 MiB was code, deopt data and feedback vectors, no data objects), so a 4-min window
      // measures JIT warm-up. Shorter runs bound the live heap's size instead (--max-heap-mib).
      const window = (ss[ss.length - 1].t - ss[0].t) / 60;
      const heapMax = Math.max(...ss.map((s) => s.heapLive));
      if (window < 20 && heapMax > o.maxHeapMib) fails.push(`h${h.index}: heap after major GC reached ${heapMax.toFixed(1)} MiB after warm-up (bound ${o.maxHeapMib} for runs under 20 min)`);
      if (window >= 20 && majors >= 2 && hsl > o.maxHeapSlope) fails.push(`h${h.index}: heap after major GC grows ${hsl.toFixed(2)} MiB per 10 min after warm-up (bound ${o.maxHeapSlope})`);
      if (rssMax > o.maxRssMib) fails.push(`h${h.index}: RSS reached ${rssMax.toFixed(1)} MiB after warm-up (bound ${o.maxRssMib})`);
      if (o.maxRssSlope !== undefined && sl > o.maxRssSlope) fails.push(`h${h.index}: RSS grows ${sl.toFixed(2)} MiB per 10 min after warm-up (bound ${o.maxRssSlope})`);
      if (fd1 > fd0 + 2) fails.push(`h${h.index}: open fds grow from ${fd0} to ${fd1} after warm-up`);
      if (p99med > o.maxLoopMs) fails.push(`h${h.index}: event-loop delay p99 median ${p99med.toFixed(1)} ms over the bound ${o.maxLoopMs} ms`);
    }
    const png = path.join(o.out, 'soak.png');
    plot(samples, png, hosts.length, warm);
    const load = (await sh('cat', ['/proc/loadavg'])).stdout.trim().split(' ').slice(0, 3).join(' ');
    console.log(`soak: ${durS} s (warm-up ${warm.toFixed(0)} s), load average ${load}; ${churned} attach+detach cycles, ${churnRate} cycles/s over ${hosts.length}×${o.churnWorkers} workers (${churnErrors} errors), ${flaps} flaps, iperf3 runs ${iperfRuns}, router nice ${o.routerNice}`);
    console.log(rows.join('\n'));
    console.log(`soak: ${path.join(o.out, 'soak.csv')}, plot ${png}`);
    for (const f of fails) console.log(`BOUND: ${f}`);
    return fails.length ? 1 : 0;
  } finally {
    stopping = true;
    for (const c of procs) c.kill('SIGKILL');
    await bed.destroy();
  }
}

/**
 * Set the nice value of every thread of a router (Linux nice is per thread, so
 * `renice -p PID` alone would leave the libuv pool and V8 threads at 0). Threads started
 * later inherit the value of the thread that creates them.
 */
async function renice(pid: number | undefined, nice: number): Promise<void> {
  if (!pid) throw new Error('router pid unknown: cannot renice');
  const tids = readdirSync(`/proc/${pid}/task`).filter((t) => /^\d+$/.test(t));
  await must('renice', ['-n', String(nice), '-p', ...tids]);
}

/** POST JSON to the router's unix socket API; returns the status (0 on error). */
async function apiPost(h: Host, p: string, body: string): Promise<number> {
  const http = await import('node:http');
  return new Promise((resolve) => {
    const req = http.request({ socketPath: path.join(h.stateDir, 'weaver.sock'), method: 'POST', path: p, timeout: 120_000, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

/** Connect to /events on the unix socket, read the snapshot (or give up after 5 s), leave. */
async function eventsClient(h: Host): Promise<void> {
  await new Promise<void>((resolve) => {
    const ws = new WebSocket(`ws+unix://${path.join(h.stateDir, 'weaver.sock')}:/events`);
    const t = setTimeout(() => ws.terminate(), 5000);
    ws.once('message', () => ws.close());
    ws.once('error', () => undefined);
    ws.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * Three panels (RSS, fds, event-loop delay p99) per host over time, with gnuplot (argv
 * only; the data goes through a wide whitespace-separated file next to the PNG).
 */
function plot(samples: Sample[], png: string, hosts: number, warm: number): void {
  const dat = png.replace(/\.png$/, '-plot.dat');
  const lines: string[] = [];
  // Samples of one round have slightly different t: group rounds by index instead.
  const rounds: Sample[][] = [];
  for (let i = 0; i + hosts <= samples.length; i += hosts) rounds.push(samples.slice(i, i + hosts));
  for (const r of rounds) lines.push([(r[0].t / 60).toFixed(3), ...r.flatMap((s) => [s.rss.toFixed(2), String(s.fds), Number.isNaN(s.p99) ? 'NaN' : s.p99.toFixed(2)])].join(' '));
  writeFileSync(dat, lines.join('\n') + '\n');
  const per = (k: number): string => Array.from({ length: hosts }, (_, i) => `'${dat}' using 1:${2 + i * 3 + k} with lines lw 2 title 'h${i + 1}'`).join(', ');
  const script = [
    `set terminal pngcairo size 1000,900 font 'sans,10'`,
    `set output '${png}'`,
    `set key top left`,
    `set grid`,
    `set arrow from ${(warm / 60).toFixed(2)}, graph 0 to ${(warm / 60).toFixed(2)}, graph 1 nohead dt 2`,
    `set multiplot layout 3,1 title 'tsweave soak: per-router RSS, open fds, event-loop delay p99 (dashed: end of warm-up)'`,
    `set ylabel 'RSS MiB'`,
    `plot ${per(0)}`,
    `set ylabel 'open fds'`,
    `plot ${per(1)}`,
    `set ylabel 'loop delay p99 ms'`,
    `set xlabel 'minutes'`,
    `plot ${per(2)}`,
    `unset multiplot`,
  ].join('\n');
  execFileSync('gnuplot', [], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
}

main().then((c) => process.exit(c), (err: Error) => {
  console.error(`soak: ${err.message.split('\n')[0]}`);
  process.exit(1);
});
