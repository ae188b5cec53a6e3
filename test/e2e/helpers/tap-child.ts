/**
 * Child process for test/e2e/tap.test.ts. It runs INSIDE the test's network
 * namespace (spawned via `ip netns exec`), because a TAP device is created in
 * the namespace of the process that opens it. It refuses to run unless
 * TSW_TAP_CHILD=1, so a stray invocation never creates devices in the root
 * namespace.
 *
 * Usage: TSW_TAP_CHILD=1 node tap-child.js <mode>
 * Prints exactly one JSON line `{ ok: true, ... }` or `{ ok: false, error }` on
 * stdout (modes "alive"/"unref" print plain markers instead).
 *
 * The "traffic" mode implements a tiny host behind the TAP: 10.99.0.2 with a
 * made-up MAC that answers ARP requests and ICMP echo requests (RFC 826,
 * RFC 792), and counts UDP datagrams sent to it, so the kernel's own `ping`
 * exercises both directions end to end.
 */
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { Tap, TapError, setDontFragment, udpSocketFd, type TapStats } from '../../../router/overlay/tap.js';

if (process.env.TSW_TAP_CHILD !== '1') {
  process.stderr.write('tap-child: refusing to run without TSW_TAP_CHILD=1 (it creates TAP devices)\n');
  process.exit(2);
}

const mode = process.argv[2] ?? '';

// ---- Frame helpers (test-only; the router's own codec lives elsewhere) ----

const FAKE_MAC = Buffer.from([0x02, 0x00, 0x5e, 0x99, 0x00, 0x02]);

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function ipv4(s: string): Buffer {
  return Buffer.from(s.split('.').map(Number));
}

function macOf(ifname: string): Buffer {
  const txt = readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim();
  return Buffer.from(txt.split(':').map((h) => parseInt(h, 16)));
}

/** RFC 1071 Internet checksum of b[start, end). */
function inetChecksum(b: Buffer, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i + 1 < end; i += 2) sum += b.readUInt16BE(i);
  if ((end - start) & 1) sum += b[end - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Ethernet + IPv4 + UDP frame (UDP checksum 0 = none, allowed for IPv4 by RFC 768). */
function udpFrame(dstMac: Buffer, srcMac: Buffer, src: Buffer, dst: Buffer, sport: number, dport: number, payload: Buffer): Buffer {
  const f = Buffer.alloc(14 + 20 + 8 + payload.length);
  dstMac.copy(f, 0);
  srcMac.copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(20 + 8 + payload.length, 16);
  f[22] = 64;
  f[23] = 17;
  src.copy(f, 26);
  dst.copy(f, 30);
  f.writeUInt16BE(inetChecksum(f, 14, 34), 24);
  f.writeUInt16BE(sport, 34);
  f.writeUInt16BE(dport, 36);
  f.writeUInt16BE(8 + payload.length, 38);
  payload.copy(f, 42);
  return f;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `pred` every 5 ms until true or `ms` elapse; returns the last value. */
async function waitFor(pred: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) return false;
    await sleep(5);
  }
  return true;
}

function run(cmd: string, args: string[], ms: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), ms);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

function errInfo(f: () => unknown): { name: string; code: string; message: string } | null {
  try {
    f();
    return null;
  } catch (e) {
    const err = e as Error & { code?: string };
    return { name: err instanceof TapError ? 'TapError' : err.constructor.name, code: String(err.code), message: err.message };
  }
}

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// ---- Modes ----

async function traffic(): Promise<Record<string, unknown>> {
  const name = 'tswtap0';
  const tap = Tap.open(name);
  const res: Record<string, unknown> = { name: tap.name, fdIsNumber: Number.isInteger(tap.fd) && tap.fd > 2 };
  const me = ipv4('10.99.0.1');
  const peer = ipv4('10.99.0.2');
  let arpReplies = 0;
  let echoReplies = 0;
  let bigEcho = 0;
  let maxCount = 0;
  let layoutOk = true;
  const burstN = 2000;
  const burstSeen = new Uint8Array(burstN);
  let burstGot = 0;
  let burstInOrder = true;
  let lastSeq = -1;
  let bigUdpLen = -1;
  let bigUdpPayloadOk = false;
  const reply = Buffer.alloc(65536);
  let errors: TapError[] = [];

  tap.start(
    (slab, frames, count) => {
      maxCount = Math.max(maxCount, count);
      let prevEnd = 0;
      for (let i = 0; i < count; i++) {
        const off = frames[2 * i];
        const len = frames[2 * i + 1];
        // Frames are packed contiguously, in order, inside the slab.
        if (off < prevEnd || off + len > slab.length || len < 14) layoutOk = false;
        prevEnd = off + len;
        const type = slab.readUInt16BE(off + 12);
        if (type === 0x0806 && len >= 42 && slab.readUInt16BE(off + 20) === 1 && slab.compare(peer, 0, 4, off + 38, off + 42) === 0) {
          // ARP request for 10.99.0.2 → reply "10.99.0.2 is at FAKE_MAC".
          slab.copy(reply, 0, off + 6, off + 12);
          FAKE_MAC.copy(reply, 6);
          reply.writeUInt16BE(0x0806, 12);
          reply.writeUInt16BE(1, 14);
          reply.writeUInt16BE(0x0800, 16);
          reply[18] = 6;
          reply[19] = 4;
          reply.writeUInt16BE(2, 20);
          FAKE_MAC.copy(reply, 22);
          peer.copy(reply, 28);
          slab.copy(reply, 32, off + 22, off + 32); // requester's MAC and IP
          if (tap.write(reply, 0, 42)) arpReplies++;
        } else if (type === 0x0800) {
          const ihl = (slab[off + 14] & 0x0f) * 4;
          const proto = slab[off + 23];
          const l4 = off + 14 + ihl;
          if (slab.compare(peer, 0, 4, off + 30, off + 34) !== 0) continue;
          if (proto === 1 && slab[l4] === 8) {
            // ICMP echo request → echo reply: swap MACs and IPs, type 0, fresh checksums.
            slab.copy(reply, 0, off, off + len);
            slab.copy(reply, 0, off + 6, off + 12);
            FAKE_MAC.copy(reply, 6);
            slab.copy(reply, 26, off + 30, off + 34);
            slab.copy(reply, 30, off + 26, off + 30);
            reply[22] = 64;
            reply.writeUInt16BE(0, 24);
            reply.writeUInt16BE(inetChecksum(reply, 14, 14 + ihl), 24);
            const r4 = 14 + ihl;
            reply[r4] = 0;
            reply.writeUInt16BE(0, r4 + 2);
            reply.writeUInt16BE(inetChecksum(reply, r4, len), r4 + 2);
            if (tap.write(reply, 0, len)) {
              echoReplies++;
              if (len > 8000) bigEcho++;
            }
          } else if (proto === 17 && slab.readUInt16BE(l4 + 2) === 9999) {
            const p = l4 + 8;
            const plen = slab.readUInt16BE(l4 + 4) - 8;
            if (plen >= 8000) {
              bigUdpLen = len;
              let ok = true;
              for (let k = 0; k < plen; k++) if (slab[p + k] !== (k * 7) % 251) ok = false;
              bigUdpPayloadOk = ok;
            } else {
              const seq = slab.readUInt32BE(p);
              if (seq < burstN && burstSeen[seq] === 0) {
                burstSeen[seq] = 1;
                burstGot++;
                if (seq < lastSeq) burstInOrder = false;
                lastSeq = seq;
              }
            }
          }
        }
      }
    },
    (err) => {
      errors.push(err);
    },
  );

  ip('link', 'set', 'lo', 'up');
  ip('link', 'set', name, 'mtu', '9000', 'txqueuelen', '10000', 'up');
  ip('addr', 'add', '10.99.0.1/24', 'dev', name);

  // 1. ping through the responder (ARP + ICMP), small then jumbo echoes.
  const ping = await run('ping', ['-n', '-c', '5', '-i', '0.05', '-W', '2', '10.99.0.2'], 8000);
  res.pingCode = ping.code;
  res.pingReceived = Number(/(\d+) received/.exec(ping.out)?.[1] ?? -1);
  const bigPing = await run('ping', ['-n', '-c', '2', '-i', '0.05', '-W', '2', '-s', '8000', '10.99.0.2'], 8000);
  res.bigPingReceived = Number(/(\d+) received/.exec(bigPing.out)?.[1] ?? -1);
  res.arpReplies = arpReplies;
  res.echoReplies = echoReplies;
  res.bigEcho = bigEcho;

  // 2. A burst from the kernel: every datagram must arrive, in order, batched.
  const tx = dgram.createSocket('udp4');
  await new Promise<void>((r) => tx.bind(0, '10.99.0.1', () => r()));
  const payload = Buffer.alloc(100);
  for (let s = 0; s < burstN; s++) {
    const b = Buffer.from(payload);
    b.writeUInt32BE(s, 0);
    tx.send(b, 9999, '10.99.0.2');
  }
  await waitFor(() => burstGot === burstN, 4000);
  res.burstGot = burstGot;
  res.burstInOrder = burstInOrder;
  res.maxCount = maxCount;
  res.layoutOk = layoutOk;

  // 3. One jumbo datagram (no fragmentation at MTU 9000): delivered whole.
  const big = Buffer.alloc(8000);
  for (let k = 0; k < big.length; k++) big[k] = (k * 7) % 251;
  tx.send(big, 9999, '10.99.0.2');
  await waitFor(() => bigUdpLen >= 0, 2000);
  res.bigUdpLen = bigUdpLen;
  res.bigUdpPayloadOk = bigUdpPayloadOk;
  tx.close();

  // 4. Frames we write must reach a kernel socket: write(), writeBatch(), writeSlab().
  const rx = dgram.createSocket('udp4');
  const got = new Set<number>();
  rx.on('message', (m) => {
    if (m.length === 8) got.add(m.readUInt32BE(0));
  });
  await new Promise<void>((r) => rx.bind(7777, '10.99.0.1', () => r()));
  const tapMac = macOf(name);
  const mk = (seq: number): Buffer => {
    const pl = Buffer.alloc(8);
    pl.writeUInt32BE(seq, 0);
    return udpFrame(tapMac, FAKE_MAC, peer, me, 5555, 7777, pl);
  };
  // write(): frames embedded at odd offsets of one big buffer.
  const frameLen = mk(0).length;
  const embed = Buffer.alloc(3 + 100 * (frameLen + 5));
  let okSingle = 0;
  for (let s = 0; s < 100; s++) {
    const at = 3 + s * (frameLen + 5);
    mk(s).copy(embed, at);
    if (tap.write(embed, at, frameLen)) okSingle++;
  }
  const batch: Buffer[] = [];
  for (let s = 100; s < 200; s++) batch.push(mk(s));
  batch.push(mk(9999)); // beyond count: must not be sent
  const okBatch = tap.writeBatch(batch, 100);
  const slab = Buffer.alloc(100 * frameLen + 7);
  const pairs = new Uint32Array(200);
  for (let s = 200; s < 300; s++) {
    const i = s - 200;
    const at = 7 + i * frameLen - (i === 0 ? 7 : 0); // first frame at 0, the rest after a 7-byte gap
    mk(s).copy(slab, at);
    pairs[2 * i] = at;
    pairs[2 * i + 1] = frameLen;
  }
  const okSlab = tap.writeSlab(slab, pairs, 100);
  await waitFor(() => got.size >= 300, 3000);
  await sleep(50);
  res.written = [okSingle, okBatch, okSlab];
  res.kernelGot = got.size;
  res.kernelGotBeyondCount = got.has(9999);
  let contiguous = true;
  for (let s = 0; s < 300; s++) if (!got.has(s)) contiguous = false;
  res.kernelGotAll = contiguous;
  rx.close();

  // 5. Link down: write fails with EIO, counted, no throw.
  const before = tap.stats();
  ip('link', 'set', name, 'down');
  res.writeWhileDown = tap.write(mk(5000));
  const afterDown = tap.stats();
  res.downErrorsDelta = afterDown.writeErrors - before.writeErrors;
  res.lastWriteError = afterDown.lastWriteError;

  // 6. Deleting the interface: onError once, reading stops, no spinning.
  ip('link', 'del', name);
  await waitFor(() => errors.length > 0, 2000);
  await sleep(300);
  res.errorCodes = errors.map((e) => e.code);
  res.errorIsTapError = errors.every((e) => e instanceof TapError);
  res.errorMessage = errors[0]?.message;
  const st: TapStats = tap.stats();
  res.stats = st;
  tap.close();
  tap.close();
  res.fdAfterClose = tap.fd;
  res.writeAfterClose = tap.write(mk(6000));
  errors = [];
  return res;
}

async function errorsMode(): Promise<Record<string, unknown>> {
  const res: Record<string, unknown> = {};
  const a = Tap.open('tswtap1');
  res.busy = errInfo(() => Tap.open('tswtap1'));
  res.notTap = errInfo(() => Tap.open('lo'));
  res.tooLong = errInfo(() => Tap.open('tswtap-name-16ch'));
  res.fifteenOk = errInfo(() => Tap.open('tswtap-name15ch').close());
  res.slash = errInfo(() => Tap.open('a/b'));
  res.empty = errInfo(() => Tap.open(''));
  res.percent = errInfo(() => Tap.open('tap%d'));
  res.badMaxFrame = errInfo(() => Tap.open('tswtap2', { maxFrame: 10 }));
  res.badBatch = errInfo(() => Tap.open('tswtap2', { batch: 0.5 }));
  res.badSlab = errInfo(() => Tap.open('tswtap2', { maxFrame: 2000, slabBytes: 2000 }));

  a.start(() => {});
  res.startTwice = errInfo(() => a.start(() => {}));
  res.writeNotBuffer = errInfo(() => a.write('abc' as unknown as Buffer));
  res.writeBadOffset = errInfo(() => a.write(Buffer.alloc(60), 61));
  res.writeBadLength = errInfo(() => a.write(Buffer.alloc(60), 10, 51));
  res.writeFracOffset = errInfo(() => a.write(Buffer.alloc(60), 1.5));
  res.batchNotArray = errInfo(() => a.writeBatch(Buffer.alloc(60) as unknown as Buffer[]));
  res.batchBadElem = errInfo(() => a.writeBatch([1 as unknown as Buffer]));
  res.batchBadCount = errInfo(() => a.writeBatch([Buffer.alloc(60)], 2));
  const w0 = a.stats().writeFrames + a.stats().writeErrors;
  res.slabOutside = errInfo(() => a.writeSlab(Buffer.alloc(100), new Uint32Array([0, 60, 50, 60]), 2));
  res.slabNotU32 = errInfo(() => a.writeSlab(Buffer.alloc(100), new Uint16Array([0, 60]) as unknown as Uint32Array, 1));
  res.slabWroteNothing = a.stats().writeFrames + a.stats().writeErrors === w0;
  // Link is down here: a well-formed write is refused with EIO and counted.
  const frame = Buffer.alloc(60, 0xff);
  res.downWrite = a.write(frame);
  res.downStats = a.stats();

  a.close();
  a.close();
  res.startAfterClose = errInfo(() => a.start(() => {}));
  res.writeAfterClose = a.write(frame);
  // Closing released the name: it can be opened again at once.
  res.reopen = errInfo(() => Tap.open('tswtap1').close());

  // udpSocketFd on unbound, bound and closed sockets.
  const s = dgram.createSocket('udp4');
  res.fdUnbound = udpSocketFd(s) ?? null;
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const fd = udpSocketFd(s);
  res.fdBound = fd ?? null;
  res.dfOn = errInfo(() => setDontFragment(fd as number, true));
  res.dfOff = errInfo(() => setDontFragment(fd as number, false));
  s.close();
  res.fdClosed = udpSocketFd(s) ?? null;
  const t = Tap.open('tswtap1');
  res.dfNotSocket = errInfo(() => setDontFragment(t.fd, true));
  res.dfBadFd = errInfo(() => setDontFragment(-1, true));
  t.close();
  const s6 = dgram.createSocket('udp6');
  await new Promise<void>((r) => s6.bind(0, '::1', () => r()));
  res.df6 = errInfo(() => setDontFragment(udpSocketFd(s6) as number, true));
  s6.close();
  return res;
}

/** setDontFragment's effect: DF datagrams above the MTU fail, non-DF ones are fragmented. */
async function dfMode(): Promise<Record<string, unknown>> {
  const name = 'tswtap2';
  const tap = Tap.open(name);
  const frags: number[] = [];
  tap.start((slab, frames, count) => {
    for (let i = 0; i < count; i++) {
      const off = frames[2 * i];
      if (slab.readUInt16BE(off + 12) !== 0x0800 || slab[off + 23] !== 17) continue;
      const fragField = slab.readUInt16BE(off + 20);
      frags.push(frames[2 * i + 1], fragField);
    }
  });
  ip('link', 'set', name, 'mtu', '1500', 'up');
  ip('addr', 'add', '10.97.0.1/24', 'dev', name);
  ip('neigh', 'add', '10.97.0.2', 'lladdr', '02:00:5e:97:00:02', 'dev', name);
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '10.97.0.1', () => r()));
  const fd = udpSocketFd(s) as number;
  const send = (n: number): Promise<string> =>
    new Promise((r) => s.send(Buffer.alloc(n), 9, '10.97.0.2', (err) => r(err ? String((err as NodeJS.ErrnoException).code) : 'ok')));
  setDontFragment(fd, true);
  const res: Record<string, unknown> = {};
  res.smallDf = await send(1000);
  res.bigDf = await send(3000);
  await waitFor(() => frags.length >= 2, 2000);
  res.smallFrame = frags.slice(0, 2);
  frags.length = 0;
  setDontFragment(fd, false);
  res.bigNoDf = await send(3000);
  await waitFor(() => frags.length >= 6, 2000);
  res.bigFrames = frags.slice();
  s.close();
  tap.close();
  return res;
}

/** Frames longer than maxFrame are dropped and counted; one exactly maxFrame long is kept. */
async function truncateMode(): Promise<Record<string, unknown>> {
  const name = 'tswtap3';
  const tap = Tap.open(name, { maxFrame: 1518, batch: 4 });
  const lens: number[] = [];
  tap.start((slab, frames, count) => {
    for (let i = 0; i < count; i++) {
      const off = frames[2 * i];
      // Only our IPv4/UDP datagrams; IPv6 autoconfiguration chatter is ignored.
      if (slab.readUInt16BE(off + 12) === 0x0800 && slab[off + 23] === 17) lens.push(frames[2 * i + 1]);
    }
  });
  ip('link', 'set', name, 'mtu', '9000', 'up');
  ip('addr', 'add', '10.96.0.1/24', 'dev', name);
  ip('neigh', 'add', '10.96.0.2', 'lladdr', '02:00:5e:96:00:02', 'dev', name);
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '10.96.0.1', () => r()));
  const send = (n: number): Promise<void> => new Promise((r) => s.send(Buffer.alloc(n), 9, '10.96.0.2', () => r()));
  await send(1518 - 42); // frame of exactly maxFrame bytes
  await send(3000); // 3042-byte frame > maxFrame
  await send(10); // 52-byte frame
  await waitFor(() => tap.stats().readTruncated >= 1 && lens.includes(52), 2000);
  await sleep(50);
  s.close();
  const st = tap.stats();
  tap.close();
  return { lens, readTruncated: st.readTruncated };
}

/** onBatch may close the TAP; the process must then exit by itself. */
async function closeInBatch(): Promise<Record<string, unknown>> {
  const name = 'tswtap4';
  const tap = Tap.open(name);
  let calls = 0;
  tap.start(() => {
    calls++;
    tap.close();
    tap.close();
  });
  ip('link', 'set', name, 'up');
  ip('addr', 'add', '10.95.0.1/24', 'dev', name);
  ip('neigh', 'add', '10.95.0.2', 'lladdr', '02:00:5e:95:00:02', 'dev', name);
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '10.95.0.1', () => r()));
  for (let i = 0; i < 50; i++) s.send(Buffer.alloc(10), 9, '10.95.0.2');
  await waitFor(() => calls > 0, 2000);
  await sleep(100);
  s.close();
  return { calls, fd: tap.fd };
}

/** An exception from onBatch is an uncaught exception of the process. */
function throwMode(): void {
  const name = 'tswtap5';
  const tap = Tap.open(name);
  process.on('uncaughtException', (e) => {
    emit({ ok: true, caught: (e as Error).message, stats: tap.stats() });
    tap.close();
  });
  tap.start(() => {
    throw new Error('boom from onBatch');
  });
  ip('link', 'set', name, 'up');
  ip('addr', 'add', '10.94.0.1/24', 'dev', name);
  ip('neigh', 'add', '10.94.0.2', 'lladdr', '02:00:5e:94:00:02', 'dev', name);
  const s = dgram.createSocket('udp4');
  s.bind(0, '10.94.0.1', () => {
    s.send(Buffer.alloc(10), 9, '10.94.0.2', () => s.close());
  });
}

/** Without onError, a read failure is an uncaught TapError. */
function noOnErrorMode(): void {
  const name = 'tswtap11';
  const tap = Tap.open(name);
  process.on('uncaughtException', (e) => {
    const err = e as TapError;
    emit({ ok: true, isTapError: err instanceof TapError, code: err.code, message: err.message, readErrors: tap.stats().readErrors });
    tap.close();
  });
  tap.start(() => {});
  ip('link', 'del', name);
}

/**
 * The flow cache's egress path and its wait between frames (router/overlay/native/flow-cache.h):
 * the kernel's own ping sends ICMP frames out of the TAP every 2 ms; an installed flow
 * forwards each as a FRAMES datagram to a sink socket, and after each such wake-up the
 * addon waits for the next frame itself. Meanwhile JavaScript must keep running on time:
 * a 5 ms interval timer (lateness measured) and the sink's receive handler.
 */
async function nestMode(): Promise<Record<string, unknown>> {
  const name = 'tswnest0';
  const tap = Tap.open(name, { vnetHdr: true });
  // No IPv6 chatter (router solicitations, MLD): the frames out of the TAP are ping's.
  execFileSync('sysctl', ['-qw', `net.ipv6.conf.${name}.disable_ipv6=1`]);
  ip('addr', 'add', '10.99.1.1/24', 'dev', name);
  ip('link', 'set', name, 'up');
  ip('link', 'set', 'lo', 'up');
  ip('neigh', 'replace', '10.99.1.2', 'lladdr', '02:00:5e:99:00:02', 'dev', name);
  const tapMac = macOf(name);
  const { UdpSocket } = await import('../../../router/overlay/udp.js');
  const { egressTemplate } = await import('../../../router/overlay/flow-cache.js');
  const sleeveSock = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  const sink = UdpSocket.open({ port: 0, address: '127.0.0.1' });
  let sinkDatagrams = 0;
  let sinkIcmp = 0;
  sink.start((slab, meta, count) => {
    for (let i = 0; i < count; i++) {
      sinkDatagrams++;
      const at = meta[4 * i]!;
      // template (20) + length (2) + frame: an IPv4 ICMP echo request to 10.99.1.2
      if (slab[at] === 0x54 && slab[at + 22 + 12] === 0x08 && slab[at + 22 + 14 + 9] === 1) sinkIcmp++;
    }
  });
  sleeveSock.start(() => {});
  let jsFrames = 0;
  tap.start((_slab, _frames, count) => void (jsFrames += count));
  const linked = tap.linkFastPath(sleeveSock.fastPort());
  const relinked = tap.linkFastPath(sleeveSock.fastPort());
  const mac48 = (b: Buffer): number => b.readUIntBE(0, 6);
  const installed = tap.addFlow(mac48(tapMac), mac48(FAKE_MAC), sleeveSock.fd, 0x7f000001, sink.localPort, egressTemplate(1, 1, 2), 1500, 60_000);
  // JavaScript timers while frames flow through the cache.
  let ticks = 0;
  let maxLate = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    if (ticks > 0) maxLate = Math.max(maxLate, now - last - 5);
    last = now;
    ticks++;
  }, 5);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const p = await run('ping', ['-c', '300', '-i', '0.002', '-W', '1', '-q', '10.99.1.2'], 10_000);
  const elapsed = performance.now() - t0;
  await waitFor(() => sinkIcmp >= 300, 2000);
  clearInterval(timer);
  const busy = process.cpuUsage(cpu0);
  // Idle afterwards: the wait blocks, it does not spin.
  const cpu1 = process.cpuUsage();
  await sleep(300);
  const idle = process.cpuUsage(cpu1);
  const res = {
    linked, relinked, installed, pingCode: p.code, elapsedMs: Math.round(elapsed), sinkIcmp, sinkDatagrams, jsFrames,
    flows: tap.flowStats(), ticks, maxLateMs: Math.round(maxLate * 10) / 10,
    busyCpuMs: Math.round((busy.user + busy.system) / 1000), idleCpuMs: Math.round((idle.user + idle.system) / 1000),
  };
  tap.close();
  sleeveSock.close();
  sink.close();
  return res;
}

/**
 * Egress flows to an IPv6 next hop (tap.cc Conn6): the cache sends them from a socket
 * connected to the hop (an ephemeral source port, not the sleeve socket's), retries a send
 * that only failed because an ICMPv6 error to an earlier datagram was left on that socket,
 * closes the socket when the flows are cleared, and with WEAVE_NO_CONNECTED6=1 sends from
 * the sleeve socket itself. The hop is a UDP socket on [::1]; the frames are ping's, out of
 * the TAP to a static neighbour.
 */
async function conn6Mode(): Promise<Record<string, unknown>> {
  const { UdpSocket } = await import('../../../router/overlay/udp.js');
  const { egressTemplate } = await import('../../../router/overlay/flow-cache.js');
  ip('link', 'set', 'lo', 'up');
  execFileSync('sysctl', ['-qw', 'net.ipv6.conf.lo.disable_ipv6=0']);
  const mac48 = (b: Buffer): number => b.readUIntBE(0, 6);
  const rig = (name: string, net: number) => {
    const tap = Tap.open(name, { vnetHdr: true });
    execFileSync('sysctl', ['-qw', `net.ipv6.conf.${name}.disable_ipv6=1`]);
    ip('addr', 'add', `10.99.${net}.1/24`, 'dev', name);
    ip('link', 'set', name, 'up');
    ip('neigh', 'replace', `10.99.${net}.2`, 'lladdr', '02:00:5e:99:00:02', 'dev', name);
    let jsFrames = 0;
    tap.start((_slab, _frames, count) => void (jsFrames += count));
    return { tap, mac: mac48(macOf(name)), js: () => jsFrames };
  };
  // The sleeve's kind of socket: dual-stack on [::].
  const sleeveSock = UdpSocket.open({ port: 0 });
  sleeveSock.start(() => {});
  const seen: Array<{ port: number; address: string }> = [];
  const openSink = async (port: number): Promise<dgram.Socket> => {
    const s = dgram.createSocket('udp6');
    s.on('message', (_m, r) => seen.push({ port: r.port, address: r.address }));
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind({ port, address: '::1', exclusive: true }, () => resolve());
    });
    return s;
  };
  const phase = async (net: number, count: number): Promise<Array<{ port: number; address: string }>> => {
    const from = seen.length;
    await run('ping', ['-c', String(count), '-i', '0.02', '-W', '1', '-q', `10.99.${net}.2`], 15_000);
    await sleep(200);
    return seen.slice(from);
  };
  const a = rig('tswc6a', 8);
  let sink = await openSink(0);
  const sinkPort = sink.address().port;
  const installed = a.tap.addFlow(a.mac, mac48(FAKE_MAC), sleeveSock.fd, '::1', sinkPort, egressTemplate(1, 1, 2), 1500, 60_000);
  const connected = await phase(8, 20);
  const afterConnected = a.tap.stats();
  // The hop goes away: every datagram now draws an ICMPv6 port unreachable, left on the
  // connected socket for its next send. Then the hop comes back on the same port.
  sink.close();
  const whileGone = await phase(8, 10);
  sink = await openSink(sinkPort);
  const back = await phase(8, 20);
  const afterBack = { stats: a.tap.stats(), flows: a.tap.flowStats(), js: a.js() };
  a.tap.clearFlows();
  const afterClear = a.tap.stats().conn6Sockets;
  // Off: the sleeve socket sends (read when a TAP opens).
  process.env.WEAVE_NO_CONNECTED6 = '1';
  const b = rig('tswc6b', 9);
  const offInstalled = b.tap.addFlow(b.mac, mac48(FAKE_MAC), sleeveSock.fd, '::1', sinkPort, egressTemplate(1, 1, 2), 1500, 60_000);
  const off = await phase(9, 10);
  const offStats = b.tap.stats();
  const res = {
    installed, offInstalled, sleevePort: sleeveSock.localPort,
    connected, whileGone: whileGone.length, back, afterConnected, afterBack, afterClear, off, offStats,
  };
  a.tap.close();
  b.tap.close();
  sleeveSock.close();
  sink.close();
  return res;
}

/**
 * The set-up the encrypted, bulk and packed flow-cache modes share: TAP `name` (vnet header,
 * no IPv6) at 10.99.`net`.1/24 (MTU `mtu` if given) with a static neighbour 10.99.`net`.2 at
 * FAKE_MAC, a sleeve socket and a sink on loopback, a Sealer/Opener pair on one random key,
 * the egress template of origin 0a:00:00:00:00:01 to 0b:00:00:00:00:02, and a 64 KiB buffer
 * for opened datagrams.
 */
async function flowRig(name: string, net: number, mtu?: number) {
  const tap = Tap.open(name, { vnetHdr: true });
  execFileSync('sysctl', ['-qw', `net.ipv6.conf.${name}.disable_ipv6=1`]);
  if (mtu !== undefined) ip('link', 'set', name, 'mtu', String(mtu));
  ip('addr', 'add', `10.99.${net}.1/24`, 'dev', name);
  ip('link', 'set', name, 'up');
  ip('link', 'set', 'lo', 'up');
  ip('neigh', 'replace', `10.99.${net}.2`, 'lladdr', '02:00:5e:99:00:02', 'dev', name);
  const { UdpSocket, COALESCE } = await import('../../../router/overlay/udp.js');
  const { egressTemplate } = await import('../../../router/overlay/flow-cache.js');
  const { Sealer, Opener, AEAD_OVERHEAD } = await import('../../../router/crypto/aead.js');
  const { randomBytes } = await import('node:crypto');
  const key = randomBytes(32);
  return {
    tap, tapMac: macOf(name), COALESCE, AEAD_OVERHEAD,
    sealer: new Sealer(key), opener: new Opener(key),
    tmpl: egressTemplate(0x0a0000000001, 0x0a0000000001, 0x0b0000000002),
    sleeveSock: UdpSocket.open({ port: 0, address: '127.0.0.1' }),
    sink: UdpSocket.open({ port: 0, address: '127.0.0.1' }),
    plain: Buffer.alloc(65536),
  };
}

/**
 * Egress flows of an encrypted next hop (flow-cache.h, sleeve-aead.h): ICMP frames out of
 * the TAP are sealed in C with a JS Sealer's state and key and sent to a sink, where a JS
 * Opener must open every one (C seal -> JS open) to exactly the template, length and frame;
 * C and JS share the counter. After a re-key the flow must not seal with the old key: its
 * frames reach JavaScript until the flow is installed again.
 */
async function sealedMode(): Promise<Record<string, unknown>> {
  const { tap, tapMac, AEAD_OVERHEAD, sealer, opener, tmpl, sleeveSock, sink, plain } = await flowRig('tswseal0', 2);
  let sinkDatagrams = 0, opened = 0, exact = 0, outerOk = 0, failed = 0;
  const seqs: string[] = [];
  sink.start((slab, meta, count) => {
    for (let i = 0; i < count; i++) {
      sinkDatagrams++;
      const at = meta[4 * i]!;
      const len = meta[4 * i + 1]!;
      // Outer header: magic, ENCRYPTED, the template's sender.
      if (slab[at] === 0x54 && slab[at + 1] === 5 && slab.subarray(at + 2, at + 8).equals(tmpl.subarray(2, 8))) outerOk++;
      seqs.push(`${slab[at + 8]}:${slab.readUInt32BE(at + 12)}`);
      const n = opener.open(slab, at, at + len, plain);
      if (n < 0) {
        failed++;
        continue;
      }
      opened++;
      const flen = plain.readUInt16BE(20);
      // template (20) + length (2) + an IPv4 ICMP echo request frame
      if (n === 22 + flen && plain.subarray(0, 20).equals(tmpl) && plain[22 + 12] === 0x08 && plain[22 + 14 + 9] === 1) exact++;
    }
  });
  sleeveSock.start(() => {});
  let jsFrames = 0;
  tap.start((_slab, _frames, count) => void (jsFrames += count));
  tap.linkFastPath(sleeveSock.fastPort());
  const mac48 = (b: Buffer): number => b.readUIntBE(0, 6);
  const install = (): boolean => tap.addFlow(mac48(tapMac), mac48(FAKE_MAC), sleeveSock.fd, 0x7f000001, sink.localPort, tmpl, 1500 - AEAD_OVERHEAD, 60_000, sealer);
  const installed = install();
  // A JS seal between C seals: the shared counter goes on from where C left it.
  const p1 = await run('ping', ['-c', '100', '-i', '0.005', '-W', '1', '-q', '10.99.2.2'], 10_000);
  await waitFor(() => sinkDatagrams >= 100, 2000);
  const seqAfterC = sealer.seq;
  const flows1 = tap.flowStats();
  // Re-key without telling the addon: nothing may be sealed with the old key.
  sealer.rekey();
  const jsBefore = jsFrames;
  const p2 = await run('ping', ['-c', '20', '-i', '0.02', '-W', '1', '-q', '10.99.2.2'], 10_000);
  await sleep(100);
  const flows2 = tap.flowStats();
  const jsAfterRekey = jsFrames - jsBefore;
  const reinstalled = install();
  const p3 = await run('ping', ['-c', '20', '-i', '0.02', '-W', '1', '-q', '10.99.2.2'], 10_000);
  await waitFor(() => tap.flowStats().crypto >= flows2.crypto + 20, 2000);
  await sleep(100);
  const res = {
    installed, reinstalled, pingCodes: [p1.code, p2.code, p3.code], sinkDatagrams, opened, exact, outerOk, failed, seqAfterC,
    seqsDistinct: new Set(seqs).size === seqs.length,
    flows1, flows2, flows3: tap.flowStats(), jsAfterRekey, sealerEpoch: sealer.epoch, openerEpoch: opener.epoch, openerStats: { ...opener.stats },
  };
  tap.close();
  sleeveSock.close();
  sink.close();
  return res;
}

/**
 * Egress flows taking whole wake-ups of bulk frames (tap.cc ForwardCached, kBigFrame):
 * 7,000-byte pings leave the TAP as five IPv4 fragments of >= 512 bytes, queued together,
 * so wake-ups bring several frames. With a flow installed, every one must leave from C:
 * first as plaintext FRAMES datagrams, then sealed with a JS Sealer's state (the sink opens
 * each with a JS Opener), in order, with distinct counters, equal-sized runs in UDP GSO
 * sends (port | COALESCE), and exactly template + length + frame inside.
 */
async function bulkMode(): Promise<Record<string, unknown>> {
  const { tap, tapMac, COALESCE, sealer, opener, tmpl, sleeveSock, sink, plain } = await flowRig('tswbulk0', 3);
  const r = { plainDatagrams: 0, plainExact: 0, sealedDatagrams: 0, opened: 0, exact: 0, failed: 0, outOfOrder: 0 };
  const seqs: string[] = [];
  let lastSeq = -1;
  /** template (20) + length (2) + an IPv4 frame of at least 512 bytes (a fragment of the echo request) */
  const frameOk = (b: Buffer, at: number, n: number): boolean => {
    const flen = b.readUInt16BE(at + 20);
    return n === 22 + flen && flen >= 512 && b.subarray(at, at + 20).equals(tmpl) && b.readUInt16BE(at + 22 + 12) === 0x0800 && b[at + 22 + 14 + 9] === 1;
  };
  sink.start((slab, meta, count) => {
    for (let i = 0; i < count; i++) {
      const at = meta[4 * i]!;
      const len = meta[4 * i + 1]!;
      if (slab[at + 1] === 1) {
        r.plainDatagrams++;
        if (frameOk(slab, at, len)) r.plainExact++;
        continue;
      }
      r.sealedDatagrams++;
      seqs.push(`${slab[at + 8]}:${slab.readUInt32BE(at + 12)}`);
      const seq = slab.readUInt32BE(at + 12);
      if (seq <= lastSeq) r.outOfOrder++;
      lastSeq = seq;
      const n = opener.open(slab, at, at + len, plain);
      if (n < 0) {
        r.failed++;
        continue;
      }
      r.opened++;
      if (frameOk(plain, 0, n)) r.exact++;
    }
  });
  sleeveSock.start(() => {});
  let jsFrames = 0;
  let jsBatches = 0;
  tap.start((_slab, _frames, count) => {
    jsFrames += count;
    jsBatches++;
  });
  const mac48 = (b: Buffer): number => b.readUIntBE(0, 6);
  const install = (seal: boolean): boolean =>
    tap.addFlow(mac48(tapMac), mac48(FAKE_MAC), sleeveSock.fd, 0x7f000001, sink.localPort | COALESCE, tmpl, 1514, 60_000, seal ? sealer : undefined);
  const plainInstalled = install(false);
  const p1 = await run('ping', ['-c', '40', '-i', '0.01', '-W', '1', '-q', '-s', '7000', '10.99.3.2'], 15_000);
  await waitFor(() => r.plainDatagrams >= 200, 3000);
  const flowsPlain = tap.flowStats();
  const jsPlain = jsFrames;
  tap.clearFlows();
  const sealedInstalled = install(true);
  const p2 = await run('ping', ['-c', '40', '-i', '0.01', '-W', '1', '-q', '-s', '7000', '10.99.3.2'], 15_000);
  await waitFor(() => r.sealedDatagrams >= 200, 3000);
  await sleep(100);
  const flows = tap.flowStats();
  const jsSealed = jsFrames;
  // Small tails (tap.cc, issue #21): 40 pings of 5,960 bytes leave as four 1,514-byte
  // fragments and an 82-byte last one each; a wake-up holding a fragment run with its
  // small tail must still leave from C (the rule before sent it to JavaScript whole).
  tap.clearFlows();
  const tailsInstalled = install(false);
  const d0 = r.plainDatagrams;
  const exact0 = r.plainExact;
  const p3 = await run('ping', ['-c', '40', '-i', '0.01', '-W', '1', '-q', '-s', '5960', '10.99.3.2'], 15_000);
  await waitFor(() => r.plainDatagrams - d0 >= 200, 3000);
  await sleep(100);
  const f3 = tap.flowStats();
  const tails = { installed: tailsInstalled, code: p3.code, frames: f3.frames - flows.frames, batches: f3.batches - flows.batches, js: jsFrames - jsSealed, datagrams: r.plainDatagrams - d0 };
  const res = {
    plainInstalled, sealedInstalled, pingCodes: [p1.code, p2.code], ...r, plainDatagrams: d0, plainExact: exact0, seqAfterC: sealer.seq,
    seqsDistinct: new Set(seqs).size === seqs.length, flowsPlain, flows, jsPlain, jsFrames: jsSealed, jsBatches,
    egressGso: tap.stats().egressGso, openerStats: { ...opener.stats }, tails,
  };
  tap.close();
  sleeveSock.close();
  sink.close();
  return res;
}

/**
 * Small frames packed in C (tap.cc ForwardCached, issue #19): with the TAP's MTU at 300,
 * 1,000-byte pings leave as four IPv4 fragments of 314/314/314/202 bytes (all < 512),
 * queued together, so wake-ups bring several small frames. With a flow installed every
 * one must leave from C, several to a FRAMES datagram: plaintext (each record exactly the
 * template's origin and destination, the length and the fragment), then sealed (opened by
 * a JS Opener, in order, distinct counters), then plaintext with a path of 600 bytes (no
 * datagram may exceed header + record + 600).
 */
async function packedMode(): Promise<Record<string, unknown>> {
  const { tap, tapMac, sealer, opener, tmpl, sleeveSock, sink, plain } = await flowRig('tswpack0', 4, 300);
  type Phase = { datagrams: number; multi: number; records: number; exact: number; bad: number; maxLen: number; failed: number; outOfOrder: number; seqs: Set<number>; lastSeq: number };
  const phase = (): Phase => ({ datagrams: 0, multi: 0, records: 0, exact: 0, bad: 0, maxLen: 0, failed: 0, outOfOrder: 0, seqs: new Set(), lastSeq: -1 });
  let cur = phase();
  /** The records of a FRAMES datagram in b[0, n): each the template's peers, a length, an IPv4 ICMP fragment of at most 314 bytes. */
  const records = (p: Phase, b: Buffer, n: number): void => {
    if (n < 8 || b[0] !== 0x54 || b[1] !== 1 || !b.subarray(0, 8).equals(tmpl.subarray(0, 8))) {
      p.bad++;
      return;
    }
    let at = 8;
    let k = 0;
    while (at < n) {
      if (n - at < 14) {
        p.bad++;
        return;
      }
      const flen = b.readUInt16BE(at + 12);
      const f = at + 14;
      if (f + flen > n || !b.subarray(at, at + 12).equals(tmpl.subarray(8, 20))) {
        p.bad++;
        return;
      }
      p.records++;
      k++;
      if (flen >= 34 && flen <= 314 && b.readUInt16BE(f + 12) === 0x0800 && b[f + 14 + 9] === 1) p.exact++;
      at = f + flen;
    }
    if (k > 1) p.multi++;
  };
  sink.start((slab, meta, count) => {
    for (let i = 0; i < count; i++) {
      const at = meta[4 * i]!;
      const len = meta[4 * i + 1]!;
      cur.datagrams++;
      cur.maxLen = Math.max(cur.maxLen, len);
      if (slab[at + 1] === 1) {
        records(cur, slab.subarray(at, at + len), len);
        continue;
      }
      const seq = slab.readUInt32BE(at + 12);
      if (seq <= cur.lastSeq) cur.outOfOrder++;
      cur.lastSeq = seq;
      cur.seqs.add(seq);
      const n = opener.open(slab, at, at + len, plain);
      if (n < 0) {
        cur.failed++;
        continue;
      }
      records(cur, plain, n);
    }
  });
  sleeveSock.start(() => {});
  let jsFrames = 0;
  tap.start((_slab, _frames, count) => void (jsFrames += count));
  const mac48 = (b: Buffer): number => b.readUIntBE(0, 6);
  const install = (maxFrame: number, seal: boolean): boolean =>
    tap.addFlow(mac48(tapMac), mac48(FAKE_MAC), sleeveSock.fd, 0x7f000001, sink.localPort, tmpl, maxFrame, 60_000, seal ? sealer : undefined);
  const out: Record<string, unknown> = {};
  for (const [label, maxFrame, seal] of [['plain', 1514, false], ['sealed', 1514, true], ['narrow', 600, false]] as const) {
    tap.clearFlows();
    cur = phase();
    const js0 = jsFrames;
    const f0 = tap.flowStats();
    const packed0 = tap.stats().egressPacked;
    const installed = install(maxFrame, seal);
    const p = await run('ping', ['-c', '40', '-i', '0.01', '-W', '1', '-q', '-s', '1000', '10.99.4.2'], 15_000);
    await waitFor(() => cur.records + cur.failed >= 160, 3000);
    await sleep(100);
    const f1 = tap.flowStats();
    const { seqs, lastSeq: _l, ...rest } = cur;
    out[label] = {
      installed, code: p.code, frames: f1.frames - f0.frames, crypto: f1.crypto - f0.crypto, batches: f1.batches - f0.batches,
      js: jsFrames - js0, packed: tap.stats().egressPacked - packed0, ...rest, seqsDistinct: seqs.size === cur.datagrams - rest.bad,
    };
  }
  out.seqAfterC = sealer.seq;
  out.openerStats = { ...opener.stats };
  tap.close();
  sleeveSock.close();
  sink.close();
  return out;
}

async function main(): Promise<void> {
  switch (mode) {
    case 'traffic':
      emit({ ok: true, ...(await traffic()) });
      return;
    case 'errors':
      emit({ ok: true, ...(await errorsMode()) });
      return;
    case 'nest':
      emit({ ok: true, ...(await nestMode()) });
      return;
    case 'conn6':
      emit({ ok: true, ...(await conn6Mode()) });
      break;
    case 'sealed':
      emit({ ok: true, ...(await sealedMode()) });
      return;
    case 'bulk':
      emit({ ok: true, ...(await bulkMode()) });
      return;
    case 'packed':
      emit({ ok: true, ...(await packedMode()) });
      return;
    case 'df':
      emit({ ok: true, ...(await dfMode()) });
      return;
    case 'truncate':
      emit({ ok: true, ...(await truncateMode()) });
      return;
    case 'close-in-batch':
      emit({ ok: true, ...(await closeInBatch()) });
      return;
    case 'throw':
      throwMode();
      return;
    case 'no-onerror':
      noOnErrorMode();
      return;
    case 'open-error':
      // Used under a mount namespace without /dev/net/tun, or without CAP_NET_ADMIN.
      emit({ ok: true, err: errInfo(() => Tap.open('tswtap6')) });
      return;
    case 'alive': {
      // A started TAP keeps the loop alive: the unref'd timer still fires.
      const tap = Tap.open('tswtap7');
      tap.start(() => {});
      setTimeout(() => {
        process.stdout.write('alive\n');
        tap.close();
      }, 200).unref();
      return;
    }
    case 'unref': {
      // An unref'd TAP does not: the process exits before the timer.
      const tap = Tap.open('tswtap8');
      tap.start(() => {});
      tap.unref();
      setTimeout(() => process.stdout.write('alive\n'), 500).unref();
      process.stdout.write('started\n');
      return;
    }
    case 'close-exit': {
      // Open, start, close: nothing may keep the process alive afterwards.
      const tap = Tap.open('tswtap9');
      tap.start(() => {});
      tap.close();
      tap.close();
      process.stdout.write('closed\n');
      return;
    }
    case 'exit-while-started': {
      const tap = Tap.open('tswtap10');
      tap.start(() => {});
      setImmediate(() => {
        process.stdout.write('exiting\n');
        process.exit(0);
      });
      return;
    }
    default:
      emit({ ok: false, error: `unknown mode '${mode}'` });
      process.exitCode = 2;
  }
}

main().catch((e: unknown) => {
  emit({ ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  process.exitCode = 1;
});
