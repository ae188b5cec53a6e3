/**
 * Observability against real routers: /metrics agrees with `weave report`, the
 * /events WebSocket streams a snapshot then live changes, and the live page in a real
 * browser (Debian chromium, run inside h1's namespace) draws the mesh and follows a
 * fourth peer without reloading.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { existsSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import { WebSocket } from 'ws';
import { Testbed, canRunE2E, until, type Host } from './lib/testbed.js';
import type { RouterEvent } from '../../router/api/report.js';

const skip = canRunE2E();

function get(h: Host, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: path.join(h.stateDir, 'weaver.sock'), path: urlPath, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\w+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = Object.fromEntries((m[2] ?? '').split(',').filter(Boolean).map((kv) => {
      const i = kv.indexOf('=');
      return [kv.slice(0, i), kv.slice(i + 2, -1)];
    }));
    if (Object.entries(labels).every(([k, v]) => ls[k] === v)) {
      sum += Number(m[3]);
      found = true;
    }
  }
  assert.ok(found, `metric ${name}${JSON.stringify(labels)} not found`);
  return sum;
}

describe('observability with 3 real routers', { skip, timeout: 600_000 }, () => {
  const bed = new Testbed('o');
  let h1: Host, h2: Host, h3: Host, h4: Host;

  before(async () => {
    [h1, h2, h3, h4] = await bed.up(4);
    await h1.launch(['--no-proxy', h2.ip, h3.ip]);
    await h2.launch(['--no-proxy', h1.ip, h3.ip]);
    await h3.launch(['--no-proxy', h1.ip, h2.ip]);
    await h1.container('c1', []);
    await until('3-peer mesh', async () => (await h1.report()).Router.Connections.filter((c: { State: string }) => c.State === 'established').length === 2, 30_000);
  });
  after(() => bed.destroy());

  test('/metrics agrees with weave report', async () => {
    const r = await h1.report();
    const text = await get(h1, '/metrics');
    const established = r.Router.Connections.filter((c: { State: string }) => c.State === 'established').length;
    assert.equal(metric(text, 'weave_connections', { state: 'established' }), established);
    assert.equal(metric(text, 'weave_max_ips'), 2 ** 20);
    assert.equal(metric(text, 'weave_ipam_pending_allocates'), r.IPAM.PendingAllocates);
    assert.equal(metric(text, 'weave_ipam_unreachable_count'), 0);
    assert.equal(metric(text, 'tsweave_mac_cache_entries'), r.Router.MACs);
    assert.ok(metric(text, 'tsweave_gossip_messages_total', { channel: 'topology' }) > 0);
  });

  test('/events: a snapshot, then connection established when a peer launches and peer-left when it stops', async () => {
    const ws = new WebSocket(`ws+unix://${path.join(h1.stateDir, 'weaver.sock')}:/events`);
    const events: RouterEvent[] = [];
    ws.on('message', (d) => events.push(JSON.parse(String(d)) as RouterEvent));
    try {
      await until('snapshot', async () => events.some((e) => e.type === 'snapshot'), 10_000, 100);
      assert.equal(events[0].type, 'snapshot');
      const n4 = (await h4.launch(['--no-proxy', h1.ip])).trim();
      await until('connection established event', async () => events.some((e) => e.type === 'connection' && e.peer === n4 && e.state === 'established'), 30_000, 200);
      await h4.mustWeave(['stop']);
      await until('peer-left event', async () => events.some((e) => e.type === 'peer-left' && e.peer === n4), 60_000, 200);
    } finally {
      ws.close();
    }
  });

  test('the live page in chromium shows the mesh and a fourth peer appears without reload', async (t) => {
    if (!existsSync('/usr/bin/chromium')) return t.skip('chromium not installed');
    let chromium: { launchPersistentContext(dir: string, o: Record<string, unknown>): Promise<any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      const name = 'playwright-core';
      chromium = ((await import(name)) as { chromium: typeof chromium }).chromium;
    } catch {
      return t.skip('playwright-core not installed');
    }
    // Run the browser inside h1's namespace so it reaches the router's 127.0.0.1:6784.
    const wrapper = path.join(bed.dir, 'chromium-in-h1');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${h1.ns} /usr/bin/chromium "$@"\n`);
    chmodSync(wrapper, 0o755);
    const ctx = await chromium.launchPersistentContext(path.join(bed.dir, 'profile'), {
      executablePath: wrapper, headless: true, timeout: 30_000, viewport: { width: 820, height: 640 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      const page = await ctx.newPage();
      await page.goto('http://127.0.0.1:6784/');
      await page.waitForFunction(`document.body.dataset.ws === 'live' && document.querySelectorAll('#mesh g.peer').length === 3`, undefined, { timeout: 15_000 });
      const edges = await page.evaluate(`document.querySelectorAll('#mesh line.conn').length`);
      assert.ok(edges >= 3, `edges: ${edges}`);
      await page.evaluate('window.__notReloaded = 7');
      await h4.launch(['--no-proxy', h1.ip]);
      await page.waitForFunction(`document.querySelectorAll('#mesh g.peer').length === 4`, undefined, { timeout: 30_000 });
      assert.equal(await page.evaluate('window.__notReloaded'), 7);
      const shot = path.join(bed.dir, '..', `tsweave-mesh-${process.pid}.png`);
      await page.screenshot({ path: shot, type: 'png' });
      console.log(`# screenshot of the live page: ${shot} (${statSync(shot).size} bytes)`);
    } finally {
      await ctx.close();
    }
  });
});
