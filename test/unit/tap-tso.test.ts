/**
 * TAP read offloads: the addon's cutting of TCP super-frames (router/overlay/native/tap.cc
 * TsoInfo, reached through segmentTso) must give exactly the segments Linux's GSO gives:
 * payload split at gsoSize in order, sequence numbers advanced, IPv4 id + 1 per segment,
 * lengths per segment, CWR only on the first and FIN/PSH only on the last, and IPv4 and
 * TCP checksums that verify under an independent RFC 1071 sum written here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { segmentTso } from '../../router/overlay/tap.js';
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
