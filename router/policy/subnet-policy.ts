/**
 * Per-frame subnet isolation: the router's half of enforced WEAVE_CIDR isolation.
 *
 * Weave Net put containers "in a subnet" by address only: every container shared one
 * L2 network, so a container that added another subnet's address (or used a raw
 * socket) reached everyone. Here every attached address is a CIDR, e.g. 10.32.2.5/24
 * is address 10.32.2.5 in subnet 10.32.2.0/24, and two endpoints may exchange frames
 * only if they share a subnet. Everything is decided from the LOCAL endpoint table,
 * so no peer has to trust another peer's table:
 *
 *  - checkCaptured (a frame read from the TAP, i.e. sent by a local container or the
 *    exposed host towards remote peers):
 *      IPv4: the source address must be bound to a local endpoint whose MAC is the
 *      frame's source MAC ('spoof' otherwise), and the destination must lie in the
 *      subnet of that binding; the limited broadcast 255.255.255.255 and multicast
 *      224.0.0.0/4 are allowed from a legitimate source since every receiver filters
 *      them again ('isolation' otherwise).
 *      ARP (RFC 826, Ethernet/IPv4 only): the sender hardware address must equal the
 *      frame's source MAC and the sender IP must be bound to that endpoint ('spoof'),
 *      the target IP must lie in that binding's subnet ('isolation'). An ARP probe
 *      (RFC 5227, sender IP 0.0.0.0) is allowed if the target lies in one of the
 *      sending endpoint's subnets.
 *  - checkDelivered (a frame from a peer about to be written to the TAP). The source
 *    is remote, so its IPv4 source (ARP: sender IP, or the target IP for a probe)
 *    decides its subnet S:
 *      group destination MAC (broadcast/multicast): some local endpoint must be in S
 *      and the destination IP (ARP: target IP) must lie in S or be a group address.
 *      unicast destination MAC: it must be a local endpoint's MAC ('not-local'
 *      otherwise: the bridge would flood a frame for an unknown MAC to every port),
 *      that endpoint must be in S, and the destination IP must be its address in S
 *      (or S's broadcast, the limited broadcast or multicast) ('isolation').
 *  - IPv6 (issue #21), only with --ipalloc-range6 (`range6` below; without it IPv6 is an
 *    other EtherType). Overlay IPv6 addresses derive from IPv4 ones (ipam/ipv6.ts): the
 *    global PREFIX::a.b.c.d and the link-local fe80::a.b.c.d both stand for a.b.c.d, so
 *    an IPv6 frame is checked as the IPv4 frame between the addresses it derives from:
 *    captured, the source must derive from an address bound to the sending MAC
 *    ('spoof'), the destination must derive from an address in that binding's subnet
 *    or be multicast ff00::/8 ('isolation'); delivered, the source's IPv4 address
 *    places it in a subnet S as for IPv4. Neighbour Discovery (RFC 4861): a Neighbour
 *    Solicitation's target must lie in S, a Neighbour Advertisement's target must be
 *    one of the sender's own addresses (captured: 'spoof') and in S; a source/target
 *    link-layer address option must be the frame's source MAC ('spoof'); the
 *    unspecified source :: only for Duplicate Address Detection of the sender's own
 *    address; Router Advertisements and Redirects are dropped ('spoof': the overlay has
 *    no routers); fragmented ND is dropped (RFC 6980). Any other source or destination
 *    (a global address outside range6, an EUI-64 link-local) is 'spoof' / 'isolation'.
 *  - Other EtherTypes (VLAN-tagged, LLDP...) carry nothing this table can place in a
 *    subnet, so both directions drop them as 'isolation'.
 *  - Truncated IPv4/ARP headers, a bad IPv4 version/IHL, or ARP for other than
 *    Ethernet/IPv4 are 'malformed'. No input ever throws.
 *
 * Lookups are on 32-bit integers (addresses and the low 32 bits of MACs as signed
 * int32, which V8 keeps unboxed) in Maps and typed arrays built once per table, so a
 * check allocates nothing.
 *
 * Pure: no I/O. Bad table entries (unparsable CIDR or MAC) are skipped and listed in
 * `problems`, so a corrupted table degrades to "that endpoint reaches nobody" instead
 * of crashing the router.
 */

import { ipv6Scan, isUnspecified6, SCAN_END, SCAN_FRAG, SCAN_L4, SCAN_PROTO, IP_PROTO_ICMPV6, ICMP6 } from '../overlay/ipv6.js';

/** What the policy needs of an endpoint (router/host/endpoints.ts Endpoint is a superset). */
export interface PolicyEndpoint {
  id: string;
  /** "a.b.c.d/len" addresses, each naming its subnet. */
  cidrs: string[];
  /** "aa:bb:cc:dd:ee:ff"; empty when unknown (then nothing from or to it passes). */
  mac: string;
}

/** Why a frame was dropped: the router counts these by name. */
export type DropReason = 'spoof' | 'isolation' | 'malformed' | 'not-local';

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;

/** Options of a SubnetPolicy. */
export interface SubnetPolicyOptions {
  /**
   * --ipalloc-range6: its first 12 bytes (the prefix; an overlay address is these
   * followed by an IPv4 address). Undefined: IPv6 is dropped as 'isolation'.
   */
  range6?: Uint8Array;
}

/** fe80:0000 as int32: link-local addresses fe80::a.b.c.d carry an IPv4 address too. */
const LL0 = 0xfe800000 | 0;

/** A parsed CIDR: address, network and mask as signed int32 (the data path's form). */
export interface ParsedCidr {
  addr: number;
  net: number;
  mask: number;
  len: number;
}

const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** Mask for a prefix length as int32 (0 for /0: a shift by 32 would be a no-op in JS). */
export function prefixMask(len: number): number {
  return len === 0 ? 0 : (-1 << (32 - len)) | 0;
}

/** Parse "a.b.c.d/len" into int32 form; undefined when malformed. */
export function parseCidr(s: string): ParsedCidr | undefined {
  const m = CIDR_RE.exec(s);
  if (!m) return undefined;
  const o = m.slice(1, 5).map(Number);
  const len = Number(m[5]);
  if (o.some((x) => x > 255) || len > 32) return undefined;
  const addr = ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) | 0;
  const mask = prefixMask(len);
  return { addr, net: addr & mask, mask, len };
}

/** Parse "aa:bb:cc:dd:ee:ff" into its high 16 and low 32 bits (int32); undefined when malformed. */
export function parseMac(s: string): { hi: number; lo: number } | undefined {
  if (!MAC_RE.test(s)) return undefined;
  const b = s.split(':').map((x) => parseInt(x, 16));
  return { hi: (b[0] << 8) | b[1], lo: ((b[2] << 24) | (b[3] << 16) | (b[4] << 8) | b[5]) | 0 };
}

/** Limited broadcast (255.255.255.255 = -1 as int32) or multicast 224.0.0.0/4 (RFC 1112). */
function isGroupIp(ip: number): boolean {
  return ip === -1 || (ip >>> 28) === 14;
}

function rd32(buf: Buffer, o: number): number {
  return (buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!;
}

/**
 * The frame policy for one snapshot of the local endpoint table. Build a new one when
 * the table changes (attach, detach, expose, hide); the router swaps it in.
 * Implements router.ts's FramePolicy structurally (no import, to stay pure).
 */
export class SubnetPolicy {
  /** One line per skipped table entry, for the log. */
  readonly problems: string[] = [];
  /** Endpoints that made it into the policy (valid MAC and at least one valid CIDR). */
  readonly endpointCount: number;

  // Endpoints: MAC split in two int32s; chain of endpoints sharing the low 32 bits.
  private readonly epMacHi: Int32Array;
  private readonly epMacLo: Int32Array;
  private readonly epNextSameMacLo: Int32Array;
  private readonly epFirstBinding: Int32Array;
  private readonly macLoFirst = new Map<number, number>();

  // Bindings (one per endpoint address): address, subnet, subnet broadcast, owner,
  // and two chains: next binding with the same address, next binding of the same endpoint.
  private readonly bAddr: Int32Array;
  private readonly bNet: Int32Array;
  private readonly bMask: Int32Array;
  private readonly bBcast: Int32Array;
  private readonly bEp: Int32Array;
  private readonly bNextSameAddr: Int32Array;
  private readonly bNextOfEp: Int32Array;
  private readonly addrFirst = new Map<number, number>();

  // Distinct local subnets, for group destinations.
  private readonly sNet: Int32Array;
  private readonly sMask: Int32Array;

  // [IPv6] range6's prefix as three int32s, the scan scratch, and derived()'s result.
  private readonly v6: boolean;
  private readonly r0: number = 0;
  private readonly r1: number = 0;
  private readonly r2: number = 0;
  private readonly scan = new Int32Array(4);
  private d4 = 0;

  constructor(endpoints: readonly PolicyEndpoint[], opts: SubnetPolicyOptions = {}) {
    const r = opts.range6;
    this.v6 = r !== undefined && r.length >= 12;
    if (r && this.v6) {
      const b = Buffer.from(r.buffer, r.byteOffset, 12);
      this.r0 = rd32(b, 0);
      this.r1 = rd32(b, 4);
      this.r2 = rd32(b, 8);
    }
    const eps: Array<{ mac: { hi: number; lo: number }; cidrs: ParsedCidr[] }> = [];
    for (const e of endpoints) {
      const mac = parseMac(e.mac ?? '');
      if (!mac) {
        this.problems.push(`endpoint ${e.id}: MAC "${e.mac}" is not aa:bb:cc:dd:ee:ff; it can reach nobody until re-attached`);
        continue;
      }
      const cidrs: ParsedCidr[] = [];
      for (const c of e.cidrs ?? []) {
        const p = parseCidr(c);
        if (p) cidrs.push(p);
        else this.problems.push(`endpoint ${e.id}: address "${c}" is not a.b.c.d/len; ignored`);
      }
      if (cidrs.length) eps.push({ mac, cidrs });
    }
    const nb = eps.reduce((n, e) => n + e.cidrs.length, 0);
    this.endpointCount = eps.length;
    this.epMacHi = new Int32Array(eps.length);
    this.epMacLo = new Int32Array(eps.length);
    this.epNextSameMacLo = new Int32Array(eps.length).fill(-1);
    this.epFirstBinding = new Int32Array(eps.length).fill(-1);
    this.bAddr = new Int32Array(nb);
    this.bNet = new Int32Array(nb);
    this.bMask = new Int32Array(nb);
    this.bBcast = new Int32Array(nb);
    this.bEp = new Int32Array(nb);
    this.bNextSameAddr = new Int32Array(nb).fill(-1);
    this.bNextOfEp = new Int32Array(nb).fill(-1);
    const subnets = new Map<string, ParsedCidr>();
    // Chains are built by appending at the tail, so earlier table entries win ties.
    const macTail = new Map<number, number>();
    const addrTail = new Map<number, number>();
    let b = 0;
    for (let i = 0; i < eps.length; i++) {
      const e = eps[i];
      this.epMacHi[i] = e.mac.hi;
      this.epMacLo[i] = e.mac.lo;
      const mt = macTail.get(e.mac.lo);
      if (mt === undefined) this.macLoFirst.set(e.mac.lo, i);
      else this.epNextSameMacLo[mt] = i;
      macTail.set(e.mac.lo, i);
      let prevOfEp = -1;
      for (const c of e.cidrs) {
        this.bAddr[b] = c.addr;
        this.bNet[b] = c.net;
        this.bMask[b] = c.mask;
        this.bBcast[b] = c.net | ~c.mask;
        this.bEp[b] = i;
        if (prevOfEp < 0) this.epFirstBinding[i] = b;
        else this.bNextOfEp[prevOfEp] = b;
        prevOfEp = b;
        const at = addrTail.get(c.addr);
        if (at === undefined) this.addrFirst.set(c.addr, b);
        else this.bNextSameAddr[at] = b;
        addrTail.set(c.addr, b);
        subnets.set(`${c.net}/${c.len}`, c);
        b++;
      }
    }
    const ss = [...subnets.values()];
    this.sNet = Int32Array.from(ss.map((s) => s.net));
    this.sMask = Int32Array.from(ss.map((s) => s.mask));
  }

  /**
   * First local endpoint with the MAC at buf[o, o+6), or -1; nextByMac() walks on to
   * any others (a MAC should be unique on a bridge, but the table cannot promise it).
   */
  private epByMac(buf: Buffer, o: number): number {
    const e = this.macLoFirst.get(rd32(buf, o + 2));
    if (e === undefined) return -1;
    return this.epMacHi[e] === ((buf[o]! << 8) | buf[o + 1]!) ? e : this.nextByMac(buf, o, e);
  }

  private nextByMac(buf: Buffer, o: number, e: number): number {
    const hi = (buf[o]! << 8) | buf[o + 1]!;
    for (e = this.epNextSameMacLo[e]; e !== -1; e = this.epNextSameMacLo[e]) if (this.epMacHi[e] === hi) return e;
    return -1;
  }

  /**
   * A frame buf[start, end) captured from the TAP (sent by a local endpoint): undefined
   * to let it leave this host, or why to drop it.
   */
  checkCaptured(buf: Buffer, start: number, end: number): DropReason | undefined {
    const len = end - start;
    if (len < 14 || start < 0 || end > buf.length) return 'malformed';
    const et = (buf[start + 12]! << 8) | buf[start + 13]!;
    const smacHi = (buf[start + 6]! << 8) | buf[start + 7]!;
    const smacLo = rd32(buf, start + 8);
    let src: number;
    let dst: number;
    if (et === ETHERTYPE_IPV4) {
      if (len < 34) return 'malformed';
      const vi = buf[start + 14]!;
      if ((vi >> 4) !== 4 || (vi & 15) < 5) return 'malformed';
      src = rd32(buf, start + 26);
      dst = rd32(buf, start + 30);
    } else if (et === ETHERTYPE_ARP) {
      if (len < 42) return 'malformed';
      if (!this.arpShapeOk(buf, start)) return 'malformed';
      // The sender hardware address is what neighbours will cache: it must be ours.
      if (((buf[start + 22]! << 8) | buf[start + 23]!) !== smacHi || rd32(buf, start + 24) !== smacLo) return 'spoof';
      src = rd32(buf, start + 28);
      dst = rd32(buf, start + 38);
      if (src === 0) {
        let e = this.epByMac(buf, start + 6);
        if (e < 0) return 'spoof';
        for (; e !== -1; e = this.nextByMac(buf, start + 6, e)) {
          for (let b = this.epFirstBinding[e]; b !== -1; b = this.bNextOfEp[b]) if ((dst & this.bMask[b]) === this.bNet[b]) return undefined;
        }
        return 'isolation';
      }
    } else if (et === ETHERTYPE_IPV6 && this.v6) {
      return this.captured6(buf, start, end, smacHi, smacLo);
    } else {
      return 'isolation';
    }
    const first = this.addrFirst.get(src);
    if (first === undefined) return 'spoof';
    let macOk = false;
    const arp = et === ETHERTYPE_ARP;
    for (let b = first; b !== -1; b = this.bNextSameAddr[b]) {
      const e = this.bEp[b];
      if (this.epMacHi[e] !== smacHi || this.epMacLo[e] !== smacLo) continue;
      macOk = true;
      if ((dst & this.bMask[b]) === this.bNet[b] || (!arp && isGroupIp(dst))) return undefined;
    }
    return macOk ? 'isolation' : 'spoof';
  }

  /**
   * A frame buf[start, end) received from a peer, about to be written to the TAP:
   * undefined to deliver it, or why to drop it.
   */
  checkDelivered(buf: Buffer, start: number, end: number): DropReason | undefined {
    const len = end - start;
    if (len < 14 || start < 0 || end > buf.length) return 'malformed';
    const et = (buf[start + 12]! << 8) | buf[start + 13]!;
    let key: number;
    let dst: number;
    let arp = false;
    if (et === ETHERTYPE_IPV4) {
      if (len < 34) return 'malformed';
      const vi = buf[start + 14]!;
      if ((vi >> 4) !== 4 || (vi & 15) < 5) return 'malformed';
      key = rd32(buf, start + 26);
      dst = rd32(buf, start + 30);
    } else if (et === ETHERTYPE_ARP) {
      if (len < 42) return 'malformed';
      if (!this.arpShapeOk(buf, start)) return 'malformed';
      arp = true;
      dst = rd32(buf, start + 38);
      const spa = rd32(buf, start + 28);
      key = spa !== 0 ? spa : dst;
    } else if (et === ETHERTYPE_IPV6 && this.v6) {
      return this.delivered6(buf, start, end);
    } else {
      return 'isolation';
    }
    if ((buf[start]! & 1) === 1) {
      // Broadcast/multicast: the bridge hands it to every port, whose own rules filter
      // per port; here it is enough that someone local shares the source's subnet.
      const n = this.sNet.length;
      for (let s = 0; s < n; s++) {
        const m = this.sMask[s];
        if ((key & m) !== this.sNet[s]) continue;
        if ((dst & m) === this.sNet[s] || (!arp && isGroupIp(dst))) return undefined;
      }
      return 'isolation';
    }
    let e = this.epByMac(buf, start);
    if (e < 0) return 'not-local';
    for (; e !== -1; e = this.nextByMac(buf, start, e)) {
      for (let b = this.epFirstBinding[e]; b !== -1; b = this.bNextOfEp[b]) {
        if ((key & this.bMask[b]) !== this.bNet[b]) continue;
        if (dst === this.bAddr[b]) return undefined;
        if (!arp && (dst === this.bBcast[b] || isGroupIp(dst))) return undefined;
      }
    }
    return 'isolation';
  }

  // ---------------- IPv6 (issue #21) ----------------

  /**
   * Whether the IPv6 address at buf[o, o+16) is an overlay address: 1 global (range6
   * prefix), 2 link-local (fe80::a.b.c.d), 0 neither. this.d4 is then its IPv4 address.
   */
  private derived(buf: Buffer, o: number): number {
    const w0 = rd32(buf, o);
    const w1 = rd32(buf, o + 4);
    const w2 = rd32(buf, o + 8);
    this.d4 = rd32(buf, o + 12);
    if (w0 === this.r0 && w1 === this.r1 && w2 === this.r2) return 1;
    if (w0 === LL0 && w1 === 0 && w2 === 0) return 2;
    return 0;
  }

  /** Whether endpoint e has the IPv4 address a. */
  private ownAddr(e: number, a: number): boolean {
    for (let b = this.epFirstBinding[e]; b !== -1; b = this.bNextOfEp[b]) if (this.bAddr[b] === a) return true;
    return false;
  }

  /**
   * The ICMPv6 type of the scanned packet when it must be looked at (-1 otherwise), or
   * a drop: -2 malformed, -3 spoof (RA, Redirect, a link-layer address option that is
   * not the frame's source MAC), -4 isolation (fragmented ND, RFC 6980).
   */
  private icmp6(buf: Buffer, start: number): number {
    const sc = this.scan;
    if (sc[SCAN_PROTO] !== IP_PROTO_ICMPV6 || sc[SCAN_L4] < 0) return -1;
    const l4 = sc[SCAN_L4];
    const pend = sc[SCAN_END];
    if (l4 + 4 > pend) return -2;
    const t = buf[l4]!;
    if (t === ICMP6.ROUTER_ADVERT || t === ICMP6.REDIRECT) return -3;
    if (t !== ICMP6.NEIGHBOR_SOLICIT && t !== ICMP6.NEIGHBOR_ADVERT) return -1;
    if (sc[SCAN_FRAG] !== 0) return -4;
    if (l4 + 24 > pend) return -2;
    // Options (RFC 4861 §4.6): type, length in 8-byte units (0 is invalid).
    const want = t === ICMP6.NEIGHBOR_SOLICIT ? 1 : 2;
    for (let o = l4 + 24; o < pend;) {
      if (o + 2 > pend) return -2;
      const olen = buf[o + 1]! * 8;
      if (olen === 0 || o + olen > pend) return -2;
      if (buf[o] === want) {
        if (olen < 8) return -2;
        for (let i = 0; i < 6; i++) if (buf[o + 2 + i] !== buf[start + 6 + i]) return -3;
      }
      o += olen;
    }
    return t;
  }

  private captured6(buf: Buffer, start: number, end: number, smacHi: number, smacLo: number): DropReason | undefined {
    if (!ipv6Scan(buf, start, end, this.scan)) return 'malformed';
    const t = this.icmp6(buf, start);
    if (t === -2) return 'malformed';
    if (t === -3) return 'spoof';
    if (t === -4) return 'isolation';
    const nd = t === ICMP6.NEIGHBOR_SOLICIT || t === ICMP6.NEIGHBOR_ADVERT;
    const so = start + 22;
    const dO = start + 38;
    const target = this.scan[SCAN_L4] + 8;
    if (isUnspecified6(buf, so)) {
      // Only Duplicate Address Detection (RFC 4862 §5.4.2) of one of its own addresses.
      if (t !== ICMP6.NEIGHBOR_SOLICIT || this.derived(buf, target) === 0) return 'spoof';
      const a = this.d4;
      for (let e = this.epByMac(buf, start + 6); e !== -1; e = this.nextByMac(buf, start + 6, e)) if (this.ownAddr(e, a)) return undefined;
      return 'spoof';
    }
    if (this.derived(buf, so) === 0) return 'spoof';
    const src = this.d4;
    let tgt = 0;
    if (nd) {
      if (this.derived(buf, target) === 0) return t === ICMP6.NEIGHBOR_ADVERT ? 'spoof' : 'isolation';
      tgt = this.d4;
    }
    const dk = buf[dO] === 0xff ? -1 : this.derived(buf, dO);
    const dst = this.d4;
    const first = this.addrFirst.get(src);
    if (first === undefined) return 'spoof';
    let macOk = false;
    for (let b = first; b !== -1; b = this.bNextSameAddr[b]) {
      const e = this.bEp[b];
      if (this.epMacHi[e] !== smacHi || this.epMacLo[e] !== smacLo) continue;
      macOk = true;
      if (t === ICMP6.NEIGHBOR_ADVERT && !this.ownAddr(e, tgt)) return 'spoof';
      const m = this.bMask[b];
      if (nd && (tgt & m) !== this.bNet[b]) continue;
      if (dk === -1 || (dk !== 0 && (dst & m) === this.bNet[b])) return undefined;
    }
    return macOk ? 'isolation' : 'spoof';
  }

  private delivered6(buf: Buffer, start: number, end: number): DropReason | undefined {
    if (!ipv6Scan(buf, start, end, this.scan)) return 'malformed';
    const t = this.icmp6(buf, start);
    if (t === -2) return 'malformed';
    if (t === -3) return 'spoof';
    if (t === -4) return 'isolation';
    const nd = t === ICMP6.NEIGHBOR_SOLICIT || t === ICMP6.NEIGHBOR_ADVERT;
    const target = this.scan[SCAN_L4] + 8;
    let key: number;
    let tgt = 0;
    if (nd) {
      if (this.derived(buf, target) === 0) return 'isolation';
      tgt = this.d4;
    }
    if (isUnspecified6(buf, start + 22)) {
      if (t !== ICMP6.NEIGHBOR_SOLICIT) return 'isolation';
      key = tgt;
    } else {
      if (this.derived(buf, start + 22) === 0) return 'isolation';
      key = this.d4;
    }
    const dk = buf[start + 38] === 0xff ? -1 : this.derived(buf, start + 38);
    const dst = this.d4;
    if (dk === 0) return 'isolation';
    if ((buf[start]! & 1) === 1) {
      const n = this.sNet.length;
      for (let s = 0; s < n; s++) {
        const m = this.sMask[s];
        const net = this.sNet[s];
        if ((key & m) !== net || (nd && (tgt & m) !== net)) continue;
        if (dk === -1 || (dst & m) === net) return undefined;
      }
      return 'isolation';
    }
    let e = this.epByMac(buf, start);
    if (e < 0) return 'not-local';
    for (; e !== -1; e = this.nextByMac(buf, start, e)) {
      for (let b = this.epFirstBinding[e]; b !== -1; b = this.bNextOfEp[b]) {
        const m = this.bMask[b];
        const net = this.bNet[b];
        if ((key & m) !== net || (nd && (tgt & m) !== net)) continue;
        if (dk === -1 || dst === this.bAddr[b]) return undefined;
      }
    }
    return 'isolation';
  }

  /** RFC 826 fixed part for Ethernet/IPv4: htype 1, ptype 0x0800, hlen 6, plen 4. */
  private arpShapeOk(buf: Buffer, start: number): boolean {
    return buf[start + 14] === 0 && buf[start + 15] === 1 && buf[start + 16] === 0x08 && buf[start + 17] === 0x00 &&
      buf[start + 18] === 6 && buf[start + 19] === 4;
  }
}
