/**
 * One control connection (TCP 6783) between two routers: its whole life.
 *
 *   hello (plaintext, version range + "has a password")
 *   → Noise handshake when a password is set (router/crypto/noise.ts)
 *   → intro (peer name, nickname, UID, ports, IPAM range)
 *   → the router's checks (self-connection, duplicates, limits) → ready
 *   → gossip, heartbeats, sleeve confirmation → ... → closed (with a reason).
 *
 * Modelled on weaveworks/mesh's connection.go, without its locks: everything runs on the
 * event loop, and the router is told about each transition through ConnectionHost.
 */
import { canonicalIp, joinHostPort } from './address.js';
import { monoNow } from './mono-clock.js';
import type net from 'node:net';
import {
  FrameDecoder, MAX_FRAME_BYTES, PRE_AUTH_MAX_FRAME_BYTES, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION, ProtocolError,
  decodeBody, encodeFrame, type ControlMessage,
} from './protocol.js';
import type * as NoiseModule from '../crypto/noise.js';
import type { SecureChannel } from '../crypto/noise.js';

let noiseModule: typeof NoiseModule | undefined;
/**
 * Loads the Noise channel (libp2p; ~25 MiB of RSS once imported). Only routers with a
 * password need it: the router loads it at start when one is set (issue #20: idle RSS),
 * and a handshake that finds it missing loads it first with the socket paused.
 */
export async function loadNoise(): Promise<typeof NoiseModule> {
  return (noiseModule ??= await import('../crypto/noise.js'));
}
import { handshakePrologue } from '../crypto/keys.js';

const HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Control-connection liveness. A ready connection sends a heartbeat when it has sent
 * nothing else for HEARTBEAT_MS, and is closed when nothing at all arrived for
 * HEARTBEAT_TIMEOUT_MS (three missed heartbeats). The router checks every connection
 * from one job on its shared beat every HEARTBEAT_CHECK_MS (`tick`), so a silent peer
 * (no FIN/RST) is noticed here 60–70 s after its last message; a peer that closes or
 * resets is noticed at once. A peer whose host died or whose path is cut is noticed
 * sooner by the sleeve, which closes the connection after 35 s without UDP from it
 * (overlay/sleeve.ts): the TCP heartbeat only has to catch a connection that died
 * while UDP still flows, so it can be slow (weaveworks/mesh sends one every 30 s and
 * allows twice that). [scale, issue #20] Every 5 s from a timer per connection at
 * first, then every 10 s with a 30 s timeout: each heartbeat received is a wake-up,
 * 29 per interval in a 30-peer mesh. 20 s stays inside the 30 s timeout of routers
 * from before this change, so a mixed mesh keeps its connections.
 */
export const HEARTBEAT_MS = 20_000;
export const HEARTBEAT_TIMEOUT_MS = 60_000;
export const HEARTBEAT_CHECK_MS = 10_000;
const EMPTY = Buffer.alloc(0);
const MAX_HELLO_BYTES = PRE_AUTH_MAX_FRAME_BYTES;

export type ConnectionState = 'handshake' | 'ready' | 'closed';

export interface RemoteIdentity {
  name: string;
  nickname: string;
  uid: number;
  udpPort: number;
  version: number;
  range: string;
  /** The peer's --ipalloc-range6 prefix; undefined when it sent none. */
  range6?: string;
}

/** What a connection needs from its router. */
export interface ConnectionHost {
  readonly selfName: string;
  readonly nickname: string;
  readonly uid: number;
  readonly udpPort: number;
  readonly listenPort: number;
  /** Password-derived key (present iff a password is set). */
  readonly passwordKey: Buffer | undefined;
  readonly ipamRange: string;
  /** --ipalloc-range6 prefix (issue #21), sent in the intro when set. */
  readonly ipamRange6?: string;
  /** Decide on a connection whose intro arrived: undefined to accept, or the refusal reason. */
  admit(conn: Connection): string | undefined;
  onReady(conn: Connection): void;
  onMessage(conn: Connection, msg: ControlMessage): void;
  onClosed(conn: Connection, reason: string): void;
  log(line: string): void;
}

interface Transport {
  write(buf: Buffer): void;
  close(): void;
}

export class Connection {
  state: ConnectionState = 'handshake';
  remote: RemoteIdentity | undefined;
  version = 0;
  encrypted = false;
  /** Why it closed, once closed. */
  closeReason = '';
  /** When the last message of any kind arrived (ms). */
  private lastRecv = monoNow();
  /** When we last sent a message (ms): a heartbeat is needed only after HEARTBEAT_MS of silence. */
  private lastSend = 0;
  /** The socket is corked until the next tick (see `send`). */
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };
  private transport: Transport | undefined;
  /** Frames are ≤ 4 KiB until the connection is ready (pre-authentication limit). */
  private decoder = new FrameDecoder(PRE_AUTH_MAX_FRAME_BYTES);
  private helloBuf: Buffer | undefined = Buffer.alloc(0);
  private handshakeTimer: NodeJS.Timeout | undefined;
  readonly remoteIp: string;
  readonly remotePort: number;

  /**
   * @param socket connected TCP socket
   * @param outbound true if we dialled
   * @param target the connection maker's target address ("host:port") for outbound ones
   */
  constructor(private readonly host: ConnectionHost, readonly socket: net.Socket, readonly outbound: boolean, readonly target?: string) {
    // Canonical text: an IPv4-mapped address (dual-stack listener) is plain IPv4.
    const ra = socket.remoteAddress ?? '';
    this.remoteIp = canonicalIp(ra) ?? ra;
    this.remotePort = socket.remotePort ?? 0;
  }

  /** "ip:port" ("[v6]:port") of the remote side as shown in status (the listen port once known). */
  get address(): string {
    return joinHostPort(this.remoteIp, this.remote ? this.remoteListenPort : this.remotePort);
  }

  remoteListenPort = 0;

  start(): void {
    const s = this.socket;
    s.setNoDelay(true);
    s.setKeepAlive(true, 10_000);
    this.handshakeTimer = setTimeout(() => this.close(`handshake did not complete within ${HANDSHAKE_TIMEOUT_MS / 1000} s`), HANDSHAKE_TIMEOUT_MS);
    s.on('error', (err) => this.close(`connection error: ${err.message}`));
    s.on('close', () => this.close('connection closed by peer'));
    s.on('data', this.onHelloData);
    s.write(encodeFrame({ t: 'hello', proto: 'tsweave', minVersion: PROTOCOL_MIN_VERSION, maxVersion: PROTOCOL_MAX_VERSION, encrypted: this.host.passwordKey !== undefined }));
  }

  /** Read exactly the first frame (hello) by hand, so bytes after it can go to Noise. */
  private readonly onHelloData = (chunk: Buffer): void => {
    if (this.helloBuf === undefined) return;
    const buf = Buffer.concat([this.helloBuf, chunk]);
    if (buf.length < 4) {
      this.helloBuf = buf;
      return;
    }
    const len = buf.readUInt32BE(0);
    if (len > MAX_HELLO_BYTES) return this.close('peer did not speak the tsweave protocol (bad hello)');
    if (buf.length < 4 + len) {
      this.helloBuf = buf;
      return;
    }
    this.helloBuf = undefined;
    this.socket.off('data', this.onHelloData);
    let hello: ControlMessage;
    try {
      hello = decodeBody(buf.subarray(4, 4 + len));
    } catch (err) {
      return this.close(`peer did not speak the tsweave protocol: ${(err as Error).message}`);
    }
    if (hello.t !== 'hello' || hello.proto !== 'tsweave') return this.close('peer did not speak the tsweave protocol (no hello)');
    const lo = Math.max(PROTOCOL_MIN_VERSION, hello.minVersion);
    const hi = Math.min(PROTOCOL_MAX_VERSION, hello.maxVersion);
    if (lo > hi) return this.close(`no common protocol version: ours ${PROTOCOL_MIN_VERSION}..${PROTOCOL_MAX_VERSION}, theirs ${hello.minVersion}..${hello.maxVersion}`);
    this.version = hi;
    const ours = this.host.passwordKey !== undefined;
    if (hello.encrypted !== ours) {
      return this.close(ours ? 'password mismatch: the peer has no password set, we do' : 'password mismatch: the peer has a password set, we do not');
    }
    const rest = buf.subarray(4 + len);
    if (!ours) {
      this.encrypted = false;
      this.transport = { write: (b) => this.socket.write(b), close: () => this.socket.destroy() };
      this.socket.on('data', this.onData);
      this.sendIntro();
      if (rest.length) this.onData(rest);
      return;
    }
    if (noiseModule === undefined) {
      this.socket.pause();
      loadNoise().then(() => {
        if (this.state === 'closed') return;
        this.secure(noiseModule!, rest);
        this.socket.resume();
      }, (err: Error) => this.close(`encrypted handshake failed: ${err.message}`, false));
      return;
    }
    this.secure(noiseModule, rest);
  };

  private secure(m: typeof NoiseModule, rest: Buffer): void {
    const { secureSocket, HandshakeError } = m;
    secureSocket(this.socket, { initiator: this.outbound, prologue: handshakePrologue(this.host.passwordKey!), initialData: rest, timeoutMs: HANDSHAKE_TIMEOUT_MS })
      .then((ch: SecureChannel) => {
        if (this.state === 'closed') return ch.close();
        this.encrypted = true;
        this.transport = { write: (b) => ch.write(b), close: () => ch.close() };
        ch.onData(this.onData);
        ch.onClose((err) => this.close(err ? `connection error: ${err.message}` : 'connection closed by peer'));
        this.sendIntro();
      })
      .catch((err: Error) => this.close(err instanceof HandshakeError && err.kind === 'password-mismatch' ? 'password mismatch (or a different --ipalloc-range or WEAVE_NETWORK_NAME)' : `encrypted handshake failed: ${err.message}`, false));
  }

  private sendIntro(): void {
    this.send({
      t: 'intro', version: this.version, name: this.host.selfName, nickname: this.host.nickname,
      uid: this.host.uid, udpPort: this.host.udpPort, range: this.host.ipamRange, listenPort: this.host.listenPort,
      ...(this.host.ipamRange6 ? { range6: this.host.ipamRange6 } : {}),
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.state === 'closed') return;
    this.lastRecv = monoNow();
    let next = chunk;
    for (;;) {
      // Until ready, one frame at a time: the peer may become ready first and send its
      // full gossip (over the pre-auth frame limit) in the same segment as its intro;
      // our intro handling raises the limit before that frame's length is checked.
      const handshake = this.state === 'handshake';
      let msgs: ControlMessage[];
      try {
        msgs = this.decoder.push(next, handshake ? 1 : Infinity);
      } catch (err) {
        this.close(err instanceof ProtocolError ? `protocol error: ${err.message}` : `bad message: ${(err as Error).message}`);
        return;
      }
      next = EMPTY;
      for (const m of msgs) {
        if ((this.state as ConnectionState) === 'closed') return;
        this.onMessage(m);
      }
      if (!handshake || msgs.length === 0 || (this.state as ConnectionState) === 'closed') return;
    }
  };

  private onMessage(m: ControlMessage): void {
    if (this.state === 'handshake') {
      if (m.t === 'bye') return this.close(`refused by peer: ${m.reason}`, false);
      if (m.t !== 'intro') return this.close(`protocol error: expected intro, got ${m.t}`);
      this.remote = { name: m.name, nickname: m.nickname, uid: m.uid, udpPort: m.udpPort, version: m.version, range: m.range ?? '', ...(m.range6 ? { range6: m.range6 } : {}) };
      this.remoteListenPort = m.listenPort ?? (this.outbound ? this.remotePort : 6783);
      const refusal = this.host.admit(this);
      if (refusal !== undefined) return this.close(refusal);
      if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
      this.handshakeTimer = undefined;
      this.state = 'ready';
      this.decoder.setMaxFrameBytes(MAX_FRAME_BYTES);
      this.host.onReady(this);
      return;
    }
    switch (m.t) {
      case 'hb':
        return;
      case 'bye':
        return this.close(`closed by peer: ${m.reason}`, false);
      case 'hello':
      case 'intro':
        return this.close(`protocol error: unexpected ${m.t}`);
      default:
        this.host.onMessage(this, m);
    }
  }

  /**
   * Liveness check of a ready connection, called by the router's shared timer (every
   * HEARTBEAT_CHECK_MS): closes it after HEARTBEAT_TIMEOUT_MS without any message from
   * the peer, else sends a heartbeat if we sent nothing for about HEARTBEAT_MS (any
   * message refreshes the peer's view of us, so traffic makes heartbeats unnecessary).
   */
  tick(now: number): void {
    if (this.state !== 'ready') return;
    if (now - this.lastRecv > HEARTBEAT_TIMEOUT_MS) {
      this.close(`no heartbeat from peer for ${HEARTBEAT_TIMEOUT_MS / 1000} s`);
      return;
    }
    // Half a check period early, so the interval is HEARTBEAT_MS, not HEARTBEAT_MS + one period.
    if (now - this.lastSend >= HEARTBEAT_MS - HEARTBEAT_CHECK_MS / 2) {
      this.send({ t: 'hb' });
      this.lastSend = now;
    }
  }

  send(m: ControlMessage): void {
    if (this.state === 'closed' || this.transport === undefined) return;
    this.lastSend = monoNow();
    // [scale, issue #20] Messages sent in one turn of the event loop (the periodic
    // exchange's digest and channel states, a full exchange, entry chunks) leave in one
    // writev: the socket is corked until the next tick. One syscall and one wake-up of
    // the peer instead of one per message.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.transport.write(encodeFrame(m));
  }

  /** Tear down (idempotent). With tellPeer, a `bye` with the reason goes first. */
  close(reason: string, tellPeer = true): void {
    if (this.state === 'closed') return;
    if (tellPeer && this.transport !== undefined) {
      try {
        this.transport.write(encodeFrame({ t: 'bye', reason: reason.slice(0, 1000) }));
      } catch { /* closing anyway */ }
    }
    this.state = 'closed';
    this.closeReason = reason;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.transport) {
      const t = this.transport;
      // Let the bye drain before the socket goes.
      setTimeout(() => { t.close(); this.socket.destroy(); }, 50).unref();
    } else {
      this.socket.destroy();
    }
    this.host.onClosed(this, reason);
  }
}
