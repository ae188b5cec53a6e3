/**
 * weaveDNS's server thread (dns/threaded.ts, dns/server-worker.ts) and what feeds it:
 * the answering view (dns/view.ts: snapshot filtering, isolation by the asker's address,
 * round-robin shuffle) and the shared counters (dns/counters.ts: the 256-key cap for
 * query types, "other" overflow). The threaded server is run for real on loopback
 * (127.0.0.1, a free port) in every placement: a worker thread from the start, the
 * calling thread only, and 'auto' (the hand-over under queries, with no query lost; a
 * dead worker replaced while the calling thread answers).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as dnsPacket from 'dns-packet';
import { DnsView, snapshotOf, type ViewSnapshot } from '../../dns/view.js';
import { CounterReader, CounterWriter, counterBuffer, MAX_QUERY_KEYS, MAX_REASON_KEYS } from '../../dns/counters.js';
import { ThreadedDnsServer, threadNice, threadMode, threadRealtime, wantsThread, THREAD_NICE, THREAD_RT_PRIORITY, AUTO_QPS, AUTO_BUSY, AUTO_CHECK_MS } from '../../dns/threaded.js';
import type { DnsEntry } from '../../dns/registry.js';

const settings = { domain: 'weave.local.', ttl: 7, isolation: true };
const entry = (hostname: string, addr: string, origin = 'peer-a', tombstone = 0): DnsEntry => ({ containerId: `c-${addr}`, origin, addr, hostname, version: 1, tombstone });

test('snapshotOf: live entries of reachable origins only; subnets only with isolation', () => {
  const es = [entry('db.weave.local.', '10.32.1.5'), entry('db.weave.local.', '10.32.2.5', 'peer-b'), entry('old.weave.local.', '10.32.1.6', 'peer-a', 123)];
  const eps = [{ cidrs: ['10.32.1.9/24'] }, { cidrs: ['10.32.2.9/24', '10.32.3.9/24'] }];
  const snap = snapshotOf(es, (o) => o === 'peer-a', eps, true);
  assert.deepEqual(snap.entries, [['db.weave.local.', '10.32.1.5', '', 'peer-a']]);
  assert.deepEqual(snap.subnets, [['10.32.1.9', ['10.32.1.9/24']], ['10.32.2.9', ['10.32.2.9/24', '10.32.3.9/24']], ['10.32.3.9', ['10.32.2.9/24', '10.32.3.9/24']]]);
  assert.deepEqual(snapshotOf(es, () => true, eps, false).subnets, []);
});

test('view: isolation by the asker, the host sees all, IPv6 and PTR, shuffled per answer', () => {
  const snap: ViewSnapshot = {
    entries: [['db.weave.local.', '10.32.1.5', 'fd00::1:5', 'a'], ['db.weave.local.', '10.32.2.5', '', 'b'], ['rr.weave.local.', '10.32.1.7', '', 'a'], ['rr.weave.local.', '10.32.1.8', '', 'a'], ['rr.weave.local.', '10.32.1.9', '', 'a']],
    subnets: [['10.32.1.20', ['10.32.1.20/24']]],
  };
  const v = new DnsView(settings, snap);
  assert.deepEqual(v.names('10.32.1.20').lookup('db.weave.local.'), ['10.32.1.5']);
  assert.deepEqual(v.names('::ffff:10.32.1.20').lookup('db.weave.local.'), ['10.32.1.5'], 'IPv4-mapped asker');
  assert.deepEqual(v.names('10.32.1.20').reverse('10.32.2.5'), [], 'no PTR across groups');
  assert.deepEqual([...v.names('192.168.0.1').lookup('db.weave.local.')].sort(), ['10.32.1.5', '10.32.2.5'], 'the host sees every group');
  assert.deepEqual(v.names('10.32.1.20').lookup6!('db.weave.local.'), ['fd00::1:5']);
  assert.deepEqual(v.names('10.32.1.20').reverse6!('fd00::1:5'), ['db.weave.local.']);
  assert.equal(v.names('x').ttl, 7);
  const orders = new Set<string>();
  for (let i = 0; i < 60; i++) orders.add(v.names('10.32.1.20').lookup('rr.weave.local.').join());
  assert.ok(orders.size > 1, 'round-robin: the order varies');
  const off = new DnsView({ ...settings, isolation: false }, snap);
  assert.equal(off.names('10.32.1.20').lookup('db.weave.local.').length, 2, 'isolation off answers everything');
});

test('counters: one slot per key, announced once; 256 query keys then "other"; reasons capped', () => {
  const buf = counterBuffer();
  const reader = new CounterReader(buf);
  const announced: string[] = [];
  const w = new CounterWriter(buf, (slot, key) => {
    announced.push(key);
    reader.learn(slot, key);
  });
  w.query('A', 'NOERROR');
  w.query('A', 'NOERROR');
  w.dropped('malformed');
  w.upstream('timeout');
  assert.equal(reader.get('query', 'A', 'NOERROR'), 2);
  assert.equal(reader.get('dropped', 'malformed'), 1);
  assert.equal(reader.get('upstream', 'timeout'), 1);
  assert.equal(announced.length, 3);
  for (let i = 0; i < 1000; i++) w.query(`TYPE${i}`, 'NXDOMAIN');
  const queries = reader.read().filter((c) => c.kind === 'query');
  assert.equal(queries.length, MAX_QUERY_KEYS, 'the label set is capped');
  assert.equal(queries.reduce((a, c) => a + c.n, 0), 1002, 'nothing is lost');
  assert.ok(reader.get('query', 'other', 'other') > 0);
  for (let i = 0; i < 100; i++) w.dropped(`r${i}`);
  assert.equal(reader.read().filter((c) => c.kind === 'dropped').length, MAX_REASON_KEYS);
  reader.learn(99999, 'query\0x\0y');
  reader.learn(0, 'bogus\0x');
  assert.equal(reader.get('query', 'x', 'y'), 0, 'out-of-range and unknown-kind announcements are ignored');
});

function ask(port: number, msgs: Buffer[], want: number): Promise<Buffer[]> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const got: Buffer[] = [];
    const t = setTimeout(() => {
      s.close();
      resolve(got);
    }, 3000);
    s.on('message', (m) => {
      got.push(m);
      if (got.length === want) {
        clearTimeout(t);
        s.close();
        resolve(got);
      }
    });
    for (const m of msgs) s.send(m, port, '127.0.0.1');
  });
}

const query = (id: number, name: string, type: 'A' | 'PTR' = 'A'): Buffer => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, class: 'IN', name }] });

for (const inThread of [true, false]) {
  test(`threaded server (${inThread ? 'mode thread: worker thread' : 'mode main: calling thread'}): answers from the view, follows setView, counts drops and queries`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tsw-dns-thread-'));
    writeFileSync(path.join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    const logs: string[] = [];
    // The worker lowers its own nice value when asked (root may); the test checks no warning.
    process.env.WEAVE_DNS_THREAD_NICE = '-1';
    const srv = new ThreadedDnsServer({
      host: '127.0.0.1', port: 0, resolvConf: path.join(dir, 'resolv.conf'), mode: inThread ? 'thread' : 'main', log: (l) => logs.push(l),
      settings: { ...settings, isolation: false },
      snapshot: { entries: [['db.weave.local.', '10.32.0.5', '', 'a']], subnets: [] },
    });
    try {
      await srv.start();
      assert.equal(srv.inThread, inThread);
      assert.ok(srv.port > 0);
      // The worker reports its class before it reads; root may use SCHED_FIFO, others get EPERM.
      if (!inThread) assert.equal(srv.realtime, undefined, 'no thread: nothing to report');
      else if (process.getuid?.() === 0) {
        assert.deepEqual(srv.realtime, { Priority: THREAD_RT_PRIORITY, Active: true, Demotions: 0 });
        assert.equal(fifoThreads(), 1, 'exactly one thread of this process (the server thread) is SCHED_FIFO');
      } else {
        assert.deepEqual(srv.realtime, { Priority: THREAD_RT_PRIORITY, Active: false, Demotions: 0, Error: 'EPERM' });
        assert.ok(logs.some((l) => /stays in the normal scheduling class \(cannot use real-time priority 1: EPERM\)/.test(l)), logs.join(' | '));
      }
      let [r] = await ask(srv.port, [query(1, 'db.weave.local')], 1);
      let p = dnsPacket.decode(r!);
      assert.equal(p.id, 1);
      assert.deepEqual(p.answers!.map((a) => [(a as { data?: unknown }).data, (a as { ttl?: number }).ttl]), [['10.32.0.5', 7]]);
      srv.setView({ entries: [['db.weave.local.', '10.32.0.6', '', 'a']], subnets: [] });
      // The worker gets the view asynchronously: the next answers follow it.
      let addr = '';
      for (let i = 0; i < 50 && addr !== '10.32.0.6'; i++) {
        [r] = await ask(srv.port, [query(2 + i, 'db.weave.local')], 1);
        addr = String((dnsPacket.decode(r!).answers![0] as { data?: unknown } | undefined)?.data);
      }
      assert.equal(addr, '10.32.0.6');
      [r] = await ask(srv.port, [query(99, 'nope.weave.local')], 1);
      p = dnsPacket.decode(r!);
      assert.equal(p.flags! & 15, 3, "NXDOMAIN");
      // Hostile: short, and counts that cannot fit → dropped unanswered, counted.
      const bomb = Buffer.alloc(40);
      bomb.writeUInt16BE(0x4000, 4);
      const none = await ask(srv.port, [Buffer.from('hello'), bomb], 1);
      assert.equal(none.length, 0, 'no answer to malformed datagrams');
      const c = (kind: 'query' | 'dropped', ...l: string[]): number => srv.counters().filter((x) => x.kind === kind && x.labels.join() === l.join()).reduce((a, x) => a + x.n, 0);
      for (let i = 0; i < 50 && c('dropped', 'malformed') < 1; i++) await new Promise((res) => setTimeout(res, 50));
      assert.equal(c('dropped', 'short'), 1);
      assert.equal(c('dropped', 'malformed'), 1);
      assert.ok(c('query', 'A', 'NOERROR') >= 2);
      assert.equal(c('query', 'A', 'NXDOMAIN'), 1);
      assert.deepEqual(srv.currentUpstreams(), [], '127.0.0.1 is ours (the listen address): filtered');
      if (inThread && process.getuid?.() === 0) assert.deepEqual(logs.filter((l) => /nice/.test(l)), [], 'root may lower the server thread\'s nice value');
    } finally {
      await srv.close();
      delete process.env.WEAVE_DNS_THREAD_NICE;
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('threaded server: a bind failure rejects with one line and leaves no thread', async () => {
  const a = new ThreadedDnsServer({ host: '127.0.0.1', port: 0, settings, snapshot: { entries: [], subnets: [] } });
  await a.start();
  try {
    const b = new ThreadedDnsServer({ host: '127.0.0.1', port: a.port, settings, snapshot: { entries: [], subnets: [] } });
    await assert.rejects(b.start(), (err: Error) => /EADDRINUSE/.test(err.message) && !err.message.includes('\n'));
    await b.close();
  } finally {
    await a.close();
  }
});

/** Threads of this process whose scheduling policy (proc(5) stat field 41) is SCHED_FIFO (1). */
function fifoThreads(): number {
  let n = 0;
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      // Fields after the parenthesised comm: state is field 3, policy field 41.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[41 - 3] === '1') n++;
    } catch {
      // the thread ended meanwhile
    }
  }
  return n;
}

test('threadRealtime: SCHED_FIFO 1 by default, 0 turns it off, bad values fall back', () => {
  assert.equal(THREAD_RT_PRIORITY, 1);
  assert.equal(threadRealtime({}), 1);
  assert.equal(threadRealtime({ WEAVE_DNS_THREAD_RT: '0' }), 0);
  assert.equal(threadRealtime({ WEAVE_DNS_THREAD_RT: '20' }), 20);
  for (const bad of ['', ' ', '-1', '100', '1.5', 'x', '1e3']) assert.equal(threadRealtime({ WEAVE_DNS_THREAD_RT: bad }), THREAD_RT_PRIORITY, bad);
});

test('threadNice: default (none), override, bad values fall back', () => {
  assert.equal(threadNice({}), THREAD_NICE);
  assert.equal(THREAD_NICE, undefined);
  assert.equal(threadNice({ WEAVE_DNS_THREAD_NICE: '-5' }), -5);
  assert.equal(threadNice({ WEAVE_DNS_THREAD_NICE: '' }), THREAD_NICE);
  assert.equal(threadNice({ WEAVE_DNS_THREAD_NICE: '-40' }), THREAD_NICE);
  assert.equal(threadNice({ WEAVE_DNS_THREAD_NICE: 'x' }), THREAD_NICE);
});

test('threadMode and wantsThread: the env overrides; a busy period or enough queries hands over', () => {
  assert.equal(threadMode(undefined, {}), 'auto');
  assert.equal(threadMode('main', {}), 'main');
  assert.equal(threadMode('auto', { WEAVE_DNS_THREAD: '1' }), 'thread');
  assert.equal(threadMode('thread', { WEAVE_DNS_THREAD: '0' }), 'main');
  assert.equal(threadMode(undefined, { WEAVE_DNS_THREAD: 'yes' }), 'auto');
  assert.equal(wantsThread(0, 1), false, 'a busy loop with no DNS traffic keeps the main thread');
  assert.equal(wantsThread(AUTO_QPS - 1, 0), false);
  assert.equal(wantsThread(AUTO_QPS, 0), true);
  assert.equal(wantsThread(1, AUTO_BUSY), true);
  assert.equal(wantsThread(1, AUTO_BUSY - 0.01), false);
  assert.equal(wantsThread(3, 0, 3), true);
});

/** Send one A query every `everyMs` for `ms`; resolves with [sent, ids answered]. */
function stream(port: number, ms: number, everyMs: number): Promise<[number, Set<number>]> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const got = new Set<number>();
    let sent = 0;
    s.on('message', (m) => got.add(m.readUInt16BE(0)));
    const tick = setInterval(() => s.send(query(++sent, 'db.weave.local'), port, '127.0.0.1'), everyMs);
    setTimeout(() => {
      clearInterval(tick);
      // Answers still in flight get a bounded moment.
      setTimeout(() => {
        s.close();
        resolve([sent, got]);
      }, 500);
    }, ms);
  });
}

test('threaded server (mode auto): stays on the main thread while idle, hands UDP over under queries without losing one', async () => {
  const logs: string[] = [];
  const srv = new ThreadedDnsServer({
    host: '127.0.0.1', port: 0, resolvConf: '/nonexistent/resolv.conf', autoQps: 10, log: (l) => logs.push(l),
    settings: { ...settings, isolation: false },
    snapshot: { entries: [['db.weave.local.', '10.32.0.5', '', 'a']], subnets: [] },
  });
  try {
    await srv.start();
    assert.equal(srv.mode, 'auto');
    await new Promise((r) => setTimeout(r, AUTO_CHECK_MS * 2.5));
    assert.equal(srv.inThread, false, 'no queries: no thread');
    // ~200 queries/s across the hand-over: every one is answered, by one thread or the other.
    const [sent, got] = await stream(srv.port, AUTO_CHECK_MS * 4, 5);
    assert.equal(srv.inThread, true, `handed over (logs: ${logs.join(' | ')})`);
    assert.ok(logs.some((l) => /answering UDP on a worker thread from now on \(\d+ queries in/.test(l)), logs.join(' | '));
    assert.ok(sent > 50, `sent ${sent}`);
    assert.equal(got.size, sent, `answered ${got.size} of ${sent}`);
    const c = srv.counters().filter((x) => x.kind === 'query' && x.labels.join() === 'A,NOERROR').reduce((a, x) => a + x.n, 0);
    assert.equal(c, sent, 'both threads\' counters are summed');
    // TCP stays on the main thread.
    const tcp = await tcpAsk(srv.port, query(7, 'db.weave.local'));
    assert.equal(dnsPacket.decode(tcp).id, 7);
  } finally {
    await srv.close();
  }
});

test('threaded server: a dead worker is replaced, and the main thread answers meanwhile', async () => {
  const logs: string[] = [];
  const srv = new ThreadedDnsServer({
    host: '127.0.0.1', port: 0, resolvConf: '/nonexistent/resolv.conf', mode: 'thread', log: (l) => logs.push(l),
    settings: { ...settings, isolation: false },
    snapshot: { entries: [['db.weave.local.', '10.32.0.5', '', 'a']], subnets: [] },
  });
  try {
    await srv.start();
    assert.equal(srv.inThread, true);
    await srv.killWorkerForTest();
    for (let i = 0; i < 100 && srv.inThread; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(srv.inThread, false, 'the main thread took the socket back');
    const [a] = await ask(srv.port, [query(5, 'db.weave.local')], 1);
    assert.equal(dnsPacket.decode(a!).id, 5, 'answered while no worker runs');
    for (let i = 0; i < 100 && !srv.inThread; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(srv.inThread, true, 'a new worker adopted the socket');
    const [b] = await ask(srv.port, [query(6, 'db.weave.local')], 1);
    assert.equal(dnsPacket.decode(b!).id, 6);
    assert.ok(logs.some((l) => /server thread exited/.test(l)), logs.join(' | '));
  } finally {
    await srv.close();
  }
});

/** One query over TCP (RFC 1035 §4.2.2 length prefix); the answer, within 3 s. */
function tcpAsk(port: number, msg: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { s.destroy(); reject(new Error('no TCP answer in 3 s')); }, 3000);
    s.on('error', (e) => { clearTimeout(t); reject(e); });
    s.on('connect', () => {
      const hdr = Buffer.alloc(2);
      hdr.writeUInt16BE(msg.length);
      s.write(Buffer.concat([hdr, msg]));
    });
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        clearTimeout(t);
        s.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
  });
}
