/**
 * The Docker API proxy's TLS (proxy/tls.ts, --tls / --tlsverify) on loopback sockets,
 * no root: a throwaway CA made with openssl in a temporary directory; a fake Docker
 * daemon (node:http on a unix socket) behind the proxy. With --tlsverify a client with
 * a CA-signed certificate gets the daemon's answer; no certificate, a self-signed one,
 * one from another CA, and plain HTTP get nothing. Bad files are one-line errors.
 * Needs the openssl command (skipped without it, except under CI=true, where it fails).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startProxy, exposedTcpAddress } from '../../proxy/proxy.js';
import { parseDockerAddress } from '../../proxy/intercept.js';
import { loadProxyTls, MAX_PEM_BYTES, ProxyTlsError } from '../../proxy/tls.js';
import type { ProxyAttacher, ProxyHandle } from '../../proxy/types.js';
import { makeTestCa, opensslMissing, type TestPki } from '../lib/test-ca.js';

const MISSING = opensslMissing();
const SKIP = MISSING !== null && !process.env.CI ? MISSING : false;

const attacher: ProxyAttacher = { attach: async () => [], release: async () => {} };

interface Got {
  status?: number;
  body?: string;
  error?: string;
}

/** GET `p` over TLS from a client with the given credentials; resolves with the answer or the error. */
function tlsGet(port: number, p: string, opts: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<Got> {
  return new Promise((resolve) => {
    const req = https.request({ host: '127.0.0.1', port, path: p, method: 'GET', ca: opts.ca, cert: opts.cert, key: opts.key, timeout: 10_000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', (err) => resolve({ error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

/** Send plain HTTP to a port and collect what comes back until it closes (bounded in time). */
function plainHttp(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    s.on('connect', () => s.write('GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    s.on('data', (c) => (got += c.toString('latin1')));
    const done = (): void => resolve(got);
    s.on('close', done);
    s.on('error', () => {});
    setTimeout(() => s.destroy(), 10_000).unref();
  });
}

describe('proxy TLS', { skip: SKIP }, () => {
  let dir = '';
  let pki: TestPki;
  let daemon: http.Server;
  const daemonSaw: string[] = [];
  const proxies: ProxyHandle[] = [];
  const logs: string[] = [];
  let ca: Buffer;
  const file = (f: string): Buffer => readFileSync(f);

  before(async () => {
    if (MISSING) throw new Error(`this test needs ${MISSING}`);
    dir = mkdtempSync(path.join(tmpdir(), 'tsw-proxy-tls-'));
    pki = makeTestCa(dir);
    ca = file(pki.caCert);
    // A fake Docker daemon: /version answers; /events stays open; container lists are empty.
    daemon = http.createServer((req, res) => {
      daemonSaw.push(req.url ?? '');
      if (req.url?.startsWith('/events')) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.flushHeaders();
        return;
      }
      const body = req.url?.startsWith('/containers/json') ? '[]' : JSON.stringify({ Version: 'fake-dockerd', ApiVersion: '1.41' });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
    await new Promise<void>((r) => daemon.listen(path.join(dir, 'docker.sock'), () => r()));
  });

  after(async () => {
    for (const p of proxies) await p.close().catch(() => {});
    daemon?.closeAllConnections();
    await new Promise<void>((r) => (daemon ? daemon.close(() => r()) : r()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function proxyWith(verify: boolean): Promise<{ port: number; handle: ProxyHandle }> {
    const handle = await startProxy({
      listen: ['tcp://127.0.0.1:0', `unix://${path.join(dir, `weave-${proxies.length}.sock`)}`],
      dockerHost: `unix://${path.join(dir, 'docker.sock')}`,
      attacher, noDefaultIpalloc: false, weavewaitPath: '/nonexistent/weavewait', log: (l) => logs.push(l),
      tls: { verify, ...(verify ? { caFile: pki.caCert } : {}), certFile: pki.serverCert, keyFile: pki.serverKey },
    });
    proxies.push(handle);
    return { port: Number(handle.addresses[0]!.split(':').pop()), handle };
  }

  it('--tlsverify: a client certificate signed by the CA gets the Docker API answer through the proxy', async () => {
    const { port, handle } = await proxyWith(true);
    assert.equal(handle.tls, 'verify');
    const r = await tlsGet(port, '/version', { ca, cert: file(pki.clientCert), key: file(pki.clientKey) });
    assert.equal(r.status, 200, r.error);
    assert.equal(JSON.parse(r.body!).Version, 'fake-dockerd');
    assert.ok(daemonSaw.includes('/version'));
    assert.ok(logs.some((l) => /tcp with TLS, client certificates required/.test(l)), logs.join('\n'));
  });

  it('--tlsverify: no client certificate, a self-signed one, or one from another CA is refused before any request reaches the daemon', async () => {
    const { port, handle } = await proxyWith(true);
    const before = daemonSaw.filter((u) => u === '/version').length;
    const tries = [
      await tlsGet(port, '/version', { ca }),
      await tlsGet(port, '/version', { ca, cert: file(pki.selfSignedCert), key: file(pki.selfSignedKey) }),
      await tlsGet(port, '/version', { ca, cert: file(pki.foreignCert), key: file(pki.foreignKey) }),
    ];
    for (const t of tries) {
      assert.equal(t.status, undefined, `refused client got HTTP ${t.status}: ${t.body}`);
      assert.ok(t.error, 'an error, not an answer');
    }
    assert.equal(daemonSaw.filter((u) => u === '/version').length, before, 'the daemon saw none of them');
    assert.ok(handle.tlsRefused!() >= 3, `counted ${handle.tlsRefused!()} refusals`);
  });

  it('plain HTTP to the TLS port gets no HTTP answer', async () => {
    const { port } = await proxyWith(true);
    const versions = (): number => daemonSaw.filter((u) => u === '/version').length;
    const before = versions();
    const got = await plainHttp(port);
    assert.doesNotMatch(got, /^HTTP\//);
    assert.doesNotMatch(got, /fake-dockerd/);
    assert.equal(versions(), before, 'the daemon saw no /version');
  });

  it('the unix socket listener stays plain HTTP (file permissions guard it)', async () => {
    const { handle } = await proxyWith(true);
    const sock = handle.addresses[1]!.replace(/^unix:\/\//, '');
    const body = await new Promise<string>((resolve, reject) => {
      http.get({ socketPath: sock, path: '/version' }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve(b));
      }).on('error', reject);
    });
    assert.match(body, /fake-dockerd/);
  });

  it('--tls without --tlsverify: encryption only, any client is served; the server certificate is the one given', async () => {
    const { port, handle } = await proxyWith(false);
    assert.equal(handle.tls, 'tls');
    const r = await tlsGet(port, '/version', { ca });
    assert.equal(r.status, 200, r.error);
    const peerCert = await new Promise<tls.PeerCertificate>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
        resolve(s.getPeerCertificate());
        s.end();
      });
      s.on('error', reject);
    });
    assert.equal(peerCert.subject.CN, 'localhost');
  });

  it('non-loopback -H tcp:// is allowed with --tlsverify only (--tls alone encrypts but authenticates no one)', () => {
    const a = parseDockerAddress('tcp://0.0.0.0:12375');
    assert.equal(exposedTcpAddress(a, false, 'verify'), null);
    assert.match(exposedTcpAddress(a, false, 'tls')!, /without --tlsverify .*anyone who reaches it/);
    assert.match(exposedTcpAddress(a, false)!, /without TLS: use --tlsverify/);
    assert.equal(exposedTcpAddress(a, true), null);
    assert.equal(exposedTcpAddress(parseDockerAddress('tcp://127.0.0.1:1'), false), null);
  });

  it('unreadable or unusable files: one-line errors naming the flag and path, before anything listens', async () => {
    const sub = path.join(dir, 'bad');
    mkdirSync(sub);
    const garbage = path.join(sub, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    const huge = path.join(sub, 'huge.pem');
    writeFileSync(huge, Buffer.alloc(MAX_PEM_BYTES + 1, 0x41));
    const good = { certFile: pki.serverCert, keyFile: pki.serverKey };
    const cases: Array<[Parameters<typeof loadProxyTls>[0], RegExp]> = [
      [{ verify: false, ...good, certFile: path.join(sub, 'missing.pem') }, /^cannot read --tlscert ".*missing\.pem": ENOENT$/],
      [{ verify: false, ...good, keyFile: sub }, /^cannot read --tlskey ".*bad": (not a regular file|EISDIR)$/],
      [{ verify: false, ...good, certFile: garbage }, /^--tlscert ".*garbage\.pem" holds no PEM certificate/],
      [{ verify: false, ...good, certFile: huge }, /^--tlscert ".*huge\.pem" is \d+ bytes, more than/],
      [{ verify: false, ...good, keyFile: garbage }, /^--tlskey ".*garbage\.pem" is not a usable PEM private key/],
      [{ verify: false, ...good, keyFile: pki.clientKey }, /^--tlskey ".*client\.key" is not the key of --tlscert/],
      [{ verify: true, ...good }, /^--tlsverify needs --tlscacert/],
      [{ verify: true, ...good, caFile: garbage }, /^--tlscacert ".*garbage\.pem" holds no PEM certificate/],
    ];
    for (const [files, re] of cases) {
      assert.throws(() => loadProxyTls(files), (e: Error) => e instanceof ProxyTlsError && re.test(e.message) && !e.message.includes('\n'), `${JSON.stringify(files)} → ${re}`);
    }
    await assert.rejects(startProxy({
      listen: ['tcp://127.0.0.1:0'], dockerHost: `unix://${path.join(dir, 'docker.sock')}`, attacher, noDefaultIpalloc: false, weavewaitPath: '/x', log: () => {},
      tls: { verify: false, ...good, keyFile: pki.clientKey },
    }), /is not the key of --tlscert/);
    await assert.rejects(startProxy({
      listen: [`unix://${path.join(sub, 'p.sock')}`], dockerHost: `unix://${path.join(dir, 'docker.sock')}`, attacher, noDefaultIpalloc: false, weavewaitPath: '/x', log: () => {},
      tls: { verify: false, ...good },
    }), /apply to -H tcp:\/\/ addresses, and none was given/);
  });
});
