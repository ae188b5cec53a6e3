/**
 * Reliability: liveness by identity (router/host/router-lock.ts), end to end as root.
 * Right after `kill -9` of a router, `weave launch` succeeds at once; a weaver.pid
 * naming an unrelated live process (sleep) does not block a launch; a second launch
 * beside a live router is refused naming its pid, and the router process that launch
 * started ahead of its checks (cli/weave.ts prestartRouter) is gone.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Testbed, canRunE2E, until, type Host } from './lib/testbed.js';

const missing = canRunE2E();
// With CI=true missing prerequisites are a failure, not a skip.
if (missing && process.env.CI === 'true') test(`reliability-pid prerequisites: ${missing}`, () => assert.fail(`cannot run: ${missing}`));

/** PIDs of router processes (the bundle) in namespace `ns`. */
function routerPids(ns: string): number[] {
  const out = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean).map(Number).filter((p) => {
    try {
      return /weaver\.js/.test(readFileSync(`/proc/${p}/cmdline`, 'latin1'));
    } catch {
      return false;
    }
  });
}

describe('router liveness by identity', { skip: missing, timeout: 180_000 }, () => {
  const bed = new Testbed('rp');
  let h1: Host;
  const sleepers: Array<{ kill(s?: NodeJS.Signals): void }> = [];

  before(async () => {
    [h1] = await bed.up(1);
  });
  after(async () => {
    for (const s of sleepers) s.kill('SIGKILL');
    await bed.destroy();
  });

  test('a second launch beside a live router is refused, naming its pid', async () => {
    await h1.launch(['--no-proxy', '--ipalloc-range', '']);
    const pid = h1.pid();
    assert.ok(pid);
    const r = await h1.weave(['launch', '--no-proxy']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), `weave: weave router is already running (pid ${pid}): use weave stop first`);
    // The refused launch had started a router process before its checks: it must not linger.
    await until('only the running router left in the namespace', async () => routerPids(h1.ns).join() === String(pid), 5000, 50);
  });

  test('kill -9 then an immediate relaunch succeeds (3 rounds)', async () => {
    for (let round = 0; round < 3; round++) {
      const pid = h1.pid()!;
      process.kill(pid, 'SIGKILL');
      // No wait for the process to be reaped: the launch runs right away.
      const r = await h1.weave(['launch', '--no-proxy', '--nickname', 'h1', '--ipalloc-range', '']);
      assert.equal(r.code, 0, `round ${round}: relaunch after kill -9 of ${pid} failed: ${r.stderr.trim()}\n${h1.logTail()}`);
      const now = h1.pid();
      assert.ok(now && now !== pid, `round ${round}: a new router runs (${now} vs killed ${pid})`);
      const rep = await h1.report();
      assert.equal(rep.Router.NickName ?? 'h1', 'h1');
    }
  });

  test('a weaver.pid naming an unrelated live process does not block launch', async () => {
    await h1.mustWeave(['stop']);
    const sleeper = spawn('sleep', ['120'], { stdio: 'ignore' });
    sleepers.push(sleeper);
    await until('sleep to start', async () => sleeper.pid !== undefined, 5000, 50);
    writeFileSync(path.join(h1.stateDir, 'weaver.pid'), String(sleeper.pid));
    const r = await h1.weave(['launch', '--no-proxy', '--nickname', 'h1', '--ipalloc-range', '']);
    assert.equal(r.code, 0, `launch with a pid file naming sleep (${sleeper.pid}) failed: ${r.stderr.trim()}`);
    assert.notEqual(h1.pid(), sleeper.pid);
    await h1.mustWeave(['stop']);
    const st = await h1.weave(['status']);
    assert.notEqual(st.code, 0, 'stopped router no longer answers');
  });
});
