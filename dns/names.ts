/**
 * weaveDNS names: syntax checks and normal forms (RFC 1035 §2.3.1, RFC 4343), and the
 * registry's error type. Pure, with no imports, so `weave launch` can check
 * `--dns-domain` without loading the registry's codec (msgpackr alone costs the CLI
 * ~40–50 ms of start-up).
 */
export class DnsRegistryError extends Error {
  override name = 'DnsRegistryError';
}

/**
 * A value from outside, quoted for a one-line error: at most `max` characters, in
 * double quotes, with control characters (C0, DEL, C1) and line separators escaped as
 * \uXXXX, so a peer or a user cannot put a line break or terminal escape in our logs.
 */
export function shown(v: unknown, max = 80): string {
  return JSON.stringify(String(v).slice(0, max)).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const LABEL_RE = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** True for a dotted-quad IPv4 address ("10.32.0.5"). */
export function isIpv4(s: string): boolean {
  return IPV4_RE.test(s);
}

/**
 * Normalise a DNS name (RFC 1035 §2.3.1 syntax, RFC 4343 case-insensitivity): lower
 * case, trailing dot. A single label ("db") is qualified with `domain` ("weave.local.").
 * Returns undefined for anything that is not a valid name (empty labels, a label over 63
 * characters, a name over 253, characters outside [a-z0-9_-]).
 */
export function normaliseName(name: string, domain: string): string | undefined {
  if (typeof name !== 'string' || name.length === 0 || name.length > 254) return undefined;
  let n = name.toLowerCase();
  if (n.endsWith('.')) n = n.slice(0, -1);
  if (!n.includes('.')) n = `${n}.${domain.replace(/\.$/, '')}`;
  if (n.length > 253) return undefined;
  if (!n.split('.').every((l) => LABEL_RE.test(l))) return undefined;
  return n + '.';
}

/** Normalise a domain ("weave.local" → "weave.local."); throws a one-line DnsRegistryError. */
export function normaliseDomain(domain: string): string {
  const d = domain.toLowerCase().replace(/\.$/, '');
  if (!d || d.length > 200 || !d.split('.').every((l) => LABEL_RE.test(l))) {
    throw new DnsRegistryError(`invalid DNS domain ${shown(domain)}: want dot-separated labels like weave.local.`);
  }
  return d + '.';
}
