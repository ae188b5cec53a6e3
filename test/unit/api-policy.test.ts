/**
 * Who may use the API (router/api/policy.ts) and the launch-time refusals of
 * issue #13: listen addresses, proxy TCP exposure, password strength, peer addresses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkAccess, checkContentType, checkRoute, decodePath, isLoopbackHost, TCP_READ_ONLY } from '../../router/api/policy.js';
import { checkListenAddress } from '../../router/daemon/config.js';
import { exposedTcpAddress } from '../../proxy/proxy.js';
import { parseDockerAddress } from '../../proxy/intercept.js';
import { passwordWeakness } from '../../cli/password.js';
import { isHostLike, normaliseAddress } from '../../router/mesh/connection-maker.js';

test('Host must be a loopback literal or localhost', () => {
  for (const h of ['127.0.0.1:6784', 'localhost:6784', 'localhost', '[::1]:6784', '127.9.9.9', 'LOCALHOST:1']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['evil.example:6784', '10.0.0.1:6784', '127.0.0.1.evil.example', 'localhost.evil', '127.0.0.1@evil', '127.0.0.1/x', '', '0.0.0.0:6784', '[::]:6784']) assert.equal(isLoopbackHost(h), false, h);
});

test('checkAccess: unix socket always; TCP needs a loopback peer, loopback Host and same-origin Origin', () => {
  assert.equal(checkAccess(undefined, 'http://evil.example', 'evil.example'), null, 'unix socket');
  assert.equal(checkAccess('127.0.0.1', undefined, '127.0.0.1:6784'), null);
  assert.equal(checkAccess('127.0.0.1', 'http://127.0.0.1:6784', '127.0.0.1:6784'), null);
  assert.equal(checkAccess('::1', 'http://[::1]:6784', '[::1]:6784'), null);
  assert.match(checkAccess('10.1.1.1', undefined, '127.0.0.1:6784')!, /not loopback/);
  assert.match(checkAccess('127.0.0.1', undefined, undefined)!, /DNS rebinding/);
  assert.match(checkAccess('127.0.0.1', undefined, 'evil.example:6784')!, /DNS rebinding/);
  assert.match(checkAccess('127.0.0.1', 'http://evil.example:6784', 'evil.example:6784')!, /DNS rebinding/);
  assert.match(checkAccess('127.0.0.1', 'http://localhost:3000', '127.0.0.1:6784')!, /not same-origin/, 'another local port is another origin');
  assert.match(checkAccess('127.0.0.1', 'http://127.0.0.1:6785', '127.0.0.1:6784')!, /not same-origin/);
  assert.match(checkAccess('127.0.0.1', 'null', '127.0.0.1:6784')!, /malformed Origin/);
  assert.match(checkAccess('127.0.0.1', 'file:///x', '127.0.0.1:6784')!, /not http/);
  // --api-insecure: any peer and Host, but still no foreign Origin.
  assert.equal(checkAccess('10.1.1.1', undefined, '10.0.0.5:6784', true), null);
  assert.match(checkAccess('10.1.1.1', 'http://evil.example', '10.0.0.5:6784', true)!, /not same-origin/);
});

test('checkRoute: TCP serves only GET/HEAD of the read-only paths', () => {
  const tcp = { kind: 'tcp' as const, insecure: false };
  for (const p of TCP_READ_ONLY) assert.equal(checkRoute(tcp, 'GET', p), null, p);
  assert.equal(checkRoute(tcp, 'HEAD', '/status'), null);
  for (const [m, p] of [['POST', '/stop'], ['POST', '/connect'], ['POST', '/attach'], ['POST', '/ip/x'], ['DELETE', '/peer/x'], ['POST', '/reset'], ['GET', '/ps'], ['GET', '/macs'], ['GET', '/ip/x'], ['POST', '/status'], ['GET', '/status/']]) {
    assert.match(checkRoute(tcp, m, p)!, /unix socket/, `${m} ${p}`);
  }
  assert.equal(checkRoute({ kind: 'unix', insecure: false }, 'POST', '/stop'), null);
  assert.equal(checkRoute({ kind: 'tcp', insecure: true }, 'POST', '/stop'), null);
});

test('checkContentType: JSON for every TCP mutation; body-less calls allowed on the unix socket', () => {
  const tcp = { kind: 'tcp' as const, insecure: true };
  const unix = { kind: 'unix' as const, insecure: false };
  assert.equal(checkContentType(tcp, 'GET', undefined, false), null);
  assert.equal(checkContentType(tcp, 'POST', 'application/json; charset=utf-8', true), null);
  assert.match(checkContentType(tcp, 'POST', undefined, false)!, /application\/json/);
  assert.match(checkContentType(tcp, 'POST', 'text/plain', true)!, /application\/json/);
  assert.match(checkContentType(tcp, 'POST', 'application/jsonx', true)!, /application\/json/);
  assert.equal(checkContentType(unix, 'POST', undefined, false), null, "Weave's curl -X POST /ip/ID");
  assert.match(checkContentType(unix, 'POST', 'text/plain', true)!, /application\/json/);
});

test('decodePath: malformed %-escapes are null, never a throw', () => {
  assert.deepEqual(decodePath('/ip/a%20b'), ['ip', 'a b']);
  assert.equal(decodePath('/ip/%E0%A4%A'), null);
  assert.equal(decodePath('/%'), null);
});

test('listen addresses: non-loopback needs --api-insecure', () => {
  assert.equal(checkListenAddress('--api-addr', '127.0.0.1:6784', false), null);
  assert.equal(checkListenAddress('--api-addr', 'localhost:1', false), null);
  assert.equal(checkListenAddress('--metrics-addr', '', false), null, 'disabled');
  assert.match(checkListenAddress('--api-addr', '0.0.0.0:6784', false)!, /--api-insecure/);
  assert.match(checkListenAddress('--metrics-addr', '192.168.1.5:6782', false)!, /--api-insecure/);
  assert.equal(checkListenAddress('--api-addr', '0.0.0.0:6784', true), null);
});

test('proxy: a non-loopback tcp:// address needs --proxy-insecure-tcp', () => {
  assert.equal(exposedTcpAddress(parseDockerAddress('tcp://127.0.0.1:12375'), false), null);
  assert.equal(exposedTcpAddress(parseDockerAddress('unix:///run/weave/weave.sock'), false), null);
  assert.match(exposedTcpAddress(parseDockerAddress('tcp://0.0.0.0:12375'), false)!, /--proxy-insecure-tcp/);
  assert.equal(exposedTcpAddress(parseDockerAddress('tcp://0.0.0.0:12375'), true), null);
});

test('password strength: length and variety', () => {
  assert.match(passwordWeakness('short')!, /too short \(5 characters\)/);
  assert.match(passwordWeakness('aaaaaaaaaaaaaaaa')!, /distinct/);
  assert.match(passwordWeakness('121212121212')!, /distinct/);
  assert.equal(passwordWeakness('correct horse battery staple'), null);
  assert.equal(passwordWeakness('ünïcödé-pässwörd'), null);
});

test('peer addresses: invalid IPv4 literals, ports and names are refused, names that may resolve kept', () => {
  assert.equal(normaliseAddress('10.0.0.1', 6783), '10.0.0.1:6783');
  assert.equal(normaliseAddress('host-1.example:7000', 6783), 'host-1.example:7000');
  for (const bad of ['999.1.1.1', '1.2.3', 'host:99999', 'host:0', '', ' ', 'a b', '1.2.3.4/24', '-bad.example', 'x'.repeat(64) + '.example', 'evil\x1b[2J']) {
    assert.throws(() => normaliseAddress(bad, 6783), (e: Error) => !/[\x00-\x1f]/.test(e.message), JSON.stringify(bad));
  }
  assert.equal(isHostLike('::1'), true);
});
