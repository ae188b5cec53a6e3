/**
 * [scale, issue #20] Start-up phase timing for the daemon's one "start-up:" log line, so
 * the wait of `weave launch` can be attributed (node boot and module loading, state,
 * bridge, filters, TAP, router, fastdp, API, each subsystem). Pure: the clock is
 * injected; no timers or I/O.
 */

/**
 * Wall time of the daemon's start-up phases, for the one "start-up:" log line (issue #20:
 * where `weave launch`'s wait goes). The first phase, "load", runs from the process's
 * start (performance.timeOrigin) to the constructor: node's boot and module loading.
 */
export class StartupPhases {
  private readonly parts: string[] = [];
  private last = 0;

  /** @param now a clock in ms since the process started (tests inject one) */
  constructor(private readonly now: () => number = () => performance.now()) {
    this.mark('load');
  }

  /** Ends the current phase, named `name`. */
  mark(name: string): void {
    const t = this.now();
    this.parts.push(`${name} ${Math.round(t - this.last)}`);
    this.last = t;
  }

  /** "total N ms (load a, state b, …)", in ms since the process started. */
  summary(): string {
    return `${Math.round(this.last)} ms since the process started (${this.parts.join(', ')})`;
  }
}
