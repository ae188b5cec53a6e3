/**
 * `weave expose` NAT (Weave's WEAVE chain, nftables): one host namespace with a
 * container, and an "outside" namespace only the host can route to (192.0.2.0/24,
 * TEST-NET-1, on a veth the test made). With NAT, a host process using its outside
 * address reaches the container (masqueraded to the bridge address), and the
 * container reaches the outside through the host (masqueraded to the host's outside
 * address). With --no-masq neither works; `weave hide` removes exactly the rules.
 * [IPv6] With --ipalloc-range6 the same for IPv6: `weave expose` prints both addresses,
 * and a container reaches an outside IPv6 address (2001:db8:ff::/64, documentation
 * prefix, on a veth inside the test's namespaces) only through the host's ip6 masquerade.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Testbed, canRunE2E, must, type Host, type Container } from './lib/testbed.js';
import { derive6, parseRange6 } from '../../ipam/ipv6.js';

function nftAvailable(): string | undefined {
  try {
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'nft not installed (apt-get install nftables)';
  }
}
const skip = canRunE2E() ?? nftAvailable();
if (skip && process.env.CI === 'true') test('expose NAT e2e prerequisites', () => assert.fail(`cannot run: ${skip}`));

describe('weave expose NAT', { skip, timeout: 300_000 }, () => {
  const bed = new Testbed('xn');
  let h1: Host;
  let c1: Container;
  const outNs = `${bed.prefix}out`;
  const HOST_OUT = '192.0.2.1';
  const FAR = '192.0.2.2';

  /** One ping from the host namespace with the given source address. */
  const hostPing = async (src: string, dst: string): Promise<boolean> => {
    for (let i = 0; i < 3; i++) if ((await h1.exec(['ping', '-c', '1', '-W', '1', '-I', src, dst])).code === 0) return true;
    return false;
  };
  const natTable = async (): Promise<string> => {
    const r = await h1.exec(['nft', 'list', 'table', 'ip', 'tsweave-nat']);
    return r.code === 0 ? r.stdout : '';
  };

  before(async () => {
    [h1] = await bed.up(1);
    await h1.launch(['--no-proxy', '--no-plugin']);
    c1 = await h1.container('c1', []);
    // The outside: a namespace reachable only from h1, over a veth made inside it.
    await must('ip', ['netns', 'add', outNs]);
    bed.namespaces.push(outNs);
    await must('ip', ['-n', outNs, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'ext0', 'netns', h1.ns]);
    await must('ip', ['-n', outNs, 'addr', 'add', `${FAR}/24`, 'dev', 'eth0']);
    await must('ip', ['-n', outNs, 'link', 'set', 'eth0', 'up']);
    await must('ip', ['-n', h1.ns, 'addr', 'add', `${HOST_OUT}/24`, 'dev', 'ext0']);
    await must('ip', ['-n', h1.ns, 'link', 'set', 'ext0', 'up']);
    await h1.exec(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  });
  after(async () => bed.destroy());

  test('--no-masq: exposed, but no NAT, so neither direction works across the host', async () => {
    const ip = (await h1.mustWeave(['expose', '--no-masq'])).trim();
    assert.match(ip, /^10\.32\.\d+\.\d+$/);
    assert.equal(await natTable(), '', 'no WEAVE chain with --no-masq');
    assert.ok(await hostPing(ip, c1.ips[0]), 'the bridge address itself reaches the container');
    assert.equal(await hostPing(HOST_OUT, c1.ips[0]), false, 'no masquerade: the container has no route back to 192.0.2.1');
    await c1.exec(['ip', 'route', 'add', '192.0.2.0/24', 'via', ip]);
    assert.equal(await c1.ping(FAR, { tries: 2 }), false, 'no masquerade: the outside cannot answer the container');
    await h1.mustWeave(['hide']);
  });

  test('expose: host → container and container → outside both masqueraded; hide removes exactly those', async () => {
    const ip = (await h1.mustWeave(['expose'])).trim();
    const table = await natTable();
    assert.match(table, /chain WEAVE/);
    assert.match(table, /masquerade fully-random/);
    assert.match(table, /10\.32\.0\.0\/12/);
    // The route via the exposed address went with hide; the container only knows its /12.
    await c1.exec(['ip', 'route', 'replace', '192.0.2.0/24', 'via', ip]);
    assert.ok(await c1.ping(FAR, { tries: 5 }), 'container cannot reach the outside through the exposing host');
    await c1.exec(['ip', 'route', 'del', '192.0.2.0/24']);
    assert.ok(await hostPing(HOST_OUT, c1.ips[0]), 'host process from 192.0.2.1 cannot reach the container');
    await h1.mustWeave(['hide']);
    assert.equal(await natTable(), '', 'hide removes the WEAVE chain');
    assert.equal(await hostPing(HOST_OUT, c1.ips[0]), false);
  });

  test('weave reset removes the NAT table', async () => {
    await h1.mustWeave(['expose']);
    assert.notEqual(await natTable(), '');
    await h1.mustWeave(['reset', '--force']);
    assert.equal(await natTable(), '');
  });
});

describe('weave expose NAT over IPv6 (--ipalloc-range6)', { skip, timeout: 300_000 }, () => {
  const bed = new Testbed('xn6');
  let h1: Host;
  let c1: Container;
  const outNs = `${bed.prefix}out`;
  const R6 = parseRange6('fd00:77::/64');
  const HOST_OUT6 = '2001:db8:ff::1';
  const FAR6 = '2001:db8:ff::2';
  const nat6 = async (): Promise<string> => {
    const r = await h1.exec(['nft', 'list', 'table', 'ip6', 'tsweave-nat']);
    return r.code === 0 ? r.stdout : '';
  };
  const ping6 = async (tries: number): Promise<boolean> => {
    for (let i = 0; i < tries; i++) if ((await c1.exec(['ping', '-6', '-c', '1', '-W', '1', FAR6], 10_000)).code === 0) return true;
    return false;
  };

  before(async () => {
    [h1] = await bed.up(1);
    await h1.launch(['--no-proxy', '--no-plugin', '--ipalloc-range6', 'fd00:77::/64']);
    c1 = await h1.container('c1', []);
    // The outside: a namespace reachable only from h1, with no route back to fd00:77::/64.
    await must('ip', ['netns', 'add', outNs]);
    bed.namespaces.push(outNs);
    await must('ip', ['-n', outNs, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'ext0', 'netns', h1.ns]);
    await must('ip', ['-n', outNs, 'addr', 'add', `${FAR6}/64`, 'dev', 'eth0', 'nodad']);
    await must('ip', ['-n', outNs, 'link', 'set', 'eth0', 'up']);
    // The testbed's hosts start with IPv6 off on new links; this one is the host's outside link.
    await must('ip', ['netns', 'exec', h1.ns, 'sysctl', '-qw', 'net.ipv6.conf.ext0.disable_ipv6=0']);
    await must('ip', ['-n', h1.ns, 'addr', 'add', `${HOST_OUT6}/64`, 'dev', 'ext0', 'nodad']);
    await must('ip', ['-n', h1.ns, 'link', 'set', 'ext0', 'up']);
    await h1.exec(['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  });
  after(async () => bed.destroy());

  test('expose prints both addresses; the container reaches the outside over IPv6 only while exposed with NAT', async () => {
    const [ip4, ip6, ...rest] = (await h1.mustWeave(['expose'])).trim().split(' ');
    assert.match(ip4 ?? '', /^10\.32\.\d+\.\d+$/);
    assert.equal(ip6, derive6(R6, ip4!), 'the second address is the derived IPv6 one');
    assert.deepEqual(rest, []);
    const table = await nat6();
    assert.match(table, /ip6 saddr fd00:77::a20:0\/108 ip6 daddr != fd00:77::a20:0\/108 oifname != "weave" masquerade fully-random/);
    await c1.exec(['ip', '-6', 'route', 'replace', '2001:db8:ff::/64', 'via', ip6!]);
    assert.ok(await ping6(10), 'container cannot reach the outside IPv6 address through the exposing host');
    assert.equal((await h1.mustWeave(['hide'])).trim(), `${ip4} ${ip6}`, 'hide prints both too');
    assert.equal(await nat6(), '', 'hide removes the ip6 NAT table');
    await c1.exec(['ip', '-6', 'route', 'del', '2001:db8:ff::/64']);
  });

  test('--no-masq: no ip6 NAT, so the outside cannot answer; weave reset removes the table', async () => {
    const [, ip6] = (await h1.mustWeave(['expose', '--no-masq'])).trim().split(' ');
    assert.equal(await nat6(), '');
    await c1.exec(['ip', '-6', 'route', 'replace', '2001:db8:ff::/64', 'via', ip6!]);
    assert.equal(await ping6(2), false, 'no masquerade: the outside has no route back to fd00:77::/64');
    await h1.mustWeave(['hide']);
    await h1.mustWeave(['expose']);
    assert.notEqual(await nat6(), '');
    await h1.mustWeave(['reset', '--force']);
    assert.equal(await nat6(), '');
  });
});
