/**
 * npm run demo: two hosts (network namespaces) on an underlay switch, a tsweave
 * router on each, one container (namespace) per host attached to the weave network.
 * Pings across, runs iperf3 for 5 s, prints `weave status` and the Mbit/s, and tears
 * everything down (also on failure or Ctrl-C).
 */
import { Testbed, canRunE2E, until, sleep } from './e2e/lib/testbed.js';

async function main(): Promise<void> {
  const why = canRunE2E();
  if (why) throw new Error(`the demo ${why} (run it as root on Linux)`);
  const bed = new Testbed('demo');
  const cleanup = (): void => {
    void bed.destroy().then(() => process.exit(130));
  };
  // Ctrl-C, a closed terminal or pipe (`npm run demo | head`): still tear everything down.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGPIPE'] as const) process.once(sig, cleanup);
  process.stdout.on('error', () => undefined);
  try {
    console.log('# two hosts on an underlay switch (192.168.99.1, 192.168.99.2)');
    const [h1, h2] = await bed.up(2);
    console.log(`$ weave launch                 (h1) -> ${(await h1.launch(['--no-proxy'])).trim()}`);
    console.log(`$ weave launch 192.168.99.1    (h2) -> ${(await h2.launch(['--no-proxy', h1.ip])).trim()}`);
    const c1 = await h1.container('c1', []);
    const c2 = await h2.container('c2', []);
    console.log(`$ weave attach c1 (h1) -> ${c1.ips.join(' ')}`);
    console.log(`$ weave attach c2 (h2) -> ${c2.ips.join(' ')}`);
    await until('the connection to be established', async () => (await h1.mustWeave(['status', 'connections'])).includes('established'), 30_000);
    console.log('\n$ weave status   (h1)');
    console.log(await h1.mustWeave(['status']));
    console.log('$ weave status connections   (h1)');
    console.log(await h1.mustWeave(['status', 'connections']));
    console.log(`$ ping -c 3 ${c2.ips[0]}   (from c1 on h1 to c2 on h2)`);
    const ok = await c1.ping(c2.ips[0], { tries: 10 });
    const p = await c1.exec(['ping', '-c', '3', '-i', '0.2', c2.ips[0]]);
    console.log(p.stdout);
    if (!ok || p.code !== 0) throw new Error('c1 could not ping c2');
    bed.background(['ip', 'netns', 'exec', c2.ns, 'iperf3', '-s', '-1']);
    await sleep(500);
    console.log(`$ iperf3 -c ${c2.ips[0]} -t 5   (c1 -> c2)`);
    const r = await c1.exec(['iperf3', '-c', c2.ips[0], '-t', '5', '-J'], 30_000);
    if (r.code !== 0) throw new Error(`iperf3 failed: ${r.stderr.trim()}`);
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
    const path = /established (\w+)/.exec(await h1.mustWeave(['status', 'connections']))?.[1] ?? '?';
    console.log(`container to container over tsweave (${path}): ${(j.end.sum_received.bits_per_second / 1e6).toFixed(0)} Mbit/s\n`);
  } finally {
    await bed.destroy();
    console.log('# torn down: namespaces, routers and links removed');
  }
}

main().catch((err: Error) => {
  console.error(`demo: ${err.message}`);
  process.exit(1);
});
