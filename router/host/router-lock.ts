/**
 * Router liveness by identity: the running router holds an exclusive flock(2) on
 * `<state dir>/weaver.lock` for its whole life. The kernel drops the lock when the
 * last descriptor of that open file goes away — on exit, on `kill -9`, before the
 * process even becomes a zombie — so a held lock means "a live router owns this state
 * dir", and a free one means "nobody does", whatever `weaver.pid` says. A PID alone
 * (what `kill -0` tests) cannot tell a live router from a zombie or from an unrelated
 * process that was given the same PID after the router died.
 *
 * Node has no flock() in core. The lock addon (build/Release/lock.node,
 * router/host/native/lock.cc) calls flock(2) with LOCK_NB on our own descriptor; the
 * wait for a lock a checker holds for an instant is a poll every 20 ms. [scale, issue
 * #20: it was a fork of util-linux flock(1) in the CLI and one in the router on every
 * launch.] Without the addon the lock is taken by flock(1) on a descriptor we pass it:
 * `flock -w T 3` locks fd 3, which is our own open file description, and exits (the
 * descriptor form documented in flock(1)); checkers use `flock -n -s FILE true`. Either
 * way the lock belongs to an open file description that stays open in this process (a
 * plain numeric fd, never garbage-collected; Node opens files O_CLOEXEC, so no other
 * child inherits it), and checkers take a shared lock on a new open of the same file.
 *
 * The PID is still written to `weaver.pid`, but only to name the holder in messages.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fchmodSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './state-file.js';
import { loadAddon } from '../overlay/native-addon.js';

/** flock(2) through the lock addon; undefined when it is not built or WEAVE_NO_LOCK_ADDON=1 (flock(1) then). */
interface LockAddon {
  /** flock(fd, LOCK_EX or LOCK_SH | LOCK_NB): true when taken, false when held elsewhere. @throws Error with `code` */
  tryLock(fd: number, exclusive: boolean): boolean;
}
let lockAddon: LockAddon | null | undefined;
function nativeLock(): LockAddon | undefined {
  if (process.env.WEAVE_NO_LOCK_ADDON === '1') return undefined;
  if (lockAddon === undefined) {
    try {
      lockAddon = loadAddon<LockAddon>('lock', 'router lock');
    } catch {
      lockAddon = null;
    }
  }
  return lockAddon ?? undefined;
}

/** How often acquireRouterLock retries a lock held elsewhere (ms). */
const LOCK_POLL_MS = 20;

/** Exit code flock(1) is told to use (-E) when the lock is held by someone else. */
const CONFLICT = 75;

/** The lock file's path in a state dir. */
export function lockPath(stateDir: string): string {
  return path.join(stateDir, 'weaver.lock');
}

/** The PID recorded in `<state dir>/weaver.pid` (for messages only), or undefined. */
export function recordedPid(stateDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(stateDir, 'weaver.pid'), 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function runFlock(args: string[], fd?: number, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('flock', args, { stdio: ['ignore', 'ignore', 'ignore', ...(fd !== undefined ? [fd] : [])] });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`flock(1) ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(err.code === 'ENOENT' ? 'flock(1) from util-linux is not installed: install util-linux (scripts/setup.sh does)' : `flock(1) failed: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

/** Thrown by acquireRouterLock when another live router holds the state dir. */
export class RouterRunningError extends Error {
  constructor(readonly pid: number | undefined) {
    super(`weave router is already running${pid ? ` (pid ${pid})` : ''}: use weave stop first`);
  }
}

/**
 * Take the state dir's router lock for the rest of this process's life, then record
 * our PID in `weaver.pid`. Waits up to `waitMs` (default 2000 ms) for the lock, since
 * a checker (isRouterRunning) may hold it shared for a moment.
 * @returns the lock file's descriptor (closing it releases the lock)
 * @throws RouterRunningError if a live router holds it; Error if flock(1) is missing
 */
export async function acquireRouterLock(stateDir: string, waitMs = 2000): Promise<number> {
  const fd = openSync(lockPath(stateDir), 'a', 0o600);
  fchmodSync(fd, 0o600); // root only, like everything in the state dir (also when it existed)
  const nl = nativeLock();
  if (nl) {
    const end = Date.now() + Math.max(0, waitMs);
    for (;;) {
      let got: boolean;
      try {
        got = nl.tryLock(fd, true);
      } catch (err) {
        closeSync(fd);
        throw new Error(`cannot lock ${lockPath(stateDir)}: ${(err as Error).message}`);
      }
      if (got) break;
      if (Date.now() >= end) {
        closeSync(fd);
        throw new RouterRunningError(recordedPid(stateDir));
      }
      await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
    }
    await writeFileAtomic(path.join(stateDir, 'weaver.pid'), String(process.pid), 0o644);
    return fd;
  }
  let code: number;
  try {
    code = await runFlock(['-x', '-w', String(Math.max(0, waitMs) / 1000), '-E', String(CONFLICT), '3'], fd);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  if (code !== 0) {
    closeSync(fd);
    if (code === CONFLICT || code === 1) throw new RouterRunningError(recordedPid(stateDir));
    throw new Error(`flock(1) on ${lockPath(stateDir)} exited with code ${code}`);
  }
  await writeFileAtomic(path.join(stateDir, 'weaver.pid'), String(process.pid), 0o644);
  return fd;
}

/**
 * Whether a live router holds the state dir's lock (see the module comment). Takes
 * a shared lock for an instant if the lock is free, so it never blocks a router.
 * @returns { running, pid } — pid from weaver.pid, only meaningful when running
 */
export async function isRouterRunning(stateDir: string): Promise<{ running: boolean; pid?: number }> {
  const file = lockPath(stateDir);
  if (!existsSync(file)) return { running: false };
  const nl = nativeLock();
  if (nl) {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { running: false };
      throw new Error(`cannot open ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      // A shared lock for an instant (released by the close below): never blocks a router.
      return nl.tryLock(fd, false) ? { running: false } : { running: true, pid: recordedPid(stateDir) };
    } catch (err) {
      throw new Error(`cannot test the lock ${file}: ${(err as Error).message}`);
    } finally {
      closeSync(fd);
    }
  }
  const code = await runFlock(['-s', '-n', '-E', String(CONFLICT), file, 'true']);
  if (code === CONFLICT) return { running: true, pid: recordedPid(stateDir) };
  if (code === 0) return { running: false };
  throw new Error(`flock(1) on ${file} exited with code ${code}`);
}

/** PF_EXITING in /proc/PID/stat's flags (include/linux/sched.h): the task is tearing down. */
const PF_EXITING = 0x4;
/** SIGKILL's bit in /proc/PID/status SigPnd/ShdPnd (bit signo − 1). */
const SIGKILL_BIT = 1n << 8n;

/**
 * From the text of /proc/PID/stat and /proc/PID/status (proc(5); undefined when the
 * process is gone): whether the process is gone or on its way out — a zombie or dead
 * task, PF_EXITING set, or SIGKILL pending. Such a holder releases the router lock in a
 * moment, when the kernel closes its descriptors. Malformed text counts as not exiting.
 */
export function procExiting(stat: string | undefined, status: string | undefined): boolean {
  if (stat === undefined) return true;
  const rest = stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/);
  const state = rest[0] ?? '';
  if (state === 'Z' || state === 'X' || state === 'x') return true;
  const flags = Number(rest[6]);
  if (Number.isSafeInteger(flags) && (flags & PF_EXITING) !== 0) return true;
  for (const key of ['SigPnd', 'ShdPnd']) {
    const m = new RegExp(`^${key}:\\s*([0-9a-fA-F]{1,16})$`, 'm').exec(status ?? '');
    if (m && (BigInt(`0x${m[1]}`) & SIGKILL_BIT) !== 0n) return true;
  }
  return false;
}

/** procExiting for a live `pid` (reads /proc). */
export function processExiting(pid: number): boolean {
  const read = (f: string): string | undefined => {
    try {
      return readFileSync(`/proc/${pid}/${f}`, 'utf8');
    } catch {
      return undefined;
    }
  };
  return procExiting(read('stat'), read('status'));
}

/** Poll (every 100 ms, at most `timeoutMs`) until no router holds the lock; true if none does. */
export async function waitForRouterExit(stateDir: string, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (!(await isRouterRunning(stateDir)).running) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}
