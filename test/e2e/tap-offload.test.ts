/**
 * End-to-end test of the TAP's virtio-net header mode (router/overlay/tap.ts `vnetHdr`,
 * router/overlay/native/tap.cc): reads still deliver plain, checksummed frames, and
 * writeSlab merges consecutive TCP segments of one flow into GSO super-frames that
 * the kernel's TCP accepts byte for byte.
 *
 * Needs root. A child process (this file, re-run with TSW_TAPVNET_CHILD=1) runs inside
 * a network namespace the test creates (tsw-tapvnet-<pid>) and deletes afterwards. In
 * it the kernel owns 10.77.0.1 on the TAP and listens on TCP 5000; the child plays the
 * peer 10.77.0.2 with a minimal userspace TCP (handshake, then data segments written
 * in batches) and compares what the kernel's socket received with what it sent.
 * A local TCP trusts a super-frame's partial checksum without computing it, so a
 * second part makes the kernel finish it: super-frames addressed to 10.78.0.2 are
 * forwarded out of a second, plain TAP (no checksum or segmentation offload), where
 * the kernel must cut them back into the original segments and checksum each one
 * from our pseudo-header seed; the child reads those and checks every byte.
 * Both parts run again over IPv6 (fd77::1 / fd77::2, forwarded to fd78::2): the runs
 * go out as GSO TCPV6 super-frames (IPv6 pseudo-header seed, payload length, no
 * header checksum), and a run with a hop-by-hop extension header is written unmerged.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { useNetns } from './lib/netns.js';
import { Tap } from '../../router/overlay/tap.js';

const NS = `tsw-tapvnet-${process.pid}`;
const SELF = fileURLToPath(import.meta.url);

const KERNEL_IP = [10, 77, 0, 1];
const PEER_IP = [10, 77, 0, 2];
const PEER_MAC = [2, 0, 0, 0, 0, 2];
const PEER_PORT = 40000;
const SERVER_PORT = 5000;

function sum16(buf: Buffer, start: number, end: number, init = 0): number {
  let s = init;
  for (let i = start; i + 1 < end; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if ((end - start) % 2) s += buf[end - 1]! << 8;
  return s;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** RFC 793 checksum of the TCP segment in an Ethernet/IPv4 frame (0 when the stored one is right). */
function tcpChecksumOf(f: Buffer): number {
  const ip = 14;
  const tcp = ip + (f[ip]! & 15) * 4;
  const len = f.readUInt16BE(ip + 2) - (tcp - ip);
  const pseudo = sum16(f, ip + 12, ip + 20) + 6 + len;
  return ~fold(sum16(f, tcp, tcp + len, pseudo)) & 0xffff;
}

/** An Ethernet/IPv4/TCP frame from the peer to the kernel (or to `dstIp` via it), checksums filled in. */
function segment(kernelMac: Buffer, seq: number, ack: number, flags: number, payload: Buffer, dstIp = KERNEL_IP, dstPort = SERVER_PORT): Buffer {
  const f = Buffer.alloc(14 + 20 + 20 + payload.length);
  kernelMac.copy(f, 0);
  Buffer.from(PEER_MAC).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  const ip = 14;
  f[ip] = 0x45;
  f.writeUInt16BE(20 + 20 + payload.length, ip + 2);
  f.writeUInt16BE(0x4000, ip + 6); // DF
  f[ip + 8] = 64;
  f[ip + 9] = 6;
  Buffer.from(PEER_IP).copy(f, ip + 12);
  Buffer.from(dstIp).copy(f, ip + 16);
  f.writeUInt16BE(~fold(sum16(f, ip, ip + 20)) & 0xffff, ip + 10);
  const t = ip + 20;
  f.writeUInt16BE(PEER_PORT, t);
  f.writeUInt16BE(dstPort, t + 2);
  f.writeUInt32BE(seq >>> 0, t + 4);
  f.writeUInt32BE(ack >>> 0, t + 8);
  f[t + 12] = 5 << 4;
  f[t + 13] = flags;
  f.writeUInt16BE(65535, t + 14);
  payload.copy(f, t + 20);
  f.writeUInt16BE(tcpChecksumOf(f), t + 16);
  return f;
}

const K6 = Buffer.from('fd770000000000000000000000000001', 'hex');
const P6 = Buffer.from('fd770000000000000000000000000002', 'hex');
const F6 = Buffer.from('fd780000000000000000000000000002', 'hex');

/** RFC 8200 section 8.1 checksum of the TCP segment right after a fixed IPv6 header (0 when right). */
function tcp6ChecksumOf(f: Buffer): number {
  const len = f.readUInt16BE(14 + 4);
  const pseudo = sum16(f, 14 + 8, 14 + 40) + 6 + len;
  return ~fold(sum16(f, 54, 54 + len, pseudo)) & 0xffff;
}

/** An Ethernet/IPv6/TCP frame from fd77::2 to `dst`, checksum filled in. */
function segment6(kernelMac: Buffer, seq: number, ack: number, flags: number, payload: Buffer, dst = K6, dstPort = SERVER_PORT): Buffer {
  const f = Buffer.alloc(14 + 40 + 20 + payload.length);
  kernelMac.copy(f, 0);
  Buffer.from(PEER_MAC).copy(f, 6);
  f.writeUInt16BE(0x86dd, 12);
  f.writeUInt32BE(0x60012345, 14); // flow label 0x12345
  f.writeUInt16BE(20 + payload.length, 14 + 4);
  f[14 + 6] = 6;
  f[14 + 7] = 64;
  P6.copy(f, 14 + 8);
  dst.copy(f, 14 + 24);
  const t = 54;
  f.writeUInt16BE(PEER_PORT, t);
  f.writeUInt16BE(dstPort, t + 2);
  f.writeUInt32BE(seq >>> 0, t + 4);
  f.writeUInt32BE(ack >>> 0, t + 8);
  f[t + 12] = 5 << 4;
  f[t + 13] = flags;
  f.writeUInt16BE(65535, t + 14);
  payload.copy(f, t + 20);
  f.writeUInt16BE(tcp6ChecksumOf(f), t + 16);
  return f;
}

/** The same segment with an 8-byte hop-by-hop header (PadN) between IPv6 and TCP: never merged. */
function withHopByHop(f: Buffer): Buffer {
  const g = Buffer.concat([f.subarray(0, 54), Buffer.from([6, 0, 1, 4, 0, 0, 0, 0]), f.subarray(54)]);
  g[14 + 6] = 0;
  g.writeUInt16BE(f.readUInt16BE(14 + 4) + 8, 14 + 4);
  return g;
}

const ACK = 0x10;
const PSH = 0x08;
const SYN = 0x02;

async function child(): Promise<Record<string, unknown>> {
  const tap = Tap.open('tswvnet0', { vnetHdr: true, maxFrame: 1518 });
  execFileSync('ip', ['link', 'set', 'tswvnet0', 'mtu', '1500', 'up']);
  execFileSync('ip', ['addr', 'add', '10.77.0.1/24', 'dev', 'tswvnet0']);
  execFileSync('ip', ['neigh', 'replace', '10.77.0.2', 'lladdr', '02:00:00:00:00:02', 'dev', 'tswvnet0']);
  const kernelMac = Buffer.from(execFileSync('cat', ['/sys/class/net/tswvnet0/address']).toString().trim().split(':').map((h) => parseInt(h, 16)));

  const received: Buffer[] = [];
  let receivedBytes = 0;
  const server = net.createServer((s) => s.on('data', (d) => {
    received.push(d);
    receivedBytes += d.length;
  }));
  await new Promise<void>((r) => server.listen(SERVER_PORT, '10.77.0.1', r));

  // IPv6 frames read (part 3) go to these.
  const on6: { tap?: (f: Buffer) => void; out?: (f: Buffer) => void } = {};
  let synAck: { seq: number } | undefined;
  let badChecksums = 0;
  let tcpFramesRead = 0;
  let largestRead = 0;
  tap.start((slab, frames, count) => {
    for (let i = 0; i < count; i++) {
      const f = slab.subarray(frames[2 * i]!, frames[2 * i]! + frames[2 * i + 1]!);
      largestRead = Math.max(largestRead, f.length);
      if (f.length >= 14 && f.readUInt16BE(12) === 0x86dd) { on6.tap?.(Buffer.from(f)); continue; }
      if (f.length < 54 || f.readUInt16BE(12) !== 0x0800 || f[23] !== 6) continue;
      tcpFramesRead++;
      if (tcpChecksumOf(f) !== 0) badChecksums++;
      const t = 14 + (f[14]! & 15) * 4;
      if ((f[t + 13]! & (SYN | ACK)) === (SYN | ACK)) synAck = { seq: f.readUInt32BE(t + 4) };
    }
  });
  const until = async (what: string, ok: () => boolean, ms = 5000): Promise<void> => {
    const end = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  const iss = 1_000_000;
  tap.write(segment(kernelMac, iss, 0, SYN, Buffer.alloc(0)));
  await until('SYN-ACK', () => synAck !== undefined);
  const ack = (synAck!.seq + 1) >>> 0;
  let seq = iss + 1;
  tap.write(segment(kernelMac, seq, ack, ACK, Buffer.alloc(0)));

  // Batches of segments in one slab each, as the router writes a datagram batch.
  const sent: Buffer[] = [];
  const writeBatch = (lens: number[], pshAt: number[] = []): number => {
    const parts: Buffer[] = [];
    const pairs = new Uint32Array(2 * lens.length);
    let off = 0;
    lens.forEach((len, k) => {
      const payload = Buffer.alloc(len, (sent.length + k) & 0xff);
      payload.writeUInt32BE(seq >>> 0, 0);
      const f = segment(kernelMac, seq, ack, ACK | (pshAt.includes(k) ? PSH : 0), payload);
      seq += len;
      parts.push(f);
      pairs[2 * k] = off;
      pairs[2 * k + 1] = f.length;
      off += f.length;
      sent.push(payload);
    });
    return tap.writeSlab(Buffer.concat(parts), pairs, lens.length);
  };
  const s0 = tap.stats();
  const w1 = writeBatch(Array(40).fill(1000), [39]);
  const s1 = tap.stats();
  // A short segment ends a run; PSH ends one; the rest merges.
  const w2 = writeBatch([1000, 1000, 500, 1000, 1000, 1000, 1000, 700], [4]);
  const s2 = tap.stats();
  // A single segment and a run of one are written plainly.
  const w3 = writeBatch([1200]);
  const s3 = tap.stats();
  const total = sent.reduce((a, b) => a + b.length, 0);
  await until(`${total} bytes at the server`, () => receivedBytes >= total);
  const same = Buffer.concat(received).equals(Buffer.concat(sent));

  // Part 2: forwarded out of a plain TAP, the kernel re-segments and checksums.
  const out = Tap.open('tswvnet2', { maxFrame: 1518 });
  execFileSync('ip', ['link', 'set', 'tswvnet2', 'mtu', '1500', 'up']);
  execFileSync('ip', ['addr', 'add', '10.78.0.1/24', 'dev', 'tswvnet2']);
  execFileSync('ip', ['neigh', 'replace', '10.78.0.2', 'lladdr', '02:00:00:00:00:03', 'dev', 'tswvnet2']);
  execFileSync('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  const fwd: Array<{ payload: Buffer; flags: number; csumOk: boolean; ipOk: boolean; seq: number }> = [];
  out.start((slab, frames, count) => {
    for (let i = 0; i < count; i++) {
      const f = Buffer.from(slab.subarray(frames[2 * i]!, frames[2 * i]! + frames[2 * i + 1]!));
      if (f.length >= 14 && f.readUInt16BE(12) === 0x86dd) { on6.out?.(f); continue; }
      if (f.length < 54 || f.readUInt16BE(12) !== 0x0800 || f[23] !== 6 || f.readUInt16BE(36) !== 6000) continue;
      const t = 14 + (f[14]! & 15) * 4;
      fwd.push({ payload: f.subarray(t + 20), flags: f[t + 13]!, seq: f.readUInt32BE(t + 4), csumOk: tcpChecksumOf(f) === 0, ipOk: (~fold(sum16(f, 14, 34)) & 0xffff) === 0 });
    }
  });
  const fwdLens = [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 400];
  const fwdSent: Buffer[] = [];
  const parts: Buffer[] = [];
  const pairs = new Uint32Array(2 * fwdLens.length);
  let fseq = 0xfffff000; // the sequence space wraps inside the run
  let off = 0;
  fwdLens.forEach((len, k) => {
    const payload = Buffer.alloc(len);
    for (let b = 0; b < len; b++) payload[b] = (k * 7 + b * 13) & 0xff;
    const f = segment(kernelMac, fseq, 12345, ACK | (k === fwdLens.length - 1 ? PSH : 0), payload, [10, 78, 0, 2], 6000);
    fseq = (fseq + len) >>> 0;
    parts.push(f);
    pairs[2 * k] = off;
    pairs[2 * k + 1] = f.length;
    off += f.length;
    fwdSent.push(payload);
  });
  const c0 = tap.stats().writeCoalesced;
  const wf = tap.writeSlab(Buffer.concat(parts), pairs, fwdLens.length);
  const fwdCoalesced = tap.stats().writeCoalesced - c0;
  await until('forwarded segments', () => fwd.length >= fwdLens.length);

  // Part 3: the same over IPv6 — kernel TCP byte for byte, then forwarded out of the plain TAP.
  execFileSync('ip', ['-6', 'addr', 'add', 'fd77::1/64', 'dev', 'tswvnet0', 'nodad']);
  execFileSync('ip', ['-6', 'addr', 'add', 'fd78::1/64', 'dev', 'tswvnet2', 'nodad']);
  execFileSync('ip', ['-6', 'neigh', 'replace', 'fd77::2', 'lladdr', '02:00:00:00:00:02', 'dev', 'tswvnet0']);
  execFileSync('ip', ['-6', 'neigh', 'replace', 'fd78::2', 'lladdr', '02:00:00:00:00:03', 'dev', 'tswvnet2']);
  execFileSync('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
  const received6: Buffer[] = [];
  let received6Bytes = 0;
  const server6 = net.createServer((sk) => sk.on('data', (d) => { received6.push(d); received6Bytes += d.length; }));
  await new Promise<void>((r) => server6.listen(SERVER_PORT, 'fd77::1', r));
  let synAck6: { seq: number } | undefined;
  let bad6 = 0;
  on6.tap = (f) => {
    if (f.length < 74 || f[20] !== 6) return;
    if (tcp6ChecksumOf(f) !== 0) bad6++;
    if ((f[54 + 13]! & (SYN | ACK)) === (SYN | ACK)) synAck6 = { seq: f.readUInt32BE(54 + 4) };
  };
  const fwd6: Array<{ payload: Buffer; flags: number; csumOk: boolean; seq: number; hbh: boolean }> = [];
  on6.out = (f) => {
    if (f.length < 82) return;
    const hbh = f[20] === 0;
    const t = hbh ? 62 : 54;
    if ((hbh ? f[54] : f[20]) !== 6 || f.readUInt16BE(t + 2) !== 6000) return;
    const csumOk = hbh ? true : tcp6ChecksumOf(f) === 0;
    fwd6.push({ payload: f.subarray(t + 20), flags: f[t + 13]!, seq: f.readUInt32BE(t + 4), csumOk, hbh });
  };
  const iss6 = 2_000_000;
  tap.write(segment6(kernelMac, iss6, 0, SYN, Buffer.alloc(0)));
  await until('IPv6 SYN-ACK', () => synAck6 !== undefined);
  const ack6 = (synAck6!.seq + 1) >>> 0;
  let seq6 = iss6 + 1;
  tap.write(segment6(kernelMac, seq6, ack6, ACK, Buffer.alloc(0)));
  const sent6: Buffer[] = [];
  const slabOf = (fs: Buffer[]): { slab: Buffer; pairs: Uint32Array } => {
    const pp = new Uint32Array(2 * fs.length);
    let o = 0;
    fs.forEach((f, k) => { pp[2 * k] = o; pp[2 * k + 1] = f.length; o += f.length; });
    return { slab: Buffer.concat(fs), pairs: pp };
  };
  const batch6 = (lens: number[], pshAt: number[]): number => {
    const fs = lens.map((len, k) => {
      const payload = Buffer.alloc(len);
      for (let b = 0; b < len; b++) payload[b] = (seq6 + b * 31 + k) & 0xff;
      const f = segment6(kernelMac, seq6, ack6, ACK | (pshAt.includes(k) ? PSH : 0), payload);
      seq6 += len;
      sent6.push(payload);
      return f;
    });
    const { slab, pairs: pp } = slabOf(fs);
    return tap.writeSlab(slab, pp, fs.length);
  };
  const t0 = tap.stats();
  const v6w1 = batch6(Array(40).fill(1220), [39]);
  const v6w2 = batch6([1220, 1220, 600, 1220, 1220], [4]);
  const t1 = tap.stats();
  const total6 = sent6.reduce((a, b) => a + b.length, 0);
  await until(`${total6} IPv6 bytes at the server`, () => received6Bytes >= total6);
  const same6 = Buffer.concat(received6).equals(Buffer.concat(sent6));
  // Forwarded: a plain run (merged, cut again by the kernel) and a hop-by-hop run (unmerged).
  const f6Lens = [1200, 1200, 1200, 1200, 1200, 1200, 300];
  const f6Sent: Buffer[] = [];
  let f6seq = 0xfffff800;
  const f6Frames = f6Lens.map((len, k) => {
    const payload = Buffer.alloc(len);
    for (let b = 0; b < len; b++) payload[b] = (k * 5 + b * 11) & 0xff;
    const f = segment6(kernelMac, f6seq, 777, ACK | (k === f6Lens.length - 1 ? PSH : 0), payload, F6, 6000);
    f6seq = (f6seq + len) >>> 0;
    f6Sent.push(payload);
    return f;
  });
  const hbhFrames = f6Frames.slice(0, 3).map(withHopByHop);
  const c6 = tap.stats().writeCoalesced;
  const { slab: fs6, pairs: fp6 } = slabOf([...f6Frames, ...hbhFrames]);
  const wf6 = tap.writeSlab(fs6, fp6, f6Frames.length + hbhFrames.length);
  const fwd6Coalesced = tap.stats().writeCoalesced - c6;
  await until('forwarded IPv6 segments', () => fwd6.length >= f6Lens.length + hbhFrames.length);
  server6.close();
  const plain6 = fwd6.filter((x) => !x.hbh);
  const hbh6 = fwd6.filter((x) => x.hbh);

  out.close();
  tap.close();
  server.close();
  return {
    v6w: [v6w1, v6w2], v6coalesced: t1.writeCoalesced - t0.writeCoalesced, v6frames: t1.writeFrames - t0.writeFrames,
    same6, total6, received6Bytes, bad6, wf6, fwd6Coalesced,
    fwd6Lens: plain6.map((x) => x.payload.length),
    fwd6Same: plain6.every((x, k) => x.payload.equals(f6Sent[k]!)),
    fwd6CsumOk: plain6.every((x) => x.csumOk),
    fwd6Flags: plain6.map((x) => x.flags),
    fwd6SeqOk: plain6.every((x, k) => x.seq === ((0xfffff800 + k * 1200) >>> 0)),
    hbh6Lens: hbh6.map((x) => x.payload.length),
    hbh6Same: hbh6.every((x, k) => x.payload.equals(f6Sent[k]!)),
    v6writeErrors: t1.writeErrors,
    wf, fwdCoalesced,
    fwdLens: fwd.map((x) => x.payload.length),
    fwdSame: fwd.every((x, k) => x.payload.equals(fwdSent[k]!)),
    fwdCsumOk: fwd.every((x) => x.csumOk && x.ipOk),
    fwdFlags: fwd.map((x) => x.flags),
    fwdSeqOk: fwd.every((x, k) => x.seq === ((0xfffff000 + k * 1000) >>> 0)),
    w1, w2, w3, total, receivedBytes, same, badChecksums, tcpFramesRead, largestRead,
    coalesced: [s1.writeCoalesced - s0.writeCoalesced, s2.writeCoalesced - s1.writeCoalesced, s3.writeCoalesced - s2.writeCoalesced],
    frames: [s1.writeFrames - s0.writeFrames, s2.writeFrames - s1.writeFrames, s3.writeFrames - s2.writeFrames],
    vnetHdr: s3.vnetHdr, writeErrors: s3.writeErrors, writeDrops: s3.writeDrops,
  };
}

if (process.env.TSW_TAPVNET_CHILD) {
  const timer = setTimeout(() => {
    process.stdout.write(JSON.stringify({ ok: false, error: 'child timed out' }) + '\n');
    process.exit(1);
  }, 20_000);
  try {
    const r = await child();
    process.stdout.write(JSON.stringify({ ok: true, ...r }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, error: (e as Error).stack }) + '\n');
  }
  clearTimeout(timer);
  process.exit(0);
} else {
  const skip = process.platform !== 'linux' ? 'Linux only' : process.getuid?.() !== 0 ? 'needs root (creates a network namespace and a TAP)' : undefined;
  if (skip !== undefined) process.stderr.write(`tap-offload.test: skipped: ${skip}\n`);

  describe('TAP with virtio-net header: TCP segment merging (root, netns)', { skip }, () => {
    useNetns(NS);

    it('merged segments reach the kernel TCP intact and in order; reads stay plain and checksummed', async () => {
      const r = await new Promise<Record<string, any>>((resolve, reject) => { // eslint-disable-line @typescript-eslint/no-explicit-any
        execFile('ip', ['netns', 'exec', NS, process.execPath, SELF], { env: { ...process.env, TSW_TAPVNET_CHILD: '1' }, timeout: 30_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
          try {
            const j = JSON.parse(stdout.trim().split('\n').pop() ?? '');
            if (!j.ok) reject(new Error(j.error));
            else resolve(j);
          } catch {
            reject(new Error(`child failed (${err?.message}): ${stderr}${stdout}`));
          }
        });
      });
      assert.equal(r.vnetHdr, true);
      assert.equal(r.same, true, 'the server received exactly the bytes sent, in order');
      assert.equal(r.receivedBytes, r.total);
      assert.deepEqual([r.w1, r.w2, r.w3], [40, 8, 1], 'writeSlab counts every segment');
      assert.deepEqual(r.frames, [40, 8, 1]);
      // 40 equal segments: one super-frame. [1000,1000,500 | 1000,1000(PSH) | 1000,700]: three.
      assert.deepEqual(r.coalesced, [40, 8, 0]);
      assert.equal(r.writeErrors, 0);
      assert.equal(r.writeDrops, 0);
      assert.ok(r.tcpFramesRead >= 2, 'SYN-ACK and ACKs were read');
      assert.equal(r.badChecksums, 0, 'frames read carry complete checksums (no offloads granted)');
      assert.ok(r.largestRead <= 1514, `no super-frame is ever read: largest ${r.largestRead}`);
      // Forwarded out of a plain TAP: the kernel cut the super-frame into the very
      // segments we merged and computed every checksum from our seed.
      assert.equal(r.wf, 10);
      assert.equal(r.fwdCoalesced, 10);
      assert.deepEqual(r.fwdLens, [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 400]);
      assert.equal(r.fwdSame, true, 'payloads unchanged');
      assert.equal(r.fwdSeqOk, true, 'sequence numbers restored, across the 2^32 wrap');
      assert.equal(r.fwdCsumOk, true, 'TCP and IPv4 checksums of every segment are right');
      assert.deepEqual(r.fwdFlags, [...Array(9).fill(ACK), ACK | PSH], 'PSH only on the last segment');
      // IPv6: GSO TCPV6 super-frames.
      assert.equal(r.same6, true, 'IPv6: the server received exactly the bytes sent, in order');
      assert.equal(r.received6Bytes, r.total6);
      assert.deepEqual(r.v6w, [40, 5]);
      assert.equal(r.v6frames, 45);
      // 40 equal segments: one super-frame; [1220,1220,600 | 1220,1220(PSH)]: two.
      assert.equal(r.v6coalesced, 45, 'every IPv6 segment went out inside a TCPV6 super-frame');
      assert.equal(r.v6writeErrors, 0);
      assert.equal(r.bad6, 0, 'IPv6 frames read carry complete checksums');
      assert.equal(r.wf6, 10);
      assert.equal(r.fwd6Coalesced, 7, 'the plain run merged; the hop-by-hop run did not');
      assert.deepEqual(r.fwd6Lens, [1200, 1200, 1200, 1200, 1200, 1200, 300]);
      assert.equal(r.fwd6Same, true, 'IPv6 payloads unchanged');
      assert.equal(r.fwd6SeqOk, true, 'IPv6 sequence numbers restored, across the 2^32 wrap');
      assert.equal(r.fwd6CsumOk, true, 'the kernel finished every IPv6 TCP checksum from our pseudo-header seed');
      assert.deepEqual(r.fwd6Flags, [...Array(6).fill(ACK), ACK | PSH], 'IPv6: PSH only on the last segment');
      assert.deepEqual(r.hbh6Lens, [1200, 1200, 1200], 'frames with an extension header forwarded as written');
      assert.equal(r.hbh6Same, true);
    });
  });
}
