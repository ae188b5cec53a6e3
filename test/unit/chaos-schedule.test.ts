/**
 * The multi-host fault schedule (test/chaos/schedule.ts) is a pure function of the
 * seed: the same seed replays the same steps, and every schedule respects the model
 * (no step on a stopped host, at least two routers up, detaches only of live containers).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { makeSchedule, describeStep, type Step } from '../chaos/schedule.js';
import { adaptKillBound } from '../chaos/kill9.js';
import { parseClockOffset } from '../../router/daemon/clock-hook.js';

test('the same seed gives the same schedule; another seed another one', () => {
  const a = makeSchedule(42, 5, 40).map(describeStep);
  assert.deepEqual(makeSchedule(42, 5, 40).map(describeStep), a);
  assert.notDeepEqual(makeSchedule(43, 5, 40).map(describeStep), a);
  assert.equal(a.length, 40);
});

test('schedules respect the model over many seeds, and use every kind of step', () => {
  const seen = new Set<string>();
  for (let seed = 0; seed < 300; seed++) {
    const hosts = 2 + (seed % 5);
    const up = new Set(Array.from({ length: hosts }, (_, i) => i + 1));
    const live = new Map<string, number>();
    for (const s of makeSchedule(seed, hosts, 40) as Step[]) {
      seen.add(s.op === 'attach' ? `attach-${s.addr.kind}` : s.op === 'partition' ? `partition-${s.twoWay ? 2 : 1}` : s.op);
      switch (s.op) {
        case 'attach':
          assert.ok(up.has(s.host), `seed ${seed}: attach on a stopped host`);
          assert.ok(!live.has(s.container));
          live.set(s.container, s.host);
          break;
        case 'detach':
          assert.equal(live.get(s.container), s.host, `seed ${seed}: detach of a container that is not there`);
          assert.ok(up.has(s.host));
          live.delete(s.container);
          break;
        case 'stop':
          assert.ok(up.has(s.host));
          up.delete(s.host);
          assert.ok(up.size >= 2, `seed ${seed}: fewer than two routers up`);
          break;
        case 'launch':
          assert.ok(!up.has(s.host));
          up.add(s.host);
          break;
        case 'reset':
          assert.ok(up.has(s.host));
          for (const c of s.containers) assert.equal(live.get(c), s.host);
          for (const [c, h] of [...live]) if (h === s.host) assert.ok(s.containers.includes(c), `seed ${seed}: reset leaves ${c}`);
          for (const c of s.containers) live.delete(c);
          break;
        case 'partition':
          assert.ok(s.from.length > 0 && s.to.length > 0);
          assert.ok(s.from.every((h) => !s.to.includes(h)), 'sides are disjoint');
          break;
        case 'kill':
        case 'clock':
          assert.ok(up.has(s.host));
          break;
        default:
      }
    }
  }
  for (const k of ['attach-default', 'attach-net', 'attach-claim', 'detach', 'partition-1', 'partition-2', 'heal', 'kill', 'stop', 'launch', 'reset', 'clock']) assert.ok(seen.has(k), `no ${k} step in 300 schedules`);
});

test('bad sizes are refused with one line', () => {
  assert.throws(() => makeSchedule(1, 1, 10), /invalid host count 1/);
  assert.throws(() => makeSchedule(1, 3, 0), /invalid step count 0/);
});

test('the clock hook accepts only a bounded decimal offset', () => {
  assert.equal(parseClockOffset('3600\n'), 3600);
  assert.equal(parseClockOffset('-30'), -30);
  assert.equal(parseClockOffset('1.5'), 1.5);
  for (const bad of ['', 'abc', '1e9', '999999999999', String(11 * 365 * 86400), '0x10', '12 34']) assert.equal(parseClockOffset(bad), 0, bad);
});

describe('kill -9 schedule: adaptive kill-delay bound', () => {
  test('a burst wholly cut off widens the bound 1.5x, capped at 60 s', () => {
    assert.deepEqual(adaptKillBound(2000, 2000, { oks: 0, workers: 3, lastOkMs: 0, delayMs: 1500 }), { where: 'before', bound: 3000 });
    assert.deepEqual(adaptKillBound(50_000, 2000, { oks: 0, workers: 3, lastOkMs: 0, delayMs: 1500 }), { where: 'before', bound: 60_000 });
  });
  test('a burst finished before the kill sets the bound to 1.5x that burst, not below the calibration', () => {
    assert.deepEqual(adaptKillBound(9000, 2000, { oks: 3, workers: 3, lastOkMs: 4000, delayMs: 5000 }), { where: 'after', bound: 6000 });
    assert.deepEqual(adaptKillBound(9000, 2000, { oks: 3, workers: 3, lastOkMs: 500, delayMs: 5000 }), { where: 'after', bound: 2000 });
  });
  test('a kill inside a burst keeps the bound', () => {
    assert.deepEqual(adaptKillBound(3000, 2000, { oks: 1, workers: 3, lastOkMs: 800, delayMs: 1000 }), { where: 'inside', bound: 3000 });
    // All succeeded, the last one after the moment of the kill: the kill still fell inside the burst.
    assert.deepEqual(adaptKillBound(3000, 2000, { oks: 3, workers: 3, lastOkMs: 1200, delayMs: 1000 }), { where: 'inside', bound: 3000 });
  });
});
