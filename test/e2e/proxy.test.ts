/**
 * End-to-end tests of the Docker API proxy against a real, private dockerd
 * (its own namespace, data and socket; no bridge, no iptables) and the real
 * `docker` CLI pointed at the proxy, with a fake attacher that gives
 * containers a veth `ethwe` with a counter-based address.
 *
 * Needs root, dockerd/containerd/runc (Debian docker.io), the docker CLI,
 * busybox-static and gcc (for weavewait); skipped with a reason otherwise.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProxy, defaultWeavewaitPath } from '../../proxy/proxy.js';
import type { ProxyHandle } from '../../proxy/types.js';
import { startDockerd, dockerdAvailable, type Dockerd } from './docker/dockerd.js';
import { importBusyboxImage, busyboxStaticAvailable } from './docker/image.js';
import { FakeAttacher } from './docker/fake-attacher.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const NETNS = `tsw-px-${process.pid}`;
const IMG = 'tsw-px-bb:1';
const NOSH = 'tsw-px-nosh:1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function skipReason(): string | null {
  const r = dockerdAvailable() ?? busyboxStaticAvailable();
  if (r) return r;
  const ww = defaultWeavewaitPath();
  if (!fs.existsSync(ww)) {
    try {
      execFileSync('sh', [path.join(ROOT, 'proxy/weavewait/build.sh'), ww], { stdio: 'pipe' });
    } catch (err) {
      return `cannot build weavewait: ${(err as Error).message}`;
    }
  }
  return null;
}
const SKIP = skipReason();

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the docker CLI against `host`, bounded in time; optional stdin. */
function docker(host: string, args: string[], opts: { input?: string; timeoutMs?: number; viaScript?: boolean } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const env = { ...process.env, DOCKER_HOST: host, DOCKER_CONFIG: CLI_CONFIG, DOCKER_BUILDKIT: '0' };
    const [cmd, argv] = opts.viaScript
      ? ['script', ['-qec', ['docker', ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' '), '/dev/null']]
      : ['docker', args];
    const p = spawn(cmd, argv as string[], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.stdin.on('error', () => {});
    if (opts.input !== undefined) p.stdin.end(opts.input);
    else p.stdin.end();
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A raw HTTP/1.1 exchange on a unix socket; resolves with everything the server sent before closing (bounded). */
function rawHttp(socketPath: string, request: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ path: socketPath });
    let got = '';
    s.on('connect', () => s.write(request));
    s.on('data', (c) => (got += c.toString()));
    const t = setTimeout(() => s.destroy(), timeoutMs);
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve(got);
    });
  });
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

let CLI_CONFIG = '';

describe('docker API proxy against a real dockerd', { skip: SKIP ?? false, timeout: 600_000 }, () => {
  let tmp = '';
  let dockerd: Dockerd | null = null;
  let proxy: ProxyHandle | null = null;
  const extraProxies: ProxyHandle[] = [];
  const attacher = new FakeAttacher(NETNS);
  const logs: string[] = [];
  let P = ''; // DOCKER_HOST of the proxy
  let cidn = 0;

  /** `docker run` through the proxy with a cidfile; resolves with the run and the container id. */
  async function runWithId(args: string[], opts: { input?: string; host?: string; timeoutMs?: number } = {}): Promise<Run & { id: string }> {
    const cid = path.join(tmp, `cid-${cidn++}`);
    const r = await docker(opts.host ?? P, ['run', `--cidfile=${cid}`, ...args], opts);
    const id = fs.existsSync(cid) ? fs.readFileSync(cid, 'utf8').trim() : '';
    return { ...r, id };
  }

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsw-px-test-'));
    CLI_CONFIG = path.join(tmp, 'cli');
    fs.mkdirSync(CLI_CONFIG);
    execFileSync('ip', ['netns', 'add', NETNS]);
    execFileSync('ip', ['-n', NETNS, 'link', 'set', 'lo', 'up']);
    dockerd = await startDockerd({ name: 'd1', netns: NETNS });
    await importBusyboxImage({
      dockerHost: dockerd.host,
      tag: IMG,
      applets: ['sh', 'ip', 'cat', 'sleep', 'ls', 'echo', 'true', 'false', 'tty', 'seq'],
      changes: ['CMD ["sh"]'],
    });
    proxy = await startProxy({
      listen: [`unix://${path.join(tmp, 'weave.sock')}`],
      dockerHost: dockerd.host,
      attacher,
      noDefaultIpalloc: false,
      weavewaitPath: defaultWeavewaitPath(),
      log: (l) => logs.push(l),
    });
    P = proxy.addresses[0];
  });

  after(async () => {
    for (const p of extraProxies) await p.close().catch(() => {});
    await proxy?.close().catch(() => {});
    await dockerd?.destroy().catch(() => {});
    try {
      execFileSync('ip', ['netns', 'del', NETNS], { stdio: 'ignore' });
    } catch {
      // never created
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('forwards plain API calls and uploads (docker version, import through the proxy)', async () => {
    assert.deepEqual(proxy!.addresses, [`unix://${path.join(tmp, 'weave.sock')}`]);
    const v = await docker(P, ['version', '--format', '{{.Server.Version}}']);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^20\.|^\d+\./);
    // An image without a shell, uploaded through the proxy (POST /images/create with a tar body).
    await importBusyboxImage({
      dockerHost: P,
      tag: NOSH,
      applets: ['ip', 'cat'],
      changes: ['ENTRYPOINT ["/bin/ip"]', 'CMD ["-4", "-o", "addr", "show", "dev", "ethwe"]'],
      env: { ...process.env, DOCKER_CONFIG: CLI_CONFIG },
    });
    const imgs = await docker(P, ['images', '--format', '{{.Repository}}:{{.Tag}}']);
    assert.match(imgs.stdout, /tsw-px-nosh:1/);
    // docker build: the context tar streams through the proxy, the build log streams back
    const ctx = path.join(tmp, 'ctx');
    fs.mkdirSync(ctx);
    const payload = Buffer.alloc(600_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) % 251;
    fs.writeFileSync(path.join(ctx, 'payload'), payload);
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${IMG}\nCOPY payload /payload\nRUN ls -l /payload > /size\nCMD ["cat", "/size"]\n`);
    const b = await docker(P, ['build', '-t', 'tsw-px-built:1', ctx], { timeoutMs: 60_000 });
    assert.equal(b.code, 0, b.stderr);
    const r = await docker(P, ['run', '--rm', 'tsw-px-built:1']);
    assert.match(r.stdout, /\b600000\b.*\/payload/, r.stderr);
  });

  it('the first command of a container with a shell already sees ethwe with its address', async () => {
    const r = await runWithId(['--rm', IMG, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'ethwe']);
    assert.equal(r.code, 0, r.stderr);
    const calls = attacher.attachesOf(r.id);
    assert.equal(calls.length, 1, `one attach for ${r.id}`);
    assert.deepEqual(calls[0].specs, []);
    assert.ok(r.stdout.includes(`inet ${calls[0].cidrs[0]}`), `output ${r.stdout} names ${calls[0].cidrs[0]}`);
    // image CMD ["sh"] with input on stdin also runs behind weavewait
    const s = await runWithId(['--rm', '-i', IMG], { input: 'cat /sys/class/net/ethwe/operstate; echo $((6*7))\n' });
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /^up\n42\n$/);
  });

  it('images without a shell: ENTRYPOINT/CMD combinations are preserved behind weavewait', async () => {
    // no /bin/sh in the image at all
    const sh = await docker(P, ['run', '--rm', '--entrypoint', '/bin/sh', NOSH, '-c', 'true']);
    assert.notEqual(sh.code, 0);
    // image ENTRYPOINT + image CMD
    const a = await runWithId(['--rm', NOSH]);
    assert.equal(a.code, 0, a.stderr);
    assert.ok(a.stdout.includes(attacher.attachesOf(a.id)[0].cidrs[0]), a.stdout);
    // image ENTRYPOINT + request CMD
    const b = await runWithId(['--rm', NOSH, '-o', 'link', 'show', 'dev', 'ethwe']);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /ethwe.*<[A-Z_,]*\bUP\b[A-Z_,-]*>/);
    assert.doesNotMatch(b.stdout, /inet /);
    // request ENTRYPOINT drops the image CMD
    const c = await runWithId(['--rm', '--entrypoint', '/bin/cat', NOSH, '/sys/class/net/ethwe/address']);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout.trim(), /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    // what the daemon stored: /w/w in front of the image's entrypoint, the image CMD kept as CMD
    const cr = await docker(P, ['create', NOSH]);
    assert.equal(cr.code, 0, cr.stderr);
    const id = cr.stdout.trim();
    const ins = await docker(P, ['inspect', '--format', '{{json .Config.Entrypoint}} {{json .Config.Cmd}}', id]);
    assert.equal(ins.stdout.trim(), '["/w/w","/bin/ip"] ["-4","-o","addr","show","dev","ethwe"]');
    assert.equal((await docker(P, ['rm', id])).code, 0);
  });

  it('WEAVE_CIDR: none gets no ethwe and no attach; subnets and addresses are passed to the attacher; junk is refused', async () => {
    const none = await runWithId(['--rm', '-e', 'WEAVE_CIDR=none', IMG, 'ls', '/sys/class/net']);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout.split(/\s+/).filter(Boolean).sort().join(','), 'lo');
    assert.equal(attacher.attachesOf(none.id).length, 0);

    const sub = await runWithId(['--rm', '-e', 'WEAVE_CIDR=net:10.32.2.0/24', IMG, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'ethwe']);
    assert.equal(sub.code, 0, sub.stderr);
    assert.deepEqual(attacher.attachesOf(sub.id)[0].specs, ['net:10.32.2.0/24']);
    assert.match(sub.stdout, /inet 10\.32\.2\.\d+\/24/);

    const two = await runWithId(['--rm', '-e', 'WEAVE_CIDR=ip:10.40.0.9/16 net:default', IMG, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'ethwe']);
    assert.equal(two.code, 0, two.stderr);
    assert.deepEqual(attacher.attachesOf(two.id)[0].specs, ['ip:10.40.0.9/16', 'net:default']);
    assert.match(two.stdout, /inet 10\.40\.0\.9\/16/);

    const bad = await runWithId(['--rm', '-e', 'WEAVE_CIDR=bogus', IMG, 'true']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /WEAVE_CIDR word 'bogus'/);
  });

  it('--net=host is never attached; --net=container:X shares X\'s ethwe', async () => {
    const host = await runWithId(['--rm', '--net=host', IMG, 'ls', '/sys/class/net']);
    assert.equal(host.code, 0, host.stderr);
    assert.doesNotMatch(host.stdout, /ethwe/);
    assert.equal(attacher.attachesOf(host.id).length, 0);

    const x = await runWithId(['-d', IMG, 'sleep', '300']);
    assert.equal(x.code, 0, x.stderr);
    const xAddr = attacher.attachesOf(x.id)[0].cidrs[0];
    const shared = await runWithId(['--rm', `--net=container:${x.id}`, IMG, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'ethwe']);
    assert.equal(shared.code, 0, shared.stderr);
    assert.ok(shared.stdout.includes(xAddr), shared.stdout);
    assert.equal(attacher.attachesOf(shared.id).length, 0);
    await docker(P, ['rm', '-f', x.id]);
  });

  it('--no-default-ipalloc attaches only containers that set WEAVE_CIDR', async () => {
    const p2 = await startProxy({
      listen: [`unix://${path.join(tmp, 'nodefault.sock')}`],
      dockerHost: dockerd!.host,
      attacher,
      noDefaultIpalloc: true,
      weavewaitPath: defaultWeavewaitPath(),
      log: (l) => logs.push(l),
    });
    try {
      await noDefaultChecks(p2.addresses[0]);
    } finally {
      await p2.close(); // a second proxy on the same daemon would also attach on start events
    }
  });

  async function noDefaultChecks(host: string): Promise<void> {
    const plain = await runWithId(['--rm', IMG, 'ls', '/sys/class/net'], { host });
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stdout, /ethwe/);
    assert.equal(attacher.attachesOf(plain.id).length, 0);
    const asked = await runWithId(['--rm', '-e', 'WEAVE_CIDR=net:default', IMG, 'ls', '/sys/class/net'], { host });
    assert.equal(asked.code, 0, asked.stderr);
    assert.match(asked.stdout, /ethwe/);
    assert.deepEqual(attacher.attachesOf(asked.id)[0].specs, ['net:default']);
  }

  it('listens on unix and tcp addresses, refuses a socket in use, removes its socket on close', async () => {
    const sock = path.join(tmp, 'sub', 'dir', 'p4.sock');
    const p4 = await startProxy({
      listen: [`unix://${sock}`, 'tcp://127.0.0.1:0'],
      dockerHost: dockerd!.host,
      attacher,
      noDefaultIpalloc: false,
      weavewaitPath: defaultWeavewaitPath(),
      log: () => {},
    });
    try {
      assert.equal(p4.addresses[0], `unix://${sock}`);
      const tcp = p4.addresses[1];
      assert.match(tcp, /^tcp:\/\/127\.0\.0\.1:[1-9]\d*$/);
      const v = await docker(tcp, ['version', '--format', '{{.Server.Os}}']);
      assert.equal(v.stdout.trim(), 'linux', v.stderr);
      await assert.rejects(
        startProxy({ listen: [`unix://${sock}`], dockerHost: dockerd!.host, attacher, noDefaultIpalloc: false, weavewaitPath: '/x', log: () => {} }),
        /another process is listening there/,
      );
      await assert.rejects(
        startProxy({ listen: ['udp://1.2.3.4:5'], dockerHost: dockerd!.host, attacher, noDefaultIpalloc: false, weavewaitPath: '/x', log: () => {} }),
        /expected unix:\/\/\/path or tcp:\/\/host:port/,
      );
    } finally {
      await p4.close();
    }
    assert.equal(fs.existsSync(sock), false);
    // a stale socket file (a crashed proxy's) is replaced: leave one behind with SIGKILL
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise((r) => child.stdout.once('data', r));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    assert.equal(fs.statSync(sock).isSocket(), true);
    const p5 = await startProxy({ listen: [`unix://${sock}`], dockerHost: dockerd!.host, attacher, noDefaultIpalloc: false, weavewaitPath: '/x', log: () => {} });
    await p5.close();
  });


  it('docker run -i and -t (through script) carry stdin and output over the hijacked connection', async () => {
    const lines = Array.from({ length: 200 }, (_, i) => `line-${i}`).join('\n') + '\n';
    const i = await runWithId(['--rm', '-i', IMG, 'cat'], { input: lines });
    assert.equal(i.code, 0, i.stderr);
    assert.equal(i.stdout, lines);
    const t = await docker(P, ['run', '--rm', '-it', IMG, 'sh'], { viaScript: true, input: 'tty; echo hi-$((6*7)); exit\n' });
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /\/dev\/pts\/\d+/);
    assert.match(t.stdout, /hi-42/);
  });

  it('docker exec (plain and -i), docker logs -f and docker events stream through the proxy', async () => {
    const since = Math.floor(Date.now() / 1000) - 1;
    const c = await runWithId(['-d', IMG, 'sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done']);
    assert.equal(c.code, 0, c.stderr);
    const addr = attacher.attachesOf(c.id)[0].cidrs[0];
    const e = await docker(P, ['exec', c.id, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'ethwe']);
    assert.ok(e.stdout.includes(addr), e.stdout);
    const ei = await docker(P, ['exec', '-i', c.id, 'cat'], { input: 'via exec -i\n' });
    assert.equal(ei.stdout, 'via exec -i\n');

    // logs -f: lines keep arriving while the container runs
    const env = { ...process.env, DOCKER_HOST: P, DOCKER_CONFIG: CLI_CONFIG };
    const lf = spawn('docker', ['logs', '-f', c.id], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    lf.stdout.on('data', (b: Buffer) => (out += b.toString()));
    try {
      // tick-N for a later N than existed when we asked proves it is live, not a replay
      const first = Number(/tick-(\d+)/.exec(await (async () => {
        await waitFor('first logs -f line', () => /tick-\d+/.test(out), 10_000);
        return out;
      })())![1]);
      await waitFor(`tick-${first + 5}`, () => out.includes(`tick-${first + 5}\n`), 10_000);
    } finally {
      lf.kill('SIGKILL');
    }
    await docker(P, ['rm', '-f', c.id]);
    const until = Math.floor(Date.now() / 1000) + 1;
    const ev = await docker(P, ['events', '--since', String(since), '--until', String(until), '--filter', `container=${c.id}`, '--format', '{{.Action}}']);
    assert.equal(ev.code, 0, ev.stderr);
    for (const a of ['create', 'start', 'destroy']) assert.ok(ev.stdout.split('\n').includes(a), `${a} in ${ev.stdout}`);
    // the proxy is still fine after a client hung up on a stream
    assert.equal((await docker(P, ['ps', '-q'])).code, 0);
  });

  it('docker restart and stop/start re-attach with the same specs and address', async () => {
    const r = await runWithId(['-d', '-e', 'WEAVE_CIDR=net:10.32.2.0/24', IMG, 'sleep', '300']);
    assert.equal(r.code, 0, r.stderr);
    const first = attacher.attachesOf(r.id);
    assert.equal(first.length, 1);
    const rs = await docker(P, ['restart', '-t', '0', r.id]);
    assert.equal(rs.code, 0, rs.stderr);
    const after = attacher.attachesOf(r.id);
    assert.equal(after.length, 2);
    assert.notEqual(after[1].pid, after[0].pid);
    assert.deepEqual(after[1].specs, ['net:10.32.2.0/24']);
    const e = await docker(P, ['exec', r.id, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'ethwe']);
    assert.ok(e.stdout.includes(`inet ${first[0].cidrs[0]}`), `${e.code} ${e.stdout} ${e.stderr} ${JSON.stringify(attacher.attachesOf(r.id))}`);
    assert.equal((await docker(P, ['stop', '-t', '0', r.id])).code, 0);
    assert.equal((await docker(P, ['start', r.id])).code, 0);
    assert.equal(attacher.attachesOf(r.id).length, 3);
    const e2 = await docker(P, ['exec', r.id, 'cat', '/sys/class/net/ethwe/operstate']);
    assert.equal(e2.stdout.trim(), 'up', `exec after start: ${e2.code} ${e2.stderr} ${JSON.stringify(attacher.attachesOf(r.id))}`);
    assert.equal(attacher.releasesOf(r.id), 0, 'stop/restart must not free the address');
    await docker(P, ['rm', '-f', r.id]);
    await waitFor('release after rm', () => attacher.releasesOf(r.id) === 1, 10_000);
  });

  it('30 --rm containers in a row: 30 attaches and 30 releases', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await runWithId(['--rm', IMG, 'cat', '/sys/class/net/ethwe/operstate']);
      assert.equal(r.code, 0, `run ${i}: ${r.stderr}`);
      assert.equal(r.stdout.trim(), 'up');
      ids.push(r.id);
    }
    assert.equal(new Set(ids).size, 30);
    for (const id of ids) assert.equal(attacher.attachesOf(id).length, 1);
    await waitFor('30 releases', () => ids.every((id) => attacher.releasesOf(id) === 1), 15_000);
  });

  it('an attach failure is reported to the client and weavewait gives up with a clear message', async () => {
    attacher.failWith = 'fake IPAM: range exhausted';
    let r: Run & { id: string };
    try {
      r = await runWithId(['-d', '-e', 'WEAVEWAIT_TIMEOUT=1', IMG, 'echo', 'must-not-run']);
    } finally {
      attacher.failWith = null;
    }
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /attaching it to the weave network failed: fake IPAM: range exhausted/);
    assert.ok(r.id);
    await waitFor('weavewait to give up', async () => (await docker(P, ['inspect', '--format', '{{.State.Status}}', r.id])).stdout.trim() === 'exited', 10_000);
    const l = await docker(P, ['logs', r.id]);
    assert.match(l.stderr, /weavewait: timed out after 1s waiting for interface ethwe/);
    assert.doesNotMatch(l.stdout, /must-not-run/);
    const code = await docker(P, ['inspect', '--format', '{{.State.ExitCode}}', r.id]);
    assert.equal(code.stdout.trim(), '1');
    await docker(P, ['rm', '-f', r.id]);
  });

  it('malformed requests are answered, not fatal', async () => {
    const sock = P.slice('unix://'.length);
    const garbage = await rawHttp(sock, 'GARBAGE\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400 /);
    const badJson = await rawHttp(sock, 'POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{bad}');
    // the daemon's own verdict, forwarded
    assert.match(badJson, /^HTTP\/1\.1 [45]\d\d [\s\S]*invalid character/);
    const notObject = await rawHttp(sock, 'POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]');
    assert.match(notObject, /^HTTP\/1\.1 [45]\d\d /);
    const truncated = await rawHttp(sock, 'POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"Image":', 500);
    assert.equal(truncated, '');
    assert.equal((await docker(P, ['ps', '-q'])).code, 0);
  });

  it('daemon down: a clear error naming the daemon address, and the proxy keeps running; a daemon restart re-attaches', async () => {
    // A proxy whose daemon never existed.
    const missing = path.join(tmp, 'no-such-docker.sock');
    const p3 = await startProxy({
      listen: [`unix://${path.join(tmp, 'down.sock')}`, 'tcp://127.0.0.1:0'],
      dockerHost: `unix://${missing}`,
      attacher,
      noDefaultIpalloc: false,
      weavewaitPath: defaultWeavewaitPath(),
      log: (l) => logs.push(l),
    });
    extraProxies.push(p3);
    assert.match(p3.addresses[1], /^tcp:\/\/127\.0\.0\.1:\d+$/);
    for (const addr of p3.addresses) {
      const r = await docker(addr, ['ps']);
      assert.notEqual(r.code, 0);
      assert.ok(r.stderr.includes(`Cannot connect to the Docker daemon at unix://${missing}`), r.stderr);
      assert.match(r.stderr, /Is the docker daemon running\?/);
    }
    const raw = await rawHttp(path.join(tmp, 'down.sock'), 'GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 502 /);
    assert.match(raw, /\{"message":"Cannot connect to the Docker daemon at unix:\/\/[^"]*: connect ENOENT\. Is the docker daemon running\?"\}/);
    const up = await rawHttp(path.join(tmp, 'down.sock'), 'POST /containers/x/attach?stream=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n');
    assert.match(up, /^HTTP\/1\.1 502 [\s\S]*Cannot connect to the Docker daemon/);

    // The real daemon restarts under a running proxy: containers come back with their addresses.
    const r = await runWithId(['-d', '--restart=always', IMG, 'sleep', '300']);
    assert.equal(r.code, 0, r.stderr);
    const before = attacher.attachesOf(r.id);
    await dockerd!.stop();
    const down = await docker(P, ['ps']);
    assert.ok(down.stderr.includes(`Cannot connect to the Docker daemon at ${dockerd!.host}`), down.stderr);
    await dockerd!.start();
    await waitFor('re-attach after the daemon restart', () => attacher.attachesOf(r.id).length > before.length, 20_000);
    const again = attacher.attachesOf(r.id);
    assert.notEqual(again[again.length - 1].pid, before[0].pid);
    await waitFor('container running again', async () => (await docker(P, ['exec', r.id, 'true'])).code === 0, 20_000);
    const e = await docker(P, ['exec', r.id, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'ethwe']);
    assert.ok(e.stdout.includes(`inet ${before[0].cidrs[0]}`), e.stdout);
    await docker(P, ['rm', '-f', r.id]);
  });
});
