/**
 * The netlink addon's boundary (router/host/netlink.ts, router/host/native/netlink.cc):
 * what it refuses before touching any namespace, and how failures are reported. The
 * veths it makes are exercised end to end by the e2e tests (cni, isolation, ipv6).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { macBytes, netlink, type NetlinkFailure, type PodVeth } from '../../router/host/netlink.js';

const good: PodVeth = { ns: '/nonexistent/tsweave-unit-ns', ifname: 'eth0', host: 'vethwepl1234567', mac: macBytes('02:11:22:33:44:55'), mtu: 1376, v4: ['10.32.0.5/12'], routes: ['169.254.53.53/32'] };

test('macBytes turns aa:bb:.. into its 6 bytes', () => {
  assert.deepEqual([...macBytes('02:11:22:aa:bb:ff')], [2, 0x11, 0x22, 0xaa, 0xbb, 0xff]);
});

test('WEAVE_NO_NETLINK=1 turns the addon off (netdev.ts then forks ip)', () => {
  const old = process.env.WEAVE_NO_NETLINK;
  process.env.WEAVE_NO_NETLINK = '1';
  try {
    assert.equal(netlink(), undefined);
  } finally {
    if (old === undefined) delete process.env.WEAVE_NO_NETLINK;
    else process.env.WEAVE_NO_NETLINK = old;
  }
});

test('the addon is built and refuses hostile arguments with one-line EINVAL errors, before any netlink', () => {
  const nl = netlink();
  assert.ok(nl, 'build/Release/netlink.node is missing: run npm run install');
  const bad: Array<[string, Partial<PodVeth> & Record<string, unknown>]> = [
    ['ifname', { ifname: 'eth 0' }],
    ['ifname', { ifname: 'a-name-that-is-too-long' }],
    ['ifname', { ifname: '' }],
    ['host', { host: 'x;y' }],
    ['ns', { ns: 'relative/path' }],
    ['ns', { ns: '/a\0b' }],
    ['mac', { mac: Buffer.alloc(5) }],
    ['mtu', { mtu: 67 }],
    ['mtu', { mtu: 70_000 }],
    ['v4', { v4: ['10.32.0.5'] }],
    ['v4', { v4: ['10.32.0.5/33'] }],
    ['v4', { v4: ['fd00::1/64'] }],
    ['v4', { v4: Array(65).fill('10.0.0.1/8') }],
    ['routes', { routes: ['169.254.53.53/3x'] }],
    ['gw', { gw: '10.32.0.300' }],
    ['v6', { v6: ['10.0.0.1/8'] }],
    ['v6', { v6: ['fd00::1/129'] }],
  ];
  for (const [field, patch] of bad) {
    assert.throws(() => nl.vethPod({ ...good, ...patch } as PodVeth), (err: NetlinkFailure) => {
      assert.equal(err.code, 'EINVAL', `${field}: ${err.message}`);
      assert.ok(err.message.includes(field) && !err.message.includes('\n'), err.message);
      return true;
    }, field);
  }
  assert.throws(() => nl.vethHost({ host: 'vethwepl1234567', bridge: 'we ave', hairpin: false }), /bad "bridge"/);
});

test('a namespace file that does not exist: rejected at step "open namespace" (netdev.ts then takes its slow path)', async () => {
  const nl = netlink()!;
  await assert.rejects(nl.vethPod(good), (err: NetlinkFailure) => {
    assert.equal(err.code, 'ENOENT');
    assert.equal(err.step, 'open namespace');
    assert.match(err.message, /^netlink open namespace: No such file or directory$/);
    return true;
  });
});

test('fdbDump: a hostile device name is refused (EINVAL) before any netlink; a missing device rejects with ENODEV', async () => {
  const nl = netlink()!;
  for (const dev of ['x;y', '', 'a-name-that-is-too-long', '../etc']) {
    assert.throws(() => nl.fdbDump({ dev }), (err: NetlinkFailure) => err.code === 'EINVAL' && /bad "dev"/.test(err.message), dev);
  }
  await assert.rejects(nl.fdbDump({ dev: 'tswnodev9' }), (err: NetlinkFailure) => {
    assert.equal(err.code, 'ENODEV');
    assert.match(err.message, /^netlink find the device: No such device$/);
    return true;
  });
});

test('fdbSet: bad arguments are refused (EINVAL) before any netlink; a missing device rejects with ENODEV', async () => {
  const nl = netlink()!;
  const z = '00:00:00:00:00:00';
  const bad: Array<[unknown, RegExp]> = [
    [{ dev: 'x;y', op: 'append', entries: [] }, /bad "dev"/],
    [{ dev: 'vxlan-6784', op: 'replace', entries: [] }, /"op" must be/],
    [{ dev: 'vxlan-6784', op: 'append', entries: 'x' }, /"entries" must be an array/],
    [{ dev: 'vxlan-6784', op: 'append', entries: new Array(4097).fill({ mac: z, dst: '192.0.2.1' }) }, /over 4096/],
    [{ dev: 'vxlan-6784', op: 'append', entries: [7] }, /each entry must be an object/],
    ...['', 'aa:bb:cc:dd:ee', 'aa:bb:cc:dd:ee: f', '+a:bb:cc:dd:ee:ff', 'aa-bb-cc-dd-ee-ff', 'gg:bb:cc:dd:ee:ff', 'aa:bb:cc:dd:ee:ff0']
      .map((mac): [unknown, RegExp] => [{ dev: 'vxlan-6784', op: 'del', entries: [{ mac, dst: '192.0.2.1' }] }, /bad "mac"/]),
    ...['', '192.0.2', '192.0.2.1; rm', 'x'.repeat(100), '::g']
      .map((dst): [unknown, RegExp] => [{ dev: 'vxlan-6784', op: 'append', entries: [{ mac: z, dst }] }, /bad "dst"/]),
    ...[0, 65536, 1.5, '6784'].map((port): [unknown, RegExp] => [{ dev: 'vxlan-6784', op: 'append', entries: [{ mac: z, dst: '192.0.2.1', port }] }, /"port"/]),
  ];
  for (const [req, why] of bad) {
    assert.throws(() => nl.fdbSet(req as Parameters<typeof nl.fdbSet>[0]), (err: NetlinkFailure) => err.code === 'EINVAL' && why.test(err.message), JSON.stringify(req).slice(0, 120));
  }
  await assert.rejects(nl.fdbSet({ dev: 'tswnodev9', op: 'append', entries: [{ mac: z, dst: '192.0.2.1' }] }), (err: NetlinkFailure) => err.code === 'ENODEV');
});

test('linkList: the same names, ifindexes and MACs as `ip -j link show` (read-only, this namespace)', async () => {
  const nl = netlink()!;
  const got = (await nl.linkList()).map((l) => `${l.name} ${l.index} ${l.mac ?? '-'}`).sort();
  const ipOut = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string; ifindex: number; address?: string }>;
  // ip prints any hardware address; the addon gives 6-byte ones (lo's is all zeros).
  const want = ipOut.map((l) => `${l.ifname} ${l.ifindex} ${/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(l.address ?? '') ? l.address : '-'}`).sort();
  assert.ok(got.length > 0 && got.some((x) => x.startsWith('lo ')), got.join(', '));
  assert.deepEqual(got, want);
});

test('routeList4: the same "DST dev NAME" routes as `ip -4 route show` (read-only, this namespace)', async () => {
  const nl = netlink()!;
  const got = (await nl.routeList4()).map((r) => `${r.dst} ${r.dev}`).sort();
  const want: string[] = [];
  for (const line of execFileSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' }).split('\n')) {
    const m = /^(default|\d+\.\d+\.\d+\.\d+(?:\/\d+)?)\s.*\bdev (\S+)/.exec(line);
    if (m) want.push(`${m[1] === 'default' ? '0.0.0.0/0' : m[1].includes('/') ? m[1] : `${m[1]}/32`} ${m[2]}`);
  }
  assert.deepEqual(got, want.sort());
});
