/**
 * The sleeve's UDP path comes up without waiting for a periodic heartbeat
 * (router/overlay/sleeve.ts): the side whose connection became ready first sends its
 * heartbeat before the other side knows it, and that heartbeat is dropped; the first
 * heartbeat each side hears is answered at once. Two sleeves on 127.0.0.1 (no root, no
 * traffic off loopback), with their periodic ticks stopped, so only that answer can
 * establish the path.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sleeve, SleevePeer, type SleeveHost } from '../../router/overlay/sleeve.js';

const sleeves: Sleeve[] = [];
after(() => {
  for (const s of sleeves) s.close();
});

/** A host that plays the router's part of 'udp-ok': hearing the peer confirms us on its side. */
function host(selfNum: number, onHeard: (p: SleevePeer) => void, drops: Record<string, number>): SleeveHost {
  return {
    selfNum,
    onFrames: () => undefined,
    onHeardFrom: onHeard,
    onUdpTimeout: () => undefined,
    onPmtuChanged: () => undefined,
    drop: (reason, n = 1) => {
      drops[reason] = (drops[reason] ?? 0) + n;
    },
    log: () => undefined,
  };
}

test('a heartbeat dropped before the other side knew us is made good by its answer, not by the next periodic heartbeat', async () => {
  const numA = 0x020000000a01;
  const numB = 0x020000000b02;
  const dropsA: Record<string, number> = {};
  const dropsB: Record<string, number> = {};
  // A's view of B, and B's view of A, once added.
  const view: { ofA?: SleevePeer; ofB?: SleevePeer } = {};
  // 'udp-ok' over TCP, instantly: A heard B, so B's view of A is confirmed (and vice versa).
  const a = new Sleeve(host(numA, () => void (view.ofB && (view.ofB.confirmed = true)), dropsA), 0, { address: '127.0.0.1', offload: false, sendSlabBytes: 1 << 16 });
  const b = new Sleeve(host(numB, () => void (view.ofA && (view.ofA.confirmed = true)), dropsB), 0, { address: '127.0.0.1', offload: false, sendSlabBytes: 1 << 16 });
  sleeves.push(a, b);
  await a.listen();
  await b.listen();
  // No periodic heartbeats at all: only the ones sent on addPeer and on first hearing.
  for (const s of [a, b]) (s as unknown as { ticker: { cancel(): void } }).ticker.cancel();
  const kick = (s: Sleeve): void => {
    (s as unknown as { kick(): void }).kick = () => undefined;
  };
  kick(a);
  kick(b);

  const peerOfA = (view.ofA = new SleevePeer('02:00:00:00:0b:02', numB, '127.0.0.1', b.localPort, 1400, false));
  a.addPeer(peerOfA); // its heartbeat reaches B, which does not know A yet: dropped
  const until = async (what: string, cond: () => boolean): Promise<void> => {
    const end = Date.now() + 3000;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out after 3 s waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await until('B to drop A\'s first heartbeat as from an unknown peer', () => (dropsB['unknown-peer'] ?? 0) >= 1);
  const peerOfB = (view.ofB = new SleevePeer('02:00:00:00:0a:01', numA, '127.0.0.1', a.localPort, 1400, false));
  b.addPeer(peerOfB);
  await until('both sides established', () => peerOfA.established && peerOfB.established);
  assert.equal(peerOfA.heard && peerOfA.confirmed && peerOfB.heard && peerOfB.confirmed, true);
});
