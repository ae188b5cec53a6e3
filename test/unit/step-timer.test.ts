/** router/host/step-timer.ts: per-request step timings that follow awaits. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { mark, timeSteps } from '../../router/host/step-timer.js';

test('timeSteps records marked steps in order across awaits; repeated names add up; outside it mark does nothing', async () => {
  mark('outside'); // no timed request: nothing happens, nothing throws
  const inner = async (): Promise<void> => {
    await sleep(20);
    mark('b');
  };
  const { value, steps } = await timeSteps(async () => {
    await sleep(10);
    mark('a');
    await inner();
    await sleep(5);
    mark('a');
    return 42;
  });
  assert.equal(value, 42);
  assert.deepEqual(steps.map(([n]) => n), ['a', 'b']);
  const [[, a], [, b]] = steps;
  assert.ok(a >= 14, `a ${a} ms (10 + 5)`);
  assert.ok(b >= 19, `b ${b} ms`);
  // Two timed requests at once keep their own records.
  const [x, y] = await Promise.all([
    timeSteps(async () => { await sleep(5); mark('x'); }),
    timeSteps(async () => { await sleep(5); mark('y'); }),
  ]);
  assert.deepEqual([x.steps.map(([n]) => n), y.steps.map(([n]) => n)], [['x'], ['y']]);
});
