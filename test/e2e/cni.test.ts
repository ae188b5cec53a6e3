/**
 * The weave-net CNI plugin driven by a real CNI client: podman 4.3 with its CNI
 * backend, on two host namespaces with routers. Pods get tsweave addresses through
 * the plugin, reach each other across hosts, `podman rm` (DEL) frees addresses, a
 * conf subnet isolates, and pods survive a router restart. Edge cases the runtime
 * does not reach (DEL after the netns is gone, CHECK, router down) call the plugin by
 * hand exactly as the spec says: env + conf on stdin.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Testbed, canRunE2E, must, sh, until, type Host } from './lib/testbed.js';
import { Podman, podmanMissing } from './lib/podman.js';
import { installCni } from '../../cni/install.js';

const missing = canRunE2E() ?? podmanMissing();
// With CI=true a missing prerequisite fails the suite (a skip is not a pass).
const skip = process.env.CI === 'true' ? false : missing;

const IMAGE = 'localhost/tsw-busybox';
/** --ipalloc-range6: pods are dual-stack (issue #21), their IPv6 addresses derived from the IPv4 ones. */
const RANGE6 = 'fd00:78::/64';
const LAUNCH = ['--ipalloc-range', '10.32.0.0/24', '--ipalloc-default-subnet', '10.32.0.0/25', '--ipalloc-range6', RANGE6];

/** The derived IPv6 of an overlay IPv4 address (ipam/ipv6.ts): fd00:78::a20:X for 10.32.0.X. */
function v6Of(v4: string): string {
  const [a, b, c, d] = v4.split('.').map(Number);
  return `fd00:78::${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

/** Run a pod; returns its address on the weave interface (eth0). */
async function runPod(pm: Podman, name: string, network = 'weave'): Promise<string> {
  await pm.must(['run', '-d', '--name', name, '--network', network, '--cap-add', 'NET_RAW', IMAGE, 'sleep', '600']);
  const out = await pm.must(['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
  const m = /inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(out);
  assert.ok(m, `pod ${name} has no IPv4 address on eth0: ${out}`);
  return m[1];
}

async function podPing(pm: Podman, name: string, ip: string, tries = 10): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const r = await pm.run(['exec', name, 'ping', '-c', '1', '-W', '1', ip], 20_000);
    if (r.code === 0) return true;
  }
  return false;
}

/** What a failed cross-host ping after a restart needs explained: both routers, VXLAN FDBs and counters, the pod's neighbours. */
async function restartDiag(pm: Podman, pod: string): Promise<string> {
  const parts = [`${pod} neighbours: ${(await pm.run(['exec', pod, 'ip', 'neigh'], 20_000)).stdout.trim()}`];
  for (const h of [h1, h2]) {
    parts.push(await h.diagnose());
    parts.push(`vxlan fdb: ${(await h.exec(['bridge', 'fdb', 'show', 'dev', 'vxlan-6784'])).stdout.trim().split('\n').join(' | ')}`);
    parts.push(`vxlan link: ${(await h.exec(['ip', '-s', 'link', 'show', 'dev', 'vxlan-6784'])).stdout.trim().split('\n').join(' | ')}`);
    parts.push(`nft counters: ${(await h.exec(['nft', 'list', 'counters', 'table', 'bridge', 'tsweave'])).stdout.replace(/\s+/g, ' ')}`);
  }
  return parts.join('\n');
}

/** Call the installed plugin by hand, as a runtime would (inside the host's netns). */
async function plugin(h: Host, pm: Pick<Podman, 'binDir'>, env: Record<string, string>, conf: unknown, bin = 'weave-net'): Promise<{ code: number; out: any; err: string }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await sh('nsenter', [`--net=/var/run/netns/${h.ns}`, path.join(pm.binDir, bin)], {
    env: { PATH: process.env.PATH, ...env }, input: JSON.stringify(conf), timeoutMs: 120_000,
  });
  let out: unknown = r.stdout;
  try {
    out = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch { /* keep text */ }
  return { code: r.code, out, err: r.stderr };
}

let h1: Host, h2: Host;

describe('weave-net CNI plugin under podman', { skip, timeout: 900_000 }, () => {
  const bed = new Testbed('cn');
  let pm1: Podman, pm2: Podman;

  before(async () => {
    if (missing) throw new Error(`CNI e2e prerequisites missing: ${missing}`);
    [h1, h2] = await bed.up(2);
    await h1.launch([...LAUNCH, h2.ip]);
    await h2.launch([...LAUNCH, h1.ip]);
    pm1 = new Podman(path.join(bed.dir, 'pm1'), h1.ns);
    pm2 = new Podman(path.join(bed.dir, 'pm2'), h2.ns);
    // Both cniVersions podman may write: 0.4.0 on h1, 1.0.0 on h2.
    for (const [h, pm, v] of [[h1, pm1, '0.4.0'], [h2, pm2, '1.0.0']] as const) {
      await h.mustWeave(['setup-cni', '--conf-dir', pm.confDir, '--bin-dir', pm.binDir, '--no-portmap', '--cni-version', v]);
      await h.mustWeave(['setup-cni', '--conf-dir', pm.confDir, '--bin-dir', pm.binDir, '--no-portmap', '--cni-version', v, '--network-name', 'weave-iso', '--subnet', 'net:10.32.0.128/28']);
      await pm.importBusybox(IMAGE);
    }
  });

  after(async () => {
    for (const pm of [pm1, pm2]) {
      const complaint = await pm?.cleanup().catch((err: Error) => err.message);
      if (complaint) console.log(`podman cleanup: ${complaint}`);
    }
    await bed.destroy();
  });

  test('setup-cni wrote a Weave-style conflist and executable plugins', () => {
    const c = JSON.parse(fs.readFileSync(path.join(pm1.confDir, '10-weave.conflist'), 'utf8'));
    assert.equal(c.name, 'weave');
    assert.equal(c.cniVersion, '0.4.0');
    assert.equal(c.plugins[0].type, 'weave-net');
    assert.equal(c.plugins[0].stateDir, h1.stateDir);
    for (const f of ['weave-net', 'weave-ipam']) assert.ok(fs.statSync(path.join(pm1.binDir, f)).mode & 0o100, `${f} is executable`);
    // The native plugin (an ELF executable, no shell wrapper) and the socket it calls.
    for (const f of ['weave-net', 'weave-ipam']) assert.equal(fs.readFileSync(path.join(pm1.binDir, f)).subarray(0, 4).toString('latin1'), '\x7fELF', `${f} is the native plugin`);
    assert.equal(fs.readFileSync(path.join(pm1.binDir, 'weave-net.sock-path'), 'utf8'), path.join(h1.stateDir, 'weaver.sock') + '\n');
  });

  test('podman pods on two hosts get tsweave addresses and ping each other', async () => {
    const a = await runPod(pm1, 'a1');
    const b = await runPod(pm2, 'b1');
    for (const x of [a, b]) assert.match(x, /^10\.32\.0\.(\d+)$/);
    assert.ok(Number(a.split('.')[3]) < 128 && Number(b.split('.')[3]) < 128, `default subnet 10.32.0.0/25: ${a} ${b}`);
    assert.notEqual(a, b);
    // The endpoint table knows the pods (weave ps), by container id.
    const ps = await h1.mustWeave(['ps']);
    assert.ok(ps.includes(`${a}/25`), `weave ps on h1 lists ${a}: ${ps}`);
    assert.ok(await podPing(pm1, 'a1', b), `a1 (${a}) on h1 cannot ping b1 (${b}) on h2`);
    assert.ok(await podPing(pm2, 'b1', a), `b1 (${b}) on h2 cannot ping a1 (${a}) on h1`);
  });

  test('weaveDNS for podman pods: the ADD result names it (podman writes resolv.conf), a pod on h2 resolves and pings a pod of h1 by name', async () => {
    // podman 4.3 passes CNI_ARGS "IgnoreUnknown=1;K8S_POD_NAME=<container name>": the
    // plugin registers that name; the result's dns section becomes the pod's resolv.conf.
    const conf = await pm2.must(['exec', 'b1', 'cat', '/etc/resolv.conf']);
    assert.match(conf, /^nameserver 169\.254\.53\.53$/m, `b1's resolv.conf: ${conf}`);
    assert.match(conf, /^search .*\bweave\.local\b/m, `b1's resolv.conf: ${conf}`);
    const a = (await pm1.must(['exec', 'a1', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).match(/inet (\S+)\//)![1];
    // h1's entry reaches h2 by gossip.
    const answer = await until('b1 on h2 to resolve a1 (a pod of h1)', async () => {
      const r = await pm2.run(['exec', 'b1', 'busybox', 'nslookup', 'a1'], 30_000);
      return r.code === 0 && r.stdout.includes(a) ? r.stdout : undefined;
    }, 30_000, 500);
    assert.match(answer ?? '', /Name:\s+a1\.weave\.local/);
    // -4: with --ipalloc-range6 the name also has an AAAA record, which ping would prefer (the IPv6 test pings by address).
    const ping = await pm2.run(['exec', 'b1', 'ping', '-4', '-c', '1', '-W', '2', 'a1'], 30_000);
    assert.equal(ping.code, 0, `b1 cannot ping a1 by name: ${ping.stdout} ${ping.stderr}`);
    assert.ok(ping.stdout.includes(`PING a1 (${a})`), `ping resolved a1 to ${a}: ${ping.stdout}`);
  });

  test('IPv6 (--ipalloc-range6): podman pods are dual-stack through the plugin, ping6 across hosts, AAAA answers', async () => {
    const v4 = async (pm: Podman, pod: string): Promise<string> => (await pm.must(['exec', pod, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).match(/inet (\S+)\//)![1];
    const a = await v4(pm1, 'a1');
    const b = await v4(pm2, 'b1');
    for (const [pm, pod, x] of [[pm1, 'a1', a], [pm2, 'b1', b]] as const) {
      const out = await pm.must(['exec', pod, 'ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0']);
      // The default subnet 10.32.0.0/25 maps to a /121; the link-local is fe80::<IPv4>; no DAD wait (nodad).
      assert.ok(out.includes(`inet6 ${v6Of(x)}/121`), `${pod} has ${v6Of(x)}/121: ${out}`);
      assert.ok(out.includes(`inet6 fe80::${v6Of(x).slice('fd00:78::'.length)}/64`), `${pod} has its derived link-local: ${out}`);
      assert.ok(!/tentative/.test(out), `${pod}'s IPv6 is usable at once: ${out}`);
      const routes = await pm.must(['exec', pod, 'ip', '-6', 'route', 'show', 'dev', 'eth0']);
      assert.match(routes, /^fd00:78::a20:0\/121 /m, `${pod} has the on-link route of its IPv6 subnet: ${routes}`);
    }
    // Across hosts (fast datapath), through the IPv6 bridge rules on both hosts.
    const ping6 = async (): Promise<boolean> => {
      for (let i = 0; i < 10; i++) {
        const r = await pm1.run(['exec', 'a1', 'ping', '-6', '-c', '1', '-W', '1', v6Of(b)], 20_000);
        if (r.code === 0) return true;
      }
      return false;
    };
    if (!await ping6()) assert.fail(`a1 cannot ping6 b1 (${v6Of(b)})\n${await restartDiag(pm1, 'a1')}`);
    // weaveDNS answers AAAA for the pod by the name podman passed (K8S_POD_NAME), on the other host too.
    const answer = await until('b1 on h2 to resolve a1 AAAA', async () => {
      const r = await pm2.run(['exec', 'b1', 'busybox', 'nslookup', '-type=AAAA', 'a1'], 30_000);
      return r.code === 0 && r.stdout.includes(v6Of(a)) ? r.stdout : undefined;
    }, 30_000, 500);
    assert.match(answer ?? '', /a1\.weave\.local/);
  });

  test('a conf subnet isolates podman pods like WEAVE_CIDR=net: does', async () => {
    const i1 = await runPod(pm1, 'i1', 'weave-iso');
    const i2 = await runPod(pm2, 'i2', 'weave-iso');
    for (const x of [i1, i2]) assert.ok(Number(x.split('.')[3]) > 128 && Number(x.split('.')[3]) < 143, `${x} in 10.32.0.128/28`);
    assert.ok(await podPing(pm1, 'i1', i2), `i1 (${i1}) cannot ping i2 (${i2}) in the same subnet`);
    const b = (await pm2.must(['exec', 'b1', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).match(/inet (\S+)\//)![1];
    // Isolated: neither has a route to the other's subnet, so give them one each (then
    // only the bridge filters stand between them) and check the filters drop it.
    await pm1.must(['exec', '--privileged', 'i1', 'ip', 'route', 'add', '10.32.0.0/25', 'dev', 'eth0']);
    await pm2.must(['exec', '--privileged', 'b1', 'ip', 'route', 'add', '10.32.0.128/28', 'dev', 'eth0']);
    assert.equal(await podPing(pm1, 'i1', b, 3), false, `i1 (${i1}) in 10.32.0.128/28 reached b1 (${b}) in the default subnet`);
    await pm1.must(['rm', '-f', '-t', '0', 'i1']);
    await pm2.must(['rm', '-f', '-t', '0', 'i2']);
  });

  test('podman rm (DEL) frees the address: 20 create/remove cycles in a /28 all succeed', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      // One podman call per cycle: ADD, print the address, exit, DEL (--rm).
      const out = await pm1.must(['run', '--rm', '--name', `cyc${i}`, '--network', 'weave-iso', IMAGE, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      const m = /inet (\d+\.\d+\.\d+\.\d+)\/28/.exec(out);
      assert.ok(m, `cycle ${i}: no address in 10.32.0.128/28: ${out}`);
      seen.add(m[1]);
    }
    // Nothing left behind: no endpoint, no address held for any of them.
    const ps = await h1.mustWeave(['ps']);
    for (const x of seen) assert.ok(!ps.includes(`${x}/28`), `${x} still attached after rm: ${ps}`);
    assert.ok(seen.size <= 14, `addresses reused: ${[...seen].join(' ')}`);
  });

  test('CHECK passes on a good pod and fails with a CNI error when its address is gone; DEL is idempotent, also after the netns is gone', async () => {
    const ns = `${bed.prefix}byhand`;
    await must('ip', ['netns', 'add', ns]);
    bed.namespaces.push(ns);
    const env = { CNI_CONTAINERID: 'byhand1', CNI_NETNS: `/var/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH: pm1.binDir, CNI_ARGS: 'K8S_POD_NAME=byhand' };
    const conf = { cniVersion: '1.0.0', name: 'weave', type: 'weave-net', stateDir: h1.stateDir };
    const add = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'ADD' }, conf);
    assert.equal(add.code, 0, JSON.stringify(add.out));
    assert.equal(add.out.cniVersion, '1.0.0');
    assert.equal(add.out.interfaces[1].name, 'eth0');
    assert.equal(add.out.interfaces[1].sandbox, `/var/run/netns/${ns}`);
    const cidr = add.out.ips[0].address as string;
    assert.match(cidr, /^10\.32\.0\.\d+\/25$/);
    // [IPv6] the derived address follows, on the same interface, no gateway (1.0.0: no "version").
    assert.deepEqual(add.out.ips[1], { address: `${v6Of(cidr.split('/')[0])}/121`, interface: 1 });
    assert.match(await must('ip', ['-n', ns, '-6', '-o', 'addr', 'show', 'dev', 'eth0']), new RegExp(`inet6 ${v6Of(cidr.split('/')[0])}/121`));
    // ADD again (a runtime retry) gives the same address.
    const again = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'ADD' }, conf);
    assert.equal(again.out.ips[0].address, cidr);
    const check = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'CHECK' }, { ...conf, prevResult: add.out });
    assert.equal(check.code, 0, JSON.stringify(check.out));
    await must('ip', ['-n', ns, 'addr', 'del', cidr, 'dev', 'eth0']);
    const bad = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'CHECK' }, { ...conf, prevResult: add.out });
    assert.equal(bad.code, 1);
    assert.equal(typeof bad.out.code, 'number');
    assert.match(bad.out.msg, /lacks/);
    // The namespace goes away (pod killed) before the runtime's DEL.
    await must('ip', ['netns', 'del', ns]);
    bed.namespaces.splice(bed.namespaces.indexOf(ns), 1);
    const del = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'DEL', CNI_NETNS: '' }, conf);
    assert.equal(del.code, 0, JSON.stringify(del.out));
    const del2 = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'DEL' }, conf);
    assert.equal(del2.code, 0, JSON.stringify(del2.out));
    const ip = await h1.weave(['ps']);
    assert.ok(!ip.stdout.includes(cidr), `address ${cidr} still held after DEL: ${ip.stdout}`);
  });

  test('errors are CNI error JSON: router not running, bad conf, VERSION answers', async () => {
    const env = { CNI_CONTAINERID: 'x1', CNI_NETNS: '/var/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: pm1.binDir };
    // The native plugin installed for a state dir where no router runs (its
    // weave-net.sock-path names that socket). It does not parse the conf, so its
    // "not running" error says cniVersion 1.0.0.
    const downBin = { binDir: path.join(bed.dir, 'bin-no-router') };
    fs.mkdirSync(downBin.binDir, { recursive: true });
    await installCni({ confDir: downBin.binDir, binDir: downBin.binDir, stateDir: path.join(bed.dir, 'no-router'), portmap: false });
    const down = await plugin(h1, downBin, { ...env, CNI_COMMAND: 'ADD' }, { cniVersion: '0.4.0', name: 'weave', type: 'weave-net', stateDir: path.join(bed.dir, 'no-router') });
    assert.equal(down.code, 1);
    assert.deepEqual([down.out.code, down.out.msg, down.out.cniVersion], [11, 'tsweave router is not running on this node', '1.0.0']);
    // h1's plugin asked about a conf naming another state dir: h1's router refuses it.
    const other = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'ADD' }, { cniVersion: '0.4.0', name: 'weave', type: 'weave-net', stateDir: path.join(bed.dir, 'no-router') });
    assert.deepEqual([other.code, other.out.code, other.out.cniVersion], [1, 7, '0.4.0'], JSON.stringify(other.out));
    const badConf = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'ADD' }, { cniVersion: '9.9.9', name: 'weave', type: 'weave-net' });
    assert.equal(badConf.out.code, 1);
    const ver = await plugin(h1, pm1, { CNI_COMMAND: 'VERSION' }, {});
    assert.equal(ver.code, 0);
    assert.ok(ver.out.supportedVersions.includes('0.4.0') && ver.out.supportedVersions.includes('1.0.0'));
    const status = await plugin(h1, pm1, { CNI_COMMAND: 'STATUS' }, { cniVersion: '1.1.0', name: 'weave', type: 'weave-net', stateDir: h1.stateDir });
    assert.equal(status.code, 0, JSON.stringify(status.out));
    // DEL with no router: weave-net succeeds and says so on stderr (the router reclaims
    // the pod when it starts and finds its netns gone: see the restart test); weave-ipam,
    // whose addresses nothing else would free, fails with "try again later".
    const noRouter = { cniVersion: '1.0.0', name: 'weave', type: 'weave-net', stateDir: path.join(bed.dir, 'no-router') };
    const del = await plugin(h1, downBin, { ...env, CNI_COMMAND: 'DEL' }, noRouter);
    assert.equal(del.code, 0, JSON.stringify(del.out));
    assert.match(del.err, /tsweave router is not running on this node; its address is freed when the router starts/);
    const ipamDel = await plugin(h1, downBin, { ...env, CNI_COMMAND: 'DEL' }, { ...noRouter, type: 'bridge', ipam: { type: 'weave-ipam' } }, 'weave-ipam');
    assert.equal(ipamDel.code, 1);
    assert.deepEqual([ipamDel.out.code, ipamDel.out.msg], [11, 'tsweave router is not running on this node']);
  });

  test('weave-ipam on its own: ADD allocates once per container id, DEL frees', async () => {
    const env = { CNI_CONTAINERID: 'ipamonly1', CNI_NETNS: '/var/run/netns/unused', CNI_IFNAME: 'eth0', CNI_PATH: pm1.binDir };
    const conf = { cniVersion: '0.4.0', name: 'other', type: 'bridge', ipam: { type: 'weave-ipam' }, stateDir: h1.stateDir };
    const add = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'ADD' }, conf, 'weave-ipam');
    assert.equal(add.code, 0, JSON.stringify(add.out));
    assert.equal(add.out.ips[0].version, '4');
    assert.match(add.out.ips[0].address, /^10\.32\.0\.\d+\/25$/);
    const again = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'ADD' }, conf, 'weave-ipam');
    assert.equal(again.out.ips[0].address, add.out.ips[0].address);
    assert.equal((await plugin(h1, pm1, { ...env, CNI_COMMAND: 'CHECK' }, conf, 'weave-ipam')).code, 0);
    assert.equal((await plugin(h1, pm1, { ...env, CNI_COMMAND: 'DEL' }, conf, 'weave-ipam')).code, 0);
    const gone = await plugin(h1, pm1, { ...env, CNI_COMMAND: 'CHECK' }, conf, 'weave-ipam');
    assert.equal(gone.code, 1, 'CHECK after DEL fails: the address was freed');
    assert.match(gone.out.msg, /no addresses allocated/);
  });

  test('spoofing: a pod talking from an address it was not given reaches nobody, and the bridge counts the drops', async () => {
    const b = (await pm2.must(['exec', 'b1', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).match(/inet (\S+)\//)![1];
    const forged = '10.32.0.123';
    for (const h of [h1, h2]) assert.ok(!(await h.mustWeave(['ps'])).includes(`${forged}/`), `${forged} is free (not a pod's)`);
    const spoofCount = async (): Promise<number> => Number(/counter spoof \{\s*packets (\d+)/.exec((await h1.exec(['nft', 'list', 'counters', 'table', 'bridge', 'tsweave'])).stdout)?.[1] ?? NaN);
    // b1's ICMP InEchos (/proc/net/snmp of its netns), found by the header's column name.
    const echos = async (): Promise<number> => {
      const [head, vals] = (await pm2.must(['exec', 'b1', 'cat', '/proc/net/snmp'])).split('\n').filter((l) => l.startsWith('Icmp: '));
      return Number(vals?.split(' ')[head?.split(' ').indexOf('InEchos') ?? -1]);
    };
    assert.ok(Number.isFinite(await echos()) && Number.isFinite(await spoofCount()), 'b1 InEchos and h1 spoof counter readable');
    const [s0, e0] = [await spoofCount(), await echos()];
    await pm1.must(['exec', '--privileged', 'a1', 'ip', 'addr', 'add', `${forged}/25`, 'dev', 'eth0']);
    try {
      const r = await pm1.run(['exec', 'a1', 'ping', '-c', '5', '-W', '1', '-I', forged, b], 30_000);
      assert.notEqual(r.code, 0, `a1 pinging from the forged ${forged} got answers from b1: ${r.stdout}`);
    } finally {
      await pm1.must(['exec', '--privileged', 'a1', 'ip', 'addr', 'del', `${forged}/25`, 'dev', 'eth0']);
    }
    const [s1, e1] = [await spoofCount(), await echos()];
    assert.equal(e1 - e0, 0, `b1 received ${e1 - e0} echo requests from the forged address`);
    assert.ok(s1 - s0 >= 5, `h1 bridge spoof counter ${s0} -> ${s1}`);
    // Control: from its own address a1 still reaches b1, and b1 counts those echoes.
    assert.ok(await podPing(pm1, 'a1', b), `a1 cannot ping b1 (${b}) from its own address`);
    assert.ok(await echos() > e1, 'b1 counts echo requests from a1\'s real address');
  });

  test('pods keep working across a router restart; a pod removed while the router was down is reclaimed at start; DEL after it frees the address', async () => {
    const a = (await pm1.must(['exec', 'a1', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).match(/inet (\S+)\//)![1];
    const b = (await pm2.must(['exec', 'b1', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).match(/inet (\S+)\//)![1];
    const d = await runPod(pm1, 'd1');
    // Isolation across the restart: j1 (h1) and j2 (h2) in the conf subnet 10.32.0.128/28;
    // j1 gets a route to the default subnet, so only the bridge filters keep it from b1.
    await runPod(pm1, 'j1', 'weave-iso');
    const j2 = await runPod(pm2, 'j2', 'weave-iso');
    await pm1.must(['exec', '--privileged', 'j1', 'ip', 'route', 'replace', '10.32.0.0/25', 'dev', 'eth0']);
    await pm2.must(['exec', '--privileged', 'b1', 'ip', 'route', 'replace', '10.32.0.128/28', 'dev', 'eth0']);
    const dId = (await pm1.must(['inspect', '--format', '{{.Id}}', 'd1'])).trim();
    const dOwner = { CNI_CONTAINERID: dId, CNI_NETNS: '/var/run/netns/unused', CNI_IFNAME: 'eth0', CNI_PATH: pm1.binDir };
    const ipamConf = { cniVersion: '1.0.0', name: 'weave', type: 'bridge', ipam: { type: 'weave-ipam' }, stateDir: h1.stateDir };
    assert.equal((await plugin(h1, pm1, { ...dOwner, CNI_COMMAND: 'CHECK' }, ipamConf, 'weave-ipam')).code, 0, `IPAM holds d1's ${d}`);
    await h1.mustWeave(['stop']);
    await until('h1 router to stop', async () => !(await h1.weave(['status'])).code ? undefined : true, 30_000);
    // DEL while the router is down: podman rm succeeds (the plugin answers success) and
    // podman deletes the pod's netns.
    await pm1.must(['rm', '-f', '-t', '0', 'd1']);
    await h1.launch([...LAUNCH, h2.ip]);
    // At start the router found d1's netns gone and released it, as its DEL would have.
    const psAfter = await h1.mustWeave(['ps']);
    assert.ok(!psAfter.includes(`${d}/25`), `d1's ${d} still attached after a restart: ${psAfter}`);
    const freed = await plugin(h1, pm1, { ...dOwner, CNI_COMMAND: 'CHECK' }, ipamConf, 'weave-ipam');
    assert.equal(freed.code, 1, `IPAM still holds d1's ${d}`);
    assert.match(freed.out.msg, /no addresses allocated/);
    assert.match(fs.readFileSync(path.join(h1.stateDir, 'weaver.log'), 'utf8'), /its network namespace \S+ is gone \(found at start\), so its DEL was missed: freed/);
    if (!await podPing(pm1, 'a1', b, 30)) assert.fail(`a1 (${a}) cannot reach b1 (${b}) after h1's router restarted\n${await restartDiag(pm1, 'a1')}`);
    // DNS after the restart, both ways: h1's restarted DNS learns b1 from h2, and h2 still answers for a1.
    for (const [pm, pod, name, ip] of [[pm1, 'a1', 'b1', b], [pm2, 'b1', 'a1', a]] as const) {
      await until(`${pod} to resolve ${name} (${ip}) after h1's router restarted`, async () => {
        const r = await pm.run(['exec', pod, 'busybox', 'nslookup', name], 30_000);
        return r.code === 0 && r.stdout.includes(ip);
      }, 30_000, 500);
    }
    // Isolation after the restart: j1 reaches j2 in its subnet, not b1 in the default one.
    assert.ok(await podPing(pm1, 'j1', j2, 30), `j1 cannot reach j2 (${j2}) in its subnet after h1's router restarted`);
    assert.equal(await podPing(pm1, 'j1', b, 3), false, `j1 (10.32.0.128/28) reached b1 (${b}) in the default subnet after h1's router restarted`);
    // A new pod after the restart never gets a1's address.
    const c = await runPod(pm1, 'a2');
    assert.notEqual(c, a);
    await pm1.must(['rm', '-f', '-t', '0', 'a1']);
    const ps = await h1.mustWeave(['ps']);
    assert.ok(!ps.includes(`${a}/25`), `a1's ${a} still held after rm: ${ps}`);
    // The removed pod's name leaves the other host's DNS within seconds; a2 (control) stays.
    await until(`a1 to disappear from h2's DNS after podman rm on h1`, async () => {
      const r = await pm2.run(['exec', 'b1', 'busybox', 'nslookup', 'a1'], 30_000);
      return !r.stdout.includes(a) && /NXDOMAIN/.test(r.stdout + r.stderr);
    }, 10_000, 250);
    await until(`b1 to resolve a2 (${c}), the pod still running on h1`, async () => {
      const r = await pm2.run(['exec', 'b1', 'busybox', 'nslookup', 'a2'], 30_000);
      return r.code === 0 && r.stdout.includes(c);
    }, 30_000, 500);
  });
});
