/**
 * Peer names: every router is identified by a 48-bit name written like a MAC
 * address ("aa:bb:cc:dd:ee:ff"), as in Weave Net, where the default name is
 * derived from the MAC of the bridge. The control plane (gossip, topology,
 * routes) uses the canonical lowercase string form; the data path (sleeve
 * datagrams, MAC cache) uses the same 48 bits as a JS number, which is exact
 * because 48 < 53 bits of double precision.
 */
import { randomBytes } from 'node:crypto';

/** Canonical peer name: lowercase, six two-digit hex bytes separated by ':'. */
export type PeerName = string;

/** Numeric peer 0 means "broadcast" in the destination field of a sleeve frame record. */
export const BROADCAST_PEER_NUM = 0;

/** Largest numeric peer name (2^48 - 1). */
export const MAX_PEER_NUM = 0xffff_ffff_ffff;

/** Raised for a string or number that is not a valid 48-bit peer name. */
export class PeerNameError extends Error {
  override name = 'PeerNameError';
}

const PEER_NAME_RE = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;
const CANONICAL_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/**
 * Parses a peer name given in either case and returns its canonical lowercase form.
 * @throws PeerNameError when `s` is not six ':'-separated hex byte pairs.
 */
export function parsePeerName(s: string): PeerName {
  if (typeof s !== 'string' || !PEER_NAME_RE.test(s)) {
    const shown = typeof s === 'string' ? s.slice(0, 64) : String(s);
    throw new PeerNameError(`invalid peer name ${JSON.stringify(shown)}: want 6 hex bytes like 8a:2b:3c:4d:5e:6f`);
  }
  return s.toLowerCase();
}

/** True iff `s` is a peer name already in canonical (lowercase) form. */
export function isPeerName(s: unknown): s is PeerName {
  return typeof s === 'string' && CANONICAL_RE.test(s);
}

/**
 * A random peer name with the IEEE "locally administered" bit (bit 1 of the first
 * byte) set and the group bit (bit 0) clear, so it never collides with a vendor
 * MAC and is never zero (zero is the broadcast destination in the sleeve codec).
 */
export function randomPeerName(): PeerName {
  const b = randomBytes(6);
  b[0] = (b[0]! | 0x02) & 0xfe;
  return numToPeerName(b.readUIntBE(0, 6));
}

/** The 48-bit integer value of a peer name (first byte most significant). */
export function peerNameToNum(n: PeerName): number {
  const canonical = parsePeerName(n);
  return parseInt(canonical.replace(/:/g, ''), 16);
}

/**
 * Formats a 48-bit integer as a canonical peer name.
 * @throws PeerNameError when `n` is not an integer in [0, 2^48).
 */
export function numToPeerName(n: number): PeerName {
  if (!Number.isInteger(n) || n < 0 || n > MAX_PEER_NUM) {
    throw new PeerNameError(`invalid numeric peer name ${n}: want an integer in [0, 2^48)`);
  }
  const hex = n.toString(16).padStart(12, '0');
  return `${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}:${hex.slice(6, 8)}:${hex.slice(8, 10)}:${hex.slice(10, 12)}`;
}

export const MAX_NICKNAME_LENGTH = 255;

/**
 * Characters a nickname may not hold: C0 controls and DEL (terminal escapes, line
 * breaks), C1 controls (8-bit CSI/OSC), Unicode line/paragraph separators and bidi
 * embedding/override/isolate marks (which reorder what a terminal shows).
 */
const NICKNAME_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * True if `s` is an acceptable peer nickname: 0..255 UTF-16 code units, none of them
 * a control character, line separator or bidi control (NICKNAME_FORBIDDEN), and no
 * lone surrogate. Nicknames are shown in `weave status`; this keeps a peer from
 * writing terminal escape sequences there.
 */
export function isValidNickname(s: unknown): s is string {
  return typeof s === 'string' && s.length <= MAX_NICKNAME_LENGTH && !NICKNAME_FORBIDDEN.test(s) && !LONE_SURROGATE.test(s);
}
