/**
 * bench/ipv6-summary.ts: the IPv6 bench's medians, per-round paired ratios and goal checks.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { KERNEL, comboOf, median, parsePing, quantileSorted, ratios, summarize, type Sample } from '../../bench/ipv6-summary.js';

function s(variant: string, repeat: number, underlay: 4 | 6, overlay: 4 | 6, tcp: number, ping: number, extra: Partial<Sample> = {}): Sample {
  return { variant, repeat, underlay, overlay, tcpMbps: tcp, pingAvgMs: ping, pingP50Ms: ping, pingP99Ms: ping * 2, pingLoss: 0, load: 1, ...extra };
}

describe('ipv6 bench summary', () => {
  test('median: odd, even, undefined and non-finite values ignored, empty', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([undefined, 5, Number.NaN, 1, 3]), 3);
    assert.equal(median([]), undefined);
    assert.equal(median([undefined]), undefined);
  });

  test('median lies between min and max and ignores order (property)', () => {
    fc.assert(fc.property(fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 40 }), (xs) => {
      const m = median(xs)!;
      assert.ok(m >= Math.min(...xs) && m <= Math.max(...xs));
      assert.equal(median([...xs].reverse()), m);
    }));
  });

  test('nearest-rank quantiles', () => {
    const xs = Array.from({ length: 500 }, (_, i) => i + 1);
    assert.equal(quantileSorted(xs, 0.99), 495);
    assert.equal(quantileSorted(xs, 0.5), 250);
    assert.equal(quantileSorted([7], 0.99), 7);
    assert.equal(quantileSorted([], 0.5), undefined);
  });

  test('parsePing reads iputils output; missing fields are undefined, loss 100', () => {
    const out = [
      '64 bytes from fd10:32::a20:902: icmp_seq=1 ttl=64 time=0.400 ms',
      '64 bytes from fd10:32::a20:902: icmp_seq=2 ttl=64 time=0.200 ms',
      '64 bytes from fd10:32::a20:902: icmp_seq=3 ttl=64 time=0.300 ms',
      '',
      '3 packets transmitted, 3 received, 0% packet loss, time 22ms',
      'rtt min/avg/max/mdev = 0.200/0.300/0.400/0.082 ms',
    ].join('\n');
    assert.deepEqual(parsePing(out), { pingAvgMs: 0.3, pingP50Ms: 0.3, pingP99Ms: 0.4, pingLoss: 0 });
    assert.deepEqual(parsePing('ping: connect: Network is unreachable'), { pingAvgMs: undefined, pingP50Ms: undefined, pingP99Ms: undefined, pingLoss: 100 });
  });

  test('comboOf names all four combinations', () => {
    assert.equal(comboOf({ underlay: 4, overlay: 4 }), 'v4/v4');
    assert.equal(comboOf({ underlay: 6, overlay: 4 }), 'v6ul/v4');
    assert.equal(comboOf({ underlay: 4, overlay: 6 }), 'v4ul/v6');
    assert.equal(comboOf({ underlay: 6, overlay: 6 }), 'v6/v6');
  });

  test('ratios pair IPv6 with the IPv4 sample of the same round, not with the overall median', () => {
    // Drift: round 2 is twice as slow for everything; IPv6 equals IPv4 within each round.
    const samples = [
      s('none', 0, 4, 4, 1000, 0.2), s('none', 0, 4, 6, 1000, 0.2),
      s('none', 1, 4, 4, 500, 0.4), s('none', 1, 4, 6, 500, 0.4),
      s('none', 2, 4, 4, 1000, 0.2), s('none', 2, 4, 6, 1000, 0.2),
    ];
    const [r] = ratios(samples);
    assert.equal(r!.combo, 'v4ul/v6');
    assert.deepEqual(r!.tcp, { median: 1, min: 1, max: 1, n: 3 });
    assert.deepEqual(r!.pingAvg, { median: 1, min: 1, max: 1, n: 3 });
    assert.equal(r!.tcpMet, true);
    assert.equal(r!.pingMet, true);
  });

  test('goal checks: TCP ≥ 0.95 and ping ≤ 1.05 on the median ratio; a missing figure is n/a', () => {
    const samples = [
      s('enc', 0, 4, 4, 1000, 0.2), s('enc', 0, 6, 4, 940, 0.2), s('enc', 0, 4, 6, 950, 0.212), s('enc', 0, 6, 6, 1000, 0.2, { tcpMbps: undefined }),
    ];
    const byCombo = new Map(ratios(samples).map((r) => [r.combo, r]));
    assert.equal(byCombo.get('v6ul/v4')!.tcpMet, false);
    assert.equal(byCombo.get('v6ul/v4')!.pingMet, true);
    assert.equal(byCombo.get('v4ul/v6')!.tcpMet, true);
    assert.equal(byCombo.get('v4ul/v6')!.pingMet, false);
    assert.equal(byCombo.get('v6/v6')!.tcpMet, undefined);
    assert.equal(byCombo.get('v6/v6')!.pingMet, true);
  });

  test('the control (IPv4 again) is its own combination: noise band = control / reference, IPv6 paired with their mean', () => {
    assert.equal(comboOf({ underlay: 4, overlay: 4, control: true }), 'control');
    // Linear drift within each round: reference first (1000), control last (800), IPv6 in
    // the middle (900) equals the round's mean IPv4 figure.
    const samples = [
      s('none', 0, 4, 4, 1000, 0.2), s('none', 0, 4, 6, 900, 0.25), s('none', 0, 4, 4, 800, 0.3, { control: true }),
      s('none', 1, 4, 4, 800, 0.3), s('none', 1, 4, 6, 900, 0.25), s('none', 1, 4, 4, 1000, 0.2, { control: true }),
    ];
    const by = new Map(ratios(samples).map((r) => [r.combo, r]));
    assert.deepEqual([...by.keys()].sort(), ['control', 'v4ul/v6']);
    assert.deepEqual(by.get('v4ul/v6')!.tcp, { median: 1, min: 1, max: 1, n: 2 });
    assert.ok(Math.abs(by.get('v4ul/v6')!.pingAvg.median! - 1) < 1e-9);
    assert.equal(by.get('v4ul/v6')!.tcpMet, true);
    const c = by.get('control')!;
    assert.deepEqual(c.tcp, { median: 1.025, min: 0.8, max: 1.25, n: 2 });
    assert.equal(c.pingNet, undefined, 'the control gets no kernel correction');
    // summarize keeps the control apart from the reference, with the TCP-run JS share and segments per super-frame
    const sum = summarize([
      s('none', 0, 4, 4, 1000, 0.2, { tcpJsFrames: 10, tcpCachedFrames: 10_000, segPerRead: 40, segPerWrite: 44 }),
      s('none', 0, 4, 4, 800, 0.3, { control: true, tcpJsFrames: 30, tcpCachedFrames: 10_000 }),
    ]);
    assert.deepEqual(sum.map((x) => x.combo), ['v4/v4', 'control']);
    assert.equal(sum[0]!.tcpJsPerMille, 1);
    assert.equal(sum[1]!.tcpJsPerMille, 3);
    assert.equal(sum[0]!.segPerRead.median, 40);
    assert.equal(sum[0]!.segPerWrite.median, 44);
    assert.equal(sum[1]!.segPerRead.n, 0);
  });

  test('a round without its IPv4 reference is not paired', () => {
    const rows = ratios([s('none', 0, 4, 4, 1000, 0.2), s('none', 1, 4, 6, 10, 9)]);
    assert.deepEqual(rows, []);
  });

  test('summarize: medians with ranges per variant and combination, JS frames per 1,000 cached', () => {
    const sum = summarize([
      s('none', 0, 4, 4, 900, 0.3, { jsFrames: 4, cachedFrames: 1000 }),
      s('none', 1, 4, 4, 1100, 0.5, { jsFrames: 6, cachedFrames: 1000 }),
      s('none', 2, 4, 4, 1000, 0.4, { jsFrames: 2, cachedFrames: 1000, pingLoss: 0.2 }),
      s('fastdp', 0, 6, 6, 5000, 0.1),
    ]);
    assert.equal(sum.length, 2);
    assert.deepEqual(sum[0]!.tcp, { median: 1000, min: 900, max: 1100, n: 3 });
    assert.equal(sum[0]!.pingAvg.median, 0.4);
    assert.equal(sum[0]!.maxLoss, 0.2);
    assert.equal(sum[0]!.jsPerMille, 4);
    assert.equal(sum[1]!.combo, 'v6/v6');
    assert.equal(sum[1]!.jsPerMille, undefined);
  });

  test('the kernel anchor\'s own IPv6 cost (same variant and round) is taken out of overlay-IPv6 ping ratios only', () => {
    const k = (repeat: number, overlay: 4 | 6, ping: number): Sample => ({ variant: KERNEL, kernelOf: 'fastdp', repeat, underlay: 4, overlay, pingAvgMs: ping, load: 1 });
    const rows = ratios([
      s('fastdp', 0, 4, 4, 1000, 0.100), s('fastdp', 0, 4, 6, 1000, 0.120), s('fastdp', 0, 6, 4, 1000, 0.104), s('fastdp', 0, 6, 6, 1000, 0.130),
      k(0, 4, 0.050), k(0, 6, 0.068),
      // another variant's anchor must not be used for fastdp
      { ...k(0, 6, 0.500), kernelOf: 'none' }, { ...k(0, 4, 0.050), kernelOf: 'none' },
    ]);
    assert.equal(rows.length, 3, 'no ratio row for the anchor itself');
    const by = new Map(rows.map((r) => [r.combo, r]));
    assert.equal(by.get('v4ul/v6')!.pingMet, false);
    assert.ok(Math.abs(by.get('v4ul/v6')!.pingNet!.median! - 1.02) < 1e-9);
    assert.equal(by.get('v4ul/v6')!.pingNetMet, true);
    assert.ok(Math.abs(by.get('v4ul/v6')!.extraUs!.median! - 2) < 1e-6);
    assert.ok(Math.abs(by.get('v6/v6')!.pingNet!.median! - 1.12) < 1e-9);
    assert.equal(by.get('v6/v6')!.pingNetMet, false);
    assert.equal(by.get('v6ul/v4')!.pingNet, undefined, 'an IPv4 overlay gets no kernel correction');
  });
});
