/**
 * Noise control channel over real TCP sockets on 127.0.0.1, in-process (no
 * namespaces needed: nothing leaves the loopback interface of this process).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { HandshakeError, REJECT_FRAME, secureSocket, type SecureChannel } from '../../router/crypto/noise.js';

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => { unhandled.push(e); };
process.on('unhandledRejection', onUnhandled);

/** Every test is bounded: a regression shows up as a failure, not a hung run. */
const T = { timeout: 20_000 };
const PW1 = Buffer.alloc(32, 0x11);
const PW2 = Buffer.alloc(32, 0x22);

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
after(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  process.off('unhandledRejection', onUnhandled);
});

/** A connected client/server socket pair over loopback. */
async function socketPair(serverOpts: net.ServerOpts = {}): Promise<{ client: net.Socket; server: net.Socket }> {
  const srv = net.createServer(serverOpts);
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('error', () => {});
  sockets.push(client);
  await new Promise<void>((r, j) => { client.once('connect', r); client.once('error', j); });
  const server = await accepted;
  server.on('error', () => {});
  sockets.push(server);
  srv.close();
  return { client, server };
}

async function securePair(p1 = PW1, p2 = PW1) {
  const { client, server } = await socketPair();
  const [a, b] = await Promise.allSettled([
    secureSocket(client, { initiator: true, prologue: p1 }),
    secureSocket(server, { initiator: false, prologue: p2 }),
  ]);
  return { client, server, a, b };
}

/** Collects bytes from a channel until `n` have arrived (bounded by a timeout). */
function collect(ch: SecureChannel, n: number, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const t = setTimeout(() => reject(new Error(`timed out with ${got}/${n} bytes`)), timeoutMs);
    ch.onData((d) => {
      parts.push(Buffer.from(d));
      got += d.length;
      if (got >= n) {
        clearTimeout(t);
        resolve(Buffer.concat(parts));
      }
    });
  });
}

function ok(r: PromiseSettledResult<SecureChannel>): SecureChannel {
  if (r.status === 'rejected') throw r.reason;
  return r.value;
}

function failure(r: PromiseSettledResult<SecureChannel>): HandshakeError {
  assert.equal(r.status, 'rejected', 'handshake should have failed');
  const e = (r as PromiseRejectedResult).reason;
  assert.ok(e instanceof HandshakeError, `expected HandshakeError, got ${e}`);
  return e;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('same password: bytes round-trip both ways, including 5 MB writes and many small writes', T, async () => {
  const t0 = performance.now();
  const { a: ra, b: rb } = await securePair();
  const handshakeMs = performance.now() - t0;
  const a = ok(ra);
  const b = ok(rb);
  assert.ok(handshakeMs < 2000, `handshake took ${handshakeMs} ms`);

  let got = collect(b, 5);
  a.write(Buffer.from('hello'));
  assert.equal((await got).toString(), 'hello');
  got = collect(a, 5);
  b.write(Buffer.from('world'));
  assert.equal((await got).toString(), 'world');

  const big1 = randomBytes(5 * 1024 * 1024);
  const big2 = randomBytes(5 * 1024 * 1024 + 17);
  const atB = collect(b, big1.length);
  const atA = collect(a, big2.length);
  a.write(big1);
  b.write(big2);
  assert.equal(sha(await atB), sha(big1));
  assert.equal(sha(await atA), sha(big2));

  // 5000 small writes in both directions at once must arrive complete and in order.
  const small: Buffer[] = [];
  for (let i = 0; i < 5000; i++) small.push(Buffer.from(`${i},`));
  const total = Buffer.concat(small);
  const atB2 = collect(b, total.length);
  const atA2 = collect(a, total.length);
  for (const m of small) { a.write(m); b.write(m); }
  assert.deepEqual(await atB2, total);
  assert.deepEqual(await atA2, total);

  // Orderly close: both sides see onClose without an error.
  const closedA = new Promise<Error | undefined>((r) => a.onClose(r));
  const closedB = new Promise<Error | undefined>((r) => b.onClose(r));
  a.close();
  assert.equal(await closedB, undefined);
  assert.equal(await closedA, undefined);
  assert.equal(a.closed, true);
  assert.equal(a.write(Buffer.from('late')), false, 'writes after close are refused');
  const again = await new Promise<Error | undefined>((r) => b.onClose(r));
  assert.equal(again, undefined, 'onClose after the fact still fires');
});

test('close() flushes a large queued write before closing', T, async () => {
  const { a: ra, b: rb } = await securePair();
  const a = ok(ra);
  const b = ok(rb);
  const big = randomBytes(3 * 1024 * 1024);
  const atB = collect(b, big.length);
  const closedB = new Promise<Error | undefined>((r) => b.onClose(r));
  a.write(big);
  a.close();
  assert.equal(sha(await atB), sha(big));
  assert.equal(await closedB, undefined);
});

test('a peer close is seen even on an allowHalfOpen server socket', T, async () => {
  const { client, server } = await socketPair({ allowHalfOpen: true });
  const [ra, rb] = await Promise.allSettled([
    secureSocket(client, { initiator: true, prologue: PW1 }),
    secureSocket(server, { initiator: false, prologue: PW1 }),
  ]);
  const a = ok(ra);
  const b = ok(rb);
  const closedB = new Promise<Error | undefined>((r) => b.onClose(r));
  const closedA = new Promise<Error | undefined>((r) => a.onClose(r));
  a.close();
  assert.equal(await closedB, undefined);
  assert.equal(await closedA, undefined);
  assert.equal(server.destroyed, true);
});

test('round-trip latency is low (no Nagle, no batching delay)', T, async () => {
  const { a: ra, b: rb } = await securePair();
  const a = ok(ra);
  const b = ok(rb);
  b.onData((d) => { b.write(d); });
  const rounds = 200;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let n = 0;
    const t = setTimeout(() => reject(new Error(`only ${n} round trips`)), 10_000);
    a.onData(() => {
      if (++n === rounds) { clearTimeout(t); resolve(); } else a.write(Buffer.from('p'));
    });
    a.write(Buffer.from('p'));
  });
  const perRtt = (performance.now() - t0) / rounds;
  // Nagle + delayed ACK would make this ~40 ms; allow for a loaded machine.
  assert.ok(perRtt < 10, `${perRtt.toFixed(2)} ms per round trip`);
  a.destroy();
});

test('bytes already read after a plaintext hello (initialData) are fed to the handshake', T, async () => {
  const { client, server } = await socketPair({ pauseOnConnect: true });
  const HELLO = Buffer.from('HELLO\n');
  client.write(HELLO);
  const ca = secureSocket(client, { initiator: true, prologue: PW1 });
  // Let hello and Noise message 1 (2 + 32 bytes) sit together in the server's kernel buffer.
  for (let i = 0; i < 250 && client.bytesWritten < HELLO.length + 34; i++) await sleep(20);
  assert.ok(client.bytesWritten >= HELLO.length + 34, 'initiator sent message 1');
  await sleep(20);
  const first = await new Promise<Buffer>((resolve) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= HELLO.length) { server.off('data', onData); resolve(buf); }
    };
    server.on('data', onData);
    server.resume();
  });
  assert.deepEqual(first.subarray(0, HELLO.length), HELLO);
  const rest = first.subarray(HELLO.length);
  assert.ok(rest.length > 0, 'message 1 arrived with the hello, so initialData is exercised');
  const [ra, rb] = await Promise.allSettled([ca, secureSocket(server, { initiator: false, prologue: PW1, initialData: rest })]);
  const a = ok(ra);
  const b = ok(rb);
  const got = collect(a, 3);
  b.write(Buffer.from('ack'));
  assert.equal((await got).toString(), 'ack');
  a.destroy();
});

test('data sent right after the handshake, before onData is registered, is not lost', T, async () => {
  const { a: ra, b: rb } = await securePair();
  const a = ok(ra);
  const b = ok(rb);
  a.write(Buffer.from('early'));
  await sleep(50);
  assert.equal((await collect(b, 5)).toString(), 'early');
  a.destroy();
});

test('different passwords: both sides fail with "password mismatch"', T, async () => {
  const { client, server, a, b } = await securePair(PW1, PW2);
  const ea = failure(a);
  const eb = failure(b);
  assert.equal(ea.kind, 'password-mismatch');
  assert.equal(ea.message, 'password mismatch');
  assert.equal(eb.kind, 'password-mismatch');
  assert.equal(eb.message, 'password mismatch');
  await sleep(20);
  assert.equal(server.destroyed, true);
  assert.equal(client.listenerCount('data'), 0, 'no listeners left behind');
  assert.equal(server.listenerCount('data'), 0);
});

/** Plays a fake initiator: a valid XX message 1 (any 32 bytes are an ephemeral key), then `then` once message 2 is in. */
async function fakeInitiator(then: (client: net.Socket) => void): Promise<PromiseSettledResult<SecureChannel>> {
  const { client, server } = await socketPair();
  const resp = secureSocket(server, { initiator: false, prologue: PW1, timeoutMs: 3000 });
  client.write(Buffer.concat([Buffer.from([0x00, 0x20]), randomBytes(32)]));
  client.once('data', () => then(client));
  const [r] = await Promise.allSettled([resp]);
  return r;
}

test('responder: a reject frame in place of message 3 reads as "password mismatch"', T, async () => {
  assert.equal(REJECT_FRAME.length, 82);
  assert.equal(REJECT_FRAME.readUInt16BE(0), 80);
  const e = failure(await fakeInitiator((c) => c.end(REJECT_FRAME)));
  assert.equal(e.kind, 'password-mismatch');
  assert.equal(e.message, 'password mismatch');
});

test('responder: initiator vanishing after message 2 reads as "closed", not as a mismatch', T, async () => {
  const e = failure(await fakeInitiator((c) => c.end()));
  assert.equal(e.kind, 'closed');
});

test('peer closes before sending anything: responder fails with "closed", not a hang', T, async () => {
  const { client, server } = await socketPair();
  const t0 = performance.now();
  const p = secureSocket(server, { initiator: false, prologue: PW1, timeoutMs: 5000 });
  client.destroy();
  const [r] = await Promise.allSettled([p]);
  const e = failure(r);
  assert.equal(e.kind, 'closed');
  assert.equal(e.message, "connection closed by peer during handshake");
  assert.ok(performance.now() - t0 < 2000);
});

test('peer closes after message 1: initiator fails with "closed"', T, async () => {
  const { client, server } = await socketPair();
  server.once('data', () => server.end());
  const [r] = await Promise.allSettled([secureSocket(client, { initiator: true, prologue: PW1, timeoutMs: 5000 })]);
  const e = failure(r);
  assert.equal(e.kind, 'closed');
  assert.equal(client.destroyed, true);
});

test('peer resets mid-handshake (RST): fails with "closed"', T, async () => {
  const { client, server } = await socketPair();
  server.once('data', () => server.resetAndDestroy());
  const [r] = await Promise.allSettled([secureSocket(client, { initiator: true, prologue: PW1, timeoutMs: 5000 })]);
  assert.equal(failure(r).kind, 'closed');
});

test('garbage instead of a handshake: fails with a protocol error or closed, never hangs', T, async () => {
  const { client, server } = await socketPair();
  const p = secureSocket(server, { initiator: false, prologue: PW1, timeoutMs: 3000 });
  client.write(Buffer.from([0x00, 0x05, 1, 2, 3, 4, 5]));
  const [r] = await Promise.allSettled([p]);
  const e = failure(r);
  assert.equal(e.kind, 'protocol', e.message);
  assert.match(e.message, /^handshake failed: /);
});

test('silent peer: handshake times out with a clear message and the socket is destroyed', T, async () => {
  const { client, server } = await socketPair();
  const t0 = performance.now();
  const [r] = await Promise.allSettled([secureSocket(server, { initiator: false, prologue: PW1, timeoutMs: 200 })]);
  const ms = performance.now() - t0;
  const e = failure(r);
  assert.equal(e.kind, 'timeout');
  assert.equal(e.message, 'handshake timed out after 200 ms');
  assert.ok(ms >= 190 && ms < 3000, `took ${ms} ms`);
  assert.equal(server.destroyed, true);
  await new Promise<void>((res) => { if (client.closed) res(); else client.once('close', () => res()); });
});

test('already-closed socket and bad prologue are rejected up front', T, async () => {
  const { client } = await socketPair();
  client.destroy();
  const [r1] = await Promise.allSettled([secureSocket(client, { initiator: true, prologue: PW1 })]);
  assert.equal(failure(r1).kind, 'closed');
  const { client: c2 } = await socketPair();
  const [r2] = await Promise.allSettled([secureSocket(c2, { initiator: true, prologue: Buffer.alloc(0) })]);
  assert.match(failure(r2).message, /prologue/);
  c2.destroy();
});

test('tampering with the encrypted stream closes the channel with an error', T, async () => {
  // A loopback relay between the two ends that flips one bit once told to.
  const { client: c1, server: s1 } = await socketPair();
  const { client: c2, server: s2 } = await socketPair();
  let corrupt = false;
  s1.on('data', (d: Buffer) => {
    if (corrupt) { d = Buffer.from(d); d[d.length - 1]! ^= 0x01; corrupt = false; }
    c2.write(d);
  });
  c2.on('data', (d: Buffer) => s1.write(d));
  s1.on('close', () => c2.destroy());
  c2.on('close', () => s1.destroy());
  const [ra, rb] = await Promise.allSettled([
    secureSocket(c1, { initiator: true, prologue: PW1 }),
    secureSocket(s2, { initiator: false, prologue: PW1 }),
  ]);
  const a = ok(ra);
  const b = ok(rb);
  const ok1 = collect(b, 4);
  a.write(Buffer.from('fine'));
  assert.equal((await ok1).toString(), 'fine');
  const closed = new Promise<Error | undefined>((r) => b.onClose(r));
  let delivered = 0;
  b.onData((d) => { delivered += d.length; });
  corrupt = true;
  a.write(Buffer.from('this one is tampered with'));
  const err = await closed;
  assert.ok(err instanceof Error, 'tampering must surface as an error');
  assert.equal(delivered, 0, 'no tampered bytes delivered');
});

test('a throwing onData callback destroys the channel with that error', T, async () => {
  const { a: ra, b: rb } = await securePair();
  const a = ok(ra);
  const b = ok(rb);
  const closed = new Promise<Error | undefined>((r) => b.onClose(r));
  b.onData(() => { throw new Error('consumer bug'); });
  a.write(Buffer.from('x'));
  const err = await closed;
  assert.equal(err?.message, 'consumer bug');
});

test('no unhandled rejections escaped from any of the above', T, async () => {
  await sleep(100);
  assert.deepEqual(unhandled, []);
});
