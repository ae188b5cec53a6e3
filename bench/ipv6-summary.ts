/**
 * The arithmetic of `npm run bench:ipv6` (bench/ipv6-bench.ts), kept pure so it is
 * unit-tested: medians over repeats, ratios of IPv6 to IPv4 figures paired within each
 * repeat, and whether issue #21's goal ("within 5 % of the IPv4 figures of the same
 * run") is met. No sockets, timers or files.
 *
 * Why paired, repeated ratios: on a shared 2-vCPU VM one 5 s sample of ping or TCP moves
 * by ±15 % from scheduler noise and drift (the quiet run of 2026-12-04 15:23 measured the
 * four IPv4/IPv6 combinations one after the other and its ping averages simply rose in
 * measurement order: 0.411, 0.428, 0.448, 0.467 ms). The bench therefore measures every
 * combination in each repeat, in alternating order, and compares each IPv6 figure with the
 * IPv4 figure of the same repeat; the median of those ratios is the result, their range
 * says how much noise there was.
 *
 * The control: the all-IPv4 combination is measured twice per round, first and last (the
 * order reversed every other round). control / reference is then a ratio of two identical
 * configurations — the noise band (scheduler noise plus any bias from the position in the
 * round) against which an IPv6 ratio must be read. When a round has both, each IPv6 figure
 * is compared with their mean, which brackets the round and so cancels a linear drift.
 *
 * Ping, paired per ping: five `ping` runs one after the other (5 s each) drifted apart by
 * 15 % even between the two identical IPv4 runs of a quiet round (2026-12-05 01:05), so a
 * ratio of their averages cannot judge a 5 % goal. All five targets of a round are instead
 * pinged by `fping -C N -p P`, which round-robins them: the k-th echo of every target is
 * sent within one period P (P / 5 apart), so target A's k-th time and the reference's k-th
 * time saw the same machine state. A round is many short such runs, each with the targets
 * in another order (shuffledOrders), so position in the cycle and the preceding target
 * (both bias the time) even out. The ping ratio of a round is the
 * median over k of A_k / ref_k (ref_k: the mean of the reference's and the control's k-th
 * times), the paired difference the median of A_k − ref_k; for two identical targets the
 * median of such ratios is 1 whatever the jitter (X/Y < 1 and Y/X < 1 are equally likely),
 * and the control row measures how far from 1 it lands in practice.
 */

/** The IPv4 reference, the three IPv6 combinations and the control (IPv4 again), per data path. */
export type Combo = 'v4/v4' | 'v6ul/v4' | 'v4ul/v6' | 'v6/v6' | 'control';

/** One measurement of one combination in one repeat. */
export interface Sample {
  /** data path: none (plaintext sleeve), encrypted (sleeve), fastdp */
  variant: string;
  /** 0-based repeat index */
  repeat: number;
  /** underlay IP version */
  underlay: 4 | 6;
  /** overlay IP version */
  overlay: 4 | 6;
  /** iperf3 TCP-1 receiver throughput, Mbit/s (undefined: iperf3 failed) */
  tcpMbps?: number;
  /** ping round-trip times: average, median and 99th percentile, ms */
  pingAvgMs?: number;
  pingP50Ms?: number;
  pingP99Ms?: number;
  /** ping loss, % */
  pingLoss?: number;
  /**
   * Average round trip of a flood ping (`ping -f`, next echo as soon as the reply is in),
   * ms: the routers stay busy, so this is their per-packet work without the wake-up of an
   * idle CPU that a sparse ping pays on every hop (undefined: not measured)
   */
  busyAvgMs?: number;
  /**
   * Per-ping round-trip times of this round's interleaved fping run, ms (null: no reply);
   * index k is the k-th cycle, so index k of every target of the same round (and variant)
   * was sent within one fping period. The kernel anchor's two targets share their own run.
   */
  pingRtts?: Array<number | null>;
  /**
   * [sleeve] frames the two routers handled in JavaScript during the ping (both
   * directions, both routers), i.e. not from the C flow cache; undefined for fastdp
   */
  jsFrames?: number;
  /** [sleeve] frames both routers forwarded from the C flow cache during the ping */
  cachedFrames?: number;
  /** [sleeve] as jsFrames / cachedFrames, during the TCP run */
  tcpJsFrames?: number;
  tcpCachedFrames?: number;
  /** [sleeve] TCP run: segments per super-frame the sender's TAP read (read offloads) */
  segPerRead?: number;
  /** [sleeve] TCP run: segments per super-frame written to the receiver's TAP */
  segPerWrite?: number;
  /** the all-IPv4 combination measured a second time in the round (the control) */
  control?: boolean;
  /** 1-minute load average when the sample started */
  load: number;
  /** [anchor variants, ANCHORS] the tsweave variant whose rounds this anchor sample belongs to */
  kernelOf?: string;
}

/** Goal of issue #21: IPv6 TCP at least 95 % and ping at most 105 % of IPv4's. */
export const TCP_GOAL = 0.95;
export const PING_GOAL = 1.05;

/** The combination a sample belongs to. */
export function comboOf(s: Pick<Sample, 'underlay' | 'overlay' | 'control'>): Combo {
  if (s.control === true) return 'control';
  if (s.underlay === 4) return s.overlay === 4 ? 'v4/v4' : 'v4ul/v6';
  return s.overlay === 4 ? 'v6ul/v4' : 'v6/v6';
}

/** Median of the defined numbers (mean of the middle two for an even count); undefined if none. */
export function median(xs: Array<number | undefined>): number | undefined {
  const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1]! + v[m]!) / 2;
}

/**
 * Nearest-rank quantile (0 < q ≤ 1) of numbers already sorted ascending; undefined if empty.
 * p99 of 500 pings is then the 495th smallest.
 */
export function quantileSorted(sorted: number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Most targets one fping run may name, and most pings per target (bounds for parseFping). */
export const FPING_MAX_TARGETS = 32;
export const FPING_MAX_COUNT = 100_000;

/**
 * fping's argv (after the program name) for an interleaved run: `count` echoes to each
 * target, one cycle every `periodMs` (-p), the targets of a cycle spread evenly over it
 * (-i = period / targets, at least 1 ms), a reply awaited up to 2 s (-t; fping's default
 * with -C is the period, which would count a late reply under load as lost), results per
 * ping on stderr (-C, -q).
 * @throws Error (one line) for no or too many targets, a count or period out of range
 */
export function fpingArgs(targets: string[], count: number, periodMs: number): string[] {
  if (targets.length === 0 || targets.length > FPING_MAX_TARGETS) throw new Error(`fping: ${targets.length} targets (want 1–${FPING_MAX_TARGETS})`);
  if (!Number.isInteger(count) || count < 1 || count > FPING_MAX_COUNT) throw new Error(`fping: count ${count} out of range 1–${FPING_MAX_COUNT}`);
  if (!Number.isInteger(periodMs) || periodMs < targets.length || periodMs > 10_000) throw new Error(`fping: period ${periodMs} ms out of range ${targets.length}–10000`);
  const interval = Math.max(1, Math.floor(periodMs / targets.length));
  return ['-C', String(count), '-p', String(periodMs), '-i', String(interval), '-t', '2000', '-q', ...targets];
}

/**
 * Target orders for `batches` fping runs: seeded pseudo-random permutations (mulberry32,
 * Fisher–Yates), so over many batches every target is sent at every position and after
 * every other target about equally often. Both bias a time, and pairing per ping does not
 * cancel a bias that comes with the order: in loaded runs of 2026-12-05 (load 8) the
 * first-sent target of a cycle was 20–45 % faster on the fast datapath whichever it was,
 * and with the order only rotated (each target keeps its predecessor) the same address
 * was 8–10 % faster when sent 2 ms after its twin (same host) than after another host's.
 * @param n targets; batches ≥ 1; seed: any 32-bit integer (same seed, same orders)
 * @returns batches permutations of 0…n−1
 */
export function shuffledOrders(n: number, batches: number, seed: number): number[][] {
  let a = seed >>> 0;
  const rnd = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: batches }, () => {
    const o = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [o[i], o[j]] = [o[j]!, o[i]!];
    }
    return o;
  });
}

/**
 * Joins the per-batch results of rotated fping runs back per target: batch b's j-th row
 * belongs to target orders[b][j]; batches are appended in order, so index k of every
 * target still comes from the same fping cycle.
 * @throws Error when a batch has not one row per target or rows of unequal length
 */
export function joinBatches(orders: number[][], batches: Array<Array<Array<number | null>>>): Array<Array<number | null>> {
  if (orders.length !== batches.length) throw new Error(`fping: ${batches.length} batches for ${orders.length} orders`);
  const n = orders[0]?.length ?? 0;
  const out: Array<Array<number | null>> = Array.from({ length: n }, () => []);
  batches.forEach((rows, b) => {
    if (rows.length !== n || orders[b]!.length !== n || rows.some((r) => r.length !== rows[0]!.length)) throw new Error(`fping: batch ${b} does not have ${n} equal rows`);
    rows.forEach((row, j) => out[orders[b]![j]!]!.push(...row));
  });
  return out;
}

/**
 * Reads the per-ping report of `fping -C N -q` (written to stderr): one line per target,
 * `NAME<spaces>: T1 T2 … TN`, each Ti a round-trip time in ms or `-` for no reply, NAME as
 * given on the command line. A target named twice (the control) has two lines, taken in
 * order. Other lines (fping's ICMP error notices) are skipped.
 * @param out fping's stderr, at most 64 KiB + 16 bytes per expected time
 * @param targets the names passed to fping, in order
 * @param count N, the echoes sent to each target
 * @returns per target (in `targets` order), N times in ms, null for a lost echo
 * @throws Error (one line) when the text is too long, a result line names no expected
 *   target (or one too often), a time is not a number below 10^6 ms, a target's line
 *   has not exactly N times, or a target has no line
 */
export function parseFping(out: string, targets: string[], count: number): Array<Array<number | null>> {
  if (targets.length === 0 || targets.length > FPING_MAX_TARGETS) throw new Error(`fping: ${targets.length} targets (want 1–${FPING_MAX_TARGETS})`);
  if (!Number.isInteger(count) || count < 1 || count > FPING_MAX_COUNT) throw new Error(`fping: count ${count} out of range 1–${FPING_MAX_COUNT}`);
  const max = 65_536 + targets.length * (count * 16 + 128);
  if (out.length > max) throw new Error(`fping: output of ${out.length} characters exceeds ${max}`);
  const got: Array<Array<number | null> | undefined> = targets.map(() => undefined);
  for (const line of out.split('\n')) {
    const m = /^(\S+) +:( .*)?$/.exec(line.trimEnd());
    if (m === null) continue;
    const name = m[1]!;
    const rest = m[2] ?? '';
    const i = targets.findIndex((t, j) => t === name && got[j] === undefined);
    if (i < 0) throw new Error(`fping: unexpected result line for ${JSON.stringify(name.slice(0, 64))}`);
    const tokens = rest.trim().split(/ +/);
    if (tokens.length !== count) throw new Error(`fping: ${name}: ${tokens.length} results, expected ${count}`);
    got[i] = tokens.map((t) => {
      if (t === '-') return null;
      if (!/^\d{1,7}(\.\d{1,6})?$/.test(t) || Number(t) >= 1e6) throw new Error(`fping: ${name}: bad time ${JSON.stringify(t.slice(0, 32))}`);
      return Number(t);
    });
  }
  const missing = targets.filter((_, i) => got[i] === undefined);
  if (missing.length) throw new Error(`fping: no results for ${missing.slice(0, 4).join(', ')}`);
  return got as Array<Array<number | null>>;
}

/** Average, median, 99th percentile (ms) and loss (%) of per-ping times (null: lost). */
export function rttStats(rtts: Array<number | null>): Pick<Sample, 'pingAvgMs' | 'pingP50Ms' | 'pingP99Ms' | 'pingLoss'> {
  const v = rtts.filter((x): x is number => x !== null).sort((a, b) => a - b);
  return {
    pingAvgMs: v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined,
    pingP50Ms: quantileSorted(v, 0.5),
    pingP99Ms: quantileSorted(v, 0.99),
    pingLoss: rtts.length ? (100 * (rtts.length - v.length)) / rtts.length : 100,
  };
}

/**
 * Per-ping pairing of one target's times with a base (the mean of `base` and, if given,
 * `base2` at the same index): the median of the ratios a_k / base_k and of the differences
 * a_k − base_k (µs), over the indices where every series has a reply.
 * @returns undefined fields when no index has all replies; n: pairs used
 */
export function pairedPing(a: Array<number | null>, base: Array<number | null>, base2?: Array<number | null>): { ratio?: number; diffUs?: number; n: number } {
  const ratios: number[] = [];
  const diffs: number[] = [];
  const len = Math.min(a.length, base.length, base2?.length ?? Infinity);
  for (let k = 0; k < len; k++) {
    const x = a[k];
    const b1 = base[k];
    const b2 = base2 === undefined ? b1 : base2[k];
    if (x == null || b1 == null || b2 == null) continue;
    const b = (b1 + b2) / 2;
    if (b <= 0) continue;
    ratios.push(x / b);
    diffs.push(1000 * (x - b));
  }
  return { ratio: median(ratios), diffUs: median(diffs), n: ratios.length };
}

/** Median and range of a figure over the repeats. */
export interface Spread { median?: number; min?: number; max?: number; n: number }

export function spread(xs: Array<number | undefined>): Spread {
  const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x));
  return { median: median(v), min: v.length ? Math.min(...v) : undefined, max: v.length ? Math.max(...v) : undefined, n: v.length };
}

/** Per data path and combination: the figures over all repeats. */
export interface ComboSummary {
  variant: string;
  combo: Combo;
  tcp: Spread;
  pingAvg: Spread;
  pingP50: Spread;
  pingP99: Spread;
  /** largest loss seen in any repeat, % */
  maxLoss?: number;
  /** [sleeve] JS-handled frames per 1,000 flow-cache frames, summed over repeats */
  jsPerMille?: number;
  /** [sleeve] the same during the TCP runs */
  tcpJsPerMille?: number;
  /** [sleeve] TCP runs: segments per TAP super-frame read (sender) and written (receiver) */
  segPerRead: Spread;
  segPerWrite: Spread;
}

/** One IPv6 combination (or the control) against the IPv4 reference of the same data path. */
export interface RatioRow {
  variant: string;
  combo: Exclude<Combo, 'v4/v4'>;
  /** per-repeat IPv6/IPv4 ratios, paired by repeat */
  tcp: Spread;
  /**
   * per round: the median over pings of this target's k-th time / the IPv4 base's k-th
   * time (interleaved fping run, see the header); the figure the ping goal judges
   */
  ping: Spread;
  /** per round: the median over pings of this target's k-th time − the base's, µs */
  pingDiffUs: Spread;
  /** per round: ratio of the two average times of the same interleaved run (for reference) */
  pingAvg: Spread;
  /** per round: ratio of the flood-ping averages (Sample.busyAvgMs) */
  busy: Spread;
  /** median TCP ratio ≥ TCP_GOAL (undefined: no figures) */
  tcpMet?: boolean;
  /** median paired ping ratio ≤ PING_GOAL (undefined: no per-ping times) */
  pingMet?: boolean;
  /**
   * The paired ping ratio with the anchor's own IPv6 cost taken out: per round the median
   * over pings of (t6_k − kc) / base_k, where kc is that round's median of the paired
   * differences anchorCombo_k − anchorV4_k, the smaller of two anchors' (same variant
   * and round): the one built like this data path (anchorFor: kernel VXLAN for fastdp,
   * tinc for the sleeve; the same combination) and, for an IPv6 overlay, the plain anchor
   * (variant KERNEL: two namespaces on a bridge; its IPv6 figure). The smaller, so only
   * what a path without tsweave pays at least is credited (tinc alone pays ~30–40 µs for
   * an IPv6 overlay, which the plain anchor shows the kernel does not). Undefined when
   * neither was measured (and for the control)
   */
  pingNet?: Spread;
  /** median of pingNet ≤ PING_GOAL */
  pingNetMet?: boolean;
  /** per round: the paired difference minus kc, µs — what tsweave adds beyond the anchor's IPv6 cost */
  extraUs?: Spread;
  /** the anchor(s) whose cost pingNet and extraUs took out, comma-separated */
  anchor?: string;
}

/** One anchor's own IPv6 cost for one combination: its IPv6 target against its all-IPv4 one, paired per ping within each round. */
export interface AnchorRow {
  anchor: string;
  combo: Exclude<Combo, 'v4/v4' | 'control'>;
  /** per round: median of the per-ping ratios */
  ping: Spread;
  /** per round: median of the per-ping differences, µs */
  pingDiffUs: Spread;
}

/**
 * Variant names of the anchor samples (bench/ipv6-anchors.ts), measured in every round of
 * the tsweave variant named by Sample.kernelOf: KERNEL, ping between two plain namespaces
 * on a Linux bridge (underlay 4, overlay 4 or 6: the endpoint stacks' own IPv6 cost);
 * VXLAN_ANCHOR, kernel VXLAN over either underlay family carrying either overlay family;
 * TINC_ANCHOR, tinc 1.0 in switch mode (Cipher = none) likewise.
 */
export const KERNEL = 'kernel';
export const VXLAN_ANCHOR = 'vxlan';
export const TINC_ANCHOR = 'tinc';
export const ANCHORS: readonly string[] = [KERNEL, VXLAN_ANCHOR, TINC_ANCHOR];

/**
 * The anchor built like a tsweave data path: kernel VXLAN for the fast datapath (which is
 * kernel VXLAN set up by the router), tinc for the sleeve variants (a userspace daemon
 * carrying Ethernet frames from a TAP in UDP, as the sleeve does).
 */
export function anchorFor(variant: string): string {
  return variant === 'fastdp' ? VXLAN_ANCHOR : TINC_ANCHOR;
}

const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a === undefined || b === undefined || b === 0 ? undefined : a / b);
const perMille = (js: Array<number | undefined>, cached: Array<number | undefined>): number | undefined => {
  const j = js.filter((x): x is number => x !== undefined);
  const c = cached.filter((x): x is number => x !== undefined).reduce((a, b) => a + b, 0);
  return j.length && c > 0 ? (1000 * j.reduce((a, b) => a + b, 0)) / c : undefined;
};
/** Mean of the defined values; undefined if none. */
const mean = (...xs: Array<number | undefined>): number | undefined => {
  const v = xs.filter((x): x is number => x !== undefined);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
};

/** Figures per data path and combination, in first-seen order of the variants. */
export function summarize(samples: Sample[]): ComboSummary[] {
  const out: ComboSummary[] = [];
  for (const variant of [...new Set(samples.map((s) => s.variant))]) {
    for (const combo of ['v4/v4', 'v6ul/v4', 'v4ul/v6', 'v6/v6', 'control'] as const) {
      const ss = samples.filter((s) => s.variant === variant && comboOf(s) === combo);
      if (ss.length === 0) continue;
      out.push({
        variant, combo,
        tcp: spread(ss.map((s) => s.tcpMbps)),
        pingAvg: spread(ss.map((s) => s.pingAvgMs)),
        pingP50: spread(ss.map((s) => s.pingP50Ms)),
        pingP99: spread(ss.map((s) => s.pingP99Ms)),
        maxLoss: ss.some((s) => s.pingLoss !== undefined) ? Math.max(...ss.map((s) => s.pingLoss ?? 0)) : undefined,
        jsPerMille: perMille(ss.map((s) => s.jsFrames), ss.map((s) => s.cachedFrames)),
        tcpJsPerMille: perMille(ss.map((s) => s.tcpJsFrames), ss.map((s) => s.tcpCachedFrames)),
        segPerRead: spread(ss.map((s) => s.segPerRead)),
        segPerWrite: spread(ss.map((s) => s.segPerWrite)),
      });
    }
  }
  return out;
}

/** One anchor's IPv6 combination in one round, paired per ping with that round's all-IPv4 target. */
interface AnchorPair { anchor: string; of: string | undefined; repeat: number; combo: Exclude<Combo, 'v4/v4' | 'control'>; paired: ReturnType<typeof pairedPing> }

/**
 * Every anchor sample of an IPv6 combination with per-ping times, paired with the same
 * anchor's all-IPv4 sample of the same round (same kernelOf and repeat); samples whose
 * round has no such base are left out.
 */
function anchorPairs(samples: Sample[]): AnchorPair[] {
  const out: AnchorPair[] = [];
  for (const a of samples) {
    if (!ANCHORS.includes(a.variant) || a.pingRtts === undefined) continue;
    const combo = comboOf(a);
    if (combo === 'v4/v4' || combo === 'control') continue;
    const base = samples.find((k) => k.variant === a.variant && comboOf(k) === 'v4/v4' && k.repeat === a.repeat && k.kernelOf === a.kernelOf);
    if (base?.pingRtts === undefined) continue;
    out.push({ anchor: a.variant, of: a.kernelOf, repeat: a.repeat, combo, paired: pairedPing(a.pingRtts, base.pingRtts) });
  }
  return out;
}

/**
 * Every anchor's own IPv6 cost per round and combination: the median of the paired
 * per-ping differences anchorCombo_k − anchorV4_k of one interleaved run, ms, keyed
 * `${anchor}/${kernelOf}/${repeat}/${combo}` (kernelOf: the tsweave variant whose round
 * the anchor samples belong to).
 */
export function anchorCosts(samples: Sample[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of anchorPairs(samples)) {
    if (p.paired.diffUs !== undefined) out.set(`${p.anchor}/${p.of}/${p.repeat}/${p.combo}`, p.paired.diffUs / 1000);
  }
  return out;
}

/**
 * The plain (KERNEL) anchor's own IPv6 − IPv4 ping cost per round, ms, keyed
 * `${kernelOf}/${repeat}` (the tsweave variant whose round it belongs to).
 */
export function kernelCosts(samples: Sample[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of anchorPairs(samples)) {
    if (p.anchor === KERNEL && p.combo === 'v4ul/v6' && p.paired.diffUs !== undefined) out.set(`${p.of}/${p.repeat}`, p.paired.diffUs / 1000);
  }
  return out;
}

/**
 * Each anchor's IPv6 combinations against its all-IPv4 one, paired per ping within each
 * round (the rounds of every tsweave variant together): how much IPv6 costs the same
 * kind of path without tsweave.
 */
export function anchorRatios(samples: Sample[]): AnchorRow[] {
  const pairs = anchorPairs(samples);
  const out: AnchorRow[] = [];
  for (const anchor of ANCHORS) {
    for (const combo of ['v6ul/v4', 'v4ul/v6', 'v6/v6'] as const) {
      const paired = pairs.filter((p) => p.anchor === anchor && p.combo === combo).map((p) => p.paired);
      if (paired.length === 0) continue;
      out.push({ anchor, combo, ping: spread(paired.map((p) => p.ratio)), pingDiffUs: spread(paired.map((p) => p.diffUs)) });
    }
  }
  return out;
}

/**
 * IPv6/IPv4 ratios per data path: each IPv6 combination's figure divided by the
 * all-IPv4 figure of the same repeat (the mean of reference and control where the round
 * has both), then the median over repeats, with the goal checks; and the control row,
 * control / reference per round: the noise band. Ping is paired per ping within the round
 * (pairedPing) when the samples carry per-ping times.
 */
export function ratios(samples: Sample[]): RatioRow[] {
  const out: RatioRow[] = [];
  const costs = anchorCosts(samples);
  for (const variant of [...new Set(samples.map((s) => s.variant))]) {
    if (ANCHORS.includes(variant)) continue;
    const ref = new Map<number, Sample>();
    const ctl = new Map<number, Sample>();
    for (const s of samples) {
      if (s.variant !== variant) continue;
      if (comboOf(s) === 'v4/v4') ref.set(s.repeat, s);
      else if (comboOf(s) === 'control') ctl.set(s.repeat, s);
    }
    // The IPv4 figures an IPv6 sample of round r is compared with: the reference, and the control if the round has one.
    type Base = [Sample, Sample | undefined];
    const base = (r: number, combo: Combo): Base => [ref.get(r)!, combo === 'control' ? undefined : ctl.get(r)];
    const rtts = (b: Base): [Array<number | null> | undefined, Array<number | null> | undefined] => [b[0].pingRtts, b[1] === undefined ? b[0].pingRtts : b[1].pingRtts];
    for (const combo of ['v6ul/v4', 'v4ul/v6', 'v6/v6', 'control'] as const) {
      const pairs = samples
        .filter((s) => s.variant === variant && comboOf(s) === combo && ref.has(s.repeat))
        .map((s) => [s, base(s.repeat, combo)] as const);
      if (pairs.length === 0) continue;
      const tcp = spread(pairs.map(([s, [a, c]]) => ratio(s.tcpMbps, mean(a.tcpMbps, c?.tcpMbps))));
      const pingAvg = spread(pairs.map(([s, [a, c]]) => ratio(s.pingAvgMs, mean(a.pingAvgMs, c?.pingAvgMs))));
      const busy = spread(pairs.map(([s, [a, c]]) => ratio(s.busyAvgMs, mean(a.busyAvgMs, c?.busyAvgMs))));
      const paired = pairs.map(([s, b]) => {
        const [b1, b2] = rtts(b);
        return s.pingRtts === undefined || b1 === undefined || b2 === undefined ? undefined : pairedPing(s.pingRtts, b1, b2);
      });
      const ping = spread(paired.map((p) => p?.ratio));
      const pingDiffUs = spread(paired.map((p) => p?.diffUs));
      const row: RatioRow = {
        variant, combo, tcp, ping, pingDiffUs, pingAvg, busy,
        tcpMet: tcp.median === undefined ? undefined : tcp.median >= TCP_GOAL,
        pingMet: ping.median === undefined ? undefined : ping.median <= PING_GOAL,
      };
      if (combo !== 'control') {
        // The smaller of the two anchors' costs: the one built like this data path (same
        // combination) and, for an IPv6 overlay, the plain one (its only IPv6 figure).
        const own = anchorFor(variant);
        const costOf = (r: number): { anchor: string; ms: number } | undefined => {
          const a = costs.get(`${own}/${variant}/${r}/${combo}`);
          const k = combo === 'v6ul/v4' ? undefined : costs.get(`${KERNEL}/${variant}/${r}/v4ul/v6`);
          if (a !== undefined && (k === undefined || a <= k)) return { anchor: own, ms: a };
          return k === undefined ? undefined : { anchor: KERNEL, ms: k };
        };
        const kc = pairs.map(([s]) => costOf(s.repeat));
        if (kc.some((k) => k !== undefined)) {
          row.pingNet = spread(pairs.map(([s, b], i) => {
            const [b1, b2] = rtts(b);
            if (kc[i] === undefined || s.pingRtts === undefined || b1 === undefined || b2 === undefined) return undefined;
            return pairedPing(s.pingRtts.map((x) => (x === null ? null : x - kc[i]!.ms)), b1, b2).ratio;
          }));
          row.extraUs = spread(paired.map((p, i) => (kc[i] === undefined || p?.diffUs === undefined ? undefined : p.diffUs - 1000 * kc[i]!.ms)));
          row.pingNetMet = row.pingNet.median === undefined ? undefined : row.pingNet.median <= PING_GOAL;
          row.anchor = [...new Set(kc.filter((k) => k !== undefined).map((k) => k.anchor))].join(', ');
        }
      }
      out.push(row);
    }
  }
  return out;
}

/**
 * The average round trip, ms, from the summary line iputils `ping` prints last
 * ("rtt min/avg/max/mdev = 0.061/0.090/5.000/0.056 ms").
 * @returns undefined when the output has no such line (no reply at all)
 */
export function parsePingAvg(out: string): number | undefined {
  const m = /(?:rtt|round-trip) min\/avg\/max\/(?:mdev|stddev) = [\d.]+\/([\d.]+)\//.exec(out);
  if (!m) return undefined;
  const v = Number(m[1]);
  return Number.isFinite(v) ? v : undefined;
}

/** Human names of the combinations, as the tables print them. */
export const COMBO_TEXT: Record<Combo, string> = {
  'v4/v4': 'IPv4 overlay, IPv4 underlay (reference)',
  'v6ul/v4': 'IPv4 overlay, IPv6 underlay',
  'v4ul/v6': 'IPv6 overlay, IPv4 underlay',
  'v6/v6': 'IPv6 overlay, IPv6 underlay',
  control: 'IPv4 overlay, IPv4 underlay, measured again (control: the noise band)',
};
