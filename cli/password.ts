/**
 * The network password's minimum strength (pure). The password keys the Noise
 * handshake of every connection (router/crypto/keys.ts), and anyone who records one
 * handshake — or opens a connection to TCP 6783 — can test guesses offline against
 * it, at the speed scrypt allows (docs/SECURITY.md). So a guessable password is
 * refused up front rather than discovered later.
 */

/** Fewest characters accepted. */
export const MIN_PASSWORD_LENGTH = 12;
/** Fewest distinct characters accepted (refuses "aaaaaaaaaaaa", "121212121212"). */
export const MIN_DISTINCT = 6;

/** A one-line reason the password is too weak, or null when it is acceptable. */
export function passwordWeakness(pw: string): string | null {
  const chars = [...pw];
  if (chars.length < MIN_PASSWORD_LENGTH) return `the network password is too short (${chars.length} characters): use at least ${MIN_PASSWORD_LENGTH}, e.g. four random words`;
  if (new Set(chars).size < MIN_DISTINCT) return `the network password repeats too few characters (${new Set(chars).size} distinct): use at least ${MIN_DISTINCT} different ones, e.g. four random words`;
  return null;
}
