/**
 * The expose-NAT subsystem: keeps the `ip tsweave-nat` table (expose-nat.ts) in line
 * with the host's exposed addresses (the endpoint table's `weave:expose` entry) and
 * the subnets exposed with --no-masq (remembered in STATE_DIR/expose-nat.json). The
 * daemon calls `exposed()` after `weave expose` and `hidden()` after `weave hide`;
 * `reset()` removes the table. Like isolation's rules, the table stays while the
 * router is stopped, so exposed subnets keep working; start() re-syncs it. With
 * --ipalloc-range6 the IPv6 twins of the masqueraded subnets get the same rules in
 * `ip6 tsweave-nat`; hide and reset remove them with their IPv4 subnet.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Subsystem, SubsystemContext } from '../daemon/subsystem.js';
import { EXPOSE_ID } from '../host/endpoints.js';
import { BRIDGE } from '../host/netdev.js';
import { applyRuleset } from '../policy/bridge-filter.js';
import { writeFileAtomic } from '../host/state-file.js';
import { masqueradedSubnets, renderNat, subnetOf } from './expose-nat.js';
import { subnet6 } from '../../ipam/ipv6.js';

export interface ExposeNatSubsystem extends Subsystem {
  readonly name: 'expose-nat';
  /** After `weave expose`: `cidrs` were exposed, with NAT unless `noMasq`. Rejects with a one-line Error if nft fails. */
  exposed(cidrs: string[], noMasq: boolean): Promise<void>;
  /** After `weave hide`: their rules go. */
  hidden(cidrs: string[]): Promise<void>;
}

export function exposeNatSubsystem(): ExposeNatSubsystem {
  let ctx: SubsystemContext | undefined;
  let noMasq: string[] = [];
  let file = '';
  let installed: string[] = [];
  let queue: Promise<void> = Promise.resolve();

  const sync = (): Promise<void> => {
    const run = queue.then(async () => {
      if (!ctx) return;
      const exposed = ctx.endpoints.list().find((e) => e.id === EXPOSE_ID)?.cidrs ?? [];
      const want = masqueradedSubnets(exposed, noMasq);
      // [IPv6] with range6 each masqueraded subnet's IPv6 twin too (ip6 tsweave-nat).
      const r6 = ctx.endpoints.range6;
      const want6 = r6 ? want.map((c) => subnet6(r6, c)) : [];
      await applyRuleset(renderNat(want, BRIDGE, want6));
      installed = [...want, ...want6];
    });
    queue = run.catch(() => undefined);
    return run;
  };
  const save = (): Promise<void> => writeFileAtomic(file, JSON.stringify({ noMasq }));

  return {
    name: 'expose-nat',
    reportKey: 'ExposeNAT',
    async start(c) {
      ctx = c;
      file = path.join(c.stateDir, 'expose-nat.json');
      try {
        const j = JSON.parse(await fsp.readFile(file, 'utf8')) as { noMasq?: unknown };
        if (Array.isArray(j.noMasq)) noMasq = j.noMasq.filter((x): x is string => typeof x === 'string').slice(0, 1024).filter((x) => {
          try {
            subnetOf(x);
            return true;
          } catch {
            return false;
          }
        });
      } catch { /* none yet, or unusable: every exposed subnet is masqueraded */ }
      // Degraded, not fatal: without nft the host can still be exposed, without NAT.
      await sync().catch((err: Error) => c.log(`expose NAT: cannot install the ${'WEAVE'} chain: ${err.message}`, 'warn'));
    },
    async exposed(cidrs, nm) {
      const subs = cidrs.map(subnetOf);
      noMasq = nm ? [...new Set([...noMasq, ...subs])] : noMasq.filter((s) => !subs.includes(subnetOf(s)));
      await save();
      await sync();
    },
    async hidden(cidrs) {
      const subs = cidrs.map(subnetOf);
      noMasq = noMasq.filter((s) => !subs.includes(subnetOf(s)));
      await save();
      await sync();
    },
    report: () => ({ Masqueraded: installed, NoMasq: noMasq }),
    async reset() {
      noMasq = [];
      await applyRuleset(renderNat([], BRIDGE, []));
      await fsp.rm(file, { force: true });
    },
    close: async () => undefined,
  };
}
