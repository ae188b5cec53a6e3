/**
 * Control-connection liveness (mesh/connection.ts `tick`, issue #20): heartbeats only
 * after HEARTBEAT_MS of sending nothing, close after HEARTBEAT_TIMEOUT_MS of silence.
 * Drives a Connection over a fake socket (no network): hello and intro in, frames out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { Connection, HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS, HEARTBEAT_CHECK_MS, type ConnectionHost } from '../../router/mesh/connection.js';
import { monoNow } from '../../router/mesh/mono-clock.js';
import { FrameDecoder, encodeFrame, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION, type ControlMessage } from '../../router/mesh/protocol.js';

class FakeSocket extends EventEmitter {
  readonly out = new FrameDecoder(1 << 20);
  readonly sent: ControlMessage[] = [];
  destroyed = false;
  remoteAddress = '10.0.0.2';
  remotePort = 40000;
  setNoDelay(): this { return this; }
  setKeepAlive(): this { return this; }
  /** Like net.Socket: writes while corked leave together (one writev) at uncork. */
  corks = 0;
  flushes = 0;
  private pending = 0;
  cork(): void {
    this.corks++;
  }
  uncork(): void {
    if (this.corks > 0 && --this.corks === 0 && this.pending > 0) {
      this.pending = 0;
      this.flushes++;
    }
  }
  write(b: Buffer): boolean {
    this.sent.push(...this.out.push(b));
    if (this.corks > 0) this.pending++;
    else this.flushes++;
    return true;
  }
  destroy(): this {
    this.destroyed = true;
    return this;
  }
  pause(): this { return this; }
  resume(): this { return this; }
}

function readyConnection(): { c: Connection; s: FakeSocket; closed: string[] } {
  const s = new FakeSocket();
  const closed: string[] = [];
  const host: ConnectionHost = {
    selfName: '02:00:00:00:00:01', nickname: 'a', uid: 1, udpPort: 6783, listenPort: 6783, passwordKey: undefined, ipamRange: '',
    admit: () => undefined, onReady: () => undefined, onMessage: () => undefined, onClosed: (_c, why) => closed.push(why), log: () => undefined,
  };
  const c = new Connection(host, s as unknown as net.Socket, true, '10.0.0.2:6783');
  c.start();
  s.emit('data', encodeFrame({ t: 'hello', proto: 'tsweave', minVersion: PROTOCOL_MIN_VERSION, maxVersion: PROTOCOL_MAX_VERSION, encrypted: false }));
  s.emit('data', encodeFrame({ t: 'intro', version: 1, name: '02:00:00:00:00:02', nickname: 'b', uid: 2, udpPort: 6783, listenPort: 6783, range: '' }));
  assert.equal(c.state, 'ready');
  return { c, s, closed };
}

test('heartbeat bounds: interval within the timeout, checked often enough', () => {
  assert.ok(HEARTBEAT_TIMEOUT_MS >= 3 * HEARTBEAT_MS, 'three heartbeats fit in the timeout');
  // Routers from before issue #20's slow heartbeats close a connection after 30 s of silence.
  assert.ok(HEARTBEAT_MS + HEARTBEAT_CHECK_MS / 2 < 30_000, 'a heartbeat reaches an older peer within its 30 s timeout');
  assert.ok(HEARTBEAT_CHECK_MS <= HEARTBEAT_MS / 2);
});

test('tick: a heartbeat only after HEARTBEAT_MS without sending; none while other messages flow', () => {
  const { c, s } = readyConnection();
  const hbs = (): number => s.sent.filter((m) => m.t === 'hb').length;
  const t0 = monoNow();
  c.tick(t0 + HEARTBEAT_CHECK_MS);
  assert.equal(hbs(), 0, 'the intro was just sent');
  c.tick(t0 + HEARTBEAT_MS);
  assert.equal(hbs(), 1);
  c.tick(t0 + HEARTBEAT_MS + HEARTBEAT_CHECK_MS);
  assert.equal(hbs(), 1, 'not again one check later');
  // Traffic: a message sent now makes the next heartbeat unnecessary.
  c.send({ t: 'udp-ok' });
  const sentAt = monoNow();
  c.tick(sentAt + HEARTBEAT_CHECK_MS);
  assert.equal(hbs(), 1);
  c.close('test over');
});

test('tick: closes after HEARTBEAT_TIMEOUT_MS without any message from the peer, not before', () => {
  const { c, s, closed } = readyConnection();
  const t0 = monoNow();
  c.tick(t0 + HEARTBEAT_TIMEOUT_MS - 1_000);
  assert.equal(c.state, 'ready');
  // Any message from the peer refreshes it.
  s.emit('data', encodeFrame({ t: 'hb' }));
  c.tick(monoNow() + HEARTBEAT_TIMEOUT_MS - 1_000);
  assert.equal(c.state, 'ready');
  c.tick(monoNow() + HEARTBEAT_TIMEOUT_MS + 1);
  assert.equal(c.state, 'closed');
  assert.match(closed[0]!, /no heartbeat from peer for 60 s/);
});

test('handshake: a big gossip frame in the same segment as the intro is accepted (the intro raises the limit first)', () => {
  // The peer became ready first and sent its full topology right behind its intro; both
  // arrive in one TCP read. Before the fix the whole segment was decoded with the 4 KiB
  // pre-auth limit and the connection closed with "frame length … exceeds".
  const s = new FakeSocket();
  const closed: string[] = [];
  const got: ControlMessage[] = [];
  const host: ConnectionHost = {
    selfName: '02:00:00:00:00:01', nickname: 'a', uid: 1, udpPort: 6783, listenPort: 6783, passwordKey: undefined, ipamRange: '',
    admit: () => undefined, onReady: () => undefined, onMessage: (_c, m) => got.push(m), onClosed: (_c, why) => closed.push(why), log: () => undefined,
  };
  const c = new Connection(host, s as unknown as net.Socket, true, '10.0.0.2:6783');
  c.start();
  s.emit('data', encodeFrame({ t: 'hello', proto: 'tsweave', minVersion: PROTOCOL_MIN_VERSION, maxVersion: PROTOCOL_MAX_VERSION, encrypted: false }));
  const intro = encodeFrame({ t: 'intro', version: 1, name: '02:00:00:00:00:02', nickname: 'b', uid: 2, udpPort: 6783, listenPort: 6783, range: '' });
  const gossip = encodeFrame({ t: 'gossip', channel: 'topology', kind: 'full', src: '02:00:00:00:00:02', payload: new Uint8Array(20_000) });
  s.emit('data', Buffer.concat([intro, gossip]));
  assert.deepEqual(closed, []);
  assert.equal(c.state, 'ready');
  assert.equal(got.length, 1);
  assert.equal(got[0]!.t, 'gossip');
  // Before the intro, a frame over the pre-auth limit is still refused.
  const s2 = new FakeSocket();
  const closed2: string[] = [];
  const c2 = new Connection({ ...host, onClosed: (_c, why) => closed2.push(why) }, s2 as unknown as net.Socket, true, '10.0.0.2:6783');
  c2.start();
  s2.emit('data', encodeFrame({ t: 'hello', proto: 'tsweave', minVersion: PROTOCOL_MIN_VERSION, maxVersion: PROTOCOL_MAX_VERSION, encrypted: false }));
  s2.emit('data', Buffer.concat([gossip, intro]));
  assert.equal(c2.state, 'closed');
  assert.match(closed2[0] ?? '', /exceeds/);
});

test('messages sent in one tick leave in one write (corked until the next tick), in order', async () => {
  const { c, s } = readyConnection();
  await new Promise<void>((r) => process.nextTick(r));
  const before = s.flushes;
  c.send({ t: 'hb' });
  c.send({ t: 'bye', reason: 'x' });
  c.send({ t: 'hb' });
  assert.equal(s.corks, 1, 'corked while the tick lasts');
  await new Promise<void>((r) => process.nextTick(r));
  assert.equal(s.corks, 0, 'uncorked on the next tick');
  assert.equal(s.flushes - before, 1, 'three messages, one write');
  assert.deepEqual(s.sent.slice(-3).map((m) => m.t), ['hb', 'bye', 'hb']);
  c.send({ t: 'hb' });
  await new Promise<void>((r) => process.nextTick(r));
  assert.equal(s.flushes - before, 2, 'a later tick is a write of its own');
});
