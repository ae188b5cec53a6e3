/**
 * Control-connection framing for TCP 6783.
 *
 * Every message is one frame: a 4-byte big-endian body length followed by a
 * MessagePack (https://msgpack.org/) map. Weave Net likewise length-prefixes its
 * control messages (with gob encoding); we use msgpack maps so other languages can
 * speak the protocol. Only msgpackr's plain `pack`/`unpack` are used: its
 * "records"/"structures" extension keeps per-stream state and would mis-decode
 * across processes.
 *
 * Every decoded message is validated field by field and rebuilt into a fresh object
 * holding only the known fields, so the rest of the router never sees unchecked
 * peer input. Unknown extra fields are ignored (forward compatibility); unknown
 * message types are rejected.
 */
import { pack, unpack } from 'msgpackr';
import { MAX_NICKNAME_LENGTH, isPeerName, isValidNickname, type PeerName } from './peer-name.js';
import { BUDGETS, MsgpackBudgetError, scanMsgpack, type MsgpackBudget } from './msgpack-budget.js';

/**
 * Control protocol versions this router speaks (hello's range; the highest common one
 * is used). 2 adds topology deltas and whole-entry requests (gossip.ts `{x}`, `{w}`);
 * a version-1 neighbour gets whole entries only.
 */
export const PROTOCOL_MIN_VERSION = 1;
export const PROTOCOL_MAX_VERSION = 2;
/**
 * Largest accepted frame body once a connection is ready, in bytes: only a 'gossip'
 * frame may be this big (a full topology or IPAM ring of a large mesh); every other
 * type is bounded by MAX_SMALL_FRAME_BYTES (see frameLimitFor).
 */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024;
/**
 * Largest frame body before a connection is ready (hello, intro, bye, and any frame
 * a stranger sends) and of every non-gossip message afterwards, in bytes. An intro is
 * under 400 bytes (nickname ≤ 255 chars), so 4 KiB leaves room and caps what an
 * unauthenticated socket can make us buffer.
 */
export const MAX_SMALL_FRAME_BYTES = 4096;
export const PRE_AUTH_MAX_FRAME_BYTES = MAX_SMALL_FRAME_BYTES;
/** Bytes in the length prefix. */
export const FRAME_LENGTH_BYTES = 4;

export { MAX_NICKNAME_LENGTH, isValidNickname } from './peer-name.js';
export const MAX_REASON_LENGTH = 1024;
export const MAX_CHANNEL_LENGTH = 64;
export const KEY_MATERIAL_BYTES = 32;

/** Raised for a malformed frame or a message that fails validation. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export type ControlMessage =
  | { t: 'hello'; proto: 'tsweave'; minVersion: number; maxVersion: number; encrypted: boolean }
  | { t: 'intro'; version: number; name: PeerName; nickname: string; uid: number; udpPort: number; listenPort?: number; range?: string; range6?: string }
  | { t: 'hb' }
  | { t: 'udp-ok' }
  | { t: 'keys'; material: Uint8Array; trusted?: boolean }
  | { t: 'gossip'; channel: string; kind: 'full' | 'update' | 'unicast'; src: PeerName; dst?: PeerName; payload: Uint8Array }
  | { t: 'bye'; reason: string };

/**
 * Encodes one message as a frame (length prefix + msgpack body).
 * @throws ProtocolError if the body would exceed MAX_FRAME_BYTES.
 */
export function encodeFrame(msg: ControlMessage): Buffer {
  const body = pack(msg);
  if (body.length > MAX_FRAME_BYTES) {
    throw new ProtocolError(`control message "${msg.t}" is ${body.length} bytes, over the ${MAX_FRAME_BYTES}-byte frame limit`);
  }
  const frame = Buffer.allocUnsafe(FRAME_LENGTH_BYTES + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, FRAME_LENGTH_BYTES);
  return frame;
}

/**
 * Incremental frame decoder for one TCP stream. Chunks may split frames at any
 * byte and may hold many frames; bytes are only concatenated once a whole frame
 * has arrived, so a large frame delivered in many small chunks costs linear time.
 *
 * `push` throws ProtocolError for a length over the limit, undecodable msgpack or a
 * message failing validation; frames decoded earlier in the same `push` are then
 * lost and the decoder must not be used again: the connection is to be closed.
 */
export class FrameDecoder {
  private maxFrameBytes: number;
  private chunks: Buffer[] = [];
  private total = 0;
  /** Body length of the frame being assembled, or -1 while its prefix is incomplete. */
  private need = -1;

  /** @param maxFrameBytes largest accepted body length in bytes (default MAX_FRAME_BYTES). */
  constructor(maxFrameBytes: number = MAX_FRAME_BYTES) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1) {
      throw new RangeError(`maxFrameBytes must be a positive integer, got ${maxFrameBytes}`);
    }
    this.maxFrameBytes = maxFrameBytes;
  }

  /**
   * Changes the largest accepted body length (the connection raises it from
   * PRE_AUTH_MAX_FRAME_BYTES to MAX_FRAME_BYTES once ready). Applies to the next
   * length prefix read.
   */
  setMaxFrameBytes(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`maxFrameBytes must be a positive integer, got ${n}`);
    this.maxFrameBytes = n;
  }

  /** Bytes received but not yet returned as messages. */
  get buffered(): number {
    return this.total;
  }

  /**
   * Appends `chunk` and returns the messages completed by it, in order: all of them, or
   * at most `max`, leaving the rest buffered for the next call (`push(EMPTY)` decodes
   * them). A connection in its handshake takes one at a time, because the intro it
   * acts on raises the frame limit for the frames that follow it in the same segment.
   */
  push(chunk: Buffer, max = Infinity): ControlMessage[] {
    const out: ControlMessage[] = [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.total += chunk.length;
    }
    while (out.length < max) {
      if (this.need < 0) {
        if (this.total < FRAME_LENGTH_BYTES) break;
        this.coalesce();
        const len = this.chunks[0]!.readUInt32BE(0);
        if (len > this.maxFrameBytes) {
          throw new ProtocolError(`frame length ${len} exceeds the ${this.maxFrameBytes}-byte limit`);
        }
        if (len === 0) throw new ProtocolError('empty frame: a frame must hold one msgpack message');
        this.need = len;
        this.consume(FRAME_LENGTH_BYTES);
      }
      if (this.total < this.need) break;
      this.coalesce();
      const body = this.chunks[0]!.subarray(0, this.need);
      this.consume(this.need);
      this.need = -1;
      out.push(decodeBody(body));
    }
    return out;
  }

  /** Merges all pending chunks into one so the next frame is contiguous. */
  private coalesce(): void {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.total)];
  }

  /** Drops `n` bytes from the front of the (coalesced) pending data. */
  private consume(n: number): void {
    const head = this.chunks[0]!;
    this.total -= n;
    if (n === head.length) this.chunks = [];
    else this.chunks[0] = head.subarray(n);
  }
}

/**
 * Largest body length, in bytes, accepted for a decoded message of type `t`:
 * MAX_FRAME_BYTES for 'gossip' (full topology / IPAM state), MAX_SMALL_FRAME_BYTES
 * for every other type (all are a handful of short fields).
 */
export function frameLimitFor(t: ControlMessage['t']): number {
  return t === 'gossip' ? MAX_FRAME_BYTES : MAX_SMALL_FRAME_BYTES;
}

/**
 * msgpack-decodes untrusted bytes after checking them with scanMsgpack against
 * `budget`, so a small input cannot expand into millions of objects.
 * @throws ProtocolError (prefixed with `what`) if the budget is exceeded or the
 *   bytes are not exactly one msgpack value.
 */
export function unpackBounded(bytes: Uint8Array, budget: MsgpackBudget, what: string): unknown {
  try {
    scanMsgpack(bytes, budget);
    return unpack(bytes);
  } catch (err) {
    throw new ProtocolError(`undecodable ${what}: ${err instanceof MsgpackBudgetError ? err.message : (err as Error).message}`);
  }
}

/**
 * Decodes and validates one frame body (no length prefix): a msgpack map within
 * BUDGETS.control, a valid ControlMessage, and no longer than frameLimitFor(its type).
 * @throws ProtocolError naming the problem.
 */
export function decodeBody(body: Uint8Array): ControlMessage {
  const msg = validateControlMessage(unpackBounded(body, BUDGETS.control, 'control frame'));
  const limit = frameLimitFor(msg.t);
  if (body.length > limit) throw new ProtocolError(`"${msg.t}" frame of ${body.length} bytes exceeds its ${limit}-byte limit`);
  return msg;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
}

function fail(t: string, field: string, want: string, got: unknown): never {
  let shown: string;
  if (typeof got === 'string') shown = JSON.stringify(got.length > 40 ? got.slice(0, 40) + '…' : got);
  else if (got instanceof Uint8Array) shown = `${got.length} bytes`;
  else if (typeof got === 'bigint') shown = `${got}`;
  else if (got === null || typeof got !== 'object') shown = String(got);
  else shown = Array.isArray(got) ? 'an array' : 'an object';
  throw new ProtocolError(`bad "${t}" message: field "${field}" must be ${want}, got ${shown}`);
}

function str(t: string, o: Record<string, unknown>, field: string, maxLen: number): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length > maxLen) fail(t, field, `a string of at most ${maxLen} characters`, v);
  return v;
}

function nick(t: string, o: Record<string, unknown>, field: string): string {
  const v = o[field];
  if (!isValidNickname(v)) fail(t, field, `at most ${MAX_NICKNAME_LENGTH} printable characters (no control characters)`, v);
  return v;
}

function bool(t: string, o: Record<string, unknown>, field: string): boolean {
  const v = o[field];
  if (typeof v !== 'boolean') fail(t, field, 'a boolean', v);
  return v;
}

function int(t: string, o: Record<string, unknown>, field: string, min: number, max: number): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    fail(t, field, `an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '2^53-1' : max}]`, v);
  }
  return v;
}

function peer(t: string, o: Record<string, unknown>, field: string): PeerName {
  const v = o[field];
  if (!isPeerName(v)) fail(t, field, 'a lowercase peer name like 8a:2b:3c:4d:5e:6f', v);
  return v;
}

function bytes(t: string, o: Record<string, unknown>, field: string): Uint8Array {
  const v = o[field];
  if (!(v instanceof Uint8Array)) fail(t, field, 'binary data', v);
  return v;
}

const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** An IPv6 prefix as ipam/ipv6.ts parseRange6 writes it (RFC 5952 lower case, /8../96). */
const RANGE6_RE = /^[0-9a-f:]{2,39}\/(\d{1,2})$/;

/** True for '' or an IPv6 prefix in canonical text, like "fd00:77::/64" (shape only). */
function isRange6String(s: string): boolean {
  if (s === '') return true;
  const m = RANGE6_RE.exec(s);
  return m !== null && s.split('::').length <= 2 && Number(m[1]) >= 8 && Number(m[1]) <= 96;
}

/**
 * Why a peer whose intro carries `peer` cannot join us, or undefined. The IPAM ranges
 * must match when both sides have one (one ring); so must the --ipalloc-range6 prefixes
 * (issue #21: a container's IPv6 address is the prefix + its IPv4 one, and the isolation
 * judges IPv6 by that prefix, so two prefixes in one mesh would only drop each other's
 * IPv6 traffic). Either side without a range6 (an older router, or IPv6 off) is accepted:
 * its containers have no IPv6, nothing is mis-delivered.
 */
export function rangeRefusal(ours: { range: string; range6?: string }, peer: { name: string; nickname: string; range: string; range6?: string }): string | undefined {
  if (ours.range && peer.range && peer.range !== ours.range) {
    return `IPAM range mismatch: peer ${peer.name}(${peer.nickname}) uses ${peer.range}, we use ${ours.range}; relaunch one of them with the same --ipalloc-range`;
  }
  if (ours.range6 && peer.range6 && peer.range6 !== ours.range6) {
    return `IPv6 range mismatch: peer ${peer.name}(${peer.nickname}) uses --ipalloc-range6 ${peer.range6}, we use ${ours.range6}; relaunch one of them with the same --ipalloc-range6`;
  }
  return undefined;
}

/** True for '' or an IPv4 CIDR like "10.32.0.0/12". */
function isRangeString(s: string): boolean {
  if (s === '') return true;
  const m = CIDR_RE.exec(s);
  if (!m) return false;
  for (let i = 1; i <= 4; i++) if (Number(m[i]) > 255) return false;
  return Number(m[5]) <= 32;
}

/**
 * Checks that `x` (a decoded msgpack value) is a well-formed control message and
 * returns a fresh copy holding only its known fields.
 * Limits: uid a non-negative safe integer; udpPort 1..65535; versions positive
 * integers (hello: minVersion ≤ maxVersion); nickname ≤ 255 chars, reason ≤ 1024,
 * channel ≤ 64 (non-empty); key material exactly 32 bytes; range '' or an IPv4 CIDR;
 * range6 '' or an IPv6 prefix /8../96 in lower-case text.
 * @throws ProtocolError naming the message type and the bad field.
 */
export function validateControlMessage(x: unknown): ControlMessage {
  if (!isRecord(x)) throw new ProtocolError('bad control message: want a map with a "t" field');
  const t = x['t'];
  switch (t) {
    case 'hello': {
      if (x['proto'] !== 'tsweave') fail(t, 'proto', '"tsweave"', x['proto']);
      const minVersion = int(t, x, 'minVersion', 1, 0xffff);
      const maxVersion = int(t, x, 'maxVersion', 1, 0xffff);
      if (minVersion > maxVersion) fail(t, 'maxVersion', `at least minVersion (${minVersion})`, maxVersion);
      return { t, proto: 'tsweave', minVersion, maxVersion, encrypted: bool(t, x, 'encrypted') };
    }
    case 'intro': {
      const msg: ControlMessage = {
        t,
        version: int(t, x, 'version', 1, 0xffff),
        name: peer(t, x, 'name'),
        nickname: nick(t, x, 'nickname'),
        uid: int(t, x, 'uid', 0, Number.MAX_SAFE_INTEGER),
        udpPort: int(t, x, 'udpPort', 1, 65535),
      };
      if (x['listenPort'] !== undefined) msg.listenPort = int(t, x, 'listenPort', 1, 65535);
      if (x['range'] !== undefined) {
        const range = str(t, x, 'range', 64);
        if (!isRangeString(range)) fail(t, 'range', "'' or an IPv4 CIDR like 10.32.0.0/12", range);
        msg.range = range;
      }
      if (x['range6'] !== undefined) {
        const range6 = str(t, x, 'range6', 64);
        if (!isRange6String(range6)) fail(t, 'range6', "'' or an IPv6 prefix like fd00:77::/64", range6);
        msg.range6 = range6;
      }
      return msg;
    }
    case 'hb':
      return { t };
    case 'udp-ok':
      return { t };
    case 'keys': {
      const material = bytes(t, x, 'material');
      if (material.length !== KEY_MATERIAL_BYTES) fail(t, 'material', `exactly ${KEY_MATERIAL_BYTES} bytes`, material);
      return x['trusted'] === undefined ? { t, material } : { t, material, trusted: bool(t, x, 'trusted') };
    }
    case 'gossip': {
      const channel = str(t, x, 'channel', MAX_CHANNEL_LENGTH);
      if (channel === '') fail(t, 'channel', 'a non-empty string', channel);
      const kind = x['kind'];
      if (kind !== 'full' && kind !== 'update' && kind !== 'unicast') fail(t, 'kind', '"full", "update" or "unicast"', kind);
      const src = peer(t, x, 'src');
      const payload = bytes(t, x, 'payload');
      const msg: ControlMessage = { t, channel, kind, src, payload };
      if (x['dst'] !== undefined) msg.dst = peer(t, x, 'dst');
      if (kind === 'unicast' && msg.dst === undefined) fail(t, 'dst', 'a peer name for a unicast gossip', undefined);
      return msg;
    }
    case 'bye':
      return { t, reason: str(t, x, 'reason', MAX_REASON_LENGTH) };
    default:
      throw new ProtocolError(`unknown control message type ${typeof t === 'string' ? JSON.stringify(t.slice(0, 40)) : String(t)}`);
  }
}
