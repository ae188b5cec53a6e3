/**
 * Underlay addresses of peers: IPv4 and IPv6 literals, host names, "host:port" text
 * with IPv6 in brackets (`[2001:db8::2]:6783`, RFC 3986 §3.2.2 / RFC 5952 §6), and the
 * canonical text forms the router compares, stores (targets.json), gossips and prints.
 *
 * Rules for "host:port" text (the same as Go's net.SplitHostPort, which weaveworks/mesh
 * used, plus a default port):
 *  - `[v6]` or `[v6]:port`: an IPv6 literal, with or without a port;
 *  - an unbracketed string with two or more colons is a whole IPv6 literal with the
 *    default port (`fd00:77::2`), never "address:port" (it would be ambiguous);
 *  - `host:port` or `host` otherwise (IPv4 literal or host name).
 * IPv6 zone indices (`fe80::1%eth0`) are refused: a zone names an interface of one host
 * and means nothing to the peers the address is gossiped to.
 *
 * Canonical forms: IPv4 dotted quad; IPv6 as RFC 5952 recommends (lower case, no
 * leading zeros, the longest run of two or more zero groups as "::", the first on a
 * tie) which is also what inet_ntop(3) and Node's socket.remoteAddress produce; an
 * IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address it maps.
 *
 * Pure: no sockets, no DNS.
 */
import { isIP, isIPv4, isIPv6 } from 'node:net';

/** Address family of an IP literal. */
export type IpFamily = 4 | 6;

/** Control characters shown as \xNN, and at most 100 characters, for error messages. */
export function printable(s: string): string {
  const t = s.length > 100 ? s.slice(0, 100) + '…' : s;
  return t.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * The 16 bytes of an IPv6 literal (embedded dotted quad allowed, no zone), or
 * undefined if `s` is not one.
 */
export function parseIpv6(s: string): Uint8Array | undefined {
  if (s.length > 45 || s.includes('%') || !isIPv6(s)) return undefined;
  let text = s;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    if (!isIPv4(last)) return undefined;
    for (const o of last.split('.')) tail.push(Number(o));
    // Two 16-bit groups' worth of bytes replace the dotted quad.
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] => (h === '' ? [] : h.split(':').map((g) => parseInt(g, 16)));
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return undefined;
  const all = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = all[i]!;
    if (!(g >= 0 && g <= 0xffff)) return undefined;
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  }
  if (tail.length === 4) out.set(tail, 12);
  return out;
}

/** True if the 16 bytes are an IPv4-mapped IPv6 address (::ffff:0:0/96, RFC 4291 §2.5.5.2). */
export function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** RFC 5952 text of 16 address bytes (IPv4-mapped ones as `::ffff:a.b.c.d`, as inet_ntop writes them). */
export function formatIpv6(b: Uint8Array): string {
  if (b.length !== 16) throw new RangeError('an IPv6 address is 16 bytes');
  if (isV4Mapped(b)) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i]! << 8) | b[2 * i + 1]!);
  return formatIpv6Groups(g);
}

/**
 * RFC 5952 text of eight 16-bit groups: lower-case hex, no leading zeros, the longest
 * run of two or more zero groups (the first on a tie) shortened to "::".
 */
export function formatIpv6Groups(g: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: readonly number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/**
 * The canonical text of an IP literal (see the module comment), or undefined if `s`
 * is not an IPv4 or IPv6 literal (host names, zones, junk).
 */
export function canonicalIp(s: string): string | undefined {
  if (isIPv4(s)) return s.split('.').map(Number).join('.');
  const b = parseIpv6(s);
  if (b === undefined) return undefined;
  if (isV4Mapped(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return formatIpv6(b);
}

/** 4 or 6 for an IP literal (after canonicalIp: an IPv4-mapped address is 4), 0 otherwise. */
export function ipFamily(s: string): 0 | IpFamily {
  const c = canonicalIp(s);
  return c === undefined ? 0 : (isIP(c) as IpFamily);
}

/**
 * "host:port", with an IPv6 host in brackets (`[2001:db8::2]:6783`). `host` is used
 * as given (pass canonical text).
 */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * An IPv4/IPv6 literal, or a host name of RFC 1123 labels (letters, digits, hyphens;
 * ≤ 63 per label, ≤ 253 in all). A dotted all-numeric name must be a valid IPv4
 * address, so "999.1.1.1" is refused rather than kept as a name that never resolves.
 * IPv6 literals with a zone (`%eth0`) are refused.
 */
export function isHostLike(h: string): boolean {
  if (h.includes('%')) return false;
  if (isIP(h) !== 0) return true;
  if (h.length > 253 || /^[\d.]+$/.test(h)) return false;
  return h.split('.').every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(l));
}

/**
 * Splits a peer address (rules in the module comment) into its host (canonical if an
 * IP literal, without brackets) and port (`defaultPort` when absent).
 * @throws Error with a one-line message (control characters escaped) for an empty
 *   string, a malformed or zoned literal, a bad host name, or a port outside 1..65535.
 */
export function parsePeerAddress(peer: string, defaultPort: number): { host: string; port: number; family: 0 | IpFamily } {
  const s = peer.trim();
  if (!s) throw new Error('empty peer address');
  const bad = (): Error => new Error(`invalid peer address "${printable(peer)}": want an IP address or host name, optionally with :port (IPv6 with a port as [ADDR]:PORT)`);
  if (s.includes('%')) throw new Error(`invalid peer address "${printable(peer)}": IPv6 zones (%IFACE) are not supported; use a global or unique-local address`);
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const m = /^\[([^\]]*)\](?::([^:]*))?$/.exec(s);
    if (!m || !isIPv6(m[1]!)) throw bad();
    host = m[1]!;
    portText = m[2];
  } else if ((s.match(/:/g) ?? []).length >= 2) {
    if (!isIPv6(s)) throw bad();
    host = s;
  } else {
    const i = s.indexOf(':');
    host = i < 0 ? s : s.slice(0, i);
    portText = i < 0 ? undefined : s.slice(i + 1);
    if (!isHostLike(host)) throw bad();
  }
  let port = defaultPort;
  if (portText !== undefined) {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port > 0 && port < 65536)) throw new Error(`invalid port in peer address "${printable(peer)}": want 1 to 65535`);
  }
  const ip = canonicalIp(host);
  return { host: ip ?? host, port, family: ip === undefined ? 0 : (isIP(ip) as IpFamily) };
}

/**
 * Splits a listen address such as --api-addr / --metrics-addr: `host:port`, `[v6]:port`,
 * `:port`, or a bare host (brackets removed). An empty host is `emptyHost`; a missing or
 * invalid port is `defPort`. Never throws (the listener reports a bad host).
 */
export function splitListenAddress(addr: string, defPort: number, emptyHost = '127.0.0.1'): [string, number] {
  let host = addr;
  let portText = '';
  const m = /^\[([^\]]*)\](?::(.*))?$/.exec(addr);
  if (m) {
    host = m[1]!;
    portText = m[2] ?? '';
  } else if ((addr.match(/:/g) ?? []).length === 1) {
    const i = addr.indexOf(':');
    host = addr.slice(0, i);
    portText = addr.slice(i + 1);
  }
  const port = /^\d{1,5}$/.test(portText) && Number(portText) > 0 && Number(portText) < 65536 ? Number(portText) : defPort;
  return [host || emptyHost, port];
}

/**
 * The unit a pre-authentication limit counts IPv6 sources in: their /64 prefix
 * (`2001:db8:1:2::/64`); undefined for IPv4 (and anything else), which is counted per
 * address. One IPv6 host typically controls a whole /64 (SLAAC, privacy addresses,
 * a cloud VM's delegated prefix; RFC 4291 interface identifiers are 64 bits, RFC 6177
 * hands end sites /48 to /64), so a per-address limit alone would not bound it.
 */
export function sourcePrefix(ip: string): string | undefined {
  const c = canonicalIp(ip);
  if (c === undefined || !c.includes(':')) return undefined;
  const b = parseIpv6(c)!;
  b.fill(0, 8);
  return `${formatIpv6(b)}/64`;
}
