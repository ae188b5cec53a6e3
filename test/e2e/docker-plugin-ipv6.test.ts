/**
 * Docker network plugin containers on the IPv6 overlay (issue #21): two hosts, each
 * with its own dockerd finding its router's plugin socket (as in docker-plugin.test.ts),
 * routers launched with --ipalloc-range6. `docker run --net=weave` containers get the
 * IPv6 address derived from their IPv4 one (the plugin answers CreateEndpoint with
 * AddressIPv6; Docker adds it without DAD, the network `weave` needs no --ipv6),
 * ethwe0's only link-local is the overlay's fe80::a.b.c.d (the router replaces the kernel's
 * after Docker moves the interface in), `weave ps` lists both families, ping6 crosses
 * hosts (global and link-local), and a container of another
 * subnet (`--subnet` network, its own isolation group) gets no IPv6 through.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Testbed, canRunE2E, until, sh, type Host } from './lib/testbed.js';
import { startDockerd, dockerdAvailable, type Dockerd } from './docker/dockerd.js';
import { importBusyboxImage, busyboxStaticAvailable } from './docker/image.js';
import { derive6, linkLocal6Cidr, parseRange6 } from '../../ipam/ipv6.js';

const IMG = 'tsw-d6-bb:1';
const RANGE6 = 'fd00:79::/64';
const skip = canRunE2E() ?? dockerdAvailable() ?? busyboxStaticAvailable() ?? (fs.existsSync('/usr/bin/unshare') ? undefined : 'unshare (util-linux) not installed');

if (skip && process.env.CI === 'true') {
  test('docker plugin IPv6 e2e prerequisites', () => assert.fail(`cannot run the Docker plugin IPv6 e2e tests: ${skip}`));
}

describe('Docker network plugin containers get IPv6 with --ipalloc-range6', { skip, timeout: 600_000 }, () => {
  const bed = new Testbed('d6');
  let h1: Host, h2: Host;
  const daemons = new Map<Host, Dockerd>();
  const pluginDir = (h: Host): string => path.join(h.stateDir, 'plugins');
  const docker = (h: Host, args: string[], timeoutMs = 90_000) => sh('docker', ['-H', daemons.get(h)!.host, ...args], { timeoutMs });
  const mustDocker = async (h: Host, args: string[], timeoutMs = 90_000): Promise<string> => {
    const r = await docker(h, args, timeoutMs);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')} on ${h.nickname} failed: ${r.stderr.trim()}\n--- router log ---\n${h.logTail(15)}`);
    return r.stdout;
  };
  const r6 = parseRange6(RANGE6);
  /** The container's IPv4 address on a network and the IPv6 one derived from it. */
  const addrs = async (h: Host, name: string, net: string): Promise<{ v4: string; v6: string }> => {
    const v4 = (await mustDocker(h, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, name])).trim();
    assert.match(v4, /^\d+\.\d+\.\d+\.\d+$/, `${name} has no address on ${net}`);
    return { v4, v6: derive6(r6, v4) };
  };
  const ping6 = async (h: Host, from: string, to: string): Promise<boolean> => (await docker(h, ['exec', from, 'ping6', '-c', '2', '-W', '2', to])).code === 0;

  before(async () => {
    [h1, h2] = await bed.up(2);
    for (const h of [h1, h2]) {
      fs.mkdirSync(pluginDir(h), { recursive: true, mode: 0o700 });
      const d = await startDockerd({ name: `tsw-d6-${h.nickname}-${process.pid}`, netns: h.ns, pluginDir: pluginDir(h) });
      daemons.set(h, d);
      await importBusyboxImage({ dockerHost: d.host, tag: IMG, applets: ['sh', 'ping', 'ping6', 'ip', 'sleep'] });
    }
    for (const [h, peer] of [[h1, h2], [h2, h1]] as const) {
      await h.launch(['--no-proxy', '--ipalloc-range6', RANGE6, '--plugin-socket', path.join(pluginDir(h), 'weavemesh.sock'), peer.ip], { env: { DOCKER_HOST: daemons.get(h)!.host } });
    }
    await until('connection', async () => (await h1.mustWeave(['status', 'connections'])).includes('established'), 30_000);
    for (const h of [h1, h2]) {
      await until(`network weave on ${h.nickname}`, async () => (await docker(h, ['network', 'inspect', 'weave'])).code === 0, 90_000, 1000);
    }
  });
  after(async () => {
    for (const d of daemons.values()) await d.destroy().catch(() => undefined);
    await bed.destroy();
  });

  test('docker run --net=weave: ethwe0 has the derived IPv6 (no DAD), weave ps shows both, ping6 crosses hosts; another subnet gets nothing through', async () => {
    await mustDocker(h1, ['run', '-d', '--net=weave', '--name', 'c1', IMG, 'sleep', '900']);
    await mustDocker(h2, ['run', '-d', '--net=weave', '--name', 'c2', IMG, 'sleep', '900']);
    const a = await addrs(h1, 'c1', 'weave');
    const b = await addrs(h2, 'c2', 'weave');
    const out6 = await mustDocker(h1, ['exec', 'c1', 'ip', '-6', '-o', 'addr', 'show', 'dev', 'ethwe0']);
    assert.match(out6, new RegExp(`inet6 ${a.v6}/108 `), out6);
    // The derived address is usable at once (no DAD).
    const derivedLine = out6.split('\n').find((l) => l.includes(`inet6 ${a.v6}/`)) ?? '';
    assert.doesNotMatch(derivedLine, /tentative|dadfailed/, out6);
    // The router replaces the kernel's EUI-64 link-local (which isolation drops) with
    // the overlay's fe80::a.b.c.d shortly after Docker moves the interface in.
    const ll = (v4: string): string => linkLocal6Cidr(`${v4}/32`).replace(/\/64$/, '');
    for (const [h, c, x] of [[h1, 'c1', a], [h2, 'c2', b]] as const) {
      let lines = '';
      await until(`${c}'s link-local ${ll(x.v4)} only`, async () => {
        lines = await mustDocker(h, ['exec', c, 'ip', '-6', '-o', 'addr', 'show', 'dev', 'ethwe0', 'scope', 'link']);
        const got = [...lines.matchAll(/inet6 (fe80:\S+)/g)].map((m) => m[1]);
        return got.length === 1 && got[0] === `${ll(x.v4)}/64` && !/tentative|dadfailed/.test(lines);
      }, 20_000, 250).catch((err: Error) => assert.fail(`${err.message}: ${lines}\n${h.logTail(10)}`));
    }
    // Docker records it too (the network itself has no --ipv6).
    assert.equal((await mustDocker(h1, ['inspect', '-f', '{{(index .NetworkSettings.Networks "weave").GlobalIPv6Address}}', 'c1'])).trim(), a.v6);
    assert.match(await h1.mustWeave(['ps']), new RegExp(`^[0-9a-f]{12} ([0-9a-f]{2}:){5}[0-9a-f]{2} ${a.v4.replace(/\./g, '\\.')}/12 ${a.v6}/108$`, 'm'));
    let ok = false;
    for (let i = 0; i < 3 && !ok; i++) ok = await ping6(h1, 'c1', b.v6);
    assert.ok(ok, `c1 ${a.v6} cannot ping6 c2 ${b.v6}\n${await h1.diagnose()}\n${await h2.diagnose()}`);
    assert.ok(await ping6(h2, 'c2', a.v6), `c2 cannot ping6 c1 ${a.v6}`);
    // Link-local across hosts (scoped to ethwe0): only the overlay's link-local passes isolation.
    assert.ok(await ping6(h1, 'c1', `${ll(b.v4)}%ethwe0`), `c1 cannot ping6 c2's link-local ${ll(b.v4)}\n${h1.logTail(10)}`);
    assert.ok(await ping6(h2, 'c2', `${ll(a.v4)}%ethwe0`), `c2 cannot ping6 c1's link-local ${ll(a.v4)}`);
    // A --subnet network is its own isolation group: its IPv6 prefix gets nothing to c2.
    await mustDocker(h1, ['network', 'create', '-d', 'weavemesh', '--ipam-driver', 'weavemesh', '--subnet', '10.32.5.0/24', 'net5']);
    await mustDocker(h1, ['run', '-d', '--net=net5', '--name', 'x5', IMG, 'sleep', '900']);
    const x = await addrs(h1, 'x5', 'net5');
    assert.match(await mustDocker(h1, ['exec', 'x5', 'ip', '-6', '-o', 'addr', 'show', 'dev', 'ethwe0']), new RegExp(`inet6 ${x.v6}/120 `));
    // Docker gives a /120 an on-link route only: reach c2 through an explicit route, so only isolation can stop it.
    await docker(h1, ['exec', 'x5', 'ip', '-6', 'route', 'add', `${b.v6}/128`, 'dev', 'ethwe0']);
    assert.equal(await ping6(h1, 'x5', b.v6), false, 'net5 must not reach the weave network over IPv6');
  });
});
