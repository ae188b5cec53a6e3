/**
 * npm run bench:cni-pods (also the second part of npm run bench:cni) — pod-to-pod
 * traffic across hosts through podman pods (weave-net CNI plugin) next to `weave
 * attach`ed containers on the same two hosts, in the same run (issue #15: "the same
 * figures as attached containers, within noise").
 *
 * Two host namespaces with routers (sleeve by default; FASTDP=1 for the kernel path),
 * on each a podman 4.3 pod (CNI backend, our plugin) and an attached netns container.
 * Per round, pods and attached alternate (the order flips every round): iperf3 TCP-1
 * for DURATION s (default 10) and PING_COUNT (default 200) pings every 0.01 s, from
 * host 1's endpoint to host 2's. The same iperf3/ping binaries run for both kinds,
 * entered into the endpoint's netns with nsenter, so only the network path differs.
 * Prints per kind the median over ROUNDS (default 3) rounds of Mbit/s, ping avg and
 * p99 (ms), the ratio pods/attached, and the round-to-round spread ((max-min)/median)
 * as the noise band: a ratio within 1 ± the larger spread is "within noise".
 * Root only; everything lives in namespaces it creates and removes (also on failure).
 */
import path from 'node:path';
import os from 'node:os';
import { Testbed, canRunE2E, sh, sleep, until, type Host } from '../test/e2e/lib/testbed.js';
import { Podman, podmanMissing } from '../test/e2e/lib/podman.js';

const ROUNDS = Math.max(1, Math.min(10, Number(process.env.ROUNDS) || 3));
const DURATION = Math.max(2, Math.min(60, Number(process.env.DURATION) || 10));
const PING_COUNT = Math.max(20, Math.min(2000, Number(process.env.PING_COUNT) || 200));
const FASTDP = process.env.FASTDP === '1';
const IMAGE = 'localhost/tsw-busybox';

/** One endpoint: the netns path to enter and its overlay IPv4 address. */
interface End { netns: string; ip: string }
type Kind = 'pods' | 'attached';
interface Sample { mbps?: number; avg?: number; p99?: number; lost: number }

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

function inNs(netns: string, args: string[], timeoutMs: number): ReturnType<typeof sh> {
  return sh('nsenter', [`--net=${netns}`, ...args], { timeoutMs });
}

/** iperf3 TCP-1 from `from` to `to`; Mbit/s received, or undefined on failure. */
async function iperf(bed: Testbed, from: End, to: End): Promise<number | undefined> {
  bed.background(['nsenter', `--net=${to.netns}`, 'iperf3', '-s', '-1']);
  await sleep(500);
  const r = await inNs(from.netns, ['iperf3', '-c', to.ip, '-t', String(DURATION + 1), '-O', '1', '-J', '--connect-timeout', '3000'], (DURATION + 30) * 1000);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;
}

/** PING_COUNT pings 0.01 s apart; average and p99 RTT (ms) of the replies, and how many were lost. */
async function ping(from: End, to: End): Promise<Pick<Sample, 'avg' | 'p99' | 'lost'>> {
  const r = await inNs(from.netns, ['ping', '-c', String(PING_COUNT), '-i', '0.01', '-W', '1', to.ip], 120_000);
  const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (rtts.length === 0) return { lost: PING_COUNT };
  return { avg: rtts.reduce((a, b) => a + b, 0) / rtts.length, p99: quantile(rtts, 0.99), lost: PING_COUNT - rtts.length };
}

async function addrOf(netns: string, dev: string): Promise<string> {
  const out = (await inNs(netns, ['ip', '-4', '-o', 'addr', 'show', 'dev', dev], 30_000)).stdout;
  const m = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out);
  if (!m) throw new Error(`no IPv4 address on ${dev} in ${netns}: ${out.trim() || 'none'}`);
  return m[1]!;
}

/** A podman pod on `h` through the weave-net plugin: its netns path (SandboxKey) and address. */
async function pod(pm: Podman, name: string): Promise<End> {
  await pm.must(['run', '-d', '--name', name, '--network', 'weave', IMAGE, 'sleep', '3600']);
  const netns = (await pm.must(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', name])).trim();
  if (!netns.startsWith('/run/netns/')) throw new Error(`pod ${name}: unexpected netns ${netns}`);
  return { netns, ip: await addrOf(netns, 'eth0') };
}

async function attached(h: Host, name: string): Promise<End> {
  const c = await h.container(name, []);
  const netns = `/var/run/netns/${c.ns}`;
  return { netns, ip: await addrOf(netns, 'ethwe') };
}

const med = (xs: Array<number | undefined>): number | undefined => {
  const v = xs.filter((x): x is number => x !== undefined);
  return v.length ? quantile(v, 0.5) : undefined;
};
const spread = (xs: Array<number | undefined>): number | undefined => {
  const v = xs.filter((x): x is number => x !== undefined);
  const m = med(v);
  return v.length > 1 && m ? (Math.max(...v) - Math.min(...v)) / m : undefined;
};
const fmt = (x: number | undefined, d = 2): string => (x === undefined ? 'n/a' : x.toFixed(d));

async function main(): Promise<void> {
  const why = canRunE2E() ?? podmanMissing();
  if (why) throw new Error(why);
  const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const bed = new Testbed('cp');
  const pms: Podman[] = [];
  const cleanup = async (): Promise<void> => {
    for (const pm of pms) await pm.cleanup().catch(() => undefined);
    await bed.destroy();
  };
  const stop = (): void => {
    void cleanup().then(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const [h1, h2] = await bed.up(2);
    const launch = ['--ipalloc-range', '10.32.0.0/16', ...(FASTDP ? [] : ['--no-fastdp'])];
    await h1!.launch(launch);
    await h2!.launch([...launch, h1!.ip]);
    for (const [i, h] of [h1!, h2!].entries()) {
      const pm = new Podman(path.join(bed.dir, `pm${i + 1}`), h.ns);
      pms.push(pm);
      await h.mustWeave(['setup-cni', '--conf-dir', pm.confDir, '--bin-dir', pm.binDir, '--no-portmap']);
      await pm.importBusybox(IMAGE);
    }
    const ends: Record<Kind, [End, End]> = {
      pods: [await pod(pms[0]!, 'p1'), await pod(pms[1]!, 'p2')],
      attached: [await attached(h1!, 'a1'), await attached(h2!, 'a2')],
    };
    // Warm up: both paths answer (MAC caches learnt, connection established) before timing.
    for (const k of ['pods', 'attached'] as const) {
      const [a, b] = ends[k];
      await until(`${k}: ${a.ip} (host 1) to reach ${b.ip} (host 2)`, async () => (await inNs(a.netns, ['ping', '-c', '1', '-W', '1', b.ip], 10_000)).code === 0, 60_000, 500);
      await inNs(a.netns, ['ping', '-c', '20', '-i', '0.05', '-W', '1', b.ip], 30_000);
    }
    const loadBefore = load();
    const samples: Record<Kind, Sample[]> = { pods: [], attached: [] };
    for (let r = 0; r < ROUNDS; r++) {
      const order: Kind[] = r % 2 === 0 ? ['pods', 'attached'] : ['attached', 'pods'];
      for (const k of order) {
        const [a, b] = ends[k];
        const mbps = await iperf(bed, a, b);
        samples[k].push({ mbps, ...(await ping(a, b)) });
      }
      console.error(`round ${r + 1}/${ROUNDS} done (load ${load()})`);
    }
    const path_ = FASTDP ? 'fastdp (kernel VXLAN)' : 'sleeve';
    console.log(`Pod-to-pod across 2 hosts (${path_}): podman pods (weave-net CNI) vs weave-attached containers, ${ROUNDS} interleaved rounds`);
    console.log(`  per round: iperf3 TCP-1 ${DURATION} s, ${PING_COUNT} pings every 0.01 s; figures are medians over rounds; spread = (max-min)/median over rounds`);
    console.log(`  ${'kind'.padEnd(10)} ${'TCP-1 Mbit/s'.padStart(13)} ${'spread'.padStart(7)} ${'ping avg ms'.padStart(12)} ${'spread'.padStart(7)} ${'ping p99 ms'.padStart(12)} ${'spread'.padStart(7)}  lost`);
    for (const k of ['pods', 'attached'] as const) {
      const s = samples[k];
      const col = (f: keyof Sample): Array<number | undefined> => s.map((x) => x[f]);
      console.log(`  ${k.padEnd(10)} ${fmt(med(col('mbps')), 1).padStart(13)} ${fmt(spread(col('mbps'))).padStart(7)} ${fmt(med(col('avg')), 3).padStart(12)} ${fmt(spread(col('avg'))).padStart(7)} ${fmt(med(col('p99')), 3).padStart(12)} ${fmt(spread(col('p99'))).padStart(7)}  ${s.map((x) => x.lost).join('/')}`);
    }
    for (const f of ['mbps', 'avg', 'p99'] as const) {
      const p = med(samples.pods.map((x) => x[f]));
      const a = med(samples.attached.map((x) => x[f]));
      const band = Math.max(spread(samples.pods.map((x) => x[f])) ?? 0, spread(samples.attached.map((x) => x[f])) ?? 0);
      const ratio = p !== undefined && a ? p / a : undefined;
      const within = ratio !== undefined && Math.abs(ratio - 1) <= band ? 'within noise' : 'outside the noise band';
      console.log(`  ratio pods/attached ${({ mbps: 'TCP-1', avg: 'ping avg', p99: 'ping p99' })[f].padEnd(9)} ${fmt(ratio)}x  (noise band ±${fmt(band)}: ${within})`);
    }
    console.log(`  load average before ${loadBefore}, after ${load()}`);
  } finally {
    await cleanup();
  }
}

main().catch((err: Error) => {
  console.error(`bench:cni-pods: ${err.message}`);
  process.exit(1);
});
