/**
 * npm run bench:cni — pod start latency through a CNI plugin: the time from the
 * runtime exec'ing the plugin with CNI_COMMAND=ADD to its exit with the pod's address
 * configured, over N pods (default 100) on one host namespace, for
 *   ours:  weave-net as `weave setup-cni` installs it: the native executable
 *          (cni/native/weave-net.c) forwarding to the router's POST /cni/exec
 *          (the tsweave router's IPAM, veth on `weave`)
 *   ref:   the stock bridge + host-local plugins (containernetworking-plugins)
 * measured in the same run, interleaved pod by pod so machine noise hits both alike.
 * Prints median and p99 for each and the ratios (goal: ours ≤ 1.5× ref).
 * Root only; everything lives in network namespaces it creates and deletes.
 */
import path from 'node:path';
import fs from 'node:fs';
import { Testbed, must, sh, type Host } from '../test/e2e/lib/testbed.js';
import os from 'node:os';
import { installCni } from '../cni/install.js';
import { callRouter } from '../cni/weave-net.js';

const N = Math.max(10, Math.min(1000, Number(process.env.PODS) || 100));
const REF_BIN = '/usr/lib/cni';

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

async function exec(h: Host, bin: string, env: Record<string, string>, conf: unknown): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await sh('nsenter', [`--net=/var/run/netns/${h.ns}`, bin], { env: { PATH: process.env.PATH, ...env }, input: JSON.stringify(conf), timeoutMs: 120_000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.code !== 0) throw new Error(`${path.basename(bin)} ${env.CNI_COMMAND} failed: ${r.stdout.trim() || r.stderr.trim()}`);
  return ms;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:cni needs root (network namespaces)');
  if (!fs.existsSync(`${REF_BIN}/bridge`)) throw new Error('bench:cni needs containernetworking-plugins (apt-get install containernetworking-plugins)');
  const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const loadBefore = load();
  const bed = new Testbed('cb');
  try {
    const [h] = await bed.up(1);
    await h.launch(['--ipalloc-range', '10.32.0.0/16', '--ipalloc-init', 'consensus=1']);
    const bin = path.join(bed.dir, 'bin');
    fs.mkdirSync(bin);
    await installCni({ confDir: bed.dir, binDir: bin, stateDir: h.stateDir, portmap: false });
    const ours = { cniVersion: '1.0.0', name: 'weave', type: 'weave-net', stateDir: h.stateDir };
    const ref = { cniVersion: '1.0.0', name: 'ref', type: 'bridge', bridge: 'cni-ref0', isGateway: true, ipam: { type: 'host-local', subnet: '10.88.0.0/16', dataDir: path.join(bed.dir, 'host-local') } };
    const t = { ours: [] as number[], ref: [] as number[] };
    const pods: string[] = [];
    // Pods [from, from + count), ours and ref interleaved pod by pod, timed into `into`.
    const podRound = async (from: number, count: number, into: typeof t): Promise<void> => {
    for (let i = from; i < from + count; i++) {
      for (const kind of ['ours', 'ref'] as const) {
        const ns = `${bed.prefix}${kind}${i}`;
        await must('ip', ['netns', 'add', ns]);
        bed.namespaces.push(ns);
        pods.push(ns);
        const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `${kind}${i}`, CNI_NETNS: `/var/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH: kind === 'ours' ? bin : REF_BIN };
        into[kind].push(await exec(h, kind === 'ours' ? path.join(bin, 'weave-net') : `${REF_BIN}/bridge`, env, kind === 'ours' ? ours : ref));
      }
    }
    };
    await podRound(0, N, t);
    // Spot check: the last pods really have their addresses.
    for (const kind of ['ours', 'ref']) {
      const out = await must('ip', ['-n', `${bed.prefix}${kind}${N - 1}`, '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      if (!/inet 10\./.test(out)) throw new Error(`${kind} pod ${N - 1} has no address: ${out}`);
    }
    const row = (k: 'ours' | 'ref') => ({ median: quantile(t[k], 0.5), p99: quantile(t[k], 0.99) });
    const o = row('ours');
    const r = row('ref');
    console.log(`CNI ADD latency over ${N} pods on one host (exec → exit, address configured); machine shared, numbers noisy`);
    console.log(`  weave-net (tsweave)      median ${o.median.toFixed(1)} ms  p99 ${o.p99.toFixed(1)} ms`);
    console.log(`  bridge+host-local (ref)  median ${r.median.toFixed(1)} ms  p99 ${r.p99.toFixed(1)} ms`);
    console.log(`  ratio ours/ref           median ${(o.median / r.median).toFixed(2)}x  p99 ${(o.p99 / r.p99).toFixed(2)}x  (goal <= 1.5x)`);
    console.log(`  load average before ${loadBefore}, after ${load()}`);
    // Where the router's ADD time goes: its per-step timings (cni/router-side.ts, GET /cni/timings).
    const { adds } = await callRouter(path.join(h.stateDir, 'weaver.sock'), 'GET', '/cni/timings') as { adds: Array<Array<[string, number]>> };
    const ourAdds = adds.slice(-N);
    const names = [...new Set(ourAdds.flatMap((a) => a.map(([s]) => s)))];
    console.log(`  router ADD breakdown over ${ourAdds.length} ADDs (median / p99 ms per step; the rest of the exec is the plugin, HTTP and fork/exec):`);
    for (const n of names) {
      const xs = ourAdds.map((a) => a.find(([s]) => s === n)?.[1] ?? 0);
      console.log(`    ${n.padEnd(42)} ${quantile(xs, 0.5).toFixed(2).padStart(7)} / ${quantile(xs, 0.99).toFixed(2).padStart(7)}`);
    }
    const totals = ourAdds.map((a) => a.reduce((sum, [, ms]) => sum + ms, 0));
    console.log(`    ${'total in the router'.padEnd(42)} ${quantile(totals, 0.5).toFixed(2).padStart(7)} / ${quantile(totals, 0.99).toFixed(2).padStart(7)}`);
    // Node.js start-up alone, for reading the ratio: what the native plugin no longer pays.
    const boot: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = process.hrtime.bigint();
      await sh(process.execPath, ['-e', '0']);
      boot.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    console.log(`  (node -e 0 start-up alone: median ${quantile(boot, 0.5).toFixed(1)} ms)`);
    // A node running kube-proxy (iptables-nft) has thousands of nft rules in the host
    // netns. Load 2,000 unrelated ones (a table of our own in the bench host's netns,
    // gone with it) and start N more pods of each kind: nft work per pod start must not
    // grow with rules that are not ours (bridge-filter.ts NO_INTERVAL_SETS).
    const KUBE = 2000;
    const kube = ['table ip cni7bench {', '  chain svc {', '    type filter hook prerouting priority dstnat; policy accept;'];
    for (let i = 0; i < KUBE; i++) kube.push(`    ip daddr 10.96.${i >> 8}.${i & 255} tcp dport ${30000 + (i % 2000)} counter accept comment "svc ${i}"`);
    kube.push('  }', '}', '');
    const loaded = await sh('nsenter', [`--net=/var/run/netns/${h.ns}`, 'nft', '-f', '-'], { input: kube.join('\n') });
    if (loaded.code !== 0) throw new Error(`cannot load the ${KUBE} unrelated nft rules: ${loaded.stderr.trim().split('\n')[0]}`);
    const tk = { ours: [] as number[], ref: [] as number[] };
    const loadK = load();
    await podRound(N, N, tk);
    const ok = { median: quantile(tk.ours, 0.5), p99: quantile(tk.ours, 0.99) };
    const rk = { median: quantile(tk.ref, 0.5), p99: quantile(tk.ref, 0.99) };
    console.log(`CNI ADD latency over ${N} more pods with ${KUBE} unrelated nft rules in the host netns (as kube-proxy leaves them)`);
    console.log(`  weave-net (tsweave)      median ${ok.median.toFixed(1)} ms  p99 ${ok.p99.toFixed(1)} ms`);
    console.log(`  bridge+host-local (ref)  median ${rk.median.toFixed(1)} ms  p99 ${rk.p99.toFixed(1)} ms`);
    console.log(`  ratio ours/ref           median ${(ok.median / rk.median).toFixed(2)}x  p99 ${(ok.p99 / rk.p99).toFixed(2)}x  (goal <= 1.5x)`);
    const nftStep = ((await callRouter(path.join(h.stateDir, 'weaver.sock'), 'GET', '/cni/timings') as { adds: Array<Array<[string, number]>> }).adds.slice(-N))
      .map((a) => a.filter(([s]) => s === 'nft port rules (in parallel)').reduce((sum, [, ms]) => sum + ms, 0));
    console.log(`  router 'nft port rules (in parallel)': median ${quantile(nftStep, 0.5).toFixed(2)} ms  p99 ${quantile(nftStep, 0.99).toFixed(2)} ms`);
    console.log(`  load average before ${loadK}, after ${load()}`);
  } finally {
    await bed.destroy();
  }
}

main().catch((err: Error) => {
  console.error(`bench:cni: ${err.message}`);
  process.exit(1);
});
