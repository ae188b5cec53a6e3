/**
 * The shared slow beat (router/mesh/beat.ts, issue #20): jobs registered at unrelated
 * moments run in one wake-up at grid points; periodic jobs whose intervals are
 * multiples of the beat coincide; a throwing job does not starve the others.
 * Driven with an injected clock and explicit fire() calls (the real timer is unref'd
 * and points at the fake clock's future, so it does not run during these tests).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Beat, BeatTick } from '../../router/mesh/beat.js';

function clock(start: number): { now: () => number; set(t: number): void } {
  let t = start;
  return { now: () => t, set: (x: number) => { t = x; } };
}

test('once: jobs registered at different moments of one period run together at the next grid point', () => {
  const c = clock(10_000_100);
  const b = new Beat(1000, c.now);
  const ran: string[] = [];
  b.once(() => ran.push('sleeve'));
  c.set(10_000_700);
  b.once(() => ran.push('fastdp'));
  b.fire(10_000_990);
  assert.deepEqual(ran, [], 'nothing is due before the grid point');
  c.set(10_001_000);
  b.fire();
  assert.deepEqual(ran, ['sleeve', 'fastdp']);
  assert.equal(b.pending, 0);
});

test('once: a job armed right at a grid point waits for the next one (no double tick)', () => {
  const c = clock(20_000_500);
  const b = new Beat(1000, c.now);
  let n = 0;
  const again = (): void => {
    n++;
    b.once(again);
  };
  b.once(again);
  c.set(20_001_000);
  b.fire();
  assert.equal(n, 1);
  // The re-armed job is due one period later, not now.
  b.fire(20_001_001);
  assert.equal(n, 1);
  c.set(20_002_000);
  b.fire();
  assert.equal(n, 2);
  // Armed within the timer's tolerance of a grid point: it goes to the next one.
  let m = 0;
  c.set(20_002_999);
  b.once(() => m++);
  b.fire(20_003_000);
  assert.equal(m, 0);
  b.fire(20_004_000);
  assert.equal(m, 1);
});

test('every: intervals that are multiples of the beat fire on shared grid points', () => {
  const c = clock(30_000_400);
  const b = new Beat(1000, c.now);
  const log: Array<[number, string]> = [];
  b.every(5000, () => log.push([c.now(), 'check']));
  c.set(30_002_300);
  b.every(10_000, () => log.push([c.now(), 'flush']));
  for (let t = 30_001_000; t <= 30_020_000; t += 1000) {
    c.set(t);
    b.fire();
  }
  assert.deepEqual(log, [
    [30_005_000, 'check'],
    [30_010_000, 'check'],
    [30_010_000, 'flush'],
    [30_015_000, 'check'],
    [30_020_000, 'check'],
    [30_020_000, 'flush'],
  ]);
});

test('every: a late beat runs a periodic job once and keeps its grid', () => {
  const c = clock(40_000_000);
  const b = new Beat(1000, c.now);
  const at: number[] = [];
  b.every(2000, () => at.push(c.now()));
  c.set(40_007_500); // the process was stalled for several intervals
  b.fire();
  c.set(40_008_000);
  b.fire();
  assert.deepEqual(at, [40_007_500, 40_008_000]);
});

test('a throwing job does not stop the others; its error is rethrown afterwards', () => {
  const c = clock(50_000_000);
  const b = new Beat(1000, c.now);
  const ran: string[] = [];
  b.once(() => {
    throw new Error('boom');
  });
  b.once(() => ran.push('second'));
  c.set(50_001_000);
  assert.throws(() => b.fire(), /boom/);
  assert.deepEqual(ran, ['second']);
  assert.equal(b.pending, 0);
});

test('cancel and stop: a cancelled job never runs; cancelling twice is harmless', () => {
  const c = clock(60_000_000);
  const b = new Beat(1000, c.now);
  let n = 0;
  const cancel = b.once(() => n++);
  const stop = b.every(3000, () => n++);
  cancel();
  cancel();
  stop();
  assert.equal(b.pending, 0);
  c.set(60_003_000);
  b.fire();
  assert.equal(n, 0);
});

test('every: rejects intervals that are not whole multiples of the beat', () => {
  const b = new Beat(1000, () => 0);
  assert.throws(() => b.every(1500, () => undefined), /positive multiple of 1000 ms/);
  assert.throws(() => b.every(0, () => undefined), RangeError);
  assert.throws(() => new Beat(0), RangeError);
});

test('BeatTick: the slow delay rides the beat; a sooner arm replaces it; a later one is ignored', async () => {
  const c = clock(70_000_200);
  const b = new Beat(1000, c.now);
  let runs = 0;
  const t = new BeatTick(() => runs++, b, c.now);
  t.arm(1000);
  assert.equal(b.pending, 1, 'the 1 s tick is a beat job');
  t.arm(1000);
  assert.equal(b.pending, 1, 're-arming for later changes nothing');
  t.arm(5);
  assert.equal(b.pending, 0, 'a sooner tick leaves the beat for its own timer');
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(runs, 1);
  assert.equal(t.armed, false);
  t.arm(1000);
  c.set(70_001_000);
  b.fire();
  assert.equal(runs, 2);
  t.arm(1000);
  t.cancel();
  assert.equal(b.pending, 0);
});

test('BeatTick: a delay of several periods rides the beat aligned to its own multiple, so ticks of one interval coincide', () => {
  const c = clock(70_001_500);
  const b = new Beat(1000, c.now);
  const ran: string[] = [];
  const sleeve = new BeatTick(() => ran.push('sleeve'), b, c.now);
  const fastdp = new BeatTick(() => ran.push('fastdp'), b, c.now);
  sleeve.arm(2000);
  assert.equal(b.nextAligned(2000), 70_002_000, 'the next even second, sooner than 2 s from now');
  c.set(70_002_700);
  fastdp.arm(2000);
  assert.equal(b.pending, 2, 'both on the beat');
  c.set(70_002_000 + 1);
  b.fire();
  assert.deepEqual(ran, ['sleeve'], 'the second was armed past 70 002 000: its multiple is 70 004 000');
  c.set(70_004_000);
  sleeve.arm(2000);
  b.fire();
  assert.deepEqual(ran, ['sleeve', 'fastdp'], 'a tick re-armed on its grid point is 2 s away, not 0');
  c.set(70_006_000);
  b.fire();
  assert.deepEqual(ran, ['sleeve', 'fastdp', 'sleeve'], 'and both now share the grid points that are multiples of 2 s');
  assert.throws(() => b.nextAligned(1500), /positive multiple of 1000 ms/);
  assert.throws(() => b.once(() => undefined, 0), RangeError);
});
