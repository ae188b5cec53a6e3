/**
 * The sleeve: tsweave's UDP datagram format on port 6783 (our own, in the spirit of
 * Weave Net's "sleeve" overlay, which also batches several Ethernet frames per UDP
 * datagram and probes the path MTU with padded datagrams).
 *
 * Every datagram starts with an 8-byte header:
 *
 *     byte 0      magic 0x54 ('T')
 *     byte 1      type
 *     bytes 2..7  sender peer name (48 bits, big-endian)
 *
 * Types and bodies (all integers big-endian):
 *
 *     FRAMES     1  repeated records: src peer (6) | dst peer (6, 0 = broadcast) | len (2) | Ethernet frame (len)
 *     HEARTBEAT  2  receiver peer (6) | counter (u32)                         → 18 bytes total
 *     PMTU_PROBE 3  probe id (u32) | padding up to the probe size              → total = probe size
 *     PMTU_ACK   4  probe id (u32) | probed size (u16)                         → 14 bytes total
 *     ENCRYPTED  5  sealed inner datagram (handled by router/crypto)
 *
 * A frame's src is the peer where it entered the overlay and dst its destination
 * peer; the header's sender is the hop that sent this datagram. Frames shorter than
 * an Ethernet header (14 bytes) are invalid.
 */
import { readMac, writeMac } from './mac-cache.js';

export const SLEEVE_MAGIC = 0x54;
export const HEADER_BYTES = 8;
/** src(6) + dst(6) + len(2) preceding each frame in a FRAMES datagram. */
export const FRAME_HEADER_BYTES = 14;
export const HEARTBEAT_BYTES = HEADER_BYTES + 10;
export const PMTU_PROBE_MIN_BYTES = HEADER_BYTES + 4;
export const PMTU_ACK_BYTES = HEADER_BYTES + 6;
export const MAX_DATAGRAM_BYTES = 65535;
/** Smallest valid frame: an Ethernet header. */
export const MIN_FRAME_BYTES = 14;
export const MAX_FRAME_BYTES = 0xffff;

export const DatagramType = {
  FRAMES: 1,
  HEARTBEAT: 2,
  PMTU_PROBE: 3,
  PMTU_ACK: 4,
  ENCRYPTED: 5,
} as const;
export type DatagramType = (typeof DatagramType)[keyof typeof DatagramType];

/** Raised for arguments that cannot be encoded (e.g. a probe size out of range). */
export class SleeveCodecError extends Error {
  override name = 'SleeveCodecError';
}

/** Writes the 8-byte header at `offset`. */
export function writeHeader(buf: Buffer, offset: number, type: number, sender: number): void {
  buf[offset] = SLEEVE_MAGIC;
  buf[offset + 1] = type;
  writeMac(buf, offset + 2, sender);
}

/**
 * Packs frames into a FRAMES datagram in a caller-owned buffer, copying each frame
 * once and allocating nothing per frame. Usage: `begin`, then `add` until it returns
 * false, send `buf.subarray(0, packer.length)`, and `begin` again.
 *
 * `add` returning false while `count === 0` means the frame can never be sent with
 * this limit (bigger than maxBytes allows, or not a valid frame length): drop it or
 * fragment it instead of retrying.
 */
export class FramePacker {
  /** Upper bound for any datagram built, in bytes. */
  readonly capacity: number;
  private buf: Buffer = Buffer.alloc(0);
  private limit = 0;
  private len = 0;
  private n = 0;

  /** @param capacity largest datagram this packer will build (≤ 65535), in bytes. */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < HEADER_BYTES || capacity > MAX_DATAGRAM_BYTES) {
      throw new SleeveCodecError(`FramePacker capacity must be an integer in [${HEADER_BYTES}, ${MAX_DATAGRAM_BYTES}], got ${capacity}`);
    }
    this.capacity = capacity;
  }

  /**
   * Starts a FRAMES datagram at the start of `buf`.
   * @param maxBytes datagram size limit (path MTU minus IP and UDP headers); the
   *   effective limit is the smallest of maxBytes, capacity and buf.length.
   * @param sender numeric peer name of this router.
   */
  begin(buf: Buffer, maxBytes: number, sender: number): void {
    this.buf = buf;
    this.limit = Math.min(maxBytes, this.capacity, buf.length);
    this.n = 0;
    if (this.limit < HEADER_BYTES) {
      this.len = 0;
      this.limit = 0;
      return;
    }
    writeHeader(buf, 0, DatagramType.FRAMES, sender);
    this.len = HEADER_BYTES;
  }

  /** Appends frame bytes [start, end) with origin `src` and destination `dst`; false if it doesn't fit. */
  add(src: number, dst: number, frame: Buffer, start: number, end: number): boolean {
    const flen = end - start;
    if (flen < MIN_FRAME_BYTES || flen > MAX_FRAME_BYTES || this.len === 0) return false;
    const at = this.len;
    if (at + FRAME_HEADER_BYTES + flen > this.limit) return false;
    const buf = this.buf;
    writeMac(buf, at, src);
    writeMac(buf, at + 6, dst);
    buf[at + 12] = flen >>> 8;
    buf[at + 13] = flen & 0xff;
    frame.copy(buf, at + FRAME_HEADER_BYTES, start, end);
    this.len = at + FRAME_HEADER_BYTES + flen;
    this.n++;
    return true;
  }

  /** Bytes used so far, header included (0 if begin's limit could not hold a header). */
  get length(): number {
    return this.len;
  }

  /** Frames added since `begin`. */
  get count(): number {
    return this.n;
  }

  /** Largest frame that fits in an empty datagram under `maxBytes`. */
  static maxFrameFor(maxBytes: number): number {
    return Math.min(MAX_FRAME_BYTES, maxBytes - HEADER_BYTES - FRAME_HEADER_BYTES);
  }
}

/** HEARTBEAT datagram from `sender` to `receiver`; counter is a u32 (taken mod 2^32). */
export function encodeHeartbeat(sender: number, receiver: number, counter: number): Buffer {
  const b = Buffer.allocUnsafe(HEARTBEAT_BYTES);
  writeHeader(b, 0, DatagramType.HEARTBEAT, sender);
  writeMac(b, HEADER_BYTES, receiver);
  b.writeUInt32BE(counter >>> 0, HEADER_BYTES + 6);
  return b;
}

/**
 * PMTU_PROBE datagram whose total length is exactly `size` bytes (zero padding).
 * @throws SleeveCodecError if size is not an integer in [12, 65535].
 */
export function encodePmtuProbe(sender: number, id: number, size: number): Buffer {
  if (!Number.isInteger(size) || size < PMTU_PROBE_MIN_BYTES || size > MAX_DATAGRAM_BYTES) {
    throw new SleeveCodecError(`PMTU probe size must be an integer in [${PMTU_PROBE_MIN_BYTES}, ${MAX_DATAGRAM_BYTES}], got ${size}`);
  }
  const b = Buffer.alloc(size);
  writeHeader(b, 0, DatagramType.PMTU_PROBE, sender);
  b.writeUInt32BE(id >>> 0, HEADER_BYTES);
  return b;
}

/**
 * PMTU_ACK datagram acknowledging probe `id` of `size` bytes.
 * @throws SleeveCodecError if size is not an integer in [0, 65535].
 */
export function encodePmtuAck(sender: number, id: number, size: number): Buffer {
  if (!Number.isInteger(size) || size < 0 || size > MAX_DATAGRAM_BYTES) {
    throw new SleeveCodecError(`PMTU ack size must be an integer in [0, ${MAX_DATAGRAM_BYTES}], got ${size}`);
  }
  const b = Buffer.allocUnsafe(PMTU_ACK_BYTES);
  writeHeader(b, 0, DatagramType.PMTU_ACK, sender);
  b.writeUInt32BE(id >>> 0, HEADER_BYTES);
  b.writeUInt16BE(size, HEADER_BYTES + 4);
  return b;
}

/**
 * Header of a datagram; undefined if shorter than 8 bytes or the magic is wrong.
 * The type is returned as is (it may be one this version does not know).
 */
export function parseHeader(buf: Buffer): { type: number; sender: number } | undefined {
  if (buf.length < HEADER_BYTES || buf[0] !== SLEEVE_MAGIC) return undefined;
  return { type: buf[1]!, sender: readMac(buf, 2) };
}

/** Allocation-free header check: the type, or -1 if too short or wrong magic. */
export function datagramType(buf: Buffer): number {
  if (buf.length < HEADER_BYTES || buf[0] !== SLEEVE_MAGIC) return -1;
  return buf[1]!;
}

/** Sender field of a datagram whose header was checked with `datagramType`. */
export function datagramSender(buf: Buffer): number {
  return readMac(buf, 2);
}

export type FrameVisitor = (src: number, dst: number, buf: Buffer, start: number, end: number) => void;

/**
 * Walks the frame records in buf[offset, end) (a FRAMES body, normally
 * offset = HEADER_BYTES and end = datagram length), calling `visit` for each frame
 * with its byte range in `buf` (no copy).
 * @returns true if the body was well formed (an empty body included); false at the
 *   first malformed record (truncated record header or frame, frame < 14 bytes), or
 *   for offset/end outside buf. Frames before the malformed record have already been
 *   visited. Parsing never throws; an exception from `visit` propagates.
 */
export function forEachFrame(buf: Buffer, offset: number, end: number, visit: FrameVisitor): boolean {
  if (!Number.isInteger(offset) || !Number.isInteger(end) || offset < 0 || end > buf.length || offset > end) return false;
  let at = offset;
  while (at < end) {
    if (end - at < FRAME_HEADER_BYTES) return false;
    const flen = (buf[at + 12]! << 8) | buf[at + 13]!;
    const fstart = at + FRAME_HEADER_BYTES;
    if (flen < MIN_FRAME_BYTES || fstart + flen > end) return false;
    visit(readMac(buf, at), readMac(buf, at + 6), buf, fstart, fstart + flen);
    at = fstart + flen;
  }
  return true;
}

/** HEARTBEAT fields; undefined unless exactly 18 bytes with the right magic and type. */
export function parseHeartbeat(buf: Buffer): { sender: number; receiver: number; counter: number } | undefined {
  if (buf.length !== HEARTBEAT_BYTES || buf[0] !== SLEEVE_MAGIC || buf[1] !== DatagramType.HEARTBEAT) return undefined;
  return { sender: readMac(buf, 2), receiver: readMac(buf, HEADER_BYTES), counter: buf.readUInt32BE(HEADER_BYTES + 6) };
}

/** PMTU_PROBE fields (size = received datagram length); undefined if malformed. */
export function parsePmtuProbe(buf: Buffer): { sender: number; id: number; size: number } | undefined {
  if (buf.length < PMTU_PROBE_MIN_BYTES || buf[0] !== SLEEVE_MAGIC || buf[1] !== DatagramType.PMTU_PROBE) return undefined;
  return { sender: readMac(buf, 2), id: buf.readUInt32BE(HEADER_BYTES), size: buf.length };
}

/** PMTU_ACK fields; undefined unless exactly 14 bytes with the right magic and type. */
export function parsePmtuAck(buf: Buffer): { sender: number; id: number; size: number } | undefined {
  if (buf.length !== PMTU_ACK_BYTES || buf[0] !== SLEEVE_MAGIC || buf[1] !== DatagramType.PMTU_ACK) return undefined;
  return { sender: readMac(buf, 2), id: buf.readUInt32BE(HEADER_BYTES), size: buf.readUInt16BE(HEADER_BYTES + 4) };
}
