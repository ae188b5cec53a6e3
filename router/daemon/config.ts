/**
 * What `weave launch` decides and hands to the daemon, and the daemon's file layout
 * in the state directory. Plain data: imported by the CLI, the daemon and every
 * subsystem without importing the daemon itself.
 */
import path from 'node:path';
import { splitListenAddress } from '../mesh/address.js';

/** Everything `weave launch` decides; sent to the daemon as JSON on its stdin (router/daemon/weaver.ts LaunchMessage). */
export interface LaunchConfig {
  stateDir: string;
  name?: string;
  nickname: string;
  port: number;
  mtu: number;
  connLimit: number;
  discovery: boolean;
  peers: string[];
  trustedSubnets: string[];
  ipallocRange: string;
  ipallocDefaultSubnet?: string;
  ipallocInit?: string;
  /**
   * --ipalloc-range6 PREFIX/L (issue #21): containers also get IPv6 addresses derived from
   * their IPv4 ones (ipam/ipv6.ts). Absent or '': IPv4 only (the default).
   */
  ipallocRange6?: string;
  /** Number of peers named at launch (consensus quorum default: that + 1). */
  initialPeerCount: number;
  dockerHost: string;
  proxy: boolean;
  proxyListen: string[];
  /** --proxy-insecure-tcp: allow a non-loopback tcp:// proxy address without TLS. */
  proxyInsecureTcp?: boolean;
  /**
   * --tls / --tlsverify with --tlscacert, --tlscert, --tlskey (absolute paths): TLS on the
   * proxy's tcp:// listeners, client certificates required with verify (proxy/tls.ts).
   */
  proxyTls?: { verify: boolean; caFile?: string; certFile: string; keyFile: string };
  noDefaultIpalloc: boolean;
  metricsAddr: string;
  apiAddr: string;
  /**
   * --api-insecure: the TCP API serves every route (mutations too) to any peer and
   * Host, and --api-addr/--metrics-addr may be non-loopback. Weave's behaviour;
   * dangerous (docs/SECURITY.md). Default false.
   */
  apiInsecure?: boolean;
  logLevel: string;
  fastdp: boolean;
  /** weaveDNS (dns/): false with --no-dns. Absent means on. */
  dns?: boolean;
  /** --dns-domain (default "weave.local."). */
  dnsDomain?: string;
  /** --dns-ttl, seconds (default 1). */
  dnsTtl?: number;
  /** --dns-listen-address ADDR[:PORT] (default 169.254.53.53:53, see dns/reach.ts). */
  dnsListenAddress?: string;
  /** --dns-isolation=off answers every name to everyone (Weave's behaviour). Absent means on. */
  dnsIsolation?: boolean;
  /** [plugin] Serve the Docker network plugin (weavemesh); false with --no-plugin. Absent (older callers): on. */
  plugin?: boolean;
  /** [plugin] Its socket (default /run/docker/plugins/weavemesh.sock, or STATE_DIR/plugins/weavemesh.sock with a non-default state dir). */
  pluginSocket?: string;
  /** [plugin] Create the Docker network `weave` in the background (only where dockerd finds the socket). */
  pluginNetwork?: boolean;
}

/** Files of one router in its state directory (`WEAVE_STATE_DIR`, default /var/lib/weave). */
export function statePaths(stateDir: string) {
  return {
    pid: path.join(stateDir, 'weaver.pid'),
    log: path.join(stateDir, 'weaver.log'),
    sock: path.join(stateDir, 'weaver.sock'),
    name: path.join(stateDir, 'peer-name'),
    targets: path.join(stateDir, 'targets.json'),
  };
}

/**
 * Split a listen address "host:port" (IPv6 as "[v6]:port"; brackets removed; host may
 * be empty: 127.0.0.1; port missing or invalid: defPort). See mesh/address.ts.
 * @returns [host, port]
 */
export function splitHostPort(addr: string, defPort: number): [string, number] {
  return splitListenAddress(addr, defPort);
}

/**
 * Check --api-addr / --metrics-addr: a non-loopback host needs --api-insecure.
 * @returns a one-line error, or null when allowed.
 */
export function checkListenAddress(flag: string, addr: string, insecure: boolean): string | null {
  if (!addr) return null;
  const [host] = splitHostPort(addr, 0);
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  const loopback = h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
  if (loopback || insecure) return null;
  return `${flag} ${addr} is not a loopback address: the API has no authentication, so anyone who reaches it controls the router; add --api-insecure to do it anyway (see docs/SECURITY.md)`;
}

/** What `weave launch` sends on the router's stdin (cli/weave.ts prestartRouter). */
export interface LaunchMessage {
  config: LaunchConfig;
  password: string;
}

/**
 * Parses the launcher's message: JSON {config: object, password: string}.
 * @returns undefined for an empty message (the launcher's checks failed: exit, touching nothing)
 * @throws Error with a one-line reason for anything else that is not such a message
 */
export function parseLaunchMessage(text: string): LaunchMessage | undefined {
  if (text === '') return undefined;
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    throw new Error('the launch message on stdin is not JSON: start the router with `weave launch`');
  }
  const r = m as Partial<LaunchMessage> | null;
  if (typeof r !== 'object' || r === null || typeof r.config !== 'object' || r.config === null || Array.isArray(r.config) || typeof r.password !== 'string') {
    throw new Error('the launch message on stdin is not {config, password}: start the router with `weave launch`');
  }
  return { config: r.config, password: r.password };
}
