/**
 * Forwarding through a socket pool: the pure matching rules (dns/forward-table.ts,
 * RFC 5452: fresh random id unique per socket, answer accepted only on the socket it
 * left by, from the upstream's address and port, with the id and the question sent,
 * QR set; bounds per socket and in all; rotation; expiry) and the pool itself
 * (dns/upstream.ts) against a fake upstream on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { ForwardTable, questionEnd, MAX_PER_SOCKET, ROTATE_QUERIES, ROTATE_MS } from '../../dns/forward-table.js';
import { UpstreamPool, cryptoRng } from '../../dns/upstream.js';
import { mulberry32 } from '../lib/prng.js';

function query(name: string, id = 7, type = 'A'): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: type as 'A', name }] });
}
/** An answer to `q` as an upstream would send it, with `id`. */
function answerTo(q: Buffer, id: number, addr = '192.0.2.7'): Buffer {
  const d = dnsPacket.decode(q);
  return dnsPacket.encode({ type: 'response', id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: d.questions, answers: [{ type: 'A', name: d.questions![0].name, ttl: 5, data: addr }] });
}

test('questionEnd: one question, uncompressed, bounded', () => {
  const q = query('db.example.com');
  assert.equal(questionEnd(q), q.length);
  assert.equal(questionEnd(q.subarray(0, q.length - 1)), -1);
  const two = Buffer.from(q);
  two.writeUInt16BE(2, 4);
  assert.equal(questionEnd(two), -1, 'QDCOUNT 2');
  const ptr = Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
  assert.equal(questionEnd(ptr), -1, 'compression pointer');
  assert.equal(questionEnd(Buffer.alloc(5)), -1);
});

test('match: only the right socket, source, id, QR and question; each answer once', () => {
  const t = new ForwardTable<string>(4, 1000);
  const s0 = t.open(0);
  const s1 = t.open(0);
  const q = query('db.example.com');
  const rng = mulberry32(3);
  const p = t.add(q, '10.0.0.1', 53, 5000, 'client-1', rng)!;
  assert.ok(p && [s0, s1].includes(p.socket));
  const other = p.socket === s0 ? s1 : s0;
  const good = answerTo(q, p.id);
  assert.equal(t.match(other, '10.0.0.1', 53, good), undefined, 'another socket');
  assert.equal(t.match(p.socket, '10.0.0.2', 53, good), undefined, 'another address');
  assert.equal(t.match(p.socket, '10.0.0.1', 5353, good), undefined, 'another port');
  assert.equal(t.match(p.socket, '10.0.0.1', 53, answerTo(q, (p.id + 1) & 0xffff)), undefined, 'another id');
  assert.equal(t.match(p.socket, '10.0.0.1', 53, answerTo(query('evil.example.com'), p.id)), undefined, 'another question');
  assert.equal(t.match(p.socket, '10.0.0.1', 53, answerTo(query('DB.example.com'), p.id)), undefined, 'question bytes differ (case)');
  const notQr = Buffer.from(good);
  notQr[2] &= 0x7f;
  assert.equal(t.match(p.socket, '10.0.0.1', 53, notQr), undefined, 'QR not set');
  assert.equal(t.match(p.socket, '10.0.0.1', 53, good.subarray(0, 11)), undefined, 'short');
  assert.equal(t.size, 1, 'rejected answers leave the query outstanding');
  assert.equal(t.match(p.socket, '10.0.0.1', 53, good)?.data, 'client-1');
  assert.equal(t.match(p.socket, '10.0.0.1', 53, good), undefined, 'a duplicate answer matches nothing');
  assert.equal(t.size, 0);
});

test('ids are random and unique per socket; sockets chosen at random; bounds per socket and in all', () => {
  const t = new ForwardTable<number>(2, 10_000);
  const a = t.open(0);
  const b = t.open(0);
  const rng = mulberry32(11);
  const q = query('x.example');
  const ids = new Map<number, Set<number>>([[a, new Set()], [b, new Set()]]);
  for (let i = 0; i < 2 * MAX_PER_SOCKET; i++) {
    const p = t.add(q, '10.0.0.1', 53, 1000, i, rng)!;
    assert.ok(p, `query ${i} refused with room left`);
    assert.ok(!ids.get(p.socket)!.has(p.id), 'id reused on a socket while outstanding');
    ids.get(p.socket)!.add(p.id);
  }
  assert.equal(ids.get(a)!.size, MAX_PER_SOCKET);
  assert.equal(ids.get(b)!.size, MAX_PER_SOCKET);
  // Not sequential: ids spread over the 16-bit space.
  const all = [...ids.get(a)!];
  assert.ok(Math.max(...all) - Math.min(...all) > 30_000, 'ids look sequential');
  assert.equal(t.add(q, '10.0.0.1', 53, 1000, -1, rng), undefined, 'every socket full');
  const small = new ForwardTable<number>(2, 3);
  small.open(0);
  for (let i = 0; i < 3; i++) assert.ok(small.add(q, 'u', 53, 1, i, rng));
  assert.equal(small.add(q, 'u', 53, 1, 9, rng), undefined, 'total bound');
  assert.equal(new ForwardTable<number>(1, 10).add(q, 'u', 53, 1, 0, rng), undefined, 'no socket open');
  const t2 = new ForwardTable<number>(1, 10);
  t2.open(0);
  assert.equal(t2.add(Buffer.from('not a dns message'), 'u', 53, 1, 0, rng), undefined, 'no question');
});

test('expiry, cancel, rotation and draining', () => {
  const t = new ForwardTable<string>(1, 100);
  const s = t.open(0);
  const rng = mulberry32(5);
  const q = query('x.example');
  const p1 = t.add(q, 'u', 53, 100, 'early', rng)!;
  const p2 = t.add(q, 'u', 53, 200, 'late', rng)!;
  assert.deepEqual(t.expire(99).map((p) => p.data), []);
  assert.deepEqual(t.expire(150).map((p) => p.data), ['early']);
  assert.equal(t.match(s, 'u', 53, answerTo(q, p1.id)), undefined, 'an expired query takes no answer');
  assert.equal(t.cancel(p2), true);
  assert.equal(t.cancel(p2), false);
  assert.equal(t.size, 0);
  // Rotation by count and by age; a retired socket takes nothing new and drains.
  assert.deepEqual(t.rotate(ROTATE_MS - 1), []);
  const p3 = t.add(q, 'u', 53, 1e9, 'on-old', rng)!;
  assert.deepEqual(t.rotate(ROTATE_MS), [s]);
  assert.equal(t.add(q, 'u', 53, 1e9, 'x', rng), undefined, 'retired socket took a query');
  assert.deepEqual(t.drained(), [], 'not drained while a query is outstanding');
  const s2 = t.open(ROTATE_MS);
  assert.notEqual(s2, s);
  assert.equal(t.add(q, 'u', 53, 1e9, 'new', rng)!.socket, s2);
  assert.equal(t.match(s, 'u', 53, answerTo(q, p3.id))?.data, 'on-old', 'a retired socket still takes its answers');
  assert.deepEqual(t.drained(), [s]);
  assert.deepEqual(t.close(s), []);
  const c = new ForwardTable<number>(1, 1e6);
  const cs = c.open(0);
  for (let i = 0; i < ROTATE_QUERIES; i++) {
    const p = c.add(q, 'u', 53, 1, i, rng)!;
    c.cancel(p);
  }
  assert.deepEqual(c.rotate(1), [cs], 'rotated after ROTATE_QUERIES queries');
});

test('pool: answers carry the client id; forged and stray datagrams are ignored; silence times out', async () => {
  const up = dgram.createSocket('udp4');
  await new Promise<void>((r) => up.bind(0, '127.0.0.1', () => r()));
  const port = up.address().port;
  const seenPorts = new Set<number>();
  const seenIds = new Set<number>();
  let mode: 'answer' | 'wrong-question' | 'silent' = 'answer';
  up.on('message', (m, rinfo) => {
    seenPorts.add(rinfo.port);
    seenIds.add(m.readUInt16BE(0));
    if (mode === 'silent') return;
    const a = mode === 'answer' ? answerTo(m, m.readUInt16BE(0)) : answerTo(query('evil.example'), m.readUInt16BE(0));
    up.send(a, rinfo.port, rinfo.address);
  });
  const pool = new UpstreamPool('127.0.0.1', port, 1024, cryptoRng());
  try {
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => pool.exchange(query(`n${i}.example`, 1000 + i), 3000)));
    answers.forEach((a, i) => {
      const d = dnsPacket.decode(a);
      assert.equal(d.id, 1000 + i, 'the client id is restored');
      assert.equal(d.questions![0].name, `n${i}.example`);
    });
    assert.ok(seenPorts.size >= 2 && seenPorts.size <= 8, `source ports used: ${seenPorts.size}`);
    assert.ok(![...seenIds].every((id) => id >= 1000 && id < 1200), 'client ids went upstream unchanged');
    // Wrong question: ignored, so the query times out.
    mode = 'wrong-question';
    await assert.rejects(pool.exchange(query('real.example'), 400), /timeout/);
    mode = 'silent';
    const t0 = performance.now();
    await assert.rejects(pool.exchange(query('slow.example'), 300), /timeout/);
    assert.ok(performance.now() - t0 < 2000);
  } finally {
    pool.close();
    up.close();
  }
});

test('pool: an upstream port that refuses fails at once (ICMP on the connected socket), not after the timeout', async () => {
  // The kernel's global ICMP rate limit (net.ipv4.icmp_msgs_per_sec, which loopback does
  // not escape) can swallow the port-unreachable while the other unit files send to
  // closed ports, so up to 5 tries, 1 s apart (the bucket refills); a pool that ignored
  // ICMP errors would wait out every timeout and fail all of them.
  const tries: string[] = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.77.0.1', () => r()));
    const port = probe.address().port;
    await new Promise<void>((r) => probe.close(() => r()));
    const pool = new UpstreamPool('127.77.0.1', port, 16, cryptoRng());
    try {
      const t0 = performance.now();
      const r = await Promise.allSettled([pool.exchange(query('x.example'), 3000), pool.exchange(query('y.example'), 3000)]);
      const ms = performance.now() - t0;
      assert.deepEqual(r.map((x) => x.status), ['rejected', 'rejected']);
      const why = r.map((x) => (x.status === 'rejected' ? String((x.reason as Error).message) : 'ok')).join(',');
      tries.push(`${ms.toFixed(0)} ms (${why})`);
      if (ms < 1500 && !why.includes('timeout')) return;
    } finally {
      pool.close();
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  assert.fail(`never refused at once: ${tries.join('; ')}`);
});
