/**
 * The multi-host fault-schedule runner (issue #16): N routers on the e2e testbed (one
 * network namespace per host, test/e2e/lib/testbed.ts) go through the seeded schedule
 * of test/chaos/schedule.ts — attaches (no address, `net:`, claims), detaches,
 * partitions of the underlay (iptables DROP of TCP 6783 and UDP 6783/6784 inside the
 * host namespaces, one-way or two-way), heal, kill -9 + relaunch on the same state
 * dir, `weave stop`/`launch`, `weave reset` (the space is handed over) and router clock
 * jumps (WEAVER_TEST_CLOCK_FILE). Then everything is healed and stopped routers are
 * launched, the runner waits (bounded) for convergence and checks the invariants:
 *  - no router died unless the schedule killed it, none logged an internal error;
 *  - every router is up and has an established connection to every other one; each
 *    knows exactly the live peers (no peer that reset or left is still in its topology);
 *  - every router's IPAM is ready and all agree on the ring; the ring covers the range
 *    exactly once and names only live peers; nothing is unreachable;
 *  - no address is held twice across all hosts' allocators (ipam.json), every held
 *    address lies in its holder's own ring space, no address is in two endpoints
 *    (`weave ps`) nor configured in two container namespaces (read from the kernel);
 *    every address configured in a container is held by that container on its host;
 *  - a fresh allocation succeeds on every host;
 *  - every live container pings every other container of its isolation group;
 *  - each router's RSS and open fds are under a bound.
 * Violations are returned (never thrown) with the diagnostics to print.
 */
import http from 'node:http';
import path from 'node:path';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { must, sh, sleep, type Host, type Testbed } from '../e2e/lib/testbed.js';
import { makeSchedule, describeStep, type Step } from './schedule.js';

export interface MeshChaosOptions {
  seed: number;
  hosts: number;
  steps: number;
  /** One line per step and per phase. */
  log: (line: string) => void;
  /** Bound of the convergence wait after the schedule, ms (default 180 s). */
  convergeMs?: number;
  /** Per-router RSS bound, bytes (default 400 MiB) and open-fd bound (default 512). */
  maxRss?: number;
  maxFds?: number;
  /** Pass --no-fastdp to every router (default: fastdp on, so UDP 6784 matters). */
  noFastdp?: boolean;
  /** An explicit step list instead of the seeded one (regression tests); `steps` is then ignored. */
  schedule?: Step[];
}

export interface MeshChaosResult {
  steps: Step[];
  violations: string[];
  /** Each router's status and log tail, filled when there are violations. */
  diagnostics: string;
  containers: number;
  attachesOk: number;
  attachesRefused: number;
  rss: number[];
  fds: number[];
  /**
   * Where the schedule's wall time went, ms: `setup` (testbed up or reset), `launch`
   * (first launch of every router + prime), `steps` (the schedule), `converge` (heal,
   * final launches, the convergence wait), `check` (the invariants).
   */
  phases: Record<'setup' | 'launch' | 'steps' | 'converge' | 'check', number>;
  /** Wall time spent per step kind over the schedule: count and total ms. */
  stepTime: Partial<Record<Step['op'], { n: number; ms: number }>>;
}

interface Ctr { name: string; host: number; ns: string; reported: string[]; live: boolean }

/** One HTTP call to a host's router over its unix socket (never throws: status 0 on error). */
export function api(h: Host, method: string, urlPath: string, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: path.join(h.stateDir, 'weaver.sock'), method, path: urlPath, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 8 << 20) body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
    req.end();
  });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function report(h: Host): Promise<any | undefined> {
  const r = await api(h, 'GET', '/report');
  if (r.status !== 200) return undefined;
  try {
    return JSON.parse(r.body);
  } catch {
    return undefined;
  }
}

/** Whether a process is alive and not a zombie. */
function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/.test(st);
  } catch {
    return false;
  }
}

/** VmRSS in bytes and the number of open fds of a process (0, 0 if it is gone). */
export function procStats(pid: number | undefined): { rss: number; fds: number } {
  if (!pid) return { rss: 0, fds: 0 };
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { rss: m ? Number(m[1]) * 1024 : 0, fds: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return { rss: 0, fds: 0 };
  }
}

const ipToInt = (s: string): number => s.split('.').reduce((a, o) => a * 256 + Number(o), 0);
const netOf = (cidr: string): string => {
  const [a, l] = cidr.split('/');
  const len = Number(l);
  const n = len === 0 ? 0 : Math.floor(ipToInt(a) / 2 ** (32 - len)) * 2 ** (32 - len);
  return `${[24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.')}/${len}`;
};

/** IPv4 CIDRs on ethwe inside namespace `ns` (empty if it has none or the namespace is gone). */
async function ethweAddrs(ns: string): Promise<string[]> {
  const r = await sh('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'ethwe'], { timeoutMs: 10_000 });
  return [...r.stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+\/\d+)/g)].map((m) => m[1]);
}

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]);
  }));
}

/**
 * Run one schedule on a fresh set of `o.hosts` hosts of `bed` (created here). The
 * caller destroys the testbed. Throws only when the testbed cannot be set up.
 */
export async function runMeshSchedule(bed: Testbed, o: MeshChaosOptions): Promise<MeshChaosResult> {
  const steps = o.schedule ?? makeSchedule(o.seed, o.hosts, o.steps);
  const phases = { setup: 0, launch: 0, steps: 0, converge: 0, check: 0 };
  const stepTime: MeshChaosResult['stepTime'] = {};
  let tPhase = Date.now();
  const endPhase = (p: keyof typeof phases): void => {
    const now = Date.now();
    phases[p] += now - tPhase;
    tPhase = now;
  };
  // The underlay first, then the hosts in parallel (each host's set-up is ~15 forks of ip/sysctl).
  await bed.up(0);
  const hosts = await Promise.all(Array.from({ length: o.hosts }, (_, i) => bed.addHost(i + 1)));
  const violations: string[] = [];
  const ctrs = new Map<string, Ctr>();
  const expectUp = new Set<number>();
  const pids = new Map<number, number>();
  let attachesOk = 0;
  let attachesRefused = 0;
  const H = (i: number): Host => hosts[i - 1];
  const clockFile = (i: number): string => path.join(bed.dir, `h${i}.clock`);
  const env = (i: number): NodeJS.ProcessEnv => ({ WEAVER_TEST_CLOCK_FILE: clockFile(i) });
  const launchArgs = (i: number): string[] => [
    'launch', '--nickname', `h${i}`, '--no-proxy', '--no-plugin', ...(o.noFastdp ? ['--no-fastdp'] : []),
    ...hosts.filter((h) => h.index !== i).map((h) => h.ip),
  ];

  // Every host: a chain for the partitions, jumped to from OUTPUT (a packet from A to B
  // always leaves A's OUTPUT, so a DROP there is one direction of the underlay).
  await Promise.all(hosts.map(async (h) => {
    await must('ip', ['netns', 'exec', h.ns, 'iptables', '-w', '-N', 'TSWCHAOS']);
    await must('ip', ['netns', 'exec', h.ns, 'iptables', '-w', '-I', 'OUTPUT', '-j', 'TSWCHAOS']);
    writeFileSync(clockFile(h.index), '0\n');
  }));
  endPhase('setup');

  const launch = async (i: number, what: string): Promise<boolean> => {
    const r = await H(i).weave(launchArgs(i), { env: env(i), timeoutMs: 90_000 });
    if (r.code !== 0) {
      violations.push(`${what}: weave launch h${i} failed: ${r.stderr.trim().split('\n')[0]}`);
      return false;
    }
    expectUp.add(i);
    pids.set(i, H(i).pid() ?? 0);
    return true;
  };
  /** A router that should be up but is not: a crash. Relaunch it so the schedule goes on. */
  const checkAlive = async (when: string): Promise<void> => {
    for (const i of [...expectUp]) {
      if (alive(pids.get(i))) continue;
      violations.push(`router h${i} (pid ${pids.get(i)}) died unexpectedly ${when}; log tail:\n${H(i).logTail(15)}`);
      await launch(i, `relaunch after the crash of h${i}`);
    }
  };

  // Every container's namespace (test plumbing, not the system under test) is made up front,
  // while the routers launch, so an attach step times only `weave attach` itself.
  const nsReady = new Map<string, Promise<void>>();
  const nsNames = [...steps.flatMap((s) => (s.op === 'attach' ? [s.container] : [])), ...hosts.map((h) => `f${h.index}`)].map((n) => `${bed.prefix}${n}`);
  const nsAll = pool(nsNames, 4, async (ns) => {
    const p = makeNs(ns);
    nsReady.set(ns, p);
    await p;
  });
  o.log(`launching ${o.hosts} routers (and making ${nsNames.length} container namespaces)`);
  await Promise.all([...hosts.map((h) => launch(h.index, 'initial launch')), nsAll]);
  if (violations.length) return done();
  const pr = await H(1).weave(['prime'], { timeoutMs: 120_000 });
  if (pr.code !== 0) violations.push(`initial weave prime failed: ${pr.stderr.trim()}`);
  endPhase('launch');

  let k = 0;
  for (const s of steps) {
    k++;
    const t0 = Date.now();
    const outcome = await runStep(s);
    const ms = Date.now() - t0;
    const st = (stepTime[s.op] ??= { n: 0, ms: 0 });
    st.n++;
    st.ms += ms;
    o.log(`step ${String(k).padStart(3)}/${steps.length}: ${describeStep(s)} -> ${outcome} (${(ms / 1000).toFixed(1)} s)`);
    await checkAlive(`after step ${k}`);
  }
  endPhase('steps');

  // Heal everything, bring every stopped router back, wait for convergence, check.
  o.log('after the schedule: heal all, launch stopped routers, clocks back to 0');
  await runStep({ op: 'heal' });
  for (const h of hosts) writeFileSync(clockFile(h.index), '0\n');
  await Promise.all(hosts.filter((h) => !expectUp.has(h.index)).map((h) => launch(h.index, 'final launch')));
  await checkAlive('before the convergence wait');
  await converge();
  endPhase('converge');
  await checkInvariants();
  await checkAlive('at the end');
  endPhase('check');
  return done();

  async function done(): Promise<MeshChaosResult> {
    const stats = hosts.map((h) => procStats(pids.get(h.index)));
    let diagnostics = '';
    if (violations.length) {
      const parts: string[] = [];
      for (const h of hosts) {
        const r = await report(h);
        parts.push(`--- h${h.index} (pid ${pids.get(h.index)}, ${alive(pids.get(h.index)) ? 'alive' : 'not running'}) ---`);
        if (r) {
          parts.push(`peers: ${(r.Router.Peers as Array<{ NickName: string; Name: string }>).map((p) => `${p.Name}(${p.NickName})`).join(' ')}`);
          parts.push(`connections: ${(r.Router.Connections as Array<{ Address: string; State: string; NickName?: string; Info: string }>).map((c) => `${c.NickName ?? c.Address}:${c.State}`).join(' ')}`);
          parts.push(`ipam: ${r.IPAM?.Status}; ring: ${JSON.stringify((r.IPAM?.Entries ?? []).map((e: { Token: string; Size: number; Nickname: string; Version: number }) => `${e.Token}+${e.Size}@${e.Nickname}v${e.Version}`))}`);
          parts.push(`endpoints: ${JSON.stringify((r.Endpoints ?? []).map((e: { ID: string; CIDRs: string[] }) => `${e.ID.replace(/^netns:\/var\/run\/netns\//, '')}=${e.CIDRs.join(',')}`))}`);
        } else parts.push('(no report)');
        parts.push(`log tail:\n${h.logTail(25)}`);
      }
      diagnostics = parts.join('\n');
    }
    return { steps, violations, diagnostics, containers: ctrs.size, attachesOk, attachesRefused, rss: stats.map((s) => s.rss), fds: stats.map((s) => s.fds), phases, stepTime };
  }

  async function attach(c: Ctr, specs: string[], timeoutMs: number): Promise<string> {
    await (nsReady.get(c.ns) ?? makeNs(c.ns));
    ctrs.set(c.name, c);
    const r = await H(c.host).weave(['attach', ...specs, `netns:/var/run/netns/${c.ns}`], { timeoutMs });
    if (r.code === 0) {
      attachesOk++;
      c.reported = r.stdout.trim().split(/\s+/).filter(Boolean);
      return `ok ${c.reported.join(' ')}`;
    }
    attachesRefused++;
    return `refused: ${(r.stderr.trim().split('\n')[0] || `timed out after ${timeoutMs / 1000} s`).replace(/^weave: /, '')}`;
  }

  async function removeContainer(c: Ctr): Promise<string> {
    const r = await H(c.host).weave(['detach', `netns:/var/run/netns/${c.ns}`], { timeoutMs: 30_000 });
    await sh('ip', ['netns', 'del', c.ns], { timeoutMs: 10_000 });
    c.live = false;
    return r.code === 0 ? `detached ${r.stdout.trim()}` : `detach refused (${r.stderr.trim().split('\n')[0].replace(/^weave: /, '')}), namespace deleted`;
  }

  async function runStep(s: Step): Promise<string> {
    switch (s.op) {
      case 'attach': {
        const c: Ctr = { name: s.container, host: s.host, ns: `${bed.prefix}${s.container}`, reported: [], live: true };
        const spec = s.addr.kind === 'default' ? [] : s.addr.kind === 'net' ? [`net:${s.addr.cidr}`] : [`ip:${s.addr.cidr}`];
        // Bounded: an allocation that waits for a partitioned peer goes on in the router.
        return attach(c, spec, 25_000);
      }
      case 'detach': {
        const c = ctrs.get(s.container);
        if (!c?.live) return 'no-op (not attached)';
        return removeContainer(c);
      }
      case 'partition': {
        const rules: Array<[Host, Host]> = [];
        for (const a of s.from) for (const b of s.to) {
          rules.push([H(a), H(b)]);
          if (s.twoWay) rules.push([H(b), H(a)]);
        }
        for (const [a, b] of rules) {
          await must('ip', ['netns', 'exec', a.ns, 'iptables', '-w', '-A', 'TSWCHAOS', '-d', b.ip, '-p', 'tcp', '-m', 'multiport', '--ports', '6783', '-j', 'DROP']);
          await must('ip', ['netns', 'exec', a.ns, 'iptables', '-w', '-A', 'TSWCHAOS', '-d', b.ip, '-p', 'udp', '-m', 'multiport', '--ports', '6783,6784', '-j', 'DROP']);
        }
        return `${rules.length} directions dropped`;
      }
      case 'heal':
        for (const h of hosts) await must('ip', ['netns', 'exec', h.ns, 'iptables', '-w', '-F', 'TSWCHAOS']);
        return 'ok';
      case 'kill': {
        const pid = H(s.host).pid();
        if (!alive(pid)) return 'no-op (not running)';
        process.kill(pid!, 'SIGKILL');
        expectUp.delete(s.host);
        return (await launch(s.host, `relaunch after kill -9 of h${s.host}`)) ? `killed pid ${pid}, relaunched as ${pids.get(s.host)}` : 'killed, relaunch FAILED';
      }
      case 'stop': {
        expectUp.delete(s.host);
        const r = await H(s.host).weave(['stop'], { timeoutMs: 30_000 });
        if (r.code !== 0) violations.push(`weave stop h${s.host} failed: ${r.stderr.trim().split('\n')[0]}`);
        return r.code === 0 ? 'stopped' : 'stop FAILED';
      }
      case 'launch':
        if (expectUp.has(s.host)) return 'no-op (running)';
        return (await launch(s.host, `launch of h${s.host}`)) ? `launched pid ${pids.get(s.host)}` : 'launch FAILED';
      case 'reset': {
        const gone: string[] = [];
        for (const n of s.containers) {
          const c = ctrs.get(n);
          if (c?.live) {
            await removeContainer(c);
            gone.push(n);
          }
        }
        expectUp.delete(s.host);
        const r = await H(s.host).weave(['reset'], { timeoutMs: 60_000 });
        // A refusal (no reachable peer to take the space) leaves the router running: correct behaviour.
        if (r.code !== 0) {
          if (alive(H(s.host).pid())) {
            expectUp.add(s.host);
            return `reset refused (${r.stderr.trim().split('\n')[0].replace(/^weave: /, '')}); router kept`;
          }
          violations.push(`weave reset h${s.host} failed and the router is gone: ${r.stderr.trim().split('\n')[0]}`);
        }
        const ok = await launch(s.host, `fresh launch of h${s.host} after reset`);
        return `${gone.length} containers removed, reset ${r.code === 0 ? 'ok' : 'FAILED'}, ${ok ? `relaunched as ${(await report(H(s.host)))?.Router?.Name ?? '?'}` : 'relaunch FAILED'}`;
      }
      case 'clock':
        writeFileSync(clockFile(s.host), `${s.offsetS}\n`);
        return 'ok';
    }
  }

  /** Wait (bounded) for: every router answering, full mesh established, topology = live peers, IPAM ready and the same ring everywhere. */
  async function converge(): Promise<void> {
    const bound = o.convergeMs ?? 180_000;
    const t0 = Date.now();
    let why = '';
    while (Date.now() - t0 < bound) {
      why = await notConverged();
      if (!why) {
        o.log(`converged in ${((Date.now() - t0) / 1000).toFixed(1)} s (full mesh established, topology = live peers, IPAM ready, one ring)`);
        return;
      }
      await sleep(500);
    }
    violations.push(`no convergence within ${bound / 1000} s: ${why}`);
  }

  async function notConverged(): Promise<string> {
    const reps = await Promise.all(hosts.map((h) => report(h)));
    const names = new Set<string>();
    for (let i = 0; i < reps.length; i++) {
      if (!reps[i]) return `h${i + 1} does not answer /report`;
      names.add(reps[i].Router.Name);
    }
    let ring = '';
    for (let i = 0; i < reps.length; i++) {
      const r = reps[i];
      const est = (r.Router.Connections as Array<{ State: string; Name?: string }>).filter((c) => c.State === 'established' && c.Name && names.has(c.Name));
      const peers = new Set(est.map((c) => c.Name));
      if (peers.size !== hosts.length - 1) return `h${i + 1} has ${peers.size} of ${hosts.length - 1} connections established`;
      const known = (r.Router.Peers as Array<{ Name: string; NickName: string }>).map((p) => p.Name);
      const extra = known.filter((n) => !names.has(n));
      if (extra.length || known.length !== names.size) return `h${i + 1}'s topology has ${known.length} peers (${extra.length ? `stale: ${extra.join(',')}` : 'missing some'})`;
      if (r.IPAM?.Status !== 'ready') return `h${i + 1} IPAM is "${r.IPAM?.Status}"`;
      const rg = JSON.stringify((r.IPAM.Entries as Array<{ Token: string; Size: number; Peer: string; Version: number }>).map((e) => [e.Token, e.Size, e.Peer, e.Version]));
      if (i === 0) ring = rg;
      else if (rg !== ring) return `h${i + 1}'s ring differs from h1's`;
    }
    return '';
  }

  /** A container namespace with lo up and IPv6 off (once per name). */
  async function makeNs(ns: string): Promise<void> {
    await must('ip', ['netns', 'add', ns]);
    bed.namespaces.push(ns);
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
  }

  /** ethwe's IPv4 CIDRs of each container, read from the kernels 8 at a time. */
  async function readAll(cs: Ctr[]): Promise<Map<Ctr, string[]>> {
    const m = new Map<Ctr, string[]>();
    await pool(cs, 8, async (c) => {
      m.set(c, await ethweAddrs(c.ns));
    });
    return m;
  }

  async function checkInvariants(): Promise<void> {
    const t0 = Date.now();
    const reps = await Promise.all(hosts.map((h) => report(h)));
    if (reps.some((r) => !r)) {
      violations.push('a router does not answer /report after convergence');
      return;
    }
    const nameOf = new Map<string, number>(reps.map((r, i) => [r.Router.Name as string, i + 1]));
    // Ring: covers the range exactly once, names only live peers; nothing unreachable.
    const ipam = reps[0].IPAM;
    const [rbase, rlen] = (ipam.Range as string).split('/');
    const start = ipToInt(rbase);
    const size = 2 ** (32 - Number(rlen));
    const spans = (ipam.Entries as Array<{ Token: string; Size: number; Peer: string }>).map((e) => ({ t: ipToInt(e.Token), n: e.Size, peer: e.Peer })).sort((a, b) => a.t - b.t);
    let covered = 0;
    for (let j = 0; j < spans.length; j++) {
      const s = spans[j];
      if (s.t < start || s.t + s.n > start + size) violations.push(`ring span ${s.t}+${s.n} lies outside the range ${ipam.Range}`);
      if (j > 0 && spans[j - 1].t + spans[j - 1].n > s.t) violations.push(`ring spans overlap at token ${rbase}+${s.t - start}`);
      if (!nameOf.has(s.peer)) violations.push(`the ring gives a span to ${s.peer}, which is no live peer`);
      covered += s.n;
    }
    if (covered !== size) violations.push(`the ring covers ${covered} of ${size} addresses`);
    for (let i = 0; i < reps.length; i++) {
      for (const ow of reps[i].IPAM.Owned as Array<{ NickName: string; Reachable: boolean; Addresses: number }>) {
        if (!ow.Reachable && ow.Addresses > 0) violations.push(`h${i + 1} sees ${ow.NickName}'s ${ow.Addresses} addresses as unreachable`);
      }
    }
    const ownerSpan = (ip: number): string | undefined => spans.find((s) => ip >= s.t && ip < s.t + s.n)?.peer;
    // Allocators: no address held twice across hosts; each inside its holder's space.
    const heldBy = new Map<string, string>(); // ip -> "hN:owner"
    for (const h of hosts) {
      let st: { peer: string; allocations: Array<{ owner: string; addr: string }> };
      try {
        st = JSON.parse(readFileSync(path.join(h.stateDir, 'ipam.json'), 'utf8'));
      } catch (err) {
        violations.push(`h${h.index}: cannot read ipam.json: ${(err as Error).message.split('\n')[0]}`);
        continue;
      }
      for (const a of st.allocations) {
        const ip = a.addr.split('/')[0];
        if (heldBy.has(ip)) violations.push(`${ip} is held twice: ${heldBy.get(ip)} and h${h.index}:${a.owner}`);
        heldBy.set(ip, `h${h.index}:${a.owner}`);
        const sp = ownerSpan(ipToInt(ip));
        if (sp !== st.peer) violations.push(`h${h.index} holds ${ip} (for ${a.owner}) in space the ring gives to ${sp ? `h${nameOf.get(sp) ?? '?'}` : 'nobody'}`);
      }
    }
    // Endpoints (weave ps) disjoint across hosts.
    const inPs = new Map<string, string>();
    for (let i = 0; i < reps.length; i++) {
      for (const e of reps[i].Endpoints as Array<{ ID: string; CIDRs: string[] }>) {
        for (const c of e.CIDRs) {
          const ip = c.split('/')[0];
          if (inPs.has(ip)) violations.push(`${ip} is in two endpoints: ${inPs.get(ip)} and h${i + 1}:${e.ID}`);
          inPs.set(ip, `h${i + 1}:${e.ID}`);
        }
      }
    }
    // The kernel: read every container namespace's ethwe (reads in parallel, checks in order).
    const conf = new Map<string, string>();
    const live = [...ctrs.values()].filter((c) => c.live);
    const kernel = await readAll(live);
    for (const c of live) {
      for (const cidr of kernel.get(c)!) {
        const ip = cidr.split('/')[0];
        if (conf.has(ip)) violations.push(`${ip} is configured in two containers: ${conf.get(ip)} and ${c.name}`);
        conf.set(ip, c.name);
        const want = `h${c.host}:netns:/var/run/netns/${c.ns}`;
        if (heldBy.get(ip) !== want) violations.push(`${ip} is configured in ${c.name} (on h${c.host}) but held by ${heldBy.get(ip) ?? 'nobody'}`);
      }
      for (const ip of c.reported) {
        if (!conf.has(ip) || conf.get(ip) !== c.name) violations.push(`weave attach reported ${ip} for ${c.name} (on h${c.host}), but it is not configured there`);
      }
    }
    o.log(`check: ring, allocators, endpoints and ${live.length} container kernels read (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    // A fresh allocation on every host, all at once (each host allocates from its own space).
    const fresh = hosts.map((h): Ctr => ({ name: `f${h.index}`, host: h.index, ns: `${bed.prefix}f${h.index}`, reported: [], live: true }));
    const outs = await Promise.all(fresh.map((c) => attach(c, [], 90_000)));
    fresh.forEach((c, j) => {
      if (!outs[j].startsWith('ok')) violations.push(`a fresh allocation on h${c.host} failed: ${outs[j]}`);
      else {
        const ip = c.reported[0];
        if (conf.has(ip) || heldBy.has(ip)) violations.push(`the fresh allocation on h${c.host} got ${ip}, which is already in use`);
        conf.set(ip, c.name);
      }
    });
    o.log(`check: fresh allocations on ${hosts.length} hosts (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    // Ping: every live container every other of its isolation group (the subnet of its
    // address), read again from the kernels (the fresh containers included).
    const groups = new Map<string, Array<{ c: Ctr; ip: string }>>();
    const live2 = [...ctrs.values()].filter((c) => c.live);
    const kernel2 = await readAll(live2);
    for (const c of live2) {
      for (const cidr of kernel2.get(c)!) {
        const g = netOf(cidr);
        groups.set(g, [...(groups.get(g) ?? []), { c, ip: cidr.split('/')[0] }]);
      }
    }
    const pairs: Array<[Ctr, string, string]> = [];
    for (const [g, ms] of groups) for (const a of ms) for (const b of ms) if (a.c !== b.c) pairs.push([a.c, b.ip, g]);
    let failed = 0;
    await pool(pairs, 12, async ([a, ip, g]) => {
      for (let t = 0; t < 8; t++) {
        const r = await sh('ip', ['netns', 'exec', a.ns, 'ping', '-c', '1', '-W', '1', ip], { timeoutMs: 10_000 });
        if (r.code === 0) return;
      }
      failed++;
      violations.push(`${a.name} (h${a.host}) cannot ping ${ip} (group ${g})`);
    });
    o.log(`pinged ${pairs.length} pairs in ${groups.size} isolation groups: ${pairs.length - failed} ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    // Each router's logs: no internal error; RSS and fds bounded.
    for (const h of hosts) {
      let logText = '';
      try {
        logText = readFileSync(path.join(h.stateDir, 'weaver.log'), 'utf8');
      } catch { /* no log */ }
      const m = /internal error \(please report\)[^\n]*/.exec(logText);
      if (m) violations.push(`h${h.index} logged: ${m[0].slice(0, 300)}`);
      const s = procStats(pids.get(h.index));
      if (s.rss > (o.maxRss ?? 400 << 20)) violations.push(`h${h.index} RSS ${(s.rss / 2 ** 20).toFixed(0)} MiB over the bound`);
      if (s.fds > (o.maxFds ?? 512)) violations.push(`h${h.index} has ${s.fds} open fds, over the bound`);
    }
  }
}
