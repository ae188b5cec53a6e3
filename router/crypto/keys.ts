/**
 * Key derivation for the network password, the Noise prologue and the sleeve's
 * per-direction session keys. Pure functions over Node's crypto (scrypt,
 * HKDF-SHA256, CSPRNG); no sockets, timers or files.
 *
 * Key hierarchy:
 *
 *   network = { ipamRange, name }
 *   salt = SHA-256("tsweave-v2 network password" ‖ 0 ‖ name ‖ 0 ‖ ipamRange)
 *   password ──scrypt(salt)──► passwordKey (32 B)
 *   passwordKey ──HKDF(info "tsweave noise prologue v1")──► Noise prologue
 *   passwordKey ‖ sorted(material A, material B)
 *       ──HKDF(info "tsweave sleeve v1 A->B")──► A's send key = B's receive key
 *       ──HKDF(info "tsweave sleeve v1 B->A")──► B's send key = A's receive key
 *   epoch key k ──HKDF(info "tsweave sleeve v1 ratchet")──► key of the next epoch
 *
 * The constants in the salt and info strings carry a version: changing any
 * parameter means a new version string, so routers built with different
 * derivations fail the handshake instead of silently disagreeing on keys.
 */
import { createHash, hkdfSync, randomBytes, scrypt } from 'node:crypto';

/** Length of every key this module produces, in bytes (ChaCha20-Poly1305 key size). */
export const KEY_BYTES = 32;

/** Domain-separation prefix of the scrypt salt; the version changes with the derivation. */
export const PASSWORD_SALT_PREFIX = 'tsweave-v2 network password';

/**
 * What makes one tsweave network's salt differ from another's: values every router of
 * the network is launched with anyway, so no secret beyond the password is needed.
 */
export interface NetworkId {
  /** The IPAM range (--ipalloc-range, e.g. "10.32.0.0/12"; '' when IPAM is off). */
  ipamRange: string;
  /** Optional network name (WEAVE_NETWORK_NAME at launch; '' by default). */
  name?: string;
}

/**
 * The scrypt salt for `net` (32 bytes): SHA-256 over the prefix, the name and the
 * range, NUL-separated so that ("a", "b/c") and ("a\0b", "c") differ. Public, like
 * every salt; its job is that a dictionary precomputed against one network is useless
 * against another (RFC 7914 §1 / RFC 8018 §4.1 on salts).
 */
export function passwordSalt(net: NetworkId): Buffer {
  return createHash('sha256')
    .update(PASSWORD_SALT_PREFIX).update('\0')
    .update(net.name ?? '', 'utf8').update('\0')
    .update(net.ipamRange, 'utf8')
    .digest();
}

/**
 * scrypt cost (RFC 7914): N = 2^15, r = 8, p = 1 needs 128·N·r = 32 MiB and
 * takes roughly 50–100 ms here. That is paid once per router start, but makes
 * each guess of an offline dictionary attack (possible for anyone who runs one
 * handshake against us, since the prologue check happens at message 2) just as
 * slow.
 */
export const SCRYPT_PARAMS = { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;

const PROLOGUE_INFO = 'tsweave noise prologue v1';
const SLEEVE_INFO_PREFIX = 'tsweave sleeve v1 ';
const RATCHET_INFO = 'tsweave sleeve v1 ratchet';

/** Bad input to a key-derivation function (wrong length, empty password, identical names). */
export class KeyDerivationError extends Error {
  override name = 'KeyDerivationError';
}

/**
 * Derive the 32-byte network key from the user's password with scrypt
 * (parameters in SCRYPT_PARAMS, salt passwordSalt(net)). Routers agree on the key
 * only if they share the password, the IPAM range and the network name. A string is encoded as
 * UTF-8 exactly as given (no trimming or normalisation: strip a password
 * file's trailing newline before calling).
 *
 * @throws KeyDerivationError if the password is empty.
 */
export function passwordKey(password: Buffer | string, net: NetworkId): Promise<Buffer> {
  const bytes = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  if (bytes.length === 0) {
    return Promise.reject(new KeyDerivationError('network password is empty'));
  }
  return new Promise((resolve, reject) => {
    scrypt(bytes, passwordSalt(net), KEY_BYTES, SCRYPT_PARAMS, (err, key) => {
      if (err) reject(err);
      else resolve(key);
    });
  });
}

/** 32 bytes from the OS CSPRNG: each side's contribution to the session keys. */
export function randomKeyMaterial(): Buffer {
  return randomBytes(KEY_BYTES);
}

function hkdf(ikm: Buffer, info: string): Buffer {
  // RFC 5869 with an empty salt (HKDF then uses a zero-filled salt): the ikm is
  // already uniformly random key material, and the info strings separate uses.
  return Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), info, KEY_BYTES));
}

function requireKey(what: string, b: Buffer): void {
  if (!Buffer.isBuffer(b) || b.length !== KEY_BYTES) {
    throw new KeyDerivationError(`${what} must be ${KEY_BYTES} bytes, got ${Buffer.isBuffer(b) ? b.length : typeof b}`);
  }
}

/**
 * The value to pass as the Noise prologue (see noise.ts): a domain-separated
 * hash of the password key, so the scrypt output itself is used only as HKDF
 * input. Peers whose prologues differ fail the Noise handshake at message 2.
 *
 * @throws KeyDerivationError if passwordKey is not 32 bytes.
 */
export function handshakePrologue(passwordKeyBytes: Buffer): Buffer {
  requireKey('password key', passwordKeyBytes);
  return hkdf(passwordKeyBytes, PROLOGUE_INFO);
}

/**
 * Per-direction sleeve keys for one connection (HKDF-SHA256, RFC 5869).
 *
 * ikm = passwordKey ‖ min(local, remote material) ‖ max(...) (byte order), so
 * both ends compute the same ikm; info = "tsweave sleeve v1 <from>-><to>"
 * binds the direction. Hence A.sendKey == B.recvKey, A.recvKey == B.sendKey,
 * and the two directions never share a key (so a datagram reflected back at its
 * sender does not verify). The materials travel over the Noise channel, so the
 * keys stay secret even to someone who knows the password.
 *
 * @param opts.passwordKey 32 bytes from passwordKey()
 * @param opts.localMaterial our 32 random bytes (randomKeyMaterial())
 * @param opts.remoteMaterial the peer's 32 bytes, received over the secure channel
 * @param opts.localName / remoteName peer names (e.g. "aa:bb:cc:dd:ee:ff"); must differ
 * @throws KeyDerivationError on wrong lengths, empty or identical names.
 */
export function deriveSessionKeys(opts: {
  passwordKey: Buffer;
  localMaterial: Buffer;
  remoteMaterial: Buffer;
  localName: string;
  remoteName: string;
}): { sendKey: Buffer; recvKey: Buffer } {
  requireKey('password key', opts.passwordKey);
  requireKey('local key material', opts.localMaterial);
  requireKey('remote key material', opts.remoteMaterial);
  if (typeof opts.localName !== 'string' || opts.localName.length === 0 ||
      typeof opts.remoteName !== 'string' || opts.remoteName.length === 0) {
    throw new KeyDerivationError('peer names for session keys must be non-empty strings');
  }
  if (opts.localName === opts.remoteName) {
    throw new KeyDerivationError(`local and remote peer names are both ${opts.localName}: send and receive keys would coincide`);
  }
  const [lo, hi] = Buffer.compare(opts.localMaterial, opts.remoteMaterial) <= 0
    ? [opts.localMaterial, opts.remoteMaterial]
    : [opts.remoteMaterial, opts.localMaterial];
  const ikm = Buffer.concat([opts.passwordKey, lo, hi]);
  try {
    return {
      sendKey: hkdf(ikm, `${SLEEVE_INFO_PREFIX}${opts.localName}->${opts.remoteName}`),
      recvKey: hkdf(ikm, `${SLEEVE_INFO_PREFIX}${opts.remoteName}->${opts.localName}`),
    };
  } finally {
    ikm.fill(0);
  }
}

/**
 * The key of the next key epoch: HKDF-SHA256(key, info "tsweave sleeve v1
 * ratchet"). Sender and receiver step the same one-way ratchet, so a re-key
 * needs no message exchange, and a key that leaks later does not expose traffic
 * sealed under earlier epochs.
 *
 * @throws KeyDerivationError if key is not 32 bytes.
 */
export function nextEpochKey(key: Buffer): Buffer {
  requireKey('epoch key', key);
  return hkdf(key, RATCHET_INFO);
}
