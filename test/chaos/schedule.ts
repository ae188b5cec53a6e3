/**
 * The multi-host fault schedule of `npm run chaos -- --hosts N --steps S --seed X`
 * (pure: no sockets, timers or files). A seed and the host/step counts determine the
 * whole list of steps, generated up front against a small model of the testbed (which
 * hosts are up, which containers exist where, which one-way blocks are in place), so
 * the same seed replays the same schedule whatever the routers answer. The runner
 * (test/chaos/mesh.ts) executes the steps; a step whose precondition the real world no
 * longer meets (a container whose attach failed) is executed as a no-op and says so.
 *
 * Step kinds, after the faults Jepsen-style testing of Weave's promises needs:
 *  - attach: a container on a host, with no address (default subnet), a `net:` subnet
 *    (its own isolation group) or a claim `ip:` of a specific address;
 *  - detach: a container goes away (detached, its namespace deleted);
 *  - partition: underlay DROP of the mesh ports between two sets of hosts, one-way
 *    (from → to only) or two-way; heal: every DROP removed;
 *  - kill: `kill -9` of a router, relaunched at once with the same state dir;
 *  - stop / launch: `weave stop`, and later `weave launch` again;
 *  - reset: the host's containers go away, then `weave reset` (the router hands its
 *    IPAM space over to a live peer) and a fresh launch with a new peer name;
 *  - clock: the router's wall clock (Date.now) jumps by an offset, through the
 *    WEAVER_TEST_CLOCK_FILE hook (router/daemon/clock-hook.ts); the machine clock is
 *    never touched.
 */
import { mulberry32 } from '../lib/prng.js';

/** The `net:` subnets of the schedule (inside the default range 10.32.0.0/12); each is an isolation group. */
export const CHAOS_SUBNETS = ['10.40.1.0/24', '10.40.2.0/24'];

export type AddrSpec = { kind: 'default' } | { kind: 'net'; cidr: string } | { kind: 'claim'; cidr: string };

export type Step =
  | { op: 'attach'; host: number; container: string; addr: AddrSpec }
  | { op: 'detach'; host: number; container: string }
  | { op: 'partition'; from: number[]; to: number[]; twoWay: boolean }
  | { op: 'heal' }
  | { op: 'kill'; host: number }
  | { op: 'stop'; host: number }
  | { op: 'launch'; host: number }
  | { op: 'reset'; host: number; containers: string[] }
  | { op: 'clock'; host: number; offsetS: number };

/** Relative weights of the step kinds (attach-heavy: allocations are what the faults must not break). */
const WEIGHTS: Array<[Step['op'], number]> = [
  ['attach', 10], ['detach', 4], ['partition', 3], ['heal', 2], ['kill', 2], ['stop', 1], ['launch', 2], ['reset', 1], ['clock', 1],
];

/** Hosts are numbered 1..hosts (h1..hN); container names are c1, c2, ... in order of attach. */
export function makeSchedule(seed: number, hosts: number, steps: number): Step[] {
  if (!Number.isInteger(hosts) || hosts < 2 || hosts > 16) throw new Error(`invalid host count ${hosts}: want 2..16`);
  if (!Number.isInteger(steps) || steps < 1 || steps > 10_000) throw new Error(`invalid step count ${steps}: want 1..10000`);
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const up = new Set<number>(Array.from({ length: hosts }, (_, i) => i + 1));
  const where = new Map<string, number>(); // live container -> host
  const claimed = new Set<number>(); // last octets of claims already made (keeps claims mostly distinct)
  let partitioned = false;
  let n = 0;
  const out: Step[] = [];
  const total = WEIGHTS.reduce((s, [, w]) => s + w, 0);
  while (out.length < steps) {
    let r = rnd() * total;
    let op: Step['op'] = 'attach';
    for (const [o, w] of WEIGHTS) {
      if ((r -= w) < 0) {
        op = o;
        break;
      }
    }
    const live = [...up];
    const down = [...Array(hosts).keys()].map((i) => i + 1).filter((h) => !up.has(h));
    switch (op) {
      case 'attach': {
        if (!live.length) continue;
        const host = pick(live);
        const k = rnd();
        let addr: AddrSpec;
        if (k < 0.55) addr = { kind: 'default' };
        else if (k < 0.85) addr = { kind: 'net', cidr: pick(CHAOS_SUBNETS) };
        else {
          // A claim in the default subnet, in 10.47.255.0/24 (the range's last /24): a
          // small set of addresses so later claims sometimes collide with earlier ones
          // (refused, which is correct) and with allocations of the owner of that span.
          let oct = 1 + Math.floor(rnd() * 30);
          if (claimed.has(oct) && rnd() < 0.7) oct = 1 + Math.floor(rnd() * 250);
          claimed.add(oct);
          addr = { kind: 'claim', cidr: `10.47.255.${oct}/12` };
        }
        const container = `c${++n}`;
        where.set(container, host);
        out.push({ op: 'attach', host, container, addr });
        break;
      }
      case 'detach': {
        const cs = [...where.keys()].filter((c) => up.has(where.get(c)!));
        if (!cs.length) continue;
        const container = pick(cs);
        out.push({ op: 'detach', host: where.get(container)!, container });
        where.delete(container);
        break;
      }
      case 'partition': {
        const all = [...Array(hosts).keys()].map((i) => i + 1);
        // A random non-empty proper subset against the rest (or a random part of it).
        const side = all.filter(() => rnd() < 0.5);
        if (side.length === 0 || side.length === hosts) continue;
        const rest = all.filter((h) => !side.includes(h));
        const to = rest.filter(() => rnd() < 0.75);
        if (!to.length) to.push(rest[0]);
        const twoWay = rnd() < 0.5;
        out.push({ op: 'partition', from: side, to, twoWay });
        partitioned = true;
        break;
      }
      case 'heal':
        if (!partitioned) continue;
        out.push({ op: 'heal' });
        partitioned = false;
        break;
      case 'kill': {
        if (!live.length) continue;
        out.push({ op: 'kill', host: pick(live) });
        break;
      }
      case 'stop': {
        // Keep at least two routers up, so IPAM and the mesh always have a majority to work with.
        if (live.length <= 2) continue;
        const host = pick(live);
        up.delete(host);
        out.push({ op: 'stop', host });
        break;
      }
      case 'launch': {
        if (!down.length) continue;
        const host = pick(down);
        up.add(host);
        out.push({ op: 'launch', host });
        break;
      }
      case 'reset': {
        if (live.length <= 2) continue;
        const host = pick(live);
        const containers = [...where.keys()].filter((c) => where.get(c) === host);
        for (const c of containers) where.delete(c);
        out.push({ op: 'reset', host, containers });
        break;
      }
      case 'clock': {
        if (!live.length) continue;
        const offsets = [-3600, -30, 30, 600, 86_400];
        out.push({ op: 'clock', host: pick(live), offsetS: pick(offsets) });
        break;
      }
    }
  }
  return out;
}

/** One line per step, as printed by the runner (also what a violation report lists). */
export function describeStep(s: Step): string {
  switch (s.op) {
    case 'attach': return `attach ${s.container} on h${s.host} ${s.addr.kind === 'default' ? '(no address)' : s.addr.kind === 'net' ? `net:${s.addr.cidr}` : `ip:${s.addr.cidr}`}`;
    case 'detach': return `detach ${s.container} on h${s.host}`;
    case 'partition': return `partition ${s.from.map((h) => `h${h}`).join(',')} ${s.twoWay ? '<-/->' : '-/->'} ${s.to.map((h) => `h${h}`).join(',')}`;
    case 'heal': return 'heal all partitions';
    case 'kill': return `kill -9 h${s.host} and relaunch`;
    case 'stop': return `weave stop h${s.host}`;
    case 'launch': return `weave launch h${s.host}`;
    case 'reset': return `weave reset h${s.host} (removing ${s.containers.length ? s.containers.join(',') : 'no containers'}) and launch it fresh`;
    case 'clock': return `clock of h${s.host} jumps ${s.offsetS > 0 ? '+' : ''}${s.offsetS} s`;
  }
}
