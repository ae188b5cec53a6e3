/**
 * Minimal IPv4 CIDR matching for configuration checks (trusted subnets).
 * `cidrContains('192.168.77.0/24', '192.168.77.2')` → true. Bad input → false
 * (configuration is validated when parsed; see parseCidrList).
 */
import net from 'node:net';

function ipv4ToNum(a: string): number | undefined {
  if (!net.isIPv4(a)) return undefined;
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

export function cidrContains(cidr: string, addr: string): boolean {
  const [base, lenS] = cidr.split('/');
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
