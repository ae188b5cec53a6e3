/**
 * The router's HTTP API: the `weave` CLI's only way in.
 *
 * Served on a unix socket in the state directory (works from any network namespace)
 * and on 127.0.0.1:6784 inside the router's namespace. JSON in, JSON out; an error is
 * `{ "error": "one line" }` with a 4xx/5xx status, which the CLI prints as is.
 * IPAM routes follow Weave's: POST/PUT/GET/DELETE /ip/<id>[/<addr>[/<len>]].
 */
import http from 'node:http';
import { promises as fsp } from 'node:fs';

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
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
  /** Extra request handlers tried before the JSON routes (page, metrics). */
  readonly raw: Array<(req: http.IncomingMessage, res: http.ServerResponse) => boolean> = [];

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

  readonly handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!this.ready) return send(res, 503, { error: 'the router is starting: try again in a moment' });
    for (const h of this.raw) if (h(req, res)) return;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const m = this.match(req.method ?? 'GET', parts);
    if (!m) return send(res, 404, { error: `no such API endpoint: ${req.method} ${url.pathname}` });
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
      m.route.handler({ method: req.method ?? 'GET', path: m.params, query: url.searchParams, body })
        .then((out) => {
          if (typeof out === 'string') {
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

  async listenUnix(file: string): Promise<void> {
    await fsp.unlink(file).catch(() => undefined);
    const s = http.createServer(this.handle);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(file, () => resolve());
    });
    await fsp.chmod(file, 0o600).catch(() => undefined);
    this.servers.push(s);
  }

  async listenTcp(host: string, port: number): Promise<http.Server | undefined> {
    const s = http.createServer(this.handle);
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
