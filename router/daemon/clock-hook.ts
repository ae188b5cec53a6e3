/**
 * A test hook for wall-clock jumps, so fault schedules can move a router's clock
 * without touching the machine's: when the daemon's environment has
 * `WEAVER_TEST_CLOCK_FILE=PATH`, `Date.now()` in the router returns
 * the real time plus the offset in seconds written in that file (a decimal number,
 * ≤ 32 bytes, |offset| ≤ 10 years; anything else counts as 0). The file is re-read every
 * 500 ms. Monotonic time (`performance.now()`, timers) is unaffected, exactly as when an
 * administrator or NTP steps the system clock. Without the variable nothing is patched.
 */
import { openSync, readSync, closeSync } from 'node:fs';

const MAX_OFFSET_S = 10 * 365 * 86_400;

/** Parse the hook file's text: an offset in seconds, or 0 when it is not a bounded number. */
export function parseClockOffset(text: string): number {
  const t = text.trim();
  if (!/^[+-]?\d{1,10}(\.\d{1,3})?$/.test(t)) return 0;
  const s = Number(t);
  return Math.abs(s) <= MAX_OFFSET_S ? s : 0;
}

function readOffset(file: string): number {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const buf = Buffer.alloc(32);
    const n = readSync(fd, buf, 0, 32, 0);
    return parseClockOffset(buf.subarray(0, n).toString('latin1'));
  } catch {
    return 0;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Install the hook if `env.WEAVER_TEST_CLOCK_FILE` is set; returns whether it did. */
export function installClockHook(env: NodeJS.ProcessEnv = process.env): boolean {
  const file = env.WEAVER_TEST_CLOCK_FILE;
  if (!file) return false;
  const realNow = Date.now.bind(Date);
  let offsetMs = readOffset(file) * 1000;
  Date.now = () => realNow() + offsetMs;
  const timer = setInterval(() => {
    offsetMs = readOffset(file) * 1000;
  }, 500);
  timer.unref();
  return true;
}
