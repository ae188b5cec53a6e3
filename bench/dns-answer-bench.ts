/**
 * Micro-bench of weaveDNS's local answer path on one core, no sockets: how long
 * answerQuery() (dns/answer.ts) takes per query, and how that splits between
 * decoding the query (dns-packet decode) and building the response (dns-packet
 * encode), so a change to the answer path (e.g. a cache of encoded answers) can be
 * measured without dnsperf. Cases: a local A name with 3 addresses, an unknown name
 * under the domain (NXDOMAIN), a PTR, and a name we forward (decision only).
 *
 * Usage: node dist/bench/dns-answer-bench.js [seconds-per-case=0.5] [repeats=3]
 * Prints one line per case (median ns/query and queries/s) and a JSON summary.
 * Figures are per core; on a shared machine give `uptime` next to them.
 */
import * as dnsPacket from 'dns-packet';
import type { Answer, Packet } from 'dns-packet';
import { answerQuery, buildResponse, decodeQuery, type NameSource } from '../dns/answer.js';

const seconds = Number(process.argv[2] ?? 0.5);
const repeats = Number(process.argv[3] ?? 3);
const BATCH = 1000;

/** Median ns per call of `body` over `repeats` runs of `seconds` each. */
function measure(body: () => unknown): number {
  const runs: number[] = [];
  for (let r = 0; r < repeats; r++) {
    for (let i = 0; i < BATCH; i++) body(); // warm-up
    const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
    const t0 = process.hrtime.bigint();
    let n = 0;
    let now = t0;
    while (now < deadline) {
      for (let i = 0; i < BATCH; i++) body();
      n += BATCH;
      now = process.hrtime.bigint();
    }
    runs.push(Number(now - t0) / n);
  }
  runs.sort((a, b) => a - b);
  return runs[Math.floor(runs.length / 2)];
}

const addrs = ['10.32.0.5', '10.32.0.6', '10.32.0.7'];
const names: NameSource = {
  domain: 'weave.local.',
  ttl: 1,
  lookup: (n) => (n === 'db.weave.local.' ? [...addrs].sort(() => Math.random() - 0.5) : []),
  reverse: (a) => (a === '10.32.0.5' ? ['db.weave.local.'] : []),
};

function query(name: string, type: 'A' | 'PTR', edns: boolean): Buffer {
  const pkt: Packet = { type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, class: 'IN', name }] };
  if (edns) pkt.additionals = [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as Answer];
  return dnsPacket.encode(pkt);
}

const cases: Array<[string, () => unknown]> = [];
const qA = query('db.weave.local', 'A', false);
const qAe = query('Db.Weave.Local', 'A', true);
const qNx = query('nope.weave.local', 'A', false);
const qPtr = query('5.0.32.10.in-addr.arpa', 'PTR', false);
const qFwd = query('example.com', 'A', false);
cases.push(['answerQuery A (3 addrs)', () => answerQuery(qA, names, 'udp')]);
cases.push(['answerQuery A + EDNS, mixed case', () => answerQuery(qAe, names, 'udp')]);
cases.push(['answerQuery NXDOMAIN', () => answerQuery(qNx, names, 'udp')]);
cases.push(['answerQuery PTR', () => answerQuery(qPtr, names, 'udp')]);
cases.push(['answerQuery forward decision', () => answerQuery(qFwd, names, 'udp')]);
cases.push(['  part: decodeQuery', () => decodeQuery(qA)]);
const decoded = decodeQuery(qA)!;
const answers: Answer[] = addrs.map((data) => ({ type: 'A', class: 'IN', name: 'db.weave.local', ttl: 1, data }));
cases.push(['  part: buildResponse (encode)', () => buildResponse(decoded, 'NOERROR', answers, 512)]);
const pkt: Packet = { type: 'response', id: 4242, flags: 0x8580, questions: [{ type: 'A', class: 'IN', name: 'db.weave.local' }], answers };
cases.push(['  part: dnsPacket.encode alone', () => dnsPacket.encode(pkt)]);
const out = Buffer.alloc(512);
cases.push(['  part: dnsPacket.encode into a buffer', () => dnsPacket.encode(pkt, out, 0)]);

const summary: Record<string, { nsPerQuery: number; perSecond: number }> = {};
for (const [label, body] of cases) {
  const ns = measure(body);
  summary[label.trim()] = { nsPerQuery: Math.round(ns), perSecond: Math.round(1e9 / ns) };
  console.log(`${label.padEnd(40)} ${ns.toFixed(0).padStart(7)} ns  ${Math.round(1e9 / ns).toLocaleString('en-US').padStart(11)} /s`);
}
console.log(JSON.stringify({ bench: 'dns-answer', seconds, repeats, summary }));
