/**
 * npm run bench:ipv6 — the IPv6 row of the bench (issue #21): TCP-1 (iperf3, one
 * stream) and ping between two containers, over the IPv4 underlay and over the IPv6
 * underlay, for the overlay's IPv4 and IPv6 (the routers run with --ipalloc-range6
 * fd10:32::/64, so `weave attach` gives each container the IPv6 address derived from its
 * IPv4 one, fd10:32::a20:90N, which the isolation policy carries), per data path
 * (plaintext sleeve, encrypted sleeve, fast datapath), all in one run on one pair of
 * hosts, with the ratios to the IPv4 figures of the same run (goal: within 5 %).
 *
 * Its own namespaces (test/e2e/lib/testbed.ts, prefix tswb6…): two hosts with both an
 * IPv4 and an IPv6 underlay address on one switch; the routers are launched once with
 * the peer's IPv4 address and once with its IPv6 address. Everything is removed at the
 * end, also on failure or Ctrl-C.
 *
 * An overlay-IPv6 row prints "n/a" with the reason only if ping6 does not get through
 * (then it is a defect: the derived addresses must cross the overlay).
 *
 * Environment: DURATION (iperf3 seconds, default 5), PING_COUNT (default 200, at
 * 0.01 s), VARIANTS (comma list of none,encrypted,fastdp; default all), RESULTS_DIR
 * (JSON written there, default /tmp/tsweave-bench).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { derive6, parseRange6 } from '../ipam/ipv6.js';
import { Testbed, canRunE2E, sleep, until, type Container, type Host } from '../test/e2e/lib/testbed.js';

const DURATION = Number(process.env.DURATION ?? 5);
const PING_COUNT = Number(process.env.PING_COUNT ?? 200);
const VARIANTS = (process.env.VARIANTS ?? 'none,encrypted,fastdp').split(',').filter(Boolean);
const RESULTS_DIR = process.env.RESULTS_DIR ?? '/tmp/tsweave-bench';
const RANGE6 = 'fd10:32::/64';
const IPALLOC = ['--ipalloc-range', '', '--ipalloc-range6', RANGE6, '--no-proxy', '--no-dns', '--no-plugin'];
const PASSWORD = 'bench password not secret';

interface Sample {
  variant: string;
  underlay: 4 | 6;
  overlay: 4 | 6;
  tcpMbps?: number;
  pingAvgMs?: number;
  pingP50Ms?: number;
  pingP99Ms?: number;
  pingLoss?: number;
  na?: string;
  load: number;
}

function flags(variant: string): { args: string[]; env: NodeJS.ProcessEnv; path: string } {
  switch (variant) {
    case 'none': return { args: ['--no-fastdp'], env: {}, path: 'sleeve' };
    case 'encrypted': return { args: ['--no-fastdp'], env: { WEAVE_PASSWORD: PASSWORD }, path: 'sleeve' };
    case 'fastdp': return { args: [], env: {}, path: 'fastdp' };
    default: throw new Error(`unknown variant ${variant} (want none, encrypted, fastdp)`);
  }
}

async function established(h: Host, path: string): Promise<boolean> {
  const r = await h.report();
  return (r.Router.Connections as Array<{ State: string; Path?: string }>).some((c) => c.State === 'established' && c.Path === path);
}

async function ping(c: Container, to: string): Promise<Pick<Sample, 'pingAvgMs' | 'pingP50Ms' | 'pingP99Ms' | 'pingLoss'>> {
  const r = await c.exec(['ping', '-n', '-c', String(PING_COUNT), '-i', '0.01', '-W', '1', to], 120_000);
  const rtts: number[] = [];
  for (const m of r.stdout.matchAll(/time=([\d.]+) ms/g)) rtts.push(Number(m[1]));
  rtts.sort((a, b) => a - b);
  const avg = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  const loss = /([\d.]+)% packet loss/.exec(r.stdout);
  const q = (p: number): number | undefined => (rtts.length ? rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))] : undefined);
  return { pingAvgMs: avg ? Number(avg[1]) : undefined, pingP50Ms: q(0.5), pingP99Ms: q(0.99), pingLoss: loss ? Number(loss[1]) : 100 };
}

async function iperf(bed: Testbed, from: Container, to: Container, addr: string): Promise<number | undefined> {
  bed.background(['ip', 'netns', 'exec', to.ns, 'iperf3', '-s', '-1']);
  await sleep(500);
  const r = await from.exec(['iperf3', '-c', addr, '-t', String(DURATION + 1), '-O', '1', '-J', '--connect-timeout', '3000'], (DURATION + 30) * 1000);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;
}

/**
 * The container's overlay IPv6 address: the one `weave attach` derived from its IPv4
 * address under RANGE6 (ipam/ipv6.ts), checked on its ethwe.
 * @throws Error when ethwe does not carry it (the router did not give IPv6)
 */
async function v6Of(c: Container): Promise<string> {
  const a = derive6(parseRange6(RANGE6), c.ips[0]!);
  const out = (await c.exec(['ip', '-o', '-6', 'addr', 'show', 'dev', 'ethwe'])).stdout;
  if (!out.includes(` ${a}/`)) throw new Error(`${c.name}: ethwe has no derived IPv6 address ${a}: ${out.trim().replace(/\s+/g, ' ') || 'none'}`);
  return a;
}

const fmt = (x: number | undefined, d = 1): string => (x === undefined ? 'n/a' : x.toFixed(d));

async function main(): Promise<void> {
  const why = canRunE2E();
  if (why) throw new Error(`bench:ipv6 ${why}`);
  const bed = new Testbed('b6');
  const stop = (): void => {
    void bed.destroy().then(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const samples: Sample[] = [];
  try {
    const [h1, h2] = await bed.up(2, { underlay: 'dual' });
    let c1: Container | undefined;
    let c2: Container | undefined;
    let v6: [string, string] | undefined;
    for (const variant of VARIANTS) {
      const f = flags(variant);
      for (const underlay of [4, 6] as const) {
        for (const h of [h1!, h2!]) if ((await h.weave(['status'])).code === 0) await h.mustWeave(['stop']);
        await h1!.launch([...IPALLOC, ...f.args], { env: f.env });
        await h2!.launch([...IPALLOC, ...f.args, underlay === 6 ? `[${h1!.ip6!}]:6783` : h1!.ip4!], { env: f.env });
        await until(`h2 established on ${f.path} over IPv${underlay}`, () => established(h2!, f.path), 90_000, 300);
        if (c1 === undefined) {
          c1 = await h1!.container('c1', ['ip:10.32.9.1/24']);
          c2 = await h2!.container('c2', ['ip:10.32.9.2/24']);
          v6 = [await v6Of(c1), await v6Of(c2!)];
        }
        await c1.mustPing(c2!.ips[0]!, { tries: 20 }, `${variant} over IPv${underlay}`);
        for (const overlay of [4, 6] as const) {
          const to = overlay === 4 ? c2!.ips[0]! : v6![1];
          const s: Sample = { variant, underlay, overlay, load: loadavg()[0]! };
          if (overlay === 6 && !(await c1.ping(to, { tries: 3 }))) {
            s.na = `ping6 ${c1.name} -> ${to} does not get through (a defect: derived addresses must cross the overlay)`;
          } else {
            Object.assign(s, await ping(c1, to));
            s.tcpMbps = await iperf(bed, c1, c2!, to);
          }
          samples.push(s);
          process.stderr.write(`${variant} underlay IPv${underlay} overlay IPv${overlay}: ${s.na ?? `${fmt(s.tcpMbps)} Mbit/s, ping avg ${fmt(s.pingAvgMs, 3)} ms`} (load ${s.load.toFixed(1)})\n`);
        }
      }
    }
  } finally {
    await bed.destroy();
  }
  report(samples);
}

function report(samples: Sample[]): void {
  const get = (v: string, u: number, o: number): Sample | undefined => samples.find((s) => s.variant === v && s.underlay === u && s.overlay === o);
  const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined || b === 0 ? 'n/a' : (a / b).toFixed(3));
  const lines: string[] = [];
  lines.push(`# tsweave IPv6 bench (${new Date().toISOString()}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}, DURATION ${DURATION} s, ${PING_COUNT} pings)`);
  lines.push('');
  lines.push('| path | underlay | overlay | TCP-1 Mbit/s | ping avg ms | p50 | p99 | loss % | load |');
  lines.push('|---|---|---|---|---|---|---|---|---|');
  for (const s of samples) {
    if (s.na) lines.push(`| ${s.variant} | IPv${s.underlay} | IPv${s.overlay} | n/a | n/a | | | | ${s.load.toFixed(1)} |`);
    else lines.push(`| ${s.variant} | IPv${s.underlay} | IPv${s.overlay} | ${fmt(s.tcpMbps)} | ${fmt(s.pingAvgMs, 3)} | ${fmt(s.pingP50Ms, 3)} | ${fmt(s.pingP99Ms, 3)} | ${fmt(s.pingLoss, 1)} | ${s.load.toFixed(1)} |`);
  }
  lines.push('');
  lines.push('Ratios to the IPv4 figures of this run (goal: TCP ≥ 0.95, ping ≤ 1.05):');
  lines.push('');
  lines.push('| path | compared | TCP-1 ratio | ping avg ratio |');
  lines.push('|---|---|---|---|');
  const variants = [...new Set(samples.map((s) => s.variant))];
  for (const v of variants) {
    const base = get(v, 4, 4);
    for (const [u, o, what] of [[6, 4, 'IPv6 underlay / IPv4 underlay (IPv4 overlay)'], [4, 6, 'IPv6 overlay / IPv4 overlay (IPv4 underlay)'], [6, 6, 'IPv6 overlay on IPv6 underlay / all-IPv4']] as const) {
      const s = get(v, u, o);
      lines.push(`| ${v} | ${what} | ${s?.na ? 'n/a' : ratio(s?.tcpMbps, base?.tcpMbps)} | ${s?.na ? 'n/a' : ratio(s?.pingAvgMs, base?.pingAvgMs)} |`);
    }
  }
  const na = samples.find((s) => s.na);
  if (na) lines.push('', `n/a: ${na.na}`);
  const text = lines.join('\n');
  process.stdout.write(text + '\n');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(path.join(RESULTS_DIR, `ipv6-${stamp}.json`), JSON.stringify({ duration: DURATION, pings: PING_COUNT, samples }, null, 1));
  writeFileSync(path.join(RESULTS_DIR, `ipv6-${stamp}.md`), text + '\n');
}

main().catch((err: Error) => {
  process.stderr.write(`bench:ipv6: ${err.message}\n`);
  process.exit(1);
});
