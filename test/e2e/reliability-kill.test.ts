/**
 * Reliability: kill -9 of the router at seeded random moments during bursts of
 * allocations, relaunch at once, then prove no reported address was lost and none is
 * held or configured twice (test/chaos/kill9.ts). A short schedule (2 kills, seed 2: one kill lands after a burst, one inside it); the long
 * one is `npm run chaos -- --kills 50`.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Testbed, canRunE2E, type Host } from './lib/testbed.js';
import { killBurst } from '../chaos/kill9.js';

const missing = canRunE2E();
if (missing && process.env.CI === 'true') test(`reliability-kill prerequisites: ${missing}`, () => assert.fail(`cannot run: ${missing}`));

describe('kill -9 during allocations', { skip: missing, timeout: 420_000 }, () => {
  const bed = new Testbed('rk');
  let h1: Host;
  const launchArgs = ['launch', '--no-proxy', '--no-fastdp', '--nickname', 'h1'];

  before(async () => {
    [h1] = await bed.up(1);
    await h1.mustWeave(launchArgs);
    await h1.mustWeave(['prime'], { timeoutMs: 60_000 });
  });
  after(() => bed.destroy());

  for (const seed of [2]) {
    test(`seed ${seed}: 2 kills x 3 concurrent attaches, every reported address kept, none twice`, async (t) => {
      const r = await killBurst(bed, h1, launchArgs, { kills: 2, seed, tag: `s${seed}-`, log: (l) => t.diagnostic(l), timeoutMs: 240_000 });
      t.diagnostic(`seed ${seed}: ${r.kills} kills, ${r.containers} containers, ${r.reported} addresses reported, ${r.failedAttaches} attaches refused by the kill`);
      assert.deepEqual(r.violations, [], `seed ${seed}:\n${r.violations.join('\n')}\n${h1.logTail()}`);
      assert.ok(r.reported >= 1, 'at least the fresh allocation was reported');
      assert.equal(r.kills, 2, 'both kills fitted the time bound');
    });
  }
});
