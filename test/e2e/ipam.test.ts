/**
 * IPAM end to end: three routers split 10.32.0.0/12 by consensus and never hand out
 * an address twice — across concurrency, restarts, partitions and a dead peer. The
 * routers run with --ipalloc-range6, so containers also get the IPv6 address derived from
 * their IPv4 one (issue #21): those must be unique under the same concurrency and restart.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { Testbed, canRunE2E, until, sleep, type Container, type Host } from './lib/testbed.js';
import { derive6, parseRange6 } from '../../ipam/ipv6.js';

const skip = canRunE2E();

/** One raw API call to a host's router (Weave's IPAM HTTP API). */
function api(h: Host, method: string, urlPath: string, timeoutMs = 90_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: path.join(h.stateDir, 'weaver.sock'), method, path: urlPath, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

const ids = new Map<Host, string[]>();

const RANGE6 = 'fd00:77:1::/64';
const V6 = ['--ipalloc-range6', RANGE6];

/** The global IPv6 addresses on a container's ethwe (without prefix length). */
async function v6On(c: Container): Promise<string[]> {
  const out = (await c.exec(['ip', '-o', '-6', 'addr', 'show', 'dev', 'ethwe', 'scope', 'global'])).stdout;
  return [...out.matchAll(/inet6 ([0-9a-f:]+)\//g)].map((m) => m[1]!);
}

async function allocate(h: Host, id: string): Promise<string> {
  ids.set(h, [...(ids.get(h) ?? []), id]);
  const r = await api(h, 'POST', `/ip/${id}`);
  assert.equal(r.status, 200, `allocate ${id} on ${h.nickname}: ${r.body}`);
  return r.body.trim();
}

describe('IPAM across 3 hosts', { skip, timeout: 600_000 }, () => {
  const bed = new Testbed('p');
  let h1: Host, h2: Host, h3: Host;
  const all: string[] = [];
  let n3 = '';

  before(async () => {
    [h1, h2, h3] = await bed.up(3);
    // Each names the others, so consensus=3 (named + 1) holds on every peer.
    await h1.launch(['--no-proxy', ...V6, h2.ip, h3.ip]);
    await h2.launch(['--no-proxy', ...V6, h1.ip, h3.ip]);
    n3 = (await h3.launch(['--no-proxy', ...V6, h1.ip, h2.ip])).trim();
  });
  after(() => bed.destroy());

  test('weave prime reaches consensus; status ipam shows the split', async () => {
    const r = await h1.weave(['prime'], { timeoutMs: 90_000 });
    assert.equal(r.code, 0, r.stderr);
    await until('all three to own space', async () => ((await h1.report()).IPAM?.Owned ?? []).filter((o: { Addresses: number }) => o.Addresses > 0).length === 3, 60_000, 500);
    const st = await h1.mustWeave(['status', 'ipam']);
    assert.match(st, /\(h1\)\s+\d+ IPs \(\d+\.\d% of total\)/);
    assert.match(await h1.mustWeave(['status']), /Service: ipam\n\s+Status: ready\n\s+Range: 10\.32\.0\.0\/12/);
  });

  test('60 concurrent allocations on 3 hosts are all distinct', async () => {
    const jobs: Array<Promise<string>> = [];
    for (let i = 0; i < 20; i++) for (const h of [h1, h2, h3]) jobs.push(allocate(h, `conc-${h.nickname}-${i}`));
    const got = await Promise.all(jobs);
    all.push(...got);
    assert.equal(new Set(got).size, 60, 'no duplicates');
    for (const a of got) assert.match(a, /^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/);
  });

  test('attach with no address allocates; containers across hosts ping; same ip: twice is refused', async () => {
    const c1 = await h1.container('c1', []);
    const c3 = await h3.container('c3', ['net:10.32.5.0/24']);
    assert.match(c3.ips[0], /^10\.32\.5\.\d+$/);
    const c2 = await h2.container('c2', [`ip:${c1.ips[0].replace(/\.\d+$/, '.250')}/12`]);
    await c1.mustPing(c2.ips[0], { tries: 20 });
    all.push(`${c1.ips[0]}/12`, `${c2.ips[0]}/12`);
    // Another container claiming c2's address is refused.
    const ns = `${bed.prefix}dup`;
    await h1.exec(['true']);
    const { must } = await import('./lib/testbed.js');
    await must('ip', ['netns', 'add', ns]);
    bed.namespaces.push(ns);
    const dup = await h1.weave(['attach', `ip:${c2.ips[0]}/12`, `netns:/var/run/netns/${ns}`], { timeoutMs: 90_000 });
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /^weave: .*(in use|already|held|owned)/i);
    // Bad input gets a one-line error.
    for (const bad of ['net:10.32.0.0/33', 'net:10.99.0.0/24', 'net:10.32.0.0/31']) {
      const r = await h1.weave(['attach', bad, `netns:/var/run/netns/${ns}`]);
      assert.equal(r.code, 1, bad);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });

  // [IPv6] containers attached at the same time on all hosts: distinct IPv4, and each
  // IPv6 address is the one derived from its IPv4 (so distinct too).
  const v6Containers: Container[] = [];
  async function checkV6Unique(cs: Container[]): Promise<void> {
    const r6 = parseRange6(RANGE6);
    const seen: string[] = [];
    for (const c of cs) {
      const v6 = await v6On(c);
      assert.deepEqual(v6, [derive6(r6, c.ips[0]!)], `${c.name} (${c.ips.join(' ')}) has exactly its derived IPv6 address`);
      seen.push(v6[0]!);
    }
    assert.equal(new Set(cs.map((c) => c.ips[0])).size, cs.length, 'no duplicate IPv4 among containers');
    assert.equal(new Set(seen).size, seen.length, 'no duplicate IPv6 among containers');
  }

  test('[IPv6] 6 concurrent attaches on 3 hosts: distinct IPv4 and derived IPv6 addresses; ping6 across hosts', async () => {
    const cs = await Promise.all([h1, h2, h3].flatMap((h) => [0, 1].map((i) => h.container(`v${h.index}${i}`, []))));
    v6Containers.push(...cs);
    await checkV6Unique(cs);
    await cs[0]!.mustPing(derive6(parseRange6(RANGE6), cs[5]!.ips[0]!), { tries: 20 }, 'ping6 h1 -> h3');
  });

  test('stop and relaunch h2: its allocations survive, no new ring, no duplicates', async () => {
    const before = (await api(h2, 'GET', '/ip/conc-h2-0')).body;
    const v6before = new Map<Container, string[]>();
    for (const c of v6Containers.filter((c) => c.host === h2)) v6before.set(c, await v6On(c));
    await h2.mustWeave(['stop']);
    await h2.launch(['--no-proxy', ...V6]);
    await until('h2 ready again', async () => (await h2.report()).IPAM?.Status === 'ready', 60_000, 500);
    assert.equal((await api(h2, 'GET', '/ip/conc-h2-0')).body, before);
    const more = await Promise.all([1, 2, 3, 4, 5].map((i) => allocate(h2, `after-restart-${i}`)));
    all.push(...more);
    assert.equal(new Set(all).size, all.length, 'no duplicates after restart');
    // [IPv6] h2's containers keep their derived IPv6 addresses; new ones are unique too.
    for (const [c, v6] of v6before) assert.deepEqual(await v6On(c), v6, `${c.name} keeps its IPv6 address over h2's restart`);
    const extra = await Promise.all([1, 2].map((i) => h2.container(`r${i}`, [])));
    await checkV6Unique([...v6Containers, ...extra]);
  });

  test('partition h3, allocate on both sides, heal: still no duplicates', async () => {
    for (const other of [h1, h2]) {
      await h3.exec(['iptables', '-I', 'INPUT', '-s', other.ip, '-j', 'DROP']);
      await h3.exec(['iptables', '-I', 'OUTPUT', '-d', other.ip, '-j', 'DROP']);
    }
    try {
      await until('h3 to notice the partition', async () => !(await h3.report()).Router.Connections.some((c: { State: string }) => c.State === 'established'), 90_000, 1000);
      const side = await Promise.all([
        ...[0, 1, 2, 3, 4].map((i) => allocate(h1, `part-h1-${i}`)),
        ...[0, 1, 2, 3, 4].map((i) => allocate(h3, `part-h3-${i}`)),
      ]);
      all.push(...side);
    } finally {
      for (const other of [h1, h2]) {
        await h3.exec(['iptables', '-D', 'INPUT', '-s', other.ip, '-j', 'DROP']);
        await h3.exec(['iptables', '-D', 'OUTPUT', '-d', other.ip, '-j', 'DROP']);
      }
    }
    await until('h3 back in the mesh', async () => (await h3.report()).Router.Connections.filter((c: { State: string }) => c.State === 'established').length === 2, 90_000, 1000);
    const after = await Promise.all([0, 1, 2].map((i) => allocate(h3, `healed-${i}`)));
    all.push(...after);
    assert.equal(new Set(all).size, all.length, 'no duplicates across the partition');
  });

  test('kill -9 h3, rmpeer it by nickname on h1 once it left the topology: its space is taken over and allocation goes on', async () => {
    type Owned = { Peer: string; NickName: string; Addresses: number };
    const owned = async (h: Host): Promise<Owned[]> => (await h.report()).IPAM?.Owned ?? [];
    const h3share = (await owned(h1)).find((o) => o.Peer === n3)!.Addresses;
    const h1before = (await owned(h1)).find((o) => o.Peer !== n3 && o.NickName === h1.nickname)!.Addresses;
    assert.ok(h3share > 0);
    const pid = h3.pid();
    assert.ok(pid);
    process.kill(pid!, 'SIGKILL');
    await until('h3 unreachable from h1', async () => !(await h1.report()).Router.Connections.some((c: { Name?: string; State: string }) => c.Name === n3 && c.State === 'established'), 60_000, 1000);
    // Weave's case: the killed peer has left the topology, only the IPAM ring remembers its nickname.
    await until('h3 gone from h1\'s and h2\'s topology', async () => {
      for (const h of [h1, h2]) if ((await h.report()).Router.Peers.some((p: { Name: string }) => p.Name === n3)) return false;
      return true;
    }, 90_000, 1000);
    assert.equal((await owned(h1)).find((o) => o.Peer === n3)?.NickName, h3.nickname, 'status ipam names the dead owner');
    const r = await h1.weave(['rmpeer', h3.nickname]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${h3share} IPs taken over from ${h3.nickname}`);
    assert.equal((await owned(h1)).find((o) => o.Peer !== n3 && o.NickName === h1.nickname)!.Addresses, h1before + h3share, 'the address count moved to h1');
    await until('h2 to see the takeover', async () => !((await h2.report()).IPAM?.Owned ?? []).some((o: { Peer: string; Addresses: number }) => o.Peer === n3 && o.Addresses > 0), 30_000, 500);
    const view = async (h: Host): Promise<string> => JSON.stringify((await owned(h)).map((o) => [o.Peer, o.Addresses]).sort());
    await until('h1 and h2 agree on the ring', async () => (await view(h1)) === (await view(h2)), 30_000, 500);
    const t0 = Date.now();
    const fresh = await Promise.all([allocate(h1, 'post-rmpeer-1'), allocate(h2, 'post-rmpeer-2')]);
    assert.ok(Date.now() - t0 < 10_000, 'allocation proceeds within seconds');
    // h3's own allocations died with it (its space was taken over and is free again);
    // what the survivors hold (the fresh ones included) must still be unique.
    const survivors: string[] = [];
    for (const h of [h1, h2]) {
      for (const id of ids.get(h) ?? []) {
        const r = await api(h, 'GET', `/ip/${id}`);
        if (r.status === 200) survivors.push(...r.body.trim().split('\n'));
      }
    }
    for (const f of fresh) assert.ok(survivors.includes(f), `${f} is recorded`);
    assert.equal(new Set(survivors).size, survivors.length, 'no duplicates among live allocations');
    await sleep(10);
  });
});

describe('IPAM bad input end to end', { skip, timeout: 300_000 }, () => {
  const bed = new Testbed('q');
  after(() => bed.destroy());

  test('different ranges refuse each other, naming both; a corrupted ipam.json is refused and kept; a full range says so', async () => {
    const { writeFileSync, readFileSync } = await import('node:fs');
    const [h1, h2, h3] = await bed.up(3);
    await h1.launch(['--no-proxy']);
    await h2.launch(['--no-proxy', '--ipalloc-range', '10.40.0.0/16', h1.ip]);
    await until('range mismatch logged', async () => /IPAM range mismatch.*10\.(32\.0\.0\/12|40\.0\.0\/16).*10\.(32\.0\.0\/12|40\.0\.0\/16)/.test(h2.logTail(100) + h1.logTail(100)), 30_000, 500);
    assert.equal((await h1.report()).Router.Peers.length, 1, 'h2 never joins h1');

    const file = path.join(h3.stateDir, 'ipam.json');
    writeFileSync(file, '{"this is": not json');
    const r = await h3.weave(['launch', '--nickname', 'h3', '--no-proxy']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^weave: IPAM data in .*ipam\.json is corrupted .*: move it aside or run weave reset\n$/);
    assert.equal(readFileSync(file, 'utf8'), '{"this is": not json', 'the file is kept as it was');

    await h3.mustWeave(['reset']);
    await h3.launch(['--no-proxy', '--ipalloc-range', '10.9.0.0/29']);
    const got = [];
    for (let i = 0; i < 6; i++) got.push(await allocate(h3, `full-${i}`));
    assert.equal(new Set(got).size, 6);
    const t0 = Date.now();
    const full = await api(h3, 'POST', '/ip/full-6');
    assert.notEqual(full.status, 200);
    assert.match(full.body, /no free addresses in 10\.9\.0\.0\/29/);
    assert.ok(Date.now() - t0 < 10_000, 'a full range answers at once');
  });
});
