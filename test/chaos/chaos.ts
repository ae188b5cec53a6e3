/**
 * `npm run chaos -- --kills N [--seed S] [--workers W] [--max-minutes M]`: the long kill -9 schedule
 * (test/chaos/kill9.ts) on a one-host testbed of network namespaces, as root. Prints
 * one line per kill and the seed; exits 1 on any violation (printing them and the
 * router's log tail; the state dir is kept under /tmp when it fails). With --max-minutes
 * no new kill starts after M minutes (default max(10, N) minutes) and the kills made are
 * checked; fewer kills than asked then exit 1.
 *
 * `npm run chaos -- --hosts N --steps S [--seed X] [--runs R] [--keep-going]`: the
 * multi-host fault schedule (test/chaos/schedule.ts, run by test/chaos/mesh.ts) for
 * seeds X, X+1, ... X+R-1, each on a fresh testbed. Prints one line per step; on a
 * violation prints the seed, the step list, the violations and each router's status
 * and log tail, and exits 1 (after the remaining runs with --keep-going).
 */
import { Command } from 'commander';
import { cpSync, existsSync, lstatSync, writeFileSync } from 'node:fs';
import { Testbed, canRunE2E } from '../e2e/lib/testbed.js';
import { killBurst } from './kill9.js';
import { runMeshSchedule } from './mesh.js';
import { describeStep } from './schedule.js';

function int(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`invalid ${name} "${v}": want an integer from ${min} to ${max}`);
    return n;
  };
}

async function main(): Promise<number> {
  const p = new Command('chaos')
    .option('--kills <n>', 'router kills', int('--kills', 1, 1000), 50)
    .option('--seed <s>', 'schedule seed (default: random, printed)', int('--seed', 0, 2 ** 31 - 1))
    .option('--workers <n>', 'concurrent attaches per burst', int('--workers', 1, 16), 3)
    .option('--hosts <n>', 'multi-host fault schedule: number of hosts', int('--hosts', 2, 16))
    .option('--steps <n>', 'multi-host fault schedule: steps per schedule', int('--steps', 1, 10000), 40)
    .option('--runs <n>', 'multi-host fault schedule: schedules to run (seeds S, S+1, ...)', int('--runs', 1, 100000), 1)
    .option('--keep-going', 'multi-host fault schedule: go on after a violating schedule')
    .option('--max-minutes <m>', 'multi-host fault schedule: start no new schedule after this many minutes; kill schedule: start no new kill after it', int('--max-minutes', 1, 100000))
    .option('--no-fastdp', 'multi-host fault schedule: routers without the fast datapath')
    .exitOverride();
  p.parse(process.argv);
  const o = p.opts<{ kills: number; seed?: number; workers: number; hosts?: number; steps: number; runs: number; keepGoing?: boolean; fastdp: boolean; maxMinutes?: number }>();
  const why = canRunE2E();
  if (why) throw new Error(`chaos ${why}`);
  if (o.hosts && !existsSync('/usr/sbin/iptables') && !existsSync('/sbin/iptables')) throw new Error('chaos --hosts needs iptables (Debian package iptables)');
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  if (o.hosts) return meshCampaign({ ...o, hosts: o.hosts }, seed);
  console.log(`chaos: kill -9 schedule, seed ${seed}, ${o.kills} kills, ${o.workers} workers`);
  const bed = new Testbed('ch');
  const t0 = Date.now();
  try {
    const [h1] = await bed.up(1);
    const launch = ['launch', '--no-proxy', '--no-fastdp', '--nickname', 'h1'];
    await h1.mustWeave(launch);
    await h1.mustWeave(['prime'], { timeoutMs: 60_000 });
    const r = await killBurst(bed, h1, launch, { kills: o.kills, seed, workers: o.workers, log: (l) => console.log(l), timeoutMs: o.maxMinutes !== undefined ? o.maxMinutes * 60_000 : Math.max(600_000, o.kills * 60_000) });
    const s = ((Date.now() - t0) / 1000).toFixed(0);
    console.log(`chaos: seed ${seed}: ${r.kills} kills survived in ${s} s (landed before/inside/after their burst: ${r.landed.before}/${r.landed.inside}/${r.landed.after}); ${r.containers} containers, ${r.reported} addresses reported, ${r.failedAttaches} attaches cut off by a kill; ${r.violations.length} violations`);
    if (r.kills < o.kills) console.log(`chaos: only ${r.kills} of ${o.kills} kills fitted the time bound`);
    if (r.violations.length) {
      for (const v of r.violations) console.log(`VIOLATION: ${v}`);
      const keep = `/tmp/tsweave-chaos-failed-${seed}`;
      cpSync(h1.stateDir, keep, { recursive: true, filter: (src) => !isSocket(src) });
      console.log(`replay with --seed ${seed} --kills ${o.kills} --workers ${o.workers}; state dir and log kept in ${keep}\n--- log tail ---\n${h1.logTail(40)}`);
      return 1;
    }
    return r.kills < o.kills ? 1 : 0;
  } finally {
    await bed.destroy();
  }
}

async function meshCampaign(o: { hosts: number; steps: number; runs: number; keepGoing?: boolean; fastdp: boolean; maxMinutes?: number }, first: number): Promise<number> {
  let clean = 0;
  const bad: number[] = [];
  const t0 = Date.now();
  const phaseSum = { setup: 0, launch: 0, steps: 0, converge: 0, check: 0 };
  for (let r = 0; r < o.runs; r++) {
    if (o.maxMinutes !== undefined && Date.now() - t0 >= o.maxMinutes * 60_000) {
      console.log(`chaos: --max-minutes ${o.maxMinutes} reached; no new schedule after ${r} of ${o.runs}`);
      break;
    }
    const seed = (first + r) % 2 ** 31;
    // Every line of this schedule, also written next to the kept logs if it fails.
    const lines: string[] = [];
    const out = (l: string): void => {
      lines.push(l);
      console.log(l);
    };
    out(`chaos: schedule seed ${seed}: ${o.hosts} hosts x ${o.steps} steps${o.fastdp ? '' : ' (no fastdp)'} (run ${r + 1}/${o.runs})`);
    const bed = new Testbed('cm');
    const t1 = Date.now();
    try {
      const res = await runMeshSchedule(bed, { seed, hosts: o.hosts, steps: o.steps, noFastdp: !o.fastdp, log: (l) => out(`  ${l}`) });
      const s = ((Date.now() - t1) / 1000).toFixed(0);
      const mib = res.rss.map((x) => (x / 2 ** 20).toFixed(0)).join('/');
      out(`chaos: seed ${seed}: ${res.violations.length} violations in ${s} s; ${res.containers} containers (${res.attachesOk} attaches ok, ${res.attachesRefused} refused); router RSS MiB ${mib}, fds ${res.fds.join('/')}`);
      for (const [k, v] of Object.entries(res.phases)) phaseSum[k as keyof typeof phaseSum] += v;
      out(`chaos: seed ${seed}: time ${phaseLine(res.phases)}; by step kind ${Object.entries(res.stepTime).map(([k, v]) => `${k} ${v.n}x${(v.ms / v.n / 1000).toFixed(1)}`).join(' ')} s`);
      if (res.violations.length) {
        bad.push(seed);
        out(`seed ${seed}: the schedule was (replay with --hosts ${o.hosts} --steps ${o.steps} --seed ${seed}${o.fastdp ? '' : ' --no-fastdp'}):`);
        res.steps.forEach((st, i) => out(`  ${String(i + 1).padStart(3)}. ${describeStep(st)}`));
        for (const v of res.violations) out(`VIOLATION: ${v}`);
        const keep = `/tmp/tsweave-chaos-failed-${seed}`;
        out(res.diagnostics);
        // Sockets (weaver.sock) cannot be copied: skip them, never lose the campaign over it.
        cpSync(bed.dir, keep, { recursive: true, filter: (src) => !isSocket(src) });
        out(`state dirs and logs kept in ${keep} (this output in ${keep}/chaos.log)`);
        writeFileSync(`${keep}/chaos.log`, `${lines.join('\n')}\n`);
      } else clean++;
    } finally {
      await bed.destroy();
    }
    const done = r + 1;
    const el = (Date.now() - t0) / 1000;
    console.log(`chaos: tally after ${done} of ${o.runs}: ${clean} clean (${clean * o.steps} steps), ${bad.length} with violations${bad.length ? ` (seeds ${bad.join(' ')})` : ''}; seeds ${first}..${seed}; ${(el / 60).toFixed(1)} min, ${(el / done).toFixed(0)} s per schedule (mean ${phaseLine(phaseSum, done)})${done < o.runs ? `, ~${((el / done) * (o.runs - done) / 60).toFixed(0)} min to go` : ''}`);
    if (bad.length && !o.keepGoing) break;
  }
  const m = ((Date.now() - t0) / 60000).toFixed(1);
  console.log(`chaos: ${clean} schedules x ${o.steps} steps on ${o.hosts} hosts clean, ${bad.length} with violations${bad.length ? ` (seeds ${bad.join(' ')})` : ''}, in ${m} min`);
  return bad.length ? 1 : 0;
}

/** Whether `p` is a unix socket (cpSync refuses to copy one). */
function isSocket(p: string): boolean {
  try {
    return lstatSync(p).isSocket();
  } catch {
    return false;
  }
}

/** "setup 2.1 launch 12.0 ..." in seconds (divided by `n` for a mean). */
function phaseLine(p: Record<string, number>, n = 1): string {
  return Object.entries(p).map(([k, v]) => `${k} ${(v / n / 1000).toFixed(1)}`).join(' ') + ' s';
}

main().then((c) => process.exit(c), (err: Error) => {
  console.error(`chaos: ${err.message.split('\n')[0]}`);
  process.exit(1);
});
