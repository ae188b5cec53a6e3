/**
 * The server thread's real-time budget (dns/rt-budget.ts, pure) and the addon calls behind
 * it (dns/udp-batch.ts threadScheduling: CLOCK_THREAD_CPUTIME_ID, sched_setscheduler on the
 * calling thread), the latter run on a worker thread so the test runner's own thread never
 * changes class.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { RealtimeBudget, RT_BUDGET_DEFAULTS } from '../../dns/rt-budget.js';

/** A thread using `share` of a CPU, checked at every batch `stepMs` apart, for `ms`: the decisions with their times. */
function run(b: RealtimeBudget, from: number, ms: number, stepMs: number, share: number, cpu: { ms: number }): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  for (let t = from; t < from + ms; t += stepMs) {
    cpu.ms += share * stepMs;
    const d = b.check(t, () => cpu.ms);
    if (d) out.push([t, d]);
  }
  return out;
}

test('budget: within its share the thread stays real-time; a flood demotes it within one window and a batch', () => {
  const b = new RealtimeBudget();
  const cpu = { ms: 0 };
  assert.deepEqual(run(b, 0, 2_000, 0.5, 0.3, cpu), [], '2,000 q/s at ~150 µs each (softirqs included): 30 % of a CPU, under 50 %');
  assert.equal(b.active, true);
  const flood = run(b, 2_000, 1_000, 1, 1.0, cpu);
  assert.equal(flood.length, 1, 'demoted once, and stays demoted while the flood lasts');
  assert.equal(flood[0]![1], 'demote');
  assert.ok(flood[0]![0] <= 2_000 + RT_BUDGET_DEFAULTS.windowMs + 1, `demoted at ${flood[0]![0]} ms: within a window of the flood's start`);
  assert.equal(b.active, false);
  assert.equal(b.demotions, 1);
  assert.ok(b.lastShare > 0.9);
  // Between the two shares: stays in the normal class (hysteresis, no flapping).
  assert.deepEqual(run(b, 3_000, 1_000, 1, 0.35, cpu), []);
  // Quiet again: promoted at the first window under resumeShare.
  const quiet = run(b, 4_000, 500, 1, 0.05, cpu);
  assert.deepEqual(quiet.map((d) => d[1]), ['promote']);
  assert.ok(quiet[0]![0] <= 4_000 + 2 * RT_BUDGET_DEFAULTS.windowMs);
  assert.equal(b.active, true);
});

test('budget: a demoted thread stays demoted for holdMs, however quiet (no flapping under a flood)', () => {
  const b = new RealtimeBudget();
  const cpu = { ms: 0 };
  const d1 = run(b, 0, 300, 1, 0.9, cpu);
  assert.deepEqual(d1.map((d) => d[1]), ['demote']);
  const demotedAt = d1[0]![0];
  // Demoted, the flood's share falls under a quarter (shared CPUs): no promotion during the hold.
  const during = run(b, 300, demotedAt + RT_BUDGET_DEFAULTS.holdMs - 300, 1, 0.1, cpu);
  assert.deepEqual(during, [], 'held in the normal class');
  const after = run(b, demotedAt + RT_BUDGET_DEFAULTS.holdMs, 300, 1, 0.1, cpu);
  assert.deepEqual(after.map((d) => d[1]), ['promote']);
  assert.ok(after[0]![0] - demotedAt >= RT_BUDGET_DEFAULTS.holdMs);
  // A sustained flood that looks quiet once demoted: at most one real-time window per hold + window.
  const b2 = new RealtimeBudget();
  let t = 0;
  let rtMs = 0;
  let c = 0;
  for (; t < 10_000; t += 1) {
    c += b2.active ? 1 : 0.1;
    if (b2.active) rtMs++;
    b2.check(t, () => c);
  }
  assert.ok(rtMs <= (10_000 / (RT_BUDGET_DEFAULTS.holdMs + RT_BUDGET_DEFAULTS.windowMs) + 1) * 2 * RT_BUDGET_DEFAULTS.windowMs, `real-time for ${rtMs} ms of a 10 s flood`);
  assert.ok(b2.demotions >= 8, `demoted again after each hold: ${b2.demotions}`);
});

test('budget: an idle gap is one long quiet window; the CPU clock is read only when a window ends', () => {
  const b = new RealtimeBudget({ windowMs: 100, maxShare: 0.25, resumeShare: 0.125, holdMs: 1_000 });
  let reads = 0;
  let cpu = 0;
  const clock = (): number => {
    reads++;
    return cpu;
  };
  b.check(0, clock);
  for (let t = 1; t < 100; t++) b.check(t, clock);
  assert.equal(reads, 1, 'first check starts the window; the next 99 are inside it');
  cpu = 30;
  assert.equal(b.check(100, clock), 'demote', '30 ms of CPU in 100 ms');
  assert.equal(reads, 2);
  cpu = 80;
  // 50 ms of CPU over the next 10 s (an idle thread woken again): 0.5 % → promote.
  assert.equal(b.check(10_100, clock), 'promote');
  assert.ok(Math.abs(b.lastShare - 0.005) < 1e-9);
  // A CPU clock that goes backwards (cannot, but hostile to the arithmetic) counts as 0.
  cpu = 0;
  assert.equal(b.check(10_300, clock), undefined);
  assert.equal(b.lastShare, 0);
});

test('budget: bad options are a RangeError with one line', () => {
  for (const o of [{ windowMs: 0 }, { windowMs: -5 }, { windowMs: Number.NaN }, { maxShare: 1.5 }, { resumeShare: 0 }, { resumeShare: 0.5, maxShare: 0.25 }, { holdMs: -1 }, { holdMs: Number.NaN }]) {
    assert.throws(() => new RealtimeBudget(o), (e: Error) => e instanceof RangeError && !e.message.includes('\n'), JSON.stringify(o));
  }
});

test('addon: the calling thread\'s CPU clock advances with its work; SCHED_FIFO for root, EPERM otherwise; back to SCHED_OTHER', async () => {
  const code = `
    const { parentPort } = require('node:worker_threads');
    const { readFileSync } = require('node:fs');
    const policy = () => { const s = readFileSync('/proc/thread-self/stat', 'utf8'); return s.slice(s.lastIndexOf(')') + 2).split(' ')[38]; };
    import(${JSON.stringify(new URL('../../dns/udp-batch.js', import.meta.url).href)}).then(({ threadScheduling }) => {
      const s = threadScheduling();
      if (typeof s === 'string') return parentPort.postMessage({ missing: s });
      const c0 = s.cpuMs();
      let x = 0; const until = Date.now() + 60; while (Date.now() < until) x += Math.sqrt(x + 1);
      const c1 = s.cpuMs();
      const before = policy();
      const up = s.setRealtime(1);
      const during = policy();
      const down = s.setRealtime(0);
      const after = policy();
      let range = '';
      try { s.setRealtime(100); } catch (e) { range = e.code + ' ' + (e instanceof RangeError); }
      parentPort.postMessage({ c0, c1, before, up, during, down, after, range, x: x > 0 });
    });`;
  const r = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    w.once('message', resolve);
    w.once('error', reject);
  });
  if (process.env.CI === 'true') assert.equal(r.missing, undefined, `the DNS UDP addon is built in CI: ${String(r.missing)}`);
  if (r.missing !== undefined) return;
  const burnt = (r.c1 as number) - (r.c0 as number);
  assert.ok(burnt >= 30 && burnt <= 1_000, `60 ms of busy work on the thread: ${burnt} ms of its CPU time`);
  assert.equal(r.before, '0', 'SCHED_OTHER to start with');
  if (process.getuid?.() === 0) {
    assert.equal(r.up, '');
    assert.equal(r.during, '1', 'SCHED_FIFO while set (the reset-on-fork flag is not part of the policy field)');
  } else {
    assert.equal(r.up, 'EPERM');
    assert.equal(r.during, '0');
  }
  assert.equal(r.down, '');
  assert.equal(r.after, '0', 'back to SCHED_OTHER');
  assert.equal(r.range, 'ERR_OUT_OF_RANGE true');
});
