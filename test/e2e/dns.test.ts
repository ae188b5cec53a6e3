/**
 * weaveDNS end to end: three hosts (network namespaces) with real routers, bridges,
 * veths and nftables rules; "containers" are namespaces attached with `weave attach
 * -h`/`--name`, whose only interface is ethwe. They query the server at its link-local
 * address (169.254.53.53) with dig, busybox nslookup and, through a per-namespace
 * /etc/netns/NS/resolv.conf (which `ip netns exec` bind-mounts), glibc's resolver with
 * `ping NAME`. A fake upstream resolver (dnsmasq) lives in a namespace of its own on the
 * test underlay, named in h1's /etc/netns resolv.conf; nothing leaves the test
 * namespaces. Every namespace, process and /etc/netns directory is removed in `after`.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Testbed, canRunE2E, sh, must, until, sleep, type Host, type Container } from './lib/testbed.js';

const DNS = '169.254.53.53';
const need = ['dig', 'dnsmasq', 'nft', 'busybox'].filter((b) => !['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(`${d}/${b}`)));
const missing = canRunE2E() ?? (need.length ? `needs ${need.join(', ')} (Debian: dnsutils, dnsmasq-base, nftables, busybox-static; see scripts/setup.sh)` : undefined);
// Under CI a missing prerequisite is a failure, not a skip.
const skip = process.env.CI === 'true' ? undefined : missing;
if (process.env.CI === 'true' && missing) test('weaveDNS e2e prerequisites', () => assert.fail(`weaveDNS e2e cannot run: ${missing}`));
const run = !(process.env.CI === 'true' && missing);

/** dig inside a container: the answer section's addresses ('' lines dropped), or the status. */
async function dig(c: Container, name: string, extra: string[] = []): Promise<{ status: string; addrs: string[]; out: string }> {
  const r = await c.exec(['dig', `@${DNS}`, '+time=2', '+tries=1', ...extra, name], 15_000);
  const status = /status: (\w+)/.exec(r.stdout)?.[1] ?? `no answer (dig exit ${r.code})`;
  const ans = r.stdout.split(';; ANSWER SECTION:')[1]?.split('\n\n')[0] ?? '';
  const addrs = ans.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 5 && (f[3] === 'A' || f[3] === 'PTR')).map((f) => f[4]);
  return { status, addrs, out: r.stdout + r.stderr };
}

const sorted = (xs: string[]): string[] => [...xs].sort();

describe('weaveDNS across 3 hosts', { skip, timeout: 900_000 }, () => {
  if (!run) return;
  const bed = new Testbed('dns');
  const netnsDirs: string[] = [];
  let h1: Host, h2: Host, h3: Host;
  let c1: Container, c2: Container, c3: Container;
  let upstreamNs = '';

  /** /etc/netns/NS/resolv.conf, bind-mounted by `ip netns exec NS` over /etc/resolv.conf. */
  const resolvConf = (ns: string, text: string): void => {
    const d = `/etc/netns/${ns}`;
    mkdirSync(d, { recursive: true });
    if (!netnsDirs.includes(d)) netnsDirs.push(d);
    writeFileSync(`${d}/resolv.conf`, text);
  };

  before(async () => {
    [h1, h2, h3] = await bed.up(3);
    // The fake upstream: dnsmasq at 192.168.99.50 on the underlay, answering ext.example.
    upstreamNs = `${bed.prefix}up`;
    await must('ip', ['netns', 'add', upstreamNs]);
    bed.namespaces.push(upstreamNs);
    await must('ip', ['-n', `${bed.prefix}ul`, 'link', 'add', 'ulup', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', upstreamNs]);
    await must('ip', ['-n', `${bed.prefix}ul`, 'link', 'set', 'ulup', 'master', 'ul0', 'up']);
    await must('ip', ['-n', upstreamNs, 'addr', 'add', '192.168.99.50/24', 'dev', 'eth0']);
    await must('ip', ['-n', upstreamNs, 'link', 'set', 'eth0', 'up']);
    await must('ip', ['-n', upstreamNs, 'link', 'set', 'lo', 'up']);
    resolvConf(h1.ns, 'nameserver 192.168.99.50\n');
    await h1.launch(['--no-proxy', h2.ip, h3.ip]);
    await h2.launch(['--no-proxy', h1.ip, h3.ip]);
    await h3.launch(['--no-proxy', h1.ip, h2.ip]);
    c1 = await attachNamed(h1, 'c1', ['-h', 'alpha'], []);
    c2 = await attachNamed(h2, 'c2', ['--name', 'beta'], []);
    c3 = await attachNamed(h3, 'c3', ['-h', 'gamma.weave.local'], []);
  });
  after(async () => {
    await bed.destroy();
    for (const d of netnsDirs) rmSync(d, { recursive: true, force: true });
  });

  async function attachNamed(h: Host, name: string, flags: string[], specs: string[]): Promise<Container> {
    const ns = `${bed.prefix}${name}`;
    await must('ip', ['netns', 'add', ns]);
    bed.namespaces.push(ns);
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    resolvConf(ns, `nameserver ${DNS}\nsearch weave.local\n`);
    const out = await h.mustWeave(['attach', ...flags, ...specs, `netns:/var/run/netns/${ns}`], { timeoutMs: 120_000 });
    const { Container: C } = await import('./lib/testbed.js');
    return new C(h, name, ns, out.trim().split(/\s+/).filter(Boolean));
  }

  /** Wait until `c` resolves `name` to exactly `want` (sorted). */
  async function resolvesTo(c: Container, name: string, want: string[], timeoutMs = 15_000): Promise<void> {
    let last = '';
    try {
      await until(`${c.name} to resolve ${name} to ${want.join(' ') || 'NXDOMAIN'}`, async () => {
        const r = await dig(c, name);
        last = `${r.status} ${r.addrs.join(' ')}`;
        return want.length ? r.status === 'NOERROR' && sorted(r.addrs).join() === sorted(want).join() : r.status === 'NXDOMAIN';
      }, timeoutMs, 300);
    } catch (err) {
      const h = c.host;
      const facts = [
        `${c.name} neigh: ${(await c.exec(['ip', 'neigh'])).stdout.trim()}`,
        `${c.name} routes: ${(await c.exec(['ip', 'route'])).stdout.trim()}`,
        `${h.nickname} neigh on weave: ${(await h.exec(['ip', 'neigh', 'show', 'dev', 'weave'])).stdout.trim()}`,
        `${h.nickname} weave link: ${(await h.exec(['ip', '-o', 'link', 'show', 'weave'])).stdout.trim()}`,
        `${h.nickname} udp listeners: ${(await h.exec(['ss', '-lnu'])).stdout.trim()}`,
        `${h.nickname} dig from the host: ${(await h.exec(['dig', `@${DNS}`, '+time=2', '+tries=1', '+short', name])).stdout.trim()}`,
        `${h.nickname} nft counters: ${(await h.exec(['nft', 'list', 'ruleset'])).stdout.split('\n').filter((l) => /counter packets [1-9]/.test(l)).join(' | ')}`,
      ];
      throw new Error(`${(err as Error).message}; last answer: ${last}\n${facts.join('\n')}\n${await h.diagnose()}`);
    }
  }

  test('every container resolves every other name (dig, busybox nslookup, ping NAME) within seconds', async () => {
    const t0 = Date.now();
    const names: Array<[string, Container]> = [['alpha.weave.local', c1], ['beta.weave.local', c2], ['gamma.weave.local', c3]];
    for (const asker of [c1, c2, c3]) for (const [n, c] of names) await resolvesTo(asker, n, c.ips);
    const took = Date.now() - t0;
    assert.ok(took < 30_000, `all 9 resolutions took ${took} ms`);
    // Case-insensitive; other types of an existing name: NOERROR with no answers.
    assert.deepEqual((await dig(c2, 'ALPHA.Weave.Local')).addrs, c1.ips);
    const aaaa = await dig(c2, 'alpha.weave.local', ['AAAA']);
    assert.equal(aaaa.status, 'NOERROR');
    assert.deepEqual(aaaa.addrs, []);
    assert.equal((await dig(c2, 'nobody.weave.local')).status, 'NXDOMAIN');
    // Reverse lookup.
    const ptr = await dig(c1, c3.ips[0], ['-x']);
    assert.deepEqual(ptr.addrs, ['gamma.weave.local.'], ptr.out);
    // busybox nslookup, and glibc through resolv.conf (search weave.local): ping by short name.
    const ns = await c3.exec(['busybox', 'nslookup', 'beta.weave.local', DNS], 15_000);
    assert.match(ns.stdout, new RegExp(c2.ips[0].replace(/\./g, '\\.')), ns.stdout + ns.stderr);
    const ping = await c1.exec(['ping', '-c', '1', '-W', '5', 'gamma'], 20_000);
    assert.equal(ping.code, 0, `ping gamma from c1: ${ping.stdout}${ping.stderr}`);
    assert.match(ping.stdout, new RegExp(`\\(${c3.ips[0].replace(/\./g, '\\.')}\\)`));
    // weave status dns and dns-lookup on another host.
    const table = await h2.mustWeave(['status', 'dns']);
    for (const n of ['alpha', 'beta', 'gamma']) assert.match(table, new RegExp(`^${n}\\.weave\\.local\\s`, 'm'), table);
    assert.equal((await h3.mustWeave(['dns-lookup', 'alpha'])).trim(), c1.ips[0]);
    assert.equal((await h1.mustWeave(['dns-args'])).trim(), `--dns=${DNS} --dns-search=weave.local.`);
    // Metrics: c2's router counted the A answers and the NXDOMAIN it gave above.
    const text = await new Promise<string>((resolve, reject) => {
      http.get({ socketPath: path.join(h2.stateDir, 'weaver.sock'), path: '/metrics', timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    const count = (labels: string): number => Number(new RegExp(`^weave_dns_queries_total\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    assert.ok(count('type="A",result="NOERROR"') >= 1, `weave_dns_queries_total A/NOERROR: ${text.split('\n').filter((l) => l.startsWith('weave_dns')).join(' | ')}`);
    assert.ok(count('type="A",result="NXDOMAIN"') >= 1, 'weave_dns_queries_total A/NXDOMAIN');
  });

  test('three containers with one name: all three addresses, in varying order; removal is seen everywhere', async () => {
    await h1.mustWeave(['dns-add', c1.ips[0], `netns:/var/run/netns/${c1.ns}`, '-h', 'db.weave.local']);
    await h2.mustWeave(['dns-add', `netns:/var/run/netns/${c2.ns}`, '-h', 'db']);
    await h3.mustWeave(['dns-add', `netns:/var/run/netns/${c3.ns}`, '-h', 'DB.weave.local.']);
    const all = [c1.ips[0], c2.ips[0], c3.ips[0]];
    for (const c of [c1, c2, c3]) await resolvesTo(c, 'db.weave.local', all);
    const orders = new Set<string>();
    for (let i = 0; i < 20; i++) orders.add((await dig(c2, 'db.weave.local')).addrs.join(' '));
    assert.ok(orders.size >= 3, `answers rotate: ${[...orders].join(' | ')}`);
    await h2.mustWeave(['dns-remove', `netns:/var/run/netns/${c2.ns}`, '-h', 'db']);
    for (const c of [c1, c2, c3]) await resolvesTo(c, 'db.weave.local', [c1.ips[0], c3.ips[0]]);
  });

  test('a detached container\'s name is gone everywhere within seconds', async () => {
    const c4 = await attachNamed(h3, 'c4', ['-h', 'shortlived'], []);
    await resolvesTo(c1, 'shortlived.weave.local', c4.ips);
    await h3.mustWeave(['detach', `netns:/var/run/netns/${c4.ns}`]);
    for (const c of [c1, c2, c3]) await resolvesTo(c, 'shortlived.weave.local', [], 10_000);
  });

  test('a restarted router brings its names back', async () => {
    await h2.mustWeave(['stop']);
    await h2.launch([h1.ip, h3.ip, '--no-proxy']);
    for (const c of [c1, c2, c3]) await resolvesTo(c, 'beta.weave.local', c2.ips, 30_000);
    await resolvesTo(c2, 'alpha.weave.local', c1.ips, 30_000);
  });

  test('forwarding: a non-weave name is answered by the upstream; upstream down → SERVFAIL within the timeout', async () => {
    const conf = `${bed.dir}/dnsmasq.conf`;
    writeFileSync(conf, 'no-resolv\nno-hosts\nhost-record=ext.example,192.0.2.7\nlisten-address=192.168.99.50\nbind-interfaces\n');
    bed.background(['ip', 'netns', 'exec', upstreamNs, 'dnsmasq', '--keep-in-foreground', '--conf-file=' + conf, '--pid-file=', '--user=root']);
    await until('dnsmasq to answer', async () => (await sh('ip', ['netns', 'exec', upstreamNs, 'dig', '@192.168.99.50', '+time=1', '+tries=1', '+short', 'ext.example'])).stdout.includes('192.0.2.7'), 15_000);
    const r = await dig(c1, 'ext.example');
    assert.equal(r.status, 'NOERROR', r.out);
    assert.deepEqual(r.addrs, ['192.0.2.7']);
    // Over TCP as well.
    assert.deepEqual((await dig(c1, 'ext.example', ['+tcp'])).addrs, ['192.0.2.7']);
    // Upstream silent (its packets dropped): SERVFAIL after the 5 s upstream timeout, not a hang.
    await sh('ip', ['netns', 'exec', upstreamNs, 'nft', '-f', '-'], { input: 'table inet silence {\n chain in { type filter hook input priority 0; udp dport 53 drop; tcp dport 53 drop; }\n}\n' });
    let t0 = Date.now();
    let res = await c1.exec(['dig', `@${DNS}`, '+time=9', '+tries=1', 'ext2.example'], 20_000);
    let took = Date.now() - t0;
    assert.match(res.stdout, /status: SERVFAIL/, res.stdout + res.stderr);
    assert.ok(took >= 4_500 && took < 8_000, `SERVFAIL after ${took} ms (upstream timeout 5 s)`);
    // Upstream gone (port unreachable): SERVFAIL at once.
    const pids = (await sh('ip', ['netns', 'pids', upstreamNs])).stdout.split(/\s+/).filter(Boolean);
    for (const p of pids) process.kill(Number(p), 'SIGKILL');
    await sh('ip', ['netns', 'exec', upstreamNs, 'nft', 'delete', 'table', 'inet', 'silence']);
    await sleep(200);
    t0 = Date.now();
    res = await c1.exec(['dig', `@${DNS}`, '+time=9', '+tries=1', 'ext3.example'], 20_000);
    took = Date.now() - t0;
    assert.match(res.stdout, /status: SERVFAIL/, res.stdout + res.stderr);
    assert.ok(took < 3_000, `SERVFAIL after ${took} ms when the upstream refuses`);
  });

  test('names follow isolation: a container learns only addresses in subnets it shares', async () => {
    const a1 = await attachNamed(h1, 'a1', ['-h', 'iso'], ['net:10.32.1.0/24']);
    const b2 = await attachNamed(h2, 'b2', ['-h', 'iso'], ['net:10.32.2.0/24']);
    const a3 = await attachNamed(h3, 'a3', ['-h', 'asker'], ['net:10.32.1.0/24']);
    const b3 = await attachNamed(h3, 'b3', ['-h', 'asker2'], ['net:10.32.2.0/24']);
    await resolvesTo(a3, 'iso.weave.local', a1.ips);
    await resolvesTo(b3, 'iso.weave.local', b2.ips);
    // And the name of the other subnet's container is unknown to them.
    await resolvesTo(a3, 'asker2.weave.local', []);
    // The host itself (trusted) sees both.
    assert.deepEqual(sorted((await h3.mustWeave(['dns-lookup', 'iso'])).trim().split('\n')), sorted([a1.ips[0], b2.ips[0]]));
  });

  test('a partitioned peer\'s names stop resolving, and come back when it heals', async () => {
    await resolvesTo(c1, 'gamma.weave.local', c3.ips);
    await must('ip', ['-n', h3.ns, 'link', 'set', 'eth0', 'down']);
    try {
      // Connections notice a silent peer within the sleeve's UDP timeout (35 s).
      await resolvesTo(c1, 'gamma.weave.local', [], 60_000);
      await resolvesTo(c2, 'gamma.weave.local', [], 20_000);
    } finally {
      await must('ip', ['-n', h3.ns, 'link', 'set', 'eth0', 'up']);
    }
    await resolvesTo(c1, 'gamma.weave.local', c3.ips, 90_000);
  });

  test('the DNS address is reachable only on port 53, and not from other hosts', async () => {
    // Nothing else on the DNS address: ICMP echo to it is dropped by the host filter.
    const ping = await c1.exec(['ping', '-c', '1', '-W', '1', DNS], 10_000);
    assert.notEqual(ping.code, 0, 'ping to the DNS address must not pass the host filter');
    const counters = await h1.exec(['nft', 'list', 'table', 'bridge', 'tsweave']);
    assert.match(counters.stdout, new RegExp(`ip daddr ${DNS.replace(/\./g, '\\.')}`), 'bridge input rule for the DNS address is installed');
  });
});

describe('weave launch --no-dns', { skip, timeout: 300_000 }, () => {
  if (!run) return;
  const bed = new Testbed('nodns');
  let h: Host;
  before(async () => {
    [h] = await bed.up(1);
    await h.launch(['--no-proxy', '--no-dns', '--ipalloc-init', 'consensus=1']);
  });
  after(() => bed.destroy());

  test('no listener, no address on the bridge, the API says DNS is disabled', async () => {
    const ss = await h.exec(['ss', '-lnu']);
    assert.doesNotMatch(ss.stdout, /:53\b/, ss.stdout);
    const addrs = await h.exec(['ip', '-o', 'addr', 'show', 'dev', 'weave']);
    assert.doesNotMatch(addrs.stdout, /169\.254\.53\.53/);
    const r = await h.weave(['dns-lookup', 'x']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /DNS is disabled/);
  });
});
