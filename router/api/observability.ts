/**
 * Wires metrics (/metrics on --metrics-addr, and on the API), the /events
 * WebSocket and the live page (GET /) into the daemon's HTTP servers.
 */
import http from 'node:http';
import type { Router } from '../router.js';
import type { ApiServer } from './server.js';
import type { IpamGlue } from '../daemon/ipam.js';
import type { Endpoints } from '../host/endpoints.js';
import type { Report } from './report.js';
import { createMetrics } from './metrics.js';
import { attachEventStream, type EventStream, type EventSource } from './events.js';
import { PAGE_HTML } from './ui/page.js';
import { splitHostPort } from '../daemon/weaver.js';

export interface ObservabilityOptions {
  router: Router;
  api: ApiServer;
  tcpServer: http.Server | undefined;
  report(): Report;
  metricsAddr: string;
  ipam?: IpamGlue;
  endpoints?: Endpoints;
  log: (l: string, lvl?: string) => void;
}

export async function setupObservability(o: ObservabilityOptions): Promise<{ close(): Promise<void> }> {
  const { router, api } = o;
  const source: EventSource = {
    report: o.report,
    on: (ev, cb) => void router.on(ev, cb),
    off: (ev, cb) => void router.off(ev, cb),
  };
  const metrics = createMetrics({ report: o.report, counters: () => router.counters() });
  const serveMetrics = (res: http.ServerResponse): void => {
    metrics.render().then(
      (text) => {
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(text);
      },
      (err: Error) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`metrics failed: ${err.message}\n`);
      },
    );
  };
  api.raw.push((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE_HTML);
      return true;
    }
    if (req.method === 'GET' && path === '/metrics') {
      serveMetrics(res);
      return true;
    }
    return false;
  });
  const streams: EventStream[] = api.servers.map((s) => attachEventStream(s, source));

  let metricsServer: http.Server | undefined;
  if (o.metricsAddr) {
    const [host, port] = splitHostPort(o.metricsAddr, 6782);
    const s = http.createServer((req, res) => {
      if (req.method === 'GET' && (req.url ?? '').split('?')[0] === '/metrics') serveMetrics(res);
      else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('only /metrics here\n');
      }
    });
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, () => resolve());
      });
      metricsServer = s;
    } catch (err) {
      o.log(`metrics: cannot listen on ${o.metricsAddr} (${(err as Error).message}); /metrics is still served on the API`, 'warn');
    }
  }
  return {
    close: async () => {
      for (const st of streams) st.close();
      if (metricsServer) await new Promise<void>((r) => metricsServer!.close(() => r()));
    },
  };
}
