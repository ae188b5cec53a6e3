/**
 * `npm run chaos -- --kills N [--seed S] [--workers W]`: the long kill -9 schedule
 * (test/chaos/kill9.ts) on a one-host testbed of network namespaces, as root. Prints
 * one line per kill and the seed; exits 1 on any violation (printing them and the
 * router's log tail; the state dir is kept under /tmp when it fails).
 *
 * `npm run chaos -- --hosts N --steps S [--seed X] [--runs R] [--keep-going]`: the
 * multi-host fault schedule (test/chaos/schedule.ts, run by test/chaos/mesh.ts) for
 * seeds X, X+1, ... X+R-1, each on a fresh testbed. Prints one line per step; on a
 * violation prints the seed, the step list, the violations and each router's status
 * and log tail, and exits 1 (after the remaining runs with --keep-going).
 */
import { Command } from 'commander';
import { cpSync, existsSync } from 'node:fs';
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
    .option('--no-fastdp', 'multi-host fault schedule: routers without the fast datapath')
    .exitOverride();
  p.parse(process.argv);
  const o = p.opts<{ kills: number; seed?: number; workers: number; hosts?: number; steps: number; runs: number; keepGoing?: boolean; fastdp: boolean }>();
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
    const r = await killBurst(bed, h1, launch, { kills: o.kills, seed, workers: o.workers, log: (l) => console.log(l), timeoutMs: Math.max(600_000, o.kills * 20_000) });
    const s = ((Date.now() - t0) / 1000).toFixed(0);
    console.log(`chaos: seed ${seed}: ${r.kills} kills survived in ${s} s; ${r.containers} containers, ${r.reported} addresses reported, ${r.failedAttaches} attaches cut off by a kill; ${r.violations.length} violations`);
    if (r.violations.length) {
      for (const v of r.violations) console.log(`VIOLATION: ${v}`);
      const keep = `/tmp/tsweave-chaos-failed-${seed}`;
      cpSync(h1.stateDir, keep, { recursive: true });
      console.log(`replay with --seed ${seed} --kills ${o.kills} --workers ${o.workers}; state dir and log kept in ${keep}\n--- log tail ---\n${h1.logTail(40)}`);
      return 1;
    }
    return 0;
  } finally {
    await bed.destroy();
  }
}

async function meshCampaign(o: { hosts: number; steps: number; runs: number; keepGoing?: boolean; fastdp: boolean }, first: number): Promise<number> {
  let clean = 0;
  const bad: number[] = [];
  const t0 = Date.now();
  for (let r = 0; r < o.runs; r++) {
    const seed = (first + r) % 2 ** 31;
    console.log(`chaos: schedule seed ${seed}: ${o.hosts} hosts x ${o.steps} steps${o.fastdp ? '' : ' (no fastdp)'} (run ${r + 1}/${o.runs})`);
    const bed = new Testbed('cm');
    const t1 = Date.now();
    try {
      const res = await runMeshSchedule(bed, { seed, hosts: o.hosts, steps: o.steps, noFastdp: !o.fastdp, log: (l) => console.log(`  ${l}`) });
      const s = ((Date.now() - t1) / 1000).toFixed(0);
      const mib = res.rss.map((x) => (x / 2 ** 20).toFixed(0)).join('/');
      console.log(`chaos: seed ${seed}: ${res.violations.length} violations in ${s} s; ${res.containers} containers (${res.attachesOk} attaches ok, ${res.attachesRefused} refused); router RSS MiB ${mib}, fds ${res.fds.join('/')}`);
      if (res.violations.length) {
        bad.push(seed);
        console.log(`seed ${seed}: the schedule was (replay with --hosts ${o.hosts} --steps ${o.steps} --seed ${seed}${o.fastdp ? '' : ' --no-fastdp'}):`);
        res.steps.forEach((st, i) => console.log(`  ${String(i + 1).padStart(3)}. ${describeStep(st)}`));
        for (const v of res.violations) console.log(`VIOLATION: ${v}`);
        const keep = `/tmp/tsweave-chaos-failed-${seed}`;
        cpSync(bed.dir, keep, { recursive: true });
        console.log(`${res.diagnostics}\nstate dirs and logs kept in ${keep}`);
        if (!o.keepGoing) break;
      } else clean++;
    } finally {
      await bed.destroy();
    }
  }
  const m = ((Date.now() - t0) / 60000).toFixed(1);
  console.log(`chaos: ${clean} schedules x ${o.steps} steps on ${o.hosts} hosts clean, ${bad.length} with violations${bad.length ? ` (seeds ${bad.join(' ')})` : ''}, in ${m} min`);
  return bad.length ? 1 : 0;
}

main().then((c) => process.exit(c), (err: Error) => {
  console.error(`chaos: ${err.message.split('\n')[0]}`);
  process.exit(1);
});
