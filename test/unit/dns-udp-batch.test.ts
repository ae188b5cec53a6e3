/**
 * weaveDNS's batched UDP socket (dns/native/dns-udp.cc via dns/udp-batch.ts) and the
 * server on it: answers equal node:dgram's, hostile datagrams (oversized, malformed,
 * empty) are counted and dropped without an answer, bad send tables are RangeErrors;
 * another thread's adoption of the socket (a dup of its fd) and pause/resume.
 * Loopback only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { DnsServer, EPHEMERAL_TRIES } from '../../dns/server.js';
import { openDnsUdp, adoptDnsUdp, dnsUdpAvailable, ROW } from '../../dns/udp-batch.js';
import type { NameSource } from '../../dns/answer.js';

const src: NameSource = {
  domain: 'weave.local.', ttl: 1,
  lookup: (n) => (n === 'db.weave.local.' ? ['10.32.0.5'] : []),
  reverse: () => [],
};

function ask(port: number, bufs: Buffer[], wantReplies: number, host = '127.0.0.1'): Promise<Buffer[]> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const got: Buffer[] = [];
    const t = setTimeout(() => { s.close(); resolve(got); }, 1500);
    s.on('message', (m) => {
      got.push(m);
      if (got.length === wantReplies) { clearTimeout(t); s.close(); resolve(got); }
    });
    for (const b of bufs) s.send(b, port, host);
  });
}

const q = (id: number, name: string): Buffer => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', class: 'IN', name }] });

test('the addon is built (CI builds it with npm ci)', () => {
  assert.ok(dnsUdpAvailable(), 'build/Release/dnsudp.node missing: npm run install');
});

test('batched and dgram servers give the same answers; hostile datagrams are dropped and counted', async () => {
  const answers: Record<string, Buffer[]> = {};
  for (const udpIo of ['batched', 'dgram'] as const) {
    const dropped: string[] = [];
    const srv = new DnsServer({ host: '127.0.0.1', port: 0, names: () => src, resolvConf: '/nonexistent', udpIo, hooks: { dropped: (r) => dropped.push(r) } });
    await srv.start();
    try {
      const hostile = [Buffer.alloc(0), Buffer.alloc(5, 1), Buffer.alloc(5000, 7), Buffer.from('not dns at all, not at all')];
      const good = Array.from({ length: 40 }, (_, i) => q(i, i % 2 ? 'db.weave.local' : 'nope.weave.local'));
      const got = await ask(srv.port, [...hostile, ...good], 40);
      assert.equal(got.length, 40, `${udpIo}: every good query answered`);
      answers[udpIo] = got.sort((a, b) => a.readUInt16BE(0) - b.readUInt16BE(0));
      if (udpIo === 'batched') {
        const st = srv.udpStats()!;
        assert.equal(st.recvTruncated, 1, 'the 5000-byte datagram is dropped natively');
        assert.equal(st.sendDatagrams, 40);
        assert.ok(st.recvBatches <= st.recvDatagrams);
      }
      assert.ok(dropped.includes('short') && dropped.includes('malformed'), `${udpIo}: ${dropped.join(',')}`);
    } finally {
      await srv.close();
    }
  }
  assert.deepEqual(answers.batched, answers.dgram);
});

test('IPv6 loopback works, and bad send tables are RangeErrors, not crashes', async (t) => {
  let sock: ReturnType<typeof openDnsUdp>;
  try {
    sock = openDnsUdp('::1', 0, 8);
  } catch (err) {
    if ((err as { code?: string }).code === 'EADDRNOTAVAIL' && process.env.CI !== 'true') return t.skip('no ::1 here');
    throw err;
  }
  try {
    const seen: string[] = [];
    sock.start((slab, meta, count) => {
      for (let i = 0; i < count; i++) {
        const r = ROW * i;
        seen.push(slab.toString('latin1', meta[r], meta[r] + meta[r + 1]));
        assert.equal(meta[r + 2], 6);
        // Echo it back through a table row copied from meta.
        const table = meta.slice(r, r + ROW);
        assert.equal(sock.sendBatch(slab, table, 1), 1);
      }
    }, () => undefined);
    const echoed = await ask(sock.localPort, [Buffer.from('hello')], 1, '::1');
    assert.deepEqual(seen, ['hello']);
    assert.equal(echoed[0]?.toString(), 'hello');
    const slab = Buffer.alloc(16);
    assert.throws(() => sock.sendBatch(slab, new Uint32Array([10, 10, 6, 53, 0, 0, 0, 1]), 1), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => sock.sendBatch(slab, new Uint32Array([0, 0, 6, 53, 0, 0, 0, 1]), 1), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => sock.sendBatch(slab, new Uint32Array(ROW), 2), { code: 'ERR_OUT_OF_RANGE' });
    // A row of the other family is skipped and counted.
    assert.equal(sock.sendBatch(slab, new Uint32Array([0, 4, 4, 53, 0x7f000001, 0, 0, 0]), 1), 0);
    assert.equal(sock.stats().sendErrors, 1);
  } finally {
    sock.close();
    sock.close();
  }
});

test('a second batched server on the same address fails with a one-line EADDRINUSE', async () => {
  const a = new DnsServer({ host: '127.0.0.1', port: 0, names: () => src, resolvConf: '/nonexistent' });
  await a.start();
  try {
    const b = new DnsServer({ host: '127.0.0.1', port: a.port, names: () => src, resolvConf: '/nonexistent' });
    await assert.rejects(b.start(), /^Error: DNS: cannot listen on udp 127\.0\.0\.1:\d+: EADDRINUSE$/);
  } finally {
    await a.close();
  }
});

test('port 0: when TCP finds the port UDP was given taken, start() tries another; a port asked for is not retried', async () => {
  // The kernel picks UDP's port; TCP then takes the same number, which another process may
  // hold (seen once in CI). listen() is made to fail with EADDRINUSE for the first calls.
  const real = net.Server.prototype.listen;
  let failures = 0;
  const failFirst = (n: number): void => {
    failures = n;
    net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
      if (failures > 0) {
        failures--;
        process.nextTick(() => this.emit('error', Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' })));
        return this;
      }
      return (real as (...a: unknown[]) => net.Server).apply(this, args);
    } as typeof real;
  };
  try {
    failFirst(2);
    const a = new DnsServer({ host: '127.0.0.1', port: 0, names: () => src, resolvConf: '/nonexistent' });
    await a.start();
    try {
      assert.equal(failures, 0, 'two failed attempts, then a third that binds');
      assert.ok(a.port > 0);
      // Both sides are up on the port it reports: a TCP connection is accepted.
      await new Promise<void>((resolve, reject) => {
        const c = net.connect(a.port, '127.0.0.1', () => {
          c.destroy();
          resolve();
        });
        c.once('error', reject);
      });
      // Asked for that port explicitly: one attempt, a one-line error.
      failFirst(1);
      const b = new DnsServer({ host: '127.0.0.1', port: 53535, names: () => src, resolvConf: '/nonexistent' });
      await assert.rejects(b.start(), /^Error: DNS: cannot listen on tcp 127\.0\.0\.1:53535: EADDRINUSE$/);
      assert.equal(failures, 0);
      // Port 0 that never finds a free pair gives up after EPHEMERAL_TRIES with the same one line.
      failFirst(EPHEMERAL_TRIES);
      const c = new DnsServer({ host: '127.0.0.1', port: 0, names: () => src, resolvConf: '/nonexistent' });
      await assert.rejects(c.start(), /^Error: DNS: cannot listen on tcp 127\.0\.0\.1:\d+: EADDRINUSE$/);
      assert.equal(failures, 0, 'every try used');
    } finally {
      await a.close();
    }
  } finally {
    net.Server.prototype.listen = real;
  }
});

test('adopt: a dup of a bound socket reads its queue, pause() hands the reading over, bad fds are one-line EINVAL', async () => {
  const a = openDnsUdp('127.0.0.1', 0, 8);
  const b = adoptDnsUdp(a.fd, 8);
  try {
    assert.equal(b.localPort, a.localPort);
    assert.notEqual(b.fd, a.fd, 'a dup, not the same descriptor');
    const byA: string[] = [];
    const byB: string[] = [];
    const take = (into: string[]) => (slab: Buffer, meta: Uint32Array, count: number) => {
      for (let i = 0; i < count; i++) into.push(slab.toString('latin1', meta[ROW * i], meta[ROW * i] + meta[ROW * i + 1]));
    };
    a.start(take(byA), () => undefined);
    a.pause();
    a.pause();
    // Nobody reads: the datagram waits in the one shared queue.
    const c = dgram.createSocket('udp4');
    await new Promise<void>((r) => c.send('one', a.localPort, '127.0.0.1', () => r()));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(byA, []);
    b.start(take(byB), () => undefined);
    for (let i = 0; i < 100 && byB.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(byB, ['one'], 'the adopter reads what was queued before it started');
    // Back: b paused, a resumed.
    b.pause();
    a.resume();
    await new Promise<void>((r) => c.send('two', a.localPort, '127.0.0.1', () => r()));
    for (let i = 0; i < 100 && byA.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(byA, ['two']);
    // Closing the adopter leaves the original bound and reading.
    b.close();
    await new Promise<void>((r) => c.send('three', a.localPort, '127.0.0.1', () => r()));
    for (let i = 0; i < 100 && byA.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(byA, ['two', 'three']);
    c.close();
  } finally {
    b.close();
    a.close();
  }
  // Not a socket, an unbound socket, a closed fd: refused with a code and one line.
  assert.throws(() => adoptDnsUdp(0, 8), (e: Error & { code?: string }) => ['EINVAL', 'ENOTSOCK'].includes(e.code ?? '') && !e.message.includes('\n'));
  assert.throws(() => adoptDnsUdp(1 << 20, 8), (e: Error & { code?: string }) => e.code === 'EBADF' && !e.message.includes('\n'));
  const tcp = net.createServer();
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
  try {
    const fd = (tcp as unknown as { _handle: { fd: number } })._handle.fd;
    assert.throws(() => adoptDnsUdp(fd, 8), /not a datagram socket/);
  } finally {
    tcp.close();
  }
});
