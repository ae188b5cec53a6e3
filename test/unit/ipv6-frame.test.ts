import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ipv6Scan, packetTooBig, icmpv6Checksum, SCAN_END, SCAN_FRAG, SCAN_L4, SCAN_PROTO } from '../../router/overlay/ipv6.js';
import { parseIpv6 } from '../../ipam/ipv6.js';

// ---- builders (by hand: Ethernet II, IPv6 per RFC 8200, ICMPv6 per RFC 4443) ----
const mac = (m: string): Buffer => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));
const A_MAC = '02:00:00:00:00:0a';
const B_MAC = '02:00:00:00:00:0b';
const A6 = 'fd00:77::a20:105';
const B6 = 'fd00:77::a20:106';

function ip6(src: string, dst: string, nh: number, payload: Buffer, plen = payload.length): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(plen, 4);
  h[6] = nh;
  h[7] = 64;
  parseIpv6(src)!.copy(h, 8);
  parseIpv6(dst)!.copy(h, 24);
  return Buffer.concat([h, payload]);
}
function eth(dst: string, src: string, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(14);
  mac(dst).copy(h, 0);
  mac(src).copy(h, 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}

/**
 * Independent ICMPv6 checksum: sum the 16-bit words of an explicit pseudo-header buffer
 * (src, dst, 32-bit length, 3 zero bytes, next header 58) followed by the message.
 */
function sumPseudo(src: Buffer, dst: Buffer, msg: Buffer): number {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msg.length);
  const all = Buffer.concat([src, dst, len, Buffer.from([0, 0, 0, 58]), msg, Buffer.alloc(msg.length % 2)]);
  let s = 0;
  for (let i = 0; i < all.length; i += 2) s += all.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function icmp6Packet(src: string, dst: string, type: number, body: Buffer): Buffer {
  const m = Buffer.concat([Buffer.from([type, 0, 0, 0]), body]);
  m.writeUInt16BE(~sumPseudo(parseIpv6(src)!, parseIpv6(dst)!, m) & 0xffff, 2);
  return ip6(src, dst, 58, m);
}

describe('ipv6Scan', () => {
  const out = new Int32Array(4);
  test('no extension headers: upper layer right after the header, Ethernet padding excluded', () => {
    const f = Buffer.concat([eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 17, Buffer.alloc(8))), Buffer.alloc(10)]);
    assert.equal(ipv6Scan(f, 0, f.length, out), true);
    assert.deepEqual([...out], [17, 54, 0, 62]);
  });

  test('hop-by-hop, destination options and a first fragment are walked', () => {
    const hbh = Buffer.from([60, 0, 1, 4, 0, 0, 0, 0]);
    const dst = Buffer.from([44, 1, ...Array(14).fill(0)]);
    const frag = Buffer.from([58, 0, 0, 1, 0, 0, 0, 7]);
    const f = eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 0, Buffer.concat([hbh, dst, frag, Buffer.from([128, 0, 0, 0, 0, 0, 0, 0])])));
    assert.equal(ipv6Scan(f, 0, f.length, out), true);
    assert.equal(out[SCAN_PROTO], 58);
    assert.equal(out[SCAN_L4], 14 + 40 + 8 + 16 + 8);
    assert.equal(out[SCAN_FRAG], 1);
  });

  test('a later fragment has no upper-layer header', () => {
    const frag = Buffer.from([58, 0, 0x05, 0x01, 0, 0, 0, 7]);
    const f = eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 44, Buffer.concat([frag, Buffer.alloc(16)])));
    assert.equal(ipv6Scan(f, 0, f.length, out), true);
    assert.deepEqual([out[SCAN_PROTO], out[SCAN_L4], out[SCAN_FRAG]], [58, -1, 2]);
  });

  test('malformed: truncated, bad version, payload past the frame, too many or overlong extension headers, jumbogram', () => {
    const ok = eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 17, Buffer.alloc(8)));
    assert.equal(ipv6Scan(ok, 0, 50, out), false);
    const v4 = Buffer.from(ok);
    v4[14] = 0x45;
    assert.equal(ipv6Scan(v4, 0, v4.length, out), false);
    assert.equal(ipv6Scan(eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 17, Buffer.alloc(8), 9)), 0, 62, out), false);
    const chain = Buffer.concat(Array.from({ length: 9 }, () => Buffer.from([60, 0, 1, 4, 0, 0, 0, 0])));
    const nine = eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 60, chain));
    assert.equal(ipv6Scan(nine, 0, nine.length, out), false);
    const long = eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 60, Buffer.from([17, 3, 0, 0, 0, 0, 0, 0])));
    assert.equal(ipv6Scan(long, 0, long.length, out), false);
    assert.equal(ipv6Scan(eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 0, Buffer.alloc(0))), 0, 54, out), false);
  });

  test('never throws and never reads past the range (random bytes)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(20), (b, cut) => {
      const f = Buffer.from(b);
      if (f.length > 13) f.writeUInt16BE(0x86dd, 12);
      const end = Math.max(0, f.length - cut);
      if (ipv6Scan(f, 0, end, out)) {
        assert.ok(out[SCAN_END] <= end);
        assert.ok(out[SCAN_L4] <= out[SCAN_END]);
      }
      assert.doesNotThrow(() => packetTooBig(f, 0, end, 1280));
    }), { numRuns: 2000 });
  });
});

describe('ICMPv6 Packet Too Big (RFC 4443 §3.2)', () => {
  const big = eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 17, Buffer.alloc(1400, 0x5a)));

  test('addresses, type, MTU, a quote that keeps the message at 1280 bytes, and the pseudo-header checksum', () => {
    const r = packetTooBig(big, 0, big.length, 1300)!;
    assert.ok(r);
    assert.deepEqual(r.subarray(0, 6), mac(A_MAC), 'back to the sender');
    assert.deepEqual(r.subarray(6, 12), mac(B_MAC));
    assert.equal(r.readUInt16BE(12), 0x86dd);
    assert.equal(r[14] >> 4, 6);
    assert.equal(r.readUInt16BE(18), 1240, 'payload length: 8 + 1232');
    assert.equal(r.length - 14, 1280, 'the whole IPv6 packet is the minimum MTU');
    assert.equal(r[20], 58);
    assert.deepEqual(r.subarray(22, 38), parseIpv6(B6));
    assert.deepEqual(r.subarray(38, 54), parseIpv6(A6));
    assert.equal(r[54], 2, 'type 2');
    assert.equal(r[55], 0, 'code 0');
    assert.equal(r.readUInt32BE(58), 1300);
    assert.deepEqual(r.subarray(62), big.subarray(14, 14 + 1232), 'quotes the start of the invoking packet');
    assert.equal(sumPseudo(parseIpv6(B6)!, parseIpv6(A6)!, r.subarray(54)), 0xffff, 'checksum verifies (independent sum)');
    assert.equal(icmpv6Checksum(r, 14, 54, r.length - 54), 0, 'and with the data-path routine');
  });

  test('a small invoking packet is quoted whole; the checksum is that of the message with the field zeroed', () => {
    const small = eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 17, Buffer.from('tsweave!')));
    const r = packetTooBig(small, 0, small.length, 1280)!;
    assert.equal(r.length, 14 + 40 + 8 + 48);
    assert.deepEqual(r.subarray(62), small.subarray(14));
    assert.equal(r.readUInt16BE(56), (~sumPseudo(parseIpv6(B6)!, parseIpv6(A6)!, Buffer.concat([r.subarray(54, 56), Buffer.alloc(2), r.subarray(58)])) & 0xffff));
  });

  test('an ICMPv6 informational message (echo request) gets one; errors, multicast and :: do not', () => {
    const echo = eth(B_MAC, A_MAC, 0x86dd, icmp6Packet(A6, B6, 128, Buffer.alloc(1400)));
    assert.ok(packetTooBig(echo, 0, echo.length, 1300));
    const err = eth(B_MAC, A_MAC, 0x86dd, icmp6Packet(A6, B6, 1, Buffer.alloc(1400)));
    assert.equal(packetTooBig(err, 0, err.length, 1300), undefined, 'an error message');
    const mcastMac = eth('33:33:00:00:00:01', A_MAC, 0x86dd, ip6(A6, 'ff02::1', 17, Buffer.alloc(1400)));
    assert.equal(packetTooBig(mcastMac, 0, mcastMac.length, 1300), undefined, 'group MAC');
    const mcastIp = eth(B_MAC, A_MAC, 0x86dd, ip6(A6, 'ff02::1', 17, Buffer.alloc(1400)));
    assert.equal(packetTooBig(mcastIp, 0, mcastIp.length, 1300), undefined, 'multicast destination');
    const unspec = eth(B_MAC, A_MAC, 0x86dd, ip6('::', B6, 17, Buffer.alloc(1400)));
    assert.equal(packetTooBig(unspec, 0, unspec.length, 1300), undefined, 'unspecified source');
    const laterFrag = eth(B_MAC, A_MAC, 0x86dd, ip6(A6, B6, 44, Buffer.concat([Buffer.from([58, 0, 0x05, 0x01, 0, 0, 0, 7]), Buffer.alloc(1400)])));
    assert.equal(packetTooBig(laterFrag, 0, laterFrag.length, 1300), undefined, 'cannot tell whether a later ICMPv6 fragment is an error');
    const v4 = Buffer.from(big);
    v4.writeUInt16BE(0x0800, 12);
    assert.equal(packetTooBig(v4, 0, v4.length, 1300), undefined, 'not IPv6');
    assert.throws(() => packetTooBig(big, 0, big.length, -1), RangeError);
  });

  test('works on a frame inside a larger buffer', () => {
    const slab = Buffer.concat([Buffer.alloc(33, 0xee), big, Buffer.alloc(7, 0xee)]);
    assert.deepEqual(packetTooBig(slab, 33, 33 + big.length, 1300), packetTooBig(big, 0, big.length, 1300));
  });
});
