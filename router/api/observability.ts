/**
 * The observability subsystem: metrics (/metrics on --metrics-addr, and on the API),
 * the /events WebSocket and the live page (GET /) on the daemon's HTTP servers.
 * Other subsystems' metrics live in the same registry (`ctx.metrics`).
 */
import http from 'node:http';
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { Counter, Gauge } from './prom.js';
import type { Subsystem, SubsystemContext } from '../daemon/subsystem.js';
import { splitHostPort } from '../daemon/config.js';
import { createMetrics } from './metrics.js';
import { attachEventStream, type EventStream, type EventSource } from './events.js';
import { PAGE_HTML } from './ui/page.js';
import { checkAccess } from './policy.js';

/** Started last, so the page, /events and /metrics see every other subsystem's report section. */
export function observabilitySubsystem(): Subsystem {
  let close = async (): Promise<void> => undefined;
  return {
    name: 'observability',
    async start(ctx) {
      close = await setupObservability(ctx);
    },
    close: () => close(),
  };
}

async function setupObservability(ctx: SubsystemContext): Promise<() => Promise<void>> {
  const { router, api } = ctx;
  const o = { report: ctx.report, metricsAddr: ctx.cfg.metricsAddr, log: ctx.log };
  const source: EventSource = {
    report: o.report,
    on: (ev, cb) => void router.on(ev, cb),
    off: (ev, cb) => void router.off(ev, cb),
  };
  const metrics = createMetrics({ report: o.report, counters: () => router.counters() }, ctx.metrics);
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
  const refused = (): void => { api.refused.access = (api.refused.access ?? 0) + 1; };
  new Gauge({
    name: 'tsweave_api_refused_requests',
    help: 'API and metrics requests refused by the access policy since start, by kind (access, route, content-type, url, size).',
    labelNames: ['kind'],
    registers: [ctx.metrics],
    collect() {
      this.reset();
      for (const [kind, n] of Object.entries(api.refused)) this.set({ kind }, n);
    },
  });
  const loop = watchEventLoop(ctx.metrics);
  const streams: EventStream[] = api.servers.map((s) => attachEventStream(s, source, { insecure: api.insecure, onRefused: refused }));

  let metricsServer: http.Server | undefined;
  if (o.metricsAddr) {
    const [host, port] = splitHostPort(o.metricsAddr, 6782);
    const s = http.createServer((req, res) => {
      // The same browser checks as the API's TCP listener (policy.ts): a rebinding page must not read metrics.
      const why = checkAccess(req.socket.remoteAddress ?? '?', req.headers.origin, req.headers.host, api.insecure);
      if (why !== null) {
        refused();
        res.writeHead(403, { 'content-type': 'text/plain' });
        res.end(why + '\n');
        return;
      }
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
  return async () => {
    loop.stop();
    for (const st of streams) st.close();
    if (metricsServer) await new Promise<void>((r) => metricsServer!.close(() => r()));
  };
}

/** Length of one event-loop delay window, ms: the gauge shows the last complete window. */
const LOOP_WINDOW_MS = 10_000;
/** Interval of the event-loop monitor's timer, ms (see watchEventLoop). */
const LOOP_RESOLUTION_MS = 50;
/** The event-loop monitor stops this long after the last scrape of its gauge (ms). */
const LOOP_IDLE_STOP_MS = 5 * 60_000;

/**
 * [reliability] Event-loop delay and heap gauges (for the soak, `npm run soak`, and
 * dashboards): `tsweave_event_loop_delay_seconds{quantile="0.5"|"0.99"|"1"}` over the
 * last complete 10 s window, sampled by Node's `monitorEventLoopDelay` (a libuv timer
 * every LOOP_RESOLUTION_MS; the histogram holds whole timer intervals, so the gauge
 * reports each quantile minus that interval: the time the loop was late), and
 * `tsweave_heap_used_bytes` (V8 heap in use at scrape time), and
 * `tsweave_memory_bytes{kind}` (Node's process.memoryUsage(): rss, heap_total,
 * heap_used, external, array_buffers — RSS growing while the heap stays flat points at
 * native memory: Buffers, addon allocations or the allocator), `tsweave_gc_major_total` and
 * `tsweave_heap_after_major_gc_bytes` (the live-heap estimate). A window is closed by a
 * timer, not by a scrape, so several scrapers see the same values.
 *
 * [scale, issue #20] The monitor's timer wakes the router even when idle, so it runs only
 * while someone reads the gauge: the first scrape starts it (that scrape and the ones of
 * the first window read 0), and it stops again 5 minutes after the last scrape
 * (`windowMs`, default 10 s, is a parameter for tests). Its timer ran every 10 ms at first: a scraped idle
 * router spent +0.33 % of a core on it (30-peer mesh, 0.88–0.98 % scraped vs 0.53–0.65 %
 * unscraped), so a dashboard's scrape every 15 s cost more than everything else an idle
 * router does. Every 50 ms (+0.10 % measured the same way) still gives ~200 samples per window.
 */
export function watchEventLoop(registry: SubsystemContext['metrics'], windowMs = LOOP_WINDOW_MS): { stop(): void } {
  const h = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  const lateS = (ns: number): number => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS) / 1000;
  let last = { p50: 0, p99: 0, max: 0 };
  let t: NodeJS.Timeout | undefined;
  let lastScrape = 0;
  const stop = (): void => {
    if (t === undefined) return;
    clearInterval(t);
    t = undefined;
    h.disable();
    h.reset();
    last = { p50: 0, p99: 0, max: 0 };
  };
  const arm = (): void => {
    lastScrape = Date.now();
    if (t !== undefined) return;
    h.reset();
    h.enable();
    t = setInterval(() => {
      last = h.count > 0 ? { p50: lateS(h.percentile(50)), p99: lateS(h.percentile(99)), max: lateS(h.max) } : { p50: 0, p99: 0, max: 0 };
      h.reset();
      if (Date.now() - lastScrape > LOOP_IDLE_STOP_MS) stop();
    }, windowMs);
    t.unref();
  };
  new Gauge({
    name: 'tsweave_event_loop_delay_seconds',
    help: 'Event-loop delay (how late a 50 ms timer fired) over the last complete 10 s window, by quantile (1 = max); measured only while scraped (0 until a window completed).',
    labelNames: ['quantile'],
    registers: [registry],
    collect() {
      arm();
      this.set({ quantile: '0.5' }, last.p50);
      this.set({ quantile: '0.99' }, last.p99);
      this.set({ quantile: '1' }, last.max);
    },
  });
  new Gauge({
    name: 'tsweave_heap_used_bytes',
    help: 'V8 heap in use at scrape time, bytes.',
    registers: [registry],
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Gauge({
    name: 'tsweave_memory_bytes',
    help: 'Process memory at scrape time, bytes, by kind (Node process.memoryUsage(): rss, heap_total, heap_used, external = C++ objects bound to JS incl. Buffers, array_buffers = ArrayBuffer/Buffer backing stores).',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const m = process.memoryUsage();
      this.set({ kind: 'rss' }, m.rss);
      this.set({ kind: 'heap_total' }, m.heapTotal);
      this.set({ kind: 'heap_used' }, m.heapUsed);
      this.set({ kind: 'external' }, m.external);
      this.set({ kind: 'array_buffers' }, m.arrayBuffers);
    },
  });
  // Major (mark-sweep-compact) collections: how many, and the heap in use right after
  // the last one (the observer runs just after the collection) — an estimate of the live
  // heap. heap_used alone climbs with garbage between two major collections, which V8
  // may put off for many minutes; a leak shows as this estimate growing.
  const majors = new Counter({
    name: 'tsweave_gc_major_total',
    help: 'Major (mark-sweep-compact) garbage collections since start.',
    registers: [registry],
  });
  let liveAfterMajor = 0;
  const gcObs = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>) {
      if (e.detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) {
        majors.inc();
        liveAfterMajor = process.memoryUsage().heapUsed;
      }
    }
  });
  gcObs.observe({ entryTypes: ['gc'] });
  new Gauge({
    name: 'tsweave_heap_after_major_gc_bytes',
    help: 'V8 heap in use just after the last major garbage collection, bytes (0 before the first): an estimate of the live heap.',
    registers: [registry],
    collect() {
      this.set(liveAfterMajor);
    },
  });
  return {
    stop: () => {
      stop();
      gcObs.disconnect();
    },
  };
}
