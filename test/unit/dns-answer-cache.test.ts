/**
 * weaveDNS's memoised answers (dns/answer.ts answerFor): a cached response must be
 * byte for byte what the uncached path builds for the same query (only the id differs
 * between two queries), and never stale when the registry's answer changes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { answerQuery, clearAnswerCache, type NameSource } from '../../dns/answer.js';

/** A name source with fixed records; `addrs` may be changed between queries. */
function source(addrs: Record<string, string[]>, addrs6: Record<string, string[]> = {}): NameSource {
  return {
    domain: 'weave.local.',
    ttl: 1,
    lookup: (n) => addrs[n] ?? [],
    lookup6: (n) => addrs6[n] ?? [],
    reverse: (a) => Object.entries(addrs).filter(([, v]) => v.includes(a)).map(([k]) => k),
  };
}

function query(id: number, name: string, type: string, rd: boolean, edns: number | undefined): Buffer {
  return dnsPacket.encode({
    type: 'query', id, flags: rd ? dnsPacket.RECURSION_DESIRED : 0,
    questions: [{ type: type as 'A', class: 'IN', name }],
    additionals: edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: edns } as dnsPacket.Answer],
  });
}

const names = ['db', 'web-1', 'x', 'many', 'gone'];
const recs: Record<string, string[]> = {
  'db.weave.local.': ['10.32.0.5'],
  'web-1.weave.local.': ['10.32.0.6', '10.32.0.7', '10.32.0.8'],
  'x.weave.local.': ['10.40.0.1'],
  // 60 A records: over 512 bytes, so UDP without EDNS truncates (TC).
  'many.weave.local.': Array.from({ length: 60 }, (_, i) => `10.33.0.${i + 1}`),
};
const recs6: Record<string, string[]> = { 'db.weave.local.': ['fd00:77::a20:5'] };

test('a cached answer equals the uncached one for the same query, for random names, case, types, RD, EDNS sizes and ids', () => {
  const src = source(recs, recs6);
  const arbName = fc.tuple(fc.constantFrom(...names), fc.constantFrom('', '.weave.local', '.WEAVE.Local', '.weave.local.'), fc.oneof(fc.constant([] as boolean[]), fc.array(fc.boolean(), { maxLength: 24 })))
    .map(([n, d, upper]) => [...(n + d)].map((ch, i) => (upper[i % Math.max(1, upper.length)] ? ch.toUpperCase() : ch)).join(''));
  const arbQuery = fc.record({
    name: arbName, type: fc.constantFrom('A', 'AAAA', 'ANY', 'MX', 'TXT'), rd: fc.boolean(),
    edns: fc.constantFrom(undefined, 0, 512, 600, 1232, 4096, 9000), transport: fc.constantFrom<'udp' | 'tcp'>('udp', 'tcp'),
  });
  // Many queries that differ in one field each share a warm cache: a key missing a
  // field would hand one of them another's answer.
  fc.assert(fc.property(fc.array(fc.tuple(arbQuery, fc.integer({ min: 0, max: 0xffff })), { minLength: 1, maxLength: 60 }), (qs) => {
    const fresh = qs.map(([q, id]) => {
      clearAnswerCache();
      return answerQuery(query(id, q.name, q.type, q.rd, q.edns), src, q.transport);
    });
    clearAnswerCache();
    for (let round = 0; round < 2; round++) {
      qs.forEach(([q, id0], i) => {
        const id = round ? id0 ^ 0x5a5a : id0;
        const got = answerQuery(query(id, q.name, q.type, q.rd, q.edns), src, q.transport);
        const want = fresh[i]!;
        if (want.kind === 'answer') want.response.writeUInt16BE(id, 0);
        assert.equal(got.kind, want.kind);
        if (got.kind !== 'answer' || want.kind !== 'answer') return;
        assert.deepEqual(got.response, want.response, `${q.name} ${q.type} rd=${q.rd} edns=${q.edns} ${q.transport}`);
        assert.equal(got.truncated, want.truncated);
        assert.equal(got.rcode, want.rcode);
        assert.equal(got.response.readUInt16BE(0), id);
      });
    }
  }), { numRuns: 150 });
});

test('one name asked with different size limits gets each its own answer (truncated only where it does not fit)', () => {
  const src = source(recs);
  const cases: [number | undefined, 'udp' | 'tcp', boolean][] = [[600, 'udp', true], [4096, 'udp', false], [undefined, 'udp', true], [undefined, 'tcp', false], [512, 'udp', true], [1232, 'udp', true], [3000, 'udp', false]];
  const fresh = cases.map(([edns, t]) => {
    clearAnswerCache();
    return answerQuery(query(9, 'many.weave.local', 'A', true, edns), src, t);
  });
  clearAnswerCache();
  cases.forEach(([edns, t, trunc], i) => {
    const got = answerQuery(query(9, 'many.weave.local', 'A', true, edns), src, t);
    assert.ok(got.kind === 'answer' && fresh[i]!.kind === 'answer');
    assert.equal(got.truncated, trunc, `edns ${edns} ${t}`);
    assert.deepEqual(got.response, (fresh[i] as { response: Buffer }).response, `edns ${edns} ${t}`);
  });
});

test('a cached answer is never stale: another address set (registry change) or order (shuffle) is another answer', () => {
  clearAnswerCache();
  const addrs: Record<string, string[]> = { 'db.weave.local.': ['10.32.0.5'] };
  const src = source(addrs);
  const ask = (): string[] => {
    const r = answerQuery(query(7, 'db.weave.local', 'A', true, undefined), src, 'udp');
    assert.equal(r.kind, 'answer');
    return (dnsPacket.decode((r as { response: Buffer }).response).answers ?? []).map((a) => String((a as { data?: unknown }).data));
  };
  assert.deepEqual(ask(), ['10.32.0.5']);
  addrs['db.weave.local.'] = ['10.32.0.9', '10.32.0.5'];
  assert.deepEqual(ask(), ['10.32.0.9', '10.32.0.5']);
  addrs['db.weave.local.'] = ['10.32.0.5', '10.32.0.9'];
  assert.deepEqual(ask(), ['10.32.0.5', '10.32.0.9']);
  delete addrs['db.weave.local.'];
  const r = answerQuery(query(8, 'db.weave.local', 'A', true, undefined), src, 'udp');
  assert.equal(r.kind === 'answer' && r.rcode, 'NXDOMAIN');
});

test('the answer cache is bounded and a hit hands out its own buffer (a caller may keep or change it)', () => {
  clearAnswerCache();
  const src = source(recs);
  const a = answerQuery(query(1, 'db.weave.local', 'A', true, undefined), src, 'udp');
  const b = answerQuery(query(2, 'db.weave.local', 'A', true, undefined), src, 'udp');
  assert.ok(a.kind === 'answer' && b.kind === 'answer');
  b.response.fill(0);
  const c = answerQuery(query(3, 'db.weave.local', 'A', true, undefined), src, 'udp');
  assert.ok(c.kind === 'answer');
  assert.deepEqual(c.response.subarray(2), a.response.subarray(2));
  // 5,000 distinct names (over ANSWER_CACHE_MAX) still answer correctly.
  for (let i = 0; i < 5000; i++) {
    const r = answerQuery(query(i, `n${i}.weave.local`, 'A', false, undefined), src, 'udp');
    assert.equal(r.kind === 'answer' && r.rcode, 'NXDOMAIN');
  }
});
