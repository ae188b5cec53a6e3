/**
 * Long fuzz run: `npm run fuzz -- [--runs N] [--seconds S] [--only NAME] [--seed X]`.
 * Runs every target of test/fuzz/targets.ts (property-based, fast-check) for N runs or
 * S seconds each (default 10^6 runs), first replaying the regression seeds kept in
 * test/fuzz/seeds/<target>.json (byte inputs as base64 strings, others as JSON).
 * Prints executions per target and exits 1 if any target failed, printing the
 * counterexample and the seed/path to replay it. Async targets (the Docker plugin's
 * handlers) run under fc.asyncProperty.
 */
import fc from 'fast-check';
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { TARGETS } from './targets.js';
import { reviveSeed } from './arbitraries.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string' }, seconds: { type: 'string' }, only: { type: 'string' }, seed: { type: 'string' },
  },
});
const runs = values.runs !== undefined ? Number(values.runs) : undefined;
const seconds = values.seconds !== undefined ? Number(values.seconds) : undefined;
if ((runs !== undefined && !(runs >= 1)) || (seconds !== undefined && !(seconds > 0))) {
  console.error('fuzz: --runs wants a positive integer and --seconds a positive number');
  process.exit(2);
}
const seedDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fuzz', 'seeds');

/** Regression inputs for `name` (Buffers for base64 strings tagged "b64:", at any depth). */
export function seedsFor(name: string): unknown[] {
  const f = path.join(seedDir, `${name}.json`);
  if (!existsSync(f)) return [];
  const list = JSON.parse(readFileSync(f, 'utf8')) as unknown[];
  return list.map(reviveSeed);
}

let failed = false;
for (const t of TARGETS) {
  if (values.only && t.name !== values.only) continue;
  for (const s of seedsFor(t.name)) await t.check(s);
  let n = 0;
  const t0 = performance.now();
  const budget = seconds !== undefined ? { interruptAfterTimeLimit: seconds * 1000, numRuns: Number.MAX_SAFE_INTEGER } : { numRuns: runs ?? 1_000_000 };
  const params = { ...budget, seed: values.seed !== undefined ? Number(values.seed) : undefined };
  const r = t.async
    ? await fc.check(fc.asyncProperty(t.arb, async (x) => { n++; await t.check(x); }), params)
    : fc.check(fc.property(t.arb, (x) => { n++; void t.check(x); }), params);
  const secs = (performance.now() - t0) / 1000;
  const rate = Math.round(n / secs);
  if (r.failed && !r.interrupted) {
    failed = true;
    console.log(`${t.name.padEnd(18)} FAILED after ${n} executions (seed ${r.seed}, path ${r.counterexamplePath}):\n  ${fc.stringify(r.counterexample)}\n  ${String(r.errorInstance ?? r.error)}`);
  } else {
    console.log(`${t.name.padEnd(18)} ${String(n).padStart(9)} executions in ${secs.toFixed(1)} s (${rate}/s), 0 failures`);
  }
}
process.exit(failed ? 1 : 0);
