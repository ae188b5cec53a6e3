/**
 * IPv6 helpers for the data path (issue #21): locating the upper-layer header of an
 * IPv6 packet in an Ethernet frame, the ICMPv6 checksum, and ICMPv6 Packet Too Big.
 *
 * IPv6 routers never fragment (RFC 8200 §5): a packet larger than the next link's MTU is
 * dropped and the source told with ICMPv6 Packet Too Big (RFC 4443 §3.2), carrying the
 * MTU and as much of the packet as fits in a minimum-MTU (1280-byte) message. The sleeve
 * does this for IPv6 where it sends ICMP "fragmentation needed" for IPv4 with DF
 * (ethernet.ts). Extension headers are walked per RFC 8200 §4 (hop-by-hop, routing,
 * destination options, fragment, and AH per RFC 4302), at most MAX_EXT_HEADERS of them.
 *
 * Frames are byte ranges [start, end) of a buffer; nothing reads outside them, nothing
 * throws on malformed input, and the per-frame scan allocates nothing (it fills a
 * caller's Int32Array).
 */
import { ETH_HEADER_BYTES, isGroupMac, dstMac, ipv4Checksum } from './ethernet.js';

export const ETHERTYPE_IPV6 = 0x86dd;
export const IPV6_HEADER_BYTES = 40;
export const IP_PROTO_ICMPV6 = 58;
/** RFC 8200 §5: every link carries 1280-byte packets. */
export const IPV6_MIN_MTU = 1280;
/** Extension headers walked before giving up ('malformed'). */
export const MAX_EXT_HEADERS = 8;

/** ICMPv6 types (RFC 4443, RFC 4861). */
export const ICMP6 = {
  PACKET_TOO_BIG: 2,
  ROUTER_SOLICIT: 133,
  ROUTER_ADVERT: 134,
  NEIGHBOR_SOLICIT: 135,
  NEIGHBOR_ADVERT: 136,
  REDIRECT: 137,
} as const;

/** Slots of the scan result (ipv6Scan's `out`). */
export const SCAN_PROTO = 0;
/** Absolute offset of the upper-layer header, or -1 in a non-first fragment. */
export const SCAN_L4 = 1;
/** 0 no fragment header, 1 first fragment, 2 a later fragment. */
export const SCAN_FRAG = 2;
/** End of the IPv6 packet (offset; Ethernet padding after it excluded). */
export const SCAN_END = 3;

/**
 * Scan the IPv6 packet of the frame buf[start, end): version 6, the payload length
 * within the frame, extension headers walked to the upper-layer protocol. Fills `out`
 * (SCAN_* slots) and returns true; false when malformed (truncated, too many or
 * overlong extension headers, not version 6). The EtherType is not checked here.
 */
export function ipv6Scan(buf: Buffer, start: number, end: number, out: Int32Array): boolean {
  const ip = start + ETH_HEADER_BYTES;
  if (start < 0 || end > buf.length || end - ip < IPV6_HEADER_BYTES) return false;
  if ((buf[ip]! >> 4) !== 6) return false;
  const plen = (buf[ip + 4]! << 8) | buf[ip + 5]!;
  const pend = ip + IPV6_HEADER_BYTES + plen;
  // A zero payload length is a jumbogram (RFC 2675) or empty: frames are never that big.
  if (pend > end || (plen === 0 && buf[ip + 6] === 0)) return false;
  let nh = buf[ip + 6]!;
  let off = ip + IPV6_HEADER_BYTES;
  let frag = 0;
  for (let n = 0; ; n++) {
    if (nh === 0 || nh === 43 || nh === 60 || nh === 51) {
      if (n >= MAX_EXT_HEADERS || off + 8 > pend) return false;
      const len = nh === 51 ? (buf[off + 1]! + 2) * 4 : (buf[off + 1]! + 1) * 8;
      nh = buf[off]!;
      off += len;
      if (off > pend) return false;
      continue;
    }
    if (nh === 44) {
      if (n >= MAX_EXT_HEADERS || off + 8 > pend) return false;
      const fo = ((buf[off + 2]! << 8) | buf[off + 3]!) & 0xfff8;
      nh = buf[off]!;
      off += 8;
      if (fo !== 0) {
        out[SCAN_PROTO] = nh;
        out[SCAN_L4] = -1;
        out[SCAN_FRAG] = 2;
        out[SCAN_END] = pend;
        return true;
      }
      frag = 1;
      continue;
    }
    break;
  }
  out[SCAN_PROTO] = nh;
  out[SCAN_L4] = off;
  out[SCAN_FRAG] = frag;
  out[SCAN_END] = pend;
  return true;
}

/**
 * The ICMPv6 checksum (RFC 4443 §2.3) of the message buf[l4, l4 + len) inside the IPv6
 * packet whose header is at `ip`: the Internet checksum over the pseudo-header of
 * RFC 8200 §8.1 (source, destination, 32-bit upper-layer length, three zero bytes,
 * next header 58) followed by the message. With the checksum field (l4 + 2) filled in,
 * the result is 0.
 */
export function icmpv6Checksum(buf: Buffer, ip: number, l4: number, len: number): number {
  let sum = 0;
  for (let i = ip + 8; i < ip + 40; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  sum += (len >>> 16) + (len & 0xffff) + IP_PROTO_ICMPV6;
  // Fold the message's own complement back in (ipv4Checksum returns ~sum).
  sum += ~ipv4Checksum(buf, l4, l4 + len) & 0xffff;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

const scratch = new Int32Array(4);

/** True if the 16 bytes at `o` are all zero (the unspecified address ::). */
export function isUnspecified6(buf: Buffer, o: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[o + i] !== 0) return false;
  return true;
}

/**
 * An Ethernet frame carrying ICMPv6 Packet Too Big (type 2, code 0, RFC 4443 §3.2) with
 * MTU `mtu`, back to the source of the IPv6 packet in `frame`: Ethernet dst/src are the
 * original src/dst MACs, IPv6 src/dst the original dst/src addresses, hop limit 64;
 * the body quotes as much of the original packet as keeps the message within 1280
 * bytes; the checksum covers the pseudo-header.
 *
 * @returns undefined if the frame is not well-formed IPv6, or when RFC 4443 §2.4(e) says
 *   not to (or allows us not to) answer: an ICMPv6 error (type < 128), a source that is
 *   unspecified or multicast, or an Ethernet group / IPv6 multicast destination (PTB is
 *   allowed there but one per flooded copy would be noise; the sender's PMTU to a group
 *   is not ours to lower).
 * @throws RangeError if mtu is not an integer in [0, 2^32 - 1]
 */
export function packetTooBig(frame: Buffer, start: number, end: number, mtu: number): Buffer | undefined {
  if (!Number.isInteger(mtu) || mtu < 0 || mtu > 0xffffffff) throw new RangeError(`MTU must be an integer in [0, 2^32-1], got ${mtu}`);
  if (!Number.isInteger(start) || !Number.isInteger(end) || end - start < ETH_HEADER_BYTES) return undefined;
  if (((frame[start + 12]! << 8) | frame[start + 13]!) !== ETHERTYPE_IPV6) return undefined;
  if (!ipv6Scan(frame, start, end, scratch)) return undefined;
  const ip = start + ETH_HEADER_BYTES;
  if (scratch[SCAN_PROTO] === IP_PROTO_ICMPV6) {
    const l4 = scratch[SCAN_L4];
    if (l4 < 0 || l4 + 1 > scratch[SCAN_END] || frame[l4]! < 128) return undefined;
  }
  if (isGroupMac(dstMac(frame, start))) return undefined;
  if (frame[ip + 8] === 0xff || isUnspecified6(frame, ip + 8)) return undefined;
  if (frame[ip + 24] === 0xff) return undefined;

  const quote = Math.min(scratch[SCAN_END] - ip, IPV6_MIN_MTU - IPV6_HEADER_BYTES - 8);
  const icmpLen = 8 + quote;
  const r = Buffer.alloc(ETH_HEADER_BYTES + IPV6_HEADER_BYTES + icmpLen);
  frame.copy(r, 0, start + 6, start + 12);
  frame.copy(r, 6, start, start + 6);
  r.writeUInt16BE(ETHERTYPE_IPV6, 12);
  const rip = ETH_HEADER_BYTES;
  r[rip] = 0x60;
  r.writeUInt16BE(icmpLen, rip + 4);
  r[rip + 6] = IP_PROTO_ICMPV6;
  r[rip + 7] = 64;
  frame.copy(r, rip + 8, ip + 24, ip + 40);
  frame.copy(r, rip + 24, ip + 8, ip + 24);
  const icmp = rip + IPV6_HEADER_BYTES;
  r[icmp] = ICMP6.PACKET_TOO_BIG;
  r[icmp + 1] = 0;
  r.writeUInt32BE(mtu, icmp + 4);
  frame.copy(r, icmp + 8, ip, ip + quote);
  r.writeUInt16BE(icmpv6Checksum(r, rip, icmp, icmpLen), icmp + 2);
  return r;
}
