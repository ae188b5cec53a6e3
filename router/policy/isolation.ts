/**
 * Enforced subnet isolation: keeps the router's per-frame policy (subnet-policy.ts)
 * and the bridge's nftables rules (bridge-filter.ts) in line with the endpoint table.
 *
 * Two endpoints may exchange frames only if they share a subnet (an address
 * 10.32.2.5/24 puts its endpoint in 10.32.2.0/24), and an endpoint may only send from
 * what was attached to it. The router enforces this on every frame it captures from
 * or delivers to the TAP (the sleeve); the kernel rules enforce it for everything the
 * router never sees: frames between containers on one host, frames carried by the
 * fast datapath's VXLAN port, and the host's own traffic. The rules live in the
 * host's network namespace and stay when the router stops (the containers stay
 * attached); removeAll() (weave reset) deletes them.
 *
 * The exposed host (`weave:expose`) sends with the bridge's MAC, which Linux
 * recomputes as ports come and go, so sync() reads it afresh every time.
 */
import type { FramePolicy } from '../router.js';
import { EXPOSE_ID, type Endpoint } from '../host/endpoints.js';
import { SubnetPolicy, type PolicyEndpoint } from './subnet-policy.js';
import { applyRuleset, nftBackend, readCounters, removeTables, renderPortDelta, renderRuleset, tablesExist, usablePorts, type PortRules } from './bridge-filter.js';
import { BRIDGE, hostVethName, ip } from '../host/netdev.js';
import type { Range6 } from '../../ipam/ipv6.js';

export class Isolation {
  /** The per-frame check the router calls; undefined until the first sync(). */
  policy: FramePolicy | undefined = undefined;
  /** Bridge-rule drops from tables this process replaced (nft counters restart with the table). */
  private readonly carried: Record<string, number> = {};
  private installedByUs = false;
  /**
   * What the rules installed by this process hold: the ports (port → UsablePort.key) and
   * everything else they were rendered from. undefined until a whole ruleset is applied,
   * and after any failure, so that the next sync applies a whole one again.
   */
  private applied: { ports: Map<string, string>; rest: string } | undefined;
  private queue: Promise<void> = Promise.resolve();
  private lastError = '';
  private backendLogged = false;

  /**
   * @param opts.dns weaveDNS's server address and port on the bridge, if any: the bridge
   *   rules let local containers reach it (renderRuleset's `dns`)
   * @param opts.range6 --ipalloc-range6: IPv6 of the derived addresses follows the same
   *   policy (issue #21); without it IPv6 is dropped
   */
  constructor(readonly log: (l: string, lvl?: string) => void, private readonly opts: { dns?: { address: string; port: number }; range6?: Range6 } = {}) {}

  /**
   * Bring the frame policy and the bridge filter rules in line with `endpoints` (the
   * whole local table, weave:expose included). Calls are serialised, so the last call
   * wins; calls made while one runs are coalesced into one run with the newest table
   * (each resolves once rules at least as new as its own table are in place). When only ports came, went or changed since the last sync, only their rules are
   * changed (bridge-filter.ts renderPortDelta); anything else replaces the whole ruleset. Never rejects: a failure to install bridge rules (nft missing, no bridge
   * family in the kernel) is logged as an error once per distinct message, since the
   * router's own policy still isolates traffic across hosts.
   */
  sync(endpoints: Endpoint[]): Promise<void> {
    const snapshot = endpoints.map((e) => ({ ...e, cidrs: [...e.cidrs] }));
    // Calls that arrive while a sync runs share the one queued after it, which applies
    // the newest table: one nft transaction for a burst of attaches, not one each.
    if (this.next) {
      this.next.snapshot = snapshot;
      return this.next.run;
    }
    const next: { snapshot: Endpoint[]; run: Promise<void> } = { snapshot, run: Promise.resolve() };
    next.run = this.queue.then(() => {
      if (this.next === next) this.next = undefined;
      return this.syncNow(next.snapshot);
    });
    this.next = next;
    this.queue = next.run.catch(() => undefined);
    return next.run;
  }

  /** The sync queued behind the running one, if any (sync() coalesces into it). */
  private next: { snapshot: Endpoint[]; run: Promise<void> } | undefined;

  private async syncNow(endpoints: Endpoint[]): Promise<void> {
    const bridgeMac = endpoints.some((e) => e.id === EXPOSE_ID) ? await readBridgeMac() : undefined;
    const forPolicy: PolicyEndpoint[] = endpoints.map((e) => ({
      id: e.id, cidrs: e.cidrs, mac: e.id === EXPOSE_ID ? bridgeMac ?? e.mac : e.mac,
    }));
    const policy = new SubnetPolicy(forPolicy, { range6: this.opts.range6?.bytes });
    for (const p of policy.problems) this.log(`isolation: ${p}`, 'warn');
    // With nothing attached through weave there is nothing to isolate: interfaces a user
    // bridged by hand (as the shared benchmark does) are forwarded as Weave would.
    this.policy = endpoints.length ? policy : undefined;

    const ports: PortRules[] = endpoints.filter((e) => e.id !== EXPOSE_ID).map((e) => ({ port: hostVethName(e.id), mac: e.mac, cidrs: e.cidrs }));
    const host = endpoints.find((e) => e.id === EXPOSE_ID)?.cidrs ?? [];
    const rest = JSON.stringify([host, BRIDGE, this.opts.dns ?? null, this.opts.range6 ? `${this.opts.range6.prefix}/${this.opts.range6.len}` : null]);
    // Only ports changed since the rules we installed: change just those (a pod start
    // then costs one small nft transaction, whatever the number of ports).
    if (this.applied && this.installedByUs && this.applied.rest === rest) {
      try {
        const { usable, skipped } = usablePorts(ports, this.opts.range6);
        for (const s of skipped) this.log(`isolation: bridge rules: ${s}`, 'warn');
        const delta = renderPortDelta(this.applied.ports, usable);
        // Nothing to change: still make sure our tables were not deleted behind our
        // back (a delta would fail then; an empty one would not notice).
        if (!delta && await tablesExist()) return;
        if (!delta) throw new Error('our nft tables are gone');
        await applyRuleset(delta);
        this.applied = { ports: new Map(usable.map((p) => [p.port, p.key])), rest };
        return;
      } catch (err) {
        // Our table was changed behind our back (deleted, flushed): replace it whole.
        this.log(`isolation: bridge rules: ${(err as Error).message}; installing them whole`, 'warn');
      }
    }
    this.applied = undefined;
    if (!this.backendLogged) {
      this.backendLogged = true;
      this.log(`isolation: bridge rules through ${nftBackend()}`);
    }
    try {
      const { script, skipped, ports: rendered } = renderRuleset(ports, host, BRIDGE, this.opts.dns, this.opts.range6);
      for (const s of skipped) this.log(`isolation: bridge rules: ${s}`, 'warn');
      // nft counters restart with the table: keep what the old one counted (only if we
      // made it, so a table left by an earlier run does not count towards this one).
      const before = this.installedByUs ? await readCounters().catch(() => undefined) : undefined;
      await applyRuleset(script);
      if (before) for (const [k, v] of Object.entries(before)) this.carried[k] = (this.carried[k] ?? 0) + v;
      this.installedByUs = true;
      this.applied = { ports: new Map(rendered.map((p) => [p.port, p.key])), rest };
      if (this.lastError) this.log('isolation: bridge rules installed again');
      this.lastError = '';
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== this.lastError) this.log(`isolation: cannot install bridge rules, containers on this host are NOT isolated from each other: ${msg}`, 'error');
      this.lastError = msg;
    }
  }

  /** Remove every nftables rule we made (weave reset); absent is fine. Rejects with a BridgeFilterError if nft fails. */
  async removeAll(): Promise<void> {
    await this.queue;
    await removeTables();
    this.installedByUs = false;
    this.applied = undefined;
  }

  /**
   * Bridge-rule drops by reason ({ spoof, isolation }, packets): what the current table
   * counted since it was installed, plus what the tables this process replaced had
   * counted. {} when the rules cannot be read. The router's own drops are in its report.
   */
  async counters(): Promise<Record<string, number>> {
    const now = await readCounters().catch(() => undefined);
    const out: Record<string, number> = { ...this.carried };
    for (const [k, v] of Object.entries(now ?? {})) out[k] = (out[k] ?? 0) + v;
    return out;
  }
}

async function readBridgeMac(): Promise<string | undefined> {
  const out = await ip('-o', 'link', 'show', 'dev', BRIDGE).catch(() => '');
  return /link\/ether ([0-9a-f:]{17})/.exec(out)?.[1];
}
