/**
 * Minimal CIDR matching for configuration checks (trusted subnets).
 * `cidrContains('192.168.77.0/24', '192.168.77.2')` → true; IPv6 too (issue #21, an
 * IPv6 underlay): `cidrContains('fd00:77::/64', 'fd00:77::2')` → true. A family
 * mismatch or bad input → false (configuration is validated when parsed; see
 * parseCidrList / parseTrustedSubnets).
 */
import net from 'node:net';
import { parseIpv6 } from '../../ipam/ipv6.js';

function ipv4ToNum(a: string): number | undefined {
  if (!net.isIPv4(a)) return undefined;
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** Whether the first `len` bits of two 16-byte IPv6 addresses are equal. */
function prefixEqual6(a: Uint8Array, b: Uint8Array, len: number): boolean {
  const whole = len >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = len & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[whole]! & mask) === (b[whole]! & mask);
}

/**
 * Whether `addr` lies in `cidr`; both IPv4 or both IPv6 (an IPv4 peer reached over a
 * dual-stack socket is already written as IPv4 by the mesh, so no mapped forms here).
 */
export function cidrContains(cidr: string, addr: string): boolean {
  const [base, lenS] = cidr.split('/');
  if (base.includes(':')) {
    const b6 = parseIpv6(base);
    const a6 = addr.includes(':') ? parseIpv6(addr) : undefined;
    const len6 = Number(lenS ?? '128');
    if (!b6 || !a6 || !Number.isInteger(len6) || len6 < 0 || len6 > 128) return false;
    return prefixEqual6(b6, a6, len6);
  }
  const b = ipv4ToNum(base);
  const a = ipv4ToNum(addr);
  const len = Number(lenS ?? '32');
  if (b === undefined || a === undefined || !(len >= 0 && len <= 32)) return false;
  const size = 2 ** (32 - len);
  return Math.floor(a / size) === Math.floor(b / size);
}

/** Parse "a/b,c/d" into a list; throws with a one-line message on a bad entry. */
export function parseCidrList(s: string): string[] {
  if (!s.trim()) return [];
  return s.split(',').map((x) => x.trim()).map((c) => {
    const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(c);
    if (!m || ipv4ToNum(m[1]) === undefined || Number(m[2]) > 32) throw new Error(`invalid CIDR "${c}": want an IPv4 address/prefix like 192.168.0.0/16`);
    return c;
  });
}

/**
 * Parse --trusted-subnets "a/b,c/d": IPv4 or IPv6 CIDRs (an IPv6 underlay's peers are
 * matched against the IPv6 ones, RFC 4291 prefixes). Throws with a one-line message on a
 * bad entry; the input is bounded (≤ 256 entries, each ≤ 64 characters).
 */
export function parseTrustedSubnets(s: string): string[] {
  if (!s.trim()) return [];
  const list = s.split(',').map((x) => x.trim());
  if (list.length > 256) throw new Error(`too many trusted subnets (${list.length}): at most 256`);
  return list.map((c) => {
    if (c.length > 64) throw new Error(`invalid CIDR "${c.slice(0, 64)}…": too long`);
    if (!c.includes(':')) return parseCidrList(c)[0]!;
    const m = /^([0-9A-Fa-f:.]+)\/(\d{1,3})$/.exec(c);
    if (!m || !parseIpv6(m[1]!) || Number(m[2]) > 128) throw new Error(`invalid CIDR "${c}": want an IPv4 or IPv6 address/prefix like 192.168.0.0/16 or fd00:77::/64`);
    return c;
  });
}
