/**
 * Sleeve (userspace data path) throughput and latency between two containers on two
 * hosts (network namespaces over a veth underlay, test/e2e/lib/testbed.ts).
 *
 * Per mode (plaintext, encrypted) it builds a fresh testbed, launches both routers,
 * prints the underlay's ping RTT for reference, checks that 64 MiB of random data
 * cross intact (SHA-256), and repeats RUNS times: ping RTT (20 pings, 50 ms apart), iperf3 TCP one stream
 * (DURATION s) and iperf3 UDP with 64-byte payloads at unlimited rate (delivered
 * packets per second = sent − lost), and the CPU time both routers used per GB moved during
 * the TCP run (steadier than throughput on a shared machine). It prints each run and the medians, and a final
 * JSON line with the medians, so before/after comparisons can be scripted. The kernel
 * fast datapath is turned off (WEAVE_NO_FASTDP=1): this measures the sleeve only.
 *
 * Usage (root; needs iperf3, ip, ping):
 *   npx tsc -p tsconfig.json && node dist/bench/sleeve-perf.js
 * Environment:
 *   RUNS=3            repetitions per mode
 *   MODES=plain,enc   which modes (enc uses WEAVE_PASSWORD=PW, default "sleeve bench secret": passwords need 12+ characters)
 *   MTU=1436          overlay MTU passed to `weave launch --mtu`
 *   DURATION=8        iperf3 TCP seconds (UDP runs 5 s)
 *   DIAG=1            after each UDP run print where packets were lost: TAP tx drops
 *                     on the sending host, UDP receive-buffer errors on both hosts
 *                     and in the receiving container (cumulative counts)
 *   PROF=/tmp/dir     write router CPU profiles there (--cpu-prof); summarise with a
 *                     .cpuprofile reader (self time per function)
 *   RSS_IDLE=S        print both routers' RSS before the runs, after them, and after S
 *                     more idle seconds (0 ≤ S ≤ 600; the idle collector needs ≥ 65 s)
 * The machine is shared: compare numbers only within one session, as medians.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Testbed, until, sleep, sh, type Container, type Host } from '../test/e2e/lib/testbed.js';

interface RunResult { rttMs: number; tcpMbit: number; tcpRetr: number; udpPps: number; udpLossPct: number; cpuMsPerGB: number }

const RUNS = Number(process.env.RUNS ?? 3);
const MODES = (process.env.MODES ?? 'plain,enc').split(',').filter(Boolean);
const MTU = process.env.MTU ?? '1436';
const DURATION = process.env.DURATION ?? '8';
const PROF = process.env.PROF;
const DIAG = process.env.DIAG === '1';
const RSS_IDLE = process.env.RSS_IDLE === undefined ? undefined : Number(process.env.RSS_IDLE);
if (RSS_IDLE !== undefined && !(Number.isInteger(RSS_IDLE) && RSS_IDLE >= 0 && RSS_IDLE <= 600)) {
  console.error('RSS_IDLE must be whole seconds, 0–600');
  process.exit(2);
}

/** Kernel counters that tell where datagrams were lost, per namespace. */
async function lossCounters(ns: string[]): Promise<string> {
  const parts: string[] = [];
  for (const n of ns) {
    const r = await sh('ip', ['netns', 'exec', n, 'nstat', '-asz', 'UdpRcvbufErrors', 'UdpInErrors', 'UdpSndbufErrors', 'IpOutDiscards'], { timeoutMs: 5000 });
    const vals = r.stdout.split('\n').filter((l) => /^(Udp|Ip)/.test(l)).map((l) => l.split(/\s+/).slice(0, 2).join('=')).join(' ');
    const tap = await sh('ip', ['-n', n, '-s', 'link', 'show', 'vethwe-tap'], { timeoutMs: 5000 });
    const tx = /TX:[^\n]*\n\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(tap.stdout);
    const rx = /RX:[^\n]*\n\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(tap.stdout);
    parts.push(`${n.replace(/^.*-/, '')}: ${vals}${tx ? ` tap-tx-dropped=${tx[4]}` : ''}${rx ? ` tap-rx-dropped=${rx[4]}` : ''}`);
  }
  return parts.join(' | ');
}

/**
 * CPU time (user + system, ms) used so far by the router processes in namespaces `ns`
 * (/proc/PID/stat utime + stime, USER_HZ = 100). On a shared machine CPU per byte moved is
 * a steadier figure than throughput, which follows whatever else is running.
 */
/**
 * Frames the flow caches carried in C against all frames, cumulative, in the order h1
 * egress, h2 ingress, h2 egress, h1 ingress (report: Router.FlowCache, Router.Traffic.sleeve).
 * A frame that misses goes through the router's JavaScript path.
 */
async function flowShare(h1: Host, h2: Host): Promise<Array<{ c: number; all: number }>> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const [r1, r2] = (await Promise.all([h1.report(), h2.report()])).map((r: any) => r.Router);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const side = (r: any, dir: 'Egress' | 'Ingress'): { c: number; all: number } => {
    const t = r?.Traffic?.sleeve ?? {};
    // Traffic.sleeve includes the flow caches' frames.
    return { c: Number(r?.FlowCache?.[dir]?.Frames ?? 0), all: Number((dir === 'Egress' ? t.FramesOut : t.FramesIn) ?? 0) };
  };
  return [side(r1, 'Egress'), side(r2, 'Ingress'), side(r2, 'Egress'), side(r1, 'Ingress')];
}

/** Pids of the router daemons (weaver) in these namespaces. */
async function weaverPids(ns: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of ns) {
    const r = await sh('ip', ['netns', 'pids', n], { timeoutMs: 5000 });
    for (const pid of r.stdout.split(/\s+/).filter(Boolean)) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('weaver')) out.push(pid);
      } catch {
        // the process is gone
      }
    }
  }
  return out;
}

async function routerCpuMs(ns: string[]): Promise<number> {
  let ticks = 0;
  for (const pid of await weaverPids(ns)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // the process is gone
    }
  }
  return ticks * 10;
}

/** Each router's RSS, "anon+file MiB", e.g. "30.1+50.2". */
async function routerRss(ns: string[]): Promise<string> {
  const kib = (st: string, k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? NaN);
  const out: string[] = [];
  for (const pid of await weaverPids(ns)) {
    try {
      const st = readFileSync(`/proc/${pid}/status`, 'utf8');
      out.push(`${(kib(st, 'RssAnon') / 1024).toFixed(1)}+${(kib(st, 'RssFile') / 1024).toFixed(1)}`);
    } catch {
      out.push('gone');
    }
  }
  return out.join(', ') + ' MiB (anon+file)';
}

function median(xs: number[]): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** iperf3 -J output, or undefined (printing why) when the run failed. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function parseIperf(stdout: string): any {
  try {
    const j = JSON.parse(stdout);
    if (j.error) {
      console.log(`  iperf3 error: ${j.error}`);
      return undefined;
    }
    return j.end?.sum_received || j.end?.sum ? j : undefined;
  } catch {
    console.log(`  iperf3 printed no JSON: ${stdout.slice(0, 200)}`);
    return undefined;
  }
}

/**
 * Data integrity through the overlay: 64 MiB of random bytes c1 → c2 over TCP (nc),
 * SHA-256 compared on both ends. Throughput numbers mean nothing if bytes change.
 */
async function verifyTransfer(bed: Testbed, c1: Container, c2: Container): Promise<void> {
  const file = join(bed.dir, 'random.bin');
  writeFileSync(file, randomBytes(64 << 20));
  const want = createHash('sha256').update(readFileSync(file)).digest('hex');
  const recv = c2.exec(['sh', '-c', 'nc -l 5001 | sha256sum'], 60_000);
  await sleep(300);
  const send = await c1.exec(['sh', '-c', `nc -N 10.32.0.2 5001 < ${file}`], 60_000);
  const got = (await recv).stdout.split(/\s/)[0];
  rmSync(file, { force: true });
  if (got !== want) throw new Error(`integrity check FAILED: sent sha256 ${want}, received ${got || '(nothing)'} (nc exit ${send.code}: ${send.stderr.trim()})`);
  console.log('integrity: 64 MiB c1 -> c2, SHA-256 matches');
}

async function measureMode(mode: string): Promise<RunResult[]> {
  const bed = new Testbed('sp');
  const results: RunResult[] = [];
  try {
    const [h1, h2] = await bed.up(2);
    // The sleeve is what is measured: keep the kernel fast datapath off.
    const env: NodeJS.ProcessEnv = { WEAVE_NO_FASTDP: '1' };
    if (PROF) env.WEAVER_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${PROF}`;
    if (mode === 'enc') env.WEAVE_PASSWORD = process.env.PW ?? 'sleeve bench secret';
    const args = ['--ipalloc-range', '', '--mtu', MTU, '--no-proxy'];
    await h1!.launch(args, { env });
    await h2!.launch([...args, h1!.ip], { env });
    const c1 = await h1!.container('c1', ['ip:10.32.0.1/12']);
    const c2 = await h2!.container('c2', ['ip:10.32.0.2/12']);
    await until('connection established', async () => (await h1!.mustWeave(['status', 'connections'])).includes('established'), 20_000);
    if (!(await c1.ping('10.32.0.2'))) throw new Error('c1 cannot ping c2');
    const u = await h1!.exec(['ping', '-c', '20', '-i', '0.05', '-q', h2!.ip], 20_000);
    console.log(`${mode} underlay rtt (h1 -> h2, no overlay): ${/= [\d.]+\/([\d.]+)\//.exec(u.stdout)?.[1] ?? '?'} ms`);
    await verifyTransfer(bed, c1, c2);
    bed.background(['ip', 'netns', 'exec', c2.ns, 'iperf3', '-s']);
    await sleep(500);
    if (RSS_IDLE !== undefined) console.log(`${mode} router RSS before the runs: ${await routerRss([h1!.ns, h2!.ns])}`);
    for (let i = 0; i < RUNS; i++) {
      const p = await c1.exec(['ping', '-c', '20', '-i', '0.05', '-q', '10.32.0.2'], 20_000);
      const m = /= [\d.]+\/([\d.]+)\//.exec(p.stdout);
      const rttMs = m ? Number(m[1]) : NaN;
      const cpu0 = await routerCpuMs([h1!.ns, h2!.ns]);
      const fc0 = await flowShare(h1!, h2!);
      const t = await c1.exec(['iperf3', '-c', '10.32.0.2', '-t', DURATION, '-J'], 60_000);
      const cpu1 = await routerCpuMs([h1!.ns, h2!.ns]);
      const fc1 = await flowShare(h1!, h2!);
      const jt = parseIperf(t.stdout);
      const gb = jt ? jt.end.sum_received.bytes / 1e9 : NaN;
      await sleep(300);
      const u = await c1.exec(['iperf3', '-c', '10.32.0.2', '-u', '-l', '64', '-b', '0', '-t', '5', '-J'], 60_000);
      const s = parseIperf(u.stdout)?.end?.sum;
      const r: RunResult = {
        rttMs,
        tcpMbit: jt ? Math.round(jt.end.sum_received.bits_per_second / 1e6) : NaN,
        tcpRetr: jt ? jt.end.sum_sent.retransmits : NaN,
        udpPps: s ? Math.round((s.packets - s.lost_packets) / s.seconds) : NaN,
        udpLossPct: s ? Number(s.lost_percent.toFixed(1)) : NaN,
        cpuMsPerGB: Math.round((cpu1 - cpu0) / gb),
      };
      console.log(`  during TCP: ${fc1.map((x, k) => `${['h1 egress (data)', 'h2 ingress (data)', 'h2 egress (acks)', 'h1 ingress (acks)'][k]} ${x.c - fc0[k]!.c} of ${x.all - fc0[k]!.all} frames in C`).join('; ')}`);
      if (DIAG) console.log(`  loss counters (cumulative): ${await lossCounters([h1!.ns, h2!.ns, c2.ns])}`);
      await sleep(300);
      results.push(r);
      console.log(`${mode} run ${i + 1}: rtt ${r.rttMs} ms, TCP ${r.tcpMbit} Mbit/s (retr ${r.tcpRetr}), UDP64 ${r.udpPps} pps delivered (loss ${r.udpLossPct}%), both routers ${r.cpuMsPerGB} CPU ms/GB during TCP`);
    }
    if (RSS_IDLE !== undefined) {
      console.log(`${mode} router RSS after the runs: ${await routerRss([h1!.ns, h2!.ns])}`);
      await sleep(RSS_IDLE * 1000);
      console.log(`${mode} router RSS after ${RSS_IDLE} s idle: ${await routerRss([h1!.ns, h2!.ns])}`);
    }
    console.log(`${mode} drops: h1 ${JSON.stringify((await h1!.report()).Router.Drops)} h2 ${JSON.stringify((await h2!.report()).Router.Drops)}`);
    // A clean stop lets --cpu-prof write its profile.
    await h1!.weave(['stop']);
    await h2!.weave(['stop']);
  } finally {
    await bed.destroy();
  }
  return results;
}

const summary: Record<string, { rttMs: number; tcpMbit: number; udpPps: number; cpuMsPerGB: number; runs: number }> = {};
for (const mode of MODES) {
  try {
    const rs = await measureMode(mode);
    summary[mode] = { rttMs: median(rs.map((r) => r.rttMs)), tcpMbit: median(rs.map((r) => r.tcpMbit)), udpPps: median(rs.map((r) => r.udpPps)), cpuMsPerGB: median(rs.map((r) => r.cpuMsPerGB)), runs: rs.length };
    console.log(`${mode} median of ${rs.length}: rtt ${summary[mode]!.rttMs} ms, TCP ${summary[mode]!.tcpMbit} Mbit/s, UDP64 ${summary[mode]!.udpPps} pps, routers ${summary[mode]!.cpuMsPerGB} CPU ms/GB`);
  } catch (e) {
    console.error(`${mode}: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
console.log(JSON.stringify(summary));
