/**
 * `GET /events`: the router's event stream over WebSocket (RFC 6455, via `ws`).
 *
 * Each client first gets `{type:'snapshot', report}`, then every RouterEvent as
 * one JSON text message, in emission order. Deltas cannot describe everything
 * (a connection between two remote peers produces no local event), so a fresh
 * snapshot is also sent shortly after topology events and whenever a periodic
 * check finds the report changed.
 *
 * Access: like the rest of the HTTP API this is for the local operator only
 * (policy.ts): over TCP the peer must be loopback, Host a loopback literal or
 * localhost, and a present Origin the same origin; unix-socket clients are
 * trusted by file permissions. Refusals answer 403 before the upgrade.
 *
 * Slow clients are not buffered for without limit: when a client's unsent
 * bytes exceed `maxBacklogBytes` it is closed with 1013 (Try Again Later) and
 * cut off if the close does not complete. Heartbeat pings remove clients that
 * stop answering.
 */

import type { IncomingMessage, Server } from 'node:http';
import { checkAccess } from './policy.js';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Report, RouterEvent } from './report.js';

export interface EventSource {
  report(): Report;
  on(ev: 'event', cb: (e: RouterEvent) => void): unknown;
  off(ev: 'event', cb: (e: RouterEvent) => void): unknown;
}

export interface EventStreamOptions {
  /** URL path to upgrade; default '/events'. */
  path?: string;
  /** Unsent bytes allowed per client before it is dropped; default 1 MiB. */
  maxBacklogBytes?: number;
  /** Ping interval; a client that missed the previous ping's pong is terminated. Default 30000 ms. */
  heartbeatMs?: number;
  /** Delay before a re-snapshot after topology events (coalesces bursts). Default 250 ms. */
  resnapshotDelayMs?: number;
  /** Period of the "has the report changed?" check; 0 disables. Default 5000 ms. */
  resyncMs?: number;
  /** --api-insecure: any TCP peer and Host (a present Origin must still be same-origin). */
  insecure?: boolean;
  /** Called with the reason for each refused upgrade (counted by the API). */
  onRefused?: (reason: string) => void;
}

export interface EventStream {
  /** Stops heartbeats, unhooks from the server and source, and closes every client with 1001. */
  close(): void;
  /** Number of connected clients, not counting ones being dropped. */
  clients(): number;
}

/** Close code for a client whose backlog exceeded the bound (RFC 6455 §7.4.1 registry: Try Again Later). */
export const CLOSE_SLOW_CONSUMER = 1013;

export { isLoopbackAddress, checkAccess } from './policy.js';

/**
 * Attaches the stream to `server` (its 'upgrade' event). Requests for other
 * paths are left to other upgrade listeners; if there are none they get 404.
 * One listener is added to `source` regardless of the number of clients, and
 * each event is serialised once.
 */
export function attachEventStream(server: Server, source: EventSource, opts: EventStreamOptions = {}): EventStream {
  const path = opts.path ?? '/events';
  const maxBacklog = opts.maxBacklogBytes ?? 1 << 20;
  const heartbeatMs = opts.heartbeatMs ?? 30_000;
  const resnapshotDelayMs = opts.resnapshotDelayMs ?? 250;
  const resyncMs = opts.resyncMs ?? 5_000;

  // [scale, issue #20] ws is loaded, and the heartbeat and resync timers run, only from
  // the first WebSocket client on: an idle router neither loads it nor wakes for them.
  let wss: WebSocketServer | undefined;
  let loading: Promise<WebSocketServer> | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let resync: NodeJS.Timeout | null = null;
  const noClients: ReadonlySet<WebSocket> = new Set();
  const clients = (): ReadonlySet<WebSocket> => wss?.clients ?? noClients;
  const OPEN = 1; // WebSocket.OPEN (RFC 6455 "the WebSocket connection is established")
  const alive = new WeakMap<WebSocket, boolean>();
  const killTimers = new Map<WebSocket, NodeJS.Timeout>();
  let lastSnapshot = '';
  let resnapshotTimer: NodeJS.Timeout | null = null;
  let closed = false;

  const drop = (ws: WebSocket, code: number, reason: string): void => {
    if (killTimers.has(ws)) return;
    ws.close(code, reason);
    // The close frame queues behind the backlog a slow client is not reading.
    const t = setTimeout(() => ws.terminate(), 1000);
    t.unref();
    killTimers.set(ws, t);
  };

  const sendTo = (ws: WebSocket, data: string): void => {
    if (ws.readyState !== OPEN || killTimers.has(ws)) return;
    if (ws.bufferedAmount + data.length > maxBacklog) {
      drop(ws, CLOSE_SLOW_CONSUMER, 'slow consumer: event backlog full');
      return;
    }
    ws.send(data);
  };

  const snapshotText = (): string => JSON.stringify({ type: 'snapshot', report: source.report() } satisfies RouterEvent);

  const broadcast = (data: string): void => {
    for (const ws of clients()) sendTo(ws, data);
  };

  const resnapshotIfChanged = (): void => {
    if (clients().size === 0) return;
    let text: string;
    try { text = snapshotText(); } catch { return; }
    if (text === lastSnapshot) return;
    lastSnapshot = text;
    broadcast(text);
  };

  const onEvent = (e: RouterEvent): void => {
    if (clients().size === 0) return;
    broadcast(JSON.stringify(e));
    if ((e.type === 'peer-joined' || e.type === 'peer-left' || e.type === 'connection') && resnapshotTimer === null) {
      resnapshotTimer = setTimeout(() => { resnapshotTimer = null; resnapshotIfChanged(); }, resnapshotDelayMs);
      resnapshotTimer.unref();
    }
  };
  source.on('event', onEvent);

  const refuse = (socket: Duplex, status: number, text: string): void => {
    const body = `${text}\n`;
    socket.end(`HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : 'Not Found'}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (closed) return;
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== path || req.method !== 'GET') {
      if (server.listenerCount('upgrade') === 1) refuse(socket, 404, 'no such WebSocket endpoint');
      return;
    }
    const why = checkAccess(req.socket.remoteAddress, req.headers.origin, req.headers.host, opts.insecure ?? false);
    if (why !== null) opts.onRefused?.(why);
    if (why !== null) {
      refuse(socket, 403, `forbidden: ${why}`);
      return;
    }
    const load = loading ??= import('ws').then((m) => {
      const w = new m.WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false });
      wss = w;
      if (closed) return w;
      heartbeat = setInterval(() => {
        for (const ws of w.clients) {
          if (alive.get(ws) === false) { ws.terminate(); continue; }
          alive.set(ws, false);
          try { ws.ping(); } catch { ws.terminate(); }
        }
      }, heartbeatMs);
      heartbeat.unref();
      resync = resyncMs > 0 ? setInterval(resnapshotIfChanged, resyncMs) : null;
      resync?.unref();
      return w;
    });
    void load.then((w) => {
      if (closed) {
        socket.destroy();
        return;
      }
      w.handleUpgrade(req, socket, head, onClient);
    }, () => socket.destroy());
  };
  const onClient = (ws: WebSocket): void => {
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      const t = killTimers.get(ws);
      if (t) { clearTimeout(t); killTimers.delete(ws); }
    });
    // Client messages carry no meaning; reading them just keeps the socket flowing.
    ws.on('message', () => undefined);
    let text: string;
    try {
      text = snapshotText();
    } catch (err) {
      ws.close(1011, `report failed: ${(err as Error).message}`.slice(0, 120));
      return;
    }
    sendTo(ws, text);
  };
  server.on('upgrade', onUpgrade);

  return {
    close(): void {
      if (closed) return;
      closed = true;
      if (heartbeat) clearInterval(heartbeat);
      if (resync) clearInterval(resync);
      if (resnapshotTimer) clearTimeout(resnapshotTimer);
      source.off('event', onEvent);
      server.off('upgrade', onUpgrade);
      for (const ws of clients()) drop(ws, 1001, 'router shutting down');
      wss?.close();
    },
    clients: () => clients().size - killTimers.size,
  };
}
