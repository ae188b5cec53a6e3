/**
 * A monotonic clock for durations: liveness timeouts, heartbeat periods, MAC ages.
 *
 * `monoNow()` returns milliseconds that read like `Date.now()` at process start
 * (`performance.timeOrigin`, captured once) but advance with the monotonic clock
 * (`performance.now()`), so a wall-clock step (NTP, an operator's `date -s`, the test
 * clock hook in router/daemon/clock-hook.ts) neither expires every peer at once (a
 * forward step) nor freezes a timeout for the size of the step (a backward one).
 * Values are only meaningful inside this process: never gossip or display them as
 * dates — use `Date.now()` for timestamps other peers or users read (tombstones, logs).
 */
export function monoNow(): number {
  return performance.timeOrigin + performance.now();
}
