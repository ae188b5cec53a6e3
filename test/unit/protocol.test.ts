import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Unpackr, pack } from 'msgpackr';
import {
  FrameDecoder,
  MAX_FRAME_BYTES,
  PROTOCOL_MAX_VERSION,
  PROTOCOL_MIN_VERSION,
  ProtocolError,
  encodeFrame,
  rangeRefusal,
  validateControlMessage,
  type ControlMessage,
} from '../../router/mesh/protocol.js';
import { mulberry32 } from '../lib/prng.js';


const A = '8a:2b:3c:4d:5e:6f';
const B = '02:00:00:00:00:01';

const samples: ControlMessage[] = [
  { t: 'hello', proto: 'tsweave', minVersion: PROTOCOL_MIN_VERSION, maxVersion: PROTOCOL_MAX_VERSION, encrypted: true },
  { t: 'intro', version: 1, name: A, nickname: 'host-a', uid: 2 ** 52 + 12345, udpPort: 6783, range: '10.32.0.0/12' },
  { t: 'intro', version: 1, name: B, nickname: '', uid: 0, udpPort: 1 },
  { t: 'intro', version: 1, name: B, nickname: 'n', uid: 7, udpPort: 65535, range: '' },
  { t: 'intro', version: 1, name: B, nickname: 'n', uid: 7, udpPort: 65535, range: '10.32.0.0/12', range6: 'fd00:77::/64' },
  { t: 'hb' },
  { t: 'udp-ok' },
  { t: 'keys', material: Buffer.alloc(32, 7) },
  { t: 'gossip', channel: 'topology', kind: 'full', src: A, payload: Buffer.from([1, 2, 3]) },
  { t: 'gossip', channel: 'ipam', kind: 'unicast', src: A, dst: B, payload: Buffer.alloc(0) },
  { t: 'gossip', channel: 'x'.repeat(64), kind: 'update', src: B, payload: Buffer.alloc(100_000, 9) },
  { t: 'bye', reason: 'shutting down' },
];

function stream(msgs: ControlMessage[]): Buffer {
  return Buffer.concat(msgs.map(encodeFrame));
}

test('every message type round-trips through a frame', () => {
  for (const m of samples) {
    const d = new FrameDecoder();
    const out = d.push(encodeFrame(m));
    assert.deepEqual(out, [m]);
    assert.equal(d.buffered, 0);
  }
});

test('frame = 4-byte big-endian length + a plain msgpack map readable by a fresh decoder', () => {
  for (const m of samples) {
    const f = encodeFrame(m);
    const len = f.readUInt32BE(0);
    assert.equal(len, f.length - 4);
    const first = f[4]!;
    assert.ok((first & 0xf0) === 0x80 || first === 0xde || first === 0xdf, `body starts with 0x${first.toString(16)}, not a map`);
    // A separate Unpackr (as in another process) must decode it identically.
    assert.deepEqual(validateControlMessage(new Unpackr({ mapsAsObjects: true, useRecords: false }).unpack(f.subarray(4))), m);
  }
});

test('frames split at every byte boundary decode identically', () => {
  const msgs = samples.filter((m) => m.t !== 'gossip' || m.payload.length < 1000);
  const s = stream(msgs);
  for (let cut = 0; cut <= s.length; cut++) {
    const d = new FrameDecoder();
    const out = [...d.push(s.subarray(0, cut)), ...d.push(s.subarray(cut))];
    assert.deepEqual(out, msgs, `cut at ${cut}`);
    assert.equal(d.buffered, 0);
  }
});

test('random chunkings, including one byte at a time, decode identically', () => {
  const rnd = mulberry32(42);
  const s = stream([...samples, ...samples]);
  for (let trial = 0; trial < 30; trial++) {
    const d = new FrameDecoder();
    const out: ControlMessage[] = [];
    let at = 0;
    const maxChunk = trial === 0 ? 1 : 1 + Math.floor(rnd() * 5000);
    while (at < s.length) {
      const n = 1 + Math.floor(rnd() * maxChunk);
      out.push(...d.push(s.subarray(at, at + n)));
      at += n;
      assert.ok(d.buffered <= s.length);
    }
    assert.deepEqual(out, [...samples, ...samples]);
  }
});

test('buffered reports pending bytes of an incomplete frame', () => {
  const f = encodeFrame({ t: 'bye', reason: 'x' });
  const d = new FrameDecoder();
  assert.deepEqual(d.push(f.subarray(0, 3)), []);
  assert.equal(d.buffered, 3);
  assert.deepEqual(d.push(f.subarray(3, 6)), []);
  assert.equal(d.buffered, 2);
  assert.deepEqual(d.push(Buffer.alloc(0)), []);
  assert.equal(d.push(f.subarray(6)).length, 1);
  assert.equal(d.buffered, 0);
});

test('oversized length is rejected as soon as the prefix arrives', () => {
  const d = new FrameDecoder();
  const hdr = Buffer.alloc(4);
  hdr.writeUInt32BE(MAX_FRAME_BYTES + 1);
  assert.throws(() => d.push(hdr), (e: unknown) => e instanceof ProtocolError && /exceeds/.test(e.message));
  const small = new FrameDecoder(10);
  const f = encodeFrame({ t: 'bye', reason: 'more than ten bytes' });
  assert.throws(() => small.push(f.subarray(0, 4)), ProtocolError);
  // exactly at the limit is fine
  const body = f.length - 4;
  assert.equal(new FrameDecoder(body).push(f).length, 1);
  assert.throws(() => new FrameDecoder(body - 1).push(f), ProtocolError);
  assert.throws(() => new FrameDecoder(0), RangeError);
});

test('empty, truncated, trailing-garbage and non-map bodies are ProtocolErrors', () => {
  const frame = (body: Buffer) => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(body.length);
    return Buffer.concat([h, body]);
  };
  const bodies = [
    Buffer.alloc(0),
    Buffer.from([0x82, 0x01]),
    Buffer.concat([pack({ t: 'hb' }), Buffer.from([0x01])]),
    Buffer.from([0xc1]),
    pack([1, 2, 3]),
    pack('hb'),
    pack(null),
    pack({ t: 'nope' }),
    pack({ T: 'hb' }),
  ];
  for (const b of bodies) {
    assert.throws(() => new FrameDecoder().push(frame(b)), ProtocolError, b.toString('hex'));
  }
});

test('a good frame before a bad one in separate pushes is still delivered', () => {
  const d = new FrameDecoder();
  assert.deepEqual(d.push(encodeFrame({ t: 'hb' })), [{ t: 'hb' }]);
  assert.throws(() => d.push(Buffer.from([0, 0, 0, 1, 0xc1])), ProtocolError);
});

test('validation names the bad field', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ t: 'hello', proto: 'weave', minVersion: 1, maxVersion: 1, encrypted: false }, /"proto"/],
    [{ t: 'hello', proto: 'tsweave', minVersion: 0, maxVersion: 1, encrypted: false }, /"minVersion"/],
    [{ t: 'hello', proto: 'tsweave', minVersion: 2, maxVersion: 1, encrypted: false }, /"maxVersion"/],
    [{ t: 'hello', proto: 'tsweave', minVersion: 1, maxVersion: 1.5, encrypted: false }, /"maxVersion"/],
    [{ t: 'hello', proto: 'tsweave', minVersion: 1, maxVersion: 1, encrypted: 'yes' }, /"encrypted"/],
    [{ t: 'intro', version: 0, name: A, nickname: 'a', uid: 1, udpPort: 6783 }, /"version"/],
    [{ t: 'intro', version: 1, name: 'AA:BB:CC:DD:EE:FF', nickname: 'a', uid: 1, udpPort: 6783 }, /"name"/],
    [{ t: 'intro', version: 1, name: 'nope', nickname: 'a', uid: 1, udpPort: 6783 }, /"name"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a'.repeat(256), uid: 1, udpPort: 6783 }, /"nickname"/],
    [{ t: 'intro', version: 1, name: A, nickname: 5, uid: 1, udpPort: 6783 }, /"nickname"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a', uid: -1, udpPort: 6783 }, /"uid"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a', uid: 2 ** 53, udpPort: 6783 }, /"uid"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a', uid: 10n, udpPort: 6783 }, /"uid"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a', uid: 1, udpPort: 0 }, /"udpPort"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a', uid: 1, udpPort: 65536 }, /"udpPort"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a', uid: 1, udpPort: 6783, range: '10.0.0.0' }, /"range"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a', uid: 1, udpPort: 6783, range: '10.0.0.256/8' }, /"range"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a', uid: 1, udpPort: 6783, range: '10.0.0.0/33' }, /"range"/],
    [{ t: 'intro', version: 1, name: A, nickname: 'a', uid: 1, udpPort: 6783, range: 7 }, /"range"/],
    [{ t: 'keys', material: Buffer.alloc(31) }, /"material"/],
    [{ t: 'keys', material: 'x'.repeat(32) }, /"material"/],
    [{ t: 'gossip', channel: '', kind: 'full', src: A, payload: Buffer.alloc(1) }, /"channel"/],
    [{ t: 'gossip', channel: 'x'.repeat(65), kind: 'full', src: A, payload: Buffer.alloc(1) }, /"channel"/],
    [{ t: 'gossip', channel: 'c', kind: 'all', src: A, payload: Buffer.alloc(1) }, /"kind"/],
    [{ t: 'gossip', channel: 'c', kind: 'full', src: 'x', payload: Buffer.alloc(1) }, /"src"/],
    [{ t: 'gossip', channel: 'c', kind: 'full', src: A, dst: 'x', payload: Buffer.alloc(1) }, /"dst"/],
    [{ t: 'gossip', channel: 'c', kind: 'unicast', src: A, payload: Buffer.alloc(1) }, /"dst"/],
    [{ t: 'gossip', channel: 'c', kind: 'full', src: A, payload: [1, 2] }, /"payload"/],
    [{ t: 'bye', reason: 'r'.repeat(1025) }, /"reason"/],
    [{ t: 'bye' }, /"reason"/],
    [{ t: 42 }, /unknown control message type 42/],
    [{}, /unknown control message type/],
    [null, /want a map/],
    [[{ t: 'hb' }], /want a map/],
    [Buffer.from('hb'), /want a map/],
  ];
  for (const [x, re] of cases) {
    assert.throws(() => validateControlMessage(x), (e: unknown) => {
      assert.ok(e instanceof ProtocolError, `${JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}: ${String(e)}`);
      assert.match(e.message, re);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
  }
});

test('limits are inclusive and extra fields are dropped', () => {
  const m = validateControlMessage({
    t: 'intro', version: 1, name: A, nickname: 'n'.repeat(255), uid: Number.MAX_SAFE_INTEGER, udpPort: 65535,
    range: '255.255.255.255/32', evil: { deep: true },
  });
  assert.deepEqual(m, { t: 'intro', version: 1, name: A, nickname: 'n'.repeat(255), uid: Number.MAX_SAFE_INTEGER, udpPort: 65535, range: '255.255.255.255/32' });
  assert.deepEqual(validateControlMessage({ t: 'bye', reason: 'r'.repeat(1024), x: 1 }), { t: 'bye', reason: 'r'.repeat(1024) });
  assert.deepEqual(validateControlMessage({ t: 'hb', payload: 1 }), { t: 'hb' });
  // an explicit undefined optional field (msgpackr encodes it) is treated as absent
  const g = new FrameDecoder().push(encodeFrame({ t: 'gossip', channel: 'c', kind: 'full', src: A, dst: undefined, payload: Buffer.alloc(1) }));
  assert.equal(g.length, 1);
  assert.equal('dst' in g[0]!, false);
});

test('encodeFrame refuses a message over the frame limit', () => {
  const payload = Buffer.alloc(MAX_FRAME_BYTES);
  assert.throws(() => encodeFrame({ t: 'gossip', channel: 'c', kind: 'full', src: A, payload }), ProtocolError);
  const ok = Buffer.alloc(MAX_FRAME_BYTES - 100);
  const f = encodeFrame({ t: 'gossip', channel: 'c', kind: 'full', src: A, payload: ok });
  const out = new FrameDecoder().push(f);
  assert.equal(out.length, 1);
  assert.equal((out[0] as { payload: Uint8Array }).payload.length, ok.length);
});

test('property: random bytes only ever yield ProtocolError or valid messages', () => {
  const rnd = mulberry32(1234);
  const valid = new Set(['hello', 'intro', 'hb', 'udp-ok', 'keys', 'gossip', 'bye']);
  for (let i = 0; i < 3000; i++) {
    const d = new FrameDecoder(4096);
    const len = Math.floor(rnd() * 64);
    const b = Buffer.alloc(len);
    for (let j = 0; j < len; j++) b[j] = Math.floor(rnd() * 256);
    // half the time use a plausible small length prefix so bodies get parsed
    if (len >= 4 && rnd() < 0.5) b.writeUInt32BE(len - 4, 0);
    try {
      for (const m of d.push(b)) assert.ok(valid.has(m.t));
    } catch (e) {
      assert.ok(e instanceof ProtocolError, `unexpected ${String(e)} for ${b.toString('hex')}`);
    }
  }
  // mutate valid frames byte by byte
  const s = stream(samples.slice(0, 8));
  for (let i = 0; i < 2000; i++) {
    const m = Buffer.from(s);
    const k = 1 + Math.floor(rnd() * 3);
    for (let j = 0; j < k; j++) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
    try {
      for (const msg of new FrameDecoder().push(m)) assert.deepEqual(validateControlMessage(msg), msg);
    } catch (e) {
      assert.ok(e instanceof ProtocolError, `unexpected ${String(e)}`);
    }
  }
});

test('intro range6: an IPv6 prefix /8../96 in lower-case text or empty; anything else names the field', () => {
  const intro = { t: 'intro', version: 1, name: A, nickname: 'a', uid: 1, udpPort: 6783 };
  for (const ok of ['', 'fd00:77::/64', 'fd00::/8', '2001:db8:1:2:3:4::/96']) assert.equal((validateControlMessage({ ...intro, range6: ok }) as { range6?: string }).range6, ok);
  for (const bad of ['fd00:77::/97', 'fd00::/7', 'FD00:77::/64', 'fd00:77::', '10.32.0.0/12', 'fd00::1::/64', 'x'.repeat(65), 5]) {
    assert.throws(() => validateControlMessage({ ...intro, range6: bad }), /"range6"/, String(bad));
  }
});

test('rangeRefusal: IPv4 ranges and --ipalloc-range6 prefixes must match when both sides have one', () => {
  const peer = { name: A, nickname: 'h2', range: '10.32.0.0/12' };
  assert.equal(rangeRefusal({ range: '10.32.0.0/12' }, peer), undefined);
  assert.match(rangeRefusal({ range: '10.40.0.0/16' }, peer) ?? '', /^IPAM range mismatch: peer .*\(h2\) uses 10\.32\.0\.0\/12, we use 10\.40\.0\.0\/16/);
  assert.equal(rangeRefusal({ range: '10.32.0.0/12', range6: 'fd00:77::/64' }, { ...peer, range6: 'fd00:77::/64' }), undefined);
  const r = rangeRefusal({ range: '10.32.0.0/12', range6: 'fd00:77::/64' }, { ...peer, range6: 'fd00:78::/64' });
  assert.equal(r, `IPv6 range mismatch: peer ${A}(h2) uses --ipalloc-range6 fd00:78::/64, we use fd00:77::/64; relaunch one of them with the same --ipalloc-range6`);
  // Either side without range6 (IPv6 off, or an older router): accepted.
  assert.equal(rangeRefusal({ range: '10.32.0.0/12', range6: 'fd00:77::/64' }, peer), undefined);
  assert.equal(rangeRefusal({ range: '10.32.0.0/12' }, { ...peer, range6: 'fd00:78::/64' }), undefined);
});
