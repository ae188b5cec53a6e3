/**
 * Wire formats of the fast datapath (fastdp): the VXLAN header (RFC 7348) and the
 * router-to-router heartbeat that checks a connection's VXLAN path.
 *
 * Data frames never pass through here: the kernel's VXLAN device encapsulates them.
 * Only heartbeats are crafted by the router, so that they take exactly the road data
 * takes (UDP to the peer's VXLAN port, decapsulated by the peer's kernel):
 *
 *   outer UDP payload, sent by the router to PEER:6784
 *     VXLAN header (8)       flags 0x08 (VNI valid), VNI = HEARTBEAT_VNI
 *     Ethernet (14)          dst HB_DEVICE_MAC, src HB_SOURCE_MAC, type IPv4
 *     IPv4 (20)              HB_SOURCE_IP → HB_DEVICE_IP, UDP, TTL 64, header checksum
 *     UDP (8)                port → port, checksum 0 (none, allowed for IPv4 by RFC 768)
 *     heartbeat (24)         see below
 *     zero padding           up to the size of a full-MTU frame, so a path that drops
 *                            big packets fails the heartbeat (as Weave's fastdp did)
 *
 * The peer's kernel hands the inner frame to its heartbeat VXLAN device, whose address
 * is HB_DEVICE_IP (with HB_SOURCE_IP as its point-to-point peer, so reverse-path checks
 * pass); the inner UDP datagram then reaches the router's socket bound there.
 *
 * Heartbeat (all integers big-endian):
 *
 *     0   4  magic "TSFD"
 *     4   1  version (1)
 *     5   1  flags: bit 0 HEARD = the sender has heard the receiver's heartbeats recently
 *     6   6  sender peer name (48 bits)
 *     12  6  receiver peer name
 *     18  4  sequence number (u32, wraps)
 *     22  2  sender's overlay MTU
 *
 * Pure: no sockets, no clock.
 */
import { readMac, writeMac } from './mac-cache.js';

/** VXLAN header bytes (RFC 7348 §5). */
export const VXLAN_HEADER_BYTES = 8;
/** Outer IPv4 + UDP + VXLAN + inner Ethernet: what VXLAN adds to an overlay packet. */
export const VXLAN_OVERHEAD = 20 + 8 + VXLAN_HEADER_BYTES + 14;
/** The same over an IPv6 underlay (40-byte outer header): 70 bytes. */
export const VXLAN6_OVERHEAD = 40 + 8 + VXLAN_HEADER_BYTES + 14;

/** What VXLAN adds to an overlay packet over an underlay of `family`. */
export function vxlanOverhead(family: 4 | 6): number {
  return family === 6 ? VXLAN6_OVERHEAD : VXLAN_OVERHEAD;
}
/** VNI of container frames (any fixed value both ends agree on). */
export const DATA_VNI = 6784;
/** VNI of heartbeats: a second VXLAN device on the same UDP port. */
export const HEARTBEAT_VNI = 6785;
/** Address of the heartbeat device on every host; never routed beyond it. */
export const HB_DEVICE_IP = '169.254.67.84';
/** Inner source address of heartbeats (the heartbeat device's point-to-point peer). */
export const HB_SOURCE_IP = '169.254.67.85';
/**
 * The IPv6 underlay's heartbeat device (a VXLAN device is of one family, so IPv6 peers
 * get their own pair of devices): its inner address and heartbeats' inner source. A
 * pair of its own keeps the two devices' point-to-point routes apart.
 */
export const HB6_DEVICE_IP = '169.254.67.86';
export const HB6_SOURCE_IP = '169.254.67.87';
/** Fixed MAC of the heartbeat device (locally administered); frames are addressed to it. */
export const HB_DEVICE_MAC = 0x02_77_65_61_76_01;
/** Inner source MAC of heartbeats: must differ from the device's, which the kernel treats as a loop. */
export const HB_SOURCE_MAC = 0x02_77_65_61_76_02;

export const HEARTBEAT_MAGIC = 0x54534644; // "TSFD"
export const HEARTBEAT_VERSION = 1;
export const HEARTBEAT_BYTES = 24;
export const HEARTBEAT_FLAG_HEARD = 1;
/** Ethernet + IPv4 + UDP before the heartbeat inside the VXLAN payload. */
const INNER_HEADERS = 14 + 20 + 8;
/** Smallest outer UDP payload carrying a heartbeat. */
export const MIN_HEARTBEAT_PACKET = VXLAN_HEADER_BYTES + INNER_HEADERS + HEARTBEAT_BYTES;
/** Largest: an inner frame can be at most 64 KiB (IPv4 total length). */
export const MAX_HEARTBEAT_PACKET = VXLAN_HEADER_BYTES + 14 + 0xffff;

/** Raised for arguments that cannot be encoded (sizes, names, addresses out of range). */
export class FastdpCodecError extends Error {
  override name = 'FastdpCodecError';
}

export interface Heartbeat {
  /** Sender and receiver peer names as 48-bit numbers. */
  sender: number;
  receiver: number;
  seq: number;
  /** The sender hears our heartbeats (both directions of the path work). */
  heard: boolean;
  mtu: number;
}

/** Writes a VXLAN header with the I flag and `vni` (24 bits) at `offset` (RFC 7348 §5). */
export function writeVxlanHeader(buf: Buffer, offset: number, vni: number): void {
  if (!Number.isInteger(vni) || vni < 0 || vni > 0xffffff) throw new FastdpCodecError(`VNI ${vni} is not a 24-bit number`);
  buf[offset] = 0x08;
  buf[offset + 1] = 0;
  buf[offset + 2] = 0;
  buf[offset + 3] = 0;
  buf.writeUIntBE(vni, offset + 4, 3);
  buf[offset + 7] = 0;
}

/** The VNI of a VXLAN header at `offset`, or undefined if the I flag is clear or the buffer is short. */
export function readVxlanVni(buf: Buffer, offset = 0): number | undefined {
  if (buf.length < offset + VXLAN_HEADER_BYTES || (buf[offset]! & 0x08) === 0) return undefined;
  return buf.readUIntBE(offset + 4, 3);
}

/** "a.b.c.d" → 32-bit number; throws FastdpCodecError for anything else. */
export function ipv4ToNum(ip: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) throw new FastdpCodecError(`"${ip}" is not an IPv4 address`);
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255) throw new FastdpCodecError(`"${ip}" is not an IPv4 address`);
    n = n * 256 + o;
  }
  return n;
}

/** RFC 1071 Internet checksum of buf[start, end) (even length), as the 16-bit value to store. */
export function internetChecksum(buf: Buffer, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if ((end - start) & 1) sum += buf[end - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Outer UDP payload size of a heartbeat whose inner frame carries `mtu` bytes of IP. */
export function heartbeatPacketSize(mtu: number): number {
  return Math.max(MIN_HEARTBEAT_PACKET, VXLAN_HEADER_BYTES + 14 + mtu);
}

/**
 * Builds a complete heartbeat packet (the outer UDP payload, see the module comment)
 * into a new buffer of `heartbeatPacketSize(hb.mtu)` bytes. `udpPort` is the inner UDP
 * port the receiving router listens on; `family` the underlay the packet goes over
 * (6: inner addresses HB6_SOURCE_IP → HB6_DEVICE_IP, for the peer's IPv6 heartbeat device).
 * Throws FastdpCodecError for an MTU that cannot hold a heartbeat or exceeds IPv4's
 * 65535-byte packets, or a port or peer name out of range.
 */
export function encodeHeartbeatPacket(hb: Heartbeat, udpPort: number, family: 4 | 6 = 4): Buffer {
  const mtu = hb.mtu;
  if (!Number.isInteger(mtu) || mtu < 20 + 8 + HEARTBEAT_BYTES || mtu > 0xffff) {
    throw new FastdpCodecError(`MTU ${mtu} cannot carry a fastdp heartbeat (needs ${20 + 8 + HEARTBEAT_BYTES}..65535)`);
  }
  if (!Number.isInteger(udpPort) || udpPort < 1 || udpPort > 0xffff) throw new FastdpCodecError(`UDP port ${udpPort} is out of range`);
  for (const n of [hb.sender, hb.receiver]) {
    if (!Number.isInteger(n) || n <= 0 || n > 0xffffffffffff) throw new FastdpCodecError(`peer name ${n} is not a 48-bit number`);
  }
  const size = heartbeatPacketSize(mtu);
  const buf = Buffer.alloc(size);
  writeVxlanHeader(buf, 0, HEARTBEAT_VNI);
  const eth = VXLAN_HEADER_BYTES;
  writeMac(buf, eth, HB_DEVICE_MAC);
  writeMac(buf, eth + 6, HB_SOURCE_MAC);
  buf.writeUInt16BE(0x0800, eth + 12);
  const ip = eth + 14;
  const ipLen = size - ip;
  buf[ip] = 0x45;
  buf.writeUInt16BE(ipLen, ip + 2);
  buf[ip + 8] = 64;
  buf[ip + 9] = 17;
  buf.writeUInt32BE(ipv4ToNum(family === 6 ? HB6_SOURCE_IP : HB_SOURCE_IP), ip + 12);
  buf.writeUInt32BE(ipv4ToNum(family === 6 ? HB6_DEVICE_IP : HB_DEVICE_IP), ip + 16);
  buf.writeUInt16BE(internetChecksum(buf, ip, ip + 20), ip + 10);
  const udp = ip + 20;
  buf.writeUInt16BE(udpPort, udp);
  buf.writeUInt16BE(udpPort, udp + 2);
  buf.writeUInt16BE(ipLen - 20, udp + 4);
  writeHeartbeat(buf, udp + 8, hb);
  return buf;
}

/** Writes the 24-byte heartbeat body at `offset`. */
export function writeHeartbeat(buf: Buffer, offset: number, hb: Heartbeat): void {
  buf.writeUInt32BE(HEARTBEAT_MAGIC, offset);
  buf[offset + 4] = HEARTBEAT_VERSION;
  buf[offset + 5] = hb.heard ? HEARTBEAT_FLAG_HEARD : 0;
  writeMac(buf, offset + 6, hb.sender);
  writeMac(buf, offset + 12, hb.receiver);
  buf.writeUInt32BE(hb.seq >>> 0, offset + 18);
  buf.writeUInt16BE(hb.mtu & 0xffff, offset + 22);
}

/**
 * Parses a heartbeat body (what the router's socket receives: the inner UDP payload,
 * padding included). Returns undefined for anything that is not a version-1 heartbeat
 * with non-zero peer names; unknown flag bits are ignored.
 */
export function parseHeartbeat(buf: Buffer): Heartbeat | undefined {
  if (buf.length < HEARTBEAT_BYTES) return undefined;
  if (buf.readUInt32BE(0) !== HEARTBEAT_MAGIC || buf[4] !== HEARTBEAT_VERSION) return undefined;
  const sender = readMac(buf, 6);
  const receiver = readMac(buf, 12);
  if (sender === 0 || receiver === 0) return undefined;
  return { sender, receiver, seq: buf.readUInt32BE(18), heard: (buf[5]! & HEARTBEAT_FLAG_HEARD) !== 0, mtu: buf.readUInt16BE(22) };
}
