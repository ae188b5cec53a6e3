/**
 * Who may use the router's HTTP API, decided per request (pure).
 *
 * The API has two kinds of listener (router/api/server.ts):
 *  - the unix socket `$WEAVE_STATE_DIR/weaver.sock`, mode 0600 owned by root in a
 *    0700 directory: the kernel's file permissions authenticate the caller (root),
 *    and no browser can open it. Every route is served there.
 *  - loopback TCP (`--api-addr`, default 127.0.0.1:6784): any local user and any web
 *    page a local browser shows can reach it. It serves only read-only routes
 *    (`TCP_READ_ONLY`), and only to requests whose `Host` is a loopback literal or
 *    `localhost` (which defeats DNS rebinding: a rebinding page's requests carry its
 *    own name in Host) and whose `Origin`, when present, is the same origin (which
 *    stops a page served from anywhere else, including another local port, from
 *    reading answers). `--api-insecure` keeps Weave's behaviour — every route over
 *    TCP, on any address — for users who accept an unauthenticated root API.
 *
 * Cross-site request forgery needs no answer to do harm (a no-cors POST), so the
 * rule for mutations is simply: not over TCP. Where they are allowed over TCP
 * (--api-insecure), they must carry `Content-Type: application/json`, which a
 * browser cannot send cross-origin without a CORS preflight this API never grants.
 */
import { isIP } from 'node:net';

/** Paths served over TCP (GET/HEAD only): status, report, metrics, the live page and its events. */
export const TCP_READ_ONLY = new Set(['/', '/status', '/report', '/metrics', '/events']);

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (brackets allowed). */
export function isLoopbackAddress(addr: string): boolean {
  const a = addr.toLowerCase().replace(/^\[|\]$/g, '');
  if (a === '::1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/** True when `hostport` ("h", "h:port", "[v6]:port") names a loopback literal or localhost. */
export function isLoopbackHost(hostport: string): boolean {
  let u: URL;
  try {
    u = new URL(`http://${hostport}`);
  } catch {
    return false;
  }
  if (u.username || u.password || u.pathname !== '/' || u.search || u.hash || hostport.includes('@')) return false;
  const h = u.hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || isLoopbackAddress(h);
}

/**
 * Browser-facing checks for one TCP request; null when allowed, else a one-line
 * reason (answered with 403). `remoteAddress` undefined means the unix socket,
 * which is always allowed. With `insecure` (--api-insecure), the peer and Host may
 * be anything, but a present Origin must still be same-origin.
 */
export function checkAccess(remoteAddress: string | undefined, origin: string | undefined, host: string | undefined, insecure = false): string | null {
  if (remoteAddress === undefined || remoteAddress === '') return null;
  if (!insecure) {
    if (!isLoopbackAddress(remoteAddress)) return `remote address ${remoteAddress} is not loopback`;
    if (host === undefined || !isLoopbackHost(host)) return `Host ${JSON.stringify(host ?? '')} is not a loopback address or localhost (possible DNS rebinding)`;
  }
  if (origin === undefined) return null;
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return `malformed Origin ${JSON.stringify(origin)}`;
  }
  if (o.protocol !== 'http:' && o.protocol !== 'https:') return `Origin ${origin} is not http(s)`;
  if (host === undefined || o.protocol !== 'http:' || o.host !== host.toLowerCase()) return `Origin ${origin} is not same-origin`;
  return null;
}

/** What a listener allows. */
export interface ListenerPolicy {
  kind: 'unix' | 'tcp';
  /** --api-insecure: every route over TCP, any peer and Host. */
  insecure: boolean;
}

/**
 * Whether `method path` may be served on this listener; null when allowed, else a
 * one-line reason (403). Unix socket: everything.
 */
export function checkRoute(policy: ListenerPolicy, method: string, path: string): string | null {
  if (policy.kind === 'unix' || policy.insecure) return null;
  if ((method === 'GET' || method === 'HEAD') && TCP_READ_ONLY.has(path)) return null;
  return `${method} ${path} is served only on the router's unix socket (the weave command uses it); over TCP the API is read-only (--api-insecure changes that, dangerously)`;
}

/**
 * Whether a request's Content-Type is acceptable; null when it is, else a reason
 * (415). Over TCP every non-GET request must be JSON; on the unix socket a body, if
 * any, must be JSON (body-less calls like Weave's `curl -X POST …/ip/ID` work).
 */
export function checkContentType(policy: ListenerPolicy, method: string, contentType: string | undefined, hasBody: boolean): string | null {
  if (method === 'GET' || method === 'HEAD') return null;
  const json = contentType !== undefined && /^application\/json\s*(;|$)/i.test(contentType);
  if (json) return null;
  if (policy.kind === 'unix' && !hasBody && contentType === undefined) return null;
  return `${method} requests must have Content-Type: application/json`;
}

/** Decode URL path segments; null when a %-escape is malformed. */
export function decodePath(pathname: string): string[] | null {
  try {
    return pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return null;
  }
}
