/**
 * A minimal client of the real Docker daemon, used by the proxy for the few
 * calls it makes on its own behalf (image and container inspect, container
 * lists, the event stream). Every call opens its own connection (no agent):
 * the daemon is local and this keeps half-finished streams from poisoning a pool.
 */
import http from 'node:http';
import { parseDockerAddress, type DockerAddress, formatDockerAddress } from './intercept.js';

/** The daemon could not be reached (socket missing, connection refused, reset before a response). */
export class DaemonUnreachableError extends Error {
  override name = 'DaemonUnreachableError';
}

/** A daemon answer that is not the JSON the caller asked for. */
export class DaemonResponseError extends Error {
  override name = 'DaemonResponseError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Error codes that mean "nobody is listening there" rather than "the request went wrong". */
const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'ENOTSOCK', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'EADDRNOTAVAIL']);

/** Whether a socket error from connecting to the daemon means it is down or unreachable. */
export function isUnreachable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && UNREACHABLE_CODES.has(code);
}

/** Client of one Docker daemon address (`unix:///path` or `tcp://host:port`). */
export class DockerClient {
  readonly address: DockerAddress;
  /** The address as the user wrote it, for messages. */
  readonly display: string;

  /** @throws ProxyAddressError for an address that is not unix:// or tcp://. */
  constructor(address: string) {
    this.address = parseDockerAddress(address);
    this.display = address.startsWith('/') ? formatDockerAddress(this.address) : address;
  }

  /** Connection options for node:http `request` (socketPath or host/port), without an agent. */
  connectOptions(): http.RequestOptions {
    const a = this.address;
    return a.kind === 'unix' ? { socketPath: a.path, agent: false } : { host: a.host, port: a.port, agent: false };
  }

  /**
   * Docker's wording for a daemon that cannot be reached, naming the address and the cause:
   * "Cannot connect to the Docker daemon at unix:///var/run/docker.sock: connect ENOENT. Is the docker daemon running?"
   */
  unreachableMessage(err: unknown): string {
    const e = err as { code?: unknown; syscall?: unknown; message?: unknown } | null;
    const cause =
      typeof e?.code === 'string' ? `${typeof e.syscall === 'string' ? `${e.syscall} ` : ''}${e.code}` : String(e?.message ?? err);
    return `Cannot connect to the Docker daemon at ${this.display}: ${cause}. Is the docker daemon running?`;
  }

  /**
   * One request with a small body, answered with a small body.
   * @param timeoutMs bound on the whole exchange.
   * @returns status and raw body (up to `maxBytes`, default 8 MiB).
   * @throws DaemonUnreachableError when the daemon cannot be reached; Error on timeout or an oversized answer.
   */
  request(
    method: string,
    path: string,
    body?: Buffer,
    timeoutMs = 30_000,
    maxBytes = 8 << 20,
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { Host: 'docker' };
      if (body) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(body.length);
      }
      const req = http.request({ ...this.connectOptions(), method, path, headers });
      const timer = setTimeout(() => req.destroy(new Error(`Docker daemon at ${this.display} did not answer ${method} ${path} within ${timeoutMs} ms`)), timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(isUnreachable(err) ? new DaemonUnreachableError(this.unreachableMessage(err)) : err);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            req.destroy(new Error(`Docker daemon answer to ${method} ${path} is larger than ${maxBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', () => {}); // reported through req's 'error'
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
      });
      req.end(body);
    });
  }

  /**
   * GET a JSON document. `null` for 404.
   * @throws DaemonUnreachableError; DaemonResponseError for another non-200 status or a body that is not JSON.
   */
  async getJson(path: string, timeoutMs?: number): Promise<unknown | null> {
    const r = await this.request('GET', path, undefined, timeoutMs);
    if (r.status === 404) return null;
    if (r.status !== 200) {
      throw new DaemonResponseError(`GET ${path}: daemon answered ${r.status}: ${errorMessageOf(r.body)}`, r.status);
    }
    try {
      return JSON.parse(r.body.toString('utf8'));
    } catch {
      throw new DaemonResponseError(`GET ${path}: daemon answered with a body that is not JSON`, r.status);
    }
  }
}

/** The `message` of a Docker JSON error body, or the body text itself (one line, bounded). */
export function errorMessageOf(body: Buffer): string {
  const text = body.toString('utf8');
  try {
    const j = JSON.parse(text) as { message?: unknown };
    if (typeof j.message === 'string') return j.message;
  } catch {
    // not JSON: fall through
  }
  return text.replace(/\s+/g, ' ').trim().slice(0, 200);
}
