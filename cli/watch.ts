/**
 * `weave status --watch`: keeps a Report current from the router's `/events`
 * stream (snapshot, then deltas applied with the same `applyEvent` the live
 * page uses) and redraws the status on every change until Ctrl-C.
 */

import type { WebSocket } from 'ws';
import type { Report, RouterEvent } from '../router/api/report.js';
import { applyEvent } from '../router/api/ui/model.js';
import { escapeTerminal } from './format.js';

export interface WatchOptions {
  /** Opens a new WebSocket to `/events` (called again on every reconnect). */
  connect(): WebSocket;
  out: NodeJS.WritableStream & { isTTY?: boolean };
  render(r: Report): string;
  /** Stops watching (in addition to SIGINT). */
  signal?: AbortSignal;
  /** First reconnect delay, doubled per failure up to maxBackoffMs; defaults 500 / 10000 ms. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Listen for SIGINT (Ctrl-C) to stop; default true. */
  handleSigint?: boolean;
}

/** Clear screen and home the cursor (ESC [ H, ESC [ 2 J). */
const CLEAR = '\x1b[H\x1b[2J';

/**
 * Resolves when stopped (Ctrl-C or `signal`); never rejects for connection
 * problems: a closed or failed socket shows "reconnecting in Ns" and is
 * reopened with exponential backoff (reset after a snapshot arrives).
 * On a TTY each redraw clears the screen; otherwise frames are separated by a
 * blank line so the output stays readable in a log. Redraws are coalesced to
 * one per event-loop turn, so a burst of events draws once.
 */
export function watchStatus(opts: WatchOptions): Promise<void> {
  const base = opts.backoffMs ?? 500;
  const maxBackoff = opts.maxBackoffMs ?? 10_000;
  const tty = opts.out.isTTY === true;
  let report: Report | null = null;
  let ws: WebSocket | null = null;
  let backoff = base;
  let stopped = false;
  let drawPending = false;
  let retryTimer: NodeJS.Timeout | null = null;
  let frames = 0;

  return new Promise<void>((resolve) => {
    const write = (text: string): void => {
      opts.out.write(tty ? CLEAR + text : (frames++ > 0 ? '\n' : '') + text);
    };
    const redraw = (): void => {
      if (drawPending) return;
      drawPending = true;
      setImmediate(() => {
        drawPending = false;
        if (!stopped && report !== null) write(escapeTerminal(opts.render(report))); // [sec-wire] peer text never reaches the tty raw
      });
    };
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      if (retryTimer) clearTimeout(retryTimer);
      process.off('SIGINT', stop);
      opts.signal?.removeEventListener('abort', stop);
      if (ws) { ws.removeAllListeners(); ws.on('error', () => undefined); ws.terminate(); }
      resolve();
    };
    const scheduleReconnect = (why: string): void => {
      if (stopped || retryTimer) return;
      const delay = backoff;
      backoff = Math.min(backoff * 2, maxBackoff);
      const msg = `connection to router lost (${why}); reconnecting in ${(delay / 1000).toFixed(1)}s\n`;
      opts.out.write(tty ? CLEAR + msg : msg);
      retryTimer = setTimeout(() => { retryTimer = null; open(); }, delay);
    };
    const open = (): void => {
      if (stopped) return;
      let sock: WebSocket;
      try {
        sock = opts.connect();
      } catch (err) {
        scheduleReconnect((err as Error).message);
        return;
      }
      ws = sock;
      sock.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) return;
        let ev: RouterEvent;
        try {
          ev = JSON.parse(data.toString('utf8')) as RouterEvent;
        } catch {
          return; // one bad message must not end the watch
        }
        if (ev === null || typeof ev !== 'object' || typeof ev.type !== 'string') return;
        if (ev.type === 'snapshot') backoff = base;
        const next = applyEvent(report, ev);
        if (next !== report) { report = next; redraw(); }
      });
      sock.on('error', () => undefined); // 'close' follows and reconnects
      sock.on('close', (code: number, reason: Buffer) => {
        if (ws === sock) ws = null;
        scheduleReconnect(reason.length ? `${code} ${reason.toString()}` : `code ${code}`);
      });
    };
    if (opts.handleSigint !== false) process.on('SIGINT', stop);
    if (opts.signal) {
      if (opts.signal.aborted) { stop(); return; }
      opts.signal.addEventListener('abort', stop);
    }
    open();
  });
}
