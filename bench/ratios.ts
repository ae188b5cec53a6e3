/**
 * Prints tsweave's figures from a shared-harness results file next to the
 * references measured in the same run, as ratios, and against the goals of the
 * performance issue (Weave 2.8 sleeve figures on this kind of machine).
 * usage: node dist/bench/ratios.js RESULTS.json
 */
import { readFileSync } from 'node:fs';

interface Row { config: string; tcp1_mbps?: number; tcp4_mbps?: number; udp64_rcvd_pps?: number; ping_avg_ms?: number; tcp1_daemon_cpu_s?: number }

const WEAVE_SLEEVE = { tcp: 613, pps: 120_235, rtt: 0.503 };
const WEAVE_SLEEVE_ENC = { tcp: 467, pps: 110_112, rtt: 0.514 };

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: ratios.js RESULTS.json\n');
  process.exit(2);
}
const doc = JSON.parse(readFileSync(file, 'utf8')) as { env?: { method?: string }; results: Row[]; skipped: Array<{ config: string; reason: string }> };
// iperf3 runs DURATION s with the first second omitted from the rate; CPU is sampled around the whole run.
const duration = Number(/\((\d+) s, first 1 s omitted\)/.exec(doc.env?.method ?? '')?.[1] ?? process.env.DURATION ?? 10);
const by = new Map(doc.results.map((r) => [r.config, r]));
const n = (v: number | undefined, d = 0): string => (v === undefined || v === null ? 'n/a' : v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const ratio = (a: number | undefined, b: number | undefined): string => (a && b ? (a / b).toFixed(2) + '×' : 'n/a');

/** Daemon CPU seconds per GB carried during the single-stream TCP test (kernel softirq not included). */
const cpuPerGB = (r: Row): number | undefined => (r.tcp1_daemon_cpu_s !== undefined && r.tcp1_daemon_cpu_s !== null && r.tcp1_mbps ? r.tcp1_daemon_cpu_s / ((r.tcp1_mbps * duration) / 8 / 1000) : undefined);

console.log('\n| config | TCP 1 stream Mbit/s | TCP -P4 Mbit/s | 64 B UDP delivered pps | ping avg ms | daemon CPU s (TCP-1) | daemon CPU s per GB |');
console.log('|---|---|---|---|---|---|---|');
for (const r of doc.results) console.log(`| ${r.config} | ${n(r.tcp1_mbps)} | ${n(r.tcp4_mbps)} | ${n(r.udp64_rcvd_pps)} | ${n(r.ping_avg_ms, 3)} | ${n(r.tcp1_daemon_cpu_s, 1)} | ${n(cpuPerGB(r), 2)} |`);
for (const s of doc.skipped ?? []) console.log(`| ${s.config} | skipped: ${s.reason} | | | | | |`);

console.log('\nRatios (same run):');
for (const ours of ['ours:none', 'ours', 'ours:fastdp']) {
  const o = by.get(ours);
  if (!o) continue;
  for (const ref of ['vxlan', 'tinc:none', 'tinc', 'openvpn', 'wggo', 'nebula']) {
    const r = by.get(ref);
    if (!r) continue;
    console.log(`  ${ours} / ${ref}: TCP ${ratio(o.tcp1_mbps, r.tcp1_mbps)}, pps ${ratio(o.udp64_rcvd_pps, r.udp64_rcvd_pps)}, RTT ${ratio(o.ping_avg_ms, r.ping_avg_ms)}`);
  }
  const w = ours === 'ours' ? WEAVE_SLEEVE_ENC : WEAVE_SLEEVE;
  if (ours === 'ours:fastdp') {
    const v = by.get('vxlan');
    if (v) console.log(`  ours:fastdp TCP = ${o.tcp1_mbps && v.tcp1_mbps ? ((100 * o.tcp1_mbps) / v.tcp1_mbps).toFixed(0) : 'n/a'} % of kernel VXLAN (goal: ≥ 90 %)`);
  }
  if (ours !== 'ours:fastdp') console.log(`  ${ours} / Weave 2.8 ${ours === 'ours' ? 'encrypted ' : ''}sleeve (issue #7 anchors): TCP ${ratio(o.tcp1_mbps, w.tcp)}, pps ${ratio(o.udp64_rcvd_pps, w.pps)}, RTT ${ratio(o.ping_avg_ms, w.rtt)}`);
}

// Issue #19 goals, each a ratio of two configs from this same run.
const goal = (label: string, a: number | undefined, b: number | undefined, want: number, higherIsBetter = true): void => {
  if (!a || !b) return;
  const r = a / b;
  const ok = higherIsBetter ? r >= want : r <= want;
  console.log(`  ${label}: ${r.toFixed(2)}× (goal ${higherIsBetter ? '≥' : '≤'} ${want}×) ${ok ? 'met' : 'NOT met'}`);
};
const pl = by.get('ours:none'), enc = by.get('ours'), vx = by.get('vxlan'), wg = by.get('wggo'), ov = by.get('openvpn'), tn = by.get('tinc:none'), fd = by.get('ours:fastdp');
console.log('\nIssue #19 goals (same run):');
goal('encrypted / plaintext sleeve TCP-1', enc?.tcp1_mbps, pl?.tcp1_mbps, 0.9);
goal('encrypted / plaintext sleeve 64 B pps', enc?.udp64_rcvd_pps, pl?.udp64_rcvd_pps, 0.9);
goal('plaintext sleeve / kernel VXLAN TCP-1', pl?.tcp1_mbps, vx?.tcp1_mbps, 0.5);
goal('encrypted sleeve / kernel VXLAN TCP-1', enc?.tcp1_mbps, vx?.tcp1_mbps, 0.45);
goal('encrypted sleeve / wireguard-go TCP-1', enc?.tcp1_mbps, wg?.tcp1_mbps, 4);
goal('encrypted sleeve / OpenVPN TCP-1', enc?.tcp1_mbps, ov?.tcp1_mbps, 3);
goal('encrypted ping avg / OpenVPN', enc?.ping_avg_ms, ov?.ping_avg_ms, 1, false);
goal('encrypted ping avg / tinc (no cipher)', enc?.ping_avg_ms, tn?.ping_avg_ms, 1, false);
goal('plaintext ping avg / tinc (no cipher)', pl?.ping_avg_ms, tn?.ping_avg_ms, 1, false);
goal('fast datapath / kernel VXLAN TCP-1', fd?.tcp1_mbps, vx?.tcp1_mbps, 0.95);
