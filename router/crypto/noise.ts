/**
 * The encrypted control channel: a Noise XX handshake
 * (Noise_XX_25519_ChaChaPoly_SHA256, as implemented by @chainsafe/libp2p-noise)
 * run directly over a `net.Socket`, without a libp2p node, followed by Noise
 * transport messages carrying an ordered byte stream.
 *
 * Membership: the Noise prologue is mixed into the handshake hash by both
 * sides (Noise spec §6) but never sent. Passing a password-derived value
 * (keys.handshakePrologue(passwordKey)) as the prologue makes peers with
 * different passwords derive different keys, so the initiator fails to
 * authenticate message 2. The library has no PSK mode; this is our gate.
 * Because an active attacker who completes message 1 can test password guesses
 * offline against message 2, the prologue must come from a slow KDF (scrypt).
 *
 * Mismatch signalling: only the initiator can see the mismatch (at message 2).
 * It then sends, in place of message 3, a fixed 80-byte frame (REJECT_FRAME)
 * and closes, so the responder fails to authenticate "message 3" and reports
 * the same "password mismatch" instead of a bare "connection closed".
 *
 * Wire format after the handshake is the library's: 2-byte big-endian length,
 * then a ChaCha20-Poly1305 ciphertext of at most 65535 bytes (plaintext is
 * split into chunks of up to 65519 bytes). Each side's identity key is a
 * throw-away Ed25519 key (generated once per process); it authenticates
 * nothing for us — peer identity is checked by the intro that follows.
 *
 * Node 20 lacks Promise.withResolvers, which the library uses: the polyfill
 * module is imported first.
 */
import './promise-polyfill.js';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { noise } from '@chainsafe/libp2p-noise';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { AbstractMessageStream, type SendResult } from '@libp2p/utils';
import type { Logger, MessageStream, PrivateKey, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';

/** The byte-list type of the library's own uint8arraylist copy (several versions are installed). */
type ByteList = Parameters<AbstractMessageStream['sendData']>[0];

/** Why a handshake failed; `kind` is for code, `message` is the one log line. */
export type HandshakeFailure = 'password-mismatch' | 'timeout' | 'closed' | 'protocol';

/**
 * The Noise handshake did not complete. Messages: "password mismatch",
 * "handshake timed out after N ms", "connection closed by peer during
 * handshake" or "connection closed during handshake: <socket error>",
 * "handshake failed: …" (garbage or a non-tsweave peer).
 */
export class HandshakeError extends Error {
  override name = 'HandshakeError';
  constructor(readonly kind: HandshakeFailure, message: string) {
    super(message);
  }
}

/**
 * An established encrypted, authenticated, ordered byte stream.
 *
 * - write(): queues bytes; returns false when the socket's buffer is above its
 *   high-water mark (the data is still queued; wait for onDrain before writing
 *   lots more). Writes after close or on a dead channel are dropped (false).
 *   The buffer may be queued by reference: do not modify it afterwards.
 * - onData(): one callback (a later call replaces it); chunk boundaries are not
 *   message boundaries. Data that arrives before it is set is held. If the
 *   callback throws, the channel is destroyed with that error.
 * - onClose(): called once when the socket has closed, with an error unless it
 *   was an orderly close (a tampered stream reports its decrypt error). If the
 *   channel is already closed the callback runs on the next microtask.
 * - close(): flushes queued data, then half-closes (FIN); the socket is
 *   destroyed if the peer has not closed within 2 s. destroy(): immediately.
 */
export interface SecureChannel {
  write(data: Buffer): boolean;
  onData(cb: (data: Buffer) => void): void;
  onDrain(cb: () => void): void;
  onClose(cb: (err?: Error) => void): void;
  close(): void;
  destroy(err?: Error): void;
  readonly closed: boolean;
}

export interface SecureSocketOptions {
  /** True on the side that opened the TCP connection (sends Noise message 1). */
  initiator: boolean;
  /** Password-derived bytes (keys.handshakePrologue); both sides must use the same. */
  prologue: Buffer;
  /** Bytes already read from the socket after our plaintext hello (fed to Noise first). */
  initialData?: Buffer;
  /** Handshake deadline in ms (default 5000). */
  timeoutMs?: number;
}

/** Sent by an initiator that found a prologue mismatch, in place of message 3 (see module comment). */
export const REJECT_FRAME: Buffer = (() => {
  const text = Buffer.from('tsweave: noise prologue mismatch (password differs)', 'ascii');
  const frame = Buffer.alloc(2 + 80);
  frame.writeUInt16BE(80, 0);
  text.copy(frame, 2);
  return frame;
})();

const DEFAULT_TIMEOUT_MS = 5000;
const CLOSE_GRACE_MS = 2000;
/** Unread-data limit per stream layer before it aborts (the library's default is 4 MiB). */
const MAX_READ_BUFFER = 64 * 1024 * 1024;

const silentLogger: Logger = Object.assign(
  (_formatter: unknown, ..._args: unknown[]): void => {},
  {
    error: (_formatter: unknown, ..._args: unknown[]): void => {},
    trace: (_formatter: unknown, ..._args: unknown[]): void => {},
    enabled: false,
    newScope: (_name: string): Logger => silentLogger,
  },
);

let identityKey: Promise<PrivateKey> | undefined;
const staticNoiseKey = randomBytes(32);

function getIdentityKey(): Promise<PrivateKey> {
  if (identityKey === undefined) {
    identityKey = generateKeyPair('Ed25519');
    identityKey.catch(() => { identityKey = undefined; });
  }
  return identityKey;
}

function toBuffer(data: StreamMessageEvent['data']): Buffer {
  const u8 = data instanceof Uint8Array ? data : data.subarray();
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/**
 * Adapts a net.Socket to the library's MessageStream (event-based stream with
 * backpressure). Socket data is delivered synchronously; writes of one send
 * are corked into one writev.
 */
class SocketMessageStream extends AbstractMessageStream {
  socketError: Error | undefined;

  constructor(private readonly socket: Socket, direction: 'inbound' | 'outbound') {
    super({ log: silentLogger, direction, maxReadBufferLength: MAX_READ_BUFFER });
    socket.on('data', this.onSocketData);
    socket.on('drain', this.onSocketDrain);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
    socket.on('end', this.onSocketEnd);
  }

  private readonly onSocketData = (chunk: Buffer): void => {
    this.onData(chunk);
  };

  private readonly onSocketDrain = (): void => {
    this.safeDispatchEvent('drain');
  };

  private readonly onSocketError = (err: Error): void => {
    this.socketError ??= err;
  };

  private readonly onSocketEnd = (): void => {
    // No half-open channels: the peer's FIN ends ours too, even on sockets
    // created with allowHalfOpen, so 'close' always follows.
    if (!this.socket.writableEnded) this.socket.end();
  };

  private readonly onSocketClose = (): void => {
    this.detach();
    // An error on the raw socket (ECONNRESET, ...) means the peer went away; the
    // layers above see a plain close and report their own "closed" reason.
    this.onTransportClosed();
  };

  detach(): void {
    this.socket.off('data', this.onSocketData);
    this.socket.off('drain', this.onSocketDrain);
    this.socket.off('close', this.onSocketClose);
    this.socket.off('end', this.onSocketEnd);
    // The 'error' listener stays: a socket without one crashes the process.
  }

  override sendData(data: ByteList): SendResult {
    const s = this.socket;
    if (s.destroyed || !s.writable) return { sentBytes: data.byteLength, canSendMore: true };
    let canSendMore = true;
    s.cork();
    for (const buf of data) canSendMore = s.write(buf);
    s.uncork();
    return { sentBytes: data.byteLength, canSendMore };
  }

  override sendReset(_err: Error): void {
    this.socket.destroy();
  }

  override sendPause(): void {
    this.socket.pause();
  }

  override sendResume(): void {
    this.socket.resume();
  }

  override async close(): Promise<void> {
    this.socket.end();
  }
}

function closedError(socketError: Error | undefined): HandshakeError {
  return new HandshakeError('closed', socketError
    ? `connection closed during handshake: ${socketError.message}`
    : 'connection closed by peer during handshake');
}

function classify(err: unknown, initiator: boolean, socketError: Error | undefined): HandshakeError {
  if (err instanceof HandshakeError) return err;
  const e = err as Error;
  const msg = String(e?.message ?? err);
  const name = String(e?.name ?? '');
  // Stage 1 is message 2 (read by the initiator), stage 2 message 3 (read by
  // the responder); a failed ChaCha20-Poly1305 check there means the handshake
  // hashes differ, i.e. the prologues (passwords) differ.
  const stage = initiator ? 'handshake stage 1 validation fail' : 'handshake stage 2 validation fail';
  if (msg.startsWith(stage) && /chacha20poly1305|authenticate/i.test(msg)) {
    return new HandshakeError('password-mismatch', 'password mismatch');
  }
  if (socketError !== undefined || /EOF|closed|ECONNRESET|EPIPE|reset/i.test(`${name} ${msg}`)) {
    return closedError(socketError);
  }
  return new HandshakeError('protocol', `handshake failed: ${msg}`);
}

/**
 * Run the Noise XX handshake on `socket` and return the encrypted channel.
 *
 * Call it synchronously after removing your own 'data' listener (so no bytes
 * are lost) and pass any bytes you already read past your hello as
 * `initialData` (they may be decrypted in place). Sets TCP_NODELAY (the
 * handshake takes ~50 ms instead of a few ms with Nagle on).
 *
 * Never throws; the promise rejects only with HandshakeError. On failure the
 * socket is destroyed (after sending REJECT_FRAME if we are the initiator and
 * saw a password mismatch) and all our listeners are removed, except an
 * 'error' listener that keeps a late socket error from crashing the process.
 */
export function secureSocket(socket: Socket, opts: SecureSocketOptions): Promise<SecureChannel> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(opts.prologue instanceof Uint8Array) || opts.prologue.length === 0) {
    return Promise.reject(new HandshakeError('protocol', 'handshake prologue must be a non-empty Buffer'));
  }
  if (socket.destroyed || !socket.readable) {
    return Promise.reject(new HandshakeError('closed', 'connection closed before the handshake started'));
  }
  socket.setNoDelay(true);
  // Attach to the socket before any await: in flowing mode, data emitted while
  // nobody listens would be lost.
  const raw = new SocketMessageStream(socket, opts.initiator ? 'outbound' : 'inbound');
  if (opts.initialData !== undefined && opts.initialData.length > 0) raw.onData(opts.initialData);

  return new Promise<SecureChannel>((resolve, reject) => {
    let settled = false;
    const abort = new AbortController();
    const fail = (err: HandshakeError, rejectFrame: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('close', onEarlyClose);
      abort.abort(err);
      raw.detach();
      if (rejectFrame && !socket.destroyed && socket.writable) {
        socket.end(REJECT_FRAME);
        setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
      } else {
        socket.destroy();
      }
      reject(err);
    };
    const timer = setTimeout(() => fail(new HandshakeError('timeout', `handshake timed out after ${timeoutMs} ms`), false), timeoutMs);
    // The library notices a closed socket only while it is reading; this also
    // covers a close while we are still generating the identity key.
    const onEarlyClose = (): void => {
      setImmediate(() => fail(closedError(raw.socketError), false));
    };
    socket.on('close', onEarlyClose);

    getIdentityKey()
      .then((privateKey) => {
        if (settled) return undefined;
        const encrypter = noise({ prologueBytes: opts.prologue, staticNoiseKey })({
          privateKey,
          logger: { forComponent: () => silentLogger },
          // Only used for libp2p stream-muxer negotiation and metrics, both off.
          peerId: undefined as never,
          upgrader: undefined as never,
        });
        const options = { signal: abort.signal, skipStreamMuxerNegotiation: true };
        const conn = raw as unknown as MessageStream;
        return opts.initiator ? encrypter.secureOutbound(conn, options) : encrypter.secureInbound(conn, options);
      })
      .then((secured) => {
        if (secured === undefined || settled) {
          if (secured !== undefined) socket.destroy();
          return;
        }
        settled = true;
        clearTimeout(timer);
        socket.off('close', onEarlyClose);
        resolve(new NoiseChannel(socket, raw, secured.connection));
      })
      .catch((err: unknown) => {
        const he = classify(err, opts.initiator, raw.socketError);
        fail(he, opts.initiator && he.kind === 'password-mismatch');
      });
  });
}

/** SecureChannel over the library's encrypted MessageStream. */
class NoiseChannel implements SecureChannel {
  private dataCb: ((data: Buffer) => void) | undefined;
  private drainCb: (() => void) | undefined;
  private closeCbs: Array<(err?: Error) => void> = [];
  private closeErr: Error | undefined;
  private isClosed = false;
  private closing = false;

  constructor(
    private readonly socket: Socket,
    private readonly raw: SocketMessageStream,
    private readonly secured: MessageStream,
  ) {
    secured.addEventListener('close', this.onSecuredClose);
    secured.addEventListener('drain', this.onSecuredDrain);
    socket.on('close', this.onSocketClose);
    if (socket.destroyed) queueMicrotask(this.onSocketClose);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  private readonly onMessage = (evt: StreamMessageEvent): void => {
    const cb = this.dataCb;
    if (cb === undefined) return;
    try {
      cb(toBuffer(evt.data));
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  };

  private readonly onSecuredClose = (evt: StreamCloseEvent): void => {
    if (evt.error !== undefined) this.closeErr ??= evt.error;
  };

  private readonly onSecuredDrain = (): void => {
    this.drainCb?.();
  };

  private readonly onSocketClose = (): void => {
    if (this.isClosed) return;
    this.isClosed = true;
    this.socket.off('close', this.onSocketClose);
    this.secured.removeEventListener('message', this.onMessage);
    this.secured.removeEventListener('close', this.onSecuredClose);
    this.secured.removeEventListener('drain', this.onSecuredDrain);
    const err = this.closeErr ?? (this.raw.socketError && !this.closing ? this.raw.socketError : undefined);
    const cbs = this.closeCbs;
    this.closeCbs = [];
    for (const cb of cbs) cb(err);
  };

  write(data: Buffer): boolean {
    if (this.isClosed || this.closing || this.secured.status !== 'open') return false;
    if (data.length === 0) return true;
    try {
      return this.secured.send(data);
    } catch {
      return false;
    }
  }

  onData(cb: (data: Buffer) => void): void {
    const first = this.dataCb === undefined;
    this.dataCb = cb;
    // Registering the listener flushes anything that arrived meanwhile.
    if (first && !this.isClosed) this.secured.addEventListener('message', this.onMessage);
  }

  onDrain(cb: () => void): void {
    this.drainCb = cb;
  }

  onClose(cb: (err?: Error) => void): void {
    if (this.isClosed) {
      const err = this.closeErr;
      queueMicrotask(() => cb(err));
      return;
    }
    this.closeCbs.push(cb);
  }

  close(): void {
    if (this.closing || this.isClosed) return;
    this.closing = true;
    const finish = (): void => {
      this.secured.removeEventListener('idle', check);
      this.raw.removeEventListener('idle', check);
      this.socket.end();
      setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
    };
    const check = (): void => {
      if (this.secured.writeBufferLength === 0 && this.raw.writeBufferLength === 0) finish();
    };
    if (this.secured.writeBufferLength === 0 && this.raw.writeBufferLength === 0) {
      finish();
    } else {
      this.secured.addEventListener('idle', check);
      this.raw.addEventListener('idle', check);
    }
  }

  destroy(err?: Error): void {
    if (this.isClosed) return;
    if (err !== undefined) this.closeErr ??= err;
    this.socket.destroy();
  }
}
