/**
 * The Docker API proxy: a transparent HTTP/1.1 forwarder in front of the real
 * Docker daemon that puts containers on the weave network as they start
 * (Weave Net's `weave env` / weaveproxy, rebuilt on node:http).
 *
 * - Every request is forwarded unchanged and streamed both ways (chunked and
 *   length-delimited bodies, read-until-close raw streams, `logs -f`, `events`).
 * - Requests carrying `Connection: Upgrade` (`attach`, `exec start`, BuildKit's
 *   `/session` and `/grpc`) become a raw bidirectional tunnel to the daemon,
 *   including half-closes, so `docker run -i`/`-t`, `attach` and `exec -it` work.
 * - `POST /containers/create` is rewritten (see `planCreate`) to start the
 *   container through weavewait, bind-mounted at `/w/w`.
 * - `POST /containers/ID/start|restart`: once the daemon has started the
 *   process (blocked in weavewait), the proxy inspects it and calls the
 *   attacher, then answers the client.
 * - The daemon's event stream (re-subscribed with backoff) attaches
 *   containers started behind the proxy's back (restart policies, a daemon
 *   restart) and releases every destroyed container's addresses; each
 *   (re)subscription re-attaches running weavewait containers and releases
 *   known ones that vanished meanwhile.
 * - An unreachable daemon gives HTTP 502 with Docker's one-line JSON error
 *   naming the daemon address; the proxy keeps serving.
 */
import fs, { readFileSync, promises as fsp } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DaemonUnreachableError, DockerClient, isUnreachable } from './docker-client.js';
import {
  CreateBodyError,
  exposedTcpAddress,
  formatDockerAddress,
  networkModeSkipsAttach,
  parseDockerAddress,
  parseJsonKeepingNumbers,
  planCreate,
  planStart,
  routeRequest,
  stringifyJsonKeepingNumbers,
  type ContainerInspect,
  type DockerAddress,
  type ImageConfig,
} from './intercept.js';
import { ProxyAddressError, WeaveCidrError, type ProxyHandle, type ProxyOptions } from './types.js';
import { loadProxyTls } from './tls.js';

export type { ProxyAttacher, ProxyHandle, ProxyOptions } from './types.js';

/** Largest create request body the proxy will parse (Docker's are a few KiB). */
const MAX_CREATE_BODY = 16 << 20;
/** Largest start/restart answer buffered while attaching (they are empty or one JSON line). */
const MAX_START_ANSWER = 1 << 20;
/** Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus what we recompute. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']);

/** One line of Docker-style JSON error: `{"message":"..."}`. */
function jsonError(message: string): string {
  return `${JSON.stringify({ message })}\n`;
}

function sendError(res: http.ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = jsonError(message);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** Read a whole request body, bounded. @throws Error when it exceeds `max` bytes or the client goes away. */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new Error(`request body larger than ${max} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('aborted', () => reject(new Error('client aborted the request')));
  });
}

/** Raw headers minus hop-by-hop ones (and optionally the body framing), as a flat [k, v, k, v] list. */
function forwardHeaders(raw: string[], dropFraming: boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (HOP_BY_HOP.has(k)) continue;
    if (dropFraming && (k === 'content-length' || k === 'transfer-encoding')) continue;
    out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** Headers for http.request: a flat list is accepted at runtime but not by the typings. */
function asHeaderList(flat: string[]): http.OutgoingHttpHeaders {
  return flat as unknown as http.OutgoingHttpHeaders;
}

/** The attacher failed for the process `pid`. */
class AttachFailedError extends Error {
  override name = 'AttachFailedError';
  constructor(
    message: string,
    readonly pid: number,
  ) {
    super(message);
  }
}

export { exposedTcpAddress } from './intercept.js';

/** The gid of the `docker` group from /etc/group, if it exists. */
function dockerGid(): number | undefined {
  try {
    const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith('docker:'));
    const gid = line ? Number(line.split(':')[2]) : NaN;
    return Number.isInteger(gid) ? gid : undefined;
  } catch {
    return undefined;
  }
}

/** The proxy's unix socket: 0660 owned by root:docker when that group exists (as docker.sock), else 0600. */
async function restrictSocket(p: string): Promise<void> {
  const gid = dockerGid();
  if (gid !== undefined) {
    await fsp.chown(p, 0, gid);
    await fsp.chmod(p, 0o660);
  } else {
    await fsp.chmod(p, 0o600);
  }
}

/** Start the proxy. @throws ProxyAddressError for a bad address; Error when a listen address is taken. */
export async function startProxy(opts: ProxyOptions): Promise<ProxyHandle> {
  const docker = new DockerClient(opts.dockerHost);
  const log = (line: string): void => {
    try {
      opts.log(line);
    } catch {
      // a failing logger must not take the proxy down
    }
  };
  const listenAddrs = opts.listen.map(parseDockerAddress);
  if (listenAddrs.length === 0) throw new ProxyAddressError('proxy: no listen address given');
  const tlsMode = opts.tls ? (opts.tls.verify ? 'verify' : 'tls') : undefined;
  for (const a of listenAddrs) {
    const why = exposedTcpAddress(a, opts.insecureTcp === true, tlsMode);
    if (why) throw new ProxyAddressError(why);
  }
  if (opts.tls && !listenAddrs.some((a) => a.kind === 'tcp')) {
    throw new ProxyAddressError('proxy: --tls/--tlsverify apply to -H tcp:// addresses, and none was given');
  }
  // [tls] Files read once, now; a failure is one line naming the flag and path.
  const tlsCfg = opts.tls ? loadProxyTls(opts.tls) : undefined;
  let tlsRefused = 0;
  let tlsRefusedLogged = 0;

  let closed = false;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };

  // ---- attachment bookkeeping ----------------------------------------------
  /** Containers attached in this proxy's life: id → pid attached and the attach in flight or done. */
  const attached = new Map<string, { pid: number; done: Promise<string[] | null> }>();

  /**
   * Inspect a container and attach it if it runs weavewait. Concurrent calls
   * for the same process share one attach. Resolves to the CIDRs, or null when
   * the container is not to be attached.
   */
  async function ensureAttached(ref: string): Promise<string[] | null> {
    const c = (await docker.getJson(`/containers/${encodeURIComponent(ref)}/json`)) as ContainerInspect | null;
    if (c === null) return null;
    const plan = planStart(c, opts.dns?.domain);
    if (plan.action === 'skip') return null;
    const prev = attached.get(plan.id);
    if (prev && prev.pid === plan.pid) return prev.done;
    const done = opts.attacher.attach(plan.id, plan.pid, plan.specs, plan.name ? { name: plan.name } : undefined).then(
      (cidrs) => {
        log(`proxy: attached container ${plan.id.slice(0, 12)} (pid ${plan.pid}) to weave: ${cidrs.join(' ') || '(no address)'}`);
        return cidrs;
      },
      (err: unknown) => {
        if (attached.get(plan.id)?.done === done) attached.delete(plan.id);
        throw new AttachFailedError((err as Error)?.message ?? String(err), plan.pid);
      },
    );
    attached.set(plan.id, { pid: plan.pid, done });
    return done;
  }

  /**
   * Whether the container still runs the process `pid` (false also when it cannot be
   * inspected). Asked twice, 300 ms apart: the daemon notices an exit a little after the
   * process is gone, and an attach that failed because the process vanished is not an
   * error to report.
   */
  async function stillRuns(ref: string, pid: number): Promise<boolean> {
    for (let i = 0; i < 2; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 300));
      try {
        const c = (await docker.getJson(`/containers/${encodeURIComponent(ref)}/json`)) as ContainerInspect | null;
        if (!(c?.State?.Running === true && c.State.Pid === pid)) return false;
      } catch {
        return false;
      }
    }
    return fs.existsSync(`/proc/${pid}`);
  }

  async function release(id: string): Promise<void> {
    attached.delete(id);
    try {
      await opts.attacher.release(id);
    } catch (err) {
      log(`proxy: releasing addresses of container ${id.slice(0, 12)} failed: ${(err as Error).message}`);
    }
  }

  // ---- forwarding ----------------------------------------------------------
  /**
   * Send the client's request to the daemon with `body` (a rewritten buffer) or
   * the client's own body streamed. Resolves with the daemon's response head.
   * @throws DaemonUnreachableError when the daemon cannot be reached.
   */
  function toDaemon(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer | null): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers = forwardHeaders(req.rawHeaders, body !== null);
      if (body !== null) headers.push('Content-Length', String(body.length));
      // With "Connection: close" the daemon may answer and close before Node's
      // final (empty) body write, which then fails with EPIPE and loses the answer.
      headers.push('Connection', 'keep-alive');
      const up = http.request({
        ...docker.connectOptions(),
        method: req.method,
        path: req.url,
        headers: asHeaderList(headers),
        setHost: false,
      });
      let answered = false;
      let connected = false;
      up.on('socket', (s) => s.once('connect', () => (connected = true)));
      up.on('error', (err) => {
        if (answered) return;
        if (!connected && isUnreachable(err)) reject(new DaemonUnreachableError(docker.unreachableMessage(err)));
        else reject(new DaemonUnreachableError(`the Docker daemon at ${docker.display} dropped the connection: ${err.message}`));
      });
      up.on('response', (upRes) => {
        answered = true;
        // We asked for keep-alive only so the daemon does not close first; nobody reuses this socket.
        upRes.once('end', () => up.destroy());
        resolve(upRes);
      });
      if (body !== null) up.end(body);
      else {
        req.pipe(up);
        req.on('aborted', () => up.destroy());
      }
      // The client gone (e.g. ^C on `logs -f`, or during a long `wait`): stop the daemon side too.
      res.once('close', () => up.destroy());
    });
  }

  /** Relay the daemon's response to the client, streaming. */
  function relay(upRes: http.IncomingMessage, res: http.ServerResponse, method: string | undefined): void {
    const status = upRes.statusCode ?? 502;
    const headers = forwardHeaders(upRes.rawHeaders, false);
    const framed = upRes.headers['content-length'] !== undefined || upRes.headers['transfer-encoding'] !== undefined;
    const bodiless = method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
    if (!framed && !bodiless) {
      // Read-until-close body (legacy raw streams): relay it raw, then close, as the daemon does.
      res.useChunkedEncodingByDefault = false;
      res.shouldKeepAlive = false;
    }
    res.writeHead(status, upRes.statusMessage, headers);
    res.flushHeaders();
    upRes.pipe(res);
    upRes.on('error', () => res.destroy());
    upRes.on('aborted', () => res.destroy());
    res.on('close', () => upRes.destroy());
  }

  async function forward(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer | null): Promise<void> {
    const upRes = await toDaemon(req, res, body);
    relay(upRes, res, req.method);
  }

  // ---- interceptors --------------------------------------------------------
  async function handleCreate(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let raw: Buffer;
    try {
      raw = await readBody(req, MAX_CREATE_BODY);
    } catch (err) {
      sendError(res, 413, `weave proxy: cannot read the create request: ${(err as Error).message}`);
      return;
    }
    let parsed: unknown;
    try {
      parsed = parseJsonKeepingNumbers(raw.toString('utf8'));
    } catch {
      await forward(req, res, raw); // the daemon explains what is wrong with it
      return;
    }
    const body = parsed as { Image?: unknown; HostConfig?: { NetworkMode?: unknown } | null } | null;
    let image: ImageConfig | null = null;
    const netSkip = body && typeof body === 'object' ? networkModeSkipsAttach(body.HostConfig?.NetworkMode) : null;
    if (netSkip === null && body && typeof body === 'object' && typeof body.Image === 'string' && body.Image !== '') {
      const name = encodeURIComponent(body.Image).replace(/%2F/gi, '/').replace(/%3A/gi, ':').replace(/%40/g, '@');
      const img = (await docker.getJson(`/images/${name}/json`)) as { Config?: ImageConfig | null } | null;
      if (img === null) {
        // No such image: the daemon's own 404 on create lets the CLI pull and retry.
        await forward(req, res, raw);
        return;
      }
      image = img.Config ?? {};
    }
    let out = raw;
    try {
      const name = new URL(req.url ?? '/', 'http://docker').searchParams.get('name') ?? undefined;
      const plan = planCreate(parsed, image, { noDefaultIpalloc: opts.noDefaultIpalloc, weavewaitPath: opts.weavewaitPath, dns: opts.dns, name });
      if (plan.action === 'inject') out = Buffer.from(stringifyJsonKeepingNumbers(plan.body), 'utf8');
      else log(`proxy: create without weave: ${plan.reason}`);
    } catch (err) {
      if (err instanceof WeaveCidrError) {
        sendError(res, 400, `weave proxy: ${err.message}`);
        return;
      }
      if (!(err instanceof CreateBodyError)) throw err;
      log(`proxy: create forwarded unchanged: ${err.message}`);
    }
    await forward(req, res, out);
  }

  async function handleStart(req: http.IncomingMessage, res: http.ServerResponse, container: string): Promise<void> {
    const upRes = await toDaemon(req, res, null);
    const status = upRes.statusCode ?? 502;
    if (!(status >= 200 && status < 300) && status !== 304) {
      relay(upRes, res, req.method);
      return;
    }
    // Hold the (tiny) answer until the container is attached: the client may
    // exec into it right after `docker start` returns.
    const chunks: Buffer[] = [];
    let size = 0;
    await new Promise<void>((resolve, reject) => {
      upRes.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_START_ANSWER) chunks.push(c);
      });
      upRes.on('end', resolve);
      upRes.on('error', reject);
      upRes.on('aborted', () => reject(new Error('daemon closed the connection mid-answer')));
    });
    try {
      await ensureAttached(container);
    } catch (err) {
      if (err instanceof AttachFailedError && !(await stillRuns(container, err.pid))) {
        // The process is gone (it ran and exited, or was killed): someone else
        // attached it, or nobody needs to any more. Not the client's problem.
        log(`proxy: container ${container} exited before attaching finished (${err.message})`);
      } else {
        const msg = `weave proxy: container ${container} started but attaching it to the weave network failed: ${(err as Error).message}`;
        log(msg);
        sendError(res, 500, msg);
        return;
      }
    }
    const headers = forwardHeaders(upRes.rawHeaders, true);
    const answer = Buffer.concat(chunks);
    if (status !== 204 && status !== 304) headers.push('Content-Length', String(answer.length));
    res.writeHead(status, upRes.statusMessage, headers);
    res.end(status === 204 || status === 304 ? undefined : answer);
  }

  async function onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.on('error', () => {});
    req.on('error', () => {});
    try {
      const route = routeRequest(req.method, req.url);
      if (route.kind === 'create') await handleCreate(req, res);
      else if (route.kind === 'start' || route.kind === 'restart') await handleStart(req, res, route.container);
      else await forward(req, res, null);
    } catch (err) {
      if (err instanceof DaemonUnreachableError) {
        sendError(res, 502, err.message);
      } else {
        const msg = `weave proxy: ${req.method} ${req.url}: ${(err as Error)?.message ?? String(err)}`;
        log(msg);
        sendError(res, 500, msg);
      }
    }
  }

  // ---- upgraded connections: raw tunnel --------------------------------------
  function onUpgrade(req: http.IncomingMessage, client: net.Socket, head: Buffer): void {
    track(client);
    client.on('error', () => up.destroy());
    const a = docker.address;
    const up = a.kind === 'unix' ? net.connect({ path: a.path, allowHalfOpen: true }) : net.connect({ host: a.host, port: a.port, allowHalfOpen: true });
    track(up);
    let connected = false;
    up.on('connect', () => {
      connected = true;
      let reqHead = `${req.method} ${req.url} HTTP/${req.httpVersion === '1.0' ? '1.0' : '1.1'}\r\n`;
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) reqHead += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(`${reqHead}\r\n`);
      if (head.length > 0) up.write(head);
      // pipe() ends the other side on EOF: half-closes (stdin EOF) travel through.
      client.pipe(up);
      up.pipe(client);
    });
    up.on('error', (err) => {
      if (!connected && !client.destroyed) {
        const body = jsonError(isUnreachable(err) ? docker.unreachableMessage(err) : `weave proxy: ${err.message}`);
        client.end(
          `HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      } else client.destroy();
    });
    up.on('close', (hadError) => {
      if (hadError) client.destroy();
    });
    client.on('close', (hadError) => {
      if (hadError) up.destroy();
    });
  }

  // ---- listeners -----------------------------------------------------------
  const servers: http.Server[] = [];
  const addresses: string[] = [];
  const unixPaths: string[] = [];

  function makeServer(a: DockerAddress): http.Server {
    // requestTimeout 0: build contexts and `logs -f` may legitimately take hours.
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => void onRequest(req, res);
    const server: http.Server = a.kind === 'tcp' && tlsCfg
      ? https.createServer({ ...tlsCfg.options, requestTimeout: 0 }, handler)
      : http.createServer({ requestTimeout: 0 }, handler);
    if (a.kind === 'tcp' && tlsCfg) {
      // Failed handshakes (no or a foreign client certificate, plain HTTP, scanners):
      // counted, and logged at most once a minute so a stranger cannot fill the disk.
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
        tlsRefused++;
        const now = Date.now();
        if (now - tlsRefusedLogged >= 60_000) {
          tlsRefusedLogged = now;
          log(`proxy: TLS handshake from ${socket.remoteAddress ?? '?'} refused (${err.code ?? err.message.split('\n')[0]}); ${tlsRefused} refused so far`);
        }
        socket.destroy();
      });
    }
    server.on('connection', track);
    server.on('upgrade', onUpgrade);
    server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
      if (socket.writable && err.code !== 'ECONNRESET') {
        const body = jsonError(`weave proxy: malformed HTTP request: ${err.code ?? err.message}`);
        socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      } else socket.destroy();
    });
    server.on('error', (err) => log(`proxy: server error: ${err.message}`));
    return server;
  }

  async function listenOn(a: DockerAddress): Promise<string> {
    const server = makeServer(a);
    if (a.kind === 'unix') await prepareUnixPath(a.path);
    await new Promise<void>((resolve, reject) => {
      const onErr = (err: Error): void => reject(new Error(`proxy: cannot listen on ${formatDockerAddress(a)}: ${err.message}`));
      server.once('error', onErr);
      const done = (): void => {
        server.off('error', onErr);
        resolve();
      };
      if (a.kind === 'unix') {
        // Created unreachable (umask 077), then opened to the docker group below.
        const old = process.umask(0o077);
        try {
          server.listen(a.path, done);
        } finally {
          process.umask(old);
        }
      } else server.listen(a.port, a.host, done);
    });
    servers.push(server);
    if (a.kind === 'unix') {
      unixPaths.push(a.path);
      await restrictSocket(a.path);
      return formatDockerAddress(a);
    }
    const bound = server.address() as net.AddressInfo;
    return formatDockerAddress({ kind: 'tcp', host: a.host, port: bound.port });
  }

  try {
    for (const a of listenAddrs) addresses.push(await listenOn(a));
  } catch (err) {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    throw err;
  }

  // ---- daemon events -------------------------------------------------------
  let eventsReq: http.ClientRequest | null = null;
  let wakeSleep: (() => void) | null = null;
  let daemonUp: boolean | null = null;

  async function reconcile(): Promise<void> {
    const running = (await docker.getJson('/containers/json')) as Array<{ Id?: unknown; Mounts?: unknown }> | null;
    for (const c of running ?? []) {
      if (typeof c.Id !== 'string') continue;
      if (!Array.isArray(c.Mounts) || !c.Mounts.some((m) => (m as { Destination?: unknown })?.Destination === '/w/w')) continue;
      ensureAttached(c.Id).catch((err: Error) => log(`proxy: re-attaching container ${String(c.Id).slice(0, 12)} failed: ${err.message}`));
    }
    const all = (await docker.getJson('/containers/json?all=1')) as Array<{ Id?: unknown }> | null;
    const present = new Set((all ?? []).map((c) => c.Id));
    for (const id of [...attached.keys()]) if (!present.has(id)) void release(id);
  }

  function handleEvent(line: string): void {
    let ev: { Type?: unknown; Action?: unknown; status?: unknown; id?: unknown; Actor?: { ID?: unknown } };
    try {
      ev = JSON.parse(line);
    } catch {
      return;
    }
    if (ev.Type !== undefined && ev.Type !== 'container') return;
    const action = typeof ev.Action === 'string' ? ev.Action : ev.status;
    const id = typeof ev.Actor?.ID === 'string' ? ev.Actor.ID : ev.id;
    if (typeof id !== 'string') return;
    if (action === 'start') {
      ensureAttached(id).catch((err: Error) => log(`proxy: attaching started container ${id.slice(0, 12)} failed: ${err.message}`));
    } else if (action === 'destroy') {
      void release(id);
    } else if (action === 'die' && opts.attacher.died) {
      // [dns] its names are tombstoned; a restart (start) registers them again.
      opts.attacher.died(id).catch((err: Error) => log(`proxy: container ${id.slice(0, 12)} died: ${err.message}`));
    }
  }

  /** Follow the daemon's event stream until it ends. Resolves when it ends, rejects if it cannot be opened. */
  function followEvents(): Promise<void> {
    return new Promise((resolve, reject) => {
      const filters = encodeURIComponent(JSON.stringify({ type: ['container'] }));
      const req = http.request({ ...docker.connectOptions(), method: 'GET', path: `/events?filters=${filters}`, headers: { Host: 'docker' } });
      eventsReq = req;
      req.on('error', reject);
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`events: daemon answered ${res.statusCode}`));
          return;
        }
        if (daemonUp !== true) log(`proxy: following events of the Docker daemon at ${docker.display}`);
        daemonUp = true;
        backoff = 250;
        reconcile().catch((err: Error) => log(`proxy: reconciling containers after (re)connecting failed: ${err.message}`));
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (s: string) => {
          buf += s;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line !== '') handleEvent(line);
          }
          if (buf.length > 1 << 20) buf = ''; // a runaway line: drop it rather than grow without bound
        });
        res.on('end', resolve);
        res.on('error', reject);
        res.on('aborted', () => resolve());
      });
      req.end();
    });
  }

  let backoff = 250;
  const eventsLoop = (async () => {
    while (!closed) {
      try {
        await followEvents();
        if (!closed) log(`proxy: event stream of ${docker.display} ended; reconnecting`);
      } catch (err) {
        if (closed) break;
        if (daemonUp !== false) {
          const msg = isUnreachable(err) ? docker.unreachableMessage(err) : (err as Error).message;
          log(`proxy: cannot follow Docker events (${msg}); retrying`);
        }
        daemonUp = false;
      }
      eventsReq = null;
      if (closed) break;
      await new Promise<void>((r) => {
        const t = setTimeout(r, backoff);
        wakeSleep = () => {
          clearTimeout(t);
          r();
        };
      });
      wakeSleep = null;
      backoff = Math.min(backoff * 2, 5000);
    }
  })();

  log(`proxy: listening on ${addresses.join(', ')}${tlsCfg ? ` (tcp with TLS${tlsCfg.verify ? ', client certificates required' : ', no client certificates'})` : ''}, forwarding to ${docker.display}`);

  return {
    addresses,
    tls: tlsMode,
    tlsRefused: () => tlsRefused,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      (eventsReq as http.ClientRequest | null)?.destroy();
      (wakeSleep as (() => void) | null)?.();
      const closing = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
      for (const s of sockets) s.destroy();
      await Promise.all(closing);
      await eventsLoop;
      for (const p of unixPaths) {
        try {
          fs.unlinkSync(p);
        } catch {
          // already gone
        }
      }
    },
  };
}

/**
 * Make a unix socket path usable: create its directory, and remove a stale
 * socket file left by a crashed proxy — but never one something still listens on.
 * @throws Error when the path is in use or is not a socket.
 */
async function prepareUnixPath(p: string): Promise<void> {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`proxy: cannot listen on unix://${p}: it exists and is not a socket`);
  const inUse = await new Promise<boolean>((resolve) => {
    const s = net.connect({ path: p });
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
  if (inUse) throw new Error(`proxy: cannot listen on unix://${p}: another process is listening there`);
  fs.unlinkSync(p);
}

/** The default weavewait binary location: next to this module in dist/ (built by proxy/weavewait/build.sh). */
export function defaultWeavewaitPath(): string {
  return fileURLToPath(new URL('./weavewait/weavewait', import.meta.url));
}

