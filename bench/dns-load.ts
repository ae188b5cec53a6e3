/**
 * The data path's loss of throughput while weaveDNS is loaded (issue #14's benchmark,
 * second half; `npm run bench:dns` runs it after the dnsperf/dnsmasq table).
 *
 * Two hosts of the e2e testbed (test/e2e/lib/testbed.ts, namespaces prefixed tswdl…),
 * routers launched with DNS on. Per data path (PATHS, default "sleeve,fastdp"): iperf3
 * TCP, one stream, DURATION s, from container cli on h1 to srv on h2, first alone, then
 * while dnsperf (4 clients, 100 outstanding, no rate limit) in a third container on h1
 * asks h1's router's DNS server (169.254.53.53) for the local names srv/cli.weave.local
 * (answered from the router's table, nothing forwarded). Prints both rates, loaded/alone,
 * and what dnsperf got meanwhile (queries/s, average latency, lost queries).
 *
 * On the sleeve the router process carries every frame as well as every query; on the
 * fast datapath the kernel carries the frames and only CPU is shared. Everything runs on
 * one machine: the load average is printed next to each figure, and numbers are only
 * comparable within one run.
 *
 * Environment: DURATION (s, default 5), PATHS, RESULTS_DIR (JSON, default /tmp/tsweave-bench).
 * Needs root, iperf3, dnsperf. Exits 1 with a one-line reason on failure; namespaces are
 * removed at the end, also on failure or Ctrl-C.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { Testbed, canRunE2E, sleep, until, type Container, type Host } from '../test/e2e/lib/testbed.js';

const DURATION = Number(process.env.DURATION ?? 5);
const PATHS = (process.env.PATHS ?? 'sleeve,fastdp').split(',').filter(Boolean);
const RESULTS_DIR = process.env.RESULTS_DIR ?? '/tmp/tsweave-bench';
const DNS_SERVER = '169.254.53.53';

interface Row {
  path: string;
  aloneMbps?: number;
  loadedMbps?: number;
  loadAlone: number;
  loadLoaded: number;
  dnsQps?: number;
  dnsAvgMs?: number;
  dnsLostPct?: number;
}

const load1 = (): number => loadavg()[0]!;
const fmt = (x: number | undefined, d = 1): string => (x === undefined ? 'n/a' : x.toFixed(d));

async function established(h: Host, p: string): Promise<boolean> {
  const r = await h.report();
  return (r.Router.Connections as Array<{ State: string; Path?: string }>).some((c) => c.State === 'established' && c.Path === p);
}

/** iperf3 TCP-1 from → to (server started for one test); Mbit/s received, undefined on failure. */
async function iperf(bed: Testbed, from: Container, to: Container): Promise<number | undefined> {
  bed.background(['ip', 'netns', 'exec', to.ns, 'iperf3', '-s', '-1']);
  await sleep(500);
  const r = await from.exec(['iperf3', '-c', to.ips[0]!.split('/')[0]!, '-t', String(DURATION + 1), '-O', '1', '-J', '--connect-timeout', '3000'], (DURATION + 30) * 1000);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;
}

/** dnsperf summary: queries/s, average latency (ms), lost queries (%). */
function parseDnsperf(out: string): Pick<Row, 'dnsQps' | 'dnsAvgMs' | 'dnsLostPct'> {
  const num = (re: RegExp): number | undefined => {
    const m = re.exec(out);
    return m ? Number(m[1]) : undefined;
  };
  const avg = num(/Average Latency \(s\):\s+([\d.]+)/);
  return { dnsQps: num(/Queries per second:\s+([\d.]+)/), dnsAvgMs: avg === undefined ? undefined : avg * 1000, dnsLostPct: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/) };
}

async function main(): Promise<void> {
  const why = canRunE2E();
  if (why) throw new Error(why);
  const bed = new Testbed('dl');
  const stop = (): void => {
    void bed.destroy().then(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const rows: Row[] = [];
  try {
    const [h1, h2] = await bed.up(2);
    const queries = path.join(h1!.stateDir, 'names.q');
    writeFileSync(queries, 'srv.weave.local A\ncli.weave.local A\n');
    let cli: Container | undefined;
    let srv: Container | undefined;
    let asker: Container | undefined;
    for (const p of PATHS) {
      if (p !== 'sleeve' && p !== 'fastdp') throw new Error(`PATHS: unknown path ${p} (want sleeve, fastdp)`);
      const flags = ['--no-proxy', '--no-plugin', '--ipalloc-range', '', ...(p === 'sleeve' ? ['--no-fastdp'] : [])];
      for (const h of [h1!, h2!]) if ((await h.weave(['status'])).code === 0) await h.mustWeave(['stop']);
      await h1!.launch(flags);
      await h2!.launch([...flags, h1!.ip]);
      await until(`h2 established on the ${p}`, () => established(h2!, p), 90_000, 300);
      if (cli === undefined) {
        cli = await h1!.container('cli', ['-h', 'cli', 'ip:10.32.9.1/24']);
        srv = await h2!.container('srv', ['-h', 'srv', 'ip:10.32.9.2/24']);
        asker = await h1!.container('ask', ['ip:10.32.9.3/24']);
      }
      await cli.mustPing(srv!.ips[0]!.split('/')[0]!, { tries: 20 }, `${p}: cli -> srv`);
      await until('srv named on h1', async () => (await h1!.weave(['dns-lookup', 'srv'])).stdout.trim() === '10.32.9.2', 30_000, 300);
      const probe = await asker!.exec(['dnsperf', '-s', DNS_SERVER, '-d', queries, '-n', '1']);
      if (!/Queries completed:\s+2 /.test(probe.stdout)) throw new Error(`${p}: dnsperf from a container on h1 gets no answers from ${DNS_SERVER}: ${probe.stdout.split('\n').filter((l) => /Queries|Response/.test(l)).join('; ')}`);

      const row: Row = { path: p, loadAlone: load1(), loadLoaded: 0 };
      row.aloneMbps = await iperf(bed, cli, srv!);
      // dnsperf runs longer than iperf3 on both sides so the whole measured interval is loaded.
      const dns = asker!.exec(['dnsperf', '-s', DNS_SERVER, '-d', queries, '-l', String(DURATION + 4), '-c', '4', '-q', '100'], (DURATION + 60) * 1000);
      await sleep(1000);
      row.loadLoaded = load1();
      row.loadedMbps = await iperf(bed, cli, srv!);
      Object.assign(row, parseDnsperf((await dns).stdout));
      rows.push(row);
      process.stderr.write(`${p}: alone ${fmt(row.aloneMbps)} Mbit/s, with DNS load ${fmt(row.loadedMbps)} Mbit/s, dnsperf ${fmt(row.dnsQps, 0)} q/s\n`);
    }
  } finally {
    await bed.destroy();
  }
  report(rows);
}

function report(rows: Row[]): void {
  const lines: string[] = [];
  lines.push(`data path while the router's DNS server is loaded (iperf3 TCP-1 ${DURATION} s across two hosts; dnsperf 4 clients x 100 outstanding from a container on the sender's host, local names)`);
  lines.push(`${'path'.padEnd(8)} ${'alone Mbit/s'.padStart(13)} ${'DNS-loaded'.padStart(11)} ${'ratio'.padStart(6)} ${'DNS q/s'.padStart(9)} ${'avg ms'.padStart(7)} ${'lost %'.padStart(7)}  load alone/loaded`);
  for (const r of rows) {
    const ratio = r.aloneMbps && r.loadedMbps !== undefined ? (r.loadedMbps / r.aloneMbps).toFixed(2) : 'n/a';
    lines.push(`${r.path.padEnd(8)} ${fmt(r.aloneMbps).padStart(13)} ${fmt(r.loadedMbps).padStart(11)} ${ratio.padStart(6)} ${fmt(r.dnsQps, 0).padStart(9)} ${fmt(r.dnsAvgMs, 2).padStart(7)} ${fmt(r.dnsLostPct, 2).padStart(7)}  ${r.loadAlone.toFixed(1)} / ${r.loadLoaded.toFixed(1)}`);
  }
  lines.push('ratio = loaded / alone: 1.00 means DNS load costs the data path nothing');
  process.stdout.write(lines.join('\n') + '\n');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(path.join(RESULTS_DIR, `dns-load-${stamp}.json`), JSON.stringify({ duration: DURATION, rows }, null, 1));
}

main().catch((err: Error) => {
  process.stderr.write(`bench:dns data path: ${err.message.split('\n')[0]}\n`);
  process.exit(1);
});
