/**
 * Short fuzz run of every external-input decoder (test/fuzz/targets.ts), a few hundred
 * generated inputs each plus the regression seeds in test/fuzz/seeds/. The long run is
 * `npm run fuzz`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { TARGETS } from '../fuzz/targets.js';
import { reviveSeed } from '../fuzz/arbitraries.js';

const seedDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fuzz', 'seeds');
const RUNS = 300;

test('fuzz targets cover every external decoder named in issue #13', () => {
  assert.deepEqual(TARGETS.map((t) => t.name).sort(), [
    'api-body', 'cni-conf', 'control-frame', 'dns-gossip', 'dns-query', 'ethernet-policy', 'fastdp-heartbeat', 'frame-stream',
    'ipam-message', 'ipam-ring', 'msgpack-scan', 'plugin-request', 'proxy-request', 'sleeve-plain', 'sleeve-sealed', 'topology-gossip',
  ]);
});

for (const t of TARGETS) {
  test(`fuzz ${t.name}: seeds and ${RUNS} generated inputs never crash the decoder`, async () => {
    const f = path.join(seedDir, `${t.name}.json`);
    if (existsSync(f)) {
      for (const x of JSON.parse(readFileSync(f, 'utf8')) as unknown[]) {
        await t.check(reviveSeed(x));
      }
    }
    if (t.async) await fc.assert(fc.asyncProperty(t.arb, async (x) => { await t.check(x); }), { numRuns: RUNS });
    else fc.assert(fc.property(t.arb, (x) => { void t.check(x); }), { numRuns: RUNS });
  });
}
