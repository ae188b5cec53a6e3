/**
 * The Docker API proxy with real routers on two hosts: one private dockerd per host
 * namespace, `eval $(weave env)`, then the plain docker CLI. Containers get an
 * address from IPAM before their own process runs, and reach each other across hosts.
 * The routers run with --ipalloc-range6 (issue #21), so proxy containers are also
 * dual-stack: ethwe carries RANGE6 + their IPv4 address, `weave ps` lists both, ping6
 * crosses hosts and weaveDNS answers AAAA for them.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Testbed, canRunE2E, until, sh, type Host } from './lib/testbed.js';
import { startDockerd, dockerdAvailable, type Dockerd } from './docker/dockerd.js';
import { importBusyboxImage, busyboxStaticAvailable } from './docker/image.js';
import { defaultWeavewaitPath } from '../../proxy/proxy.js';
import { derive6, parseRange6 } from '../../ipam/ipv6.js';

const IMG = 'tsw-pm-bb:1';
const RANGE6 = 'fd00:78::/64';

function skipReason(): string | undefined {
  const r = canRunE2E() ?? dockerdAvailable() ?? busyboxStaticAvailable();
  if (r) return r;
  if (!fs.existsSync(defaultWeavewaitPath())) return 'weavewait is not built (npm run build)';
  return undefined;
}
const skip = skipReason();

describe('proxy across two hosts with real routers', { skip, timeout: 600_000 }, () => {
  const bed = new Testbed('x');
  let h1: Host, h2: Host;
  const daemons: Dockerd[] = [];
  const proxyHost = (h: Host): string => `unix://${path.join(h.stateDir, 'weave.sock')}`;

  /** `docker ARGS` on a host, through its proxy as `eval $(weave env)` would set it. */
  const docker = (h: Host, args: string[], timeoutMs = 60_000) => sh('docker', ['-H', proxyHost(h), ...args], { timeoutMs });

  before(async () => {
    [h1, h2] = await bed.up(2);
    for (const h of [h1, h2]) {
      const d = await startDockerd({ name: `tsw-pm-${h.nickname}-${process.pid}`, netns: h.ns });
      daemons.push(d);
      await h.launch(['--ipalloc-range6', RANGE6, h === h1 ? h2.ip : h1.ip], { env: { DOCKER_HOST: d.host } });
      await importBusyboxImage({ dockerHost: d.host, tag: IMG, applets: ['sh', 'ping', 'ping6', 'nslookup', 'ip', 'cat', 'sleep', 'hostname', 'ifconfig'] });
    }
    await until('connection', async () => (await h1.mustWeave(['status', 'connections'])).includes('established'), 30_000);
  });
  after(async () => {
    for (const d of daemons) await d.destroy().catch(() => undefined);
    await bed.destroy();
  });

  test('weave env and weave config print the proxy address', async () => {
    const env = (await h1.mustWeave(['env'])).trim();
    assert.equal(env, `export DOCKER_HOST=${proxyHost(h1)} ORIG_DOCKER_HOST=`);
    assert.equal((await h1.mustWeave(['config'])).trim(), `-H=${proxyHost(h1)}`);
    const restore = await h1.weave(['env', '--restore']);
    assert.equal(restore.code, 1);
    assert.match(restore.stderr, /Nothing to restore/);
  });

  test('docker run on h1 and h2: containers get IPAM addresses and ping across', async () => {
    const a = await docker(h1, ['run', '-d', '--name', 'ca', IMG, 'sleep', '600']);
    assert.equal(a.code, 0, a.stderr);
    const b = await docker(h2, ['run', '-d', '--name', 'cb', IMG, 'sleep', '600']);
    assert.equal(b.code, 0, b.stderr);
    const ipOf = async (h: Host, name: string): Promise<string> => {
      const r = await docker(h, ['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'ethwe']);
      const m = /inet (\d+\.\d+\.\d+\.\d+)\/12/.exec(r.stdout);
      assert.ok(m, `no ethwe address in ${name}: ${r.stdout} ${r.stderr}`);
      return m![1];
    };
    const ipA = await ipOf(h1, 'ca');
    const ipB = await ipOf(h2, 'cb');
    assert.notEqual(ipA, ipB);
    const p = await docker(h1, ['exec', 'ca', 'ping', '-c', '3', '-W', '2', ipB]);
    assert.equal(p.code, 0, p.stdout + p.stderr);
    // `weave ps` on h1 lists the container with its address (then its IPv6 one, below).
    assert.match(await h1.mustWeave(['ps']), new RegExp(`^[0-9a-f]{12} ([0-9a-f]{2}:){5}[0-9a-f]{2} ${ipA.replace(/\./g, '\\.')}/12 `, 'm'));
  });

  test('with --ipalloc-range6, proxy containers are dual-stack: derived IPv6 on ethwe, weave ps shows both, ping6 across hosts, AAAA answers', async () => {
    const r6 = parseRange6(RANGE6);
    const addrs = async (h: Host, name: string): Promise<{ v4: string; v6: string; out6: string }> => {
      const v4 = /inet (\d+\.\d+\.\d+\.\d+)\//.exec((await docker(h, ['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'ethwe'])).stdout)?.[1];
      assert.ok(v4, `${name} has no IPv4 on ethwe`);
      const out6 = (await docker(h, ['exec', name, 'ip', '-6', '-o', 'addr', 'show', 'ethwe'])).stdout;
      return { v4, v6: derive6(r6, v4), out6 };
    };
    const a = await addrs(h1, 'ca');
    const b = await addrs(h2, 'cb');
    // Global /108 (96 + the /12 of the IPv4 range) and the fe80::IPv4 link-local, usable at once (nodad).
    assert.match(a.out6, new RegExp(`inet6 ${a.v6}/108 `), a.out6);
    assert.match(a.out6, new RegExp(`inet6 ${a.v6.replace('fd00:78::', 'fe80::')}/64 `), a.out6);
    assert.doesNotMatch(a.out6, /tentative|dadfailed/);
    assert.match(b.out6, new RegExp(`inet6 ${b.v6}/108 `), b.out6);
    // weave ps: id, MAC, the IPv4 CIDR, then the IPv6 one.
    assert.match(await h1.mustWeave(['ps']), new RegExp(`^[0-9a-f]{12} ([0-9a-f]{2}:){5}[0-9a-f]{2} ${a.v4.replace(/\./g, '\\.')}/12 ${a.v6}/108$`, 'm'));
    assert.match(await h2.mustWeave(['ps']), new RegExp(` ${b.v4.replace(/\./g, '\\.')}/12 ${b.v6}/108$`, 'm'));
    // ping6 across hosts, both ways, global and link-local (ethwe's fe80::IPv4).
    const p = await docker(h1, ['exec', 'ca', 'ping6', '-c', '3', '-W', '2', b.v6], 30_000);
    assert.equal(p.code, 0, p.stdout + p.stderr);
    const q = await docker(h2, ['exec', 'cb', 'ping6', '-c', '3', '-W', '2', a.v6], 30_000);
    assert.equal(q.code, 0, q.stdout + q.stderr);
    const ll = await docker(h1, ['exec', 'ca', 'ping6', '-c', '2', '-W', '2', '-I', 'ethwe', b.v6.replace('fd00:78::', 'fe80::')], 30_000);
    assert.equal(ll.code, 0, ll.stdout + ll.stderr);
    // weaveDNS on h1 learned cb (started through h2's proxy) with both families: AAAA answered in the container, dns-lookup prints both.
    await until('cb in h1\'s DNS with IPv6', async () => (await h1.mustWeave(['dns-lookup', 'cb'])).includes(b.v6), 30_000, 500);
    assert.deepEqual((await h1.mustWeave(['dns-lookup', 'cb'])).trim().split('\n'), [b.v4, b.v6]);
    const ns = await docker(h1, ['exec', 'ca', 'nslookup', '-type=aaaa', 'cb.weave.local'], 30_000);
    assert.equal(ns.code, 0, ns.stdout + ns.stderr);
    assert.match(ns.stdout, new RegExp(`Address: ${b.v6}$`, 'm'), ns.stdout);
  });

  test('the very first command of a --rm container already reaches the other host', async () => {
    const ipB = /inet (\S+)\//.exec((await docker(h2, ['exec', 'cb', 'ip', '-4', '-o', 'addr', 'show', 'ethwe'])).stdout)![1];
    const r = await docker(h1, ['run', '--rm', IMG, 'ping', '-c', '1', '-W', '3', ipB]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  test('WEAVE_CIDR=net:10.32.2.0/24 and WEAVE_CIDR=none', async () => {
    const r = await docker(h1, ['run', '--rm', '-e', 'WEAVE_CIDR=net:10.32.2.0/24', IMG, 'ip', '-4', '-o', 'addr', 'show', 'ethwe']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /inet 10\.32\.2\.\d+\/24/);
    const n = await docker(h1, ['run', '--rm', '-e', 'WEAVE_CIDR=none', IMG, 'cat', '/proc/net/dev']);
    assert.equal(n.code, 0, n.stderr);
    assert.doesNotMatch(n.stdout, /ethwe/);
  });

  test('docker restart keeps the address; 10 --rm containers in a row free theirs', async () => {
    const before = (await docker(h1, ['exec', 'ca', 'ip', '-4', '-o', 'addr', 'show', 'ethwe'])).stdout.match(/inet (\S+)/)![1];
    assert.equal((await docker(h1, ['restart', '-t', '1', 'ca'])).code, 0);
    const after = (await docker(h1, ['exec', 'ca', 'ip', '-4', '-o', 'addr', 'show', 'ethwe'])).stdout.match(/inet (\S+)/)?.[1];
    assert.equal(after, before);
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const r = await docker(h1, ['run', '--rm', IMG, 'ip', '-4', '-o', 'addr', 'show', 'ethwe']);
      assert.equal(r.code, 0, r.stderr);
      seen.add(/inet (\S+)/.exec(r.stdout)![1]);
    }
    // Addresses are freed on removal, so the lowest free one comes back every time.
    await until('frees to be processed', async () => {
      const r = await docker(h1, ['run', '--rm', IMG, 'ip', '-4', '-o', 'addr', 'show', 'ethwe']);
      return seen.has(/inet (\S+)/.exec(r.stdout)![1]);
    }, 20_000, 500);
    assert.ok(seen.size <= 3, `addresses reused: ${[...seen].join(' ')}`);
  });

  test('with the Docker daemon down, the client gets a clear error and the proxy keeps running', async () => {
    await daemons[0].stop();
    try {
      const r = await docker(h1, ['ps']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Cannot connect to the Docker daemon at unix:\/\//);
      assert.equal((await h1.weave(['status'])).code, 0, 'router still answers');
    } finally {
      await daemons[0].start();
    }
    assert.equal((await docker(h1, ['ps'])).code, 0);
  });
});

void execFileSync;
