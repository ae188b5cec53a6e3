import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { attachEventStream, checkAccess, CLOSE_SLOW_CONSUMER, isLoopbackAddress } from '../../router/api/events.js';
import type { RouterEvent } from '../../router/api/report.js';
import { FakeSource, H4 } from './obs-fixtures.js';

const servers: Server[] = [];
after(() => { for (const s of servers) s.close(); });

async function listen(): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => { res.statusCode = 404; res.end(); });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  assert.ok(addr && typeof addr === 'object');
  return { server, port: addr.port };
}

/** Resolves when `cond()` holds, polling every 10 ms; fails after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** A ws client collecting parsed messages. */
function client(url: string, opts: ConstructorParameters<typeof WebSocket>[2] = {}) {
  const ws = new WebSocket(url, opts);
  const msgs: RouterEvent[] = [];
  ws.on('message', (d: Buffer) => msgs.push(JSON.parse(d.toString()) as RouterEvent));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => undefined);
  return { ws, msgs, closed };
}

/** Status code of a refused handshake. */
function refusedStatus(url: string, opts: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); res.resume(); ws.terminate(); });
    ws.on('open', () => { ws.terminate(); reject(new Error('connection was accepted')); });
    ws.on('error', () => undefined);
  });
}

/**
 * Completes the WebSocket handshake by hand and then never reads (or never
 * answers pings): the slow / dead client `ws` cannot simulate.
 */
async function rawClient(port: number): Promise<Socket> {
  const sock = connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let head = '';
  while (!head.includes('\r\n\r\n')) {
    const [chunk] = await once(sock, 'data') as [Buffer];
    head += chunk.toString('latin1');
  }
  assert.match(head, /^HTTP\/1\.1 101 /);
  return sock;
}

test('isLoopbackAddress and checkAccess rules', () => {
  for (const a of ['127.0.0.1', '127.9.8.7', '::1', '::ffff:127.0.0.1', '[::1]']) assert.equal(isLoopbackAddress(a), true, a);
  for (const a of ['10.0.0.1', '::ffff:10.0.0.1', 'fe80::1', '128.0.0.1', 'localhost', '']) assert.equal(isLoopbackAddress(a), false, a);
  // The same rules as the whole API's TCP listener (router/api/policy.ts; more cases in api-policy.test.ts).
  assert.equal(checkAccess('127.0.0.1', undefined, '127.0.0.1:6784'), null);
  assert.equal(checkAccess(undefined, undefined, undefined), null, 'unix socket');
  assert.match(checkAccess('192.168.1.5', undefined, '192.168.1.1:6784')!, /not loopback/);
  assert.equal(checkAccess('127.0.0.1', 'http://127.0.0.1:6784', '127.0.0.1:6784'), null);
  assert.match(checkAccess('127.0.0.1', 'http://localhost:3000', '127.0.0.1:6784')!, /not same-origin/, 'another local port is another origin');
  assert.equal(checkAccess('::1', 'http://[::1]:6784', '[::1]:6784'), null);
  assert.equal(checkAccess(undefined, 'http://10.1.2.3:6784', '10.1.2.3:6784'), null, 'unix socket: no browser can connect');
  assert.match(checkAccess('127.0.0.1', 'http://evil.example', '127.0.0.1:6784')!, /not same-origin/);
  assert.match(checkAccess('127.0.0.1', 'http://evil.example:6784', 'evil.example:6784')!, /DNS rebinding/);
  assert.match(checkAccess('127.0.0.1', 'http://10.1.2.3:6784', '10.1.2.3:9999')!, /DNS rebinding|not same-origin/);
  assert.match(checkAccess('127.0.0.1', 'null', '127.0.0.1:6784')!, /malformed Origin/);
  assert.match(checkAccess('127.0.0.1', 'file:///x', '127.0.0.1:6784')!, /not http/);
});

test('events: snapshot first, then events in emission order', async () => {
  const { server, port } = await listen();
  const src = new FakeSource();
  const stream = attachEventStream(server, src, { resyncMs: 0 });
  try {
    const c = client(`ws://127.0.0.1:${port}/events`);
    await until(() => c.msgs.length >= 1, 2000, 'snapshot');
    assert.equal(c.msgs[0].type, 'snapshot');
    assert.deepEqual((c.msgs[0] as { report: unknown }).report, src.current);
    assert.equal(stream.clients(), 1);
    for (let i = 0; i < 200; i++) src.send({ type: 'endpoint-attached', id: `e${i}`, cidrs: [`10.32.0.${i}/12`] });
    await until(() => c.msgs.length >= 201, 2000, '200 events');
    assert.deepEqual(c.msgs.slice(1).map((m) => (m as { id: string }).id), Array.from({ length: 200 }, (_, i) => `e${i}`));
    // Only one listener on the source regardless of clients.
    const c2 = client(`ws://127.0.0.1:${port}/events`);
    await until(() => c2.msgs.length >= 1, 2000, 'second snapshot');
    assert.equal(src.listenerCount('event'), 1);
    c.ws.close();
    c2.ws.close();
    await until(() => stream.clients() === 0, 2000, 'clients gone');
  } finally {
    stream.close();
  }
  assert.equal(src.listenerCount('event'), 0);
});

test('events: topology events trigger a fresh snapshot when the report changed', async () => {
  const { server, port } = await listen();
  const src = new FakeSource();
  const stream = attachEventStream(server, src, { resyncMs: 0, resnapshotDelayMs: 20 });
  try {
    const c = client(`ws://127.0.0.1:${port}/events`);
    await until(() => c.msgs.length >= 1, 2000, 'snapshot');
    const next = structuredClone(src.current);
    next.Router.Peers.push({ Name: H4, NickName: 'h4', UID: 4, Version: 1, Connections: [] });
    src.current = next;
    src.send({ type: 'peer-joined', peer: H4, nickname: 'h4' });
    src.send({ type: 'peer-joined', peer: H4, nickname: 'h4' });
    await until(() => c.msgs.length >= 4, 2000, 'delta + re-snapshot');
    assert.deepEqual(c.msgs.map((m) => m.type), ['snapshot', 'peer-joined', 'peer-joined', 'snapshot']);
    assert.equal((c.msgs[3] as { report: typeof next }).report.Router.Peers.length, 4);
    // Same report again: no duplicate snapshot.
    src.send({ type: 'peer-left', peer: 'xx', nickname: '' });
    await sleep(100);
    assert.equal(c.msgs.length, 5);
    c.ws.close();
  } finally {
    stream.close();
  }
});

test('events: periodic resync sends a snapshot when the report changes without events', async () => {
  const { server, port } = await listen();
  const src = new FakeSource();
  const stream = attachEventStream(server, src, { resyncMs: 30 });
  try {
    const c = client(`ws://127.0.0.1:${port}/events`);
    await until(() => c.msgs.length >= 1, 2000, 'snapshot');
    await sleep(100); // resync compares with its last broadcast, so one repeat may come
    const before = c.msgs.length;
    const next = structuredClone(src.current);
    next.Router.NickName = 'renamed';
    src.current = next;
    await until(() => c.msgs.length > before, 2000, 'resync snapshot');
    const last = c.msgs.at(-1) as { type: string; report: typeof next };
    assert.equal(last.type, 'snapshot');
    assert.equal(last.report.Router.NickName, 'renamed');
    c.ws.close();
  } finally {
    stream.close();
  }
});

test('events: foreign Origin, DNS-rebinding Host and wrong path are refused', async () => {
  const { server, port } = await listen();
  const src = new FakeSource();
  const stream = attachEventStream(server, src, { resyncMs: 0 });
  try {
    assert.equal(await refusedStatus(`ws://127.0.0.1:${port}/events`, { origin: 'http://evil.example' }), 403);
    assert.equal(await refusedStatus(`ws://127.0.0.1:${port}/events`, { origin: `http://evil.example:${port}`, headers: { Host: `evil.example:${port}` } }), 403);
    assert.equal(await refusedStatus(`ws://127.0.0.1:${port}/other`), 404);
    assert.equal(stream.clients(), 0);
    const ok = client(`ws://127.0.0.1:${port}/events?x=1`, { origin: `http://127.0.0.1:${port}` });
    await until(() => ok.msgs.length >= 1, 2000, 'same-origin snapshot');
    ok.ws.close();
  } finally {
    stream.close();
  }
});

test('events: a snapshot larger than the backlog bound closes the client with 1013', async () => {
  const { server, port } = await listen();
  const src = new FakeSource();
  const stream = attachEventStream(server, src, { resyncMs: 0, maxBacklogBytes: 1000 });
  try {
    const c = client(`ws://127.0.0.1:${port}/events`);
    const { code, reason } = await c.closed;
    assert.equal(code, CLOSE_SLOW_CONSUMER);
    assert.match(reason, /slow consumer/);
    assert.equal(c.msgs.length, 0);
  } finally {
    stream.close();
  }
});

test('events: a client that stops reading is dropped within the backlog bound; others keep up', async () => {
  const { server, port } = await listen();
  const src = new FakeSource();
  const bound = 256 * 1024;
  const stream = attachEventStream(server, src, { resyncMs: 0, maxBacklogBytes: bound });
  const slow = await rawClient(port);
  slow.pause();
  const fast = client(`ws://127.0.0.1:${port}/events`);
  try {
    await until(() => fast.msgs.length >= 1 && stream.clients() === 2, 2000, 'two clients');
    const big = 'x'.repeat(16 * 1024);
    let sent = 0;
    const t0 = Date.now();
    while (stream.clients() === 2 && sent < 4000 && Date.now() - t0 < 10_000) {
      for (let i = 0; i < 10; i++) src.send({ type: 'endpoint-attached', id: `${sent++}`, cidrs: [big] });
      await sleep(1);
    }
    assert.equal(stream.clients(), 1, `slow client still connected after ${sent} events`);
    const mb = (sent * big.length) / 2 ** 20;
    console.log(`# slow client dropped after ${sent} events (${mb.toFixed(1)} MiB emitted, kernel buffers absorb the rest) in ${Date.now() - t0} ms`);
    // The fast client got everything, in order.
    await until(() => fast.msgs.length >= sent + 1, 5000, 'fast client catch-up');
    assert.equal((fast.msgs.at(-1) as { id: string }).id, String(sent - 1));
    // The slow client's socket is closed by the server (close frame, then cut off).
    slow.resume();
    const ended = once(slow, 'close');
    await Promise.race([ended, sleep(3000).then(() => assert.fail('slow socket not closed'))]);
  } finally {
    slow.destroy();
    fast.ws.close();
    stream.close();
  }
});

test('events: heartbeat removes a client that does not answer pings', async () => {
  const { server, port } = await listen();
  const src = new FakeSource();
  const stream = attachEventStream(server, src, { resyncMs: 0, heartbeatMs: 50 });
  const dead = await rawClient(port); // reads (so no backlog) but never sends a pong
  dead.on('data', () => undefined);
  const live = client(`ws://127.0.0.1:${port}/events`);
  try {
    await until(() => stream.clients() === 2, 2000, 'two clients');
    await until(() => stream.clients() === 1, 1000, 'dead client removed');
    await sleep(200);
    assert.equal(live.ws.readyState, WebSocket.OPEN);
    assert.equal(stream.clients(), 1);
  } finally {
    dead.destroy();
    live.ws.close();
    stream.close();
  }
});

test('events: close() sends 1001 to clients and unhooks from server and source', async () => {
  const { server, port } = await listen();
  const src = new FakeSource();
  const stream = attachEventStream(server, src, { resyncMs: 0 });
  const c = client(`ws://127.0.0.1:${port}/events`);
  await until(() => c.msgs.length >= 1, 2000, 'snapshot');
  stream.close();
  assert.equal((await c.closed).code, 1001);
  assert.equal(src.listenerCount('event'), 0);
  assert.equal(server.listenerCount('upgrade'), 0);
  stream.close(); // idempotent
});

test('events: a failing report() closes the new client with 1011', async () => {
  const { server, port } = await listen();
  const src = new FakeSource();
  src.failReport = new Error('ipam not ready');
  const stream = attachEventStream(server, src, { resyncMs: 0 });
  try {
    const c = client(`ws://127.0.0.1:${port}/events`);
    const { code, reason } = await c.closed;
    assert.equal(code, 1011);
    assert.match(reason, /ipam not ready/);
  } finally {
    stream.close();
  }
});
