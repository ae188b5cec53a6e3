/**
 * Ethernet and IPv4 helpers for the data path.
 *
 * Frames are plain Ethernet II (IEEE 802.3: dst MAC, src MAC, EtherType; no VLAN
 * tag handling) as read from the TAP device. The IPv4 parts follow RFC 791 (header
 * and fragmentation), RFC 1071 (Internet checksum), RFC 792 / RFC 1191 (ICMP
 * "fragmentation needed" with the next-hop MTU) and RFC 1122 §3.2.2 (when not to
 * send an ICMP error). Weave's sleeve overlay does the same when a frame exceeds
 * the path MTU: fragment the IP packet if DF is clear, otherwise tell the sender.
 *
 * Every function takes the frame as a byte range [start, end) of a buffer and
 * never reads outside it; malformed input yields undefined, never an exception.
 */
import { readMac } from './mac-cache.js';

export const ETH_HEADER_BYTES = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const IPV4_MIN_HEADER_BYTES = 20;
export const IP_PROTO_ICMP = 1;
/** RFC 791: every IPv4 module must pass 68-byte datagrams unfragmented. */
export const IPV4_MIN_MTU = 68;

const FLAG_RESERVED = 0x8000;
const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const OFFSET_MASK = 0x1fff;

/** Destination MAC of the frame at `off` as a 48-bit number (caller ensures 14 bytes). */
export function dstMac(frame: Buffer, off: number): number {
  return readMac(frame, off);
}

/** Source MAC of the frame at `off` as a 48-bit number (caller ensures 14 bytes). */
export function srcMac(frame: Buffer, off: number): number {
  return readMac(frame, off + 6);
}

/** True for broadcast and multicast MACs (the I/G bit, least significant bit of the first byte). */
export function isGroupMac(mac: number): boolean {
  return (Math.floor(mac / 0x10000000000) & 1) === 1;
}

/** EtherType of the frame at `off` (caller ensures 14 bytes). */
export function etherType(frame: Buffer, off: number): number {
  return (frame[off + 12]! << 8) | frame[off + 13]!;
}

/**
 * RFC 1071 Internet checksum over buf[start, end): the ones' complement of the
 * ones' complement sum of big-endian 16-bit words (an odd last byte is padded with
 * zero). Computing it over a header whose checksum field is filled gives 0.
 */
export function ipv4Checksum(buf: Buffer, start: number, end: number): number {
  let sum = 0;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Offset of the IPv4 header inside a well-formed IPv4-in-Ethernet frame, or -1:
 * EtherType 0x0800, version 4, header length ≥ 20, total length covering the header
 * and fitting in the frame (bytes after it are Ethernet padding).
 */
function ipv4Offset(frame: Buffer, start: number, end: number): number {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > frame.length) return -1;
  if (end - start < ETH_HEADER_BYTES + IPV4_MIN_HEADER_BYTES) return -1;
  if (etherType(frame, start) !== ETHERTYPE_IPV4) return -1;
  const ip = start + ETH_HEADER_BYTES;
  const vihl = frame[ip]!;
  if (vihl >> 4 !== 4) return -1;
  const hl = (vihl & 0x0f) * 4;
  const total = (frame[ip + 2]! << 8) | frame[ip + 3]!;
  if (hl < IPV4_MIN_HEADER_BYTES || total < hl || ip + total > end) return -1;
  return ip;
}

/** Whether the IPv4 packet in the frame has Don't Fragment set; undefined if not (well-formed) IPv4. */
export function ipv4DontFragment(frame: Buffer, start: number, end: number): boolean | undefined {
  const ip = ipv4Offset(frame, start, end);
  if (ip < 0) return undefined;
  return (frame[ip + 6]! & 0x40) !== 0;
}

/**
 * The options of the header at `ip` that RFC 791 marks "copied" (bit 7 of the
 * option type), to repeat in every fragment after the first, padded with zeros
 * (End of Option List) to a 4-byte multiple. NOP and non-copied options are
 * dropped; parsing stops at End of Option List or at a malformed option, whose
 * remainder is dropped too.
 */
function copiedOptions(frame: Buffer, ip: number, hl: number): Buffer {
  const end = ip + hl;
  const parts: Buffer[] = [];
  let len = 0;
  let i = ip + IPV4_MIN_HEADER_BYTES;
  while (i < end) {
    const type = frame[i]!;
    if (type === 0) break;
    if (type === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) break;
    const olen = frame[i + 1]!;
    if (olen < 2 || i + olen > end) break;
    if (type & 0x80) {
      parts.push(frame.subarray(i, i + olen));
      len += olen;
    }
    i += olen;
  }
  const padded = Buffer.alloc((len + 3) & ~3);
  let at = 0;
  for (const p of parts) at += p.copy(padded, at);
  return padded;
}

/**
 * RFC 791 fragmentation of the IPv4 packet in an Ethernet frame so that each
 * resulting frame carries an IP packet of at most `mtu` bytes.
 *
 * Each fragment frame repeats the Ethernet header; the first keeps the full IP
 * header, later ones keep only the "copied" options. Data is split at multiples of
 * 8 bytes; every fragment but the last has MF set, and the last keeps the input's
 * MF, so an already-fragmented packet is split further correctly (offsets are
 * relative to its own offset). Header checksums are recomputed; Ethernet padding
 * after the IP packet is dropped. A packet that already fits is returned as one
 * copied frame.
 *
 * @param mtu L3 MTU in bytes (IP header included).
 * @returns fresh buffers, or undefined if the frame is not well-formed IPv4, has DF
 *   set, or `mtu` leaves less than 8 data bytes per fragment, or offsets would
 *   overflow the 13-bit field.
 */
export function fragmentIPv4(frame: Buffer, start: number, end: number, mtu: number): Buffer[] | undefined {
  const ip = ipv4Offset(frame, start, end);
  if (ip < 0) return undefined;
  const flagsOff = (frame[ip + 6]! << 8) | frame[ip + 7]!;
  if (flagsOff & FLAG_DF) return undefined;
  const hl = (frame[ip]! & 0x0f) * 4;
  const total = (frame[ip + 2]! << 8) | frame[ip + 3]!;
  if (total <= mtu) return [Buffer.from(frame.subarray(start, ip + total))];

  const laterOptions = copiedOptions(frame, ip, hl);
  const laterHl = IPV4_MIN_HEADER_BYTES + laterOptions.length;
  const firstMax = Math.floor((mtu - hl) / 8) * 8;
  const laterMax = Math.floor((mtu - laterHl) / 8) * 8;
  if (!(firstMax >= 8 && laterMax >= 8)) return undefined;

  const baseOffset = flagsOff & OFFSET_MASK;
  const reserved = flagsOff & FLAG_RESERVED;
  const inputMF = flagsOff & FLAG_MF;
  const dataStart = ip + hl;
  const dataLen = total - hl;
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < dataLen) {
    const first = pos === 0;
    const fhl = first ? hl : laterHl;
    const n = Math.min(first ? firstMax : laterMax, dataLen - pos);
    const last = pos + n === dataLen;
    const offsetUnits = baseOffset + pos / 8;
    if (offsetUnits > OFFSET_MASK) return undefined;
    const f = Buffer.allocUnsafe(ETH_HEADER_BYTES + fhl + n);
    frame.copy(f, 0, start, start + ETH_HEADER_BYTES);
    const fip = ETH_HEADER_BYTES;
    if (first) {
      frame.copy(f, fip, ip, ip + hl);
    } else {
      frame.copy(f, fip, ip, ip + IPV4_MIN_HEADER_BYTES);
      laterOptions.copy(f, fip + IPV4_MIN_HEADER_BYTES);
      f[fip] = 0x40 | (fhl / 4);
    }
    f.writeUInt16BE(fhl + n, fip + 2);
    f.writeUInt16BE(reserved | (last ? inputMF : FLAG_MF) | offsetUnits, fip + 6);
    f.writeUInt16BE(0, fip + 10);
    f.writeUInt16BE(ipv4Checksum(f, fip, fip + fhl), fip + 10);
    frame.copy(f, fip + fhl, dataStart + pos, dataStart + pos + n);
    out.push(f);
    pos += n;
  }
  return out;
}

/** ICMP types that are error messages (RFC 792), which must not trigger further errors (RFC 1122). */
function isIcmpErrorType(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

/** Source addresses RFC 1122 §3.2.2 forbids answering: 0/8 "this network", 127/8, class D/E, limited broadcast. */
function isUnanswerableSource(firstOctet: number, addr: number): boolean {
  return firstOctet === 0 || firstOctet === 127 || firstOctet >= 224 || addr === 0xffffffff;
}

/**
 * An Ethernet frame carrying ICMP Destination Unreachable / Fragmentation Needed
 * (type 3, code 4) with next-hop MTU `mtu` (RFC 1191), addressed back to the source
 * of `frame`: Ethernet dst/src are the original src/dst MACs, IP src/dst the
 * original dst/src addresses, TTL 64; the payload quotes the original IP header and
 * the first 8 bytes of its data (RFC 792). Both checksums are filled in.
 *
 * @returns undefined if the frame is not well-formed IPv4 or, per RFC 1122, must not
 *   be answered: it is itself an ICMP error, a non-first fragment, sent to an
 *   Ethernet group address or an IP multicast/broadcast address, or from an
 *   address that is not a unique host.
 * @throws RangeError if mtu is not an integer in [0, 65535].
 */
export function icmpFragNeeded(frame: Buffer, start: number, end: number, mtu: number): Buffer | undefined {
  if (!Number.isInteger(mtu) || mtu < 0 || mtu > 0xffff) throw new RangeError(`next-hop MTU must be an integer in [0, 65535], got ${mtu}`);
  const ip = ipv4Offset(frame, start, end);
  if (ip < 0) return undefined;
  const hl = (frame[ip]! & 0x0f) * 4;
  const total = (frame[ip + 2]! << 8) | frame[ip + 3]!;
  const flagsOff = (frame[ip + 6]! << 8) | frame[ip + 7]!;
  if ((flagsOff & OFFSET_MASK) !== 0) return undefined;
  if (frame[ip + 9] === IP_PROTO_ICMP && total > hl && isIcmpErrorType(frame[ip + hl]!)) return undefined;
  if (isGroupMac(dstMac(frame, start))) return undefined;
  const src = frame.readUInt32BE(ip + 12);
  const dst = frame.readUInt32BE(ip + 16);
  if (isUnanswerableSource(frame[ip + 12]!, src)) return undefined;
  if (frame[ip + 16]! >= 224 || dst === 0xffffffff) return undefined;

  const quoteLen = hl + Math.min(8, total - hl);
  const icmpLen = 8 + quoteLen;
  const ipLen = IPV4_MIN_HEADER_BYTES + icmpLen;
  const r = Buffer.alloc(ETH_HEADER_BYTES + ipLen);
  frame.copy(r, 0, start + 6, start + 12);
  frame.copy(r, 6, start, start + 6);
  r.writeUInt16BE(ETHERTYPE_IPV4, 12);
  const rip = ETH_HEADER_BYTES;
  r[rip] = 0x45;
  r.writeUInt16BE(ipLen, rip + 2);
  r[rip + 8] = 64;
  r[rip + 9] = IP_PROTO_ICMP;
  r.writeUInt32BE(dst, rip + 12);
  r.writeUInt32BE(src, rip + 16);
  r.writeUInt16BE(ipv4Checksum(r, rip, rip + IPV4_MIN_HEADER_BYTES), rip + 10);
  const icmp = rip + IPV4_MIN_HEADER_BYTES;
  r[icmp] = 3;
  r[icmp + 1] = 4;
  r.writeUInt16BE(mtu, icmp + 6);
  frame.copy(r, icmp + 8, ip, ip + quoteLen);
  r.writeUInt16BE(ipv4Checksum(r, icmp, icmp + icmpLen), icmp + 2);
  return r;
}
