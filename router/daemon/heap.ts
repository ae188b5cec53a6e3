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
 *
 * Twice in the router's life (`MAX_CODE_DROPS`: at the first quiet check, and after the
 * first idle collection) it also unmaps the read-only file pages start-up touched
 * (`dropCodePages`; docs/ARCHITECTURE.md "Start-up's file pages" has the figures and
 * the page-fault price that caps it at two).
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { loadAddon } from '../overlay/native-addon.js';
import { sharedBeat } from '../mesh/beat.js';

/** What `dropCodePages` did: mappings looked at, bytes advised (all resident), mappings skipped. */
export interface CodePagesDropped { ranges: number; bytes: number; skipped: number }

interface HeapAddon {
  mallocTrim(): boolean;
  dropCodePages(): CodePagesDropped;
}

let addon: HeapAddon | null | undefined;

function heapAddon(): HeapAddon | null {
  if (addon === undefined) {
    try {
      addon = loadAddon<HeapAddon>('heap', 'heap');
    } catch {
      addon = null;
    }
  }
  return addon;
}

/**
 * Hand glibc's free heap pages back to the kernel (malloc_trim(0)); false when nothing
 * was released or the heap addon is not built (never throws).
 */
export function trimNativeHeap(): boolean {
  try {
    const a = heapAddon();
    return a !== null && a.mallocTrim();
  } catch {
    addon = null;
    return false;
  }
}

/**
 * Unmap the resident, unmodified pages of the process's read-only file mappings (the
 * node binary's machine code, V8's start-up snapshot, builtin sources and ICU data, the
 * libraries and addons) with madvise(2) MADV_DONTNEED, so that what only start-up read
 * stops being resident in this process; what still runs is mapped again from the page
 * cache on its next use (a minor fault, no I/O). Pages holding a private copy are never
 * advised (heap.cc says why); writable and anonymous memory is never touched. Blocks the
 * calling thread ~5–15 ms. Returns null when the heap addon is not built; never throws.
 * [scale, issue #20]
 */
export function dropCodePages(): CodePagesDropped | null {
  try {
    const a = heapAddon();
    return a === null ? null : a.dropCodePages();
  } catch {
    return null;
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

/** How often in a router's life `startIdleGc` unmaps start-up's pages (`dropCodePages`). */
export const MAX_CODE_DROPS = 2;

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
  private quiet = false;
  // Start-up's pages go at the first check after a whole quiet interval (unmapping code
  // that forwarded frames use would only make them fault back in), and once more after
  // the first idle collection (a join storm's control-plane code). Never more: each drop
  // makes the next frames fault their code back in (~20–40 faults per router for the
  // first cached frame; on this project's VM a fault costs ~15–25 µs, so that frame's
  // round trip gained 1–8 ms), and a drop after every idle collection would put that on
  // the first frame after every quiet spell.
  private dropPending = true;
  private dropsLeft = MAX_CODE_DROPS;

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
    this.quiet = quiet;
    this.lastActivity = activity;
    if (!quiet || now - this.lastGcAt < this.opts.minIntervalMs) return false;
    return usedHeap - this.baseline >= this.opts.growthBytes;
  }

  /** A major collection ran at `now` and left `usedHeap` bytes in use. */
  collected(now: number, usedHeap: number): void {
    this.lastGcAt = now;
    this.baseline = usedHeap;
    this.dropPending = true;
  }

  /**
   * Whether to unmap start-up's pages (`dropCodePages`) now: true once at the first
   * quiet `check`, and once at the first quiet `check` after the next `collected`
   * (`MAX_CODE_DROPS` in all); a true answer is used up.
   */
  takeCodeDrop(): boolean {
    if (!this.dropPending || !this.quiet || this.dropsLeft === 0) return false;
    this.dropPending = false;
    this.dropsLeft--;
    return true;
  }
}

/**
 * Runs `IdleGcPolicy` on an unref'd timer, `trimNativeHeap` at the first check and
 * at the check after each collection, and `dropCodePages` when the policy says so
 * (`takeCodeDrop`). `activity` should be cheap (it runs every `checkMs`). Returns a
 * stop function.
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
    const collect = policy.check(Date.now(), activity(), before);
    if (policy.takeCodeDrop()) dropCodePages();
    if (!collect) return;
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
