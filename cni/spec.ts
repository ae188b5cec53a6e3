/**
 * The pure part of the `weave-net` CNI plugin: reading what the container runtime
 * hands a plugin (the network configuration on stdin, the CNI_* environment), and
 * writing what it expects back (a result, a version answer, an error), per the CNI
 * specification (github.com/containernetworking/cni, SPEC.md, versions 0.3.0, 0.3.1,
 * 0.4.0 and 1.0.0; STATUS and GC of 1.1.0 are answered too).
 *
 * No sockets, files or clocks here: every function takes bytes or plain objects and
 * returns plain objects or throws a CniError, so it can be unit-tested and fuzzed.
 */
/** The cniVersions this plugin speaks (VERSION's `supportedVersions`). */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

/**
 * Well-known error codes of the spec ("Error" section); 100+ are ours.
 * 11 "try again later" is what a runtime may retry.
 */
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  /** 1.1 STATUS: the plugin cannot serve ADDs now. */
  PluginNotAvailable: 50,
  /** Ours: the router's IPAM could not give an address (range full, no consensus yet). */
  IpamFailure: 100,
  /** Ours: the router refused or failed the request. */
  RouterFailure: 101,
} as const;

/** An error the plugin prints as CNI error JSON and exits 1 with. */
export class CniError extends Error {
  constructor(readonly code: number, message: string, readonly details = '') {
    super(message);
  }
}

/** The spec's error object: `{cniVersion, code, msg, details?}`. */
export function errorJson(err: unknown, cniVersion = '1.0.0'): { cniVersion: string; code: number; msg: string; details?: string } {
  const e = err instanceof CniError ? err : new CniError(CniCode.IoFailure, 'internal error in weave-net', oneLine((err as Error)?.message ?? String(err)));
  const out: { cniVersion: string; code: number; msg: string; details?: string } = { cniVersion, code: e.code, msg: oneLine(e.message) };
  if (e.details) out.details = oneLine(e.details);
  return out;
}

function oneLine(s: string): string {
  // JSON.stringify escapes control characters; also keep it one short line.
  return s.split('\n')[0].slice(0, 500);
}

/**
 * A value from the runtime, quoted for an error message: at most `max` characters in
 * double quotes, control characters (C0, DEL, C1) escaped as \uXXXX (found by fuzzing:
 * a cniVersion holding DEL was echoed raw).
 */
function shown(v: string, max: number): string {
  return JSON.stringify(v.slice(0, max)).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The plugin's network configuration (one entry of a conflist, with name/cniVersion filled in). */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  /** Weave's: let a pod reach itself through a service (hairpin on the host veth). */
  hairpinMode: boolean;
  /** Ours: allocate in this subnet (`net:CIDR` or CIDR) instead of the default subnet. */
  subnet?: string;
  /** Ours: the router's state directory, whose weaver.sock the plugin talks to. */
  stateDir?: string;
  /** Ours: give the pod a default route through the host's `weave expose` address (default true). */
  defaultRoute: boolean;
  /** Nested IPAM section (only `type` is looked at; when `weave-ipam`, the router's IPAM is used). */
  ipam?: { type?: string };
  /** DNS to put in the result (passed through). */
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  /** The previous result, for CHECK and DEL (0.4.0+). */
  prevResult?: CniResult;
  /** Runtime config (e.g. podman passes none we need). */
  runtimeConfig?: Record<string, unknown>;
}

/** Largest configuration accepted on stdin. */
export const MAX_CONF_BYTES = 64 * 1024;

/*
 * The conf's schema, checked by hand rather than with a JSON-schema library: the plugin
 * is exec'd once per pod, and compiling a schema at every start cost more than the rest
 * of the plugin's own work (issue #15's start-latency profile). The checks are the same
 * as the schema they replace: known fields must have the right type and bound, unknown
 * fields are allowed (a conflist entry may carry other plugins' or runtimes' keys, e.g.
 * `capabilities`, `args`), as JSON Schema's default additionalProperties.
 */
type Check = (v: unknown, at: string) => void;

function invalid(at: string, what: string): never {
  throw new CniError(CniCode.InvalidConfig, `invalid network configuration: ${at} ${what}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A string of at most `max` UTF-16 units (at least `min`), matching `re` if given. */
function str(max: number, min = 0, re?: RegExp, shape?: string): Check {
  return (v, at) => {
    if (typeof v !== 'string') invalid(at, 'must be a string');
    if (v.length > max) invalid(at, `must be at most ${max} characters`);
    if (v.length < min) invalid(at, min === 1 ? 'must not be empty' : `must be at least ${min} characters`);
    if (re && !re.test(v)) invalid(at, `must be ${shape}`);
  };
}

const bool: Check = (v, at) => {
  if (typeof v !== 'boolean') invalid(at, 'must be true or false');
};

/** A JSON array of at most `max` items, each checked. */
function list(max: number, item: Check): Check {
  return (v, at) => {
    if (!Array.isArray(v)) invalid(at, 'must be an array');
    if (v.length > max) invalid(at, `must have at most ${max} items`);
    v.forEach((x, i) => item(x, `${at}/${i}`));
  };
}

/** A JSON object whose listed fields, when present, pass their check; other fields pass. */
function obj(fields: Record<string, Check> = {}, required: string[] = []): Check {
  return (v, at) => {
    if (!isObject(v)) invalid(at || 'conf', 'must be an object');
    for (const r of required) if (!Object.hasOwn(v, r)) invalid(at || 'conf', `must have required property '${r}'`);
    for (const [k, check] of Object.entries(fields)) if (Object.hasOwn(v, k)) check(v[k], `${at}/${k}`);
  };
}

const checkConf = obj({
  cniVersion: str(16),
  name: str(128, 1, /^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, _ . - (starting with a letter or digit)'),
  type: str(64, 1),
  hairpinMode: bool,
  subnet: str(64),
  stateDir: str(1024, 0, /^\//, 'an absolute path'),
  defaultRoute: bool,
  ipam: obj({ type: str(64) }),
  dns: obj({
    nameservers: list(16, str(64)),
    domain: str(253),
    search: list(16, str(253)),
    options: list(16, str(64)),
  }),
  prevResult: obj(),
  runtimeConfig: obj(),
}, ['cniVersion', 'name', 'type']);

/**
 * Parse the network configuration a runtime writes on the plugin's stdin.
 * @param bytes at most MAX_CONF_BYTES of UTF-8 JSON
 * @returns the conf with defaults filled (hairpinMode false, defaultRoute true)
 * @throws CniError DecodeFailure (not JSON, too big), InvalidConfig (fields),
 *   IncompatibleVersion (a cniVersion we do not speak)
 */
export function parseConf(bytes: Uint8Array): NetConf {
  if (bytes.length > MAX_CONF_BYTES) throw new CniError(CniCode.DecodeFailure, `network configuration is ${bytes.length} bytes, more than ${MAX_CONF_BYTES}: check the conflist`);
  let j: unknown;
  try {
    j = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new CniError(CniCode.DecodeFailure, 'network configuration on stdin is not JSON: check the conflist', (err as Error).message);
  }
  checkConf(j, '');
  const c = j as Partial<NetConf> & { cniVersion: string; name: string; type: string };
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(c.cniVersion)) {
    throw new CniError(CniCode.IncompatibleVersion, `cniVersion ${shown(c.cniVersion, 16)} is not supported: use one of ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  if (c.subnet !== undefined) c.subnet = parseSubnet(c.subnet, 'subnet');
  return { ...c, hairpinMode: c.hairpinMode ?? false, defaultRoute: c.defaultRoute ?? true } as NetConf;
}

const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** `net:10.40.0.0/16`, `10.40.0.0/16` → `10.40.0.0/16`; throws InvalidConfig naming `what`. */
export function parseSubnet(s: string, what: string): string {
  const v = s.startsWith('net:') ? s.slice(4) : s;
  const m = CIDR_RE.exec(v);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) {
    throw new CniError(CniCode.InvalidConfig, `invalid ${what} ${shown(s, 64)}: want net:CIDR like net:10.40.0.0/16`);
  }
  return m.slice(1, 5).map(Number).join('.') + '/' + Number(m[5]);
}

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';

/** What the CNI_* environment says, validated. */
export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS as key/value pairs (K8S_POD_NAME, K8S_POD_NAMESPACE, …). */
  args: Record<string, string>;
  path: string[];
}

/**
 * Read the CNI_* variables (SPEC.md "Parameters"). VERSION, STATUS and GC need only
 * CNI_COMMAND; ADD/CHECK need container id, netns and ifname; DEL needs id and ifname
 * (its netns may be gone, then CNI_NETNS may be empty).
 * @throws CniError InvalidEnvironment with the variable's name
 */
export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env.CNI_COMMAND ?? '';
  if (!['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'].includes(command)) {
    throw new CniError(CniCode.InvalidEnvironment, `CNI_COMMAND ${shown(command, 16)} is not ADD, DEL, CHECK, VERSION, STATUS or GC: weave-net is a CNI plugin, run by a container runtime`);
  }
  const out: CniEnv = { command: command as CniCommand, containerId: '', netns: '', ifname: '', args: {}, path: (env.CNI_PATH ?? '').split(':').filter(Boolean) };
  if (command === 'VERSION' || command === 'STATUS' || command === 'GC') return out;
  const id = env.CNI_CONTAINERID ?? '';
  // The spec: alphanumeric first, then alphanumerics, '_', '.' and '-'.
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/.test(id)) throw new CniError(CniCode.InvalidEnvironment, 'CNI_CONTAINERID is missing or not [A-Za-z0-9][A-Za-z0-9_.-]* (at most 255 characters)');
  out.containerId = id;
  const ifname = env.CNI_IFNAME ?? '';
  // Linux interface names: 1–15 bytes, not '.', '..', no '/', ':' or whitespace.
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(ifname) || ifname === '.' || ifname === '..') throw new CniError(CniCode.InvalidEnvironment, 'CNI_IFNAME is missing or not a valid interface name (1-15 of A-Za-z0-9_.-)');
  out.ifname = ifname;
  const netns = env.CNI_NETNS ?? '';
  if (netns && (!netns.startsWith('/') || netns.length > 4096 || netns.includes('\0'))) throw new CniError(CniCode.InvalidEnvironment, 'CNI_NETNS must be an absolute path to a network namespace file');
  if (!netns && command !== 'DEL') throw new CniError(CniCode.InvalidEnvironment, `CNI_NETNS is required for ${command}`);
  out.netns = netns;
  out.args = parseArgs(env.CNI_ARGS ?? '');
  return out;
}

/** CNI_ARGS: "K=V;K=V" (at most 64 pairs, 4 KiB). Unknown keys are kept, not refused. */
export function parseArgs(s: string): Record<string, string> {
  if (s.length > 4096) throw new CniError(CniCode.InvalidEnvironment, 'CNI_ARGS is longer than 4096 characters');
  const out: Record<string, string> = Object.create(null);
  const parts = s.split(';').filter(Boolean);
  if (parts.length > 64) throw new CniError(CniCode.InvalidEnvironment, 'CNI_ARGS has more than 64 pairs');
  for (const p of parts) {
    const i = p.indexOf('=');
    if (i <= 0) throw new CniError(CniCode.InvalidEnvironment, `CNI_ARGS item ${shown(p, 32)} is not KEY=VALUE`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

/**
 * The endpoint name to record from a pod's CNI_ARGS: K8S_POD_NAME (the kubelet's pod
 * name; podman 4 passes the container's name there too), lower-cased (DNS names are
 * case-insensitive, RFC 4343), when it is a DNS label (RFC 1123: 1–63 of a-z0-9-, not
 * starting or ending with '-'); else undefined (the pod gets no name).
 */
export function podName(args: Record<string, string>): string | undefined {
  const n = args.K8S_POD_NAME?.toLowerCase();
  return n && /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(n) ? n : undefined;
}

/** What the router did on ADD (the body of its POST /cni/add answer). */
export interface AddReply {
  /** Addresses given, "10.32.0.3/12". */
  cidrs: string[];
  /** [IPv6] The IPv6 addresses derived from them ("fd00:77::a20:3/108"), with --ipalloc-range6. */
  cidrs6?: string[];
  /** MAC of the container interface. */
  mac: string;
  /** Host end of the veth (on the `weave` bridge). */
  hostVeth: string;
  hostMac?: string;
  /** Gateway for the default route (the host's `weave expose` address in the subnet), if any. */
  gateway?: string;
  /** weaveDNS, when it runs and containers reach it: its address and the search domain ("weave.local"). */
  dns?: { nameservers: string[]; search?: string[] };
}

export interface CniResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number; version?: '4' | '6' }>;
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: NetConf['dns'];
}

/** The router's `dns` answer if it has the right shape (strings, bounded), else undefined. */
export function replyDns(d: unknown): AddReply['dns'] {
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.length <= 16 && v.every((x) => typeof x === 'string' && x.length <= 253);
  if (!isObject(d) || !strings(d.nameservers) || (d.search !== undefined && !strings(d.search))) return undefined;
  return { nameservers: [...d.nameservers], ...(d.search ? { search: [...d.search] } : {}) };
}

/**
 * The ADD result for the conf's cniVersion (SPEC.md "Success"): interfaces [host veth,
 * container interface with its sandbox], ips pointing at the container interface,
 * routes (a default route via the gateway when there is one), dns from the conf, else
 * weaveDNS's (a runtime may write it into the pod's resolv.conf: podman does; the
 * kubelet sets pod DNS itself).
 * 0.3.x and 0.4.0 carry `"version": "4"` (or "6") in each ip; 1.0.0+ drop it (the
 * address says its family). IPv6 addresses (`cidrs6`, --ipalloc-range6) follow the IPv4
 * ones, without a gateway (the host is not on the IPv6 overlay).
 */
export function buildResult(conf: NetConf, env: CniEnv, r: AddReply): CniResult {
  const v = conf.cniVersion;
  const old = v === '0.3.0' || v === '0.3.1' || v === '0.4.0';
  const ips: NonNullable<CniResult['ips']> = r.cidrs.map((address) => ({ ...(old ? { version: '4' as const } : {}), address, ...(r.gateway ? { gateway: r.gateway } : {}), interface: 1 }));
  for (const address of Array.isArray(r.cidrs6) ? r.cidrs6.filter((c) => typeof c === 'string') : []) ips.push({ ...(old ? { version: '6' as const } : {}), address, interface: 1 });
  return {
    cniVersion: v,
    interfaces: [{ name: r.hostVeth, ...(r.hostMac ? { mac: r.hostMac } : {}) }, { name: env.ifname, mac: r.mac, sandbox: env.netns }],
    ips,
    routes: r.gateway ? [{ dst: '0.0.0.0/0', gw: r.gateway }] : [],
    dns: conf.dns ?? replyDns(r.dns) ?? {},
  };
}

/** Result of the standalone IPAM type (`weave-ipam`): ips (no interface index), routes, dns. */
export function buildIpamResult(conf: NetConf, cidrs: string[]): CniResult {
  const old = conf.cniVersion === '0.3.0' || conf.cniVersion === '0.3.1' || conf.cniVersion === '0.4.0';
  return { cniVersion: conf.cniVersion, ips: cidrs.map((address) => ({ ...(old ? { version: '4' as const } : {}), address })), routes: [], dns: conf.dns ?? {} };
}

/** VERSION's answer (SPEC.md "VERSION"). */
export function versionResult(cniVersion = '1.0.0'): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/**
 * The subnet to allocate in: the pod's annotation-derived `WEAVE_CIDR` in CNI_ARGS
 * (`net:CIDR`) wins over the conf's `subnet`; undefined = the router's default subnet.
 */
export function chooseSubnet(conf: NetConf, env: CniEnv): string | undefined {
  const a = env.args.WEAVE_CIDR;
  if (a) return parseSubnet(a, 'WEAVE_CIDR in CNI_ARGS');
  return conf.subnet;
}

/** Map a router API error (status, one-line message) to a CniError. */
export function routerError(status: number, msg: string): CniError {
  if (/IPAM|range|address|subnet|consensus|allocat/i.test(msg)) return new CniError(status === 503 ? CniCode.TryAgainLater : CniCode.IpamFailure, `tsweave IPAM: ${msg}`);
  if (status === 503) return new CniError(CniCode.TryAgainLater, `tsweave router: ${msg}`);
  return new CniError(CniCode.RouterFailure, `tsweave router: ${msg}`);
}
