import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics, rangeSize, type DataPathCounters } from '../../router/api/metrics.js';
import type { Report } from '../../router/api/report.js';
import { H2, H3, sampleReport } from './obs-fixtures.js';

function sampleCounters(): DataPathCounters {
  return {
    framesIn: { sleeve: 10, fastdp: 3 },
    framesOut: { sleeve: 12 },
    bytesIn: { sleeve: 10_000, fastdp: 4_500 },
    bytesOut: { sleeve: 15_000 },
    drops: { 'no-route': 2, malformed: 1 },
    gossipMessages: { topology: 40, ipam: 5 },
    gossipBytes: { topology: 8_000, ipam: 900 },
    topologyDeltas: { sent: 12, applied: 30, wanted: 2 },
    connectionTerminations: 7,
    routeRecomputes: 3,
    macCacheSize: 4,
    flows: 0,
    tapMerge: { router: { frames: 30, superFrames: 2, fallbacks: 0 }, 'flow-cache': { frames: 640, superFrames: 11, fallbacks: 1 } },
  };
}

/** Parses exposition text into "name{sorted labels}" -> value, plus TYPE lines. */
function parse(text: string): { samples: Map<string, number>; types: Map<string, string> } {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types.set(name, type);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable line ${line}`);
    const labels = m[2] ? m[2].split(/,(?=[a-z_]+=")/).sort().join(',') : '';
    const key = labels ? `${m[1]}{${labels}}` : m[1];
    assert.ok(!samples.has(key), `duplicate series ${key}`);
    samples.set(key, Number(m[3]));
  }
  return { samples, types };
}

function source(r: Report = sampleReport(), c: DataPathCounters = sampleCounters()) {
  const s = { r, c, reportCalls: 0, countersCalls: 0,
    report() { s.reportCalls++; return s.r; },
    counters() { s.countersCalls++; return s.c; } };
  return s;
}

test('metrics: Weave names, labels and values for the sample report', async () => {
  const src = source();
  const m = createMetrics(src);
  const { samples, types } = parse(await m.render());
  const get = (k: string) => {
    assert.ok(samples.has(k), `missing ${k}\n${[...samples.keys()].join('\n')}`);
    return samples.get(k);
  };
  assert.equal(get('weave_connections{encryption="",state="established",type="sleeve"}'), 1);
  assert.equal(get('weave_connections{encryption="yes",state="established",type="fastdp"}'), 1);
  assert.equal(get('weave_connections{encryption="",state="failed",type="unknown"}'), 1);
  assert.equal(get('weave_connections{encryption="",state="pending",type="sleeve"}'), 0);
  const connSeries = [...samples.keys()].filter((k) => k.startsWith('weave_connections{'));
  assert.equal(connSeries.length, 5 * 3 * 2);
  assert.equal(connSeries.reduce((n, k) => n + samples.get(k)!, 0), 3);
  assert.equal(get('weave_connection_terminations_total'), 7);
  assert.equal(types.get('weave_connection_terminations_total'), 'counter');
  assert.equal(get('tsweave_route_recomputes_total'), 3);
  assert.equal(types.get('tsweave_route_recomputes_total'), 'counter');
  assert.equal(get('weave_ips{state="local-used"}'), 2);
  assert.equal(get('weave_max_ips'), 1048576);
  assert.equal(get('weave_flows'), 0);
  assert.equal(get('weave_ipam_unreachable_count'), 1);
  assert.ok(Math.abs(get('weave_ipam_unreachable_percentage')! - (349526 * 100) / 1048576) < 1e-9);
  assert.equal(get('weave_ipam_pending_allocates'), 1);
  assert.equal(get('tsweave_frames_total{direction="in",path="sleeve"}'), 10);
  assert.equal(get('tsweave_frames_total{direction="in",path="fastdp"}'), 3);
  assert.equal(get('tsweave_frames_total{direction="out",path="sleeve"}'), 12);
  assert.equal(get('tsweave_frames_total{direction="out",path="fastdp"}'), 0);
  assert.equal(get('tsweave_bytes_total{direction="in",path="fastdp"}'), 4500);
  assert.equal(get('tsweave_bytes_total{direction="out",path="sleeve"}'), 15000);
  assert.equal(types.get('tsweave_bytes_total'), 'counter');
  assert.equal(get('tsweave_drops_total{reason="no-route"}'), 2);
  assert.equal(get('tsweave_drops_total{reason="malformed"}'), 1);
  for (const reason of ['isolation', 'replay', 'auth', 'mtu']) assert.equal(get(`tsweave_drops_total{reason="${reason}"}`), 0);
  assert.equal(get(`tsweave_connection_pmtu_bytes{peer="${H2}"}`), 1376);
  assert.equal(get(`tsweave_connection_pmtu_bytes{peer="${H3}"}`), 1410);
  assert.equal([...samples.keys()].filter((k) => k.startsWith('tsweave_connection_pmtu_bytes')).length, 2);
  assert.equal(get('tsweave_gossip_messages_total{channel="topology"}'), 40);
  assert.equal(get('tsweave_gossip_bytes_total{channel="ipam"}'), 900);
  assert.equal(get('tsweave_topology_deltas_total{event="applied"}'), 30);
  assert.equal(get('tsweave_topology_deltas_total{event="wanted"}'), 2);
  assert.equal(get('tsweave_mac_cache_entries'), 4);
  assert.equal(get('tsweave_tap_merged_frames_total{writer="router"}'), 30);
  assert.equal(get('tsweave_tap_merged_frames_total{writer="flow-cache"}'), 640);
  assert.equal(get('tsweave_tap_super_frames_total{writer="flow-cache"}'), 11);
  assert.equal(get('tsweave_tap_merge_fallbacks_total{writer="flow-cache"}'), 1);
  assert.equal(get('tsweave_tap_merge_fallbacks_total{writer="router"}'), 0);
  assert.match(m.contentType, /^text\/plain/);
  // One scrape reads the source once, not once per metric.
  assert.equal(src.reportCalls, 1);
  assert.equal(src.countersCalls, 1);
});

test('metrics: counters show the latest totals (not accumulated), series follow the report', async () => {
  const src = source();
  const m = createMetrics(src);
  await m.render();
  src.c = { ...sampleCounters(), connectionTerminations: 9, framesIn: { sleeve: 11 } };
  src.r = sampleReport();
  src.r.Router.Connections = src.r.Router.Connections.filter((c) => c.Name !== H3);
  const { samples } = parse(await m.render());
  assert.equal(samples.get('weave_connection_terminations_total'), 9);
  assert.equal(samples.get('tsweave_frames_total{direction="in",path="sleeve"}'), 11);
  assert.equal(samples.get('tsweave_frames_total{direction="in",path="fastdp"}'), 0);
  assert.equal(samples.get('weave_connections{encryption="yes",state="established",type="fastdp"}'), 0);
  assert.equal(samples.has(`tsweave_connection_pmtu_bytes{peer="${H3}"}`), false);
  assert.equal(src.reportCalls, 2);
});

test('metrics: without IPAM the IPAM gauges read 0 and weave_ips has no series; registries are independent', async () => {
  const r = sampleReport();
  delete r.IPAM;
  const a = createMetrics(source(r));
  const b = createMetrics(source());
  const { samples } = parse(await a.render());
  // prom-client always exports an unlabelled gauge, so "no IPAM" reads as 0 there.
  for (const k of ['weave_max_ips', 'weave_ipam_unreachable_count', 'weave_ipam_unreachable_percentage', 'weave_ipam_pending_allocates']) {
    assert.equal(samples.get(k), 0, k);
  }
  assert.equal([...samples.keys()].some((k) => k.startsWith('weave_ips')), false);
  assert.equal(parse(await b.render()).samples.get('weave_max_ips'), 1048576);
  assert.notEqual(a.registry, b.registry);
});

test('metrics: a failing source rejects render() and the next scrape recovers', async () => {
  const src = source();
  let fail = true;
  const m = createMetrics({ report: () => { if (fail) throw new Error('router stopped'); return src.report(); }, counters: () => src.counters() });
  await assert.rejects(m.render(), /router stopped/);
  fail = false;
  assert.equal(parse(await m.render()).samples.get('weave_max_ips'), 1048576);
});

test('metrics: negative or non-finite counter inputs export 0 instead of throwing', async () => {
  const c = sampleCounters();
  c.connectionTerminations = -1;
  c.drops = { 'no-route': Number.NaN };
  const { samples } = parse(await createMetrics(source(sampleReport(), c)).render());
  assert.equal(samples.get('weave_connection_terminations_total'), 0);
  assert.equal(samples.get('tsweave_drops_total{reason="no-route"}'), 0);
});

test('rangeSize: CIDR and Weave dash ranges; null for malformed', () => {
  assert.equal(rangeSize('10.32.0.0/12'), 1048576);
  assert.equal(rangeSize('0.0.0.0/0'), 2 ** 32);
  assert.equal(rangeSize('10.0.0.1/32'), 1);
  assert.equal(rangeSize('10.32.0.0-10.47.255.255'), 1048576);
  assert.equal(rangeSize('10.0.0.0-10.0.0.0'), 1);
  for (const bad of ['', 'abc', '10.0.0.0/33', '10.0.0.0/', '300.1.1.1/8', '10.0.0/8', '10.0.0.5-10.0.0.1', '10.0.0.0/1a']) {
    assert.equal(rangeSize(bad), null, bad);
  }
});

test('metrics: weave_max_ips falls back to the ring entries when Range does not parse', async () => {
  const r = sampleReport();
  r.IPAM!.Range = 'fd00::/64';
  r.IPAM!.Entries = [
    { Token: '10.32.0.0', Size: 100, Peer: 'a', Nickname: 'a', IsKnownPeer: true, Version: 1 },
    { Token: '10.32.0.100', Size: 156, Peer: 'b', Nickname: 'b', IsKnownPeer: true, Version: 1 },
  ];
  assert.equal(parse(await createMetrics(source(r)).render()).samples.get('weave_max_ips'), 256);
});
