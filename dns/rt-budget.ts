/**
 * The CPU budget under which weaveDNS's server thread keeps a real-time scheduling class.
 * Pure: the caller passes the clock and the thread's CPU time; no timers, no syscalls.
 *
 * Why real time at all (issue #14): on a host whose CPUs are busy (bench:dns, one iperf3
 * flow through the router), a query's wake-up waits behind the running normal-class tasks
 * for up to their scheduler slice: at 2,000 q/s the answer's p99 was 2.5–3.9 ms on this
 * 2-vCPU machine (dnsmasq 1.4–2.3 ms in the same runs). A SCHED_FIFO thread at the lowest
 * real-time priority (sched(7)) runs as soon as it wakes, ahead of every normal task
 * (softirqs still come first): p99 1.4–1.9 ms in the same runs, interleaved. But a real-time
 * thread that never sleeps would take a whole CPU from the data path, gossip and the
 * containers — a query flood from one container must not do that.
 *
 * So the class is earned per window, in the spirit of a token budget: the thread measures
 * its own CPU time over windows of {@link RT_BUDGET_DEFAULTS}.windowMs (checked when it
 * works — at each batch of queries — so an idle thread costs nothing); a window in which it
 * used more than `maxShare` of one CPU demotes it to the normal class (SCHED_OTHER, the
 * router's nice value), where a flood is shared fairly like any other load; a later window
 * under `resumeShare`, at least `holdMs` after the demotion, promotes it again. Between two
 * checks the thread can exceed its share by at most one window plus one batch. The
 * kernel's own real-time throttling (sched_rt_runtime_us, 95 % by default) stays as the
 * backstop.
 */

/** Windows and shares of one CPU (0..1). */
export interface RtBudgetOptions {
  /** Length of a measuring window, ms (> 0). */
  windowMs: number;
  /** A window above this share of one CPU demotes the thread. */
  maxShare: number;
  /** A window below this share promotes a demoted thread (≤ maxShare: hysteresis). */
  resumeShare: number;
  /** A demoted thread stays demoted at least this long, ms (≥ 0), however quiet its windows. */
  holdMs: number;
}

/**
 * 100 ms windows; demote above 50 % of one CPU, promote again below 25 % but not within 1 s
 * of the demotion. The hold: under a flood the demoted thread's share can fall under a
 * quarter (the CPUs are shared with the data path and the flooder), and without it the
 * thread went back to real time for one window in every few, starving the flooding client
 * and the data path for that window each time (bench:dns: 2 demotions in one 5 s flood
 * phase); with it a flood gets at most one real-time window per 1.1 s. Why so much: the
 * thread's CPU time includes the softirq work the kernel runs on its syscalls' way out —
 * on the sleeve under one iperf3 flow that is the data path's packets too — so at the
 * 2,000 q/s issue #14 measures, 100 ms windows over 25 % came every few seconds
 * (bench:dns: 2 demotions in a 5 s phase), each one a window of normal-class latency.
 * And half a CPU is not more than a flood would get in the normal class anyway: the
 * router's scheduling group shares the CPUs fairly with the others, so on 2 CPUs against
 * two busy groups it gets about two thirds of one.
 */
export const RT_BUDGET_DEFAULTS: Readonly<RtBudgetOptions> = Object.freeze({ windowMs: 100, maxShare: 0.5, resumeShare: 0.25, holdMs: 1_000 });

/** What the thread must do after a check: change class, or nothing (undefined). */
export type RtDecision = 'demote' | 'promote' | undefined;

/**
 * Tracks one thread's windows. Starts in the real-time class (the caller switched to it
 * before the first check). Times in ms, from one monotonic clock; CPU time in ms of that
 * thread alone.
 */
export class RealtimeBudget {
  /** Whether the thread should be in the real-time class now. */
  active = true;
  /** Times a window over budget demoted the thread. */
  demotions = 0;
  /** Share of one CPU the last judged window used (0 before the first). */
  lastShare = 0;
  private windowStart = Number.NaN;
  private demotedAt = Number.NEGATIVE_INFINITY;
  private cpuAtStart = 0;
  private readonly opts: RtBudgetOptions;

  /** @throws RangeError when windowMs ≤ 0, holdMs < 0, or the shares are not 0 < resumeShare ≤ maxShare ≤ 1 */
  constructor(opts: Partial<RtBudgetOptions> = {}) {
    const o = { ...RT_BUDGET_DEFAULTS, ...opts };
    if (!(o.windowMs > 0) || !(o.holdMs >= 0) || !(o.resumeShare > 0) || !(o.resumeShare <= o.maxShare) || !(o.maxShare <= 1)) {
      throw new RangeError(`real-time budget: want windowMs > 0, holdMs >= 0 and 0 < resumeShare <= maxShare <= 1, got ${o.windowMs} ms, ${o.holdMs} ms, ${o.resumeShare}, ${o.maxShare}`);
    }
    this.opts = o;
  }

  /**
   * One check, at a moment the thread works (a batch of queries). Reads `cpuMs` only when a
   * window ends, so the common case is one comparison.
   * @param nowMs monotonic clock, ms
   * @param cpuMs the thread's CPU time so far, ms (called at most once per check)
   * @returns 'demote' or 'promote' when the class must change, else undefined
   */
  check(nowMs: number, cpuMs: () => number): RtDecision {
    if (Number.isNaN(this.windowStart)) {
      this.windowStart = nowMs;
      this.cpuAtStart = cpuMs();
      return undefined;
    }
    const span = nowMs - this.windowStart;
    if (span < this.opts.windowMs) return undefined;
    const cpu = cpuMs();
    const share = Math.max(0, cpu - this.cpuAtStart) / span;
    this.windowStart = nowMs;
    this.cpuAtStart = cpu;
    this.lastShare = share;
    if (this.active && share > this.opts.maxShare) {
      this.active = false;
      this.demotions++;
      this.demotedAt = nowMs;
      return 'demote';
    }
    if (!this.active && share < this.opts.resumeShare && nowMs - this.demotedAt >= this.opts.holdMs) {
      this.active = true;
      return 'promote';
    }
    return undefined;
  }
}
