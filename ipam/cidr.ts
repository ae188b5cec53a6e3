/**
 * IPv4 addresses and CIDR blocks as plain numbers (pure).
 *
 * An address is an unsigned 32-bit integer held in a JS number (0 .. 2^32-1).
 * A block is a half-open interval [start, start + size) where size = 2^(32 - prefix);
 * for /0 the size is 2^32, which still fits exactly in a double. We never use the
 * bitwise operators on addresses because they work on signed 32-bit values; plain
 * arithmetic on doubles is exact below 2^53.
 *
 * Notation follows RFC 4632 (CIDR): "a.b.c.d/len".
 */

/** Malformed or out-of-range address/CIDR text. The message is one line and quotes the input. */
export class CidrError extends Error {
  override name = 'CidrError';
}

/** A CIDR block: network address `start`, `size` addresses (2^(32-prefix)), prefix length 0..32. */
export interface Cidr {
  readonly start: number;
  readonly size: number;
  readonly prefix: number;
}

/** An address written with a prefix length, e.g. "10.32.0.5/12": the address plus its enclosing block. */
export interface AddressCidr extends Cidr {
  readonly addr: number;
}

export const ADDRESS_SPACE = 2 ** 32;

/**
 * Parse dotted-quad IPv4 text into a number.
 * @throws CidrError e.g. `invalid IPv4 address "10.1.2": expected 4 dot-separated numbers 0..255`
 */
export function parseIp(text: string): number {
  const parts = typeof text === 'string' ? text.split('.') : [];
  if (parts.length !== 4) {
    throw new CidrError(`invalid IPv4 address ${JSON.stringify(text)}: expected 4 dot-separated numbers 0..255`);
  }
  let n = 0;
  for (const p of parts) {
    // Reject "", "+1", "0x10", " 1", and leading zeros (ambiguous: octal in some tools).
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) {
      throw new CidrError(`invalid IPv4 address ${JSON.stringify(text)}: ${JSON.stringify(p)} is not a number 0..255`);
    }
    const v = Number(p);
    if (v > 255) throw new CidrError(`invalid IPv4 address ${JSON.stringify(text)}: ${p} is greater than 255`);
    n = n * 256 + v;
  }
  return n;
}

/** Format a 32-bit address number as dotted quad. Throws RangeError for a non-address number (programming error). */
export function formatIp(addr: number): string {
  if (!Number.isInteger(addr) || addr < 0 || addr >= ADDRESS_SPACE) throw new RangeError(`not an IPv4 address number: ${addr}`);
  return `${Math.floor(addr / 16777216)}.${Math.floor(addr / 65536) % 256}.${Math.floor(addr / 256) % 256}.${addr % 256}`;
}

/** Number of addresses in a block of the given prefix length (0..32). */
export function prefixSize(prefix: number): number {
  return 2 ** (32 - prefix);
}

/** Prefix length of a power-of-two block size (1 .. 2^32); throws RangeError otherwise. */
export function sizePrefix(size: number): number {
  const p = 32 - Math.log2(size);
  if (!Number.isInteger(p) || p < 0 || p > 32) throw new RangeError(`block size ${size} is not a power of two <= 2^32`);
  return p;
}

function splitCidr(text: string): { ip: string; prefix: number } {
  if (typeof text !== 'string') throw new CidrError(`invalid CIDR ${JSON.stringify(text)}: expected text like "10.32.0.0/12"`);
  const slash = text.indexOf('/');
  if (slash < 0) throw new CidrError(`invalid CIDR ${JSON.stringify(text)}: missing "/prefix" (e.g. "10.32.0.0/12")`);
  const p = text.slice(slash + 1);
  if (!/^[0-9]{1,2}$/.test(p) || Number(p) > 32) {
    throw new CidrError(`invalid CIDR ${JSON.stringify(text)}: prefix must be 0..32`);
  }
  let ip: string;
  try {
    parseIp(text.slice(0, slash));
    ip = text.slice(0, slash);
  } catch (e) {
    throw new CidrError(`invalid CIDR ${JSON.stringify(text)}: ${(e as Error).message.replace(/^invalid IPv4 address "[^"]*": /, 'address ')}`);
  }
  return { ip, prefix: Number(p) };
}

/**
 * Parse a network CIDR such as an IPAM range or subnet ("10.32.0.0/12"). The host bits
 * must be zero, because a range given with host bits set is almost always a typo.
 * @throws CidrError e.g. `invalid CIDR "10.32.0.0/33": prefix must be 0..32`,
 *   `10.32.0.5/12 is not a network address (did you mean 10.32.0.0/12?)`
 */
export function parseCidr(text: string): Cidr {
  const { ip, prefix } = splitCidr(text);
  const addr = parseIp(ip);
  const size = prefixSize(prefix);
  const start = alignDown(addr, size);
  if (start !== addr) {
    throw new CidrError(`${text} is not a network address (did you mean ${formatIp(start)}/${prefix}?)`);
  }
  return { start, size, prefix };
}

/**
 * Parse an address with its prefix length ("10.32.0.5/12"), as given to `ip:` on attach.
 * @throws CidrError for malformed text.
 */
export function parseAddressCidr(text: string): AddressCidr {
  const { ip, prefix } = splitCidr(text);
  const addr = parseIp(ip);
  const size = prefixSize(prefix);
  return { addr, start: alignDown(addr, size), size, prefix };
}

/** "10.32.0.0/12" for a block. */
export function formatCidr(c: { start: number; prefix: number }): string {
  return `${formatIp(c.start)}/${c.prefix}`;
}

/** "10.32.0.5/12": an address with the prefix length of its subnet. */
export function formatAddressCidr(addr: number, prefix: number): string {
  return `${formatIp(addr)}/${prefix}`;
}

/** Largest multiple of `size` (a power of two) not above `addr`. */
export function alignDown(addr: number, size: number): number {
  return addr - (addr % size);
}

/** Whether [start, start+size) is a CIDR block: size a power of two and start a multiple of it. */
export function isAligned(start: number, size: number): boolean {
  if (!(size >= 1) || start < 0 || start + size > ADDRESS_SPACE) return false;
  const p = Math.log2(size);
  return Number.isInteger(p) && start % size === 0;
}

/**
 * Split [lo, hi) into the minimal list of CIDR blocks (RFC 4632 style aggregation),
 * lowest first. Used to find donatable aligned blocks inside free intervals.
 */
export function alignedBlocks(lo: number, hi: number): Cidr[] {
  const out: Cidr[] = [];
  let a = lo;
  while (a < hi) {
    // Largest power of two that both divides a and fits in the remainder.
    let size = a === 0 ? ADDRESS_SPACE : 2 ** Math.min(32, trailingZeros(a));
    while (size > hi - a) size /= 2;
    out.push({ start: a, size, prefix: 32 - Math.log2(size) });
    a += size;
  }
  return out;
}

/** The largest CIDR block inside [lo, hi); on a tie, the highest one. undefined if lo >= hi. */
export function largestAlignedBlock(lo: number, hi: number): Cidr | undefined {
  let best: Cidr | undefined;
  for (const b of alignedBlocks(lo, hi)) if (!best || b.size >= best.size) best = b;
  return best;
}

function trailingZeros(n: number): number {
  let z = 0;
  while (n % 2 === 0 && z < 32) {
    n /= 2;
    z++;
  }
  return z;
}

/** Whether half-open intervals [aStart, aStart+aSize) and [bStart, bStart+bSize) intersect. */
export function overlaps(a: { start: number; size: number }, b: { start: number; size: number }): boolean {
  return a.start < b.start + b.size && b.start < a.start + a.size;
}

/** Whether `inner` lies entirely inside `outer`. */
export function contains(outer: { start: number; size: number }, inner: { start: number; size: number }): boolean {
  return inner.start >= outer.start && inner.start + inner.size <= outer.start + outer.size;
}
