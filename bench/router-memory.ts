/**
 * The router's resident memory with 0, 100 and 10,000 learned MACs (issue: performance,
 * "cost"). One host namespace with a running router and one container; the container
 * sends broadcast frames from N distinct source MACs through a raw socket, the router
 * learns each from its TAP, and we read VmRSS of the daemon after a GC-settling pause.
 * Prints a small table. Root; everything stays in namespaces this script creates.
 *
 * usage: node --expose-gc dist/bench/router-memory.js
 * (RSS of a whole Node process moves with V8's heap sizing and GC timing, so the real
 * router's figures are coarse; the in-process MAC cache figure is exact.)
 */
import { readFileSync } from 'node:fs';
import { MacCache } from '../router/overlay/mac-cache.js';
import { Testbed, sleep, until, must, sh } from '../test/e2e/lib/testbed.js';

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** python3: send `count` ARP-like broadcast frames with distinct source MACs starting at `base`. */
function injector(count: number, base: number): string {
  return `
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("ethwe", 0))
for i in range(${count}):
    mac = (0x0a5800000000 + ${base} + i).to_bytes(6, "big")
    s.send(b"\\xff" * 6 + mac + struct.pack("!H", 0x88b5) + b"tsweave-mac-bench".ljust(46, b"\\0"))
`;
}

/** The MAC cache alone, in this process: heap bytes per learned MAC (needs --expose-gc). */
function macCacheHeap(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    console.log('(run with node --expose-gc for the in-process MAC cache figure)');
    return;
  }
  for (const n of [100, 10_000, 100_000]) {
    gc();
    const before = process.memoryUsage().heapUsed;
    const cache = new MacCache();
    for (let i = 0; i < n; i++) cache.learn(0x0a5800000000 + i, 1, i);
    gc();
    const after = process.memoryUsage().heapUsed;
    console.log(`MacCache with ${n.toLocaleString('en-US')} entries: ${((after - before) / n).toFixed(0)} heap bytes per MAC (size ${cache.size})`);
  }
}

async function main(): Promise<void> {
  macCacheHeap();
  const bed = new Testbed('mem');
  try {
    const [h1] = await bed.up(1);
    await h1.launch(['--no-proxy', '--ipalloc-range', '']);
    // A namespace bridged by hand (not `weave attach`): with no attached endpoint the
    // router applies no isolation policy, so frames from made-up source MACs are learned.
    const ns = `${bed.prefix}c1`;
    await must('ip', ['netns', 'add', ns]);
    bed.namespaces.push(ns);
    await must('ip', ['-n', h1.ns, 'link', 'add', 'vethmem', 'type', 'veth', 'peer', 'name', 'ethwe', 'netns', ns]);
    await must('ip', ['-n', h1.ns, 'link', 'set', 'vethmem', 'master', 'weave', 'up']);
    await must('ip', ['-n', ns, 'link', 'set', 'ethwe', 'up']);
    const c1 = { exec: (args: string[], t: number) => sh('ip', ['netns', 'exec', ns, ...args], { timeoutMs: t }) };
    const pid = h1.pid()!;
    const macs = async (): Promise<number> => (await h1.report()).Router.MACs as number;
    const rows: Array<[number, number]> = [];
    await sleep(2000);
    rows.push([await macs(), rssKiB(pid)]);
    let sent = 0;
    for (const target of [100, 10_000]) {
      const n = target - sent;
      const r = await c1.exec(['python3', '-c', injector(n, sent)], 120_000);
      if (r.code !== 0) throw new Error(`injector failed: ${r.stderr}`);
      sent = target;
      await until(`${target} MACs learned`, async () => (await macs()) >= target, 30_000, 500);
      await sleep(3000);
      rows.push([await macs(), rssKiB(pid)]);
    }
    console.log('| learned MACs | router RSS MiB | Δ vs empty, bytes per MAC |');
    console.log('|---|---|---|');
    for (const [n, kib] of rows) {
      const per = n > rows[0][0] ? (((kib - rows[0][1]) * 1024) / (n - rows[0][0])).toFixed(0) : '–';
      console.log(`| ${n.toLocaleString('en-US')} | ${(kib / 1024).toFixed(1)} | ${per} |`);
    }
  } finally {
    await bed.destroy();
  }
}

main().catch((err: Error) => {
  console.error(`router-memory: ${err.message}`);
  process.exit(1);
});
