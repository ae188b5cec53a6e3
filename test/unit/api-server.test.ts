/**
 * ApiServer with its access policy (router/api/policy.ts) on real sockets, no root:
 * loopback TCP serves read-only routes only and counts refusals; the unix socket is
 * 0600 whatever the umask and serves mutations; malformed URLs and oversized bodies
 * get an answer at once. Ported from the sec-api branch to main's policy kinds
 * (access, route, content-type, url, size) and --api-insecure.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { ApiServer } from '../../router/api/server.js';

const dir = mkdtempSync(path.join(tmpdir(), 'api-server-'));
const sock = path.join(dir, 'weaver.sock');
const api = new ApiServer(() => undefined);
let stopped = 0;
api.on('GET', '/status', async () => ({ ok: true }));
api.on('POST', '/stop', async () => {
  stopped++;
  return {};
});
api.on('GET', '/ip/:id', async ({ path: p }) => ({ id: p[0] }));
api.ready = true;
let port = 0;
let insecurePort = 0;
after(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  body: string;
}
function request(opts: http.RequestOptions, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ timeout: 5000, ...opts }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        b += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${opts.method ?? 'GET'} ${opts.path} within 5 s`)));
    req.on('error', reject);
    req.end(body);
  });
}
const tcp = (method: string, p: string, headers: Record<string, string> = {}, body?: string, to = port): Promise<Reply> =>
  request({ host: '127.0.0.1', port: to, method, path: p, headers: { host: `127.0.0.1:${to}`, ...headers } }, body);
const unix = (method: string, p: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> =>
  request({ socketPath: sock, method, path: p, headers }, body);

test('listen: unix socket mode 0600 whatever the umask', async () => {
  const old = process.umask(0);
  try {
    await api.listenUnix(sock);
  } finally {
    process.umask(old);
  }
  assert.equal(statSync(sock).mode & 0o777, 0o600);
  const s = await api.listenTcp('127.0.0.1', 0);
  port = (s!.address() as AddressInfo).port;
});

test('TCP: GET /status served; mutations and detail GETs refused 403 with one line, counted, no state change', async () => {
  assert.equal((await tcp('GET', '/status')).status, 200);
  const before = { ...api.refused };
  const r1 = await tcp('POST', '/stop', { 'content-type': 'application/json' }, '{}');
  assert.equal(r1.status, 403);
  assert.match(JSON.parse(r1.body).error as string, /^POST \/stop is served only on the router's unix socket/);
  const r2 = await tcp('POST', '/stop', { origin: 'http://evil.example', 'content-type': 'text/plain' }, '{}');
  assert.equal(r2.status, 403);
  assert.match(JSON.parse(r2.body).error as string, /Origin http:\/\/evil\.example is not same-origin/);
  const r3 = await tcp('GET', '/ip/x');
  assert.equal(r3.status, 403);
  const r4 = await tcp('GET', '/status', { host: 'evil.example' });
  assert.equal(r4.status, 403);
  assert.match(r4.body, /DNS rebinding/);
  assert.equal(stopped, 0, 'POST /stop over TCP never reached the handler');
  assert.equal((api.refused.route ?? 0) - (before.route ?? 0), 2);
  assert.equal((api.refused.access ?? 0) - (before.access ?? 0), 2);
  for (const r of [r1, r2, r3, r4]) assert.ok(!r.body.trimEnd().includes('\n') && !r.body.includes('    at '), r.body);
});

test('unix socket: mutations served; a body that is not JSON-typed refused 415', async () => {
  assert.equal((await unix('POST', '/stop')).status, 200);
  assert.equal(stopped, 1);
  assert.equal((await unix('POST', '/stop', { 'content-type': 'application/json' }, '{}')).status, 200);
  const r = await unix('POST', '/stop', { 'content-type': 'text/plain' }, '{}');
  assert.equal(r.status, 415);
  assert.equal(stopped, 2);
  assert.deepEqual(JSON.parse((await unix('GET', '/ip/abc')).body), { id: 'abc' });
});

test('malformed percent-encoding → 400 at once, on both listeners', async () => {
  for (const call of [() => tcp('GET', '/ip/%E0%A4%A'), () => unix('GET', '/ip/%E0%A4%A'), () => unix('GET', '/%')]) {
    const r = await call();
    assert.equal(r.status, 400);
    assert.match(r.body, /malformed %-escape/);
  }
});

test('oversized body → 413, not a hang; a body that is not JSON → 400', async () => {
  const r = await unix('POST', '/stop', { 'content-type': 'application/json' }, 'x'.repeat((1 << 20) + 10));
  assert.equal(r.status, 413);
  const bad = await unix('POST', '/stop', { 'content-type': 'application/json' }, '{"x":');
  assert.equal(bad.status, 400);
  assert.match(bad.body, /not valid JSON/);
  assert.equal(stopped, 2);
});

test('--api-insecure: a JSON mutation over TCP is served; text/plain (a no-cors browser POST) still refused', async () => {
  api.insecure = true;
  try {
    const s = await api.listenTcp('127.0.0.1', 0);
    insecurePort = (s!.address() as AddressInfo).port;
  } finally {
    api.insecure = false;
  }
  assert.equal((await tcp('POST', '/stop', { 'content-type': 'application/json' }, '{}', insecurePort)).status, 200);
  assert.equal((await tcp('POST', '/stop', { 'content-type': 'text/plain' }, '{}', insecurePort)).status, 415);
  assert.equal((await tcp('POST', '/stop', { 'content-type': 'application/json', origin: 'http://evil.example' }, '{}', insecurePort)).status, 403);
  assert.equal(stopped, 3);
  // The first listener keeps its read-only policy.
  assert.equal((await tcp('POST', '/stop', { 'content-type': 'application/json' }, '{}')).status, 403);
});
