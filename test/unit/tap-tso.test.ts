/**
 * TAP read offloads: the addon's cutting of TCP super-frames (router/overlay/native/tap.cc
 * TsoInfo, reached through segmentTso) must give exactly the segments Linux's GSO gives:
 * payload split at gsoSize in order, sequence numbers advanced, IPv4 id + 1 per segment,
 * lengths per segment, CWR only on the first and FIN/PSH only on the last, and IPv4 and
 * TCP checksums that verify under an independent RFC 1071 sum written here.
 * And the write side (mergeTcp, the path of Tap.writeSlab with vnetHdr): runs of
 * IPv4/TCP and IPv6/TCP segments merge into one GSO super-frame whose lengths and
 * partial checksum (pseudo-header sum) verify independently and which the kernel's
 * own cut (segmentTso) turns back into the very same segments; what GRO must not merge
 * (IPv6 extension headers, padding, other flows, hostile lengths) passes unchanged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mergeTcp, segmentTso } from '../../router/overlay/tap.js';
import { mulberry32 as prng } from '../lib/prng.js';

/** RFC 1071 sum of big-endian 16-bit words, folded (independent of the addon's). */
function sum16(b: Uint8Array, start: number, end: number, init = 0): number {
  let s = init;
  for (let i = start; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if ((end - start) % 2) s += b[end - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

interface Opts { v6: boolean; payload: Buffer; flags: number; optBytes: number; ipId?: number; seq?: number }

/** An Ethernet + IPv4/IPv6 + TCP super-frame carrying `payload` (checksum fields left as junk). */
function superFrame(o: Opts): Buffer {
  const ipLen = o.v6 ? 40 : 20;
  const thl = 20 + o.optBytes;
  const f = Buffer.alloc(14 + ipLen + thl + o.payload.length);
  Buffer.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]).copy(f, 0);
  f.writeUInt16BE(o.v6 ? 0x86dd : 0x0800, 12);
  const ip = 14;
  if (o.v6) {
    f[ip] = 0x60;
    f.writeUInt16BE(thl + o.payload.length, ip + 4);
    f[ip + 6] = 6;
    f[ip + 7] = 64;
    for (let i = 0; i < 16; i++) f[ip + 8 + i] = 0xfd ^ i;
    for (let i = 0; i < 16; i++) f[ip + 24 + i] = 0xfd ^ (i * 3);
  } else {
    f[ip] = 0x45;
    f.writeUInt16BE(20 + thl + o.payload.length, ip + 2);
    f.writeUInt16BE(o.ipId ?? 0xfffe, ip + 4);
    f.writeUInt16BE(0x4000, ip + 6);
    f[ip + 8] = 64;
    f[ip + 9] = 6;
    f.writeUInt16BE(0xbeef, ip + 10);
    Buffer.from([10, 32, 0, 1, 10, 32, 0, 2]).copy(f, ip + 12);
  }
  const th = ip + ipLen;
  f.writeUInt16BE(40000, th);
  f.writeUInt16BE(5201, th + 2);
  f.writeUInt32BE(o.seq ?? 0xfffff000, th + 4);
  f.writeUInt32BE(12345, th + 8);
  f[th + 12] = (thl / 4) << 4;
  f[th + 13] = o.flags;
  f.writeUInt16BE(501, th + 14);
  f.writeUInt16BE(0x1234, th + 16);
  for (let i = 0; i < o.optBytes; i++) f[th + 20 + i] = i === 0 ? 1 : 8; // NOPs, then anything
  o.payload.copy(f, th + thl);
  return f;
}

function check(o: Opts, mss: number): void {
  const f = superFrame(o);
  const ipLen = o.v6 ? 40 : 20;
  const toff = 14 + ipLen;
  const hdr = toff + 20 + o.optBytes;
  const segs = segmentTso(f, o.v6 ? 4 : 1, mss, toff);
  assert.equal(segs.length, Math.ceil(o.payload.length / mss));
  const seq0 = f.readUInt32BE(toff + 4);
  let off = 0;
  segs.forEach((s, k) => {
    const last = k === segs.length - 1;
    const n = s.length - hdr;
    assert.equal(n, last ? o.payload.length - off : mss, `segment ${k} size`);
    assert.deepEqual(s.subarray(hdr), o.payload.subarray(off, off + n), `segment ${k} payload`);
    assert.deepEqual(s.subarray(0, 14), f.subarray(0, 14));
    const tcpLen = s.length - toff;
    let pseudo: number;
    if (o.v6) {
      assert.equal(s.readUInt16BE(14 + 4), s.length - 14 - 40, 'IPv6 payload length');
      pseudo = sum16(s, 14 + 8, 14 + 40, 6 + tcpLen);
    } else {
      assert.equal(s.readUInt16BE(14 + 2), s.length - 14, 'IPv4 total length');
      assert.equal(s.readUInt16BE(14 + 4), (f.readUInt16BE(14 + 4) + k) & 0xffff, 'IPv4 id');
      assert.equal(sum16(s, 14, 34), 0xffff, `IPv4 header checksum of segment ${k}`);
      pseudo = sum16(s, 14 + 12, 14 + 20, 6 + tcpLen);
    }
    assert.equal(sum16(s, toff, s.length, pseudo), 0xffff, `TCP checksum of segment ${k}`);
    assert.equal(s.readUInt32BE(toff + 4), (seq0 + off) >>> 0, `seq of segment ${k}`);
    const want = (o.flags & ~(k === 0 ? 0 : 0x80)) & ~(last ? 0 : 0x09);
    assert.equal(s[toff + 13], want, `flags of segment ${k}`);
    // Everything else in the TCP header (ports, ack, window, options) is the original's.
    assert.deepEqual(s.subarray(toff, toff + 4), f.subarray(toff, toff + 4));
    assert.deepEqual(s.subarray(toff + 8, toff + 13), f.subarray(toff + 8, toff + 13));
    assert.deepEqual(s.subarray(toff + 14, toff + 16), f.subarray(toff + 14, toff + 16));
    assert.deepEqual(s.subarray(toff + 20, hdr), f.subarray(toff + 20, hdr));
    off += n;
  });
  assert.equal(off, o.payload.length);
}

test('IPv4 super-frame: 64 KiB at MSS 1396 cut like Linux GSO (ids, seq wrap, FIN/PSH last, CWR first)', () => {
  const rnd = prng(19);
  const payload = Buffer.from(Array.from({ length: 65535 - 20 - 32 }, () => Math.floor(rnd() * 256)));
  check({ v6: false, payload, flags: 0x80 | 0x10 | 0x08 | 0x01, optBytes: 12 }, 1396);
});

test('IPv6 super-frame cut with payload lengths and pseudo-header checksums', () => {
  const rnd = prng(20);
  const payload = Buffer.from(Array.from({ length: 30001 }, () => Math.floor(rnd() * 256)));
  check({ v6: true, payload, flags: 0x18, optBytes: 12 }, 1376);
});

test('property: any size, MSS, options and odd lengths give verifying segments', () => {
  fc.assert(fc.property(
    fc.boolean(), fc.integer({ min: 1, max: 9000 }), fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 0, max: 10 }),
    fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer(),
    (v6, len, mss, opt4, flags, ipId, seq, seed) => {
      const rnd = prng(seed);
      const payload = Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
      check({ v6, payload, flags: (flags & 0xd9) | 0x10, optBytes: opt4 * 4, ipId, seq }, mss);
    }), { numRuns: 150 });
});

test('frames that are not TCP super-frames are refused, not cut', () => {
  const payload = Buffer.alloc(3000, 7);
  const v4 = superFrame({ v6: false, payload, flags: 0x10, optBytes: 0 });
  assert.throws(() => segmentTso(v4, 1, 0, 34), /ERR_OUT_OF_RANGE|not a TCP super-frame/); // no segment size
  assert.throws(() => segmentTso(v4, 4, 1400, 34), /not a TCP super-frame/); // TCPV6 on an IPv4 frame
  assert.throws(() => segmentTso(v4, 3, 1400, 34), /not a TCP super-frame/); // UFO: never granted
  const udp = Buffer.from(v4);
  udp[14 + 9] = 17;
  assert.throws(() => segmentTso(udp, 1, 1400, 34), /not a TCP super-frame/);
  const frag = Buffer.from(v4);
  frag.writeUInt16BE(0x2000, 14 + 6); // more fragments
  assert.throws(() => segmentTso(frag, 1, 1400, 34), /not a TCP super-frame/);
  const badThl = Buffer.from(v4);
  badThl[34 + 12] = 4 << 4; // TCP header shorter than 20 bytes
  assert.throws(() => segmentTso(badThl, 1, 1400, 34), /not a TCP super-frame/);
  assert.throws(() => segmentTso(v4.subarray(0, 40), 1, 1400, 34), /not a TCP super-frame/);
  const noPayload = superFrame({ v6: false, payload: Buffer.alloc(0), flags: 0x10, optBytes: 0 });
  assert.throws(() => segmentTso(noPayload, 1, 1400, 34), /not a TCP super-frame/);
});

/** The segments `segmentTso` makes of one super-frame (valid checksums): a TCP stream as the sender's GSO cut it. */
function segmentsOf(o: Opts, mss: number): Buffer[] {
  return segmentTso(superFrame(o), o.v6 ? 4 : 1, mss, o.v6 ? 54 : 34);
}

/** Slab + [offset, length] pairs for mergeTcp. */
function slabOf(frames: Buffer[]): { slab: Buffer; pairs: Uint32Array } {
  const pairs = new Uint32Array(frames.length * 2);
  let off = 0;
  frames.forEach((f, i) => { pairs[2 * i] = off; pairs[2 * i + 1] = f.length; off += f.length; });
  return { slab: Buffer.concat(frames), pairs };
}

interface Vnet { flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number }
/** virtio_net_hdr in host byte order (little-endian here, as tun uses for the legacy header). */
function vnet(w: Buffer): Vnet {
  return { flags: w[0]!, gsoType: w[1]!, hdrLen: w.readUInt16LE(2), gsoSize: w.readUInt16LE(4), csumStart: w.readUInt16LE(6), csumOffset: w.readUInt16LE(8) };
}

/**
 * Checks a merged write independently (lengths, IPv4 header checksum, the partial
 * TCP checksum = folded pseudo-header sum, GSO fields) and returns the segments the
 * kernel would cut it into (segmentTso); an unmerged write is returned as its frame.
 */
function unmerge(w: Buffer): Buffer[] {
  const h = vnet(w);
  const f = w.subarray(10);
  if (h.gsoType === 0) {
    assert.deepEqual(h, { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
    return [Buffer.from(f)];
  }
  const v6 = f.readUInt16BE(12) === 0x86dd;
  const toff = v6 ? 54 : 34;
  assert.equal(h.gsoType, v6 ? 4 : 1, 'GSO TCPV6 for IPv6, TCPV4 for IPv4');
  assert.equal(h.flags, 1, 'NEEDS_CSUM');
  assert.equal(h.csumStart, toff);
  assert.equal(h.csumOffset, 16);
  assert.equal(h.hdrLen, toff + (f[toff + 12]! >> 4) * 4);
  assert.ok(h.gsoSize > 0 && f.length - h.hdrLen > h.gsoSize, 'more than one segment of payload');
  const tcpLen = f.length - toff;
  let pseudo: number;
  if (v6) {
    assert.equal(f.readUInt16BE(14 + 4), f.length - 54, 'IPv6 payload length of the super-frame');
    pseudo = sum16(f, 14 + 8, 14 + 40, 6 + tcpLen);
  } else {
    assert.equal(f.readUInt16BE(14 + 2), f.length - 14, 'IPv4 total length of the super-frame');
    assert.equal(sum16(f, 14, 34), 0xffff, 'IPv4 header checksum of the super-frame');
    pseudo = sum16(f, 14 + 12, 14 + 20, 6 + tcpLen);
  }
  assert.equal(f.readUInt16BE(toff + 16), pseudo, 'partial checksum = pseudo-header sum (not complemented)');
  assert.ok(f.length <= 14 + 65535, 'super-frame within 64 KiB');
  return segmentTso(f, h.gsoType, h.gsoSize, h.csumStart);
}

function roundTrip(frames: Buffer[]): Buffer[] {
  const { slab, pairs } = slabOf(frames);
  const writes = mergeTcp(slab, pairs, frames.length);
  assert.deepEqual(writes.flatMap(unmerge), frames, 'the kernel\'s cut of the writes gives back the segments');
  return writes;
}

test('write side: an IPv6/TCP run merges into one TCPV6 super-frame that cuts back into the same segments', () => {
  const rnd = prng(21);
  const payload = Buffer.from(Array.from({ length: 40 * 1376 + 77 }, () => Math.floor(rnd() * 256)));
  const segs = segmentsOf({ v6: true, payload, flags: 0x18, optBytes: 12 }, 1376);
  assert.equal(segs.length, 41);
  const writes = roundTrip(segs);
  assert.equal(writes.length, 1, 'one write for the whole run (ends with the short PSH segment)');
  assert.equal(vnet(writes[0]!).gsoType, 4);
  assert.equal(writes[0]![10 + 54 + 13], 0x18, 'PSH of the last segment on the super-frame');
});

test('write side: IPv4 runs still merge (TCPV4), capped at 64 segments and 64 KiB', () => {
  const rnd = prng(22);
  const payload = Buffer.from(Array.from({ length: 100 * 600 }, () => Math.floor(rnd() * 256)));
  const writes = roundTrip(segmentsOf({ v6: false, payload, flags: 0x10, optBytes: 0 }, 600));
  assert.equal(writes.length, 2, '64 + 36 segments');
  const big = Buffer.from(Array.from({ length: 40 * 1448 }, () => Math.floor(rnd() * 256)));
  for (const v6 of [false, true]) {
    // 80 full segments of one stream: 64 would pass 64 KiB, so the first run stops at 45.
    const segs = [0, 1].flatMap((k) => segmentsOf({ v6, payload: big, flags: 0x10, optBytes: 12, seq: 1000 + k * big.length, ipId: (0xfffe + 40 * k) & 0xffff }, 1448));
    const w = roundTrip(segs);
    assert.ok(w.length >= 2 && w.every((x) => x.length - 10 <= 14 + 65535), `v6=${v6}: split under 64 KiB`);
  }
});

test('write side: IPv6 frames GRO must not merge pass through unchanged', () => {
  const rnd = prng(23);
  const payload = Buffer.from(Array.from({ length: 5 * 1000 }, () => Math.floor(rnd() * 256)));
  const base = segmentsOf({ v6: true, payload, flags: 0x10, optBytes: 0 }, 1000);
  const passes = (frames: Buffer[], why: string): void => {
    const { slab, pairs } = slabOf(frames);
    const writes = mergeTcp(slab, pairs, frames.length);
    assert.deepEqual(writes.map((w) => vnet(w).gsoType), frames.map(() => 0), `${why}: nothing merged`);
    assert.deepEqual(writes.map((w) => w.subarray(10)), frames, `${why}: frames written as they came`);
  };
  passes(base.map((f) => { const g = Buffer.from(f); g[14 + 6] = 0; return g; }), 'hop-by-hop extension header');
  passes(base.map((f) => { const g = Buffer.from(f); g[14 + 6] = 43; return g; }), 'routing extension header');
  passes(base.map((f) => Buffer.concat([f, Buffer.alloc(4)])), 'trailing bytes beyond the payload length');
  passes(base.map((f) => { const g = Buffer.from(f); g.writeUInt16BE(0, 14 + 4); return g; }), 'payload length 0 (jumbogram)');
  passes(base.map((f) => { const g = Buffer.from(f); g.writeUInt16BE(0xffff, 14 + 4); return g; }), 'payload length beyond the frame');
  passes(base.map((f, i) => { const g = Buffer.from(f); g[14 + 3] = i; return g; }), 'flow label differs per segment');
  passes(base.map((f, i) => { const g = Buffer.from(f); g[14 + 7] = 64 - i; return g; }), 'hop limit differs per segment');
  passes(base.map((f) => { const g = Buffer.from(f); g[14] = 0x50; return g; }), 'IP version 5 behind the IPv6 EtherType');
  passes(base.map((f) => { const g = Buffer.from(f); g[54 + 13] = 0x11; return g; }), 'FIN');
  passes(base.map((f) => f.subarray(0, 14 + 40 + 19)), 'truncated TCP header');
  passes([base[0]!, base[2]!, base[1]!], 'sequence gap');
});

test('write side: interleaved IPv4 and IPv6 flows merge per run; hostile frames never throw', () => {
  const rnd = prng(24);
  const p = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  const a = segmentsOf({ v6: true, payload: p(4 * 900), flags: 0x10, optBytes: 12 }, 900);
  const b = segmentsOf({ v6: false, payload: p(3 * 900), flags: 0x10, optBytes: 12 }, 900);
  const writes = roundTrip([...a.slice(0, 2), ...b, ...a.slice(2)]);
  assert.deepEqual(writes.map((w) => vnet(w).gsoType), [4, 1, 4]);
  fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 0, maxLength: 200 }), { maxLength: 20 }), fc.integer(), (raw, seed) => {
    // Random frames, half of them given an IPv6/TCP-looking header.
    const r = prng(seed);
    const frames = raw.map((u) => {
      const f = Buffer.from(u);
      if (f.length >= 74 && r() < 0.5) { f.writeUInt16BE(0x86dd, 12); f[14] = 0x60; f[20] = 6; f[54 + 13] = 0x10; }
      return f;
    });
    const { slab, pairs } = slabOf(frames);
    const w = mergeTcp(slab, pairs, frames.length);
    const bytes = (xs: Buffer[]): number => xs.reduce((n, x) => n + x.length, 0);
    assert.ok(bytes(w) - 10 * w.length <= bytes(frames), 'never more bytes out than in');
  }), { numRuns: 300 });
});

test('property: IPv4/IPv6 runs of any size, MSS and options merge and cut back into the same segments', () => {
  fc.assert(fc.property(
    fc.boolean(), fc.integer({ min: 1, max: 20000 }), fc.integer({ min: 1, max: 1500 }), fc.integer({ min: 0, max: 10 }),
    fc.boolean(), fc.integer({ min: 0, max: 0xffffffff }), fc.integer(),
    (v6, len, mss, opt4, psh, seq, seed) => {
      const rnd = prng(seed);
      const payload = Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
      const segs = segmentsOf({ v6, payload, flags: psh ? 0x18 : 0x10, optBytes: opt4 * 4, seq }, mss);
      const writes = roundTrip(segs);
      if (segs.length > 1 && segs.length <= 64) assert.equal(writes.length, 1, 'one run, one write');
    }), { numRuns: 150 });
});
