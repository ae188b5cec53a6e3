/**
 * Reliability (issue #16): the 5-minute soak of `npm test` — `test/chaos/soak.ts` with its
 * own bounds (heap after major GC slope, RSS sanity, open fds flat, event-loop delay p99
 * median ≤ 50 ms, no router death) on 3 routers with iperf3, pings, concurrent
 * attach/detach churn through the API, partition flaps and metrics/events clients. The
 * soak exits 1 naming the bound it broke; this test fails with its table and log tail.
 * The long run is `npm run soak -- --minutes 60`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { canRunE2E } from './lib/testbed.js';

function missingPrereq(): string | undefined {
  const m = canRunE2E();
  if (m) return m;
  for (const bin of ['iptables', 'iperf3', 'gnuplot']) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      return `needs ${bin}`;
    }
  }
  return undefined;
}
const missing = missingPrereq();
if (missing && process.env.CI === 'true') test(`soak prerequisites: ${missing}`, () => assert.fail(`cannot run: ${missing}`));

const SOAK = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../chaos/soak.js');
const MINUTES = 5;
const LIMIT_MS = (MINUTES + 4) * 60_000;

/** Removes namespaces (and their processes) of a soak child that had to be killed. */
function cleanupChild(pid: number): void {
  const prefix = `tswsk${pid % 10000}-`;
  let names: string[] = [];
  try {
    names = readdirSync('/var/run/netns').filter((n) => n.startsWith(prefix));
  } catch {
    return;
  }
  for (const ns of names) {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean);
      for (const p of pids) {
        try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ }
      }
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch { /* best effort */ }
  }
}

test(`soak: ${MINUTES} minutes on 3 routers within every bound`, { skip: missing, timeout: LIMIT_MS + 60_000 }, async (t) => {
  const out = mkdtempSync(path.join(tmpdir(), 'tsweave-soak-test-'));
  const child = spawn(process.execPath, [SOAK, '--minutes', String(MINUTES), '--hosts', '3', '--sample-s', '5', '--churn-workers', '4', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (b: Buffer) => { log += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { log += b.toString(); });
  let timedOut = false;
  const killer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, LIMIT_MS);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(killer);
  if (timedOut && child.pid !== undefined) cleanupChild(child.pid);
  const tail = log.split('\n').slice(-40).join('\n');
  t.diagnostic(tail);
  try {
    assert.ok(!timedOut, `the soak did not finish within ${LIMIT_MS / 60_000} min (waiting for: soak.js --minutes ${MINUTES})\n${tail}`);
    assert.equal(code, 0, `the soak broke a bound or failed:\n${tail}`);
    assert.match(log, /attach\+detach cycles/, 'the soak reported its churn');
    const png = path.join(out, 'soak.png');
    assert.ok(existsSync(png) && statSync(png).size > 1000, 'soak.png was drawn');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
