/**
 * Pure cores of the fast datapath: heartbeat packet codec, the path state machine
 * (with an injected clock) and the FDB diff.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeHeartbeatPacket, parseHeartbeat, heartbeatPacketSize, internetChecksum, ipv4ToNum, readVxlanVni,
  writeVxlanHeader, FastdpCodecError, HEARTBEAT_VNI, HEARTBEAT_BYTES, HB_DEVICE_IP, HB_SOURCE_IP,
  HB_DEVICE_MAC, HB_SOURCE_MAC, MIN_HEARTBEAT_PACKET, VXLAN_OVERHEAD, type Heartbeat,
} from '../../router/overlay/fastdp-codec.js';
import { DEFAULT_TIMING, FastdpPath, FastdpPathError, parseFdbJson, planFdb, FdbParseError, ZERO_MAC, type FdbEntry, type Vtep } from '../../router/overlay/fastdp-path.js';
import { readMac } from '../../router/overlay/mac-cache.js';
import { mulberry32 as prng } from '../lib/prng.js';


const A = 0x0a0b0c0d0e0f;
const B = 0xfedcba987654;

describe('fastdp codec', () => {
  const hb: Heartbeat = { sender: A, receiver: B, seq: 0xdeadbeef, heard: true, mtu: 1410 };

  test('heartbeat packet: VXLAN header, inner Ethernet/IPv4/UDP headers, full-MTU size', () => {
    const pkt = encodeHeartbeatPacket(hb, 6785);
    // The inner frame is exactly as big as a full data frame: PMTU failures fail heartbeats.
    assert.equal(pkt.length, 8 + 14 + 1410);
    assert.equal(pkt.length + 20 + 8, 1410 + VXLAN_OVERHEAD);
    assert.equal(readVxlanVni(pkt), HEARTBEAT_VNI);
    assert.equal(pkt[0], 0x08);
    assert.equal(readMac(pkt, 8), HB_DEVICE_MAC);
    assert.equal(readMac(pkt, 14), HB_SOURCE_MAC);
    assert.equal(pkt.readUInt16BE(20), 0x0800);
    const ip = 22;
    assert.equal(pkt[ip], 0x45);
    assert.equal(pkt.readUInt16BE(ip + 2), 1410, 'IPv4 total length = MTU');
    assert.equal(pkt[ip + 9], 17);
    assert.equal(pkt.readUInt32BE(ip + 12), ipv4ToNum(HB_SOURCE_IP));
    assert.equal(pkt.readUInt32BE(ip + 16), ipv4ToNum(HB_DEVICE_IP));
    assert.equal(internetChecksum(pkt, ip, ip + 20), 0, 'a valid header sums to zero (RFC 1071)');
    assert.equal(pkt.readUInt16BE(ip + 20), 6785);
    assert.equal(pkt.readUInt16BE(ip + 22), 6785);
    assert.equal(pkt.readUInt16BE(ip + 24), 1410 - 20, 'UDP length');
    assert.equal(pkt.readUInt16BE(ip + 26), 0, 'no UDP checksum');
    assert.deepEqual(parseHeartbeat(pkt.subarray(ip + 28)), hb);
    assert.ok(pkt.subarray(ip + 28 + HEARTBEAT_BYTES).every((b) => b === 0), 'zero padding');
  });

  test('small MTU still yields a minimal packet; bad MTU, port and names are refused', () => {
    assert.equal(encodeHeartbeatPacket({ ...hb, mtu: 52 }, 1).length, MIN_HEARTBEAT_PACKET);
    assert.equal(heartbeatPacketSize(10), MIN_HEARTBEAT_PACKET);
    for (const mtu of [0, 51, 65536, 1.5, NaN]) assert.throws(() => encodeHeartbeatPacket({ ...hb, mtu }, 6785), FastdpCodecError);
    for (const port of [0, 65536, -1]) assert.throws(() => encodeHeartbeatPacket(hb, port), FastdpCodecError);
    assert.throws(() => encodeHeartbeatPacket({ ...hb, sender: 0 }, 6785), FastdpCodecError);
    assert.throws(() => encodeHeartbeatPacket({ ...hb, receiver: 2 ** 48 }, 6785), FastdpCodecError);
  });

  test('parse: round trip of random heartbeats, HEARD flag and unknown flags', () => {
    const r = prng(7);
    for (let i = 0; i < 500; i++) {
      const h: Heartbeat = {
        sender: 1 + Math.floor(r() * (2 ** 48 - 1)), receiver: 1 + Math.floor(r() * (2 ** 48 - 1)),
        seq: Math.floor(r() * 2 ** 32), heard: r() < 0.5, mtu: 52 + Math.floor(r() * 9000),
      };
      const pkt = encodeHeartbeatPacket(h, 6785);
      assert.deepEqual(parseHeartbeat(pkt.subarray(8 + 14 + 28)), h);
    }
    const body = encodeHeartbeatPacket(hb, 6785).subarray(50);
    const b2 = Buffer.from(body);
    b2[5] = 0xfe; // HEARD clear, other bits set: ignored
    assert.equal(parseHeartbeat(b2)?.heard, false);
  });

  test('parse rejects short, wrong magic, wrong version and zero names', () => {
    const body = Buffer.from(encodeHeartbeatPacket(hb, 6785).subarray(50));
    assert.equal(parseHeartbeat(body.subarray(0, HEARTBEAT_BYTES - 1)), undefined);
    assert.equal(parseHeartbeat(Buffer.alloc(0)), undefined);
    for (const [off, val] of [[0, 0x55], [4, 2], [6, 0]] as const) {
      const b = Buffer.from(body);
      if (off === 6) b.fill(0, 6, 12);
      else b[off] = val;
      assert.equal(parseHeartbeat(b), undefined, `mutation at ${off}`);
    }
    const r = prng(11);
    for (let i = 0; i < 300; i++) {
      const junk = Buffer.alloc(Math.floor(r() * 64));
      for (let j = 0; j < junk.length; j++) junk[j] = Math.floor(r() * 256);
      const h = parseHeartbeat(junk);
      if (h !== undefined) assert.ok(junk.readUInt32BE(0) === 0x54534644 && junk[4] === 1);
    }
  });

  test('VXLAN header: VNI range, I flag required', () => {
    const b = Buffer.alloc(8);
    writeVxlanHeader(b, 0, 0xffffff);
    assert.equal(readVxlanVni(b), 0xffffff);
    assert.throws(() => writeVxlanHeader(b, 0, 0x1000000), FastdpCodecError);
    b[0] = 0;
    assert.equal(readVxlanVni(b), undefined);
    assert.equal(readVxlanVni(Buffer.alloc(7)), undefined);
  });

  test('helpers: IPv4 parsing and the RFC 1071 example', () => {
    assert.equal(ipv4ToNum('169.254.67.84'), 0xa9fe4354);
    for (const bad of ['1.2.3', '256.1.1.1', 'a.b.c.d', '']) assert.throws(() => ipv4ToNum(bad), FastdpCodecError);
    // RFC 1071 §3 example bytes: 00 01 f2 03 f4 f5 f6 f7 → one's complement sum ddf2, checksum 220d.
    assert.equal(internetChecksum(Buffer.from('0001f203f4f5f6f7', 'hex'), 0, 8), 0x220d);
    assert.equal(internetChecksum(Buffer.from('01', 'hex'), 0, 1), ~0x0100 & 0xffff, 'odd length pads with zero');
  });
});

describe('fastdp path state machine', () => {
  const timing = { intervalMs: 500, timeoutMs: 2000, upAfter: 4 };

  test('goes up after upAfter confirmed heartbeats, not before', () => {
    const p = new FastdpPath(timing);
    let now = 0;
    assert.equal(p.evaluate(now), undefined);
    for (let i = 1; i <= 3; i++) {
      now += 500;
      p.onHeartbeat(now, true);
      assert.equal(p.evaluate(now), undefined, `after ${i}`);
    }
    now += 500;
    p.onHeartbeat(now, true);
    assert.equal(p.evaluate(now), 'fastdp');
    assert.equal(p.state, 'fastdp');
    assert.equal(p.evaluate(now), undefined, 'no repeated transition');
  });

  test('heartbeats without HEARD never bring it up (one-way path)', () => {
    const p = new FastdpPath(timing);
    for (let t = 500; t <= 20_000; t += 500) {
      p.onHeartbeat(t, false);
      assert.equal(p.evaluate(t), undefined);
      assert.ok(p.hearing(t), 'we do hear the peer');
    }
    assert.equal(p.state, 'sleeve');
  });

  test('falls back on silence after exactly the timeout, and on a "not heard" heartbeat at once', () => {
    const p = new FastdpPath(timing);
    for (let t = 500; t <= 2000; t += 500) p.onHeartbeat(t, true);
    assert.equal(p.evaluate(2000), 'fastdp');
    assert.equal(p.evaluate(4000), undefined, 'at the timeout it still holds');
    assert.equal(p.evaluate(4001), 'sleeve');
    assert.match(p.reason, /no VXLAN heartbeat for 2 s/);
    assert.equal(p.hearing(4001), false);

    const q = new FastdpPath(timing);
    for (let t = 500; t <= 2000; t += 500) q.onHeartbeat(t, true);
    q.evaluate(2000);
    q.onHeartbeat(2100, false);
    assert.equal(q.evaluate(2100), 'sleeve');
    assert.match(q.reason, /does not hear/);
  });

  test('after a fallback it needs the whole streak again (heals, no flapping on one heartbeat)', () => {
    const p = new FastdpPath(timing);
    for (let t = 500; t <= 2000; t += 500) p.onHeartbeat(t, true);
    p.evaluate(2000);
    assert.equal(p.evaluate(10_000), 'sleeve');
    p.onHeartbeat(10_100, true);
    assert.equal(p.evaluate(10_100), undefined);
    for (let t = 10_600; t <= 11_600; t += 500) p.onHeartbeat(t, true);
    assert.equal(p.evaluate(11_600), 'fastdp');
    assert.equal(p.changes, 3);
  });

  test('due/sent pace heartbeats and wrap the sequence', () => {
    const p = new FastdpPath(timing);
    assert.ok(p.due(0));
    assert.equal(p.sent(0), 0);
    assert.ok(!p.due(499));
    assert.ok(p.due(500));
    p.seq = 0xffffffff;
    assert.equal(p.sent(500), 0xffffffff);
    assert.equal(p.seq, 0);
  });

  test('default timing: fast heartbeats only while confirming a peer we hear; slow once up, and while we hear nothing', () => {
    const p = new FastdpPath(DEFAULT_TIMING);
    assert.equal(DEFAULT_TIMING.intervalMs, 500);
    assert.equal(DEFAULT_TIMING.upIntervalMs, 4_000);
    assert.ok(DEFAULT_TIMING.timeoutMs >= 3 * DEFAULT_TIMING.upIntervalMs!, 'three up-intervals fit in the timeout');
    assert.ok(DEFAULT_TIMING.upIntervalMs! + 2_000 < 6_500, 'a heartbeat (and a 2 s idle tick of jitter) inside the previous release\'s 6.5 s timeout');
    assert.ok(p.due(0));
    p.sent(0);
    assert.equal(p.currentInterval(0), 4_000, 'nothing heard yet: knock slowly');
    assert.ok(!p.due(3_999) && p.due(4_000));
    assert.equal(p.confirming(0), false);
    p.onHeartbeat(100, true);
    assert.equal(p.currentInterval(100), 500, 'we hear it: confirm fast');
    assert.ok(p.confirming(100));
    assert.ok(p.due(500));
    for (let t = 600; t <= 1_600; t += 500) p.onHeartbeat(t, true);
    assert.equal(p.evaluate(1_600), 'fastdp');
    // Up here: upAfter more heartbeats on the fast interval (the peer may still be counting), then slow.
    for (let i = 0; i < DEFAULT_TIMING.upAfter; i++) {
      assert.equal(p.currentInterval(1_100 + i * 500), 500, `fast heartbeat ${i + 1} after coming up`);
      p.sent(1_100 + i * 500);
    }
    p.sent(1_600);
    assert.equal(p.currentInterval(1_600), 4_000, 'up: slow');
    assert.ok(!p.due(5_599) && p.due(5_600));
    // Peer's heartbeats every 4 s keep it up, two lost in a row too; silence beyond the timeout takes it down.
    for (let t = 5_600; t <= 21_600; t += 4_000) {
      p.onHeartbeat(t, true);
      assert.equal(p.evaluate(t + 3_999), undefined, `still up at ${t + 3_999}`);
    }
    assert.equal(p.evaluate(21_600 + 3 * 4_000), undefined, 'two heartbeats lost: still up');
    assert.equal(p.evaluate(21_600 + DEFAULT_TIMING.timeoutMs), undefined);
    assert.equal(p.evaluate(21_601 + DEFAULT_TIMING.timeoutMs), 'sleeve');
    assert.match(p.reason, /no VXLAN heartbeat for 13 s/);
  });

  test('two ends come up within about one fast interval of each other (the first one up keeps heartbeating fast)', () => {
    // Both ends knock slowly (nothing heard for longer than the timeout), with random
    // phases and 2 s idle ticks (250 ms while confirming), as fastdp.ts drives them.
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let run = 0; run < 200; run++) {
      const ends = [0, 1].map(() => ({ p: new FastdpPath(DEFAULT_TIMING), next: rnd() * 2_000, upAt: -1 }));
      for (const e of ends) {
        e.p.lastHeard = -2 * DEFAULT_TIMING.timeoutMs;
        e.p.lastSent = -rnd() * DEFAULT_TIMING.upIntervalMs!;
      }
      for (let t = 0; t < 60_000 && ends.some((e) => e.upAt < 0); t++) {
        for (const [x, y] of [[ends[0]!, ends[1]!], [ends[1]!, ends[0]!]] as const) {
          if (t < x.next) continue;
          if (x.p.due(t)) {
            x.p.sent(t);
            y.p.onHeartbeat(t, x.p.hearing(t));
            if (y.p.evaluate(t) === 'fastdp') y.upAt = t;
            if (y.p.confirming(t)) y.next = Math.min(y.next, t + 250);
          }
          if (x.p.evaluate(t) === 'fastdp') x.upAt = t;
          x.next = t + (x.p.confirming(t) ? 250 : 2_000);
        }
      }
      const [a, b] = ends.map((e) => e.upAt);
      assert.ok(a! >= 0 && b! >= 0, `run ${run}: both ends up`);
      assert.ok(Math.abs(a! - b!) <= 1_000, `run ${run}: ends up at ${a} and ${b} ms`);
      assert.ok(Math.max(a!, b!) <= DEFAULT_TIMING.upIntervalMs! + 4_000, `run ${run}: up ${Math.max(a!, b!)} ms after the path opened`);
    }
  });

  test('timing: the timeout must exceed the up interval too', () => {
    assert.throws(() => new FastdpPath({ intervalMs: 500, upIntervalMs: 3_000, timeoutMs: 2_000, upAfter: 4 }), FastdpPathError);
  });

  test('reset forgets evidence and reports a fall back only if it was up', () => {
    const p = new FastdpPath(timing);
    assert.equal(p.reset('x'), undefined);
    for (let t = 500; t <= 2000; t += 500) p.onHeartbeat(t, true);
    p.evaluate(2000);
    assert.equal(p.reset('peer address changed'), 'sleeve');
    assert.equal(p.reason, 'peer address changed');
    assert.equal(p.hearing(2000), false);
  });

  test('bad timing is refused with a clear error', () => {
    assert.throws(() => new FastdpPath({ intervalMs: 0, timeoutMs: 10, upAfter: 1 }), FastdpPathError);
    assert.throws(() => new FastdpPath({ intervalMs: 500, timeoutMs: 500, upAfter: 1 }), FastdpPathError);
    assert.throws(() => new FastdpPath({ intervalMs: 500, timeoutMs: 2000, upAfter: 0 }), /upAfter/);
  });

  test('property: two ends over a link with random loss and outages agree, and fastdp always means recent two-way evidence', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const r = prng(seed);
      const a = new FastdpPath(timing);
      const b = new FastdpPath(timing);
      // Outage windows per direction; loss otherwise.
      const loss = r() * 0.3;
      const outages: Array<[number, number, 'ab' | 'ba' | 'both']> = [];
      for (let i = 0; i < 3; i++) {
        const s = Math.floor(r() * 50_000);
        outages.push([s, s + 1000 + Math.floor(r() * 8000), (['ab', 'ba', 'both'] as const)[Math.floor(r() * 3)]!]);
      }
      const blocked = (t: number, dir: 'ab' | 'ba'): boolean => outages.some(([s, e, d]) => t >= s && t < e && (d === 'both' || d === dir));
      let disagreeSince = -1;
      for (let t = 0; t < 60_000; t += 100) {
        // Jitter the two senders' phases.
        if (a.due(t)) { const heard = a.hearing(t); a.sent(t); if (!blocked(t, 'ab') && r() >= loss) b.onHeartbeat(t, heard); }
        if (t % 300 === 0 && b.due(t)) { const heard = b.hearing(t); b.sent(t); if (!blocked(t, 'ba') && r() >= loss) a.onHeartbeat(t, heard); }
        a.evaluate(t);
        b.evaluate(t);
        for (const p of [a, b]) if (p.state === 'fastdp') assert.ok(p.hearing(t) && p.streak > 0, `seed ${seed} t=${t}: fastdp without evidence`);
        if (blocked(t, 'ab') || blocked(t, 'ba')) {
          // During an outage longer than the timeout both ends must be on the sleeve.
          const since = Math.max(...outages.filter(([s, e]) => t >= s && t < e).map(([s]) => s));
          if (t - since > timing.timeoutMs + 700) assert.equal(a.state === 'sleeve' && b.state === 'sleeve', true, `seed ${seed} t=${t}: still fastdp during an outage`);
        }
        if (a.state !== b.state) {
          if (disagreeSince < 0) disagreeSince = t;
          assert.ok(t - disagreeSince <= timing.timeoutMs + 1000, `seed ${seed} t=${t}: ends disagree for ${t - disagreeSince} ms`);
        } else {
          disagreeSince = -1;
        }
      }
    }
  });
});

describe('fastdp FDB diff', () => {
  const port = 6784;
  const json = JSON.stringify([
    { mac: '76:54:33:a1:48:ba', flags: [], master: 'weave', state: 'permanent' },
    { mac: '00:00:00:00:00:00', dst: '192.168.99.2', flags: ['self'], state: 'permanent' },
    { mac: '00:00:00:00:00:00', dst: '192.168.99.3', flags: ['self'], state: 'permanent' },
    { mac: 'aa:bb:cc:00:00:02', dst: '192.168.99.2', flags: ['self'], state: '' },
    { mac: 'aa:bb:cc:00:00:03', dst: '192.168.99.3', flags: ['self'] },
    { mac: 'aa:bb:cc:00:00:09', dst: '10.9.9.9', flags: ['self'] },
    { mac: '00:00:00:00:00:00', dst: '192.168.99.4', port: 7000, flags: ['self'], state: 'permanent' },
    { mac: 'not a mac', dst: '1.1.1.1' },
  ]);

  test('parse: bridge -j fdb show', () => {
    const e = parseFdbJson(json);
    assert.equal(e.length, 7, 'the invalid MAC is skipped');
    assert.deepEqual(e[0], { mac: '76:54:33:a1:48:ba', self: false, state: 'permanent' });
    assert.deepEqual(e[3], { mac: 'aa:bb:cc:00:00:02', dst: '192.168.99.2', self: true, state: undefined });
    assert.equal(e[6]!.port, 7000);
    assert.deepEqual(parseFdbJson(''), []);
    assert.throws(() => parseFdbJson('{"mac":1}'), FdbParseError);
    assert.throws(() => parseFdbJson('[{'), /not JSON/);
  });

  test('plan: add missing floods, remove unwanted floods and learned entries behind unwanted VTEPs', () => {
    const wanted: Vtep[] = [{ address: '192.168.99.2', port }, { address: '192.168.99.5', port }];
    const plan = planFdb(parseFdbJson(json), wanted, port);
    assert.deepEqual(plan.add, [{ address: '192.168.99.5', port }]);
    assert.deepEqual(plan.del, [
      { mac: ZERO_MAC, dst: '192.168.99.3' },
      { mac: 'aa:bb:cc:00:00:03', dst: '192.168.99.3' },
      { mac: 'aa:bb:cc:00:00:09', dst: '10.9.9.9' },
      { mac: ZERO_MAC, dst: '192.168.99.4', port: 7000 },
    ]);
    assert.equal(plan.flows, 1, 'the learned entry towards .2 stays and counts as a flow');
  });

  test('plan: a flooding entry with the wrong port is replaced', () => {
    const plan = planFdb([{ mac: ZERO_MAC, dst: '10.0.0.1', port: 7000, self: true }], [{ address: '10.0.0.1', port }], port);
    assert.deepEqual(plan.add, [{ address: '10.0.0.1', port }]);
    assert.deepEqual(plan.del, [{ mac: ZERO_MAC, dst: '10.0.0.1', port: 7000 }]);
  });

  test('plan: nothing to do when in sync; bridge entries are never touched', () => {
    const entries: FdbEntry[] = [
      { mac: ZERO_MAC, dst: '10.0.0.1', self: true, state: 'permanent' },
      { mac: 'aa:aa:aa:aa:aa:aa', self: false },
    ];
    assert.deepEqual(planFdb(entries, [{ address: '10.0.0.1', port }], port), { add: [], del: [], flows: 0 });
    assert.deepEqual(planFdb([{ mac: 'aa:aa:aa:aa:aa:aa', self: false }], [], port), { add: [], del: [], flows: 0 });
  });

  test('property: applying the plan leaves exactly the wanted floods and no learned entry behind an unwanted VTEP', () => {
    const r = prng(99);
    const ips = Array.from({ length: 6 }, (_, i) => `10.0.0.${i + 1}`);
    for (let round = 0; round < 300; round++) {
      const entries: FdbEntry[] = [];
      for (const ip of ips) {
        if (r() < 0.5) entries.push({ mac: ZERO_MAC, dst: ip, self: true, ...(r() < 0.2 ? { port: 7000 } : {}) });
        const n = Math.floor(r() * 3);
        for (let k = 0; k < n; k++) entries.push({ mac: `02:00:00:00:${ip.slice(-1).padStart(2, '0')}:0${k}`, dst: ip, self: true });
        if (r() < 0.3) entries.push({ mac: `02:11:00:00:00:0${Math.floor(r() * 9)}`, self: false });
      }
      const wanted = ips.filter(() => r() < 0.5).map((address) => ({ address, port }));
      const plan = planFdb(entries, wanted, port);
      const key = (e: { mac: string; dst?: string; port?: number }): string => `${e.mac}|${e.dst}|${e.port ?? port}`;
      const gone = new Set(plan.del.map(key));
      const after = entries.filter((e) => !(e.self && gone.has(key(e))));
      for (const a of plan.add) after.push({ mac: ZERO_MAC, dst: a.address, port: a.port, self: true });
      const floods = after.filter((e) => e.self && e.mac === ZERO_MAC).map((e) => `${e.dst}:${e.port ?? port}`).sort();
      assert.deepEqual(floods, wanted.map((w) => `${w.address}:${w.port}`).sort());
      const wantAddr = new Set(wanted.map((w) => w.address));
      for (const e of after) if (e.self && e.mac !== ZERO_MAC) assert.ok(wantAddr.has(e.dst!), `learned ${e.mac} behind unwanted ${e.dst}`);
      assert.equal(after.filter((e) => !e.self).length, entries.filter((e) => !e.self).length);
      assert.equal(plan.flows, after.filter((e) => e.self && e.mac !== ZERO_MAC).length);
      // Applying again is a no-op.
      assert.deepEqual(planFdb(after, wanted, port), { add: [], del: [], flows: plan.flows });
    }
  });
});
