/**
 * `weave expose` NAT (Weave's WEAVE chain, nftables): one host namespace with a
 * container, and an "outside" namespace only the host can route to (192.0.2.0/24,
 * TEST-NET-1, on a veth the test made). With NAT, a host process using its outside
 * address reaches the container (masqueraded to the bridge address), and the
 * container reaches the outside through the host (masqueraded to the host's outside
 * address). With --no-masq neither works; `weave hide` removes exactly the rules.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Testbed, canRunE2E, must, type Host, type Container } from './lib/testbed.js';

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
