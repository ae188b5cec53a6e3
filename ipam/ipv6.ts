/**
 * IPv6 addresses of the overlay (issue #21), derived from the IPv4 allocation. Pure.
 *
 * Design: with `weave launch --ipalloc-range6 PREFIX/L` (L ≤ 96), an endpoint with the
 * IPv4 address a.b.c.d/n (from IPAM or `ip:`) also gets
 *
 *   global:     PREFIX + the 32 bits of a.b.c.d in the low bits, prefix length 96 + n
 *   link-local: fe80::a.b.c.d/64 (the same 32 bits under fe80::/96)
 *
 * so an IPv6 address is never handed out twice as long as IPAM's IPv4 addresses are not
 * (the ring's guarantee carries over, restarts and concurrent allocations included), and
 * a `net:` subnet a.b.c.0/n maps 1:1 to the IPv6 prefix PREFIX:…:a.b.c.0/(96+n). Both
 * addresses name their IPv4 address, so a router can place any overlay IPv6 address in
 * its isolation group (the group of that IPv4 address) from its local endpoint table
 * alone, as it does for IPv4 — no second allocator, no second gossip.
 *
 * Text forms follow RFC 4291 §2.2 on input (with `::` and an embedded dotted IPv4 tail,
 * no zone index) and RFC 5952 on output (lower case, no leading zeros, the longest run
 * of two or more zero groups as `::`). Reverse names are RFC 3596 §2.5 (`ip6.arpa`).
 */

import { formatIpv6Groups } from '../router/mesh/address.js';

export class Ipv6Error extends Error {
  override name = 'Ipv6Error';
}

/** An --ipalloc-range6 prefix: its text (RFC 5952), length and 16 bytes (host bits zero). */
export interface Range6 {
  prefix: string;
  len: number;
  bytes: Buffer;
}

/** Longest --ipalloc-range6 prefix: the low 32 bits hold the IPv4 address. */
export const MAX_RANGE6_LEN = 96;
/** Shortest accepted (a /8 is already the whole ULA space). */
export const MIN_RANGE6_LEN = 8;

const V4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HEX_GROUP_RE = /^[0-9a-fA-F]{1,4}$/;

/** "10.32.1.5" → 32-bit unsigned number; undefined unless a dotted quad. */
export function v4ToNum(s: string): number | undefined {
  if (!V4_RE.test(s)) return undefined;
  return s.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** 32-bit unsigned number → "a.b.c.d". */
export function numToV4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * Parse an IPv6 address in RFC 4291 §2.2 text form ("fd00:77::a20:105", "::ffff:1.2.3.4")
 * into 16 bytes; undefined for anything else (no zone index, no prefix length, at most
 * 45 characters).
 */
export function parseIpv6(s: string): Buffer | undefined {
  if (typeof s !== 'string' || s.length < 2 || s.length > 45) return undefined;
  let head = s;
  let v4: number | undefined;
  const lastColon = s.lastIndexOf(':');
  if (lastColon >= 0 && s.indexOf('.', lastColon) > lastColon) {
    v4 = v4ToNum(s.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    // Keep the colon(s) before the dotted tail: "::1.2.3.4" → "::", "a::1.2.3.4" → "a::".
    head = s.slice(0, lastColon + 1);
    if (head.endsWith('::')) { /* "::" stays */ } else if (head.endsWith(':')) head = head.slice(0, -1);
  }
  const want = v4 === undefined ? 8 : 6;
  const dbl = head.indexOf('::');
  if (dbl !== head.lastIndexOf('::') && dbl >= 0) return undefined;
  let groups: string[];
  if (dbl >= 0) {
    const left = head.slice(0, dbl);
    const right = head.slice(dbl + 2);
    const l = left ? left.split(':') : [];
    const r = right ? right.split(':') : [];
    if (l.length + r.length > want - 1) return undefined;
    groups = [...l, ...Array<string>(want - l.length - r.length).fill('0'), ...r];
  } else {
    groups = head ? head.split(':') : [];
    if (groups.length !== want) return undefined;
  }
  if (!groups.every((g) => HEX_GROUP_RE.test(g))) return undefined;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), 2 * i));
  if (v4 !== undefined) b.writeUInt32BE(v4, 12);
  return b;
}

/** 16 bytes at `off` → RFC 5952 text ("fd00:77::a20:105"). */
export function formatIpv6(b: Uint8Array, off = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[off + 2 * i]! << 8) | b[off + 2 * i + 1]!);
  return formatIpv6Groups(g);
}

/** Split "ADDR/LEN" into the 16 bytes and the length; undefined when malformed. */
export function parseCidr6(s: string): { bytes: Buffer; len: number } | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const bytes = parseIpv6(m[1]);
  const len = Number(m[2]);
  if (!bytes || len > 128) return undefined;
  return { bytes, len };
}

function hostBitsZero(b: Buffer, len: number): boolean {
  for (let bit = len; bit < 128; bit++) if (b[bit >> 3]! & (0x80 >> (bit & 7))) return false;
  return true;
}

/**
 * Parse and check --ipalloc-range6: an IPv6 prefix PREFIX/L with MIN_RANGE6_LEN ≤ L ≤ 96,
 * no bits set below L, and not multicast (ff00::/8), link-local (fe80::/10) or in ::/8
 * (unspecified, loopback, IPv4-mapped/-compatible). A ULA (fd00::/8, RFC 4193) is the
 * usual choice.
 * @throws Ipv6Error with one line naming the problem
 */
export function parseRange6(s: string): Range6 {
  const c = parseCidr6(s);
  if (!c) throw new Ipv6Error(`invalid --ipalloc-range6 "${String(s).slice(0, 60)}": want an IPv6 prefix like fd00:77::/64`);
  if (c.len < MIN_RANGE6_LEN || c.len > MAX_RANGE6_LEN) throw new Ipv6Error(`invalid --ipalloc-range6 ${s}: the prefix length must be ${MIN_RANGE6_LEN}..${MAX_RANGE6_LEN} (the low 32 bits carry the IPv4 address)`);
  if (!hostBitsZero(c.bytes, c.len)) throw new Ipv6Error(`invalid --ipalloc-range6 ${s}: bits are set past /${c.len}`);
  const b0 = c.bytes[0]!;
  if (b0 === 0xff || (b0 === 0xfe && (c.bytes[1]! & 0xc0) === 0x80) || b0 === 0) throw new Ipv6Error(`invalid --ipalloc-range6 ${s}: not a unicast prefix for hosts (multicast, link-local or ::/8); use a ULA like fd00:77::/64`);
  return { prefix: `${formatIpv6(c.bytes)}/${c.len}`, len: c.len, bytes: c.bytes };
}

/** The 12 bytes fe80:0:0:0:0:0 under which link-local addresses carry an IPv4 address. */
export const LINK_LOCAL_PREFIX = Buffer.from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

function withV4(prefix12: Uint8Array, v4: number): Buffer {
  const b = Buffer.alloc(16);
  for (let i = 0; i < 12; i++) b[i] = prefix12[i]!;
  b.writeUInt32BE(v4 >>> 0, 12);
  return b;
}

function splitV4Cidr(cidr: string): { addr: number; len: number } {
  const [a, l] = cidr.split('/');
  const addr = v4ToNum(a);
  const len = Number(l ?? '32');
  if (addr === undefined || !Number.isInteger(len) || len < 0 || len > 32) throw new Ipv6Error(`invalid IPv4 address "${cidr.slice(0, 40)}": want a.b.c.d/len`);
  return { addr, len };
}

/** The global IPv6 address derived from an IPv4 one: "10.32.1.5" → "fd00:77::a20:105". */
export function derive6(r: Range6, v4: string): string {
  const { addr } = splitV4Cidr(v4.includes('/') ? v4 : `${v4}/32`);
  return formatIpv6(withV4(r.bytes, addr));
}

/** "10.32.1.5/24" → "fd00:77::a20:105/120" (prefix length 96 + n). */
export function derive6Cidr(r: Range6, cidr4: string): string {
  const { addr, len } = splitV4Cidr(cidr4);
  return `${formatIpv6(withV4(r.bytes, addr))}/${96 + len}`;
}

/** "10.32.1.5/24" → "fe80::a20:105/64": the endpoint's link-local address. */
export function linkLocal6Cidr(cidr4: string): string {
  const { addr } = splitV4Cidr(cidr4);
  return `${formatIpv6(withV4(LINK_LOCAL_PREFIX, addr))}/64`;
}

/** The IPv6 subnet of an IPv4 one: "10.32.1.0/24" → "fd00:77::a20:100/120" (network bits only). */
export function subnet6(r: Range6, subnet4: string): string {
  const { addr, len } = splitV4Cidr(subnet4);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return `${formatIpv6(withV4(r.bytes, (addr & mask) >>> 0))}/${96 + len}`;
}

/**
 * Every IPv6 address of an endpoint with these IPv4 CIDRs, as configured on its
 * interface: the global one of each (derive6Cidr) then the link-local one of each.
 */
export function endpointAddrs6(r: Range6, cidrs4: readonly string[]): { global: string[]; linkLocal: string[] } {
  return { global: cidrs4.map((c) => derive6Cidr(r, c)), linkLocal: cidrs4.map((c) => linkLocal6Cidr(c)) };
}

/**
 * The IPv4 address an overlay IPv6 address derives from (global under `r`, or
 * link-local fe80::a.b.c.d), as "a.b.c.d"; undefined for any other address.
 */
export function v4OfDerived(r: Range6 | undefined, addr6: string | Uint8Array): string | undefined {
  const b = typeof addr6 === 'string' ? parseIpv6(addr6) : addr6;
  if (!b || b.length < 16) return undefined;
  const under = (p: Uint8Array): boolean => {
    for (let i = 0; i < 12; i++) if (b[i] !== p[i]) return false;
    return true;
  };
  if (!(r && under(r.bytes)) && !under(LINK_LOCAL_PREFIX)) return undefined;
  return numToV4(((b[12]! << 24) | (b[13]! << 16) | (b[14]! << 8) | b[15]!) >>> 0);
}

/**
 * Translate an IPv6 address spec of WEAVE_CIDR / `weave attach` into its IPv4 form,
 * since the IPv6 address follows the IPv4 one: `ip:P::a.b.c.d/(96+n)` → `ip:a.b.c.d/n`,
 * `net:P::a.b.c.0/(96+n)` → `net:a.b.c.0/n`, a bare `P::…/(96+n)` → the bare IPv4 CIDR.
 * Specs that are not IPv6 are returned unchanged.
 * @throws Ipv6Error (one line) for an IPv6 spec without --ipalloc-range6, outside it, not of
 *   the derived form (bits 96-L.. zero) or with a prefix length under 96
 */
export function specToV4(r: Range6 | undefined, spec: string): string {
  const m = /^(ip:|net:)?(.*)$/.exec(spec)!;
  const kind = m[1] ?? '';
  const body = m[2];
  if (!body.includes(':')) return spec;
  const c = parseCidr6(body);
  if (!c) throw new Ipv6Error(`invalid address spec "${spec.slice(0, 80)}": an IPv6 spec needs a prefix length, like ip:fd00:77::a20:105/120`);
  if (!r) throw new Ipv6Error(`IPv6 address spec "${spec.slice(0, 80)}" needs the router launched with --ipalloc-range6`);
  const v4 = v4OfDerived(r, c.bytes);
  const isLinkLocal = c.bytes[0] === 0xfe && c.bytes[1] === 0x80;
  if (v4 === undefined || isLinkLocal || c.len < 96) {
    throw new Ipv6Error(`IPv6 address spec "${spec.slice(0, 80)}" is not of the form ${formatIpv6(r.bytes)}<IPv4>/<96+n> inside --ipalloc-range6 ${r.prefix}: give the IPv4 address (the IPv6 one follows it)`);
  }
  return `${kind}${v4}/${c.len - 96}`;
}

/** RFC 3596 §2.5 reverse name of an IPv6 address: 32 nibbles, low first, "…ip6.arpa.". */
export function ip6ArpaName(addr6: string): string | undefined {
  const b = parseIpv6(addr6);
  if (!b) return undefined;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) nibbles.push((b[i]! & 15).toString(16), (b[i]! >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa.`;
}

/** "5.0.1.0.0.2.a.0.…ip6.arpa." → "fd00:77::a20:105"; undefined unless exactly 32 nibbles. */
export function addressOfIp6Arpa(name: string): string | undefined {
  const m = /^((?:[0-9a-f]\.){32})ip6\.arpa\.?$/i.exec(name);
  if (!m) return undefined;
  const n = m[1].split('.').filter(Boolean).reverse();
  const b = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) b[i] = (parseInt(n[2 * i], 16) << 4) | parseInt(n[2 * i + 1], 16);
  return formatIpv6(b);
}
