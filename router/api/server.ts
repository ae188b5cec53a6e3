/**
 * The router's HTTP API: the `weave` CLI's only way in.
 *
 * Served on a unix socket in the state directory (every route; works from any
 * network namespace) and on 127.0.0.1:6784 inside the router's namespace (read-only
 * routes, browser checks: see policy.ts). JSON in, JSON out; an error is
 * `{ "error": "one line" }` with a 4xx/5xx status, which the CLI prints as is.
 * IPAM routes follow Weave's: POST/PUT/GET/DELETE /ip/<id>[/<addr>[/<len>]].
 * No CORS headers are ever sent.
 */
import http from 'node:http';
import { promises as fsp } from 'node:fs';
import { checkAccess, checkContentType, checkRoute, decodePath, type ListenerPolicy } from './policy.js';

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/**
 * A handler's answer sent as it is (status 200): these bytes as the body, with these
 * extra headers, instead of JSON (used by POST /cni/exec: the plugin's stdout verbatim).
 */
export class RawAnswer {
  constructor(readonly body: Buffer, readonly headers: Record<string, string>, readonly contentType = 'application/octet-stream') {}
}

export type Handler = (req: { method: string; path: string[]; query: URLSearchParams; body: unknown }) => Promise<unknown>;

interface Route {
  method: string;
  pattern: string[]; // literal segments, or ':name' / '*' (rest)
  handler: Handler;
}

const MAX_BODY = 1 << 20;

export class ApiServer {
  private readonly routes: Route[] = [];
  readonly servers: http.Server[] = [];
  /** Extra request handlers tried before the JSON routes (page, metrics); GET only. */
  readonly raw: Array<(req: http.IncomingMessage, res: http.ServerResponse) => boolean> = [];
  /** Requests refused by policy, per reason kind (access, route, content-type, url). */
  readonly refused: Record<string, number> = {};
  /** --api-insecure: TCP listeners serve every route to any peer and Host. */
  insecure = false;

  /**
   * False while the daemon is still starting its subsystems: every request then gets
   * 503 "the router is starting", so clients (and `weave launch`) wait for a router
   * that can answer everything.
   */
  ready = false;

  constructor(private readonly log: (l: string) => void) {}

  on(method: string, pattern: string, handler: Handler): void {
    this.routes.push({ method, pattern: pattern.split('/').filter(Boolean), handler });
  }

  private match(method: string, parts: string[]): { route: Route; params: string[] } | undefined {
    for (const r of this.routes) {
      if (r.method !== method) continue;
      const params: string[] = [];
      let ok = true;
      for (let i = 0; i < r.pattern.length; i++) {
        const p = r.pattern[i];
        if (p === '*') {
          params.push(parts.slice(i).join('/'));
          i = r.pattern.length;
          break;
        }
        if (i >= parts.length) {
          ok = false;
          break;
        }
        if (p.startsWith(':')) params.push(parts[i]);
        else if (p !== parts[i]) {
          ok = false;
          break;
        }
      }
      if (ok && (r.pattern.includes('*') || r.pattern.length === parts.length)) return { route: r, params };
    }
    return undefined;
  }

  /** Count a refusal of kind `kind` and answer it. */
  private refuse(res: http.ServerResponse, status: number, kind: string, reason: string): void {
    this.refused[kind] = (this.refused[kind] ?? 0) + 1;
    send(res, status, { error: reason });
  }

  /** The request handler of a listener with this policy. */
  handlerFor(policy: ListenerPolicy): (req: http.IncomingMessage, res: http.ServerResponse) => void {
    return (req, res) => this.handle(policy, req, res);
  }

  private handle(policy: ListenerPolicy, req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? 'GET';
    if (policy.kind === 'tcp') {
      const why = checkAccess(req.socket.remoteAddress ?? '?', req.headers.origin, req.headers.host, policy.insecure);
      if (why !== null) return this.refuse(res, 403, 'access', why);
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      return this.refuse(res, 400, 'url', 'malformed request URL');
    }
    const parts = decodePath(url.pathname);
    if (parts === null) return this.refuse(res, 400, 'url', `malformed %-escape in the URL path ${JSON.stringify(url.pathname.slice(0, 200))}`);
    const routeWhy = checkRoute(policy, method, url.pathname);
    if (routeWhy !== null) return this.refuse(res, 403, 'route', routeWhy);
    if (!this.ready) return send(res, 503, { error: 'the router is starting: try again in a moment' });
    if (method === 'GET' || method === 'HEAD') for (const h of this.raw) if (h(req, res)) return;
    const m = this.match(method, parts);
    if (!m) return send(res, 404, { error: `no such API endpoint: ${method} ${url.pathname}` });
    const declared = Number(req.headers['content-length'] ?? 0);
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const ctWhy = checkContentType(policy, method, req.headers['content-type'], declared > 0 || chunked);
    if (ctWhy !== null) return this.refuse(res, 415, 'content-type', ctWhy);
    if (declared > MAX_BODY) return this.refuse(res, 413, 'size', `request body over ${MAX_BODY} bytes`);
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      let body: unknown = undefined;
      if (chunks.length) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return send(res, 400, { error: 'request body is not valid JSON' });
        }
      }
      m.route.handler({ method, path: m.params, query: url.searchParams, body })
        .then((out) => {
          if (out instanceof RawAnswer) {
            res.writeHead(200, { ...out.headers, 'content-type': out.contentType, 'content-length': String(out.body.length) });
            res.end(out.body);
          } else if (typeof out === 'string') {
            res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
            res.end(out);
          } else send(res, 200, out ?? {});
        })
        .catch((err: Error) => {
          const status = err instanceof ApiError ? err.status : 400;
          send(res, status, { error: err.message.split('\n')[0] });
          if (!(err instanceof ApiError) && !/^[A-Z]?[a-z]/.test(err.message)) this.log(`api: ${req.method} ${url.pathname}: ${err.message}`);
        });
    });
  };

  /**
   * Listen on a unix socket, mode 0600 whatever the umask (created with umask 077,
   * so it is never reachable by others, not even briefly). Every route is served.
   */
  async listenUnix(file: string): Promise<void> {
    await fsp.unlink(file).catch(() => undefined);
    const s = http.createServer(this.handlerFor({ kind: 'unix', insecure: false }));
    const old = process.umask(0o077);
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(file, () => resolve());
      });
    } finally {
      process.umask(old);
    }
    await fsp.chmod(file, 0o600);
    this.servers.push(s);
  }

  /** Listen on TCP: read-only routes and browser checks unless `insecure` (policy.ts). */
  async listenTcp(host: string, port: number): Promise<http.Server | undefined> {
    const s = http.createServer(this.handlerFor({ kind: 'tcp', insecure: this.insecure }));
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, () => resolve());
      });
    } catch (err) {
      this.log(`api: cannot listen on ${host}:${port} (${(err as Error).message}); the unix socket still works`);
      return undefined;
    }
    this.servers.push(s);
    return s;
  }

  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => {
      s.close(() => r());
      s.closeAllConnections?.();
    })));
  }
}

export function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(text);
}

/** Read a field of a JSON body as a string array (peers, specs); throws 400 otherwise. */
export function stringList(body: unknown, field: string): string[] {
  const v = (body as Record<string, unknown> | undefined)?.[field];
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ApiError(400, `"${field}" must be a list of strings`);
  return v as string[];
}

export function stringField(body: unknown, field: string): string {
  const v = (body as Record<string, unknown> | undefined)?.[field];
  if (typeof v !== 'string' || !v) throw new ApiError(400, `"${field}" is required`);
  return v;
}

/** An optional string field of a JSON body (≤ 255 characters); undefined when absent; 400 otherwise. */
export function optionalString(body: unknown, field: string): string | undefined {
  const v = (body as Record<string, unknown> | undefined)?.[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length > 255) throw new ApiError(400, `"${field}" must be a string of at most 255 characters`);
  return v;
}
