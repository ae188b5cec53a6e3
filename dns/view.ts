/**
 * weaveDNS's answering view: what the UDP/TCP server needs to answer local names, as a
 * self-contained snapshot the registry's owner (the main thread's `dns` subsystem) pushes
 * to wherever the server runs (a worker thread by default, dns/threaded.ts). Pure: no
 * sockets, timers or files.
 *
 * A snapshot holds only what may be answered: live entries of origins that are reachable
 * in the topology now (the owner filters), and, with isolation on, the subnets of each
 * local container address (the asker's source address decides what it may learn: a
 * container learns only addresses inside a subnet it shares; any other asker, such as the
 * host, sees everything). Lookups go through a DnsRegistry holding the snapshot's entries,
 * so the answers (case folding, one address once, Fisher–Yates shuffle per answer, reverse
 * names sorted) are the registry's own.
 */
import { DnsRegistry, isIpv4, type DnsEntry } from './registry.js';
import type { NameSource } from './answer.js';

/** One answerable entry: [hostname (normalised), IPv4 address, IPv6 address or '', origin]. */
export type ViewEntry = [string, string, string, string];

/** What the owner pushes on every change (structured-clone friendly). */
export interface ViewSnapshot {
  /** Live entries of reachable origins. */
  entries: ViewEntry[];
  /** [container address, its CIDRs] for every local endpoint address; [] with isolation off. */
  subnets: Array<[string, string[]]>;
}

/** Settings that do not change while the server runs. */
export interface ViewSettings {
  /** Normalised domain ("weave.local."). */
  domain: string;
  /** TTL of answers, seconds. */
  ttl: number;
  /** Answer a container only with addresses in subnets it shares. */
  isolation: boolean;
}

/** Most per-client NameSources kept (one per asking address; emptied when full). */
export const MAX_CLIENT_SOURCES = 4096;

/** IPv4 dotted quad → 32-bit number. */
function ipNum(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** True if `addr` lies in the subnet of `cidr` ("10.32.2.5/24"); false for anything malformed. */
export function inSubnetOf(addr: string, cidr: string): boolean {
  const [base, lenS] = cidr.split('/');
  const len = Number(lenS);
  if (!isIpv4(addr) || !isIpv4(base) || !(len >= 0 && len <= 32)) return false;
  const size = 2 ** (32 - len);
  return Math.floor(ipNum(addr) / size) === Math.floor(ipNum(base) / size);
}

/** The entries of a snapshot as registry entries (origin kept; version and tombstone irrelevant). */
function toEntries(es: readonly ViewEntry[]): DnsEntry[] {
  return es.map(([hostname, addr, addr6, origin], i) => ({ containerId: String(i), origin, addr, hostname, ...(addr6 ? { addr6 } : {}), version: 0, tombstone: 0 }));
}

/**
 * A snapshot made answerable: names(client) is the NameSource for an asker's source
 * address (an IPv4-mapped IPv6 address counts as its IPv4 address).
 */
export class DnsView {
  private readonly reg = new DnsRegistry('', () => 0);
  private readonly subnets: Map<string, string[]>;
  private readonly sources = new Map<string, NameSource>();

  /** @param rng uniform [0, 1) for the per-answer shuffle (Math.random in the server) */
  constructor(private readonly settings: ViewSettings, snapshot: ViewSnapshot, private readonly rng: () => number = Math.random) {
    this.reg.merge(toEntries(snapshot.entries));
    this.subnets = new Map(settings.isolation ? snapshot.subnets : []);
  }

  /** The NameSource for the asker at `client` (cached per address). */
  names(client: string): NameSource {
    const cached = this.sources.get(client);
    if (cached) return cached;
    const subnets = this.settings.isolation ? this.subnets.get(client.replace(/^::ffff:/, '')) : undefined;
    // A client that is not a container here (the host itself) is trusted: it sees all.
    const visible = subnets ? (a: string) => subnets.some((c) => inSubnetOf(a, c)) : undefined;
    const reg = this.reg;
    const rng = this.rng;
    const src: NameSource = {
      domain: this.settings.domain, ttl: this.settings.ttl,
      lookup: (n) => reg.lookup(n, { visible, rng }),
      reverse: (a) => reg.reverse(a, { visible }),
      lookup6: (n) => reg.lookup6(n, { visible, rng }),
      reverse6: (a) => reg.reverse6(a, { visible }),
    };
    if (this.sources.size >= MAX_CLIENT_SOURCES) this.sources.clear();
    this.sources.set(client, src);
    return src;
  }
}

/**
 * The snapshot of a registry's entries for the view: live ones whose origin `alive`
 * accepts, and the endpoints' subnets when `isolation` is on. Pure.
 */
export function snapshotOf(live: readonly DnsEntry[], alive: (origin: string) => boolean, endpoints: ReadonlyArray<{ cidrs: readonly string[] }>, isolation: boolean): ViewSnapshot {
  const entries: ViewEntry[] = [];
  for (const e of live) if (e.tombstone === 0 && alive(e.origin)) entries.push([e.hostname, e.addr, e.addr6 ?? '', e.origin]);
  const subnets: Array<[string, string[]]> = [];
  if (isolation) for (const ep of endpoints) for (const c of ep.cidrs) subnets.push([c.split('/')[0]!, [...ep.cidrs]]);
  return { entries, subnets };
}
