/**
 * End-to-end test of the batched UDP socket (router/overlay/udp.ts + router/overlay/native/udp.cc).
 *
 * Needs root. The sockets live in a child process (this same file, re-run with
 * TSW_UDP_CHILD=<mode>) started with `ip netns exec` inside a network namespace the
 * test creates (tsw-udp-<pid>) and deletes afterwards; all traffic is on that
 * namespace's loopback, whose MTU the child lowers to 1500 to provoke EMSGSIZE.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { useNetns } from './lib/netns.js';
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, readSync, unlinkSync } from 'node:fs';
import { COALESCE, DatagramBatch, UdpSocket, UdpError, META_STRIDE, routeMtu, type UdpStats } from '../../router/overlay/udp.js';
import { Sleeve, SleevePeer, datagramFor, type SleeveHost } from '../../router/overlay/sleeve.js';
import { forEachFrame, HEADER_BYTES, DatagramType } from '../../router/overlay/sleeve-codec.js';
import { Sealer, Opener } from '../../router/crypto/aead.js';
import { mergeTcp } from '../../router/overlay/tap.js';
import { xorshift32 as prng } from '../lib/prng.js';

const NS = `tsw-udp-${process.pid}`;
const SELF = fileURLToPath(import.meta.url);
const LOOPBACK = 0x7f000001;

// ---------------------------------------------------------------- child side

type Json = Record<string, unknown>;

function errInfo(f: () => unknown): Json | null {
  try {
    f();
    return null;
  } catch (e) {
    const err = e as Error & { code?: string };
    return { name: err.name, code: err.code ?? null, message: err.message, isUdpError: e instanceof UdpError };
  }
}

function within<T>(ms: number, what: string, f: (done: (v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    f((v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}


/** 10,000 datagrams of varied sizes in batches of 100; flow-controlled so no buffer overflows. */
async function childBatch(): Promise<Json> {
  const rx = UdpSocket.open({ port: 0, address: '127.0.0.1', batch: 64 });
  const tx = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  const TOTAL = 10_000;
  const PER = 100;
  const rnd = prng(7);
  const sizes: number[] = [];
  for (let i = 0; i < TOTAL; i++) sizes.push(8 + (rnd() % 1400));
  let got = 0;
  let inOrder = true;
  let contentOk = true;
  let addrOk = true;
  let maxCount = 0;
  let layoutOk = true;
  const out = new DatagramBatch(1 << 17, PER);
  let sent = 0;
  let accepted = 0;
  const result = within<void>(20_000, `receiving ${TOTAL} datagrams`, (done) => {
    const pump = (): void => {
      // Keep at most 1000 in flight so the receive buffer never overflows.
      while (sent < TOTAL && sent - got < 1000) {
        out.reset();
        for (let k = 0; k < PER && sent < TOTAL; k++, sent++) {
          const len = sizes[sent]!;
          const at = out.reserve(len);
          out.slab.writeUInt32BE(sent, at);
          out.slab.fill(sent & 0xff, at + 4, at + len);
          out.commit(at, len, LOOPBACK, rx.localPort);
        }
        accepted += tx.sendBatch(out.slab, out.table, out.count);
      }
    };
    rx.start((slab, meta, count) => {
      maxCount = Math.max(maxCount, count);
      for (let i = 0; i < count; i++) {
        const off = meta[META_STRIDE * i]!;
        const len = meta[META_STRIDE * i + 1]!;
        if (off + len > slab.length || (i > 0 && off <= meta[META_STRIDE * (i - 1)]!)) layoutOk = false;
        if (meta[META_STRIDE * i + 2] !== LOOPBACK || meta[META_STRIDE * i + 3] !== tx.localPort) addrOk = false;
        const seq = slab.readUInt32BE(off);
        if (seq !== got) inOrder = false;
        if (len !== sizes[seq] || slab[off + len - 1] !== (seq & 0xff)) contentOk = false;
        got++;
      }
      if (got >= TOTAL) done();
      else setImmediate(pump);
    });
    pump();
  });
  await result;
  const rs = rx.stats();
  const ts = tx.stats();
  rx.close();
  tx.close();
  return { got, accepted, inOrder, contentOk, addrOk, maxCount, layoutOk, rx: rs, tx: ts };
}

/** EMSGSIZE with DF, fragmentation without, truncation, bad rows, close. */
async function childEdges(): Promise<Json> {
  const mtuBefore = routeMtu(LOOPBACK);
  execFileSync('ip', ['link', 'set', 'lo', 'mtu', '1500']);
  const mtus = [mtuBefore, routeMtu(LOOPBACK), routeMtu(0x08080808)];
  const rx = UdpSocket.open({ port: 0, address: '127.0.0.1', slotBytes: 2048 });
  const lens: number[] = [];
  rx.start((slab, meta, count) => {
    for (let i = 0; i < count; i++) lens.push(meta[META_STRIDE * i + 1]!);
  });
  const tx = UdpSocket.open({ port: 0 });
  const b = new DatagramBatch();
  const add = (len: number): void => {
    const at = b.reserve(len);
    b.slab.fill(1, at, at + len);
    b.commit(at, len, LOOPBACK, rx.localPort);
  };
  // [100, 3000 (too big for a 1500 MTU with DF), 200]
  add(100);
  add(3000);
  add(200);
  const sentDf = tx.sendBatch(b.slab, b.table, b.count);
  const statsDf: UdpStats = tx.stats();
  // A GSO run of segments above the MTU is refused as a whole (EINVAL), then retried
  // datagram by datagram: two EMSGSIZE drops, the short tail goes, GSO stays on.
  const g = new DatagramBatch();
  for (const len of [3000, 3000, 300]) {
    const at = g.reserve(len);
    g.slab.fill(2, at, at + len);
    g.commit(at, len, LOOPBACK, rx.localPort | COALESCE);
  }
  const sentGsoTooBig = tx.sendBatch(g.slab, g.table, g.count);
  const statsGso: UdpStats = tx.stats();
  // Without DF the kernel fragments it, and it arrives whole (slot 2048 < 3000: truncated!).
  const noDf = UdpSocket.open({ port: 0, dontFragment: false });
  const sentNoDf = noDf.send(b.slab, b.table[4]!, 1400, LOOPBACK, rx.localPort);
  const sentNoDfBig = noDf.send(b.slab, b.table[4]!, 3000, LOOPBACK, rx.localPort);
  // A single send() of the too-big datagram with DF is a counted drop, not a throw.
  const single = tx.send(b.slab, 0, 3000, LOOPBACK, rx.localPort);
  await within<void>(5000, 'edge datagrams', (done) => {
    const t = setInterval(() => {
      if (lens.length >= 4) {
        clearInterval(t);
        setTimeout(done, 100);
      }
    }, 10);
  });
  // Bad rows: nothing is sent.
  const before = tx.stats().sendDatagrams;
  const rowOutside = errInfo(() => tx.sendBatch(b.slab.subarray(0, 150), b.table, 3));
  const t0 = new Uint32Array([0, 10, LOOPBACK, 0]);
  const portZero = errInfo(() => tx.sendBatch(b.slab, t0, 1));
  const countTooBig = errInfo(() => tx.sendBatch(b.slab, t0, 2));
  const notU32 = errInfo(() => tx.sendBatch(b.slab, new Int32Array(4) as unknown as Uint32Array, 1));
  const afterBad = tx.stats().sendDatagrams;
  // close: idempotent, sends afterwards are counted errors, start is refused.
  const startTwice = errInfo(() => rx.start(() => undefined));
  rx.close();
  rx.close();
  const fdAfterClose = rx.fd;
  const startAfterClose = errInfo(() => rx.start(() => undefined));
  tx.close();
  const sendAfterClose = tx.send(b.slab, 0, 10, LOOPBACK, 9);
  const closedStats = tx.stats();
  noDf.close();
  return {
    mtus, sentDf, statsDf, sentGsoTooBig, statsGso, sentNoDf, sentNoDfBig, single, lens, rxStats: rx.stats(), badRowsSentNothing: before === afterBad,
    rowOutside, portZero, countTooBig, notU32, startTwice, fdAfterClose, startAfterClose, sendAfterClose, closedStats,
  };
}

/** Bind errors: port in use (with the router's one-line message), foreign address, bad options. */
function childErrors(): Json {
  const a = UdpSocket.open({ port: 0 });
  const inUse = errInfo(() => UdpSocket.open({ port: a.localPort }));
  const inUseSpecific = errInfo(() => UdpSocket.open({ port: a.localPort, address: '127.0.0.1' }));
  const port = a.localPort;
  a.close();
  const reopen = errInfo(() => UdpSocket.open({ port }).close());
  const foreign = errInfo(() => UdpSocket.open({ port: 0, address: '192.0.2.1' }));
  const badAddr = errInfo(() => UdpSocket.open({ port: 0, address: 'fe80::1' }));
  const badPort = errInfo(() => UdpSocket.open({ port: 70000 }));
  const badBatch = errInfo(() => UdpSocket.open({ port: 0, batch: 0 }));
  const badSlot = errInfo(() => UdpSocket.open({ port: 0, slotBytes: 65537 }));
  return { port, inUse, inUseSpecific, reopen, foreign, badAddr, badPort, badBatch, badSlot };
}

/**
 * UDP GSO/GRO: 10,000 datagrams flagged COALESCE in runs of equal lengths (a shorter
 * one ends a run) reach a GRO receiver and a non-GRO receiver complete and in order.
 */
async function childGso(): Promise<Json> {
  const rxGro = UdpSocket.open({ port: 0, address: '127.0.0.1', batch: 16 });
  const rxPlain = UdpSocket.open({ port: 0, address: '127.0.0.1', gro: false });
  const tx = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  const TOTAL = 10_000;
  const rnd = prng(11);
  // Runs of 1..80 equal lengths, each run possibly ended by one shorter datagram.
  const sizes: number[] = [];
  while (sizes.length < TOTAL) {
    const len = 8 + (rnd() % 1400);
    const run = 1 + (rnd() % 80);
    for (let k = 0; k < run && sizes.length < TOTAL; k++) sizes.push(len);
    if (rnd() % 2 && sizes.length < TOTAL) sizes.push(4 + (rnd() % (len - 3)));
  }
  const state = (rx: UdpSocket) => ({ rx, got: 0, inOrder: true, contentOk: true, maxCount: 0 });
  const g = state(rxGro);
  const p = state(rxPlain);
  const out = new DatagramBatch(1 << 18, 200);
  let sent = 0;
  let accepted = 0;
  await within<void>(20_000, 'GSO datagrams', (done) => {
    const pump = (): void => {
      while (sent < TOTAL && sent - Math.min(g.got, p.got) < 1000) {
        out.reset();
        const first = sent;
        for (const dst of [rxGro.localPort, rxPlain.localPort]) {
          for (let s2 = first; s2 < first + 100 && s2 < TOTAL; s2++) {
            const len = sizes[s2]!;
            const at = out.reserve(len);
            out.slab.writeUInt32BE(s2, at);
            out.slab.fill(s2 & 0xff, at + 4, at + len);
            out.commit(at, len, LOOPBACK, dst | COALESCE);
          }
        }
        sent = Math.min(TOTAL, first + 100);
        accepted += tx.sendBatch(out.slab, out.table, out.count);
      }
    };
    for (const st of [g, p]) {
      st.rx.start((slab, meta, count) => {
        st.maxCount = Math.max(st.maxCount, count);
        for (let i = 0; i < count; i++) {
          const off = meta[META_STRIDE * i]!;
          const len = meta[META_STRIDE * i + 1]!;
          const seq = slab.readUInt32BE(off);
          if (seq !== st.got) st.inOrder = false;
          if (len !== sizes[seq] || slab[off + len - 1] !== (seq & 0xff) || meta[META_STRIDE * i + 3] !== tx.localPort) st.contentOk = false;
          st.got++;
        }
        if (g.got >= TOTAL && p.got >= TOTAL) done();
        else setImmediate(pump);
      });
    }
    pump();
  });
  const res = {
    accepted, gro: { got: g.got, inOrder: g.inOrder, contentOk: g.contentOk, maxCount: g.maxCount, stats: rxGro.stats() },
    plain: { got: p.got, inOrder: p.inOrder, contentOk: p.contentOk, stats: rxPlain.stats() }, tx: tx.stats(),
  };
  for (const s2 of [rxGro, rxPlain, tx]) s2.close();
  return res;
}

/** A SleeveHost that records what the sleeve hands it. */
class FakeHost implements SleeveHost {
  frames: Array<{ src: number; dst: number; bytes: Buffer }> = [];
  heard = 0;
  batchEnds = 0;
  framesPerBatchEnd: number[] = [];
  drops: Record<string, number> = {};
  private sinceEnd = 0;
  constructor(readonly selfNum: number) {}
  onFrames(_peer: SleevePeer, buf: Buffer, start: number, end: number): void {
    forEachFrame(buf, start, end, (src, dst, b, s2, e2) => {
      this.frames.push({ src, dst, bytes: Buffer.from(b.subarray(s2, e2)) });
      this.sinceEnd++;
    });
  }
  onBatchEnd(): void {
    this.batchEnds++;
    this.framesPerBatchEnd.push(this.sinceEnd);
    this.sinceEnd = 0;
  }
  onHeardFrom(): void { this.heard++; }
  onUdpTimeout(): void { /* not in this test */ }
  onPmtuChanged(): void { /* not in this test */ }
  drop(reason: string, n = 1): void { this.drops[reason] = (this.drops[reason] ?? 0) + n; }
  log(): void { /* quiet */ }
}

/**
 * Two Sleeves on 127.0.0.1 (plaintext or sealed): heartbeats, 300 frames of varied
 * sizes queued in one go arrive in order through a few batches; forged, plaintext-
 * to-sealed and wrong-address datagrams are dropped with their reasons.
 */
async function childSleeve(): Promise<Json> {
  const result: Json = {};
  for (const encrypted of [false, true]) {
    const A = 0x0200000000a1;
    const B = 0x0200000000b2;
    const ha = new FakeHost(A);
    const hb = new FakeHost(B);
    const sa = new Sleeve(ha, 0, { address: '127.0.0.1' });
    const sb = new Sleeve(hb, 0, { address: '127.0.0.1' });
    await sa.listen();
    await sb.listen();
    const want = datagramFor(1400, encrypted);
    const pa = new SleevePeer('b', B, '127.0.0.1', sb.localPort, want, encrypted);
    const pb = new SleevePeer('a', A, '127.0.0.1', sa.localPort, want, encrypted);
    // A peer that B only accepts from 127.0.0.2.
    const pc = new SleevePeer('c', 0x0200000000c3, '127.0.0.2', sa.localPort, want, false);
    if (encrypted) {
      const kab = randomBytes(32);
      const kba = randomBytes(32);
      pa.sealer = new Sealer(kab);
      pa.opener = new Opener(kba);
      pb.sealer = new Sealer(kba);
      pb.opener = new Opener(kab);
    }
    sa.addPeer(pa);
    sb.addPeer(pb);
    sb.addPeer(pc);
    await within<void>(5000, 'heartbeats both ways', (done) => {
      const t = setInterval(() => {
        if (ha.heard && hb.heard) {
          clearInterval(t);
          done();
        }
      }, 10);
    });
    const rnd = prng(encrypted ? 3 : 4);
    const sent: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      // 100 full frames (100 equal datagrams: GSO material), then 200 of any size.
      const len = i < 100 ? pa.maxFrame : 14 + (rnd() % (pa.maxFrame - 14));
      const f = Buffer.alloc(len, i & 0xff);
      f.writeUInt32BE(i, 0);
      sent.push(f);
      sa.enqueue(pa, A, i % 2 ? B : 0, f, 0, f.length);
    }
    const udpBefore = sa.udpStats()!;
    sa.flush();
    const udpAfter = sa.udpStats()!;
    await within<void>(5000, '300 frames', (done) => {
      const t = setInterval(() => {
        if (hb.frames.length >= 300) {
          clearInterval(t);
          done();
        }
      }, 10);
    });
    // Forgeries, from a raw socket on 127.0.0.1 to B's port.
    const raw = UdpSocket.open({ port: 0, address: '127.0.0.1' });
    const forged = Buffer.alloc(40);
    forged[0] = 0x54;
    forged[1] = DatagramType.FRAMES;
    forged.writeUIntBE(0x0200000000c3, 2, 6); // claims to be c, but c sends from 127.0.0.2
    raw.send(forged, 0, 40, LOOPBACK, sb.localPort);
    forged.writeUIntBE(A, 2, 6); // claims to be a, in plaintext
    raw.send(forged, 0, 40, LOOPBACK, sb.localPort);
    raw.send(forged, 0, HEADER_BYTES - 1, LOOPBACK, sb.localPort); // runt
    await new Promise((r) => setTimeout(r, 200));
    raw.close();
    const batches = hb.framesPerBatchEnd.filter((n) => n > 0).length;
    result[encrypted ? 'sealed' : 'plain'] = {
      heard: [ha.heard, hb.heard],
      got: hb.frames.length,
      inOrder: hb.frames.every((f, i) => f.bytes.equals(sent[i]!) && f.src === A && f.dst === (i % 2 ? B : 0)),
      batches,
      sendCallsForFlush: udpAfter.sendCalls - udpBefore.sendCalls,
      datagramsForFlush: udpAfter.sendDatagrams - udpBefore.sendDatagrams,
      coalesced: udpAfter.sendCoalesced - udpBefore.sendCoalesced,
      drops: hb.drops,
      recvCoalesced: sb.udpStats()!.recvCoalesced,
    };
    sa.close();
    sb.close();
  }
  return result;
}

/**
 * Sleeve heartbeat pacing (issue #20): 10 s to an established peer, 30 s while the peer
 * is on fastdp, and a fastdp heartbeat (`heardElsewhere`) counts for the 35 s UDP timeout.
 * The tick is driven with explicit times; heartbeats are counted at the UDP socket.
 */
async function childHeartbeatPacing(): Promise<Json> {
  const A = 0x0200000000a1;
  const B = 0x0200000000b2;
  const host = new FakeHost(A);
  let timeouts = 0;
  host.onUdpTimeout = () => void timeouts++;
  const sa = new Sleeve(host, 0, { address: '127.0.0.1' });
  await sa.listen();
  // Nobody listens at B's port: sends still count at A's socket.
  const sink = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  const pa = new SleevePeer('b', B, '127.0.0.1', sink.localPort, datagramFor(1400, false), false);
  sa.addPeer(pa);
  const tick = (now: number): number => {
    const before = sa.udpStats()!.sendDatagrams;
    (sa as unknown as { tick(now: number): void }).tick(now);
    sa.flush();
    return sa.udpStats()!.sendDatagrams - before;
  };
  const t0 = 1e12;
  pa.heard = pa.confirmed = true;
  pa.pmtuVerified = true;
  pa.lastVerify = t0 + 1e6; // no PMTU re-verification in this test
  pa.lastHeartbeat = t0;
  pa.lastRecv = t0;
  const r: Json = {};
  r.sleeveAt9s = tick(t0 + 9_000);
  r.sleeveAt10s = tick(t0 + 10_000);
  pa.onFastdp = true;
  r.fastdpAt20s = tick(t0 + 20_000);
  // Nothing arrives over UDP from here on; a fastdp heartbeat is heard at 30 s.
  sa.heardElsewhere(B, t0 + 30_000);
  r.fastdpAt39s = tick(t0 + 39_000);
  r.fastdpAt40s = tick(t0 + 40_000);
  // 60 s after the last sleeve datagram, 30 s after the fastdp heartbeat: no UDP timeout.
  tick(t0 + 60_000);
  r.timeoutsWhileHeardOnFastdp = timeouts;
  tick(t0 + 66_000);
  r.timeoutsWhenSilent = timeouts;
  sa.close();
  sink.close();
  return r;
}

/** close() inside the batch handler: no further calls, and the process can exit. */
async function childCloseInBatch(): Promise<Json> {
  const rx = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  const tx = UdpSocket.open({ port: 0 });
  let calls = 0;
  rx.start(() => {
    calls++;
    rx.close();
  });
  const b = new DatagramBatch();
  for (let i = 0; i < 50; i++) b.commit(b.reserve(20), 20, LOOPBACK, rx.localPort);
  tx.sendBatch(b.slab, b.table, b.count);
  await new Promise((r) => setTimeout(r, 200));
  tx.close();
  return { calls, fd: rx.fd };
}


/**
 * The ingress flow cache (router/overlay/native/flow-cache.h): datagrams whose every frame
 * matches an installed flow are written to the "TAP" fd (a FIFO here, so the bytes
 * can be read back) without calling JavaScript; anything else reaches the handler.
 */
async function childFlows(): Promise<Json> {
  const fifo = `/tmp/tsw-udp-flows-${process.pid}`;
  execFileSync('mkfifo', [fifo]);
  const tapFd = openSync(fifo, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
  unlinkSync(fifo);
  const rx = UdpSocket.open({ port: 0, address: '127.0.0.1', batch: 64 });
  const tx = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  const tx2 = UdpSocket.open({ port: 0, address: '127.0.0.2' });
  const HOP = 0x0a0b0c0d0e0f, ORIGIN = 0x111111111111, SELF_PEER = 0x222222222222;
  const SRC = 0x02aabbccdd01, DST = 0x02aabbccdd02;
  let calls = 0;
  rx.start(() => void calls++);
  const frame = (src: number, dst: number, fill: number): Buffer => {
    const f = Buffer.alloc(60, fill);
    f.writeUIntBE(dst, 0, 6);
    f.writeUIntBE(src, 6, 6);
    f.writeUInt16BE(0x0800, 12);
    return f;
  };
  const datagram = (sender: number, recs: Array<{ origin?: number; to?: number; f: Buffer }>, type: number = DatagramType.FRAMES): Buffer => {
    const parts: Buffer[] = [Buffer.from([0x54, type, 0, 0, 0, 0, 0, 0])];
    parts[0]!.writeUIntBE(sender, 2, 6);
    for (const r of recs) {
      const h = Buffer.alloc(14);
      h.writeUIntBE(r.origin ?? ORIGIN, 0, 6);
      h.writeUIntBE(r.to ?? SELF_PEER, 6, 6);
      h.writeUInt16BE(r.f.length, 12);
      parts.push(h, r.f);
    }
    return Buffer.concat(parts);
  };
  const drain = (): Buffer => {
    const chunks: Buffer[] = [];
    const b = Buffer.alloc(65536);
    for (;;) {
      try {
        const n = readSync(tapFd, b, 0, b.length, null);
        if (n <= 0) break;
        chunks.push(Buffer.from(b.subarray(0, n)));
      } catch {
        break; // EAGAIN: empty
      }
    }
    return Buffer.concat(chunks);
  };
  // Sends one datagram and reports whether JS saw it and what reached the "TAP".
  const probe = async (d: Buffer, from: UdpSocket = tx): Promise<{ js: boolean; tap: Buffer }> => {
    const before = calls;
    from.send(d, 0, d.length, LOOPBACK, rx.localPort);
    await new Promise((r) => setTimeout(r, 60));
    return { js: calls > before, tap: drain() };
  };
  const f1 = frame(SRC, DST, 0xa1);
  const f2 = frame(SRC, DST, 0xa2);
  const result: Json = {};
  result.beforeInstall = await probe(datagram(HOP, [{ f: f1 }])).then((r) => ({ js: r.js, tap: r.tap.length }));
  result.installed = rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 10, 5000);
  const one = await probe(datagram(HOP, [{ f: f1 }]));
  result.one = { js: one.js, tapOk: one.tap.equals(Buffer.concat([Buffer.alloc(10), f1])) };
  const two = await probe(datagram(HOP, [{ f: f1 }, { f: f2 }]));
  result.two = { js: two.js, tapOk: two.tap.equals(Buffer.concat([Buffer.alloc(10), f1, Buffer.alloc(10), f2])) };
  const misses: Record<string, { js: boolean; tap: number }> = {};
  const miss = async (name: string, d: Buffer, from?: UdpSocket): Promise<void> => {
    const r = await probe(d, from);
    misses[name] = { js: r.js, tap: r.tap.length };
  };
  await miss('other src MAC', datagram(HOP, [{ f: frame(SRC + 1, DST, 1) }]));
  await miss('other dst MAC', datagram(HOP, [{ f: frame(SRC, DST + 1, 1) }]));
  await miss('other origin peer', datagram(HOP, [{ origin: ORIGIN + 1, f: f1 }]));
  await miss('not for us (relay)', datagram(HOP, [{ to: SELF_PEER + 1, f: f1 }]));
  await miss('broadcast record', datagram(HOP, [{ to: 0, f: f1 }]));
  await miss('other hop peer', datagram(HOP + 1, [{ f: f1 }]));
  await miss('other hop address', datagram(HOP, [{ f: f1 }]), tx2);
  await miss('heartbeat type', datagram(HOP, [{ f: f1 }], DatagramType.HEARTBEAT));
  await miss('sealed type', datagram(HOP, [{ f: f1 }], DatagramType.ENCRYPTED));
  await miss('one hit, one miss', datagram(HOP, [{ f: f1 }, { f: frame(SRC + 1, DST, 1) }]));
  const cut = datagram(HOP, [{ f: f1 }]);
  await miss('record longer than the datagram', Buffer.from(cut.subarray(0, cut.length - 1)));
  result.misses = misses;
  rx.clearFlows();
  result.afterClear = await probe(datagram(HOP, [{ f: f1 }])).then((r) => ({ js: r.js, tap: r.tap.length }));
  rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 0, 30);
  const fresh = await probe(datagram(HOP, [{ f: f1 }]));
  result.noVnet = { js: fresh.js, tapOk: fresh.tap.equals(f1) };
  await new Promise((r) => setTimeout(r, 80));
  result.afterTtl = await probe(datagram(HOP, [{ f: f1 }])).then((r) => ({ js: r.js, tap: r.tap.length }));
  result.stats = rx.flowStats();
  result.badArgs = errInfo(() => rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, 2 ** 48, tapFd, 10, 100));
  // Keyed flows (the router installs with the frame it delivered): only frames with that
  // EtherType and IP source/destination ride them; ARP and IPv6 ND never install.
  const ip4 = (src: number[], dst: number[], fill: number): Buffer => {
    const f = frame(SRC, DST, fill);
    f[14] = 0x45;
    f.set(src, 26);
    f.set(dst, 30);
    return f;
  };
  const ip6 = (src: number, dst: number, nh: number, type: number): Buffer => {
    const f = Buffer.alloc(80, 0);
    f.writeUIntBE(DST, 0, 6);
    f.writeUIntBE(SRC, 6, 6);
    f.writeUInt16BE(0x86dd, 12);
    f[14] = 0x60;
    f[20] = nh;
    f[22] = 0xfd;
    f[37] = src;
    f[38] = 0xfd;
    f[53] = dst;
    f[54] = type;
    return f;
  };
  rx.clearFlows();
  const legit = ip4([10, 0, 0, 1], [10, 0, 0, 2], 0xb1);
  const keyed: Json = {};
  keyed.installed = rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 0, 5000, undefined, legit);
  const same = ip4([10, 0, 0, 1], [10, 0, 0, 2], 0xb2);
  const hit = await probe(datagram(HOP, [{ f: same }]));
  keyed.samePair = { js: hit.js, tapOk: hit.tap.equals(same) };
  const forged = await probe(datagram(HOP, [{ f: ip4([10, 0, 0, 9], [10, 0, 0, 2], 0xb3) }]));
  keyed.forgedSource = { js: forged.js, tap: forged.tap.length };
  const arp = frame(SRC, DST, 0);
  arp.writeUInt16BE(0x0806, 12);
  keyed.arpInstalls = rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 0, 5000, undefined, arp);
  keyed.ndInstalls = rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 0, 5000, undefined, ip6(1, 2, 58, 136));
  keyed.ping6Installs = rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 0, 5000, undefined, ip6(1, 2, 58, 128));
  const ping6 = await probe(datagram(HOP, [{ f: ip6(1, 2, 58, 129) }]));
  keyed.ping6Hit = { js: ping6.js, tap: ping6.tap.length };
  const na = await probe(datagram(HOP, [{ f: ip6(1, 2, 58, 136) }]));
  keyed.ndMiss = { js: na.js, tap: na.tap.length };
  const ipv4Still = await probe(datagram(HOP, [{ f: same }]));
  keyed.bothFamilies = { js: ipv4Still.js, tap: ipv4Still.tap.length };
  result.keyed = keyed;
  rx.close();
  tx.close();
  tx2.close();
  closeSync(tapFd);
  return result;
}

/**
 * Ingress flows of an encrypted hop (flow-cache.h, sleeve-aead.h): datagrams sealed by a
 * JS Sealer are opened in C with the hop's Opener state and key and their frames written
 * to the "TAP" (a FIFO); replays, forgeries, plaintext from the hop, another epoch and
 * misses reach the handler untouched, so the JS Opener opens (and counts) them once.
 */
async function childFlowsSealed(): Promise<Json> {
  const fifo = `/tmp/tsw-udp-sflows-${process.pid}`;
  execFileSync('mkfifo', [fifo]);
  const tapFd = openSync(fifo, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
  unlinkSync(fifo);
  const rx = UdpSocket.open({ port: 0, address: '127.0.0.1', batch: 64 });
  const tx = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  const HOP = 0x0a0b0c0d0e0f, ORIGIN = 0x111111111111, SELF_PEER = 0x222222222222;
  const SRC = 0x02aabbccdd01, DST = 0x02aabbccdd02;
  const key = randomBytes(32);
  const sealer = new Sealer(key);
  const opener = new Opener(key);
  const jsOut = Buffer.alloc(65536);
  let calls = 0;
  const jsResults: number[] = [];
  // The router's part on a miss: the JS Opener opens what C left alone.
  rx.start((slab, meta, count) => {
    calls++;
    for (let i = 0; i < count; i++) {
      const at = meta[4 * i]!;
      if (slab[at + 1] === DatagramType.ENCRYPTED) jsResults.push(opener.open(slab, at, at + meta[4 * i + 1]!, jsOut));
      else jsResults.push(-100);
    }
  });
  const frame = (fill: number): Buffer => {
    const f = Buffer.alloc(100, fill);
    f.writeUIntBE(DST, 0, 6);
    f.writeUIntBE(SRC, 6, 6);
    f.writeUInt16BE(0x0800, 12);
    return f;
  };
  const inner = (f: Buffer, type: number = DatagramType.FRAMES, sender = HOP): Buffer => {
    const h = Buffer.from([0x54, type, 0, 0, 0, 0, 0, 0]);
    h.writeUIntBE(sender, 2, 6);
    const r = Buffer.alloc(14);
    r.writeUIntBE(ORIGIN, 0, 6);
    r.writeUIntBE(SELF_PEER, 6, 6);
    r.writeUInt16BE(f.length, 12);
    return Buffer.concat([h, r, f]);
  };
  const outer = Buffer.from([0x54, DatagramType.ENCRYPTED, 0, 0, 0, 0, 0, 0]);
  outer.writeUIntBE(HOP, 2, 6);
  const seal = (plain: Buffer): Buffer => {
    const out = Buffer.alloc(plain.length + 32);
    return out.subarray(0, sealer.seal(outer, plain, 0, plain.length, out));
  };
  const drain = (): Buffer => {
    const chunks: Buffer[] = [];
    const b = Buffer.alloc(65536);
    for (;;) {
      try {
        const n = readSync(tapFd, b, 0, b.length, null);
        if (n <= 0) break;
        chunks.push(Buffer.from(b.subarray(0, n)));
      } catch {
        break;
      }
    }
    return Buffer.concat(chunks);
  };
  const probe = async (d: Buffer): Promise<{ js: boolean; tap: number; jsResult?: number }> => {
    const before = calls;
    const nres = jsResults.length;
    tx.send(d, 0, d.length, LOOPBACK, rx.localPort);
    await new Promise((r) => setTimeout(r, 60));
    return { js: calls > before, tap: drain().length, ...(jsResults.length > nres ? { jsResult: jsResults[jsResults.length - 1] } : {}) };
  };
  const result: Json = {};
  const f1 = frame(0xb1);
  result.beforeInstall = await probe(seal(inner(f1)));
  result.installed = rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 0, 5000, opener);
  const okBefore = opener.stats.ok;
  const d1 = seal(inner(f1));
  const one = await probe(d1);
  result.one = one;
  result.okCounted = opener.stats.ok - okBefore;
  // Written exactly: the frame, opened in C from a JS-sealed datagram.
  const d2 = seal(inner(f1));
  tx.send(d2, 0, d2.length, LOOPBACK, rx.localPort);
  await new Promise((r) => setTimeout(r, 60));
  result.exact = drain().equals(f1);
  result.replay = await probe(d1);
  result.replayCounted = opener.stats.replay;
  const t = Buffer.from(seal(inner(f1)));
  t[t.length - 20]! ^= 0xff;
  result.tampered = await probe(t);
  result.authCounted = opener.stats.auth;
  result.plainFromHop = await probe(inner(f1));
  result.heartbeatType = await probe(seal(inner(f1, DatagramType.HEARTBEAT)));
  result.innerSenderDiffers = await probe(seal(inner(f1, DatagramType.FRAMES, HOP + 1)));
  result.otherFrame = await probe(seal(inner(frame(0xb2).fill(7, 6, 12))));
  // Next epoch: C punts to JS, whose Opener promotes it; the old-key entry then misses.
  sealer.rekey();
  result.nextEpoch = await probe(seal(inner(f1)));
  result.openerEpoch = opener.epoch;
  result.afterPromote = await probe(seal(inner(f1)));
  result.reinstalled = rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 0, 5000, opener);
  result.newKey = await probe(seal(inner(f1)));
  // Whole wake-ups (one GRO super-packet = one recvmmsg row split into several): equal-sized
  // sealed datagrams sent as one UDP GSO super-packet arrive in one batch.
  const gsoProbe = async (ds: Buffer[]): Promise<{ js: boolean; tap: Buffer; rows: number }> => {
    const before = calls;
    const rowsBefore = rx.stats().recvDatagrams;
    const out = new DatagramBatch(1 << 17, 64);
    for (const d of ds) {
      const at = out.reserve(d.length);
      d.copy(out.slab, at);
      out.commit(at, d.length, LOOPBACK, rx.localPort | COALESCE);
    }
    tx.sendBatch(out.slab, out.table, out.count);
    await new Promise((r) => setTimeout(r, 80));
    return { js: calls > before, tap: drain(), rows: rx.stats().recvDatagrams - rowsBefore };
  };
  const bulkFrames = [0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6].map(frame);
  const okBulk = opener.stats.ok;
  const bulk = await gsoProbe(bulkFrames.map((f) => seal(inner(f))));
  result.bulk = { js: bulk.js, exact: bulk.tap.equals(Buffer.concat(bulkFrames)), rows: bulk.rows, ok: opener.stats.ok - okBulk };
  // A duplicate inside one wake-up: Peek passes both copies (the window is updated only after
  // the batch), so C must hand the batch to JS, whose Opener takes the first and drops the second.
  const replayBefore = opener.stats.replay;
  const dup = seal(inner(frame(0xd1)));
  const dupR = await gsoProbe([dup, dup]);
  result.dupInBatch = { js: dupR.js, tap: dupR.tap.length, rows: dupR.rows, replays: opener.stats.replay - replayBefore };
  // Counters out of order inside one wake-up go to JS too (JS opens both: both fresh).
  const e1 = seal(inner(frame(0xe1)));
  const e2 = seal(inner(frame(0xe2)));
  const reordered = await gsoProbe([e2, e1]);
  result.reordered = { js: reordered.js, tap: reordered.tap.length, jsOk: jsResults.slice(-2) };
  // TCP segments of one flow, flow with a 10-byte virtio_net_hdr: written as ONE GSO super-frame,
  // byte for byte what the TAP addon's writeSlab merge (mergeTcp) writes.
  rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 10, 5000, opener);
  const tcpSeg = (k: number): Buffer => {
    const payload = 200;
    const f = Buffer.alloc(14 + 20 + 20 + payload, 0x30 + k);
    f.writeUIntBE(DST, 0, 6);
    f.writeUIntBE(SRC, 6, 6);
    f.writeUInt16BE(0x0800, 12);
    const ip = f.subarray(14);
    ip[0] = 0x45; ip[1] = 0;
    ip.writeUInt16BE(20 + 20 + payload, 2);
    ip.writeUInt16BE(100 + k, 4);
    ip.writeUInt16BE(0x4000, 6);
    ip[8] = 64; ip[9] = 6;
    ip.writeUInt32BE(0x0a000001, 12);
    ip.writeUInt32BE(0x0a000002, 16);
    const th = ip.subarray(20);
    th.writeUInt16BE(40000, 0);
    th.writeUInt16BE(5201, 2);
    th.writeUInt32BE(1000 + k * payload, 4);
    th.writeUInt32BE(77, 8);
    th[12] = 5 << 4; th[13] = 0x10;
    th.writeUInt16BE(65535, 14);
    return f;
  };
  const segs = [0, 1, 2, 3, 4].map(tcpSeg);
  const slab = Buffer.concat(segs);
  const pairs = new Uint32Array(2 * segs.length);
  let o = 0;
  segs.forEach((s, k) => { pairs[2 * k] = o; pairs[2 * k + 1] = s.length; o += s.length; });
  const expected = Buffer.concat(mergeTcp(slab, pairs, segs.length));
  const mergedBefore = rx.stats();
  const merged = await gsoProbe(segs.map((f) => seal(inner(f))));
  const mergedAfter = rx.stats();
  result.merged = {
    js: merged.js, exact: merged.tap.equals(expected), writes: mergeTcp(slab, pairs, segs.length).length,
    superFrames: mergedAfter.tapSuperFrames - mergedBefore.tapSuperFrames, mergedFrames: mergedAfter.tapMergedFrames - mergedBefore.tapMergedFrames,
  };
  rx.clearFlows();
  result.afterClear = await probe(seal(inner(f1)));
  result.stats = rx.flowStats();
  result.badState = errInfo(() => rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 0, 5000, { sharedState: Buffer.alloc(8), currentKey: key }));
  result.badKey = errInfo(() => rx.addFlow(HOP, LOOPBACK, ORIGIN, SELF_PEER, SRC, DST, tapFd, 0, 5000, { sharedState: opener.sharedState, currentKey: Buffer.alloc(31) }));
  rx.close();
  tx.close();
  closeSync(tapFd);
  return result;
}

/** A socket started with poll false: nothing arrives by itself; drain() reads what is queued, in order. */
async function childDrain(): Promise<Json> {
  const rx = UdpSocket.open({ port: 0, address: '127.0.0.1', batch: 4, slotBytes: 2048 });
  const tx = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  const got: string[] = [];
  rx.start((slab, meta, count) => {
    for (let i = 0; i < count; i++) got.push(slab.subarray(meta[i * META_STRIDE]!, meta[i * META_STRIDE]! + meta[i * META_STRIDE + 1]!).toString());
  }, undefined, { poll: false });
  for (let i = 0; i < 10; i++) {
    const b = Buffer.from(`hb-${i}`);
    tx.send(b, 0, b.length, LOOPBACK, rx.localPort);
  }
  await new Promise((r) => setTimeout(r, 100));
  const beforeDrain = got.length;
  const drained = rx.drain();
  const again = rx.drain();
  const polled = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  polled.start(() => undefined);
  const drainPolled = errInfo(() => polled.drain());
  polled.close();
  rx.close();
  const afterClose = rx.drain();
  tx.close();
  return { beforeDrain, drained, again, got, drainPolled, afterClose, batches: rx.stats().recvBatches };
}

if (process.env.TSW_UDP_CHILD) {
  const mode = process.env.TSW_UDP_CHILD;
  const run: Record<string, () => Json | Promise<Json>> = { batch: childBatch, gso: childGso, sleeve: childSleeve, edges: childEdges, errors: childErrors, 'close-in-batch': childCloseInBatch, 'heartbeat-pacing': childHeartbeatPacing, flows: childFlows, 'flows-sealed': childFlowsSealed, drain: childDrain };
  try {
    const r = await run[mode]!();
    process.stdout.write(JSON.stringify({ ok: true, ...r }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, error: (e as Error).stack }) + '\n');
  }
} else {
  // -------------------------------------------------------------- test side
  const skip = process.platform !== 'linux' ? 'Linux only' : process.getuid?.() !== 0 ? 'needs root (creates a network namespace)' : undefined;
  if (skip !== undefined) process.stderr.write(`udp.test: skipped: ${skip}\n`);

  const child = (mode: string): Promise<Record<string, any>> => new Promise((resolve, reject) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    execFile('ip', ['netns', 'exec', NS, process.execPath, SELF], { env: { ...process.env, TSW_UDP_CHILD: mode }, timeout: 30_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        const r = JSON.parse(line);
        if (!r.ok) reject(new Error(`child ${mode}: ${r.error}`));
        else resolve(r);
      } catch {
        reject(new Error(`child ${mode} failed (${err?.message ?? 'no output'}): ${stderr}${stdout}`));
      }
    });
  });

  describe('batched UDP socket (root, netns)', { skip }, () => {
    useNetns(NS);

    it('poll false: datagrams wait in the socket until drain(), which reads them all in order across batches', async () => {
      const r = await child('drain');
      assert.equal(r.beforeDrain, 0, 'nothing is delivered without a drain()');
      assert.equal(r.drained, 10, 'drain() read all 10 queued datagrams (3 batches of at most 4)');
      assert.deepEqual(r.got, Array.from({ length: 10 }, (_, i) => `hb-${i}`));
      assert.equal(r.batches, 3);
      assert.equal(r.again, 0, 'nothing left');
      assert.equal(r.drainPolled?.code, 'EINVAL', 'drain() on a polled socket is refused');
      assert.equal(r.afterClose, 0, 'drain() after close reads nothing');
    });

    it('10,000 datagrams sent in batches arrive complete, in order, intact and batched', async () => {
      const r = await child('batch');
      assert.equal(r.accepted, 10_000, 'the kernel took every datagram');
      assert.equal(r.got, 10_000);
      assert.equal(r.inOrder, true);
      assert.equal(r.contentOk, true, 'lengths and bytes match what was sent');
      assert.equal(r.addrOk, true, 'source is 127.0.0.1 and the sender\'s port');
      assert.equal(r.layoutOk, true, 'datagrams lie in ascending slots inside the slab');
      assert.ok(r.maxCount > 1 && r.maxCount <= 64, `batches of 2..64 expected, max was ${r.maxCount}`);
      assert.equal(r.rx.recvDatagrams, 10_000);
      assert.ok(r.rx.recvBatches < 10_000 / 2, `receive batching: ${r.rx.recvBatches} batches`);
      assert.equal(r.tx.sendDatagrams, 10_000);
      assert.ok(r.tx.sendCalls <= 100, `one sendmmsg per batch of 100: ${r.tx.sendCalls} calls`);
      assert.equal(r.tx.sendDropsFull + r.tx.sendDropsTooBig + r.tx.sendErrors, 0);
      assert.ok(r.rx.recvBufferBytes >= 4 << 20, `receive buffer forced to 4 MiB (kernel doubles it): ${r.rx.recvBufferBytes}`);
    });

    it('UDP GSO sends and GRO receives: coalesced runs arrive as the same datagrams, in order, with and without GRO', async () => {
      const r = await child('gso');
      assert.equal(r.accepted, 20_000);
      for (const side of [r.gro, r.plain]) {
        assert.equal(side.got, 10_000);
        assert.equal(side.inOrder, true);
        assert.equal(side.contentOk, true);
      }
      assert.equal(r.tx.gso, true);
      assert.ok(r.tx.sendCoalesced > 10_000, `most datagrams left in GSO super-packets: ${r.tx.sendCoalesced}`);
      assert.ok(r.tx.sendCalls < 400, `${r.tx.sendCalls} sendmmsg calls for 200 batches`);
      assert.equal(r.gro.stats.gro, true);
      assert.ok(r.gro.stats.recvCoalesced > 5_000, `GRO receiver got super-packets: ${r.gro.stats.recvCoalesced}`);
      assert.ok(r.gro.maxCount > 16, `a batch of 16 messages split into more rows: ${r.gro.maxCount}`);
      assert.equal(r.plain.stats.gro, false);
      assert.equal(r.plain.stats.recvCoalesced, 0, 'without UDP_GRO the kernel segments');
    });

    it('an oversized datagram is an EMSGSIZE drop with DF, fragments without; truncation and bad rows are handled', async () => {
      const r = await child('edges');
      assert.deepEqual(r.mtus, [65535, 1500, 0], 'routeMtu: loopback (65536, capped at the IPv4 limit) before/after lowering its MTU; no route to 8.8.8.8 in the netns');
      assert.equal(r.sentDf, 2, 'the 3000-byte datagram is dropped, both neighbours go');
      assert.equal(r.statsDf.sendDropsTooBig, 1);
      assert.equal(r.statsDf.lastSendError, 'EMSGSIZE');
      assert.equal(r.statsDf.sendDatagrams, 2);
      assert.equal(r.single, false, 'a single oversized send() returns false');
      assert.equal(r.sentNoDf, true);
      assert.equal(r.sentNoDfBig, true, 'without DF the kernel fragments instead');
      assert.equal(r.sentGsoTooBig, 1, 'a GSO run above the MTU falls back to single sends');
      assert.equal(r.statsGso.sendDropsTooBig, 3);
      assert.equal(r.statsGso.sendDatagrams, 3);
      assert.equal(r.statsGso.gso, true, 'EINVAL/EMSGSIZE does not turn GSO off');
      // Received: 100, 200 (DF batch), 300 (GSO fallback), 1400 (no DF); the fragmented 3000 exceeds the 2048 slot.
      assert.deepEqual(r.lens, [100, 200, 300, 1400]);
      assert.equal(r.rxStats.recvTruncated, 1, 'the 3000-byte datagram did not fit a 2048-byte slot');
      assert.equal(r.rowOutside.code, 'ERR_OUT_OF_RANGE');
      assert.match(r.rowOutside.message, /outside the 150-byte slab/);
      assert.equal(r.portZero.code, 'ERR_OUT_OF_RANGE');
      assert.equal(r.countTooBig.code, 'ERR_OUT_OF_RANGE');
      assert.equal(r.notU32.code, 'ERR_INVALID_ARG_TYPE');
      assert.equal(r.badRowsSentNothing, true);
      assert.equal(r.startTwice.code, 'EALREADY');
      assert.equal(r.fdAfterClose, -1);
      assert.equal(r.startAfterClose.code, 'ECLOSED');
      assert.equal(r.sendAfterClose, false, 'sending after close is a counted error, not a throw');
      assert.equal(r.closedStats.sendErrors, 1);
      assert.equal(r.closedStats.lastSendError, 'EBADF');
    });

    it('bind errors are one-line UdpErrors: port in use names the likely cause', async () => {
      const r = await child('errors');
      assert.equal(r.inUse.code, 'EADDRINUSE');
      assert.equal(r.inUse.isUdpError, true);
      assert.equal(r.inUse.message, `UDP port ${r.port} is already in use: is another router running in this network namespace?`);
      assert.equal(r.inUseSpecific.code, 'EADDRINUSE');
      assert.equal(r.reopen, null, 'close() frees the port');
      assert.equal(r.foreign.code, 'EADDRNOTAVAIL');
      assert.match(r.foreign.message, /192\.0\.2\.1: not an address of this host/);
      assert.equal(r.badAddr.code, 'EINVAL');
      assert.equal(r.badPort.code, 'ERR_OUT_OF_RANGE');
      assert.equal(r.badBatch.code, 'ERR_OUT_OF_RANGE');
      assert.equal(r.badSlot.code, 'ERR_OUT_OF_RANGE');
    });

    it('Sleeve over the batched socket: plaintext and sealed frames arrive in order, one sendmmsg per flush, forgeries dropped', async () => {
      const r = await child('sleeve');
      for (const mode of ['plain', 'sealed']) {
        const m = r[mode];
        assert.deepEqual(m.heard, [1, 1], `${mode}: heartbeats heard both ways`);
        assert.equal(m.got, 300, `${mode}: every frame arrived`);
        assert.equal(m.inOrder, true, `${mode}: bytes, order, origin and destination kept`);
        assert.equal(m.sendCallsForFlush, 1, `${mode}: one flush, one sendmmsg`);
        assert.ok(m.datagramsForFlush >= 100 && m.datagramsForFlush < 300, `${mode}: frames packed into ${m.datagramsForFlush} datagrams`);
        assert.ok(m.coalesced >= 90, `${mode}: the 100 full datagrams left as GSO super-packets (${m.coalesced})`);
        assert.ok(m.batches < 20, `${mode}: received in ${m.batches} batches`);
        assert.equal(m.drops['unknown-peer'], 1, `${mode}: a datagram from the wrong address is dropped`);
        assert.equal(m.drops.malformed, 1, `${mode}: a runt is dropped`);
      }
      assert.equal(r.plain.drops.auth, undefined);
      assert.equal(r.sealed.drops.auth, 1, 'plaintext from a peer with a key is refused');
      assert.equal(r.plain.drops.malformed, 1);
    });

    it('ingress flow cache: matching datagrams go to the TAP without JavaScript, every miss reaches the handler', async () => {
      const r = await child('flows');
      assert.deepEqual(r.beforeInstall, { js: true, tap: 0 }, 'nothing is cached before an install');
      assert.equal(r.installed, true);
      assert.deepEqual(r.one, { js: false, tapOk: true }, 'one frame: virtio header + frame written, handler not called');
      assert.deepEqual(r.two, { js: false, tapOk: true }, 'two frames in one datagram, in order');
      for (const [name, m] of Object.entries(r.misses as Record<string, unknown>)) assert.deepEqual(m, { js: true, tap: 0 }, name);
      assert.deepEqual(r.afterClear, { js: true, tap: 0 }, 'clearFlows() empties the cache');
      assert.deepEqual(r.noVnet, { js: false, tapOk: true }, 'vnetLen 0 writes the bare frame');
      assert.deepEqual(r.afterTtl, { js: true, tap: 0 }, 'a flow expires after its ttl');
      assert.equal(r.stats.frames, 4);
      assert.equal(r.stats.batches, 3);
      assert.equal(r.stats.bytes, 240);
      assert.equal(r.stats.errors, 0);
      assert.ok(r.stats.clears >= 1);
      assert.equal(r.badArgs?.name, 'RangeError', 'a MAC beyond 48 bits is refused');
      const k = r.keyed;
      assert.equal(k.installed, true);
      assert.deepEqual(k.samePair, { js: false, tapOk: true }, 'a keyed flow takes frames with its IP pair');
      assert.deepEqual(k.forgedSource, { js: true, tap: 0 }, 'another IPv4 source between the same MACs goes to the router');
      assert.equal(k.arpInstalls, false, 'ARP is never cached');
      assert.equal(k.ndInstalls, false, 'IPv6 neighbour discovery is never cached');
      assert.equal(k.ping6Installs, true);
      assert.deepEqual(k.ping6Hit, { js: false, tap: 80 }, 'ICMPv6 echo reply with the same pair rides the IPv6 flow');
      assert.deepEqual(k.ndMiss, { js: true, tap: 0 }, 'a Neighbour Advertisement with the same pair goes to the router');
      assert.deepEqual(k.bothFamilies, { js: false, tap: 60 }, 'IPv4 and IPv6 flows of one MAC pair coexist');
    });

    it('ingress flows of an encrypted hop: JS-sealed datagrams opened in C; replays, forgeries, plaintext and other epochs left to the JS Opener', async () => {
      const r = await child('flows-sealed');
      assert.equal(r.beforeInstall.js, true);
      assert.equal(r.installed, true);
      assert.deepEqual(r.one, { js: false, tap: 100 }, 'opened and written in C, handler not called');
      assert.equal(r.okCounted, 1, 'the C open counts in Opener.stats');
      assert.equal(r.exact, true, 'the frame written is the one sealed');
      assert.deepEqual(r.replay, { js: true, tap: 0, jsResult: -1 }, 'a replay reaches JS, which drops it as OPEN_REPLAY');
      assert.equal(r.replayCounted, 1, 'counted once');
      assert.deepEqual(r.tampered, { js: true, tap: 0, jsResult: -2 }, 'a forgery reaches JS, which drops it as OPEN_AUTH');
      assert.equal(r.authCounted, 1, 'counted once');
      assert.deepEqual(r.plainFromHop, { js: true, tap: 0, jsResult: -100 }, 'plaintext from an encrypted hop is never cached');
      for (const k of ['heartbeatType', 'innerSenderDiffers', 'otherFrame']) {
        assert.equal(r[k].js, true, k);
        assert.equal(r[k].tap, 0, k);
        assert.ok(r[k].jsResult >= 0, `${k}: C left it unopened in the window, so JS opens it: ${r[k].jsResult}`);
      }
      assert.equal(r.nextEpoch.js, true, 'another epoch is punted');
      assert.ok(r.nextEpoch.jsResult >= 0);
      assert.equal(r.openerEpoch, 1, 'the JS Opener promoted the next epoch');
      assert.deepEqual({ js: r.afterPromote.js, tap: r.afterPromote.tap }, { js: true, tap: 0 }, 'the old key entry no longer serves');
      assert.equal(r.reinstalled, true);
      assert.deepEqual(r.newKey, { js: false, tap: 100 }, 'reinstalled with the new key: opened in C');
      assert.deepEqual(r.bulk, { js: false, exact: true, rows: 6, ok: 6 }, 'a GRO batch of 6 sealed datagrams: opened and written in C, in order, each counted once');
      assert.equal(r.dupInBatch.rows, 2, 'both copies arrived in one wake-up');
      assert.deepEqual(r.dupInBatch, { js: true, tap: 0, rows: 2, replays: 1 }, 'a duplicate inside one batch is not written twice: JS takes the batch and drops the copy as a replay');
      assert.equal(r.reordered.js, true, 'counters out of order within a batch go to JS');
      assert.equal(r.reordered.tap, 0);
      assert.ok(r.reordered.jsOk.every((x: number) => x >= 0), `JS opened both: ${r.reordered.jsOk}`);
      assert.equal(r.merged.writes, 1, 'mergeTcp merges the 5 segments into one super-frame');
      assert.deepEqual(r.merged, { js: false, exact: true, writes: 1, superFrames: 1, mergedFrames: 5 }, 'TCP segments of a bulk batch leave as one GSO super-frame, exactly as writeSlab would write it');
      assert.equal(r.afterClear.js, true);
      assert.equal(r.stats.frames, 3 + 6 + 5);
      assert.equal(r.stats.crypto, 3 + 6 + 5);
      assert.equal(r.stats.errors, 0);
      assert.equal(r.badState?.name, 'RangeError');
      assert.equal(r.badKey?.name, 'RangeError');
    });

    it('sleeve heartbeats: every 10 s to an established peer, every 30 s while it is on fastdp; a fastdp heartbeat keeps it alive', async () => {
      const r = await child('heartbeat-pacing');
      assert.equal(r.sleeveAt9s, 0);
      assert.equal(r.sleeveAt10s, 1, 'one heartbeat 10 s after the last');
      assert.equal(r.fastdpAt20s, 0, 'on fastdp: not 10 s later');
      assert.equal(r.fastdpAt39s, 0);
      assert.equal(r.fastdpAt40s, 1, 'on fastdp: 30 s after the last');
      assert.equal(r.timeoutsWhileHeardOnFastdp, 0, 'heard over fastdp 30 s ago (sleeve silent for 60 s): no UDP timeout');
      assert.equal(r.timeoutsWhenSilent, 1, 'silent on both paths for 36 s: the UDP timeout fires');
    });

    it('close() inside the batch handler stops further calls and lets the process exit', async () => {
      const r = await child('close-in-batch');
      assert.equal(r.calls, 1);
      assert.equal(r.fd, -1);
    });
  });
}
