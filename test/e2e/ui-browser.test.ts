/**
 * The live page in a real browser: Debian's chromium driven by playwright-core
 * loads PAGE_HTML from a test HTTP server on 127.0.0.1 whose /events stream is
 * fed by a fake router (3 peers), checks the drawn graph, then makes a 4th
 * peer join and checks the page shows it without reloading; finally drops the
 * stream and checks the page reconnects. No root, no namespaces: everything is
 * on 127.0.0.1 and the page is checked to request nothing else.
 *
 * Skips with a message if /usr/bin/chromium or playwright-core is missing.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { attachEventStream } from '../../router/api/events.js';
import { PAGE_HTML } from '../../router/api/ui/page.js';
import { FakeSource, H1, H4 } from '../unit/obs-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';

/** The few playwright-core calls used here (typed locally so the build does not need the package). */
interface PwPage {
  goto(url: string): Promise<unknown>;
  waitForFunction(fn: string, arg?: unknown, opts?: { timeout?: number }): Promise<unknown>;
  evaluate<T>(fn: string): Promise<T>;
  screenshot(opts: { path: string; type: 'png' }): Promise<unknown>;
}
interface PwContext {
  newPage(): Promise<PwPage>;
  on(ev: 'request', cb: (req: { url(): string }) => void): void;
  close(): Promise<void>;
}
interface PwChromium {
  launchPersistentContext(dir: string, opts: Record<string, unknown>): Promise<PwContext>;
}

async function loadPlaywright(): Promise<PwChromium | string> {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} not found (apt-get install -y chromium)`;
  const name = 'playwright-core';
  try {
    const mod = (await import(name)) as { chromium: PwChromium };
    return mod.chromium;
  } catch {
    return 'playwright-core is not installed (npm install --no-save playwright-core)';
  }
}

test('live page draws the mesh and follows /events without reload', { timeout: 90_000 }, async (t) => {
  const chromium = await loadPlaywright();
  if (typeof chromium === 'string') {
    t.skip(`browser test skipped: ${chromium}`);
    return;
  }
  const src = new FakeSource();
  // Keep the picture to the three peers: no failed attempt node.
  src.current.Router.Connections = src.current.Router.Connections.filter((c) => c.Name !== undefined);
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE_HTML);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const origin = `http://127.0.0.1:${port}`;
  let stream = attachEventStream(server, src, { resyncMs: 0, resnapshotDelayMs: 50 });

  const profile = await mkdtemp(path.join(tmpdir(), 'tsweave-ui-profile-'));
  const outDir = await mkdtemp(path.join(tmpdir(), 'tsweave-ui-'));
  let ctx: PwContext | null = null;
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 820, height: 640 },
      timeout: 30_000,
    });
    const foreign: string[] = [];
    ctx.on('request', (req) => {
      const u = req.url();
      if (!u.startsWith(origin) && !u.startsWith(`ws://127.0.0.1:${port}/`)) foreign.push(u);
    });
    const page = await ctx.newPage();
    await page.goto(`${origin}/`);
    await page.waitForFunction(`document.body.dataset.ws === 'live' && document.querySelectorAll('#mesh g.peer').length === 3`, undefined, { timeout: 10_000 });

    const peers = await page.evaluate<string[]>(`[...document.querySelectorAll('#mesh g.peer')].map(g => g.dataset.peer).sort()`);
    assert.deepEqual(peers, src.current.Router.Peers.map((p) => p.Name).sort());
    assert.equal(await page.evaluate<string>(`document.querySelector('#mesh g.peer[data-self="1"]').dataset.peer`), H1);
    const edges = await page.evaluate<string[]>(`[...document.querySelectorAll('#mesh line.conn')].map(l => [l.dataset.a, l.dataset.b].sort().join('-') + ':' + l.dataset.state + ':' + l.dataset.path).sort()`);
    // h1-h2 sleeve and h1-h3 fastdp from h1's own connections; h2-h3 is established only on h2's side.
    assert.equal(edges.length, 3, edges.join(' '));
    assert.ok(edges.some((e) => /:established:sleeve$/.test(e)), edges.join(' '));
    assert.ok(edges.some((e) => /:established:fastdp$/.test(e)), edges.join(' '));
    assert.ok(edges.some((e) => /:pending:$/.test(e)), edges.join(' '));
    assert.equal(await page.evaluate<number>(`document.querySelectorAll('#mesh g.endpoint').length`), 2);
    assert.equal(await page.evaluate<number>(`document.querySelectorAll('#mesh circle.share').length`), 3);

    // A fourth peer joins and connects to us: the page must follow without reloading.
    await page.evaluate(`window.__notReloaded = 42`);
    const next = structuredClone(src.current);
    next.Router.Peers.push({ Name: H4, NickName: 'h4', UID: 4, Version: 1, Connections: [
      { Name: H1, NickName: 'h1', Address: '192.168.77.1:6783', Outbound: true, Established: true }] });
    next.Router.Peers[0].Connections.push({ Name: H4, NickName: 'h4', Address: '192.168.77.4:51234', Outbound: false, Established: true });
    next.Router.Connections.push({ Address: '192.168.77.4:51234', Outbound: false, State: 'established', Info: 'sleeve', Name: H4, NickName: 'h4', Path: 'sleeve', MTU: 1376 });
    src.current = next;
    src.send({ type: 'peer-joined', peer: H4, nickname: 'h4' });
    src.send({ type: 'connection', address: '192.168.77.4:51234', peer: H4, nickname: 'h4', state: 'established', path: 'sleeve', mtu: 1376, info: 'sleeve' });
    await page.waitForFunction(`document.querySelectorAll('#mesh g.peer').length === 4 && document.querySelector('#mesh line.conn[data-a="${H4}"], #mesh line.conn[data-b="${H4}"]') !== null`, undefined, { timeout: 10_000 });
    assert.equal(await page.evaluate<number>(`window.__notReloaded`), 42);
    const shot = path.join(outDir, 'mesh-4-peers.png');
    await page.screenshot({ path: shot, type: 'png' });
    const size = statSync(shot).size;
    t.diagnostic(`screenshot: ${shot} (${size} bytes)`);
    console.log(`# screenshot: ${shot} (${size} bytes)`);
    assert.ok(size > 2000 && size < 300_000, `screenshot size ${size}`);

    // The router restarts: the page shows it is reconnecting, then comes back live.
    stream.close();
    await page.waitForFunction(`document.body.dataset.ws === 'reconnecting'`, undefined, { timeout: 5_000 });
    stream = attachEventStream(server, src, { resyncMs: 0 });
    await page.waitForFunction(`document.body.dataset.ws === 'live'`, undefined, { timeout: 10_000 });
    assert.equal(await page.evaluate<number>(`window.__notReloaded`), 42);
    assert.deepEqual(foreign, [], 'the page requested something outside the router');
  } finally {
    await ctx?.close();
    stream.close();
    server.close();
    await rm(profile, { recursive: true, force: true });
  }
});
