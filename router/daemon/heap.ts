/**
 * Heap housekeeping for the router process. Garbage collection pauses the event loop,
 * and with it every frame the router forwards: a multi-millisecond mark-compact in the
 * middle of a ping shows up as a latency spike. Startup (loading modules, parsing
 * config, the first gossip) leaves most of the garbage the process will ever make, and
 * V8 would otherwise collect it with a full, compacting collection some seconds later,
 * when traffic may already flow. So once the router is up we collect it at once.
 *
 * The router runs with `--no-memory-reducer` (cli/weave.ts), so V8 never collects on
 * its own while the process is idle: an idle router allocates too little to reach its
 * next major GC, and the garbage of joins and topology changes (a 30-router mesh: tens
 * of MiB) stayed resident for good. [scale, issue #20] `IdleGc` therefore runs a major
 * collection itself, only when the data path has been quiet for a whole check interval
 * (no sleeve frame in or out, flow-cache hits included; fastdp frames never enter the
 * process), only when the heap grew since the last collection, and at most once per
 * `minIntervalMs` — so a pause never lands in the middle of forwarded traffic and an
 * idle router costs one cheap check every few seconds.
 *
 * The collection is requested through V8's own `gc` extension, enabled at run time
 * (`--expose-gc`) and taken from a fresh context, so the global scope is not changed.
 *
 * After a collection, the check that follows it (`checkMs` later, once V8's sweeper
 * has freed its pages and compiler zones) also trims glibc's heap (`malloc_trim`,
 * build/Release/heap.node): a join storm's malloc'd scratch otherwise stays resident
 * for good (bench:scale --real 30: ~1.5–2 MiB per router).
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { loadAddon } from '../overlay/native-addon.js';
import { sharedBeat } from '../mesh/beat.js';

let trimFn: (() => boolean) | null | undefined;

/**
 * Hand glibc's free heap pages back to the kernel (malloc_trim(0)); false when nothing
 * was released or the heap addon is not built (never throws).
 */
export function trimNativeHeap(): boolean {
  try {
    if (trimFn === undefined) trimFn = loadAddon<{ mallocTrim(): boolean }>('heap', 'heap').mallocTrim;
    return trimFn !== null && trimFn();
  } catch {
    trimFn = null;
    return false;
  }
}

let gcFn: (() => void) | null | undefined;

/** A full, synchronous garbage collection; false if the engine refused to expose one. */
export function collectGarbage(): boolean {
  try {
    if (gcFn === undefined) {
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as unknown;
      gcFn = typeof gc === 'function' ? (gc as () => void) : null;
    }
    if (gcFn === null) return false;
    gcFn();
    return true;
  } catch {
    return false;
  }
}

/** When the idle collector looks and what makes it collect (ms, bytes). */
export interface IdleGcOptions {
  /** Interval between checks; the data path must be quiet for one whole interval. */
  checkMs: number;
  /** At least this long between two idle collections. */
  minIntervalMs: number;
  /** Collect only once the used heap grew this much over what the last collection left. */
  growthBytes: number;
}

/** 6 s: a multiple of the 2 s idle ticks, so the check shares their beat (was 5 s, issue #20). */
export const IDLE_GC_DEFAULTS: IdleGcOptions = { checkMs: 6_000, minIntervalMs: 60_000, growthBytes: 2 << 20 };

/**
 * The idle collector's decision (pure: no timers, no heap access). `check` is called
 * every `checkMs` with a counter of data-path activity (any monotonic count, e.g.
 * frames in + out) and the used heap; it answers whether to collect now. `collected`
 * records a collection (ours or the startup one) and the heap it left.
 */
export class IdleGcPolicy {
  private lastActivity: number | undefined;
  private lastGcAt: number;
  private baseline: number;

  constructor(now: number, usedHeap: number, readonly opts: IdleGcOptions = IDLE_GC_DEFAULTS) {
    this.lastGcAt = now;
    this.baseline = usedHeap;
  }

  /**
   * @param now ms clock
   * @param activity monotonic data-path counter; unchanged since the last check means quiet
   * @param usedHeap bytes of heap in use now
   * @returns true when a major collection should run now
   */
  check(now: number, activity: number, usedHeap: number): boolean {
    const quiet = activity === this.lastActivity;
    this.lastActivity = activity;
    if (!quiet || now - this.lastGcAt < this.opts.minIntervalMs) return false;
    return usedHeap - this.baseline >= this.opts.growthBytes;
  }

  /** A major collection ran at `now` and left `usedHeap` bytes in use. */
  collected(now: number, usedHeap: number): void {
    this.lastGcAt = now;
    this.baseline = usedHeap;
  }
}

/**
 * Runs `IdleGcPolicy` on an unref'd timer, and `trimNativeHeap` at the first check and
 * at the check after each collection. `activity` should be cheap (it runs every
 * `checkMs`). Returns a stop function.
 */
export function startIdleGc(activity: () => number, opts: IdleGcOptions = IDLE_GC_DEFAULTS, onCollect?: (freedBytes: number, ms: number) => void): () => void {
  const used = (): number => v8.getHeapStatistics().used_heap_size;
  const policy = new IdleGcPolicy(Date.now(), used(), opts);
  // The startup collection ran just before this; its trim comes with the first check.
  let trimPending = true;
  // On the router's shared beat (mesh/beat.ts) when the interval is a whole number of
  // beats (the default), so the check shares its wake-up with the other slow ticks.
  const onBeat = opts.checkMs % sharedBeat.periodMs === 0;
  let stopped = false;
  const check = (): void => {
    if (stopped) return;
    if (trimPending) {
      trimPending = false;
      trimNativeHeap();
    }
    const before = used();
    if (!policy.check(Date.now(), activity(), before)) return;
    const t0 = performance.now();
    if (!collectGarbage()) return stop();
    const after = used();
    policy.collected(Date.now(), after);
    trimPending = true;
    onCollect?.(before - after, performance.now() - t0);
  };
  let stop: () => void;
  if (onBeat) {
    const stopJob = sharedBeat.every(opts.checkMs, check);
    stop = () => {
      stopped = true;
      stopJob();
    };
  } else {
    const timer = setInterval(check, opts.checkMs);
    timer.unref();
    stop = () => {
      stopped = true;
      clearInterval(timer);
    };
  }
  return () => stop();
}
