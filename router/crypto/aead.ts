/**
 * Per-datagram authenticated encryption for the UDP sleeve.
 *
 * Cipher: ChaCha20-Poly1305 in its IETF form (RFC 8439: 32-byte key, 96-bit
 * nonce, 16-byte tag) from libsodium via sodium-native; we never implement
 * cipher primitives ourselves.
 *
 * Sealed datagram layout (all of it authenticated; header and sequence field
 * travel in clear so the receiver can route and de-duplicate before decrypting):
 *
 *   0       8                16                  16+n        16+n+16
 *   ┌───────┬─┬──────────────┬───────────────────┬───────────┐
 *   │ sleeve│E│ counter (56) │ ciphertext (n B)  │ tag (16 B) │
 *   │ header│ │  big-endian  │                   │           │
 *   └───────┴─┴──────────────┴───────────────────┴───────────┘
 *           └ sequence field: 8 bytes, big-endian; E = key epoch (1 byte)
 *
 * - associated data = bytes 0..16 (sleeve header ‖ sequence field);
 * - nonce (12 bytes) = 00 00 00 00 ‖ sequence field, i.e. the counter and its
 *   epoch byte exactly as on the wire. Each key has its own epoch and counters
 *   never repeat within a key, so a (key, nonce) pair is never reused;
 * - replay protection is per key epoch (ReplayWindow over the counter), updated
 *   only after the tag has verified.
 *
 * Re-keying is a one-way ratchet (keys.nextEpochKey): `Sealer.rekey()` steps
 * to the next key and epoch (mod 256) and restarts the counter at 0. The
 * Opener keeps the current epoch's key, the previous one (for datagrams still in
 * flight) and the precomputed next one; the first datagram that verifies under
 * the next key promotes it, the old previous key is wiped. Datagrams of any
 * other epoch are dropped as unknown-key. So a re-key needs no control message:
 * the lead only calls `rekey()` when `needsRekey()` says so (or on a timer), and
 * must not re-key twice before the peer has seen a datagram of the newer epoch
 * (at most one epoch of look-ahead). A fresh key exchange (new connection) just
 * creates a new Sealer/Opener pair.
 *
 * Hot path: seal() and open() copy nothing beyond the cipher's own output and
 * allocate no Buffers. libsodium takes exact-length typed arrays, so they make
 * views of the caller's buffers, but reuse the previous view whenever buffer and
 * range repeat (steady state with a reused buffer and full-size frames); a
 * changed range costs one small view object.
 */
import { createRequire } from 'node:module';
import { ReplayWindow } from './replay-window.js';
import { KEY_BYTES, nextEpochKey } from './keys.js';

/** The part of sodium-native we use (it ships no TypeScript types). */
interface SodiumAead {
  crypto_aead_chacha20poly1305_ietf_encrypt(c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, k: Uint8Array): number;
  /** Throws when the tag does not verify. */
  crypto_aead_chacha20poly1305_ietf_decrypt(m: Uint8Array, nsec: null, c: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array): number;
  sodium_memzero(buf: Uint8Array): void;
}
/**
 * sodium-native, loaded by the first Sealer or Opener (every use below runs on one):
 * [scale, issue #20] a router without a password never loads it (its native module
 * costs ~3 MiB of resident memory).
 */
let sodium: SodiumAead;
function loadSodium(): void {
  sodium ??= createRequire(import.meta.url)('sodium-native') as SodiumAead;
}

/** Bytes of the sleeve header carried in clear in front of the sequence field. */
export const HEADER_BYTES = 8;
/** Bytes of the sequence field (epoch byte + 56-bit counter). */
export const SEQ_BYTES = 8;
/** Bytes of the Poly1305 tag. */
export const TAG_BYTES = 16;
/** Total bytes a sealed datagram adds to the plaintext. */
export const AEAD_OVERHEAD = HEADER_BYTES + SEQ_BYTES + TAG_BYTES;

/**
 * Default re-key threshold: far below the 2^53 counter limit (and the 2^56 the
 * wire field could hold), yet at a million datagrams per second it takes
 * nearly nine years to reach.
 */
export const DEFAULT_REKEY_AFTER = 2 ** 48;
/** Hard limit: seal() refuses to go past this counter instead of reusing a nonce. */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;
/** Bytes of a Sealer's shared state (overlay/native/sleeve-aead.h). */
export const SEAL_STATE_BYTES = 16;
/** Bytes in front of the replay window in an Opener's shared state (overlay/native/sleeve-aead.h). */
export const OPEN_STATE_HEADER = 64;

/**
 * open() results below zero. (Plaintext lengths are >= 0.) Numbers rather than
 * strings so the hot path can return without allocating; openErrorKind()
 * maps them to names for logs.
 */
export const OPEN_REPLAY = -1;
export const OPEN_AUTH = -2;
export const OPEN_MALFORMED = -3;
export const OPEN_UNKNOWN_KEY = -4;
export type OpenError = 'replay' | 'auth' | 'malformed' | 'unknown-key';

/** Name of a negative open() result, or null for a plaintext length. */
export function openErrorKind(result: number): OpenError | null {
  switch (result) {
    case OPEN_REPLAY: return 'replay';
    case OPEN_AUTH: return 'auth';
    case OPEN_MALFORMED: return 'malformed';
    case OPEN_UNKNOWN_KEY: return 'unknown-key';
    default: return result >= 0 ? null : 'malformed';
  }
}

/** A programming error when calling Sealer/Opener (wrong key size, output buffer too small, counter exhausted). */
export class AeadError extends Error {
  override name = 'AeadError';
}

/**
 * Remembers the last typed-array view it made. libsodium needs exact-length
 * views, and making one costs ~45 ns; in steady state (one reused output
 * buffer, runs of full-size frames) the same view is asked for again and again.
 */
class ViewCache {
  private buf: Uint8Array | null = null;
  private start = 0;
  private end = 0;
  private view: Uint8Array = new Uint8Array(0);

  get(buf: Buffer, start: number, end: number): Uint8Array {
    if (buf !== this.buf || start !== this.start || end !== this.end) {
      this.view = buf.subarray(start, end);
      this.buf = buf;
      this.start = start;
      this.end = end;
    }
    return this.view;
  }
}

function checkKey(key: Buffer): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) {
    throw new AeadError(`sleeve key must be ${KEY_BYTES} bytes, got ${key instanceof Uint8Array ? key.length : typeof key}`);
  }
}

function checkEpoch(epoch: number): void {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 255) {
    throw new AeadError(`key epoch must be an integer 0..255, got ${epoch}`);
  }
}

/**
 * Seals outgoing datagrams for one direction of one connection. Not shared
 * between connections: each owns its key and counter.
 */
export class Sealer {
  private key: Buffer;
  /**
   * 16 bytes shared with the native sleeve path (overlay/native/sleeve-aead.h):
   * two doubles, the next counter and the key epoch. JS and C seal with the
   * same counter, so a nonce is never used twice whichever side seals.
   */
  readonly sharedState: Buffer = Buffer.alloc(SEAL_STATE_BYTES);
  private readonly st = new Float64Array(this.sharedState.buffer, this.sharedState.byteOffset, 2);
  private readonly rekeyAfter: number;
  private readonly nonce = Buffer.alloc(12);
  private readonly adView = new ViewCache();
  private readonly plainView = new ViewCache();
  private readonly cipherView = new ViewCache();

  /**
   * @param key 32-byte send key (copied; the caller may wipe its own copy)
   * @param opts.epoch key epoch of `key` (0..255, default 0; the peer's Opener must agree)
   * @param opts.rekeyAfter counter value at which needsRekey() turns true (default 2^48)
   * @param opts.firstSeq counter of the first datagram (default 0). Only for
   *   tests and for resuming a key: it must exceed every counter ever sealed
   *   with this key, or nonces repeat.
   * @throws AeadError on a wrong key length, epoch, threshold or firstSeq.
   */
  constructor(key: Buffer, opts: { epoch?: number; rekeyAfter?: number; firstSeq?: number } = {}) {
    loadSodium();
    checkKey(key);
    const epoch = opts.epoch ?? 0;
    checkEpoch(epoch);
    const rekeyAfter = opts.rekeyAfter ?? DEFAULT_REKEY_AFTER;
    if (!Number.isSafeInteger(rekeyAfter) || rekeyAfter < 1 || rekeyAfter > MAX_SEQ) {
      throw new AeadError(`rekeyAfter must be an integer 1..2^53-1, got ${rekeyAfter}`);
    }
    const firstSeq = opts.firstSeq ?? 0;
    if (!Number.isSafeInteger(firstSeq) || firstSeq < 0) {
      throw new AeadError(`firstSeq must be a non-negative safe integer, got ${firstSeq}`);
    }
    this.counter = firstSeq;
    this.key = Buffer.from(key);
    this.epochValue = epoch;
    this.rekeyAfter = rekeyAfter;
  }

  private get counter(): number {
    return this.st[0]!;
  }

  private set counter(v: number) {
    this.st[0] = v;
  }

  private get epochValue(): number {
    return this.st[1]!;
  }

  private set epochValue(v: number) {
    this.st[1] = v;
  }

  /** The current 32-byte key, for the native sleeve path only (never log it). A re-key replaces it. */
  get currentKey(): Buffer {
    return this.key;
  }

  /** Counter the next datagram will carry (= datagrams sealed under the current key). */
  get seq(): number {
    return this.counter;
  }

  /** Key epoch (0..255) of the current key. */
  get epoch(): number {
    return this.epochValue;
  }

  /** True once the counter reached the re-key threshold; call rekey() then. */
  needsRekey(): boolean {
    return this.counter >= this.rekeyAfter;
  }

  /** Step to the next epoch's key (keys.nextEpochKey) and restart the counter; wipes the old key. */
  rekey(): void {
    const next = nextEpochKey(this.key);
    sodium.sodium_memzero(this.key);
    this.key = next;
    this.epochValue = (this.epochValue + 1) & 0xff;
    this.counter = 0;
  }

  /**
   * Write `header ‖ sequence field ‖ ChaCha20-Poly1305(plaintext[pStart, pEnd)) ‖ tag`
   * into `out` starting at offset 0, and return its length
   * (pEnd - pStart + AEAD_OVERHEAD). `plaintext` may be `out` itself when the
   * plaintext already sits at offset 16 (in-place encryption); any other
   * overlap is not allowed.
   *
   * @param header the 8-byte sleeve header (only its first 8 bytes are used)
   * @throws AeadError when header is shorter than 8 bytes, the range is invalid,
   *   out is too small, or the counter reached 2^53 - 1 without a rekey().
   */
  seal(header: Buffer, plaintext: Buffer, pStart: number, pEnd: number, out: Buffer): number {
    if (header.length < HEADER_BYTES) throw new AeadError(`sleeve header must be ${HEADER_BYTES} bytes, got ${header.length}`);
    if (!(pStart >= 0 && pStart <= pEnd && pEnd <= plaintext.length)) {
      throw new AeadError(`plaintext range [${pStart}, ${pEnd}) outside buffer of ${plaintext.length} bytes`);
    }
    const n = pEnd - pStart;
    const total = n + AEAD_OVERHEAD;
    if (out.length < total) throw new AeadError(`output buffer of ${out.length} bytes too small for ${total}-byte datagram`);
    if (this.counter >= MAX_SEQ) throw new AeadError('sleeve sequence counter exhausted; rekey() first');
    if (plaintext === out && pStart !== AEAD_OVERHEAD - TAG_BYTES && n > 0) {
      throw new AeadError('in-place seal needs the plaintext at offset 16 of out');
    }
    const seq = this.counter++;
    const lo = seq % 0x1_0000_0000;
    const hi = (((this.epochValue << 24) | ((seq - lo) / 0x1_0000_0000)) >>> 0);
    // Byte loop: Buffer.copy costs more than this for 8 bytes.
    for (let i = 0; i < HEADER_BYTES; i++) out[i] = header[i]!;
    out.writeUInt32BE(hi, 8);
    out.writeUInt32BE(lo, 12);
    this.nonce.writeUInt32BE(hi, 4);
    this.nonce.writeUInt32BE(lo, 8);
    sodium.crypto_aead_chacha20poly1305_ietf_encrypt(
      this.cipherView.get(out, 16, total),
      this.plainView.get(plaintext, pStart, pEnd),
      this.adView.get(out, 0, 16),
      null,
      this.nonce,
      this.key,
    );
    return total;
  }
}

/** One key epoch as seen by the receiver: its key and its replay window. */
interface KeySlot {
  epoch: number;
  key: Buffer;
  window: ReplayWindow;
}

/** Counters of open() outcomes, for metrics and `weave status`. */
export interface OpenStats {
  ok: number;
  replay: number;
  auth: number;
  malformed: number;
  unknownKey: number;
}

/**
 * Verifies and decrypts incoming datagrams for one direction of one
 * connection, dropping replays, forgeries, malformed datagrams and unknown key
 * epochs, and counting each kind.
 */
export class Opener {
  /**
   * Shared with the native sleeve path (overlay/native/sleeve-aead.h): doubles
   * [0] current epoch, [1] the current window's highest counter, [2..6] the
   * outcome counters (ok, replay, auth, malformed, unknown-key), [7] ring
   * blocks; from byte 64 the current epoch's replay window ring.
   */
  readonly sharedState: Buffer;
  private readonly st: Float64Array;
  /** Outcome counters (JS and native opens alike); live views of the shared state. */
  readonly stats: OpenStats;
  private current: KeySlot;
  private previous: KeySlot | null = null;
  private next: KeySlot;
  private readonly windowBits: number;
  private readonly nonce = Buffer.alloc(12);
  private readonly adView = new ViewCache();
  private readonly plainView = new ViewCache();
  private readonly cipherView = new ViewCache();
  private lastSeq = -1;

  /**
   * @param key 32-byte receive key (copied)
   * @param windowBits replay window bitmap size (ReplayWindow; default 2048)
   * @param epoch key epoch of `key` (default 0)
   * @throws AeadError on a wrong key length or epoch; RangeError on a bad window size.
   */
  constructor(key: Buffer, windowBits = 2048, epoch = 0) {
    loadSodium();
    checkKey(key);
    checkEpoch(epoch);
    this.windowBits = windowBits;
    if (!Number.isInteger(windowBits) || windowBits < 64 || (windowBits & (windowBits - 1)) !== 0 || windowBits > 1 << 24) {
      throw new RangeError(`replay window size must be a power of two between 64 and 2^24 bits, got ${windowBits}`);
    }
    this.sharedState = Buffer.alloc(OPEN_STATE_HEADER + windowBits / 8);
    const st = new Float64Array(this.sharedState.buffer, this.sharedState.byteOffset, 8);
    this.st = st;
    st[0] = epoch;
    st[7] = windowBits / 32;
    const shared = new ReplayWindow(windowBits, {
      top: st,
      topIndex: 1,
      blocks: new Uint32Array(this.sharedState.buffer, this.sharedState.byteOffset + OPEN_STATE_HEADER, windowBits / 32),
    });
    this.stats = {
      get ok() { return st[2]!; }, set ok(v) { st[2] = v; },
      get replay() { return st[3]!; }, set replay(v) { st[3] = v; },
      get auth() { return st[4]!; }, set auth(v) { st[4] = v; },
      get malformed() { return st[5]!; }, set malformed(v) { st[5] = v; },
      get unknownKey() { return st[6]!; }, set unknownKey(v) { st[6] = v; },
    };
    this.current = { epoch, key: Buffer.from(key), window: shared };
    this.next = { epoch: (epoch + 1) & 0xff, key: nextEpochKey(key), window: new ReplayWindow(windowBits) };
  }

  /** Epoch of the newest key that has verified a datagram (or the initial one). */
  get epoch(): number {
    return this.current.epoch;
  }

  /** The current epoch's 32-byte key, for the native sleeve path only (never log it). */
  get currentKey(): Buffer {
    return this.current.key;
  }

  /** Counter of the datagram most recently opened successfully by this JS Opener (-1 before any); datagrams the C path (native-aead.ts) opened are not reflected here. */
  get lastSequence(): number {
    return this.lastSeq;
  }

  /**
   * Verify and decrypt `datagram[start, end)` (a whole sealed datagram as
   * produced by Sealer.seal) into `out` at offset 0. The sleeve header is not
   * copied; it remains readable in the datagram. `out` must not overlap the
   * datagram.
   *
   * @returns the plaintext length (>= 0), or OPEN_MALFORMED (too short, bad
   *   range, `out` smaller than the plaintext, or a counter >= 2^53 - 1), OPEN_UNKNOWN_KEY (epoch
   *   neither previous, current nor next), OPEN_REPLAY (counter too old or
   *   already seen for that epoch), OPEN_AUTH (tag did not verify: tampered,
   *   or sealed with another key). The matching stats counter is incremented.
   *   Never throws for any datagram content.
   */
  open(datagram: Buffer, start: number, end: number, out: Buffer): number {
    const len = end - start;
    if (!(start >= 0 && end <= datagram.length && len >= AEAD_OVERHEAD) || out.length < len - AEAD_OVERHEAD) {
      this.stats.malformed++;
      return OPEN_MALFORMED;
    }
    const hi = datagram.readUInt32BE(start + 8);
    const lo = datagram.readUInt32BE(start + 12);
    const epoch = hi >>> 24;
    const seq = (hi & 0xffffff) * 0x1_0000_0000 + lo;
    if (seq >= MAX_SEQ) {
      // Beyond what any Sealer emits (the wire field could hold 2^56).
      this.stats.malformed++;
      return OPEN_MALFORMED;
    }
    let slot: KeySlot;
    if (epoch === this.current.epoch) slot = this.current;
    else if (epoch === this.next.epoch) slot = this.next;
    else if (this.previous !== null && epoch === this.previous.epoch) slot = this.previous;
    else {
      this.stats.unknownKey++;
      return OPEN_UNKNOWN_KEY;
    }
    if (!slot.window.check(seq)) {
      this.stats.replay++;
      return OPEN_REPLAY;
    }
    this.nonce.writeUInt32BE(hi, 4);
    this.nonce.writeUInt32BE(lo, 8);
    const n = len - AEAD_OVERHEAD;
    try {
      sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
        this.plainView.get(out, 0, n),
        null,
        this.cipherView.get(datagram, start + 16, end),
        this.adView.get(datagram, start, start + 16),
        this.nonce,
        slot.key,
      );
    } catch {
      // sodium-native signals a failed tag check by throwing; an attacker can
      // make us take this path, but it costs no more than a failed decrypt.
      this.stats.auth++;
      return OPEN_AUTH;
    }
    slot.window.update(seq);
    if (slot === this.next) this.promoteNext();
    this.lastSeq = seq;
    this.stats.ok++;
    return n;
  }

  /** The peer has moved to the next epoch: shift the slots, wipe the oldest key, precompute the following one. */
  private promoteNext(): void {
    // The current epoch's window always lives in the shared state (the native
    // path checks only that epoch): the old current window moves out into a
    // private one for the previous slot, the next one's state moves in.
    const dropped = this.previous;
    const shared = this.current.window;
    let prevWindow: ReplayWindow;
    if (dropped !== null) {
      sodium.sodium_memzero(dropped.key);
      prevWindow = dropped.window;
    } else {
      prevWindow = new ReplayWindow(this.windowBits);
    }
    prevWindow.copyFrom(shared);
    this.previous = { epoch: this.current.epoch, key: this.current.key, window: prevWindow };
    const nextWindow = this.next.window;
    shared.copyFrom(nextWindow);
    nextWindow.reset();
    this.current = { epoch: this.next.epoch, key: this.next.key, window: shared };
    this.st[0] = this.current.epoch;
    this.next = { epoch: (this.current.epoch + 1) & 0xff, key: nextEpochKey(this.current.key), window: nextWindow };
  }

}
