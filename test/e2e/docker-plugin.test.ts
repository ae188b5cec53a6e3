/**
 * The Docker network plugin (weavemesh) with real routers and real dockerds: two
 * hosts, each with its own dockerd that finds its own router's plugin socket through
 * a private /run/docker/plugins (own mount namespace). Plain `docker run --net=weave`,
 * custom-subnet networks (isolated like net:), connect/disconnect, 20 run/rm cycles
 * in a /28, router and dockerd restarts, and a hostile plugin socket client.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Testbed, canRunE2E, until, sh, type Host } from './lib/testbed.js';
import { startDockerd, dockerdAvailable, type Dockerd } from './docker/dockerd.js';
import { importBusyboxImage, busyboxStaticAvailable, withLibraries } from './docker/image.js';

const IMG = 'tsw-dp-bb:1';
/** busybox plus the host's glibc ping (which resolves names through resolv.conf as applications do). */
const PING_IMG = 'tsw-dp-ping:1';
const skip = canRunE2E() ?? dockerdAvailable() ?? busyboxStaticAvailable() ?? (fs.existsSync('/usr/bin/unshare') ? undefined : 'unshare (util-linux) not installed')
  ?? (fs.existsSync('/usr/bin/ping') ? undefined : 'ping (iputils-ping) not installed');

if (skip && process.env.CI === 'true') {
  test('docker plugin e2e prerequisites', () => assert.fail(`cannot run the Docker plugin e2e tests: ${skip}`));
}

/** POST raw bytes to a unix-socket HTTP server; resolves with status and parsed body. */
function rawPost(socketPath: string, urlPath: string, body: string): Promise<{ status: number; json: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: urlPath, method: 'POST', timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) });
        } catch {
          reject(new Error(`not JSON (${res.statusCode}): ${text.slice(0, 200)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

describe('Docker network plugin across two hosts', { skip, timeout: 1_500_000 }, () => {
  const bed = new Testbed('dp');
  let h1: Host, h2: Host;
  const daemons = new Map<Host, Dockerd>();
  const pluginDir = (h: Host): string => path.join(h.stateDir, 'plugins');
  const socketOf = (h: Host): string => path.join(pluginDir(h), 'weavemesh.sock');
  const docker = (h: Host, args: string[], timeoutMs = 90_000) => sh('docker', ['-H', daemons.get(h)!.host, ...args], { timeoutMs });
  const mustDocker = async (h: Host, args: string[], timeoutMs = 90_000): Promise<string> => {
    const r = await docker(h, args, timeoutMs);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')} on ${h.nickname} failed: ${r.stderr.trim()}\n--- router log ---\n${h.logTail(15)}`);
    return r.stdout;
  };
  const launch = (h: Host, peers: string[]) => h.launch(['--no-proxy', '--plugin-socket', socketOf(h), ...peers], { env: { DOCKER_HOST: daemons.get(h)!.host } });
  /** The container's address on a network, e.g. 10.32.0.3. */
  const ipOn = async (h: Host, name: string, net: string): Promise<string> => {
    const out = (await mustDocker(h, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, name])).trim();
    assert.match(out, /^\d+\.\d+\.\d+\.\d+$/, `${name} has no address on ${net}`);
    return out;
  };
  const ping = async (h: Host, from: string, to: string): Promise<boolean> => (await docker(h, ['exec', from, 'ping', '-c', '2', '-W', '2', to])).code === 0;
  /** A reachability that must hold: up to 3 tries, then an error with what both routers saw. */
  const mustReach = async (h: Host, from: string, to: string, what: string): Promise<void> => {
    for (let i = 0; i < 3; i++) if (await ping(h, from, to)) return;
    const neigh = (await docker(h, ['exec', from, 'ip', 'neigh'])).stdout.trim();
    throw new Error(`${what}: ${from} on ${h.nickname} cannot ping ${to}\n${from} neighbours: ${neigh}\n${await h1.diagnose()}\n${await h2.diagnose()}`);
  };

  before(async () => {
    [h1, h2] = await bed.up(2);
    for (const h of [h1, h2]) {
      fs.mkdirSync(pluginDir(h), { recursive: true, mode: 0o700 });
      // A restart with a --restart=always container restores it before answering: generous on a loaded machine.
      const d = await startDockerd({ name: `tsw-dp-${h.nickname}-${process.pid}`, netns: h.ns, pluginDir: pluginDir(h), timeoutMs: 120_000 });
      daemons.set(h, d);
      await importBusyboxImage({ dockerHost: d.host, tag: IMG, applets: ['sh', 'ping', 'ip', 'cat', 'sleep', 'true'] });
      await importBusyboxImage({ dockerHost: d.host, tag: PING_IMG, applets: ['sh', 'cat', 'sleep'], hostFiles: withLibraries('/usr/bin/ping') });
    }
    await launch(h1, [h2.ip]);
    await launch(h2, [h1.ip]);
    await until('connection', async () => (await h1.mustWeave(['status', 'connections'])).includes('established'), 30_000);
  });
  after(async () => {
    for (const d of daemons.values()) await d.destroy().catch(() => undefined);
    await bed.destroy();
  });

  test('weave launch creates the network weave (driver and IPAM weavemesh) on each host', async () => {
    for (const h of [h1, h2]) {
      const out = await until(`network weave on ${h.nickname}`, async () => {
        const r = await docker(h, ['network', 'inspect', '-f', '{{.Driver}} {{.IPAM.Driver}} {{(index .IPAM.Config 0).Subnet}}', 'weave']);
        return r.code === 0 ? r.stdout.trim() : '';
      }, 90_000, 1000);
      assert.equal(out, 'weavemesh weavemesh 10.32.0.0/12');
      assert.match((await h.report()).Plugin.DefaultNetwork, /^(created|exists)$/);
    }
  });

  test('docker run --net=weave containers on different hosts ping each other; weave ps lists them with their names', async () => {
    await mustDocker(h1, ['run', '-d', '--net=weave', '--name', 'c1', IMG, 'sleep', '900']);
    await mustDocker(h2, ['run', '-d', '--net=weave', '--name', 'c2', IMG, 'sleep', '900']);
    const ip1 = await ipOn(h1, 'c1', 'weave');
    const ip2 = await ipOn(h2, 'c2', 'weave');
    assert.notEqual(ip1, ip2);
    assert.match(await mustDocker(h1, ['exec', 'c1', 'ip', '-o', 'addr', 'show']), new RegExp(`ethwe0\\s+inet ${ip1.replace(/\./g, '\\.')}/12`));
    await mustReach(h1, 'c1', ip2, `c1 ${ip1} -> c2 ${ip2}`);
    await mustReach(h2, 'c2', ip1, 'c2 cannot ping c1');
    assert.match(await h1.mustWeave(['ps']), new RegExp(`^[0-9a-f]{12} ([0-9a-f]{2}:){5}[0-9a-f]{2} ${ip1.replace(/\./g, '\\.')}/12$`, 'm'));
    // The endpoint carries the container's name (for DNS), learned from dockerd after Join.
    await until('endpoint named c1', async () => {
      const table = JSON.parse(fs.readFileSync(path.join(h1.stateDir, 'endpoints.json'), 'utf8')) as Array<{ name?: string; cidrs: string[] }>;
      return table.some((e) => e.name === 'c1' && e.cidrs.includes(`${ip1}/12`));
    }, 15_000);
  });

  test('docker run --net=weave containers find each other by name across hosts ($(weave dns-args)); a stopped one is gone from DNS', async () => {
    await mustDocker(h1, ['run', '-d', '--net=weave', '--name', 'alpha', IMG, 'sleep', '900']);
    const ipA = await ipOn(h1, 'alpha', 'weave');
    // Two running containers of one pool on one host: two addresses (the plugin's one IPAM owner per pool once got the same one twice).
    assert.notEqual(ipA, await ipOn(h1, 'c1', 'weave'), 'alpha got c1\'s address');
    // The plugin learns the name from dockerd after Join; the mesh carries it to h2.
    await until('alpha registered on h2', async () => (await h2.weave(['dns-lookup', 'alpha'])).stdout.trim() === ipA, 30_000, 500);
    // Docker's plugin API cannot set a container's DNS: the documented way (as Weave's)
    // is `docker run $(weave dns-args)`. Join gave the on-link route to the server.
    const dnsArgs = (await h2.mustWeave(['dns-args'])).trim().split(/\s+/);
    assert.deepEqual(dnsArgs, ['--dns=169.254.53.53', '--dns-search=weave.local.']);
    const run = ['run', '--rm', '--net=weave', ...dnsArgs, PING_IMG];
    const conf = await mustDocker(h2, [...run, 'cat', '/etc/resolv.conf']);
    let r = { code: -1, stdout: '', stderr: '' };
    for (let i = 0; i < 3 && r.code !== 0; i++) r = await docker(h2, [...run, '/usr/bin/ping', '-c1', '-W', '5', 'alpha']);
    assert.equal(r.code, 0, `ping alpha from h2 failed: ${r.stdout}${r.stderr}\nresolv.conf: ${conf}\n${h2.logTail(10)}`);
    assert.match(r.stdout, new RegExp(`\\(${ipA.replace(/\./g, '\\.')}\\)`), `ping alpha resolved to another address than ${ipA}: ${r.stdout}`);
    // The fully qualified name too, and from a container started without a name.
    assert.equal((await docker(h2, [...run, '/usr/bin/ping', '-c1', '-W', '5', 'alpha.weave.local'])).code, 0, 'ping alpha.weave.local from h2');
    // Stopped (Docker calls Leave): tombstoned, gone on h2 within seconds.
    await mustDocker(h1, ['stop', '-t', '1', 'alpha']);
    await until('alpha gone on h2', async () => (await h2.weave(['dns-lookup', 'alpha'])).code !== 0, 30_000, 500);
    assert.notEqual((await docker(h2, [...run, '/usr/bin/ping', '-c1', '-W', '2', 'alpha'])).code, 0, 'a stopped container still resolves');
    // Started again: registered again.
    await mustDocker(h1, ['start', 'alpha']);
    await until('alpha back on h2', async () => /^\d+\.\d+\.\d+\.\d+$/.test((await h2.weave(['dns-lookup', 'alpha'])).stdout.trim()), 30_000, 500);
  });

  test('a --subnet network is isolated from weave and from other subnets, on one host and across hosts', async () => {
    for (const h of [h1, h2]) {
      await mustDocker(h, ['network', 'create', '-d', 'weavemesh', '--ipam-driver', 'weavemesh', '--subnet', '10.32.5.0/24', 'net5']);
      await mustDocker(h, ['network', 'create', '-d', 'weavemesh', '--ipam-driver', 'weavemesh', '--subnet', '10.32.7.0/24', 'net7']);
    }
    await mustDocker(h1, ['run', '-d', '--net=net5', '--name', 'a5', IMG, 'sleep', '900']);
    await mustDocker(h2, ['run', '-d', '--net=net5', '--name', 'b5', IMG, 'sleep', '900']);
    await mustDocker(h2, ['run', '-d', '--net=net7', '--name', 'b7', IMG, 'sleep', '900']);
    const a5 = await ipOn(h1, 'a5', 'net5');
    const b5 = await ipOn(h2, 'b5', 'net5');
    const b7 = await ipOn(h2, 'b7', 'net7');
    assert.match(a5, /^10\.32\.5\./);
    assert.match(b7, /^10\.32\.7\./);
    await mustReach(h1, 'a5', b5, 'same subnet across hosts must ping');
    const c1 = await ipOn(h1, 'c1', 'weave');
    const c2 = await ipOn(h2, 'c2', 'weave');
    // a5 has no route to 10.32.0.0/12 outside its /24, so give it one: isolation must hold anyway.
    await mustDocker(h1, ['exec', 'a5', 'ip', 'route', 'add', '10.32.0.0/12', 'dev', 'ethwe0']).catch(() => '');
    assert.equal(await ping(h1, 'a5', c1), false, 'net5 reached weave on the same host');
    assert.equal(await ping(h1, 'a5', c2), false, 'net5 reached weave across hosts');
    assert.equal(await ping(h1, 'a5', b7), false, 'net5 reached net7');
  });

  test('docker network connect / disconnect', async () => {
    // b7 (net7, h2) joins net5 and reaches a5 on h1; after disconnect it does not.
    // (A container on weave, 10.32.0.0/12, cannot also join a subnet inside it: Docker
    // refuses an address that overlaps a route the container already has.)
    await mustDocker(h2, ['network', 'connect', 'net5', 'b7']);
    const b7on5 = await ipOn(h2, 'b7', 'net5');
    const a5 = await ipOn(h1, 'a5', 'net5');
    assert.match(await mustDocker(h2, ['exec', 'b7', 'ip', '-o', 'addr', 'show']), new RegExp(`ethwe1\\s+inet ${b7on5.replace(/\./g, '\\.')}/24`));
    await mustReach(h2, 'b7', a5, 'b7 connected to net5 cannot reach a5');
    await mustDocker(h2, ['network', 'disconnect', 'net5', 'b7']);
    assert.doesNotMatch(await mustDocker(h2, ['exec', 'b7', 'ip', '-o', 'addr', 'show']), /10\.32\.5\./);
    assert.equal(await ping(h2, 'b7', a5), false, 'b7 still reaches net5 after disconnect');
    await mustReach(h2, 'b5', a5, 'net5 broke when b7 left it');
    await mustDocker(h2, ['network', 'connect', 'net5', 'b7']);
    await mustReach(h2, 'b7', a5, 'b7 cannot reach a5 after connecting again');
  });

  test('20 run/rm cycles in a /28 all succeed and give every address back', async (t) => {
    await mustDocker(h1, ['network', 'create', '-d', 'weavemesh', '--ipam-driver', 'weavemesh', '--subnet', '10.32.9.0/28', 'small']);
    const held = async (): Promise<number> => {
      const r = await h1.report();
      return r.IPAM.Owned.find((o: { Peer: string; Addresses: number }) => o.Peer === r.Router.Name)?.Addresses ?? 0;
    };
    const before = await held();
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) {
      const r = await docker(h1, ['run', '--rm', '--net=small', IMG, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'ethwe0']);
      assert.equal(r.code, 0, `cycle ${i}: ${r.stderr}`);
      assert.match(r.stdout, /inet 10\.32\.9\.\d+\/28/);
    }
    const ours = (Date.now() - t0) / 20;
    // Reference in the same run: the same container with no network at all (information only, not asserted).
    const t1 = Date.now();
    for (let i = 0; i < 5; i++) assert.equal((await docker(h1, ['run', '--rm', '--net=none', IMG, 'true'])).code, 0);
    const none = (Date.now() - t1) / 5;
    t.diagnostic(`docker run --rm per container: --net=small (weavemesh) ${ours.toFixed(0)} ms, --net=none ${none.toFixed(0)} ms, ratio ${(ours / none).toFixed(2)}`);
    await until('addresses freed', async () => (await held()) === before, 15_000);
    assert.equal(await held(), before);
  });

  test('the plugin socket answers malformed JSON, unknown paths and bad requests with an error object', async () => {
    const s = socketOf(h1);
    const bad = await rawPost(s, '/NetworkDriver.CreateNetwork', '{"NetworkID": ');
    assert.equal(bad.status, 400);
    assert.match(bad.json.Err, /malformed JSON/);
    const unknown = await rawPost(s, '/Nope.Nothing', '{}');
    assert.equal(unknown.status, 404);
    assert.match(unknown.json.Err, /unknown plugin call/);
    const wrong = await rawPost(s, '/NetworkDriver.Join', '{"NetworkID": "x", "EndpointID": "../../etc"}');
    assert.match(wrong.json.Err, /EndpointID/);
    const big = await rawPost(s, '/Plugin.Activate', `{"x":"${'a'.repeat(70_000)}"}`).catch((e: Error) => ({ status: 413, json: { Err: e.message } }));
    assert.equal(big.status, 413);
    // Still serving.
    const ok = await rawPost(s, '/Plugin.Activate', '');
    assert.deepEqual(ok.json, { Implements: ['NetworkDriver', 'IpamDriver'] });
    // Repeated/unknown Leave and DeleteEndpoint are fine (idempotent).
    assert.deepEqual((await rawPost(s, '/NetworkDriver.Leave', '{"NetworkID":"n","EndpointID":"e"}')).json, {});
    assert.deepEqual((await rawPost(s, '/NetworkDriver.DeleteEndpoint', '{"NetworkID":"n","EndpointID":"e"}')).json, {});
  });

  test('weave stop leaves dockerd healthy; after weave launch running containers stay connected and new ones work', async () => {
    const c2 = await ipOn(h2, 'c2', 'weave');
    await h1.mustWeave(['stop']);
    const ps = await docker(h1, ['ps', '-q'], 15_000);
    assert.equal(ps.code, 0, `dockerd unhealthy with the router down: ${ps.stderr}`);
    // A container on weave fails with an error (after dockerd's own bounded plugin retry), no hang.
    const t0 = Date.now();
    const down = await docker(h1, ['run', '--rm', '--net=weave', IMG, 'true'], 120_000);
    assert.notEqual(down.code, 0);
    assert.match(down.stderr, /weavemesh|plugin|connect/i);
    assert.ok(Date.now() - t0 < 100_000, `docker run took ${Date.now() - t0} ms with the router down`);
    assert.equal((await docker(h1, ['ps', '-q'], 15_000)).code, 0, 'dockerd still answers');
    await launch(h1, []);
    await until('connection after restart', async () => (await h1.mustWeave(['status', 'connections'])).includes('established'), 30_000);
    await mustReach(h1, 'c1', c2, 'c1 lost c2 across a router restart');
    await mustDocker(h1, ['run', '-d', '--net=weave', '--name', 'c3', IMG, 'sleep', '900']);
    assert.notEqual(await ipOn(h1, 'c3', 'weave'), await ipOn(h1, 'c1', 'weave'), 'c3 got c1\'s address');
    await mustReach(h1, 'c3', c2, 'a container started after the restart cannot reach c2');
    // Persisted state: the router knows the endpoints Docker created before the restart.
    assert.ok((await h1.report()).Plugin.Endpoints >= 2);
  });

  test('dockerd restart keeps the network weave; a --restart=always container comes back on the overlay, pingable and named', async () => {
    const d = daemons.get(h2)!;
    await mustDocker(h2, ['run', '-d', '--restart=always', '--net=weave', '--name', 'keep', IMG, 'sleep', '900']);
    const c1 = await ipOn(h1, 'c1', 'weave');
    await mustReach(h2, 'keep', c1, 'keep cannot reach c1 before the dockerd restart');
    await d.stop();
    await d.start();
    await mustDocker(h2, ['network', 'inspect', 'weave']);
    // dockerd restarts it by itself (through the plugin: CreateEndpoint, Join).
    await until('keep running again', async () => (await docker(h2, ['inspect', '-f', '{{.State.Running}}', 'keep'])).stdout.trim() === 'true', 90_000, 1000);
    const keep = await until('keep has an address', async () => {
      const r = await docker(h2, ['inspect', '-f', '{{(index .NetworkSettings.Networks "weave").IPAddress}}', 'keep']);
      return /^\d+\.\d+\.\d+\.\d+$/.test(r.stdout.trim()) ? r.stdout.trim() : '';
    }, 30_000, 500);
    await mustReach(h2, 'keep', c1, 'keep cannot reach c1 after the dockerd restart');
    await mustReach(h1, 'c1', keep, 'c1 cannot reach keep after the dockerd restart');
    await until('keep named on h1', async () => (await h1.weave(['dns-lookup', 'keep'])).stdout.trim() === keep, 30_000, 500);
    await mustDocker(h2, ['rm', '-f', 'c2']).catch(() => '');
    await mustDocker(h2, ['run', '-d', '--net=weave', '--name', 'c2b', IMG, 'sleep', '900']);
    await mustReach(h2, 'c2b', c1, 'a container after the dockerd restart cannot reach c1');
  });
});
