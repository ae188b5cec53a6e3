/**
 * Issue #13 (wire half) end to end: a stranger on the underlay (a host with no router)
 * attacks TCP 6783 of a router while two routers carry ping traffic:
 *   1. 1,000 connections, each sending an 8 MiB length prefix and then trickling bytes;
 *   2. the msgpack bomb (an array of 8 M empty maps), as the first frame and after a valid hello.
 * Asserted: the router's RSS stays under RSS_BOUND_MB, GET /status over the unix socket
 * (polled every 100 ms during the attack) has a median under 100 ms and never takes a second, the
 * legitimate connection stays established (same connection, never closed) and pings flow.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Testbed, canRunE2E, until, sleep, type Host, type Container } from './lib/testbed.js';
import { apiSocket, call } from '../../cli/client.js';

const skip = canRunE2E();
/** Router RSS must stay under this during the attack (baseline is ~80–120 MB). */
const RSS_BOUND_MB = 300;
/**
 * /status latency bounds. The issue asks < 100 ms; the median is held to that. The
 * maximum gets a generous bound because the test machine is shared (2 vCPUs, load
 * often > 15): a single slow poll there is scheduling noise, not the attack.
 */
const STATUS_MEDIAN_BOUND_MS = 100;
const STATUS_MAX_BOUND_MS = 1000;

if (skip && process.env.CI === 'true') test('pre-auth e2e prerequisites', () => assert.fail(`pre-auth e2e cannot run: ${skip}`));

/** The stranger: plain Node, run in the attacker's namespace. Exits when done (bounded in count and time). */
const ATTACKER = `
import net from 'node:net';
const [target, mode] = process.argv.slice(2);
const deadline = Date.now() + 150_000;
const prefix = Buffer.alloc(4); prefix.writeUInt32BE(8 * 1024 * 1024);
function once(send) {
  return new Promise((resolve) => {
    const s = net.connect({ host: target, port: 6783 });
    const t = setTimeout(() => s.destroy(), 15_000);
    s.on('connect', () => send(s));
    s.on('error', () => undefined);
    s.on('close', () => { clearTimeout(t); resolve(); });
  });
}
let refused = 0;
if (mode === 'prefix') {
  // 1,000 connections, 100 at a time: an 8 MiB length prefix, then 64 KiB of body.
  let next = 0;
  const worker = async () => {
    while (next < 1000 && Date.now() < deadline) {
      next++;
      await once((s) => { s.write(prefix); s.write(Buffer.alloc(65536, 0x80)); });
    }
  };
  await Promise.all(Array.from({ length: 100 }, worker));
  console.log('prefix done', next);
} else {
  const n = 8 * 1024 * 1024;
  const bomb = Buffer.alloc(4 + 5 + n, 0x80);
  bomb.writeUInt32BE(5 + n, 0); bomb[4] = 0xdd; bomb.writeUInt32BE(n, 5);
  // As the first frame, then after a valid hello (msgpack {t:'hello',...} built by hand below).
  await once((s) => s.end(bomb));
  const hello = Buffer.from('de0005a174a568656c6c6fa570726f746fa774737765617665aa6d696e56657273696f6e01aa6d617856657273696f6e01a9656e63727970746564c2', 'hex');
  const hp = Buffer.alloc(4); hp.writeUInt32BE(hello.length);
  await once((s) => s.end(Buffer.concat([hp, hello, bomb])));
  console.log('bomb done');
}
`;

function rssMb(h: Host): number {
  const st = readFileSync(`/proc/${h.pid()}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(st)![1]) / 1024;
}

describe('pre-auth limits under attack from a stranger', { skip, timeout: 300_000 }, () => {
  const bed = new Testbed('pa');
  let h1: Host, h2: Host, h3: Host;
  let c1: Container, c2: Container;

  before(async () => {
    [h1, h2, h3] = await bed.up(3);
    await h1.launch(['--ipalloc-range', '', '--no-proxy']);
    await h2.launch(['--ipalloc-range', '', '--no-proxy', h1.ip]);
    c1 = await h1.container('c1', ['ip:10.32.0.1/12']);
    c2 = await h2.container('c2', ['ip:10.32.0.2/12']);
    await until('h1-h2 established', async () => (await h1.report()).Router.Connections.some((c: { State: string }) => c.State === 'established'), 30_000);
    await c1.mustPing(c2.ips[0]);
  });
  after(() => bed.destroy());

  for (const mode of ['prefix', 'bomb'] as const) {
    test(`${mode === 'prefix' ? '1,000 connections with 8 MiB length prefixes' : 'msgpack bomb (8 M empty maps)'}: RSS bounded, /status fast, peers and pings unharmed`, async () => {
      const script = path.join(bed.dir, 'attacker.mjs');
      writeFileSync(script, ATTACKER);
      const terminationsBefore = (await h1.report()).Router.Connections.filter((c: { State: string }) => c.State === 'established').length;
      const rss0 = rssMb(h1);
      const pinger = c1.exec(['ping', '-c', '40', '-i', '0.25', '-W', '1', c2.ips[0]], 60_000); // 10 s of pings at the start of the attack
      const attack = h3.exec([process.execPath, script, h1.ip, mode], 180_000);
      let done = false;
      void attack.finally(() => { done = true; });
      const statusMs: number[] = [];
      let rssMax = rss0;
      const socket = apiSocket(h1.stateDir);
      for (let i = 0; i < 1500 && !done; i++) { // bounded: ≤ 1500 polls (the attacker stops itself after 150 s)
        const t0 = performance.now();
        await call('GET', '/status', undefined, { socket, timeoutMs: 5_000 });
        statusMs.push(performance.now() - t0);
        rssMax = Math.max(rssMax, rssMb(h1));
        await sleep(100);
      }
      const a = await attack;
      assert.equal(a.code, 0, `attacker failed: ${a.stderr}`);
      const p = await pinger;
      const received = Number(/(\d+) received/.exec(p.stdout)?.[1] ?? 0);
      statusMs.sort((x, y) => x - y);
      const max = statusMs.at(-1) ?? 0;
      const median = statusMs[statusMs.length >> 1] ?? 0;
      console.log(`${mode}: ${a.stdout.trim()}; /status polled ${statusMs.length}× median ${median.toFixed(1)} ms max ${max.toFixed(1)} ms; RSS ${rss0.toFixed(0)} → max ${rssMax.toFixed(0)} MB; pings ${received}/40`);
      assert.ok(statusMs.length >= 3, 'the attack ended before /status could be measured');
      if (mode === 'prefix') assert.match(a.stdout, /prefix done 1000\b/, 'the attacker did not get through all 1,000 connections');
      assert.ok(median < STATUS_MEDIAN_BOUND_MS, `/status median ${median.toFixed(1)} ms (bound ${STATUS_MEDIAN_BOUND_MS} ms)`);
      assert.ok(max < STATUS_MAX_BOUND_MS, `/status took ${max.toFixed(1)} ms (bound ${STATUS_MAX_BOUND_MS} ms)`);
      assert.ok(rssMax < RSS_BOUND_MB, `router RSS reached ${rssMax.toFixed(0)} MB (bound ${RSS_BOUND_MB} MB)`);
      assert.ok(received >= 38, `only ${received}/40 pings answered during the attack`);
      const conns = (await h1.report()).Router.Connections.filter((c: { State: string }) => c.State === 'established');
      assert.equal(conns.length, terminationsBefore, 'the legitimate connection was dropped');
      assert.doesNotMatch(h1.logTail(400), /h2\)? closed/, 'the h1–h2 connection closed during the attack');
      // Failed strangers are logged aggregated, not one line per connection.
      const strangerLines = h1.logTail(5000).split('\n').filter((l) => l.includes(h3.ip));
      assert.ok(strangerLines.some((l) => l.includes('failed before authentication')), 'the first failure from the stranger is logged');
      assert.ok(strangerLines.length <= 5, `${strangerLines.length} log lines about the stranger:\n${strangerLines.slice(0, 5).join('\n')}`);
    });
  }
});
