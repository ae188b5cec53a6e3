/**
 * Reliability: three short multi-host fault schedules (test/chaos/schedule.ts run by
 * test/chaos/mesh.ts) on 3 hosts x 12 steps — two fixed seeds chosen to cover
 * partitions (one-way and two-way), heal, kill -9, stop/launch, reset, claims, `net:`
 * subnets and a clock jump, and one random seed, printed — each followed by the full
 * invariant check (no address twice in allocators, endpoints or kernels; full mesh;
 * one ring of live peers; fresh allocations; pings within isolation groups; no crash).
 * About 50 s per schedule on a quiet machine (2–4 min each at load 30). The long campaign is `npm run chaos -- --hosts 5 --steps 40 --runs N`.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Testbed, canRunE2E } from './lib/testbed.js';
import { runMeshSchedule } from '../chaos/mesh.js';
import { describeStep, type Step } from '../chaos/schedule.js';

function missingPrereq(): string | undefined {
  const m = canRunE2E();
  if (m) return m;
  try {
    execFileSync('iptables', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'needs iptables';
  }
  return undefined;
}
const missing = missingPrereq();
if (missing && process.env.CI === 'true') test(`chaos-schedule prerequisites: ${missing}`, () => assert.fail(`cannot run: ${missing}`));

const random = Math.floor(Math.random() * 2 ** 31);

describe('multi-host fault schedules', { skip: missing, timeout: 1_300_000 }, () => {
  const beds: Testbed[] = [];
  after(async () => {
    for (const b of beds) await b.destroy();
  });

  // Regression: a reset into a one-way partition the mesh has not noticed yet used to
  // report success while its hand-over was lost, stranding a third of the range under a
  // departed peer name. Now the router probes the heir first and refuses (and keeps running).
  test('regression: weave reset behind a one-way partition refuses instead of losing the space', { timeout: 420_000 }, async (t) => {
    const bed = new Testbed(`cs${beds.length}`);
    beds.push(bed);
    try {
      const schedule: Step[] = [
        { op: 'attach', host: 1, container: 'c1', addr: { kind: 'default' } },
        { op: 'partition', from: [1], to: [2, 3], twoWay: false },
        { op: 'reset', host: 1, containers: ['c1'] },
      ];
      const lines: string[] = [];
      const r = await runMeshSchedule(bed, { seed: 0, hosts: 3, steps: 0, schedule, convergeMs: 120_000, log: (l) => { lines.push(l); t.diagnostic(l); } });
      assert.deepEqual(r.violations, [], `${r.violations.join('\n')}\n${r.diagnostics}`);
      assert.ok(lines.some((l) => /weave reset h1 .*reset refused \(peer .* did not answer within 5 s/.test(l)), 'the reset was refused');
    } finally {
      await bed.destroy();
    }
  });

  for (const [seed, what] of [[170, 'fixed'], [308, 'fixed'], [random, 'random']] as const) {
    test(`${what} seed ${seed}: 3 hosts x 12 steps, then every invariant holds`, { timeout: 420_000 }, async (t) => {
      const bed = new Testbed(`cs${beds.length}`);
      beds.push(bed);
      try {
        const r = await runMeshSchedule(bed, { seed, hosts: 3, steps: 12, convergeMs: 120_000, log: (l) => t.diagnostic(l) });
        const msg = `seed ${seed} (replay: npm run chaos -- --hosts 3 --steps 12 --seed ${seed})\n${r.steps.map((s, i) => `  ${i + 1}. ${describeStep(s)}`).join('\n')}\n${r.violations.join('\n')}\n${r.diagnostics}`;
        assert.deepEqual(r.violations, [], msg);
        assert.ok(r.attachesOk >= 3, 'at least the fresh allocations succeeded');
      } finally {
        await bed.destroy();
      }
    });
  }
});
