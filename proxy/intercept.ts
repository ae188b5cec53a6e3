/**
 * Pure decisions of the Docker API proxy: which requests to intercept, how to
 * rewrite `POST /containers/create` so the container's process waits for the
 * weave interface, and which WEAVE_CIDR words to hand to the attacher.
 *
 * The design follows Weave Net's proxy: an injected "weavewait" entrypoint
 * (bind-mounted binary) that blocks until `ethwe` is up, and attachment right
 * after the daemon starts the container. Docker's own rules for combining the
 * image's and the request's ENTRYPOINT/CMD (Docker Engine API, "Create a
 * container"; the daemon merges them only when the request sets no
 * entrypoint) are reproduced here so the injected entrypoint preserves them.
 *
 * No I/O here: callers pass parsed JSON in and get plain objects back.
 */
import { ProxyAddressError, WeaveCidrError } from './types.js';

/** Where weavewait is mounted inside containers (Weave's path). */
export const WEAVEWAIT_MOUNT = '/w/w';

// ---------------------------------------------------------------------------
// Addresses

/** A parsed `unix:///path` or `tcp://host:port` address. */
export type DockerAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/**
 * Parse a Docker-style address. Accepts `unix:///abs/path`, `tcp://host:port`
 * (host may be an `[IPv6]` literal; port 0..65535) and, for convenience, a bare
 * absolute path (taken as a unix socket).
 * @throws ProxyAddressError naming the address and what is wrong.
 */
export function parseDockerAddress(addr: string): DockerAddress {
  if (addr.startsWith('/')) return { kind: 'unix', path: addr };
  if (addr.startsWith('unix://')) {
    const path = addr.slice('unix://'.length);
    if (!path.startsWith('/')) throw new ProxyAddressError(`bad address '${addr}': unix socket path must be absolute (unix:///path)`);
    return { kind: 'unix', path };
  }
  if (addr.startsWith('tcp://')) {
    const rest = addr.slice('tcp://'.length).replace(/\/$/, '');
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:/[\]]*):(\d{1,5})$/.exec(rest);
    if (!m) throw new ProxyAddressError(`bad address '${addr}': expected tcp://host:port`);
    const port = Number(m[2]);
    if (port > 65535) throw new ProxyAddressError(`bad address '${addr}': port ${port} is out of range`);
    let host = m[1];
    if (host.startsWith('[')) host = host.slice(1, -1);
    return { kind: 'tcp', host: host === '' ? '0.0.0.0' : host, port };
  }
  throw new ProxyAddressError(`bad address '${addr}': expected unix:///path or tcp://host:port`);
}

/** The canonical string form of an address (`unix:///p`, `tcp://h:p`, IPv6 hosts bracketed). */
export function formatDockerAddress(a: DockerAddress): string {
  if (a.kind === 'unix') return `unix://${a.path}`;
  return `tcp://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/**
 * Why a listen address must be refused (here, not in proxy.ts, so `weave launch` checks it
 * without loading the proxy's HTTP stack): a tcp:// address that is not loopback
 * serves the Docker API (root on this host) to the network, which is acceptable only
 * when clients must prove who they are (`tls` 'verify': --tlsverify, client
 * certificates signed by --tlscacert). TLS without client certificates (--tls) only
 * encrypts: whoever reaches the port is still root. Null when allowed (unix sockets,
 * loopback, --tlsverify, or `insecure`: --proxy-insecure-tcp).
 */
export function exposedTcpAddress(a: DockerAddress, insecure: boolean, tls?: 'tls' | 'verify'): string | null {
  if (a.kind !== 'tcp' || insecure || tls === 'verify') return null;
  const h = a.host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || /^127\./.test(h)) return null;
  if (tls === 'tls') {
    return `proxy: -H ${formatDockerAddress(a)} with --tls but without --tlsverify would serve the Docker API (root on this host) to anyone who reaches it: add --tlsverify --tlscacert CA, or --proxy-insecure-tcp`;
  }
  return `proxy: -H ${formatDockerAddress(a)} would serve the Docker API (root on this host) to the network without TLS: use --tlsverify (client certificates), a loopback address or a unix socket, or add --proxy-insecure-tcp`;
}

// ---------------------------------------------------------------------------
// Request routing

/** What the proxy does with one request. */
export type RequestRoute =
  | { kind: 'create' }
  | { kind: 'start'; container: string }
  | { kind: 'restart'; container: string }
  | { kind: 'forward' };

const CREATE_RE = /^(?:\/v[0-9.]+)?\/containers\/create$/;
const START_RE = /^(?:\/v[0-9.]+)?\/containers\/([^/]+)\/(start|restart)$/;

/**
 * Classify a request by method and URL (`/v1.41/containers/create?name=x`).
 * Only POSTs are intercepted; everything else is forwarded untouched.
 */
export function routeRequest(method: string | undefined, url: string | undefined): RequestRoute {
  if (method !== 'POST' || url === undefined) return { kind: 'forward' };
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (CREATE_RE.test(path)) return { kind: 'create' };
  const m = START_RE.exec(path);
  if (m) {
    let container: string;
    try {
      container = decodeURIComponent(m[1]);
    } catch {
      return { kind: 'forward' }; // let the daemon reject the malformed escape
    }
    return { kind: m[2] === 'start' ? 'start' : 'restart', container };
  }
  return { kind: 'forward' };
}

// ---------------------------------------------------------------------------
// WEAVE_CIDR

const IPV4_CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

function checkCidr(word: string, cidr: string): void {
  const m = IPV4_CIDR_RE.exec(cidr);
  if (!m) throw new WeaveCidrError(`WEAVE_CIDR word '${word}': '${cidr}' is not an IPv4 CIDR like 10.32.0.0/12`);
  for (let i = 1; i <= 4; i++) {
    if (Number(m[i]) > 255) throw new WeaveCidrError(`WEAVE_CIDR word '${word}': octet ${m[i]} is above 255`);
  }
  if (Number(m[5]) > 32) throw new WeaveCidrError(`WEAVE_CIDR word '${word}': prefix length ${m[5]} is above 32`);
}

/**
 * Split and check a WEAVE_CIDR value (Weave's syntax): space-separated
 * `net:CIDR`, `net:default`, `ip:CIDR` or a bare `CIDR`; `none` alone means
 * "do not attach" (returned as `null`); empty means the default subnet (`[]`).
 * @throws WeaveCidrError on an unknown word or a malformed CIDR.
 */
export function parseWeaveCidr(value: string): string[] | null {
  const words = value.split(/\s+/).filter((w) => w !== '');
  if (words.length === 1 && words[0] === 'none') return null;
  for (const w of words) {
    if (w === 'none') throw new WeaveCidrError(`WEAVE_CIDR '${value}': 'none' cannot be combined with other words`);
    if (w === 'net:default') continue;
    if (w.startsWith('net:')) checkCidr(w, w.slice(4));
    else if (w.startsWith('ip:')) checkCidr(w, w.slice(3));
    else if (/^\d/.test(w)) checkCidr(w, w);
    else throw new WeaveCidrError(`WEAVE_CIDR word '${w}' is not net:CIDR, net:default, ip:CIDR, CIDR or none`);
  }
  return words;
}

/** The value of `KEY` in a Docker `Env` list (`["K=V", ...]`); the last entry wins; undefined if absent. */
export function envValue(env: unknown, key: string): string | undefined {
  if (!Array.isArray(env)) return undefined;
  let found: string | undefined;
  const prefix = `${key}=`;
  for (const e of env) {
    if (typeof e === 'string' && e.startsWith(prefix)) found = e.slice(prefix.length);
  }
  return found;
}

/**
 * The attach decision for an environment: `{ attach: true, specs }` or
 * `{ attach: false, reason }`. With `noDefaultIpalloc`, only containers that
 * set WEAVE_CIDR (to something other than `none`) are attached.
 * @throws WeaveCidrError on a malformed WEAVE_CIDR.
 */
export function attachDecision(
  env: unknown,
  noDefaultIpalloc: boolean,
): { attach: true; specs: string[] } | { attach: false; reason: string } {
  const v = envValue(env, 'WEAVE_CIDR');
  if (v === undefined) {
    if (noDefaultIpalloc) return { attach: false, reason: 'no WEAVE_CIDR and --no-default-ipalloc' };
    return { attach: true, specs: [] };
  }
  const specs = parseWeaveCidr(v);
  if (specs === null) return { attach: false, reason: 'WEAVE_CIDR=none' };
  if (specs.length === 0 && noDefaultIpalloc) return { attach: false, reason: 'empty WEAVE_CIDR and --no-default-ipalloc' };
  return { attach: true, specs };
}

/**
 * Whether a network mode shares another namespace (`host`, `container:X`),
 * in which case the container is never attached: `host` would put `ethwe`
 * into the host, and `container:X` gets X's interfaces.
 */
export function networkModeSkipsAttach(mode: unknown): string | null {
  if (mode === 'host') return '--net=host';
  if (typeof mode === 'string' && mode.startsWith('container:')) return `--net=${mode} shares that container's network`;
  return null;
}

// ---------------------------------------------------------------------------
// Create rewrite

/** The parts of an image's `Config` the rewrite needs (from `GET /images/NAME/json`). */
export interface ImageConfig {
  Entrypoint?: unknown;
  Cmd?: unknown;
  Env?: unknown;
}

/** Docker accepts a string or an array of strings for Entrypoint/Cmd ("StrSlice"); null/absent stays null. */
function strSlice(v: unknown, field: string): string[] | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw new CreateBodyError(`${field} must be a string or an array of strings`);
}

/** A create request body the proxy cannot rewrite (it is then forwarded unchanged). */
export class CreateBodyError extends Error {
  override name = 'CreateBodyError';
}

/** The result of {@link planCreate}. */
export type CreatePlan =
  | { action: 'inject'; body: Record<string, unknown>; specs: string[]; command: string[] }
  | { action: 'skip'; reason: string };

/**
 * The entrypoint+command the daemon would run, by Docker's merge rule: when
 * the request sets no (or an empty) entrypoint, the request's Cmd — or the
 * image's when the request's is empty — is used, and the image's entrypoint
 * applies only when the request's is absent (an empty one clears it; the CLI
 * sends `[""]` for `--entrypoint ""`). A non-empty request entrypoint drops
 * the image's Cmd.
 */
export function effectiveCommand(
  reqEntrypoint: unknown,
  reqCmd: unknown,
  image: ImageConfig | null,
): { entrypoint: string[]; cmd: string[] } {
  let ep = strSlice(reqEntrypoint, 'Entrypoint');
  if (ep !== null && ep.length === 1 && ep[0] === '') ep = [];
  let cmd = strSlice(reqCmd, 'Cmd');
  if (ep === null || ep.length === 0) {
    if (cmd === null || cmd.length === 0) cmd = image ? strSlice(image.Cmd, 'image Cmd') : null;
    if (ep === null) ep = image ? strSlice(image.Entrypoint, 'image Entrypoint') : null;
  }
  return { entrypoint: ep ?? [], cmd: cmd ?? [] };
}

/**
 * Decide how to rewrite a `POST /containers/create` body (already parsed).
 *
 * Injects weavewait unless the network mode shares a namespace, WEAVE_CIDR is
 * `none`, or `--no-default-ipalloc` applies; the image's Env counts for
 * WEAVE_CIDR too (the request's entries override it, as the daemon merges
 * them). The rewritten body runs `/w/w <entrypoint...> <cmd...>` with the
 * same argv the daemon would otherwise have run, and bind-mounts
 * `weavewaitPath` read-only at `/w/w`. Already-injected bodies are left alone.
 *
 * @param image the image's Config, or null when unknown (then only the request's fields count).
 * @throws WeaveCidrError for a malformed WEAVE_CIDR; CreateBodyError for a body that is not a create request object.
 */
export function planCreate(
  body: unknown,
  image: ImageConfig | null,
  opts: { noDefaultIpalloc: boolean; weavewaitPath: string; dns?: { server: string; domain: string }; name?: string },
): CreatePlan {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new CreateBodyError('create request body is not a JSON object');
  }
  const b = body as Record<string, unknown>;
  const hc = b.HostConfig;
  if (hc !== undefined && hc !== null && (typeof hc !== 'object' || Array.isArray(hc))) {
    throw new CreateBodyError('HostConfig is not an object');
  }
  const hostConfig = (hc ?? {}) as Record<string, unknown>;
  const skipNet = networkModeSkipsAttach(hostConfig.NetworkMode);
  if (skipNet) return { action: 'skip', reason: skipNet };

  const env = mergeEnv(image?.Env, b.Env);
  const decision = attachDecision(env, opts.noDefaultIpalloc);
  if (!decision.attach) return { action: 'skip', reason: decision.reason };

  const { entrypoint, cmd } = effectiveCommand(b.Entrypoint, b.Cmd, image);
  // An image committed from a proxied container already starts with /w/w: do not wrap it twice.
  const wrapped = entrypoint[0] === WEAVEWAIT_MOUNT ? entrypoint : [WEAVEWAIT_MOUNT, ...entrypoint];
  const command = [...wrapped.slice(1), ...cmd];
  if (command.length === 0) return { action: 'skip', reason: 'no command (the daemon will reject it)' };

  const binds = hostConfig.Binds;
  if (binds !== undefined && binds !== null && !(Array.isArray(binds) && binds.every((x) => typeof x === 'string'))) {
    throw new CreateBodyError('HostConfig.Binds is not an array of strings');
  }
  const oldBinds = (binds as string[] | null | undefined) ?? [];
  const newBinds = hasWeavewait({ HostConfig: { Binds: oldBinds } })
    ? oldBinds
    : [...oldBinds, `${opts.weavewaitPath}:${WEAVEWAIT_MOUNT}:ro`];
  // A non-empty Entrypoint stops the daemon from merging the image's Cmd again,
  // so Cmd carries the effective command (the image's when the request had none).
  let out: Record<string, unknown> = {
    ...b,
    Entrypoint: wrapped,
    Cmd: cmd,
    HostConfig: { ...hostConfig, Binds: newBinds },
  };
  if (opts.dns) out = applyDns(out, opts.name, opts.dns);
  return { action: 'inject', body: out, specs: decision.specs, command };
}

/** Docker's Env merge: image entries, overridden key by key by the request's. */
export function mergeEnv(imageEnv: unknown, reqEnv: unknown): string[] {
  const out = new Map<string, string>();
  for (const list of [imageEnv, reqEnv]) {
    if (!Array.isArray(list)) continue;
    for (const e of list) {
      if (typeof e !== 'string') continue;
      const eq = e.indexOf('=');
      out.set(eq < 0 ? e : e.slice(0, eq), e);
    }
  }
  return [...out.values()];
}

// ---------------------------------------------------------------------------
// Start / events

/** The parts of `GET /containers/ID/json` the proxy reads. */
export interface ContainerInspect {
  Id?: unknown;
  Name?: unknown;
  State?: { Pid?: unknown; Running?: unknown } | null;
  Config?: { Env?: unknown; Hostname?: unknown; Domainname?: unknown } | null;
  HostConfig?: { NetworkMode?: unknown; Binds?: unknown } | null;
  Mounts?: unknown;
}

/** Whether a container was created through the proxy with weavewait (a mount at /w/w, or a bind naming it). */
export function hasWeavewait(c: { Mounts?: unknown; HostConfig?: { Binds?: unknown } | null }): boolean {
  if (Array.isArray(c.Mounts)) {
    for (const m of c.Mounts) {
      if (m && typeof m === 'object' && (m as { Destination?: unknown }).Destination === WEAVEWAIT_MOUNT) return true;
    }
  }
  const binds = c.HostConfig?.Binds;
  if (Array.isArray(binds)) {
    for (const b of binds) {
      if (typeof b === 'string' && (b.endsWith(`:${WEAVEWAIT_MOUNT}`) || b.includes(`:${WEAVEWAIT_MOUNT}:`))) return true;
    }
  }
  return false;
}

/** The result of {@link planStart}. */
export type StartPlan = { action: 'attach'; id: string; pid: number; specs: string[]; name?: string } | { action: 'skip'; reason: string };

const DNS_LABEL_RE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * weaveDNS on create (Weave's proxy behaviour): unless the request set them, the
 * container gets `HostConfig.Dns = [server]` and `HostConfig.DnsSearch = [domain]`; a
 * container created with a name (`?name=` of the create request) and no hostname gets
 * `Hostname = NAME`, `Domainname = domain` (so its FQDN, which weaveDNS registers at
 * start, is NAME.weave.local). A name that is not a DNS label is left alone. Pure.
 */
export function applyDns(body: Record<string, unknown>, name: string | undefined, dns: { server: string; domain: string }): Record<string, unknown> {
  const hc = (body.HostConfig ?? {}) as Record<string, unknown>;
  const empty = (v: unknown): boolean => v === undefined || v === null || (Array.isArray(v) && v.length === 0);
  const out: Record<string, unknown> = { ...body, HostConfig: { ...hc } };
  const outHc = out.HostConfig as Record<string, unknown>;
  if (empty(hc.Dns)) outHc.Dns = [dns.server];
  if (empty(hc.DnsSearch)) outHc.DnsSearch = [dns.domain];
  const n = name?.replace(/^\//, '');
  if ((body.Hostname === undefined || body.Hostname === '' || body.Hostname === null) && n && DNS_LABEL_RE.test(n)) {
    out.Hostname = n;
    out.Domainname = dns.domain.replace(/\.$/, '');
  }
  return out;
}

/**
 * The weaveDNS name of an inspected container: Config.Hostname + '.' + Config.Domainname
 * (or a Hostname that is already an FQDN), lower case with a trailing dot, when it lies
 * in `domain` ("weave.local."); undefined otherwise (Docker's default hostname, the id
 * prefix, is not registered).
 */
export function dnsNameOf(c: ContainerInspect, domain: string): string | undefined {
  const h = typeof c.Config?.Hostname === 'string' ? c.Config.Hostname : '';
  const d = typeof c.Config?.Domainname === 'string' ? c.Config.Domainname : '';
  if (!h || h.length > 253 || d.length > 253) return undefined;
  const fqdn = (d ? `${h}.${d}` : h).toLowerCase().replace(/\.$/, '') + '.';
  const dom = domain.toLowerCase();
  if (!fqdn.endsWith('.' + dom) || fqdn.length <= dom.length + 1) return undefined;
  if (!fqdn.slice(0, -1).split('.').every((l) => DNS_LABEL_RE.test(l))) return undefined;
  return fqdn;
}

/**
 * Decide whether a started container needs attaching. Only containers with
 * weavewait are attached (their process is blocked waiting for `ethwe`); the
 * decision to attach was already made at create, so `--no-default-ipalloc`
 * is not consulted again, but WEAVE_CIDR=none still wins.
 * @throws WeaveCidrError for a malformed WEAVE_CIDR in the container's Env.
 */
export function planStart(c: ContainerInspect, dnsDomain?: string): StartPlan {
  const id = typeof c.Id === 'string' ? c.Id : '';
  if (id === '') return { action: 'skip', reason: 'inspect has no Id' };
  if (!hasWeavewait(c)) return { action: 'skip', reason: 'not created through the proxy (no weavewait)' };
  const skipNet = networkModeSkipsAttach(c.HostConfig?.NetworkMode);
  if (skipNet) return { action: 'skip', reason: skipNet };
  const pid = c.State?.Pid;
  if (c.State?.Running !== true || typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) {
    return { action: 'skip', reason: 'not running' };
  }
  const v = envValue(c.Config?.Env, 'WEAVE_CIDR');
  const specs = v === undefined ? [] : parseWeaveCidr(v);
  if (specs === null) return { action: 'skip', reason: 'WEAVE_CIDR=none' };
  const name = dnsDomain ? dnsNameOf(c, dnsDomain) : undefined;
  return { action: 'attach', id, pid, specs, ...(name ? { name } : {}) };
}

// ---------------------------------------------------------------------------
// JSON that keeps large integers exact

const BIG_MARK = '\u0000tsw-num:';

/**
 * JSON.parse that keeps integer literals JavaScript cannot hold exactly (16+
 * digits, e.g. memory limits near 2^63) as their literal text, so that
 * {@link stringifyJsonKeepingNumbers} writes them back unchanged. Docker's
 * create body may carry such int64 values; a plain round trip would corrupt them.
 * @throws SyntaxError as JSON.parse does.
 */
export function parseJsonKeepingNumbers(text: string): unknown {
  let out = '';
  let i = 0;
  const n = text.length;
  let last = 0;
  while (i < n) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22 /* " */) {
      i++;
      while (i < n && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c /* \ */ ? 2 : 1;
      i++;
      continue;
    }
    if (ch === 0x2d /* - */ || (ch >= 0x30 && ch <= 0x39)) {
      const start = i;
      i++;
      while (i < n && /[0-9eE+\-.]/.test(text[i])) i++;
      const lit = text.slice(start, i);
      if (/^-?\d{16,}$/.test(lit) && !Number.isSafeInteger(Number(lit))) {
        out += text.slice(last, start) + JSON.stringify(BIG_MARK + lit);
        last = i;
      }
      continue;
    }
    i++;
  }
  out += text.slice(last);
  return JSON.parse(out);
}

/** JSON.stringify that writes back the large integers kept by {@link parseJsonKeepingNumbers}. */
export function stringifyJsonKeepingNumbers(v: unknown): string {
  const s = JSON.stringify(v);
  return s.replace(/"\\u0000tsw-num:(-?\d+)"/g, '$1');
}
