/**
 * The router's shared slow beat: one timer on a process-wide grid of whole periods
 * (1 s of the monotonic clock, mono-clock.ts) that runs every periodic housekeeping
 * job due at that grid point in one event-loop wake-up.
 *
 * Why: an idle router's CPU is mostly the cost of waking up (a context switch, a turn
 * of the event loop: timers, microtasks, async hooks), not the work each wake-up does.
 * Separate timers for the sleeve's and fastdp's idle ticks (1 s), the control
 * connections' liveness check, the idle collector and the router's own housekeeping
 * started at unrelated moments, so each one woke the process by itself. On the beat
 * they coincide: jobs whose periods are whole multiples of the beat and which start on
 * the grid fire together. [scale, issue #20]
 *
 * Semantics: `once(cb)` runs `cb` at the next grid point at least 2 ms away (so 2 ms
 * to one period from now: a job armed shortly before a grid point runs early, which
 * the slow ticks on the beat tolerate: each checks elapsed times, never counts ticks); `every(ms, cb)` runs `cb`
 * at grid points `ms` apart (`ms` a positive whole multiple of the period). Callbacks
 * run in the order they were registered; one that throws does not stop the others (the
 * error is rethrown as an uncaught exception afterwards, as a throwing timer callback
 * would be). The timer is unref'd: the beat never keeps the process alive by itself.
 */
import { monoNow } from './mono-clock.js';

interface Job {
  dueAt: number;
  /** 0 for a one-shot job. */
  everyMs: number;
  cb: () => void;
  live: boolean;
}

/** Grid tolerance, ms: a job due this close after the firing time runs in this wake-up (timers fire on whole ms). */
const SLACK_MS = 2;

export class Beat {
  private jobs: Job[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private firing = false;

  /**
   * @param periodMs the grid, ms (> 0)
   * @param now the clock (monotonic ms); injectable for tests
   * @throws RangeError for a period that is not a positive integer
   */
  constructor(readonly periodMs = 1_000, private readonly now: () => number = monoNow) {
    if (!Number.isInteger(periodMs) || periodMs <= 0) throw new RangeError(`beat period must be a positive whole number of ms, got ${periodMs}`);
  }

  /**
   * Runs `cb` once at the next grid point that is a whole multiple of `alignMs` (default:
   * the period, i.e. the next grid point), at least 2 ms from now. Aligning a slow tick to
   * its own interval makes every such tick of every subsystem (and, the clock being
   * monotonic since boot, of every router on the host) land on the same grid points.
   * Returns a function that cancels it (idempotent).
   * @throws RangeError unless `alignMs` is a positive whole multiple of the period
   */
  once(cb: () => void, alignMs = this.periodMs): () => void {
    return this.add(this.nextAligned(alignMs), 0, cb);
  }

  /**
   * The grid point `once(cb, alignMs)` would run at (monotonic ms).
   * @throws RangeError unless `alignMs` is a positive whole multiple of the period
   */
  nextAligned(alignMs = this.periodMs): number {
    if (!Number.isInteger(alignMs) || alignMs <= 0 || alignMs % this.periodMs !== 0) throw new RangeError(`a beat alignment must be a positive multiple of ${this.periodMs} ms, got ${alignMs}`);
    return (Math.floor((this.now() + SLACK_MS) / alignMs) + 1) * alignMs;
  }

  /**
   * Runs `cb` every `ms` at grid points (the first at the grid point `ms` after the
   * next one, so jobs of equal period registered at different times share wake-ups).
   * Returns a function that stops it.
   * @throws RangeError unless `ms` is a positive whole multiple of the period
   */
  every(ms: number, cb: () => void): () => void {
    if (!Number.isInteger(ms) || ms <= 0 || ms % this.periodMs !== 0) throw new RangeError(`a beat job's interval must be a positive multiple of ${this.periodMs} ms, got ${ms}`);
    return this.add(this.nextAligned(ms), ms, cb);
  }

  /** Jobs registered and not yet run or cancelled (for tests and the report). */
  get pending(): number {
    return this.jobs.length;
  }

  /** Runs the jobs due at `now` (what the timer does; tests call it with an injected clock). */
  fire(now = this.now()): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const due = this.jobs.filter((j) => j.dueAt <= now + SLACK_MS);
    let error: unknown;
    let failed = false;
    // Jobs added by the callbacks are armed once, after all of them ran.
    this.firing = true;
    try {
      for (const j of due) {
        if (!j.live) continue;
        if (j.everyMs === 0) j.live = false;
        else while (j.dueAt <= now + SLACK_MS) j.dueAt += j.everyMs;
        try {
          j.cb();
        } catch (err) {
          if (!failed) error = err;
          failed = true;
        }
      }
    } finally {
      this.firing = false;
    }
    this.jobs = this.jobs.filter((j) => j.live);
    this.arm();
    if (failed) throw error;
  }

  private add(dueAt: number, everyMs: number, cb: () => void): () => void {
    const job: Job = { dueAt, everyMs, cb, live: true };
    this.jobs.push(job);
    this.arm();
    return () => {
      if (!job.live) return;
      job.live = false;
      this.jobs = this.jobs.filter((j) => j !== job);
      if (this.jobs.length === 0 && !this.firing) this.disarm();
    };
  }

  /** (Re-)arms the one timer for the earliest job, unless it is armed for that moment. */
  private arm(): void {
    if (this.firing) return;
    let at = Infinity;
    for (const j of this.jobs) if (j.dueAt < at) at = j.dueAt;
    if (at === this.timerAt) return;
    this.disarm();
    if (at === Infinity) return;
    this.timerAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(1, at - this.now()));
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }
}

/** The process's beat (1 s): every subsystem's slow ticks ride it unless given another. */
export const sharedBeat = new Beat();

/**
 * One component's self-rescheduling tick on top of the beat: `arm(ms)` runs `run` in
 * `ms` unless a run is already due sooner; a delay that is a whole multiple of the
 * beat's period rides the shared beat, aligned to that multiple (see {@link Beat.once}:
 * at the next grid point that is a multiple of `ms`, so possibly sooner than `ms`);
 * any other delay gets its own unref'd timer (fast ticks while something is being
 * confirmed, a kick). `cancel()` drops what is armed.
 */
export class BeatTick {
  private timer: NodeJS.Timeout | undefined;
  private cancelBeat: (() => void) | undefined;
  private due = Infinity;

  constructor(private readonly run: () => void, private readonly beat: Beat = sharedBeat, private readonly now: () => number = monoNow) {}

  /** Whether a run is armed. */
  get armed(): boolean {
    return this.due !== Infinity;
  }

  arm(ms: number): void {
    const onBeat = ms > 0 && ms % this.beat.periodMs === 0;
    const at = onBeat ? this.beat.nextAligned(ms) : this.now() + ms;
    if (this.due <= at) return;
    this.cancel();
    this.due = at;
    if (onBeat) {
      this.cancelBeat = this.beat.once(() => this.fire(), ms);
    } else {
      this.timer = setTimeout(() => this.fire(), ms);
      this.timer.unref();
    }
  }

  cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.cancelBeat?.();
    this.timer = undefined;
    this.cancelBeat = undefined;
    this.due = Infinity;
  }

  private fire(): void {
    this.timer = undefined;
    this.cancelBeat = undefined;
    this.due = Infinity;
    this.run();
  }
}
