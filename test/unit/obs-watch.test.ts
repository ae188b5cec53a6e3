import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { attachEventStream } from '../../router/api/events.js';
import { watchStatus } from '../../cli/watch.js';
import { FakeSource, H4 } from './obs-fixtures.js';

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

function out(isTTY: boolean) {
  const writes: string[] = [];
  return { isTTY, writes, write(s: string) { writes.push(s); return true; } } as unknown as NodeJS.WriteStream & { writes: string[] };
}

test('watch: redraws from snapshot and deltas, reconnects after the stream closes, stops on abort', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const src = new FakeSource();
  let stream = attachEventStream(server, src, { resyncMs: 0 });
  const o = out(false);
  const ac = new AbortController();
  let connects = 0;
  const done = watchStatus({
    connect: () => { connects++; return new WebSocket(`ws://127.0.0.1:${port}/events`); },
    out: o,
    render: (r) => `peers=${r.Router.Peers.map((p) => p.NickName).join(',')}\n`,
    signal: ac.signal,
    backoffMs: 20,
    handleSigint: false,
  });
  try {
    await until(() => o.writes.includes('peers=h1,h2,h3\n'), 2000, 'first draw');
    src.send({ type: 'peer-joined', peer: H4, nickname: 'h4' });
    await until(() => o.writes.some((w) => w.includes('peers=h1,h2,h3,h4')), 2000, 'redraw with h4');
    assert.ok(o.writes.some((w) => w === '\npeers=h1,h2,h3,h4\n'), 'frames separated by a blank line when not a TTY');
    // Router restarts: the stream goes away, then comes back with a new report.
    stream.close();
    await until(() => o.writes.some((w) => w.includes('reconnecting in')), 2000, 'reconnect notice');
    const next = structuredClone(src.current);
    next.Router.Peers = next.Router.Peers.slice(0, 2);
    src.current = next;
    stream = attachEventStream(server, src, { resyncMs: 0 });
    await until(() => o.writes.at(-1) === '\npeers=h1,h2\n', 3000, 'redraw after reconnect');
    assert.ok(connects >= 2);
  } finally {
    ac.abort();
    await done;
    stream.close();
    server.close();
  }
  const n = o.writes.length;
  await sleep(100);
  assert.equal(o.writes.length, n, 'nothing written after stop');
});

test('watch: clears the screen on a TTY; survives junk messages; an aborted signal stops at once', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const src = new FakeSource();
  const stream = attachEventStream(server, src, { resyncMs: 0 });
  const o = out(true);
  const ac = new AbortController();
  const done = watchStatus({
    connect: () => new WebSocket(`ws://127.0.0.1:${port}/events`),
    out: o,
    render: (r) => `n=${r.Router.Peers.length}`,
    signal: ac.signal,
    handleSigint: false,
  });
  try {
    await until(() => o.writes.includes('\x1b[H\x1b[2Jn=3'), 2000, 'tty draw');
    src.emit('event', 'not an event object');
    src.send({ type: 'peer-left', peer: src.current.Router.Peers[2].Name, nickname: 'h3' });
    await until(() => o.writes.includes('\x1b[H\x1b[2Jn=2'), 2000, 'tty redraw');
  } finally {
    ac.abort();
    await done;
    stream.close();
    server.close();
  }
  const pre = new AbortController();
  pre.abort();
  let connected = false;
  await watchStatus({ connect: () => { connected = true; throw new Error('x'); }, out: out(false), render: () => '', signal: pre.signal, handleSigint: false });
  assert.equal(connected, false);
});

test('watch: a connect() that throws is retried with backoff', async () => {
  const o = out(false);
  const ac = new AbortController();
  let tries = 0;
  const done = watchStatus({
    connect: () => { tries++; throw new Error('ECONNREFUSED /run/weave/weaver.sock'); },
    out: o, render: () => '', signal: ac.signal, backoffMs: 10, maxBackoffMs: 40, handleSigint: false,
  });
  await sleep(250);
  ac.abort();
  await done;
  // 10 + 20 + 40 + 40 + ... ms: a handful of tries, not a busy loop.
  assert.ok(tries >= 3 && tries <= 10, `tries=${tries}`);
  assert.equal(o.writes[0], 'connection to router lost (ECONNREFUSED /run/weave/weaver.sock); reconnecting in 0.0s\n');
});
