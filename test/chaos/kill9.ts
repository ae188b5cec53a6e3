/**
 * Kill -9 at any point: bursts of concurrent `weave attach` (IPAM allocations) on one
 * testbed host while the router is killed with SIGKILL at a seeded random moment and
 * relaunched at once with the same state dir. Afterwards it proves, from the kernel and
 * from the persisted allocator state:
 *  - every address the CLI reported as allocated is still owned (ipam.json) by its
 *    container and still configured on that container's ethwe;
 *  - no address is held twice in the allocator, nor configured in two containers;
 *  - every address configured in a container is owned by that container (an address
 *    in a container but free in IPAM would be handed out twice later);
 *  - a fresh allocation succeeds.
 * Used by test/e2e/reliability-kill.test.ts (a few kills) and `npm run chaos -- --kills N`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { must, sh, sleep, until, type Host, type Testbed } from '../e2e/lib/testbed.js';
import { mulberry32 } from '../lib/prng.js';

export interface KillBurstOptions {
  kills: number;
  seed: number;
  /** Concurrent attaches per burst (default 3). */
  workers?: number;
  /** Upper bound of the random delay before the kill, ms (default: 1.5x a calibration burst). */
  maxDelayMs?: number;
  /** Namespace name tag, unique per call on one testbed (default "k"). */
  tag?: string;
  /** One line per step. */
  log: (line: string) => void;
  /** Time bound of the kills, ms (default 10 min): past it no new kill starts, and the checks run on the kills made (`kills` in the result says how many). */
  timeoutMs?: number;
}

export interface KillBurstResult {
  kills: number;
  reported: number;
  failedAttaches: number;
  containers: number;
  /** Where the kills landed: before any allocation of their burst finished, inside the burst, after it. */
  landed: { before: number; inside: number; after: number };
  violations: string[];
}

const netnsId = (ns: string): string => `netns:/var/run/netns/${ns}`;

/** IPv4 CIDRs on ethwe inside namespace `ns` (empty if it has none). */
async function ethweAddrs(ns: string): Promise<string[]> {
  const r = await sh('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'ethwe'], { timeoutMs: 10_000 });
  return [...r.stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+\/\d+)/g)].map((m) => m[1]);
}

/**
 * Where a kill landed in its burst, and the next bound of the kill delay (pure). `oks`
 * of `workers` attaches succeeded, the last of them `lastOkMs` after the burst started;
 * the kill came `delayMs` after the start. "before": no attach finished (the bound grows
 * 1.5x, at most 60 s); "after": all finished before the kill (the bound becomes 1.5x the
 * burst, at least `calibrated`); "inside": some were cut off or finished after the kill
 * (the bound is kept). All times in ms.
 */
export function adaptKillBound(bound: number, calibrated: number, b: { oks: number; workers: number; lastOkMs: number; delayMs: number }): { where: 'before' | 'inside' | 'after'; bound: number } {
  if (b.oks === 0) return { where: 'before', bound: Math.min(60_000, Math.max(bound, Math.ceil(bound * 1.5))) };
  if (b.oks === b.workers && b.lastOkMs <= b.delayMs) return { where: 'after', bound: Math.max(calibrated, Math.ceil(1.5 * b.lastOkMs)) };
  return { where: 'inside', bound };
}

/**
 * Run the kill schedule on `host` (launched by the caller, IPAM ready; `launchArgs`
 * relaunch it). Never throws for a violation: they are returned, for the caller to
 * print with the seed. Throws if the router cannot be relaunched.
 */
export async function killBurst(bed: Testbed, host: Host, launchArgs: string[], o: KillBurstOptions): Promise<KillBurstResult> {
  const rnd = mulberry32(o.seed);
  const workers = o.workers ?? 3;
  const deadline = Date.now() + (o.timeoutMs ?? 600_000);
  const reported = new Map<string, string>(); // ns -> cidr reported by weave attach
  const made: string[] = [];
  let failed = 0;
  let n = 0;
  // Calibrate: time one burst without a kill, so kills land before, inside and after
  // allocations (delays drawn up to 1.5x that time, unless maxDelayMs is given).
  const t0 = Date.now();
  await Promise.all(Array.from({ length: workers }, async () => {
    const ns = `${bed.prefix}${o.tag ?? 'k'}${++n}`;
    await must('ip', ['netns', 'add', ns]);
    bed.namespaces.push(ns);
    made.push(ns);
    const r = await host.weave(['attach', `netns:/var/run/netns/${ns}`], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`calibration attach failed: ${r.stderr.trim()}`);
    reported.set(ns, r.stdout.trim());
  }));
  // The bound adapts (unless given): a burst right after a relaunch can take much longer
  // than the calibration burst (a cold router, a loaded machine), and with a fixed bound
  // every kill would land before any allocation finished. A burst wholly cut off widens
  // it 1.5x (up to 60 s); a burst that finished before the kill sets it to 1.5x that burst.
  const calibrated = Math.ceil(1.5 * (Date.now() - t0));
  let maxDelay = o.maxDelayMs ?? calibrated;
  const landed = { before: 0, inside: 0, after: 0 };
  let killed = o.kills;
  o.log(`calibration: a burst of ${workers} attaches took ${Date.now() - t0} ms; kill delays drawn from 0..${maxDelay} ms${o.maxDelayMs ? '' : ', adapting'}`);
  for (let k = 1; k <= o.kills; k++) {
    if (Date.now() > deadline) {
      // Out of time: stop killing, but still check what the kills so far left behind.
      o.log(`kill schedule seed ${o.seed}: over its time bound after ${k - 1} of ${o.kills} kills; checking those`);
      killed = k - 1;
      break;
    }
    const delay = Math.floor(rnd() * maxDelay);
    const names: string[] = [];
    for (let w = 0; w < workers; w++) {
      const ns = `${bed.prefix}${o.tag ?? 'k'}${++n}`;
      await must('ip', ['netns', 'add', ns]);
      bed.namespaces.push(ns);
      made.push(ns);
      names.push(ns);
    }
    const tb = Date.now();
    let lastOk = 0;
    const attaches = names.map(async (ns) => {
      const r = await host.weave(['attach', `netns:/var/run/netns/${ns}`], { timeoutMs: 60_000 });
      if (r.code === 0) {
        reported.set(ns, r.stdout.trim());
        lastOk = Math.max(lastOk, Date.now() - tb);
      } else failed++;
      return r.code === 0 ? 'ok' : 'refused';
    });
    await sleep(delay);
    const pid = host.pid();
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* already gone */ }
    }
    const outcome = await Promise.all(attaches);
    const a = adaptKillBound(maxDelay, calibrated, { oks: outcome.filter((x) => x === 'ok').length, workers, lastOkMs: lastOk, delayMs: delay });
    const where = a.where;
    landed[where]++;
    if (o.maxDelayMs === undefined) maxDelay = a.bound;
    // Relaunch at once: liveness is decided by the lock, not by the dead pid.
    // Bounded generously: on a shared 2-vCPU machine at load 30+ a launch alone can take a minute.
    const r = await host.weave(launchArgs, { timeoutMs: 180_000 });
    if (r.code !== 0) throw new Error(`kill ${k} (seed ${o.seed}): relaunch failed: ${r.stderr.trim() || 'no answer: the CLI was killed after 180 s'} (log tail: ${host.logTail(5).replace(/\n/g, ' | ')})`);
    // The next burst starts against a ready router (not one still restoring its state).
    await until('IPAM ready after a relaunch', async () => {
      try {
        return /ready/i.test((await host.report()).IPAM?.Status ?? '');
      } catch {
        return false; // not answering yet
      }
    }, 60_000, 250);
    o.log(`kill ${k}/${o.kills}: SIGKILL pid ${pid} after ${delay} ms (${where} the burst's allocations); attaches ${outcome.join(' ')}; relaunched`);
  }
  o.log(`kills landed before any allocation of their burst finished: ${landed.before}, inside a burst: ${landed.inside}, after it: ${landed.after}`);
  await until('IPAM ready after the last relaunch', async () => /ready/i.test((await host.report()).IPAM?.Status ?? ''), 60_000, 500);
  const violations = await checkAddresses(host, made, reported);
  // A fresh allocation succeeds.
  const fresh = `${bed.prefix}${o.tag ?? 'k'}f`;
  await must('ip', ['netns', 'add', fresh]);
  bed.namespaces.push(fresh);
  const fr = await host.weave(['attach', `netns:/var/run/netns/${fresh}`], { timeoutMs: 60_000 });
  if (fr.code !== 0) violations.push(`a fresh allocation after the kills failed: ${fr.stderr.trim()}`);
  else {
    made.push(fresh);
    reported.set(fresh, fr.stdout.trim());
    violations.push(...await checkAddresses(host, made, reported));
  }
  return { kills: killed, reported: reported.size, failedAttaches: failed, containers: made.length, landed, violations: [...new Set(violations)] };
}

async function checkAddresses(host: Host, namespaces: string[], reported: Map<string, string>): Promise<string[]> {
  const v: string[] = [];
  const st = JSON.parse(readFileSync(path.join(host.stateDir, 'ipam.json'), 'utf8')) as { allocations: Array<{ owner: string; addr: string }> };
  const ownerOf = new Map<string, string>();
  for (const a of st.allocations) {
    const ip = a.addr.split('/')[0];
    if (ownerOf.has(ip)) v.push(`allocator holds ${ip} twice: ${ownerOf.get(ip)} and ${a.owner}`);
    ownerOf.set(ip, a.owner);
  }
  const configuredIn = new Map<string, string>();
  for (const ns of namespaces) {
    for (const cidr of await ethweAddrs(ns)) {
      const ip = cidr.split('/')[0];
      if (configuredIn.has(ip)) v.push(`${ip} is configured in two containers: ${configuredIn.get(ip)} and ${ns}`);
      configuredIn.set(ip, ns);
      if (ownerOf.get(ip) !== netnsId(ns)) v.push(`${ip} is configured in ${ns} but IPAM has it ${ownerOf.has(ip) ? `owned by ${ownerOf.get(ip)}` : 'free'}`);
    }
  }
  for (const [ns, cidr] of reported) {
    const ip = cidr.split('/')[0];
    if (ownerOf.get(ip) !== netnsId(ns)) v.push(`reported ${cidr} for ${ns}, but IPAM has it ${ownerOf.has(ip) ? `owned by ${ownerOf.get(ip)}` : 'free'}`);
    if (configuredIn.get(ip) !== ns) v.push(`reported ${cidr} for ${ns}, but it is not configured there`);
  }
  return v;
}
