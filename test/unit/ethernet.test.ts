import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  dstMac,
  etherType,
  fragmentIPv4,
  icmpFragNeeded,
  ipv4Checksum,
  ipv4DontFragment,
  isGroupMac,
  srcMac,
} from '../../router/overlay/ethernet.js';
import { mulberry32 } from '../lib/prng.js';


const MAC_A = Buffer.from('0a580a200001', 'hex');
const MAC_B = Buffer.from('0a580a200002', 'hex');

interface PacketOpts {
  payload: Buffer;
  options?: Buffer;      // already padded to a multiple of 4
  df?: boolean;
  mf?: boolean;
  offsetUnits?: number;
  proto?: number;
  id?: number;
  src?: string;
  dst?: string;
  dstMac?: Buffer;
  ethPadding?: number;
}

function ip4(s: string): Buffer {
  return Buffer.from(s.split('.').map(Number));
}

/** Builds an Ethernet frame carrying an IPv4 packet with a correct header checksum. */
function packet(o: PacketOpts): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const hl = 20 + opts.length;
  const h = Buffer.alloc(hl);
  h[0] = 0x40 | (hl / 4);
  h[1] = 0x10;
  h.writeUInt16BE(hl + o.payload.length, 2);
  h.writeUInt16BE(o.id ?? 0x1234, 4);
  h.writeUInt16BE((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | (o.offsetUnits ?? 0), 6);
  h[8] = 61;
  h[9] = o.proto ?? 17;
  ip4(o.src ?? '10.32.0.1').copy(h, 12);
  ip4(o.dst ?? '10.32.0.2').copy(h, 16);
  opts.copy(h, 20);
  h.writeUInt16BE(ipv4Checksum(h, 0, hl), 10);
  const eth = Buffer.concat([o.dstMac ?? MAC_B, MAC_A, Buffer.from([0x08, 0x00])]);
  return Buffer.concat([eth, h, o.payload, Buffer.alloc(o.ethPadding ?? 0)]);
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed * 13 + (i >> 8)) & 0xff;
  return b;
}

interface Frag { offsetBytes: number; mf: boolean; data: Buffer; header: Buffer }

/** Checks one fragment frame's invariants and returns its parsed fields. */
function checkFragment(f: Buffer, orig: Buffer, mtu: number): Frag {
  assert.ok(f.subarray(0, 14).equals(orig.subarray(0, 14)), 'Ethernet header copied');
  const ip = f.subarray(14);
  const hl = (ip[0]! & 0x0f) * 4;
  assert.equal(ip[0]! >> 4, 4);
  const total = ip.readUInt16BE(2);
  assert.equal(total, ip.length, 'total length matches the frame');
  assert.ok(total <= mtu, `fragment of ${total} bytes exceeds mtu ${mtu}`);
  assert.equal(ipv4Checksum(ip, 0, hl), 0, 'header checksum');
  const oip = orig.subarray(14);
  assert.equal(ip.readUInt16BE(4), oip.readUInt16BE(4), 'id');
  assert.equal(ip[9], oip[9], 'protocol');
  assert.equal(ip[8], oip[8], 'ttl');
  assert.ok(ip.subarray(12, 20).equals(oip.subarray(12, 20)), 'addresses');
  const fo = ip.readUInt16BE(6);
  assert.equal(fo & 0x4000, 0, 'DF clear');
  return { offsetBytes: (fo & 0x1fff) * 8, mf: (fo & 0x2000) !== 0, data: Buffer.from(ip.subarray(hl)), header: Buffer.from(ip.subarray(0, hl)) };
}

/** Reassembles fragments (any order) and checks contiguity; returns [startOffset, data, lastMF]. */
function reassemble(frags: Frag[]): { start: number; data: Buffer; lastMF: boolean } {
  const sorted = [...frags].sort((a, b) => a.offsetBytes - b.offsetBytes);
  let at = sorted[0]!.offsetBytes;
  for (let i = 0; i < sorted.length; i++) {
    const f = sorted[i]!;
    assert.equal(f.offsetBytes, at, 'fragments are contiguous');
    if (i < sorted.length - 1) {
      assert.ok(f.mf, 'MF set on all but the last');
      assert.equal(f.data.length % 8, 0, 'non-last data is a multiple of 8');
    }
    at += f.data.length;
  }
  return { start: sorted[0]!.offsetBytes, data: Buffer.concat(sorted.map((f) => f.data)), lastMF: sorted[sorted.length - 1]!.mf };
}

test('MAC and EtherType accessors', () => {
  const f = packet({ payload: bytes(10, 1) });
  const padded = Buffer.concat([Buffer.alloc(3), f]);
  assert.equal(dstMac(padded, 3), 0x0a580a200002);
  assert.equal(srcMac(padded, 3), 0x0a580a200001);
  assert.equal(etherType(padded, 3), 0x0800);
  assert.equal(isGroupMac(0xffffffffffff), true);
  assert.equal(isGroupMac(0x01005e000001), true);
  assert.equal(isGroupMac(0x333300000001), true);
  assert.equal(isGroupMac(0x0a580a200002), false);
  assert.equal(isGroupMac(0xfeffffffffff), false);
  assert.equal(isGroupMac(0), false);
});

test('ipv4Checksum matches a known header and verifies to zero', () => {
  const h = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
  assert.equal(ipv4Checksum(h, 0, 20), 0xb861);
  h.writeUInt16BE(0xb861, 10);
  assert.equal(ipv4Checksum(h, 0, 20), 0);
  // odd length pads with a zero byte; carries fold
  assert.equal(ipv4Checksum(Buffer.from([0x01]), 0, 1), ~0x0100 & 0xffff);
  assert.equal(ipv4Checksum(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x02]), 0, 6), ~0x0002 & 0xffff);
  assert.equal(ipv4Checksum(Buffer.alloc(0), 0, 0), 0xffff);
  const big = Buffer.alloc(70000, 0xff);
  assert.equal(ipv4Checksum(big, 0, big.length), 0);
});

test('ipv4DontFragment reads DF and rejects non-IPv4 or broken headers', () => {
  assert.equal(ipv4DontFragment(packet({ payload: bytes(40, 1), df: true }), 0, 14 + 60), true);
  const f = packet({ payload: bytes(40, 1) });
  assert.equal(ipv4DontFragment(f, 0, f.length), false);
  const arp = Buffer.from(f);
  arp.writeUInt16BE(0x0806, 12);
  assert.equal(ipv4DontFragment(arp, 0, arp.length), undefined);
  const v6 = Buffer.from(f);
  v6[14] = 0x65;
  assert.equal(ipv4DontFragment(v6, 0, v6.length), undefined);
  const ihl4 = Buffer.from(f);
  ihl4[14] = 0x44;
  assert.equal(ipv4DontFragment(ihl4, 0, ihl4.length), undefined);
  assert.equal(ipv4DontFragment(f, 0, f.length - 1), undefined, 'total length beyond the frame');
  assert.equal(ipv4DontFragment(f, 0, 33), undefined);
  assert.equal(ipv4DontFragment(f, 0, f.length + 1), undefined, 'end beyond the buffer');
  const shortTotal = Buffer.from(f);
  shortTotal.writeUInt16BE(19, 16);
  assert.equal(ipv4DontFragment(shortTotal, 0, shortTotal.length), undefined);
});

test('fragmentIPv4 splits a plain packet into valid fragments that reassemble', () => {
  const payload = bytes(3000, 2);
  const f = packet({ payload, ethPadding: 0 });
  for (const mtu of [68, 576, 1000, 1280, 1400, 1500, 3019]) {
    const frags = fragmentIPv4(f, 0, f.length, mtu)!;
    assert.ok(frags, `mtu ${mtu}`);
    const parsed = frags.map((x) => checkFragment(x, f, mtu));
    const r = reassemble(parsed);
    assert.equal(r.start, 0);
    assert.equal(r.lastMF, false);
    assert.ok(r.data.equals(payload), `mtu ${mtu}: reassembled payload differs`);
    // fragments use the room they have: all but the last are the largest multiple of 8 that fits
    for (const p of parsed.slice(0, -1)) assert.equal(p.data.length, Math.floor((mtu - 20) / 8) * 8);
    assert.equal(frags.length, Math.ceil(3000 / (Math.floor((mtu - 20) / 8) * 8)));
  }
});

test('fragmentIPv4 returns one copy when the packet already fits, without Ethernet padding', () => {
  const f = packet({ payload: bytes(10, 3), ethPadding: 16 });
  const out = fragmentIPv4(f, 0, f.length, 1500)!;
  assert.equal(out.length, 1);
  assert.ok(out[0]!.equals(f.subarray(0, f.length - 16)));
  out[0]![20] ^= 0xff;
  assert.notEqual(out[0]![20], f[20], 'a copy, not a view of the input');
  const exact = packet({ payload: bytes(1480, 3) });
  assert.equal(fragmentIPv4(exact, 0, exact.length, 1500)!.length, 1);
  assert.equal(fragmentIPv4(exact, 0, exact.length, 1499)!.length, 2);
});

test('fragmentIPv4 refuses DF, non-IPv4 and hopeless MTUs', () => {
  const df = packet({ payload: bytes(2000, 1), df: true });
  assert.equal(fragmentIPv4(df, 0, df.length, 1500), undefined);
  const f = packet({ payload: bytes(2000, 1) });
  const arp = Buffer.from(f);
  arp.writeUInt16BE(0x86dd, 12);
  assert.equal(fragmentIPv4(arp, 0, arp.length, 1500), undefined);
  assert.equal(fragmentIPv4(f, 0, f.length, 27), undefined, 'less than 8 data bytes');
  assert.ok(fragmentIPv4(f, 0, f.length, 28), 'exactly 8 data bytes');
  const withOpts = packet({ payload: bytes(200, 1), options: Buffer.from([0x94, 0x04, 0x00, 0x00]) });
  assert.equal(fragmentIPv4(withOpts, 0, withOpts.length, 31), undefined, '24-byte header + 8 needs 32');
  // offsets would overflow 13 bits
  const late = packet({ payload: bytes(2000, 1), offsetUnits: 8150, mf: true });
  assert.equal(fragmentIPv4(late, 0, late.length, 576), undefined);
});

test('fragmentIPv4 keeps all options in the first fragment and only copied ones later', () => {
  // Router Alert (0x94, copied), NOP, Timestamp-like non-copied option (0x44 len 8), padding to 16 bytes
  const options = Buffer.from([0x94, 0x04, 0x00, 0x00, 0x01, 0x44, 0x08, 0x05, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00]);
  const payload = bytes(1000, 4);
  const f = packet({ payload, options });
  const mtu = 300;
  const frags = fragmentIPv4(f, 0, f.length, mtu)!;
  const parsed = frags.map((x) => checkFragment(x, f, mtu));
  assert.ok(parsed[0]!.header.subarray(20).equals(options), 'first fragment keeps every option');
  for (const p of parsed.slice(1)) {
    assert.equal(p.header.length, 24);
    assert.ok(p.header.subarray(20).equals(Buffer.from([0x94, 0x04, 0x00, 0x00])), 'later fragments keep only the copied option');
  }
  assert.equal(parsed[0]!.data.length, Math.floor((mtu - 36) / 8) * 8);
  assert.equal(parsed[1]!.data.length, Math.floor((mtu - 24) / 8) * 8);
  assert.ok(reassemble(parsed).data.equals(payload));
  // a malformed option list: later fragments just carry no options
  const broken = packet({ payload, options: Buffer.from([0x83, 0x09, 0x00, 0x00]) });
  const bf = fragmentIPv4(broken, 0, broken.length, 300)!;
  for (const x of bf.slice(1)) assert.equal(checkFragment(x, broken, 300).header.length, 20);
  assert.ok(reassemble(bf.map((x) => checkFragment(x, broken, 300))).data.equals(payload));
});

test('fragmentIPv4 re-fragments an existing fragment, keeping its offset and MF', () => {
  const payload = bytes(1600, 5);
  for (const mf of [true, false]) {
    const f = packet({ payload, offsetUnits: 185, mf });
    const frags = fragmentIPv4(f, 0, f.length, 576)!;
    const r = reassemble(frags.map((x) => checkFragment(x, f, 576)));
    assert.equal(r.start, 185 * 8);
    assert.equal(r.lastMF, mf);
    assert.ok(r.data.equals(payload));
  }
});

test('fragmentIPv4 works on a frame inside a larger buffer and keeps the reserved flag', () => {
  const payload = bytes(900, 6);
  const f = packet({ payload });
  f[14 + 6] = f[14 + 6]! | 0x80; // reserved bit
  f.writeUInt16BE(0, 14 + 10);
  f.writeUInt16BE(ipv4Checksum(f, 14, 34), 14 + 10);
  const host = Buffer.concat([bytes(33, 9), f, bytes(17, 9)]);
  const frags = fragmentIPv4(host, 33, 33 + f.length, 400)!;
  for (const x of frags) assert.equal(x[14 + 6]! & 0x80, 0x80);
  assert.ok(reassemble(frags.map((x) => checkFragment(x, f, 400))).data.equals(payload));
});

test('property: random packets, options and MTUs fragment and reassemble', () => {
  const rnd = mulberry32(4242);
  for (let trial = 0; trial < 500; trial++) {
    const len = Math.floor(rnd() * 9000);
    const payload = bytes(len, trial);
    const optWords = Math.floor(rnd() * 11);
    const options = Buffer.alloc(optWords * 4);
    for (let i = 0; i < options.length; i++) options[i] = Math.floor(rnd() * 256);
    const offsetUnits = rnd() < 0.2 ? Math.floor(rnd() * 1000) : 0;
    const mf = offsetUnits > 0 && rnd() < 0.5;
    const f = packet({ payload, options, offsetUnits, mf, ethPadding: Math.floor(rnd() * 4) });
    const mtu = 68 + Math.floor(rnd() * 9000);
    const frags = fragmentIPv4(f, 0, f.length, mtu);
    const hl = 20 + options.length;
    if (mtu - hl < 8) {
      assert.equal(frags, undefined);
      continue;
    }
    assert.ok(frags, `trial ${trial}`);
    const parsed = frags.map((x) => checkFragment(x, f, Math.max(mtu, hl + len)));
    if (hl + len <= mtu) {
      assert.equal(frags.length, 1);
    } else {
      for (const p of parsed) assert.ok(p.header.length + p.data.length <= mtu);
    }
    for (const p of parsed.slice(1)) {
      // later fragments carry only options with the "copied" bit, up to End of Option List
      for (let i = 20; i < p.header.length && p.header[i] !== 0; i += p.header[i + 1]!) {
        assert.equal(p.header[i]! & 0x80, 0x80, `trial ${trial}: non-copied option 0x${p.header[i]!.toString(16)} repeated`);
      }
    }
    const r = reassemble(parsed);
    assert.equal(r.start, offsetUnits * 8);
    assert.equal(r.lastMF, mf);
    assert.ok(r.data.equals(payload), `trial ${trial}`);
  }
});

test('icmpFragNeeded builds a correct RFC 1191 reply', () => {
  const payload = bytes(1400, 7);
  const options = Buffer.from([0x94, 0x04, 0x00, 0x00]);
  const f = packet({ payload, df: true, options, src: '10.32.0.1', dst: '10.40.0.9', proto: 6 });
  const r = icmpFragNeeded(f, 0, f.length, 1376)!;
  assert.ok(r);
  assert.ok(r.subarray(0, 6).equals(MAC_A), 'Ethernet dst = original src');
  assert.ok(r.subarray(6, 12).equals(MAC_B), 'Ethernet src = original dst');
  assert.equal(r.readUInt16BE(12), 0x0800);
  const ip = r.subarray(14);
  assert.equal(ip[0], 0x45);
  assert.equal(ip.readUInt16BE(2), ip.length);
  assert.equal(ip[8], 64);
  assert.equal(ip[9], 1);
  assert.equal(ipv4Checksum(ip, 0, 20), 0);
  assert.ok(ip.subarray(12, 16).equals(ip4('10.40.0.9')));
  assert.ok(ip.subarray(16, 20).equals(ip4('10.32.0.1')));
  const icmp = ip.subarray(20);
  assert.equal(icmp[0], 3);
  assert.equal(icmp[1], 4);
  assert.equal(icmp.readUInt16BE(4), 0);
  assert.equal(icmp.readUInt16BE(6), 1376);
  assert.equal(ipv4Checksum(icmp, 0, icmp.length), 0);
  assert.ok(icmp.subarray(8).equals(f.subarray(14, 14 + 24 + 8)), 'quotes the IP header and 8 data bytes');
  assert.equal(r.length, 14 + 20 + 8 + 24 + 8);
});

test('icmpFragNeeded quotes fewer bytes for a tiny packet and works at an offset', () => {
  const f = packet({ payload: bytes(3, 1), df: true });
  const host = Buffer.concat([Buffer.alloc(5), f, Buffer.alloc(9)]);
  const r = icmpFragNeeded(host, 5, 5 + f.length, 1000)!;
  const icmp = r.subarray(34);
  assert.ok(icmp.subarray(8).equals(f.subarray(14)));
  assert.equal(ipv4Checksum(icmp, 0, icmp.length), 0);
  assert.equal(ipv4Checksum(r, 14, 34), 0);
});

test('icmpFragNeeded stays silent where RFC 1122 forbids an error', () => {
  const base = { payload: bytes(100, 1), df: true };
  const echo = Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]), bytes(50, 1)]);
  assert.ok(icmpFragNeeded(packet({ ...base, proto: 1, payload: echo }), 0, 14 + 20 + echo.length, 500), 'echo request is answered');
  for (const type of [3, 4, 5, 11, 12]) {
    const err = Buffer.concat([Buffer.from([type, 0, 0, 0, 0, 0, 0, 0]), bytes(28, 1)]);
    const f = packet({ ...base, proto: 1, payload: err });
    assert.equal(icmpFragNeeded(f, 0, f.length, 500), undefined, `ICMP type ${type}`);
  }
  const cases: Array<[string, Buffer]> = [
    ['non-first fragment', packet({ ...base, offsetUnits: 10 })],
    ['multicast destination', packet({ ...base, dst: '224.0.0.251' })],
    ['broadcast destination', packet({ ...base, dst: '255.255.255.255' })],
    ['unspecified source', packet({ ...base, src: '0.0.0.0' })],
    ['loopback source', packet({ ...base, src: '127.0.0.1' })],
    ['multicast source', packet({ ...base, src: '239.1.1.1' })],
    ['group destination MAC', packet({ ...base, dstMac: Buffer.from('ffffffffffff', 'hex') })],
  ];
  for (const [what, f] of cases) assert.equal(icmpFragNeeded(f, 0, f.length, 500), undefined, what);
  const arp = packet(base);
  arp.writeUInt16BE(0x0806, 12);
  assert.equal(icmpFragNeeded(arp, 0, arp.length, 500), undefined);
  const f = packet(base);
  for (const mtu of [-1, 65536, 1.5]) assert.throws(() => icmpFragNeeded(f, 0, f.length, mtu), RangeError);
});

test('property: random and truncated frames never make a parser throw', () => {
  const rnd = mulberry32(8080);
  const valid = packet({ payload: bytes(600, 1), options: Buffer.from([0x94, 0x04, 0, 0]) });
  for (let trial = 0; trial < 3000; trial++) {
    let f: Buffer;
    if (trial % 3 === 0) {
      f = Buffer.alloc(Math.floor(rnd() * 80));
      for (let i = 0; i < f.length; i++) f[i] = Math.floor(rnd() * 256);
      if (f.length > 14) {
        f.writeUInt16BE(0x0800, 12);
        f[14] = 0x40 | (f[14]! & 0x0f);
      }
    } else {
      f = Buffer.from(valid.subarray(0, Math.floor(rnd() * (valid.length + 1))));
      for (let i = 0; i < Math.floor(rnd() * 4); i++) if (f.length) f[Math.floor(rnd() * f.length)] = Math.floor(rnd() * 256);
    }
    const start = f.length ? Math.floor(rnd() * 3) : 0;
    const end = Math.max(start, f.length - Math.floor(rnd() * 3));
    const df = ipv4DontFragment(f, start, end);
    const frags = fragmentIPv4(f, start, end, 68 + Math.floor(rnd() * 600));
    const icmp = icmpFragNeeded(f, start, end, 1400);
    if (df === undefined) {
      assert.equal(frags, undefined);
      assert.equal(icmp, undefined);
    }
    if (df === true) assert.equal(frags, undefined);
    if (frags) for (const x of frags) assert.equal(ipv4Checksum(x, 14, 14 + (x[14]! & 0x0f) * 4), 0);
    if (icmp) assert.equal(ipv4Checksum(icmp, 34, icmp.length), 0);
    // out-of-range arguments
    assert.equal(ipv4DontFragment(f, -1, f.length), undefined);
    assert.equal(fragmentIPv4(f, 0, f.length + 5, 576), undefined);
    assert.equal(icmpFragNeeded(f, 2.5, f.length, 576), undefined);
  }
});
