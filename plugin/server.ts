/**
 * The plugin's socket: an HTTP server on a unix socket (Docker finds plugins by
 * socket name in /run/docker/plugins), answering every request through PluginCore.
 * Bodies are bounded (64 KiB) and must arrive within 10 s; malformed JSON, unknown
 * paths and failing calls all get `{"Err": "one line"}` with a non-200 status, as
 * Docker's plugin client expects. Nothing here throws to the process.
 */
import http from 'node:http';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { PLUGIN_CONTENT_TYPE, PluginError } from './protocol.js';

/** Largest request body accepted (the biggest real call, CreateNetwork, is < 2 KiB). */
export const MAX_BODY_BYTES = 64 * 1024;
const BODY_TIMEOUT_MS = 10_000;

export interface PluginHandler {
  handle(path: string, body: unknown): Promise<Record<string, unknown>>;
}

/** Make an error message safe to log and answer: one line, printable, bounded. */
export function oneLine(msg: string): string {
  return msg.replace(/[\x00-\x1f\x7f]+/g, ' ').trim().slice(0, 500) || 'internal error';
}

/**
 * Listen on `socketPath` (its directory is created, mode 0700 if new; a stale socket
 * is replaced). Resolves with a close function once listening.
 * @param log one-line logger (level 'warn' for failed calls).
 */
export async function listenPlugin(socketPath: string, handler: PluginHandler, log: (l: string, lvl?: string) => void): Promise<{ close(): Promise<void> }> {
  await fsp.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  await fsp.unlink(socketPath).catch(() => undefined);
  const server = http.createServer((req, res) => {
    const answer = (status: number, obj: unknown): void => {
      if (res.headersSent) return;
      const text = JSON.stringify(obj);
      res.writeHead(status, { 'Content-Type': PLUGIN_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    };
    const fail = (status: number, msg: string): void => {
      const m = oneLine(msg);
      log(`plugin: ${req.method ?? '?'} ${oneLine(req.url ?? '').slice(0, 100)}: ${m}`, 'warn');
      answer(status, { Err: m });
    };
    if (req.method !== 'POST') {
      req.resume();
      return fail(405, `plugin calls are POST requests, not ${oneLine(req.method ?? '').slice(0, 16)}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      fail(408, `request body did not arrive within ${BODY_TIMEOUT_MS / 1000} s`);
      req.destroy();
    }, BODY_TIMEOUT_MS);
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (done) {
        // Drained (not kept) so the client reads the answer; a client that goes on
        // sending far beyond the bound, or past the body timeout, is cut off.
        if (size > 16 * MAX_BODY_BYTES) req.destroy();
        return;
      }
      if (size > MAX_BODY_BYTES) {
        done = true;
        chunks.length = 0;
        res.setHeader('Connection', 'close');
        fail(413, `request body larger than ${MAX_BODY_BYTES} bytes`);
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => clearTimeout(timer));
    req.on('close', () => clearTimeout(timer));
    req.on('end', () => {
      clearTimeout(timer);
      if (done) return;
      done = true;
      const text = Buffer.concat(chunks).toString('utf8').trim();
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : {};
      } catch {
        return fail(400, 'malformed JSON in the request body');
      }
      const url = (req.url ?? '').split('?')[0];
      handler.handle(url, body).then(
        (obj) => answer(200, obj),
        (err: Error) => fail(err instanceof PluginError && /^unknown plugin call/.test(err.message) ? 404 : 500, err.message ?? String(err)),
      );
    });
  });
  server.headersTimeout = BODY_TIMEOUT_MS;
  server.requestTimeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log(`plugin: socket ${socketPath}: ${err.message}`, 'error'));
  await fsp.chmod(socketPath, 0o600).catch(() => undefined);
  return {
    close: () => new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      server.closeAllConnections();
      server.close(() => {
        clearTimeout(t);
        resolve();
      });
      void fsp.unlink(socketPath).catch(() => undefined);
    }),
  };
}
