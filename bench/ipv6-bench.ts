/**
 * npm run bench:ipv6 — the IPv6 row of the bench (issue #21): TCP-1 (iperf3, one
 * stream) and ping between containers over the IPv4 and the IPv6 underlay, for the
 * overlay's IPv4 and IPv6 (the routers run with --ipalloc-range6 fd10:32::/64, so `weave
 * attach` gives each container the IPv6 address derived from its IPv4 one, fd10:32::a20:90N,
 * which the isolation policy carries), per data path (plaintext sleeve, encrypted sleeve,
 * fast datapath), with the ratios to the IPv4 figures of the same run (goal: within 5 %).
 *
 * Topology, so all four combinations share one launch and can be interleaved: three hosts
 * with an IPv4 and an IPv6 underlay address each (test/e2e/lib/testbed.ts, prefix tswb6…);
 * one far host joins h1 over IPv4, the other over IPv6 (checked: h1's direct connection to
 * each has that family). c1 on h1 measures to c2 on h2 and c3 on h3, each by its IPv4 and
 * its IPv6 overlay address. Per data path there are REPEATS rounds, each measuring every
 * combination, the order reversed every other round (first the pings, then all TCP runs);
 * for the first half of the rounds h2 is the IPv4 host and h3 the IPv6 one, then the
 * routers are relaunched the other way round, so that a difference between the two far
 * hosts cannot pass for IPv6's cost (session 46: with tcpdump on nine points, h3 was 9–13 µs
 * slower per fastdp round trip than h2 whichever underlay it had; without the capture the
 * two placements gave 7.5 and 8.5 µs for fastdp's IPv6 underlay, one round each). The result per combination is
 * the median over rounds; each IPv6 ratio pairs a round's IPv6 figure with the same
 * round's all-IPv4 figure (bench/ipv6-summary.ts explains why).
 *
 * Ping is measured interleaved: `fping -C … -p PING_PERIOD_MS` pings all five targets (the
 * four combinations and the control) round-robin, so the k-th echo of each target is sent
 * within the same period and they can be compared per ping (the median of the per-ping
 * ratios; the control's gives the noise band of that method). A round runs fping
 * PING_BATCHES times, PING_COUNT / PING_BATCHES echoes each, every run with the targets in
 * another (seeded pseudo-random) order, since the position in the cycle and the target
 * sent just before both bias a time. The plaintext and encrypted sleeve and the fast
 * datapath use the same method.
 *
 * Anchors (bench/ipv6-anchors.ts): the one built like the variant's data path — kernel
 * VXLAN over an IPv4 and an IPv6 underlay for fastdp, tinc 1.0 (switch mode, no cipher)
 * over both for the sleeve — laid out like its data path (container veth, bridge, then
 * VXLAN or TAP and tincd), carrying overlay IPv4 and IPv6, and built into this bench's own
 * hosts and containers (c1, c2 and c3 get extra interfaces): its pings leave from c1, in
 * the same fping runs as tsweave's (each cycle has its four targets after tsweave's five,
 * shuffled together; the cycle is longer so that echoes stay PING_PERIOD_MS / 5 apart),
 * and reach the far container that tsweave's reach over the same underlay family in the
 * current placement, so only the data path differs. And two plain namespaces on a bridge
 * (the endpoint stacks' own IPv6 cost), pinged the same way right after, in runs of their
 * own. What an anchor's IPv6 combination costs over
 * its all-IPv4 one, round by round, is what the kernel makes any such overlay pay; the
 * report takes it out of tsweave's paired ping ratio and prints the rest
 * (bench/ipv6-summary.ts).
 *
 * Fairness: the hosts' bridges pass neither IPv4 nor IPv6 frames through br_netfilter
 * (the testbed turns bridge-nf-call-iptables off; this bench also bridge-nf-call-ip6tables).
 * For the sleeve the bench reads both routers' frame counters around a short check ping
 * per combination (FLOW_PINGS at 0.01 s, before the interleaved run, which mixes the
 * combinations) and prints how many frames JavaScript handled per 1,000 the C flow cache
 * forwarded, per combination: a ping of either family should be answered from the flow
 * cache on both routers.
 *
 * Everything is removed at the end, also on failure or Ctrl-C. If ping does not get
 * through on a combination the bench stops with the routers' diagnosis (a defect: the
 * derived addresses must cross the overlay on either underlay).
 *
 * Needs fping and tinc (Debian packages, installed by scripts/setup.sh) besides iperf3.
 *
 * Environment: DURATION (iperf3 seconds per run, default 5), PING_COUNT (echoes per target
 * and round, default 1000, rounded up to a multiple of PING_BATCHES), PING_BATCHES (fping runs per round, each in another order, default 20), PING_PERIOD_MS (one fping cycle over tsweave's five targets, default 10; with the hosted anchor's four in the same run the cycle is 9/5 as long),
 * FLOW_PINGS (sleeve check pings per combination and round, default 50), BUSY_PINGS (flood
 * pings per combination and round, `ping -f`, default 5000; 0 skips them), REPEATS (rounds, default 4: an even number puts every combination equally often early and late), VARIANTS (comma list of
 * none,encrypted,fastdp, and for a before/after of a change in one run none-no-tails (the
 * plaintext sleeve with WEAVE_NO_BULK_TAILS=1) and none-no-conn6 (with WEAVE_NO_CONNECTED6=1:
 * sends to IPv6 next hops from the sleeve socket, not from sockets connected to them);
 * default none,encrypted,fastdp), RESULTS_DIR (JSON and Markdown written there,
 * default /tmp/tsweave-bench).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { derive6, parseRange6 } from '../ipam/ipv6.js';
import { Testbed, canRunE2E, sh, sleep, until, type Container, type Host } from '../test/e2e/lib/testbed.js';
import { hostedTincAnchor, hostedVxlanAnchor, plainAnchor, type Anchor, type AnchorSite, type HostedAnchor } from './ipv6-anchors.js';
import { ANCHORS, COMBO_TEXT, KERNEL, PING_GOAL, TCP_GOAL, TINC_ANCHOR, VXLAN_ANCHOR, anchorFor, anchorRatios, comboOf, fpingArgs, joinBatches, kernelCosts, parseFping, parsePingAvg, shuffledOrders, ratios, rttStats, spread, summarize, type Combo, type Sample, type Spread } from './ipv6-summary.js';

const DURATION = Number(process.env.DURATION ?? 5);
const PING_COUNT = Number(process.env.PING_COUNT ?? 1000);
const PING_PERIOD_MS = Number(process.env.PING_PERIOD_MS ?? 10);
const FLOW_PINGS = Number(process.env.FLOW_PINGS ?? 50);
const BUSY_PINGS = Number(process.env.BUSY_PINGS ?? 5000);
if (!Number.isInteger(BUSY_PINGS) || BUSY_PINGS < 0 || BUSY_PINGS > 1_000_000) {
  process.stderr.write(`bench:ipv6: BUSY_PINGS must be an integer 0..1000000 (got ${JSON.stringify(process.env.BUSY_PINGS)})\n`);
  process.exit(2);
}
const PING_BATCHES = Number(process.env.PING_BATCHES ?? 20);
const REPEATS = Math.max(1, Number(process.env.REPEATS ?? 4));
const VARIANTS = (process.env.VARIANTS ?? 'none,encrypted,fastdp').split(',').filter(Boolean);
const RESULTS_DIR = process.env.RESULTS_DIR ?? '/tmp/tsweave-bench';
const RANGE6 = 'fd10:32::/64';
const IPALLOC = ['--ipalloc-range', '', '--ipalloc-range6', RANGE6, '--no-proxy', '--no-dns', '--no-plugin'];
const PASSWORD = 'bench password not secret';

function flags(variant: string): { args: string[]; env: NodeJS.ProcessEnv; path: string } {
  switch (variant) {
    case 'none': return { args: ['--no-fastdp'], env: {}, path: 'sleeve' };
    // The plaintext sleeve without the egress cache's small tails (tap.cc, WEAVE_NO_BULK_TAILS=1): the "before" of issue #21's fix.
    case 'none-no-tails': return { args: ['--no-fastdp'], env: { WEAVE_NO_BULK_TAILS: '1' }, path: 'sleeve' };
    // The plaintext sleeve sending to IPv6 next hops from the sleeve socket (tap.cc Conn6 off): the "before" of session 46's change.
    case 'none-no-conn6': return { args: ['--no-fastdp'], env: { WEAVE_NO_CONNECTED6: '1' }, path: 'sleeve' };
    case 'encrypted': return { args: ['--no-fastdp'], env: { WEAVE_PASSWORD: PASSWORD }, path: 'sleeve' };
    case 'fastdp': return { args: [], env: {}, path: 'fastdp' };
    default: throw new Error(`unknown variant ${variant} (want none, none-no-tails, none-no-conn6, encrypted, fastdp)`);
  }
}

interface Conn { State: string; Path?: string; NickName?: string; Address: string }

/** h1's established connection to `nick` on `path`, or undefined. */
async function connection(h: Host, nick: string, path: string): Promise<Conn | undefined> {
  const r = await h.report();
  return (r.Router.Connections as Conn[]).find((c) => c.State === 'established' && c.Path === path && c.NickName === nick);
}

/**
 * Frames the router handled in JS and those the C flow cache forwarded, both directions,
 * and the addons' counters that say how TCP crossed them (Router.Addons of `weave report`):
 * TAP super-frames read and the segments cut from them, datagrams the egress cache sent
 * in UDP GSO runs, datagrams received in GRO super-packets, segments the ingress cache
 * merged into super-frames written to the TAP.
 */
interface Counts { js: number; cached: number; missGroup: number; missSmall: number; missFlow: number; missLong: number; superRead: number; segRead: number; readFrames: number; egressGso: number; recvDg: number; recvGro: number; superWritten: number; segMerged: number }
async function frameCounts(h: Host): Promise<Counts> {
  const R = (await h.report()).Router;
  const t = R.Traffic.sleeve as { FramesIn: number; FramesOut: number };
  const fc = R.FlowCache as { Egress: { Frames: number }; Ingress: { Frames: number } };
  const cached = fc.Egress.Frames + fc.Ingress.Frames;
  const a = (R.Addons ?? {}) as { tap?: Record<string, number>; udp?: Record<string, number> };
  const tap = a.tap ?? {};
  const udp = a.udp ?? {};
  return {
    js: t.FramesIn + t.FramesOut - cached, cached,
    missGroup: tap.missGroup ?? 0, missSmall: tap.missSmall ?? 0, missFlow: tap.missFlow ?? 0, missLong: tap.missLong ?? 0,
    superRead: tap.readSuperFrames ?? 0, segRead: tap.readSegments ?? 0, readFrames: tap.readFrames ?? 0, egressGso: tap.egressGso ?? 0,
    recvDg: udp.recvDatagrams ?? 0, recvGro: udp.recvCoalesced ?? 0,
    superWritten: (udp.tapSuperFrames ?? 0) + (tap.writeSuperFrames ?? 0), segMerged: (udp.tapMergedFrames ?? 0) + (tap.writeCoalesced ?? 0),
  };
}

/** after − before, field by field. */
function delta(after: Counts, before: Counts): Counts {
  const out = { ...after };
  for (const k of Object.keys(out) as Array<keyof Counts>) out[k] = after[k] - before[k];
  return out;
}

let fpingSeed = 0x21;

/**
 * One interleaved fping measurement from namespace `ns` to `to` (in this order; a name may repeat):
 * PING_COUNT echoes per target, round-robin within each PING_PERIOD_MS.
 * @returns per target, the per-ping times in ms (null: no reply)
 * @throws Error (one line) when fping's report cannot be read
 */
async function fping(ns: string, to: string[], periodMs = PING_PERIOD_MS): Promise<Array<Array<number | null>>> {
  const orders = shuffledOrders(to.length, PING_BATCHES, ++fpingSeed);
  const per = Math.ceil(PING_COUNT / PING_BATCHES);
  const batches: Array<Array<Array<number | null>>> = [];
  for (const order of orders) {
    const names = order.map((i) => to[i]!);
    const r = await sh('ip', ['netns', 'exec', ns, 'fping', ...fpingArgs(names, per, periodMs)], { timeoutMs: 60_000 + per * periodMs * 2 });
    try {
      batches.push(parseFping(r.stderr, names, per));
    } catch (err) {
      throw new Error(`${(err as Error).message} (fping exit ${r.code}${r.code > 1 ? `: ${r.stderr.trim().split('\n')[0]!.slice(0, 200)}` : ''})`);
    }
  }
  return joinBatches(orders, batches);
}

/** Underlay and overlay IP version of each combination (the control is v4/v4 again). */
const FAMILIES: Record<Exclude<Combo, 'control'>, { underlay: 4 | 6; overlay: 4 | 6 }> = {
  'v4/v4': { underlay: 4, overlay: 4 }, 'v6ul/v4': { underlay: 6, overlay: 4 }, 'v4ul/v6': { underlay: 4, overlay: 6 }, 'v6/v6': { underlay: 6, overlay: 6 },
};

/** How the report names an anchor's rows. */
const ANCHOR_TEXT: Record<string, string> = {
  [KERNEL]: 'plain namespaces on a bridge, no tsweave (anchor)',
  [VXLAN_ANCHOR]: 'kernel VXLAN, container to container through bridges, no tsweave (anchor)',
  [TINC_ANCHOR]: 'tinc 1.0 switch mode, Cipher none, no tsweave (anchor)',
};

async function iperf(bed: Testbed, from: Container, to: Container, addr: string): Promise<number | undefined> {
  bed.background(['ip', 'netns', 'exec', to.ns, 'iperf3', '-s', '-1']);
  await sleep(500);
  const r = await from.exec(['iperf3', '-c', addr, '-t', String(DURATION + 1), '-O', '1', '-J', '--connect-timeout', '3000'], (DURATION + 30) * 1000);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;
}

/**
 * The container's overlay IPv6 address: the one `weave attach` derived from its IPv4
 * address under RANGE6 (ipam/ipv6.ts), checked on its ethwe.
 * @throws Error when ethwe does not carry it (the router did not give IPv6)
 */
async function v6Of(c: Container): Promise<string> {
  const a = derive6(parseRange6(RANGE6), c.ips[0]!);
  const out = (await c.exec(['ip', '-o', '-6', 'addr', 'show', 'dev', 'ethwe'])).stdout;
  if (!out.includes(` ${a}/`)) throw new Error(`${c.name}: ethwe has no derived IPv6 address ${a}: ${out.trim().replace(/\s+/g, ' ') || 'none'}`);
  return a;
}

const fmt = (x: number | undefined, d = 1): string => (x === undefined ? 'n/a' : x.toFixed(d));

/**
 * One measurement target: a destination container and address, with its combination;
 * `control`: the all-IPv4 combination measured a second time, at the other end of the round.
 */
interface Target { c: Container; host: Host; addr: string; underlay: 4 | 6; overlay: 4 | 6; control?: boolean }

async function main(): Promise<void> {
  const why = canRunE2E();
  if (why) throw new Error(`bench:ipv6 ${why}`);
  // Settings are checked before anything is set up (one-line errors).
  for (const v of VARIANTS) flags(v);
  if (!Number.isInteger(PING_BATCHES) || PING_BATCHES < 1 || PING_BATCHES > 1000) throw new Error(`bench:ipv6: PING_BATCHES ${PING_BATCHES} out of range 1–1000`);
  fpingArgs(['a', 'b', 'c', 'd', 'e'], Math.ceil(PING_COUNT / PING_BATCHES), PING_PERIOD_MS);
  if (!Number.isInteger(FLOW_PINGS) || FLOW_PINGS < 0 || FLOW_PINGS > 10_000) throw new Error(`bench:ipv6: FLOW_PINGS ${FLOW_PINGS} out of range 0–10000`);
  for (const bin of ['fping', 'iperf3']) {
    if ((await sh(bin, ['--version'])).code !== 0) throw new Error(`bench:ipv6 needs ${bin} (apt-get install ${bin}; scripts/setup.sh installs it)`);
  }
  const bed = new Testbed('b6');
  const stop = (): void => {
    void bed.destroy().then(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const samples: Sample[] = [];
  try {
    const [h1, h2, h3] = await bed.up(3, { underlay: 'dual' });
    // The testbed already keeps IPv4 frames off br_netfilter; IPv6 likewise, so both
    // families cross the same bridge code.
    for (const h of [h1!, h2!, h3!]) await h.exec(['sysctl', '-qw', 'net.bridge.bridge-nf-call-ip6tables=0']);
    // The anchors: the plain one always; kernel VXLAN for fastdp and tinc for the sleeve,
    // built into these hosts and containers once the containers exist (setUp), their
    // targets following the placement.
    const anchors = new Map<string, Anchor>([[KERNEL, await plainAnchor(bed)]]);
    const hosted = new Map<string, HostedAnchor>();
    // The containers, made at the first launch and kept across relaunches: c1 on h1, one on h2 and one on h3.
    let c1: Container | undefined;
    const far = new Map<Host, { c: Container; v6: string }>();
    /**
     * (Re)launches the routers for `variant` with h2 joining h1 over IPv4 and h3 over IPv6,
     * or (`swapped`) the other way round, checks the families of h1's connections, and
     * returns the targets of this placement, each checked by ping.
     */
    const setUp = async (variant: string, f: ReturnType<typeof flags>, swapped: boolean): Promise<Target[]> => {
      const [v4h, v6h] = swapped ? [h3!, h2!] : [h2!, h3!];
      for (const h of [h1!, h2!, h3!]) if ((await h.weave(['status'])).code === 0) await h.mustWeave(['stop']);
      await h1!.launch([...IPALLOC, ...f.args], { env: f.env });
      await v4h.launch([...IPALLOC, ...f.args, h1!.ip4!], { env: f.env });
      await v6h.launch([...IPALLOC, ...f.args, `[${h1!.ip6!}]:6783`], { env: f.env });
      for (const [h, fam] of [[v4h, 4], [v6h, 6]] as const) {
        const conn = (await until(`h1 established to ${h.nickname} on ${f.path}`, () => connection(h1!, h.nickname, f.path), 90_000, 300))!;
        const isV6 = conn.Address.includes(':') && conn.Address.split(':').length > 2;
        if (isV6 !== (fam === 6)) throw new Error(`h1's connection to ${h.nickname} runs over ${conn.Address}, not over IPv${fam}`);
      }
      if (c1 === undefined) {
        c1 = await h1!.container('c1', ['ip:10.32.9.1/24']);
        await v6Of(c1);
        for (const [h, name, ip] of [[h2!, 'c2', 'ip:10.32.9.2/24'], [h3!, 'c3', 'ip:10.32.9.3/24']] as const) {
          const c = await h.container(name, [ip]);
          far.set(h, { c, v6: await v6Of(c) });
        }
        const site: AnchorSite = {
          hosts: [h1!, h2!, h3!].map((h) => ({ ns: h.ns, ip4: h.ip4!, ip6: h.ip6! })),
          containers: [c1.ns, far.get(h2!)!.c.ns, far.get(h3!)!.c.ns],
        };
        if (VARIANTS.some((v) => anchorFor(v) === VXLAN_ANCHOR)) hosted.set(VXLAN_ANCHOR, await hostedVxlanAnchor(site));
        if (VARIANTS.some((v) => anchorFor(v) === TINC_ANCHOR)) hosted.set(TINC_ANCHOR, await hostedTincAnchor(site, path.join(bed.dir, 'tinc'), (a) => bed.background(a)));
      }
      // The hosted anchors reach the same far host over each underlay family as tsweave does now.
      const num = (h: Host): number => [h1, h2, h3].indexOf(h) + 1;
      for (const [name, a] of hosted) anchors.set(name, { name: a.name, ns: a.ns, targets: a.targets(num(v4h), num(v6h)) });
      const [p4, p6] = [far.get(v4h)!, far.get(v6h)!];
      const ts: Target[] = [
        { c: p4.c, host: v4h, addr: p4.c.ips[0]!, underlay: 4, overlay: 4 },
        { c: p6.c, host: v6h, addr: p6.c.ips[0]!, underlay: 6, overlay: 4 },
        { c: p4.c, host: v4h, addr: p4.v6, underlay: 4, overlay: 6 },
        { c: p6.c, host: v6h, addr: p6.v6, underlay: 6, overlay: 6 },
        // The control: IPv4 again, last in even rounds and first in odd ones (the
        // reference is first / last), so their ratio shows noise plus position bias.
        { c: p4.c, host: v4h, addr: p4.c.ips[0]!, underlay: 4, overlay: 4, control: true },
      ];
      for (const t of ts) await c1.mustPing(t.addr, { tries: 20 }, `${variant} IPv${t.overlay} overlay over IPv${t.underlay} underlay`);
      process.stderr.write(`${variant}: h1 reaches ${v4h.nickname} over IPv4 and ${v6h.nickname} over IPv6\n`);
      return ts;
    };
    for (const variant of VARIANTS) {
      const f = flags(variant);
      let ok: Target[] = [];
      for (let r = 0; r < REPEATS; r++) {
        // Host placement alternates: h2 over IPv4 and h3 over IPv6 for the first half of the
        // rounds, then the other way round, so a difference between the far hosts (see the
        // header) cannot pass for IPv6's cost.
        if (r === 0 || r === Math.ceil(REPEATS / 2)) ok = await setUp(variant, f, r > 0);
        if (c1 === undefined) throw new Error('bench:ipv6: the source container was not made');
        const order = r % 2 === 0 ? ok : [...ok].reverse();
        const round = new Map<Target, Sample>();
        const sleeve = f.path === 'sleeve';
        for (const t of order) {
          const s: Sample = { variant, repeat: r, underlay: t.underlay, overlay: t.overlay, load: loadavg()[0]!, ...(t.control ? { control: true } : {}) };
          if (sleeve && FLOW_PINGS > 0) {
            // The flow-cache check: a short ping of this combination alone, counters around it.
            const before = await Promise.all([frameCounts(h1!), frameCounts(t.host)]);
            await sh('ip', ['netns', 'exec', c1.ns, 'ping', '-n', '-q', '-c', String(FLOW_PINGS), '-i', '0.01', '-W', '1', t.addr], { timeoutMs: 30_000 + FLOW_PINGS * 100 });
            const after = await Promise.all([frameCounts(h1!), frameCounts(t.host)]);
            s.jsFrames = after[0].js - before[0].js + after[1].js - before[1].js;
            s.cachedFrames = after[0].cached - before[0].cached + after[1].cached - before[1].cached;
          }
          if (BUSY_PINGS > 0) {
            // The busy ping: a flood ping keeps both routers awake, so its round trip is
            // their per-packet work, not the wake-up of an idle vCPU on every hop.
            const fl = await sh('ip', ['netns', 'exec', c1.ns, 'ping', '-n', '-q', '-f', '-c', String(BUSY_PINGS), '-W', '1', t.addr], { timeoutMs: 30_000 + BUSY_PINGS * 2 });
            s.busyAvgMs = parsePingAvg(fl.stdout);
          }
          round.set(t, s);
          samples.push(s);
        }
        // The timing: every target of the round in one interleaved fping run, in this round's
        // order, and in the same run the targets of the anchor built like this data path
        // (hosted in these containers: the same source), so each of its echoes is sent within
        // the same cycle as tsweave's. The cycle grows with the targets, so echoes stay
        // PING_PERIOD_MS / 5 apart as without the anchor.
        const own = anchors.get(anchorFor(variant));
        const ownCombos = own && hosted.has(own.name) ? Object.keys(own.targets) as Array<Exclude<Combo, 'control'>> : [];
        const addrs = [...order.map((t) => t.addr), ...ownCombos.map((c) => own!.targets[c]!)];
        const all = await fping(c1.ns, addrs, Math.round(PING_PERIOD_MS * addrs.length / order.length));
        const rtts = all.slice(0, order.length);
        order.forEach((t, i) => Object.assign(round.get(t)!, { pingRtts: rtts[i] }, rttStats(rtts[i]!)));
        process.stderr.write(`${variant} round ${r + 1}/${REPEATS} fping, interleaved: ${order.map((t) => { const s = round.get(t)!; return `${t.control ? 'control' : comboOf(s)} p50 ${fmt(s.pingP50Ms, 3)} ms loss ${fmt(s.pingLoss, 1)} %`; }).join('; ')}\n`);
        if (ownCombos.length) {
          const aLoad = loadavg()[0]!;
          ownCombos.forEach((c, i) => samples.push({ variant: own!.name, kernelOf: variant, repeat: r, ...FAMILIES[c], load: aLoad, pingRtts: all[order.length + i], ...rttStats(all[order.length + i]!) }));
          process.stderr.write(`${variant} round ${r + 1}/${REPEATS} ${own!.name} anchor, same fping runs: ${ownCombos.map((c, i) => `${c} p50 ${fmt(rttStats(all[order.length + i]!).pingP50Ms, 3)} ms`).join('; ')}\n`);
        }
        // The plain anchor (in namespaces of its own: a source of its own), its targets
        // interleaved the same way in its own run, in this round's order.
        for (const anchor of [anchors.get(KERNEL)]) {
          if (anchor === undefined) continue;
          const combos = Object.keys(anchor.targets) as Array<Exclude<Combo, 'control'>>;
          if (r % 2 === 1) combos.reverse();
          const kLoad = loadavg()[0]!;
          const kRtts = await fping(anchor.ns, combos.map((c) => anchor.targets[c]!));
          combos.forEach((c, i) => samples.push({ variant: anchor.name, kernelOf: variant, repeat: r, ...FAMILIES[c], load: kLoad, pingRtts: kRtts[i], ...rttStats(kRtts[i]!) }));
          process.stderr.write(`${variant} round ${r + 1}/${REPEATS} ${anchor.name} anchor: ${combos.map((c, i) => `${c} p50 ${fmt(rttStats(kRtts[i]!).pingP50Ms, 3)} ms`).join('; ')}\n`);
        }
        for (const t of order) {
          const s = round.get(t)!;
          const before = sleeve ? await Promise.all([frameCounts(h1!), frameCounts(t.host)]) : undefined;
          s.tcpMbps = await iperf(bed, c1, t.c, t.addr);
          let diag = '';
          if (before) {
            // Sender h1 (TAP reads, egress cache), receiver t.host (GRO, ingress merges).
            const [tx, rx] = [delta(await frameCounts(h1!), before[0]), delta(await frameCounts(t.host), before[1])];
            s.tcpJsFrames = tx.js + rx.js;
            s.tcpCachedFrames = tx.cached + rx.cached;
            s.segPerRead = tx.superRead > 0 ? tx.segRead / tx.superRead : undefined;
            s.segPerWrite = rx.superWritten > 0 ? rx.segMerged / rx.superWritten : undefined;
            diag = `, TCP JS/cached frames ${s.tcpJsFrames}/${s.tcpCachedFrames} (sender ${tx.js}/${tx.cached}, receiver ${rx.js}/${rx.cached}); sender TAP: ${tx.superRead} super-frames → ${tx.segRead} segments of ${tx.readFrames} frames read, ${tx.egressGso} datagrams in GSO runs; sender TAP wake-ups to JS: group ${tx.missGroup}, small in bulk ${tx.missSmall}, no flow ${tx.missFlow}, too long ${tx.missLong}; receiver: ${rx.recvGro} of ${rx.recvDg} datagrams from GRO, ${rx.segMerged} segments in ${rx.superWritten} TAP super-frames`;
          }
          process.stderr.write(`${variant} round ${r + 1}/${REPEATS} ${t.control ? 'control ' : ''}${COMBO_TEXT[comboOf(s)]}: ${fmt(s.tcpMbps)} Mbit/s, ping avg ${fmt(s.pingAvgMs, 3)} p50 ${fmt(s.pingP50Ms, 3)} ms, flood ping avg ${fmt(s.busyAvgMs, 3)} ms${s.jsFrames !== undefined ? `, ping JS/cached frames ${s.jsFrames}/${s.cachedFrames}` : ''}${diag} (load ${s.load.toFixed(1)})\n`);
        }
      }
    }
  } finally {
    await bed.destroy();
  }
  report(samples);
}

const sp = (x: Spread, d: number): string => (x.median === undefined ? 'n/a' : x.n > 1 ? `${x.median.toFixed(d)} (${x.min!.toFixed(d)}–${x.max!.toFixed(d)})` : x.median.toFixed(d));
const verdict = (met: boolean | undefined): string => (met === undefined ? 'n/a' : met ? 'met' : 'NOT met');

function report(samples: Sample[]): void {
  const lines: string[] = [];
  const loads = samples.map((s) => s.load);
  lines.push(`# tsweave IPv6 bench (${new Date().toISOString()}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} at the end, ${loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}` : 'n/a'} during samples; ${REPEATS} interleaved rounds; per round ${PING_COUNT} echoes per target by fping, all targets within each ${PING_PERIOD_MS} ms, in ${PING_BATCHES} runs of shuffled order, and ${DURATION} s TCP-1 per combination)`);
  lines.push('');
  lines.push('Median over rounds (min–max):');
  lines.push('');
  lines.push('| path | overlay, underlay | TCP-1 Mbit/s | ping avg ms | ping p50 ms | ping p99 ms | max loss % | JS frames per 1,000 cached: check ping / TCP | TCP segments per TAP super-frame: read / written |');
  lines.push('|---|---|---|---|---|---|---|---|---|');
  for (const c of summarize(samples)) {
    const what = ANCHORS.includes(c.variant) ? `${ANCHOR_TEXT[c.variant]}: ${c.variant === KERNEL ? `IPv${c.combo === 'v4/v4' ? 4 : 6}` : COMBO_TEXT[c.combo].replace(' (reference)', '')}` : COMBO_TEXT[c.combo];
    const pm = (x: number | undefined): string => (x === undefined ? '—' : x.toFixed(1));
    const seg = c.segPerRead.n || c.segPerWrite.n ? `${sp(c.segPerRead, 1)} / ${sp(c.segPerWrite, 1)}` : '—';
    lines.push(`| ${c.variant} | ${what} | ${sp(c.tcp, 0)} | ${sp(c.pingAvg, 3)} | ${sp(c.pingP50, 3)} | ${sp(c.pingP99, 3)} | ${fmt(c.maxLoss, 1)} | ${pm(c.jsPerMille)} / ${pm(c.tcpJsPerMille)} | ${seg} |`);
  }
  lines.push('');
  lines.push(`Ratios to the all-IPv4 figures of the same round (the mean of the reference and the control, which bracket the round), median over rounds (min–max); goal: TCP ≥ ${TCP_GOAL}, ping ≤ ${PING_GOAL}. Ping is paired per ping: per round the median of the k-th echo's time over the IPv4 base's k-th (same fping cycle); Δ is the median per-ping difference; the ratio of the two averages of the same run is shown for reference. The busy ping is a flood ping (ping -f, ${BUSY_PINGS} echoes) of each combination alone: the routers never go idle, so its ratio is the data path's own IPv6 cost without the wake-ups of idle vCPUs that a sparse ping pays on each hop. The control row is the second all-IPv4 measurement over the first, computed the same way: the noise band of this run.`);
  lines.push('');
  lines.push('| path | compared with IPv4 overlay on IPv4 underlay | TCP-1 ratio | goal | ping ratio, paired per ping | goal | ping Δ µs, paired | ping avg ratio | busy (flood) ping avg ratio | paired ping ratio without the anchor\'s own IPv6 cost | goal | IPv6 extra beyond the anchor\'s, µs | anchor |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const rows = ratios(samples);
  for (const r of rows) {
    lines.push(`| ${r.variant} | ${COMBO_TEXT[r.combo]} | ${sp(r.tcp, 3)} | ${r.combo === 'control' ? '(noise)' : verdict(r.tcpMet)} | ${sp(r.ping, 3)} | ${r.combo === 'control' ? '(noise)' : verdict(r.pingMet)} | ${sp(r.pingDiffUs, 1)} | ${sp(r.pingAvg, 3)} | ${sp(r.busy, 3)} | ${r.pingNet ? sp(r.pingNet, 3) : '—'} | ${r.pingNet ? verdict(r.pingNetMet) : '—'} | ${r.extraUs ? sp(r.extraUs, 1) : '—'} | ${r.anchor ?? '—'} |`);
  }
  const k = summarize(samples.filter((x) => x.variant === KERNEL));
  const k4 = k.find((c) => c.combo === 'v4/v4')?.pingAvg.median;
  const k6 = k.find((c) => c.combo === 'v4ul/v6')?.pingAvg.median;
  const kc = spread([...kernelCosts(samples).values()].map((ms) => 1000 * ms));
  if (k4 !== undefined && k6 !== undefined) {
    lines.push('');
    lines.push(`Kernel anchor (two plain namespaces on a bridge, no tsweave, IPv4 and IPv6 interleaved by fping, shuffled runs as above): IPv6 ${k6.toFixed(3)} ms vs IPv4 ${k4.toFixed(3)} ms average (${(k6 / k4).toFixed(2)}×); paired per ping IPv6 costs ${sp(kc, 1)} µs more (median over rounds, min–max) — the two endpoint stacks' own IPv6 cost, which every overlay IPv6 ping pays too.`);
  }
  const ar = anchorRatios(samples).filter((a) => a.anchor !== KERNEL);
  if (ar.length) {
    lines.push('');
    lines.push('The anchors built like a data path (kernel VXLAN like fastdp, tinc like the sleeve), measured in the same rounds: their own IPv6 combinations against their all-IPv4 one, paired per ping (median over rounds, min–max). The "without the anchor\'s own IPv6 cost" columns above take these differences out, round by round.');
    lines.push('');
    lines.push('| anchor | combination | ping ratio, paired per ping | ping Δ µs, paired |');
    lines.push('|---|---|---|---|');
    for (const a of ar) lines.push(`| ${a.anchor} | ${COMBO_TEXT[a.combo]} | ${sp(a.ping, 3)} | ${sp(a.pingDiffUs, 1)} |`);
  }
  const goalRows = rows.filter((r) => r.combo !== 'control');
  const all = goalRows.flatMap((r) => [r.tcpMet, r.pingMet]);
  const net = goalRows.flatMap((r) => [r.tcpMet, r.pingNet ? r.pingNetMet : r.pingMet]);
  const says = (xs: Array<boolean | undefined>): string => (xs.length && xs.every((m) => m === true) ? 'met on every check' : `NOT met on ${xs.filter((m) => m !== true).length} of ${xs.length} checks`);
  lines.push('');
  lines.push(`Goal "within 5 % of IPv4": ${says(all)}; with the anchors' own IPv6 ping cost taken out (the anchor built like the data path, else the plain one): ${says(net)}.`);
  const text = lines.join('\n');
  process.stdout.write(text + '\n');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(path.join(RESULTS_DIR, `ipv6-${stamp}.json`), JSON.stringify({ duration: DURATION, pings: PING_COUNT, pingPeriodMs: PING_PERIOD_MS, repeats: REPEATS, samples }));
  writeFileSync(path.join(RESULTS_DIR, `ipv6-${stamp}.md`), text + '\n');
}

main().catch((err: Error) => {
  process.stderr.write(`bench:ipv6: ${err.message}\n`);
  process.exit(1);
});
