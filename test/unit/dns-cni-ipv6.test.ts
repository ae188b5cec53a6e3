/**
 * IPv6 (issue #21) in weaveDNS (AAAA, ip6.arpa PTR, the optional addr6 on the wire) and
 * in the CNI result (ips with the IPv6 address, "version": "6" before CNI 1.0.0).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import { pack, unpack } from 'msgpackr';
import { answerQuery, type NameSource } from '../../dns/answer.js';
import { DnsRegistry, entriesFromWire, entriesToWire, DnsRegistryError } from '../../dns/registry.js';
import { ip6ArpaName } from '../../ipam/ipv6.js';
import { buildResult, parseConf, parseEnv } from '../../cni/spec.js';

const O = 'aa:00:00:00:00:02';

function registry(): DnsRegistry {
  const r = new DnsRegistry(O, () => 1000);
  r.add('c1', '10.32.1.5', 'db.weave.local.', 'fd00:77::a20:105');
  r.add('c2', '10.32.1.6', 'db.weave.local.', 'fd00:77::a20:106');
  r.add('c3', '10.32.2.7', 'other.weave.local.', 'fd00:77::a20:207');
  r.add('c4', '10.32.1.8', 'v4only.weave.local.');
  return r;
}

function names(r: DnsRegistry, visible?: (a: string) => boolean): NameSource {
  return {
    domain: 'weave.local.', ttl: 1,
    lookup: (n) => r.lookup(n, { visible }), reverse: (a) => r.reverse(a, { visible }),
    lookup6: (n) => r.lookup6(n, { visible }), reverse6: (a) => r.reverse6(a, { visible }),
  };
}

function ask(name: string, type: string, src: NameSource) {
  const q = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: type as 'A', name }] });
  const out = answerQuery(q, src, 'udp');
  assert.equal(out.kind, 'answer', `${type} ${name}`);
  if (out.kind !== 'answer') throw new Error('unreachable');
  const p = dnsPacket.decode(out.response);
  return { rcode: out.rcode, answers: (p.answers ?? []).map((a) => ({ type: a.type, data: (a as { data: unknown }).data })) };
}

test('AAAA answers the entries\' IPv6 addresses; A stays IPv4; ANY gets both', () => {
  const src = names(registry());
  assert.deepEqual(ask('db.weave.local', 'AAAA', src).answers.map((a) => a.data).sort(), ['fd00:77::a20:105', 'fd00:77::a20:106']);
  assert.ok(ask('db.weave.local', 'AAAA', src).answers.every((a) => a.type === 'AAAA'));
  assert.deepEqual(ask('db.weave.local', 'A', src).answers.map((a) => a.data).sort(), ['10.32.1.5', '10.32.1.6']);
  assert.deepEqual(ask('db.weave.local', 'ANY', src).answers.map((a) => a.type).sort(), ['A', 'A', 'AAAA', 'AAAA']);
});

test('a name without IPv6 answers AAAA NOERROR-empty; an unknown name NXDOMAIN', () => {
  const src = names(registry());
  assert.deepEqual(ask('v4only.weave.local', 'AAAA', src), { rcode: 'NOERROR', answers: [] });
  assert.equal(ask('nobody.weave.local', 'AAAA', src).rcode, 'NXDOMAIN');
});

test('a bare name we know ("db.", as Docker\'s ndots:0 resolvers ask) answers AAAA too; unknown or invisible bare names are forwarded', () => {
  const src = names(registry());
  assert.deepEqual(ask('db', 'AAAA', src).answers.map((a) => a.data).sort(), ['fd00:77::a20:105', 'fd00:77::a20:106']);
  assert.deepEqual(ask('DB.', 'ANY', src).answers.map((a) => a.type).sort(), ['A', 'A', 'AAAA', 'AAAA']);
  assert.deepEqual(ask('v4only', 'AAAA', src), { rcode: 'NOERROR', answers: [] });
  const q = dnsPacket.encode({ type: 'query', id: 8, questions: [{ type: 'AAAA', name: 'unknown' }] });
  assert.equal(answerQuery(q, src, 'udp').kind, 'forward');
  const only1 = names(registry(), (a) => a.startsWith('10.32.1.'));
  // A bare name the asker may not see is, as for A, a name we do not know: forwarded, its address never answered.
  for (const type of ['A', 'AAAA'] as const) {
    assert.equal(answerQuery(dnsPacket.encode({ type: 'query', id: 9, questions: [{ type, name: 'other' }] }), only1, 'udp').kind, 'forward', type);
  }
  assert.equal(ask('db', 'AAAA', only1).answers.length, 2);
});

test('ip6.arpa PTR names the entry; unknown addresses are forwarded', () => {
  const src = names(registry());
  const r = ask(ip6ArpaName('fd00:77::a20:105')!, 'PTR', src);
  assert.deepEqual(r.answers, [{ type: 'PTR', data: 'db.weave.local' }]);
  const q = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'PTR', name: ip6ArpaName('fd00:77::a20:999')! }] });
  assert.equal(answerQuery(q, src, 'udp').kind, 'forward');
});

test('isolation: AAAA and PTR follow the visibility of the entry\'s IPv4 address', () => {
  const onlyNet1 = names(registry(), (a) => a.startsWith('10.32.1.'));
  assert.equal(ask('other.weave.local', 'AAAA', onlyNet1).rcode, 'NXDOMAIN');
  const q = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'PTR', name: ip6ArpaName('fd00:77::a20:207')! }] });
  assert.equal(answerQuery(q, onlyNet1, 'udp').kind, 'forward');
});

test('wire: addr6 travels as an optional 7th element; 6-element entries still decode', () => {
  const r = registry();
  const wire = entriesToWire(r.all());
  assert.ok(wire.some((e) => (e as unknown[]).length === 6));
  assert.ok(wire.some((e) => (e as unknown[]).length === 7));
  const back = entriesFromWire(unpack(pack(wire)));
  assert.deepEqual(back, r.all());
  const other = new DnsRegistry('aa:00:00:00:00:03', () => 1000);
  other.merge(back);
  assert.deepEqual(other.lookup6('db.weave.local.'), ['fd00:77::a20:105', 'fd00:77::a20:106']);
  assert.throws(() => entriesFromWire([['c', O, '10.32.1.5', 'x.weave.local.', 0, 0, 'fd00::g']]), DnsRegistryError);
  assert.throws(() => entriesFromWire([['c', O, '10.32.1.5', 'x.weave.local.', 0, 0, 'FD00::1']]), /RFC 5952/);
  assert.throws(() => entriesFromWire([['c', O, '10.32.1.5', 'x.weave.local.', 0, 0, 7]]), /non-string IPv6/);
  assert.throws(() => entriesFromWire([['c', O, '10.32.1.5', 'x.weave.local.', 0, 0, 'fd00::1', 'extra']]), /6- or 7-element/);
});

test('re-adding with another IPv6 address is a new version; the same one is a no-op', () => {
  const r = new DnsRegistry(O, () => 1000);
  assert.equal(r.add('c1', '10.32.1.5', 'db.weave.local.').length, 1);
  assert.deepEqual(r.add('c1', '10.32.1.5', 'db.weave.local.'), []);
  const up = r.add('c1', '10.32.1.5', 'db.weave.local.', 'fd00:77::a20:105');
  assert.equal(up.length, 1);
  assert.equal(up[0].version, 1);
  assert.deepEqual(r.add('c1', '10.32.1.5', 'db.weave.local.', 'fd00:77::a20:105'), []);
});

test('CNI ADD result: the IPv6 address after the IPv4 one, version "6" before 1.0.0, no gateway', () => {
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/run/netns/cni-1', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
  const reply = { cidrs: ['10.32.0.3/12'], cidrs6: ['fd00:77::a20:3/108'], mac: '02:00:00:00:00:01', hostVeth: 'vethwepl1234567', gateway: '10.32.0.1' };
  for (const v of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    const conf = parseConf(Buffer.from(JSON.stringify({ cniVersion: v, name: 'weave', type: 'weave-net' })));
    const r = buildResult(conf, parseEnv(env), reply);
    const old = v.startsWith('0.');
    assert.deepEqual(r.ips, [
      { ...(old ? { version: '4' } : {}), address: '10.32.0.3/12', gateway: '10.32.0.1', interface: 1 },
      { ...(old ? { version: '6' } : {}), address: 'fd00:77::a20:3/108', interface: 1 },
    ], v);
  }
});
