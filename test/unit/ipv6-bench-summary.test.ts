/**
 * bench/ipv6-summary.ts: the IPv6 bench's medians, per-round and per-ping paired ratios,
 * goal checks, and the reading of fping's per-ping report.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FPING_MAX_TARGETS, KERNEL, TINC_ANCHOR, VXLAN_ANCHOR, anchorCosts, anchorFor, anchorRatios, comboOf, fpingArgs, joinBatches, kernelCosts, median, pairedPing, parseFping, parsePingAvg, quantileSorted, ratios, rttStats, shuffledOrders, summarize, type Sample } from '../../bench/ipv6-summary.js';

function s(variant: string, repeat: number, underlay: 4 | 6, overlay: 4 | 6, tcp: number, ping: number, extra: Partial<Sample> = {}): Sample {
  return { variant, repeat, underlay, overlay, tcpMbps: tcp, pingAvgMs: ping, pingP50Ms: ping, pingP99Ms: ping * 2, pingLoss: 0, pingRtts: [ping, ping, ping], load: 1, ...extra };
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

  // fping 5.1's stderr for `fping -C 4 -q` to four targets, the IPv4 one named twice (the
  // control), one echo lost, and an ICMP notice in between.
  const FPING_OUT = [
    '10.32.9.2         : 0.412 0.398 - 0.455',
    'fd10:32::a20:903  : 0.433 0.401 0.420 0.47',
    'ICMP Host Unreachable from 10.32.9.1 for ICMP Echo sent to 10.32.9.3',
    'fd10:32::a20:902  : 1.20 12.3 123 0.400',
    '10.32.9.2         : 0.420 0.399 0.410 0.460',
    '',
  ].join('\n');
  const FPING_TARGETS = ['10.32.9.2', 'fd10:32::a20:903', 'fd10:32::a20:902', '10.32.9.2'];

  test('parseFping reads per-ping times per target, a repeated name in order, lost echoes as null', () => {
    assert.deepEqual(parseFping(FPING_OUT, FPING_TARGETS, 4), [
      [0.412, 0.398, null, 0.455],
      [0.433, 0.401, 0.42, 0.47],
      [1.2, 12.3, 123, 0.4],
      [0.42, 0.399, 0.41, 0.46],
    ]);
    // the kernel anchor's order reversed: lines are matched by name, not by position
    assert.deepEqual(parseFping('fd99::2  : 0.05\n10.9.0.2 : 0.04\n', ['10.9.0.2', 'fd99::2'], 1), [[0.04], [0.05]]);
  });

  test('parseFping rejects garbage with one-line errors', () => {
    const bad: Array<[string, string[], number, RegExp]> = [
      [FPING_OUT, FPING_TARGETS, 5, /10\.32\.9\.2: 4 results, expected 5/],
      [FPING_OUT, FPING_TARGETS.slice(0, 3), 4, /unexpected result line for "10\.32\.9\.2"/],
      [FPING_OUT, [...FPING_TARGETS, '10.32.9.9'], 4, /no results for 10\.32\.9\.9/],
      ['a : 0.1 0.2ms\n', ['a'], 2, /a: bad time "0\.2ms"/],
      ['a : 0.1 1e3\n', ['a'], 2, /bad time "1e3"/],
      ['a : 0.1 NaN\n', ['a'], 2, /bad time "NaN"/],
      ['a : 0.1 -1\n', ['a'], 2, /bad time "-1"/],
      ['a : 0.1 1000000\n', ['a'], 2, /bad time "1000000"/],
      ['a : \n', ['a'], 1, /bad time ""/],
      ['', ['a'], 1, /no results for a/],
      ['fping: can\'t create socket\n', ['a'], 1, /no results for a/],
      ['a : 0.1\n'.padEnd(70_000, ' '), ['a'], 1, /output of 70000 characters exceeds/],
      ['a : 0.1\n', [], 1, /0 targets/],
      ['a : 0.1\n', ['a'], 0, /count 0 out of range/],
      ['a : 0.1\n', Array.from({ length: FPING_MAX_TARGETS + 1 }, () => 'a'), 1, /33 targets/],
    ];
    for (const [out, targets, count, want] of bad) {
      assert.throws(() => parseFping(out, targets, count), (err: Error) => want.test(err.message) && !err.message.includes('\n'), `${JSON.stringify(out.slice(0, 40))} → ${want}`);
    }
    // a name longer than any address is cut in the message
    assert.throws(() => parseFping(`${'x'.repeat(500)} : 0.1\n`, ['a'], 1), (err: Error) => err.message.length < 120);
  });

  test('parseFping reads back what fping would print (property)', () => {
    const time = fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 9_999_999 }).map((n) => n / 1000));
    fc.assert(fc.property(
      fc.array(fc.constantFrom('10.32.9.2', 'fd10:32::a20:902', 'fd10:32::a20:903', '10.32.9.3', 'fd99::2'), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 30 }),
      fc.integer({ min: 0, max: 1_000 }),
      (targets, count, seed) => {
        const want = targets.map((_, i) => fc.sample(fc.array(time, { minLength: count, maxLength: count }), { numRuns: 1, seed: seed + i })[0]!);
        const width = Math.max(...targets.map((t) => t.length));
        const out = targets.map((t, i) => `${t.padEnd(width)} : ${want[i]!.map((x) => (x === null ? '-' : String(x))).join(' ')}`).join('\n');
        assert.deepEqual(parseFping(out + '\n', targets, count), want);
      },
    ), { numRuns: 200 });
  });

  test('fpingArgs spreads the targets over the period and bounds its inputs', () => {
    assert.deepEqual(fpingArgs(['a', 'b', 'c', 'd', 'e'], 1000, 10), ['-C', '1000', '-p', '10', '-i', '2', '-t', '2000', '-q', 'a', 'b', 'c', 'd', 'e']);
    assert.deepEqual(fpingArgs(['a', 'b', 'c'], 5, 10).slice(4, 6), ['-i', '3']);
    assert.throws(() => fpingArgs([], 10, 10), /0 targets/);
    assert.throws(() => fpingArgs(['a'], 0, 10), /count 0/);
    assert.throws(() => fpingArgs(['a'], 1.5, 10), /count 1\.5/);
    assert.throws(() => fpingArgs(['a', 'b', 'c'], 10, 2), /period 2 ms out of range 3–10000/);
    assert.throws(() => fpingArgs(['a'], 10, Number.NaN), /period NaN/);
  });

  test('joinBatches: per-batch rows joined back per target in cycle order', () => {
    const orders = [[0, 1, 2], [1, 2, 0], [2, 0, 1]];
    // batch b, row j: target orders[b][j]; values encode target*10 + batch
    const batches = orders.map((o, b) => o.map((t) => [t * 10 + b, null]));
    assert.deepEqual(joinBatches(orders, batches), [[0, null, 1, null, 2, null], [10, null, 11, null, 12, null], [20, null, 21, null, 22, null]]);
    assert.throws(() => joinBatches(orders, batches.slice(1)), /2 batches for 3 orders/);
    assert.throws(() => joinBatches(orders, [batches[0]!, batches[1]!.slice(1), batches[2]!]), /batch 1 does not have 3 equal rows/);
    assert.throws(() => joinBatches(orders, [batches[0]!, [[1], [2, 3], [4]], batches[2]!]), /batch 1/);
  });

  test('shuffledOrders: permutations, same seed same orders, positions and predecessors even out', () => {
    const o = shuffledOrders(5, 400, 7);
    assert.deepEqual(shuffledOrders(5, 400, 7), o);
    assert.notDeepEqual(shuffledOrders(5, 400, 8), o);
    for (const p of o) assert.deepEqual([...p].sort(), [0, 1, 2, 3, 4]);
    // each target first in about a fifth of the batches, and right after target 0 about a fifth of the time
    for (let t = 0; t < 5; t++) {
      const first = o.filter((p) => p[0] === t).length;
      assert.ok(first > 50 && first < 110, `target ${t} first in ${first} of 400`);
    }
    for (let t = 1; t < 5; t++) {
      const after0 = o.filter((p) => p.indexOf(t) === p.indexOf(0) + 1).length;
      assert.ok(after0 > 50 && after0 < 115, `target ${t} right after 0 in ${after0} of 400`);
    }
    assert.deepEqual(shuffledOrders(1, 2, 1), [[0], [0]]);
  });

  test('rttStats: average, median, p99 and loss of per-ping times', () => {
    const st = rttStats([0.4, null, 0.2, 0.3]);
    assert.ok(Math.abs(st.pingAvgMs! - 0.3) < 1e-12);
    assert.deepEqual({ ...st, pingAvgMs: 0 }, { pingAvgMs: 0, pingP50Ms: 0.3, pingP99Ms: 0.4, pingLoss: 25 });
    assert.deepEqual(rttStats([null]), { pingAvgMs: undefined, pingP50Ms: undefined, pingP99Ms: undefined, pingLoss: 100 });
    assert.equal(rttStats([]).pingLoss, 100);
  });

  test('pairedPing: median of per-ping ratios and differences against the mean of two bases, lost echoes skipped', () => {
    const p = pairedPing([0.33, null, 0.5, 0.2], [0.3, 0.3, 0.6, 0.1], [0.3, 0.3, 0.4, 0.3]);
    assert.equal(p.n, 3);
    // ratios 1.1, 1.0, 1.0 ; differences 30, 0, 0 µs
    assert.ok(Math.abs(p.ratio! - 1) < 1e-9);
    assert.ok(Math.abs(p.diffUs!) < 1e-9);
    assert.deepEqual(pairedPing([null], [0.1]), { ratio: undefined, diffUs: undefined, n: 0 });
  });

  test('pairedPing: jitter and drift shared by both targets cancel exactly (property)', () => {
    fc.assert(fc.property(fc.array(fc.double({ min: 0.01, max: 50, noNaN: true }), { minLength: 1, maxLength: 200 }), fc.double({ min: 0.5, max: 2, noNaN: true }), (base, f) => {
      // heavy, drifting jitter in the base; the target always costs f times the base
      const r = pairedPing(base.map((b) => b * f), base).ratio!;
      assert.ok(Math.abs(r - f) < 1e-9 * f);
    }));
  });

  test('pairedPing: swapping the two targets inverts the ratio for an odd number of pairs (property)', () => {
    const t = fc.double({ min: 0.01, max: 10, noNaN: true });
    fc.assert(fc.property(fc.array(fc.tuple(t, t), { minLength: 1, maxLength: 99 }).filter((xs) => xs.length % 2 === 1), (xs) => {
      const a = xs.map(([x]) => x);
      const b = xs.map(([, y]) => y);
      assert.ok(Math.abs(pairedPing(a, b).ratio! * pairedPing(b, a).ratio! - 1) < 1e-9);
    }));
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

  test('ping ratios pair per ping within the round: a spike shared by all targets of one cycle cancels', () => {
    // Cycle 2 is slow for every target (a scheduler stall); IPv6 costs 4 % more per ping,
    // the control equals the reference, the IPv6 underlay pays a spike of its own in one cycle.
    const ref = [0.2, 0.2, 2.0, 0.2, 0.2];
    const rtts = (f: number): number[] => ref.map((x) => x * f);
    const samples = [
      s('none', 0, 4, 4, 1000, 0, { pingRtts: ref }),
      s('none', 0, 4, 6, 1000, 0, { pingRtts: rtts(1.04) }),
      s('none', 0, 6, 4, 1000, 0, { pingRtts: [0.2, 0.2, 2.0, 1.2, 0.2] }),
      s('none', 0, 4, 4, 1000, 0, { pingRtts: [...ref], control: true }),
      s('none', 0, 6, 6, 1000, 0, { pingRtts: undefined }),
    ];
    const by = new Map(ratios(samples).map((r) => [r.combo, r]));
    assert.ok(Math.abs(by.get('v4ul/v6')!.ping.median! - 1.04) < 1e-9);
    assert.ok(Math.abs(by.get('v4ul/v6')!.pingDiffUs.median! - 8) < 1e-6);
    assert.equal(by.get('v4ul/v6')!.pingMet, true);
    assert.equal(by.get('v6ul/v4')!.ping.median, 1, 'one outlier does not move the median');
    assert.deepEqual(by.get('control')!.ping, { median: 1, min: 1, max: 1, n: 1 });
    assert.equal(by.get('v6/v6')!.pingMet, undefined, 'no per-ping times: no ping verdict');
  });

  test('kernelCosts: the median paired IPv6 − IPv4 difference per variant and round, ms', () => {
    const k = (kernelOf: string, repeat: number, overlay: 4 | 6, pingRtts: Array<number | null>): Sample => ({ variant: KERNEL, kernelOf, repeat, underlay: 4, overlay, pingRtts, load: 1 });
    const m = kernelCosts([
      k('none', 0, 4, [0.05, 0.5, 0.05]), k('none', 0, 6, [0.06, 0.51, null]),
      k('none', 1, 6, [0.07]), k('fastdp', 1, 4, [0.05]),
    ]);
    assert.deepEqual([...m.keys()], ['none/0']);
    assert.ok(Math.abs(m.get('none/0')! - 0.01) < 1e-9);
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
    const k = (repeat: number, overlay: 4 | 6, ping: number): Sample => ({ variant: KERNEL, kernelOf: 'fastdp', repeat, underlay: 4, overlay, pingAvgMs: ping, pingRtts: [ping, ping, null], load: 1 });
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

  test('the anchor built like the data path (VXLAN for fastdp, tinc for the sleeve) is taken out of every IPv6 combination where it costs less than the plain one', () => {
    assert.equal(anchorFor('fastdp'), VXLAN_ANCHOR);
    for (const v of ['none', 'encrypted', 'none-no-tails']) assert.equal(anchorFor(v), TINC_ANCHOR);
    const a = (variant: string, kernelOf: string, repeat: number, underlay: 4 | 6, overlay: 4 | 6, ping: number): Sample => ({ variant, kernelOf, repeat, underlay, overlay, pingRtts: [ping, ping, null], load: 1 });
    const samples = [
      s('fastdp', 0, 4, 4, 1000, 0.100), s('fastdp', 0, 6, 4, 1000, 0.120), s('fastdp', 0, 4, 6, 1000, 0.104), s('fastdp', 0, 6, 6, 1000, 0.130),
      // kernel VXLAN of the same round: IPv6 underlay +18 µs, IPv6 overlay +3 µs, both +25 µs
      a(VXLAN_ANCHOR, 'fastdp', 0, 4, 4, 0.050), a(VXLAN_ANCHOR, 'fastdp', 0, 6, 4, 0.068), a(VXLAN_ANCHOR, 'fastdp', 0, 4, 6, 0.053), a(VXLAN_ANCHOR, 'fastdp', 0, 6, 6, 0.075),
      // the plain anchor (+4 µs) is not used where VXLAN's own figure is smaller
      a(KERNEL, 'fastdp', 0, 4, 4, 0.040), a(KERNEL, 'fastdp', 0, 4, 6, 0.044),
      // tinc belongs to the sleeve: never used for fastdp
      a(TINC_ANCHOR, 'fastdp', 0, 4, 4, 0.050), a(TINC_ANCHOR, 'fastdp', 0, 6, 4, 0.550),
    ];
    const costs = anchorCosts(samples);
    assert.ok(Math.abs(costs.get(`${VXLAN_ANCHOR}/fastdp/0/v6ul/v4`)! - 0.018) < 1e-9);
    assert.ok(Math.abs(costs.get(`${KERNEL}/fastdp/0/v4ul/v6`)! - 0.004) < 1e-9);
    assert.equal(kernelCosts(samples).size, 1, 'kernelCosts keeps the plain anchor only');
    const by = new Map(ratios(samples).map((r) => [r.combo, r]));
    assert.equal(by.size, 3, 'no ratio row for an anchor');
    const v6ul = by.get('v6ul/v4')!;
    assert.equal(v6ul.pingMet, false, '0.120 / 0.100 misses the 5 % goal');
    assert.equal(v6ul.anchor, VXLAN_ANCHOR);
    assert.ok(Math.abs(v6ul.pingNet!.median! - 1.02) < 1e-9, `${v6ul.pingNet!.median}`);
    assert.ok(Math.abs(v6ul.extraUs!.median! - 2) < 1e-6);
    assert.equal(v6ul.pingNetMet, true);
    assert.ok(Math.abs(by.get('v4ul/v6')!.extraUs!.median! - 1) < 1e-6);
    assert.equal(by.get('v4ul/v6')!.anchor, VXLAN_ANCHOR);
    // IPv6 on both: VXLAN's +25 µs against the plain anchor's +4: the smaller is credited
    assert.equal(by.get('v6/v6')!.anchor, KERNEL);
    assert.ok(Math.abs(by.get('v6/v6')!.pingNet!.median! - 1.26) < 1e-9, `${by.get('v6/v6')!.pingNet!.median}`);
    const rows = anchorRatios(samples);
    const vx = rows.filter((r) => r.anchor === VXLAN_ANCHOR).map((r) => [r.combo, Math.round(r.pingDiffUs.median!)]);
    assert.deepEqual(vx, [['v6ul/v4', 18], ['v4ul/v6', 3], ['v6/v6', 25]]);
    assert.deepEqual(rows.filter((r) => r.anchor === TINC_ANCHOR).map((r) => r.combo), ['v6ul/v4']);
  });

  test('without its own anchor a sleeve row falls back to the plain anchor for an IPv6 overlay only', () => {
    const k = (overlay: 4 | 6, ping: number): Sample => ({ variant: KERNEL, kernelOf: 'none', repeat: 0, underlay: 4, overlay, pingRtts: [ping, ping], load: 1 });
    const by = new Map(ratios([s('none', 0, 4, 4, 1000, 0.100), s('none', 0, 6, 4, 1000, 0.110), s('none', 0, 6, 6, 1000, 0.110), k(4, 0.050), k(6, 0.056)]).map((r) => [r.combo, r]));
    assert.equal(by.get('v6ul/v4')!.pingNet, undefined);
    assert.equal(by.get('v6/v6')!.anchor, KERNEL);
    assert.ok(Math.abs(by.get('v6/v6')!.extraUs!.median! - 4) < 1e-6);
  });

  test('busy (flood) ping: ratio per round against the IPv4 base of the same round; ping\'s summary line parsed', () => {
    const samples = [
      s('none', 0, 4, 4, 1000, 0.2, { busyAvgMs: 0.080 }), s('none', 0, 6, 4, 1000, 0.2, { busyAvgMs: 0.088 }),
      s('none', 1, 4, 4, 1000, 0.2, { busyAvgMs: 0.160 }), s('none', 1, 6, 4, 1000, 0.2, { busyAvgMs: 0.160 }),
      s('none', 2, 4, 4, 1000, 0.2), s('none', 2, 6, 4, 1000, 0.2),
    ];
    const [r] = ratios(samples);
    assert.equal(r!.busy.n, 2, 'a round without flood figures is left out');
    assert.ok(Math.abs(r!.busy.median! - 1.05) < 1e-9);
    assert.ok(Math.abs(r!.busy.max! - 1.1) < 1e-9);
    const out = 'PING 10.32.9.2 (10.32.9.2) 56(84) bytes of data.\n\n--- 10.32.9.2 ping statistics ---\n20000 packets transmitted, 20000 received, 0% packet loss, time 2140ms\nrtt min/avg/max/mdev = 0.061/0.090/5.000/0.056 ms, ipg/ewma 0.105/0.082 ms\n';
    assert.equal(parsePingAvg(out), 0.09);
    assert.equal(parsePingAvg('--- x ping statistics ---\n5 packets transmitted, 0 received, 100% packet loss\n'), undefined);
    assert.equal(parsePingAvg(''), undefined);
  });
});
