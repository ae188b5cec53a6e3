/**
 * The sleeve's AEAD in C (overlay/native/sleeve-aead.h inside the UDP addon):
 * ChaCha20-Poly1305 per RFC 8439 from OpenSSL's EVP interface (libcrypto),
 * exactly the wire format of
 * router/crypto/aead.ts, using the SAME counter (Sealer.sharedState) and the
 * SAME current-epoch replay window and outcome counters (Opener.sharedState)
 * as the JS Sealer/Opener. So JS and C can seal and open datagrams of one
 * connection interleaved: no nonce repeats, a replay is caught whichever side
 * saw the original, and `Opener.stats` counts both.
 *
 * This is the building block for flows of encrypted peers in the native flow
 * caches; here it is callable from JS (tests, benchmarks).
 */
import { AEAD_OVERHEAD, AeadError, type Opener, type Sealer } from '../crypto/aead.js';
import { loadAddon } from './native-addon.js';

interface AeadAddon {
  aeadSeal(st: Buffer, key: Buffer, header: Buffer, plain: Buffer, pStart: number, pEnd: number, out: Buffer): number;
  aeadOpen(st: Buffer, key: Buffer, d: Buffer, start: number, end: number, out: Buffer): number;
}

/** Native open result: the datagram carries another key epoch than the current one (handled by the JS Opener). */
export const NATIVE_PUNT = -5;

function addon(): AeadAddon {
  return loadAddon<AeadAddon>('udp', 'UDP');
}

/**
 * Seal like `Sealer.seal` (same arguments, same result), but in C.
 * @throws AeadError when the counter is exhausted (re-key first), out is too
 *   small or OpenSSL fails to allocate (the counter is then not consumed);
 *   AddonMissing when the UDP addon is not built.
 */
export function nativeSeal(sealer: Sealer, header: Buffer, plaintext: Buffer, pStart: number, pEnd: number, out: Buffer): number {
  const r = addon().aeadSeal(sealer.sharedState, sealer.currentKey, header, plaintext, pStart, pEnd, out);
  if (r === -1) throw new AeadError('sleeve sequence counter exhausted; rekey() first');
  if (r === -2) throw new AeadError(`output buffer of ${out.length} bytes too small for ${pEnd - pStart + AEAD_OVERHEAD}-byte datagram`);
  if (r < 0) throw new AeadError('native seal failed (OpenSSL could not set up a cipher context)');
  return r;
}

/**
 * Open like `Opener.open` (same arguments, same results and counters): the
 * current epoch is verified in C against the shared replay window; datagrams
 * of any other epoch go to the JS Opener (which may promote the next epoch).
 */
export function nativeOpen(opener: Opener, datagram: Buffer, start: number, end: number, out: Buffer): number {
  const r = addon().aeadOpen(opener.sharedState, opener.currentKey, datagram, start, end, out);
  return r === NATIVE_PUNT ? opener.open(datagram, start, end, out) : r;
}

/** The raw native open (no fall-back to JS): returns NATIVE_PUNT for other epochs. For tests and the flow caches. */
export function nativeOpenCurrent(opener: Opener, datagram: Buffer, start: number, end: number, out: Buffer): number {
  return addon().aeadOpen(opener.sharedState, opener.currentKey, datagram, start, end, out);
}
