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

  let synAck: { seq: number } | undefined;
  let badChecksums = 0;
  let tcpFramesRead = 0;
  let largestRead = 0;
  tap.start((slab, frames, count) => {
    for (let i = 0; i < count; i++) {
      const f = slab.subarray(frames[2 * i]!, frames[2 * i]! + frames[2 * i + 1]!);
      largestRead = Math.max(largestRead, f.length);
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
  out.close();
  tap.close();
  server.close();
  return {
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
    });
  });
}
