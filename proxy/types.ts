/**
 * Public types of the Docker API proxy (`proxy/`), the seam between the proxy
 * and the router daemon that owns the weave bridge and IPAM.
 */
import type { ProxyTlsFiles } from './tls.js';

/**
 * What the proxy needs from the router: put a container on the weave network
 * and take it off again. Implemented by the router daemon (real veth + IPAM)
 * and by a fake in the proxy's end-to-end tests.
 */
export interface ProxyAttacher {
  /**
   * Attach the container's network namespace (`/proc/<pid>/ns/net`) to the
   * weave network as interface `ethwe`.
   *
   * `specs` are WEAVE_CIDR words: `'net:CIDR' | 'net:default' | 'ip:CIDR' | 'CIDR'`;
   * `[]` means the default subnet. Resolves to the CIDRs given, e.g. `["10.32.0.3/12"]`.
   * Re-attaching a known container reuses its addresses. The proxy may call
   * this again for a process that is already attached (`ethwe` present: after
   * the proxy restarts or reconnects to the daemon's events, it re-attaches
   * every running weavewait container), and two calls for one container may
   * overlap, so it must be idempotent and serialize per container.
   *
   * Bring `ethwe` up as the LAST step (after addresses and routes): weavewait
   * starts the container's process as soon as `ethwe` is up, running and has
   * an IPv4 address.
   */
  attach(containerId: string, pid: number, specs: string[], opts?: AttachExtras): Promise<string[]>;
  /**
   * The container's process exited (Docker's `die`): its weaveDNS names are tombstoned
   * (a later `start` attaches it again and re-registers them). Optional; must not throw
   * for an id the attacher never saw.
   */
  died?(containerId: string): Promise<void>;
  /**
   * Free the container's addresses (container removed / died for good).
   * Called for EVERY container the daemon destroys (as Weave's router did on
   * Docker's `destroy` event), so an id the attacher never saw must be a no-op.
   * Stopping or restarting a container does not release: it keeps its addresses.
   */
  release(containerId: string): Promise<void>;
}

/** What the proxy knows about a container beyond its namespace. */
export interface AttachExtras {
  /** Its weaveDNS name (FQDN from Hostname + Domainname, within the DNS domain), if any. */
  name?: string;
}

/** weaveDNS as the proxy applies it to created containers (Weave's proxy behaviour). */
export interface ProxyDns {
  /** The DNS server address given to containers (HostConfig.Dns), "169.254.53.53". */
  server: string;
  /** The domain (HostConfig.DnsSearch, Domainname), "weave.local." */
  domain: string;
}

/** Options of {@link startProxy} (see `proxy/proxy.ts`). */
export interface ProxyOptions {
  /** Where to listen: `'unix:///path'` or `'tcp://host:port'` (port 0 picks one). */
  listen: string[];
  /** The real Docker daemon: `'unix:///var/run/docker.sock'` or `'tcp://host:port'`. */
  dockerHost: string;
  attacher: ProxyAttacher;
  /** Weave's `--no-default-ipalloc`: attach only containers that set WEAVE_CIDR. */
  noDefaultIpalloc: boolean;
  /** Host path of the static weavewait binary, bind-mounted read-only at `/w/w`. */
  weavewaitPath: string;
  /** One line per event worth a log entry (no trailing newline). */
  log: (line: string) => void;
  /**
   * --proxy-insecure-tcp: allow a tcp:// listen address that is not loopback (the
   * Docker API — root on this host — served to the network without TLS). Default false.
   */
  insecureTcp?: boolean;
  /**
   * TLS on the tcp:// listeners (--tls / --tlsverify with --tlscacert, --tlscert,
   * --tlskey; see proxy/tls.ts). The files are read once at start. Absent: plain HTTP.
   */
  tls?: ProxyTlsFiles;
  /** weaveDNS: containers get its server and search domain, and a hostname from --name. Absent: off. */
  dns?: ProxyDns;
}

/** A running proxy. */
export interface ProxyHandle {
  /** Stop listening, end client connections and the event subscription. */
  close(): Promise<void>;
  /** The listen addresses in effect, e.g. `['unix:///run/weave/weave.sock', 'tcp://0.0.0.0:12375']`. */
  addresses: string[];
  /** TLS on the tcp listeners: 'verify' (client certificates required), 'tls', or undefined (plain). */
  tls?: 'tls' | 'verify';
  /** TLS handshakes refused so far (no or a foreign client certificate, plain HTTP). */
  tlsRefused?: () => number;
}

/** A listen or daemon address that is not `unix:///path` or `tcp://host:port`. */
export class ProxyAddressError extends Error {
  override name = 'ProxyAddressError';
}

/** A WEAVE_CIDR value that is not a list of `net:CIDR`, `net:default`, `ip:CIDR`, `CIDR` or `none`. */
export class WeaveCidrError extends Error {
  override name = 'WeaveCidrError';
}
