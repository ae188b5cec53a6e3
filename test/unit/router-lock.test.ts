/**
 * Router liveness by identity (router/host/router-lock.ts), without root: the lock is
 * an ordinary flock(2) on a file in a temporary state dir, held by a child process.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireRouterLock, isRouterRunning, waitForRouterExit, RouterRunningError } from '../../router/host/router-lock.js';

const lockModule = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'router', 'host', 'router-lock.js');
const dirs: string[] = [];
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'tsweave-lock-'));
  dirs.push(d);
  return d;
}

/**
 * A child node process that takes the lock like the router does and then idles (bounded:
 * 60 s); with `viaFlock1` through util-linux flock(1) (WEAVE_NO_LOCK_ADDON=1), else through the lock addon.
 */
async function lockHolder(dir: string, viaFlock1 = false): Promise<ChildProcess> {
  const code = `import(${JSON.stringify(lockModule)}).then(async (m) => { await m.acquireRouterLock(${JSON.stringify(dir)}); process.stdout.write('locked\\n'); setTimeout(() => {}, 60000); })`;
  const env = { ...process.env, WEAVE_NO_LOCK_ADDON: viaFlock1 ? '1' : '0' };
  const c = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'], env });
  children.push(c);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('lock holder did not report "locked" within 10 s')), 10_000);
    c.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('locked')) {
        clearTimeout(t);
        resolve();
      }
    });
    c.on('exit', (code) => reject(new Error(`lock holder exited early (${code})`)));
  });
  return c;
}

test('no lock file: not running', async () => {
  assert.deepEqual(await isRouterRunning(tempDir()), { running: false });
});

test('a live holder is running (with its pid); after kill -9 it is not, at once', async () => {
  const dir = tempDir();
  const c = await lockHolder(dir);
  assert.equal(Number(readFileSync(path.join(dir, 'weaver.pid'), 'utf8')), c.pid);
  assert.deepEqual(await isRouterRunning(dir), { running: true, pid: c.pid });
  await assert.rejects(acquireRouterLock(dir, 300), (err: Error) => err instanceof RouterRunningError && err.message === `weave router is already running (pid ${c.pid}): use weave stop first`);
  const gone = new Promise((r) => c.on('exit', r));
  c.kill('SIGKILL');
  await gone;
  // The pid file still names the dead process: it must not matter.
  assert.equal(Number(readFileSync(path.join(dir, 'weaver.pid'), 'utf8')), c.pid);
  assert.deepEqual(await isRouterRunning(dir), { running: false });
  assert.equal(await waitForRouterExit(dir, 1000), true);
  const fd = await acquireRouterLock(dir, 0);
  assert.ok(fd >= 0);
  assert.equal(Number(readFileSync(path.join(dir, 'weaver.pid'), 'utf8')), process.pid);
});

test('a pid file naming an unrelated live process does not count as a router', async () => {
  const dir = tempDir();
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(sleeper);
  writeFileSync(path.join(dir, 'weaver.pid'), String(sleeper.pid));
  writeFileSync(path.join(dir, 'weaver.lock'), '');
  assert.deepEqual(await isRouterRunning(dir), { running: false });
  const fd = await acquireRouterLock(dir, 0);
  assert.ok(fd >= 0);
});

test('waitForRouterExit times out (bounded) while a holder lives', async () => {
  const dir = tempDir();
  await lockHolder(dir);
  const t0 = Date.now();
  assert.equal(await waitForRouterExit(dir, 300), false);
  assert.ok(Date.now() - t0 < 5000);
});

test('procExiting: gone, zombie, PF_EXITING or SIGKILL pending count as exiting; a running process does not', async () => {
  const { procExiting, processExiting } = await import('../../router/host/router-lock.js');
  const stat = (state: string, flags: number): string => `4242 (node (weaver)) ${state} 1 4242 4242 0 -1 ${flags} 100 0 0 0`;
  const status = (sigpnd: string, shdpnd = '0000000000000000'): string => `Name:\tnode\nSigPnd:\t${sigpnd}\nShdPnd:\t${shdpnd}\n`;
  assert.equal(procExiting(undefined, undefined), true, 'no /proc entry: gone');
  assert.equal(procExiting(stat('Z', 0x400000), status('0000000000000000')), true, 'zombie');
  assert.equal(procExiting(stat('R', 0x400004), status('0000000000000000')), true, 'PF_EXITING');
  assert.equal(procExiting(stat('S', 0x400000), status('0000000000000000', '0000000000000100')), true, 'SIGKILL pending (shared)');
  assert.equal(procExiting(stat('S', 0x400000), status('0000000000000100')), true, 'SIGKILL pending (thread)');
  assert.equal(procExiting(stat('S', 0x400000), status('0000000000004000')), false, 'SIGTERM pending is not a kill');
  assert.equal(procExiting(stat('S', 0x400000), status('0000000000000000')), false, 'sleeping, nothing pending');
  assert.equal(procExiting('garbage', 'garbage'), false, 'malformed text: not exiting');
  assert.equal(processExiting(process.pid), false, 'this test process is alive');
});

test('the lock addon and flock(1) see each other\'s locks (a router of either kind blocks the other)', async () => {
  const old = process.env.WEAVE_NO_LOCK_ADDON;
  try {
    for (const [holderFlock1, checkerFlock1] of [[true, false], [false, true]] as const) {
      const dir = tempDir();
      const c = await lockHolder(dir, holderFlock1);
      process.env.WEAVE_NO_LOCK_ADDON = checkerFlock1 ? '1' : '0';
      const what = `holder ${holderFlock1 ? 'flock(1)' : 'addon'}, checker ${checkerFlock1 ? 'flock(1)' : 'addon'}`;
      assert.deepEqual(await isRouterRunning(dir), { running: true, pid: c.pid }, what);
      await assert.rejects(acquireRouterLock(dir, 100), RouterRunningError, what);
      const gone = new Promise((r) => c.on('exit', r));
      c.kill('SIGKILL');
      await gone;
      assert.deepEqual(await isRouterRunning(dir), { running: false }, what);
    }
  } finally {
    if (old === undefined) delete process.env.WEAVE_NO_LOCK_ADDON;
    else process.env.WEAVE_NO_LOCK_ADDON = old;
  }
});
