/**
 * The sleeve: the userspace data path over UDP (Weave's name for it).
 *
 * One UDP socket (port 6783 by default) carries frames to and from every peer we have
 * a control connection with. Per peer we keep a {@link SleevePeer}: its underlay
 * address, whether UDP works both ways (heartbeats), the path MTU found by probing, and
 * a packer that fills datagrams with as many frames as fit. The datagram format is in
 * sleeve-codec.ts; sealing (encryption) is optional per peer.
 *
 * Timers: one tick (250 ms) drives heartbeats, PMTU probes and timeouts for all peers;
 * no per-packet timers or promises.
 */
import dgram from 'node:dgram';
import {
  DatagramType, FramePacker, HEADER_BYTES, encodeHeartbeat, encodePmtuAck, encodePmtuProbe,
  parseHeader, parseHeartbeat, parsePmtuAck, parsePmtuProbe, FRAME_HEADER_BYTES, SLEEVE_MAGIC,
} from './sleeve-codec.js';
import { numToPeerName } from './peer-name.js';
import { setDontFragment, udpSocketFd } from './tap.js';
import type { Sealer, Opener } from './crypto/aead.js';
import { SEQ_BYTES, TAG_BYTES, openErrorKind } from './crypto/aead.js';

/** Bytes the outer IPv4 + UDP headers take. */
export const IP_UDP_OVERHEAD = 28;
/** Extra bytes an encrypted datagram takes: outer header, sequence number, tag. */
export const CRYPTO_OVERHEAD = HEADER_BYTES + SEQ_BYTES + TAG_BYTES;
/** Smallest datagram we assume always passes (576-byte IPv4 minimum minus headers). */
export const MIN_DATAGRAM = 576 - IP_UDP_OVERHEAD;

const TICK_MS = 250;
const HEARTBEAT_FAST_MS = 500;
const HEARTBEAT_MS = 3_000;
const UDP_TIMEOUT_MS = 20_000;
const PROBE_WAIT_MS = 400;
const PROBE_TRIES = 3;
const PMTU_VERIFY_MS = 15_000;
const PMTU_RAISE_MS = 60_000;

/** What the sleeve asks of the router. */
export interface SleeveHost {
  readonly selfNum: number;
  /** A FRAMES datagram (already opened if sealed) arrived from `peer`; body is buf[start, end). */
  onFrames(peer: SleevePeer, buf: Buffer, start: number, end: number): void;
  /** The first UDP heartbeat from this peer arrived (tell it over TCP). */
  onHeardFrom(peer: SleevePeer): void;
  /** Nothing has come over UDP for too long. */
  onUdpTimeout(peer: SleevePeer, reason: string): void;
  /** The usable frame size on this peer's path changed. */
  onPmtuChanged(peer: SleevePeer): void;
  drop(reason: string, n?: number): void;
  log(line: string): void;
}

interface PmtuSearch {
  lo: number; // largest size known to pass
  hi: number; // largest size that may pass
  size: number; // size being probed
  id: number;
  tries: number;
  sentAt: number;
}

/** Sleeve state for one remote peer. */
export class SleevePeer {
  /** We have received a UDP heartbeat from it. */
  heard = false;
  /** It told us (over TCP) that it received ours. */
  confirmed = false;
  lastRecv = 0;
  lastHeartbeat = 0;
  hbCounter = 0;
  /** Largest UDP payload known to reach the peer. */
  pmtuDatagram: number;
  /** Largest Ethernet frame (header included) that fits one datagram to this peer. */
  maxFrame: number;
  pmtuVerified = false;
  lastVerify = 0;
  lastRaise = 0;
  search: PmtuSearch | undefined;
  sealer: Sealer | undefined;
  opener: Opener | undefined;
  /** Datagram being filled, and the packer writing into it. */
  buf: Buffer | undefined;
  readonly packer: FramePacker;
  dirty = false;

  constructor(
    readonly name: string,
    readonly num: number,
    readonly address: string,
    readonly port: number,
    readonly wantDatagram: number,
    readonly encrypted: boolean,
  ) {
    this.pmtuDatagram = wantDatagram;
    this.maxFrame = frameRoom(wantDatagram, encrypted);
    this.packer = new FramePacker(65535);
  }

  get established(): boolean {
    return this.heard && this.confirmed;
  }
}

/** Largest Ethernet frame that fits a datagram of `datagram` bytes of UDP payload. */
export function frameRoom(datagram: number, encrypted: boolean): number {
  return datagram - HEADER_BYTES - FRAME_HEADER_BYTES - (encrypted ? CRYPTO_OVERHEAD : 0);
}

/** UDP payload size needed to carry frames of an overlay MTU (Ethernet payload bytes). */
export function datagramFor(mtu: number, encrypted: boolean): number {
  return mtu + 14 + HEADER_BYTES + FRAME_HEADER_BYTES + (encrypted ? CRYPTO_OVERHEAD : 0);
}

export class Sleeve {
  readonly socket: dgram.Socket;
  private readonly peers = new Map<number, SleevePeer>();
  private readonly dirtyPeers: SleevePeer[] = [];
  private timer: NodeJS.Timeout | undefined;
  private probeId = 1;
  private readonly scratch = Buffer.allocUnsafe(65536);
  /** Counters for `weave report` and metrics. */
  readonly stats = { datagramsIn: 0, datagramsOut: 0, framesOut: 0, bytesOut: 0, sendErrors: 0 };

  constructor(private readonly host: SleeveHost, readonly port: number) {
    this.socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    this.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo.address, rinfo.port));
    this.socket.on('error', (err) => this.host.log(`sleeve: UDP socket error: ${err.message}`));
  }

  /** Bind the UDP port; rejects with a one-line error if it is taken. */
  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onErr = (err: NodeJS.ErrnoException) => reject(new Error(
        err.code === 'EADDRINUSE' ? `UDP port ${this.port} is already in use: is another router running in this network namespace?` : `cannot bind UDP port ${this.port}: ${err.message}`));
      this.socket.once('error', onErr);
      this.socket.bind(this.port, () => {
        this.socket.off('error', onErr);
        try {
          this.socket.setRecvBufferSize(4 << 20);
          this.socket.setSendBufferSize(4 << 20);
        } catch { /* best effort: the kernel caps it at rmem_max */ }
        // DF on every datagram and no local fragmentation: PMTU discovery is ours.
        const fd = udpSocketFd(this.socket);
        if (fd !== undefined) {
          try {
            setDontFragment(fd, true);
          } catch (err) {
            this.host.log(`sleeve: cannot set DF on the UDP socket: ${(err as Error).message}`);
          }
        }
        this.timer = setInterval(() => this.tick(Date.now()), TICK_MS);
        this.timer.unref();
        resolve();
      });
    });
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    try {
      this.socket.close();
    } catch { /* already closed */ }
  }

  addPeer(p: SleevePeer): void {
    this.peers.set(p.num, p);
    p.lastRecv = Date.now();
    this.sendHeartbeat(p, Date.now());
  }

  removePeer(p: SleevePeer): void {
    if (this.peers.get(p.num) === p) this.peers.delete(p.num);
  }

  getPeer(num: number): SleevePeer | undefined {
    return this.peers.get(num);
  }

  /**
   * Queue one frame (buf[start, end)) for `peer`, tagged with its origin and destination
   * peer numbers. The caller has checked that it fits `peer.maxFrame`. Sent on flush().
   */
  enqueue(peer: SleevePeer, src: number, dst: number, buf: Buffer, start: number, end: number): void {
    const packer = peer.packer;
    if (peer.buf === undefined) this.begin(peer);
    if (!packer.add(src, dst, buf, start, end)) {
      this.flushPeer(peer);
      this.begin(peer);
      if (!packer.add(src, dst, buf, start, end)) {
        this.host.drop('mtu');
        return;
      }
    }
    this.stats.framesOut++;
    this.stats.bytesOut += end - start;
    if (!peer.dirty) {
      peer.dirty = true;
      this.dirtyPeers.push(peer);
    }
  }

  /** Send every partly filled datagram (end of a batch). */
  flush(): void {
    const list = this.dirtyPeers;
    for (let i = 0; i < list.length; i++) {
      const p = list[i];
      p.dirty = false;
      this.flushPeer(p);
    }
    list.length = 0;
  }

  private begin(peer: SleevePeer): void {
    // allocUnsafe draws from Node's pool for small sizes; the buffer is owned by the
    // pending send, so it is never reused.
    const size = peer.encrypted ? peer.pmtuDatagram - CRYPTO_OVERHEAD : peer.pmtuDatagram;
    peer.buf = Buffer.allocUnsafe(size);
    peer.packer.begin(peer.buf, size, this.host.selfNum);
  }

  private flushPeer(peer: SleevePeer): void {
    const buf = peer.buf;
    if (buf === undefined) return;
    peer.buf = undefined;
    const len = peer.packer.length;
    if (peer.packer.count === 0) return;
    this.sendDatagram(peer, buf, len);
  }

  private sendDatagram(peer: SleevePeer, buf: Buffer, len: number): void {
    let out = buf;
    let outLen = len;
    if (peer.sealer) {
      out = Buffer.allocUnsafe(len + CRYPTO_OVERHEAD);
      writeHeader(out, DatagramType.ENCRYPTED, this.host.selfNum);
      outLen = peer.sealer.seal(out.subarray(0, HEADER_BYTES), buf, 0, len, out);
    }
    this.stats.datagramsOut++;
    this.socket.send(out, 0, outLen, peer.port, peer.address, this.onSent);
  }

  private readonly onSent = (err: Error | null): void => {
    if (err) {
      this.stats.sendErrors++;
      this.host.drop('send');
    }
  };

  private sendControl(peer: SleevePeer, datagram: Buffer): void {
    this.sendDatagram(peer, datagram, datagram.length);
  }

  private sendHeartbeat(p: SleevePeer, now: number): void {
    p.lastHeartbeat = now;
    this.sendControl(p, encodeHeartbeat(this.host.selfNum, p.num, p.hbCounter++ >>> 0));
  }

  private onMessage(msg: Buffer, address: string, port: number): void {
    this.stats.datagramsIn++;
    const h = parseHeader(msg);
    if (h === undefined) return this.host.drop('malformed');
    const peer = this.peers.get(h.sender);
    if (peer === undefined || peer.address !== address) return this.host.drop('unknown-peer');
    let buf = msg;
    let end = msg.length;
    let type = h.type;
    if (peer.opener) {
      // With a session key, only sealed datagrams are accepted: a forged plaintext
      // datagram from the right address must not get in.
      if (type !== DatagramType.ENCRYPTED) return this.host.drop('auth');
      const n = peer.opener.open(msg, 0, msg.length, this.scratch);
      if (n < 0) return this.host.drop(openErrorKind(n) ?? 'auth');
      buf = this.scratch;
      end = n;
      const inner = parseHeader(buf.subarray(0, end));
      if (inner === undefined || inner.sender !== h.sender || inner.type === DatagramType.ENCRYPTED) return this.host.drop('malformed');
      type = inner.type;
    } else if (type === DatagramType.ENCRYPTED) {
      return this.host.drop('auth');
    }
    peer.lastRecv = Date.now();
    void port;
    switch (type) {
      case DatagramType.FRAMES:
        this.host.onFrames(peer, buf, HEADER_BYTES, end);
        return;
      case DatagramType.HEARTBEAT: {
        const hb = parseHeartbeat(buf.subarray(0, end));
        if (hb === undefined || hb.receiver !== this.host.selfNum) return this.host.drop('malformed');
        if (!peer.heard) {
          peer.heard = true;
          this.host.onHeardFrom(peer);
        }
        return;
      }
      case DatagramType.PMTU_PROBE: {
        const pr = parsePmtuProbe(buf.subarray(0, end));
        if (pr === undefined) return this.host.drop('malformed');
        this.sendControl(peer, encodePmtuAck(this.host.selfNum, pr.id, pr.size));
        return;
      }
      case DatagramType.PMTU_ACK: {
        const ack = parsePmtuAck(buf.subarray(0, end));
        if (ack === undefined) return this.host.drop('malformed');
        this.onPmtuAck(peer, ack.id, ack.size);
        return;
      }
      default:
        this.host.drop('malformed');
    }
  }

  /** Start (or restart) PMTU discovery towards a peer, from its wanted size down. */
  startPmtuSearch(p: SleevePeer, hi = p.wantDatagram): void {
    const lo = Math.min(MIN_DATAGRAM, hi);
    p.search = { lo, hi, size: hi, id: 0, tries: 0, sentAt: 0 };
    this.probe(p, Date.now());
  }

  private probe(p: SleevePeer, now: number): void {
    const s = p.search!;
    s.id = this.probeId++ >>> 0;
    s.sentAt = now;
    s.tries++;
    // The probe's datagram is the size of a full data datagram, sealed or not.
    const inner = p.encrypted ? s.size - CRYPTO_OVERHEAD : s.size;
    this.sendControl(p, encodePmtuProbe(this.host.selfNum, s.id, inner));
  }

  private onPmtuAck(p: SleevePeer, id: number, _size: number): void {
    const s = p.search;
    if (s === undefined || s.id !== id) return;
    s.lo = s.size;
    this.stepSearch(p, Date.now());
  }

  private probeFailed(p: SleevePeer, now: number): void {
    const s = p.search!;
    s.hi = s.size - 1;
    this.stepSearch(p, now);
  }

  private stepSearch(p: SleevePeer, now: number): void {
    const s = p.search!;
    if (s.lo >= s.hi) {
      p.search = undefined;
      p.pmtuVerified = true;
      p.lastVerify = now;
      p.lastRaise = now;
      if (p.pmtuDatagram !== s.lo) {
        p.pmtuDatagram = s.lo;
        p.maxFrame = frameRoom(s.lo, p.encrypted);
        this.host.log(`sleeve: PMTU to ${numToPeerName(p.num)} is ${s.lo} bytes (frames up to ${p.maxFrame} bytes)`);
        this.host.onPmtuChanged(p);
      }
      return;
    }
    s.size = (s.lo + s.hi + 1) >>> 1;
    s.tries = 0;
    this.probe(p, now);
  }

  private tick(now: number): void {
    for (const p of this.peers.values()) {
      const interval = p.established ? HEARTBEAT_MS : HEARTBEAT_FAST_MS;
      if (now - p.lastHeartbeat >= interval) this.sendHeartbeat(p, now);
      if (now - p.lastRecv > UDP_TIMEOUT_MS) {
        p.lastRecv = now; // report once per timeout period
        this.host.onUdpTimeout(p, `no UDP traffic from ${numToPeerName(p.num)} for ${UDP_TIMEOUT_MS / 1000} s`);
        continue;
      }
      if (!p.established) continue;
      const s = p.search;
      if (s !== undefined) {
        if (now - s.sentAt >= PROBE_WAIT_MS) {
          if (s.tries < PROBE_TRIES) this.probe(p, now);
          else this.probeFailed(p, now);
        }
      } else if (!p.pmtuVerified) {
        this.startPmtuSearch(p);
      } else if (now - p.lastVerify >= PMTU_VERIFY_MS) {
        // Re-check the current size; if it no longer passes, search below it. Every
        // minute, also look again upwards in case the path grew back.
        p.lastVerify = now;
        if (p.pmtuDatagram < p.wantDatagram && now - p.lastRaise >= PMTU_RAISE_MS) {
          p.lastRaise = now;
          p.search = { lo: p.pmtuDatagram, hi: p.wantDatagram, size: p.wantDatagram, id: 0, tries: 0, sentAt: 0 };
        } else {
          p.search = { lo: Math.min(MIN_DATAGRAM, p.pmtuDatagram), hi: p.pmtuDatagram, size: p.pmtuDatagram, id: 0, tries: 0, sentAt: 0 };
        }
        this.probe(p, now);
      }
    }
  }
}

function writeHeader(buf: Buffer, type: number, sender: number): void {
  buf[0] = SLEEVE_MAGIC;
  buf[1] = type;
  buf.writeUIntBE(sender, 2, 6);
}
