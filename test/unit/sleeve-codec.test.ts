import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DatagramType,
  FRAME_HEADER_BYTES,
  FramePacker,
  HEADER_BYTES,
  SLEEVE_MAGIC,
  SleeveCodecError,
  datagramSender,
  datagramType,
  encodeHeartbeat,
  encodePmtuAck,
  encodePmtuProbe,
  forEachFrame,
  parseHeader,
  parseHeartbeat,
  parsePmtuAck,
  parsePmtuProbe,
} from '../../router/overlay/sleeve-codec.js';
import { mulberry32 } from '../lib/prng.js';


const SENDER = 0x8a2b3c4d5e6f;
const OTHER = 0x020000000001;

function frameOf(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

interface Seen { src: number; dst: number; frame: Buffer }
function collect(buf: Buffer, offset = HEADER_BYTES, end = buf.length): { ok: boolean; seen: Seen[] } {
  const seen: Seen[] = [];
  const ok = forEachFrame(buf, offset, end, (src, dst, b, s, e) => seen.push({ src, dst, frame: Buffer.from(b.subarray(s, e)) }));
  return { ok, seen };
}

test('header layout: magic, type, 48-bit sender', () => {
  const hb = encodeHeartbeat(SENDER, OTHER, 7);
  assert.equal(hb[0], SLEEVE_MAGIC);
  assert.equal(hb[1], DatagramType.HEARTBEAT);
  assert.equal(hb.subarray(2, 8).toString('hex'), '8a2b3c4d5e6f');
  assert.deepEqual(parseHeader(hb), { type: 2, sender: SENDER });
  assert.equal(datagramType(hb), 2);
  assert.equal(datagramSender(hb), SENDER);
  assert.deepEqual([DatagramType.FRAMES, DatagramType.HEARTBEAT, DatagramType.PMTU_PROBE, DatagramType.PMTU_ACK, DatagramType.ENCRYPTED], [1, 2, 3, 4, 5]);
});

test('parseHeader rejects short buffers and wrong magic, passes unknown types through', () => {
  assert.equal(parseHeader(Buffer.alloc(0)), undefined);
  assert.equal(parseHeader(Buffer.from([0x54, 1, 0, 0, 0, 0, 0])), undefined);
  assert.equal(parseHeader(Buffer.from([0x55, 1, 0, 0, 0, 0, 0, 0])), undefined);
  assert.deepEqual(parseHeader(Buffer.from([0x54, 99, 0, 0, 0, 0, 0, 1])), { type: 99, sender: 1 });
  assert.equal(datagramType(Buffer.from([0x54, 1])), -1);
  assert.equal(datagramType(Buffer.from([0x00, 1, 0, 0, 0, 0, 0, 0])), -1);
});

test('FramePacker packs frames that forEachFrame returns unchanged', () => {
  const p = new FramePacker(65535);
  const buf = Buffer.alloc(65535);
  p.begin(buf, 1472, SENDER);
  assert.equal(p.length, HEADER_BYTES);
  assert.equal(p.count, 0);
  const frames = [frameOf(60, 1), frameOf(14, 2), frameOf(300, 3)];
  const big = Buffer.concat([Buffer.alloc(5, 0xee), frames[2]!, Buffer.alloc(5, 0xee)]);
  assert.ok(p.add(SENDER, OTHER, frames[0]!, 0, 60));
  assert.ok(p.add(OTHER, 0, frames[1]!, 0, 14));
  assert.ok(p.add(SENDER, 0x123456789abc, big, 5, 305), 'sub-range of a larger buffer');
  assert.equal(p.count, 3);
  assert.equal(p.length, HEADER_BYTES + 3 * FRAME_HEADER_BYTES + 60 + 14 + 300);
  const dgram = buf.subarray(0, p.length);
  assert.deepEqual(parseHeader(dgram), { type: DatagramType.FRAMES, sender: SENDER });
  const { ok, seen } = collect(dgram);
  assert.ok(ok);
  assert.deepEqual(seen, [
    { src: SENDER, dst: OTHER, frame: frames[0] },
    { src: OTHER, dst: 0, frame: frames[1] },
    { src: SENDER, dst: 0x123456789abc, frame: frames[2] },
  ]);
  // the record layout is exactly src(6) dst(6) len(2)
  assert.equal(dgram.subarray(8, 22).toString('hex'), '8a2b3c4d5e6f' + '020000000001' + '003c');
});

test('FramePacker respects maxBytes exactly, and capacity and buffer size', () => {
  const p = new FramePacker(2000);
  const buf = Buffer.alloc(4000);
  const limit = 200;
  p.begin(buf, limit, SENDER);
  const fill = limit - HEADER_BYTES - FRAME_HEADER_BYTES; // one frame that exactly fills it
  assert.equal(FramePacker.maxFrameFor(limit), fill);
  assert.equal(p.add(1, 2, frameOf(fill + 1, 0), 0, fill + 1), false);
  assert.equal(p.count, 0, 'false with count 0: can never fit');
  assert.equal(p.add(1, 2, frameOf(fill, 0), 0, fill), true);
  assert.equal(p.length, limit);
  assert.equal(p.add(1, 2, frameOf(14, 0), 0, 14), false);
  assert.equal(p.length, limit);
  // begin resets
  p.begin(buf, 100, SENDER);
  assert.equal(p.count, 0);
  assert.ok(p.add(1, 2, frameOf(78, 0), 0, 78));
  assert.equal(p.add(1, 2, frameOf(14, 0), 0, 14), false);
  // capacity caps maxBytes; so does the buffer length
  p.begin(buf, 60000, SENDER);
  assert.equal(p.add(1, 2, frameOf(2000, 0), 0, 2000), false);
  assert.ok(p.add(1, 2, frameOf(2000 - 22, 0), 0, 2000 - 22));
  p.begin(Buffer.alloc(100), 1500, SENDER);
  assert.equal(p.add(1, 2, frameOf(79, 0), 0, 79), false);
  assert.ok(p.add(1, 2, frameOf(78, 0), 0, 78));
  // a limit too small for even a header: nothing fits, nothing written
  const tiny = Buffer.alloc(4, 0xaa);
  p.begin(tiny, 1500, SENDER);
  assert.equal(p.length, 0);
  assert.equal(p.add(1, 2, frameOf(14, 0), 0, 14), false);
  assert.deepEqual([...tiny], [0xaa, 0xaa, 0xaa, 0xaa]);
  assert.throws(() => new FramePacker(7), SleeveCodecError);
  assert.throws(() => new FramePacker(65536), SleeveCodecError);
});

test('FramePacker refuses invalid frame lengths', () => {
  const p = new FramePacker(65535);
  p.begin(Buffer.alloc(65535), 65535, SENDER);
  assert.equal(p.add(1, 2, frameOf(13, 0), 0, 13), false);
  assert.equal(p.add(1, 2, frameOf(0, 0), 0, 0), false);
  assert.equal(p.add(1, 2, frameOf(20, 0), 10, 5), false);
  assert.equal(p.add(1, 2, frameOf(65536, 0), 0, 65536), false);
  assert.equal(p.count, 0);
  assert.equal(p.length, HEADER_BYTES);
});

test('heartbeat round-trip; counter is u32', () => {
  for (const counter of [0, 1, 0xffffffff, 2 ** 32 + 5]) {
    const b = encodeHeartbeat(SENDER, OTHER, counter);
    assert.equal(b.length, 18);
    assert.deepEqual(parseHeartbeat(b), { sender: SENDER, receiver: OTHER, counter: counter % 2 ** 32 });
  }
  const b = encodeHeartbeat(SENDER, OTHER, 1);
  assert.equal(parseHeartbeat(b.subarray(0, 17)), undefined);
  assert.equal(parseHeartbeat(Buffer.concat([b, Buffer.alloc(1)])), undefined);
  const wrongType = Buffer.from(b);
  wrongType[1] = DatagramType.PMTU_ACK;
  assert.equal(parseHeartbeat(wrongType), undefined);
  const wrongMagic = Buffer.from(b);
  wrongMagic[0] = 0;
  assert.equal(parseHeartbeat(wrongMagic), undefined);
});

test('PMTU probe has exactly the probed size; ack carries id and size', () => {
  for (const size of [12, 13, 576, 1472, 8972, 65535]) {
    const b = encodePmtuProbe(SENDER, 0xdeadbeef, size);
    assert.equal(b.length, size);
    assert.deepEqual(parseHeader(b), { type: DatagramType.PMTU_PROBE, sender: SENDER });
    assert.deepEqual(parsePmtuProbe(b), { sender: SENDER, id: 0xdeadbeef, size });
    const ack = encodePmtuAck(OTHER, 0xdeadbeef, size);
    assert.equal(ack.length, 14);
    assert.deepEqual(parsePmtuAck(ack), { sender: OTHER, id: 0xdeadbeef, size });
  }
  for (const size of [11, 0, -1, 65536, 1.5, NaN]) assert.throws(() => encodePmtuProbe(SENDER, 1, size), SleeveCodecError);
  for (const size of [-1, 65536, 2.5]) assert.throws(() => encodePmtuAck(SENDER, 1, size), SleeveCodecError);
  const probe = encodePmtuProbe(SENDER, 1, 100);
  assert.equal(parsePmtuProbe(probe.subarray(0, 11)), undefined);
  assert.equal(parsePmtuAck(probe.subarray(0, 14)), undefined, 'a probe is not an ack');
  const ack = encodePmtuAck(SENDER, 1, 100);
  assert.equal(parsePmtuAck(ack.subarray(0, 13)), undefined);
  assert.equal(parsePmtuProbe(ack), undefined);
});

test('forEachFrame: malformed records stop the walk after delivering earlier frames', () => {
  const p = new FramePacker(65535);
  const buf = Buffer.alloc(2000);
  p.begin(buf, 2000, SENDER);
  p.add(1, 2, frameOf(60, 1), 0, 60);
  p.add(3, 4, frameOf(100, 2), 0, 100);
  const good = buf.subarray(0, p.length);
  const secondRecord = HEADER_BYTES + FRAME_HEADER_BYTES + 60;

  let r = collect(good.subarray(0, secondRecord + 5)); // truncated record header
  assert.equal(r.ok, false);
  assert.equal(r.seen.length, 1);
  r = collect(good.subarray(0, good.length - 1)); // truncated frame
  assert.equal(r.ok, false);
  assert.equal(r.seen.length, 1);
  for (const badLen of [0, 1, 13]) {
    const m = Buffer.from(good);
    m.writeUInt16BE(badLen, secondRecord + 12);
    r = collect(m);
    assert.equal(r.ok, false, `len ${badLen}`);
    assert.equal(r.seen.length, 1);
  }
  // an empty body and exact record boundaries are fine
  assert.deepEqual(collect(good.subarray(0, HEADER_BYTES)), { ok: true, seen: [] });
  assert.equal(collect(good.subarray(0, secondRecord)).ok, true);
  // offset/end outside the buffer
  assert.equal(forEachFrame(good, -1, good.length, () => assert.fail()), false);
  assert.equal(forEachFrame(good, 8, good.length + 1, () => assert.fail()), false);
  assert.equal(forEachFrame(good, 20, 10, () => assert.fail()), false);
  assert.equal(forEachFrame(good, 8.5, good.length, () => assert.fail()), false);
  // end inside the buffer limits the walk
  assert.equal(collect(good, HEADER_BYTES, secondRecord).seen.length, 1);
});

test('property: random and truncated datagrams never throw and visit only in-range frames', () => {
  const rnd = mulberry32(31337);
  const p = new FramePacker(65535);
  const buf = Buffer.alloc(9000);
  for (let trial = 0; trial < 400; trial++) {
    p.begin(buf, 9000, SENDER);
    const sent: Seen[] = [];
    for (;;) {
      const len = 14 + Math.floor(rnd() * 600);
      const f = frameOf(len, trial);
      const src = Math.floor(rnd() * 2 ** 48);
      const dst = rnd() < 0.3 ? 0 : Math.floor(rnd() * 2 ** 48);
      if (!p.add(src, dst, f, 0, len)) break;
      sent.push({ src, dst, frame: f });
    }
    const dgram = Buffer.from(buf.subarray(0, p.length));
    const full = collect(dgram);
    assert.ok(full.ok);
    assert.deepEqual(full.seen, sent);
    // truncation: ok only at a record boundary; visited frames are a prefix of those sent
    const cut = HEADER_BYTES + Math.floor(rnd() * (dgram.length - HEADER_BYTES));
    const t = collect(dgram.subarray(0, cut));
    let boundary = HEADER_BYTES;
    let k = 0;
    while (boundary < cut) boundary += FRAME_HEADER_BYTES + sent[k++]!.frame.length;
    assert.equal(t.ok, boundary === cut);
    assert.deepEqual(t.seen, sent.slice(0, t.seen.length));
    // random corruption / random bytes: parsers never throw
    const junk = Buffer.from(dgram.subarray(0, Math.floor(rnd() * Math.min(dgram.length, 200))));
    for (let i = 0; i < 1 + Math.floor(rnd() * 5); i++) if (junk.length) junk[Math.floor(rnd() * junk.length)] = Math.floor(rnd() * 256);
    const rand = Buffer.alloc(Math.floor(rnd() * 40));
    for (let i = 0; i < rand.length; i++) rand[i] = rnd() < 0.3 ? SLEEVE_MAGIC : Math.floor(rnd() * 6);
    for (const b of [junk, rand]) {
      forEachFrame(b, HEADER_BYTES, b.length, (_s, _d, bb, s, e) => {
        assert.ok(s >= HEADER_BYTES && e <= b.length && e - s >= 14 && bb === b);
      });
      parseHeader(b);
      datagramType(b);
      const hb = parseHeartbeat(b);
      if (hb) assert.equal(b.length, 18);
      const pr = parsePmtuProbe(b);
      if (pr) assert.equal(pr.size, b.length);
      const ack = parsePmtuAck(b);
      if (ack) assert.equal(b.length, 14);
    }
  }
});
