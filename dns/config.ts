/**
 * weaveDNS's settings from the launch configuration, with their defaults. Pure; imported
 * by the daemon (for the bridge filters), the DNS subsystem, the CLI and the proxy.
 *
 * The server's address: Weave listened on docker0's address, which a container whose
 * only interface is `ethwe` (dockerd --bridge=none) cannot reach. tsweave instead gives
 * the `weave` bridge the link-local address 169.254.53.53/32 (RFC 3927; ".53" for DNS),
 * adds an on-link route to it in every attached container (`169.254.53.53 dev ethwe`)
 * and routes the answers back over the bridge by a policy rule on that source address
 * (dns/reach.ts). The bridge filters let a local container port reach only UDP/TCP 53 on
 * it (router/policy/bridge-filter.ts); frames to it from other hosts are dropped.
 */
import net from 'node:net';
import { normaliseDomain } from './names.js';
import type { LaunchConfig } from '../router/daemon/config.js';

export const DEFAULT_DNS_ADDRESS = '169.254.53.53';
export const DEFAULT_DNS_PORT = 53;
export const DEFAULT_DNS_DOMAIN = 'weave.local.';
export const DEFAULT_DNS_TTL = 1;

export interface DnsSettings {
  enabled: boolean;
  /** Listen address, IPv4 ("169.254.53.53"). */
  address: string;
  port: number;
  /** Normalised domain, "weave.local.". */
  domain: string;
  /** Seconds. */
  ttl: number;
  /** Names follow subnet isolation (default true). */
  isolation: boolean;
  /** True when the address is link-local: the router puts it on the bridge and routes to it in containers. */
  onBridge: boolean;
}

/**
 * Parse "ADDR[:PORT]" (IPv4). @throws Error with a one-line message naming the flag.
 */
export function parseListenAddress(s: string): { address: string; port: number } {
  const m = /^([0-9.]+)(?::(\d{1,5}))?$/.exec(s);
  const port = m?.[2] === undefined ? DEFAULT_DNS_PORT : Number(m[2]);
  if (!m || !net.isIPv4(m[1]) || port < 1 || port > 65535) throw new Error(`invalid --dns-listen-address "${s}": want an IPv4 address with an optional port, like 169.254.53.53:53`);
  return { address: m[1], port };
}

/** The DNS settings of a launch configuration (defaults filled in). @throws Error on bad values. */
export function dnsSettings(cfg: Partial<Pick<LaunchConfig, 'dns' | 'dnsDomain' | 'dnsTtl' | 'dnsListenAddress' | 'dnsIsolation'>>): DnsSettings {
  const { address, port } = parseListenAddress(cfg.dnsListenAddress ?? `${DEFAULT_DNS_ADDRESS}:${DEFAULT_DNS_PORT}`);
  let domain: string;
  try {
    domain = normaliseDomain(cfg.dnsDomain ?? DEFAULT_DNS_DOMAIN);
  } catch (err) {
    throw new Error(`--dns-domain: ${(err as Error).message}`);
  }
  const ttl = cfg.dnsTtl ?? DEFAULT_DNS_TTL;
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 86400) throw new Error(`invalid --dns-ttl "${ttl}": want seconds from 0 to 86400`);
  return { enabled: cfg.dns !== false, address, port, domain, ttl, isolation: cfg.dnsIsolation !== false, onBridge: address.startsWith('169.254.') };
}

/** The address the bridge filters must let local containers reach, or undefined (DNS off or not on the bridge). */
export function dnsBridgeAddress(cfg: Parameters<typeof dnsSettings>[0]): string | undefined {
  try {
    const s = dnsSettings(cfg);
    return s.enabled && s.onBridge ? s.address : undefined;
  } catch {
    return undefined;
  }
}
