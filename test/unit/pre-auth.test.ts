/**
 * Issue #13 (wire half): pre-authentication limits, bounded msgpack decoding,
 * nickname validation, half-open caps, aggregated failure logging and terminal escaping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import {
  FrameDecoder, MAX_FRAME_BYTES, MAX_SMALL_FRAME_BYTES, PRE_AUTH_MAX_FRAME_BYTES, ProtocolError, decodeBody,
  encodeFrame, validateControlMessage,
} from '../../router/mesh/protocol.js';
import { BUDGETS, MsgpackBudgetError, scanMsgpack } from '../../router/mesh/msgpack-budget.js';
import { isValidNickname } from '../../router/mesh/peer-name.js';
import { Topology, TopologyError } from '../../router/mesh/topology.js';
import { FailureLog, HalfOpenLimiter } from '../../router/mesh/admission.js';
import { IpamMessageError, decodeMsg } from '../../ipam/messages.js';
import { escapeTerminal } from '../../cli/format.js';
import { renderTemplate } from '../../cli/template.js';

const A = '8a:2b:3c:4d:5e:6f';
const EVIL = '\x1b]0;x\x07\x1b[2J';

/** array32 header declaring `n` elements followed by `n` empty fixmaps (0x80): the "map bomb". */
function mapBomb(n: number): Buffer {
  const b = Buffer.alloc(5 + n, 0x80);
  b[0] = 0xdd;
  b.writeUInt32BE(n, 1);
  return b;
}

test('pre-auth: a frame longer than 4 KiB is refused from its length prefix alone (8 MiB prefix, no body needed)', () => {
  const d = new FrameDecoder(PRE_AUTH_MAX_FRAME_BYTES);
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(8 * 1024 * 1024);
  assert.throws(() => d.push(prefix), (e: Error) => e instanceof ProtocolError && /exceeds the 4096-byte limit/.test(e.message));
  const ok = new FrameDecoder(PRE_AUTH_MAX_FRAME_BYTES);
  const frame = encodeFrame({ t: 'hb' });
  assert.equal(ok.push(frame).length, 1);
  // Raised after auth: the same decoder accepts a big gossip frame.
  ok.setMaxFrameBytes(MAX_FRAME_BYTES);
  const big = encodeFrame({ t: 'gossip', channel: 'topology', kind: 'full', src: A, payload: Buffer.alloc(100_000) });
  assert.equal(ok.push(big).length, 1);
});

test('pre-auth: the 8 M empty-map bomb is refused (element budget) before msgpackr builds anything', () => {
  const bomb = mapBomb(8 * 1024 * 1024);
  assert.throws(() => scanMsgpack(bomb, BUDGETS.control), /more than 256 elements/);
  assert.throws(() => decodeBody(bomb), (e: Error) => e instanceof ProtocolError && /more than 256 elements/.test(e.message));
  // Inside a frame: refused by the pre-auth frame limit already.
  const d = new FrameDecoder(PRE_AUTH_MAX_FRAME_BYTES);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bomb.length);
  assert.throws(() => d.push(Buffer.concat([len, bomb.subarray(0, 65536)])), /exceeds the 4096-byte limit/);
});

test('after auth: a 1 MiB gossip payload of empty maps is refused by the topology and IPAM budgets', () => {
  const bomb = mapBomb(1024 * 1024);
  assert.throws(() => scanMsgpack(bomb, BUDGETS.topology), /more than 262144 elements/);
  assert.throws(() => decodeMsg(bomb), /more than 262144 elements/);
  const big = mapBomb(100); // within budget: decodes (to a non-map → IPAM error, not a budget error)
  assert.throws(() => decodeMsg(big), IpamMessageError);
});

test('scanMsgpack counts values as the msgpack spec defines them and refuses lies about lengths', () => {
  assert.equal(scanMsgpack(pack({ a: [1, 2, { b: 'x' }], c: null }), { maxElements: 100, maxDepth: 8 }), 10); // map, a, array, 1, 2, map, b, x, c, null
  assert.equal(scanMsgpack(pack(Buffer.alloc(70_000)), { maxElements: 1, maxDepth: 1 }), 1);
  assert.throws(() => scanMsgpack(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]), BUDGETS.ipam), /declares 4294967295 entries but only 0 bytes/);
  assert.throws(() => scanMsgpack(Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff]), BUDGETS.ipam), /runs past the end/);
  assert.throws(() => scanMsgpack(Buffer.from([0xc0, 0xc0]), BUDGETS.ipam), /1 trailing bytes/);
  assert.throws(() => scanMsgpack(Buffer.from([0xc1]), BUDGETS.ipam), /reserved/);
  assert.throws(() => scanMsgpack(Buffer.from([...Array(20).fill(0x91), 0xc0]), { maxElements: 100, maxDepth: 16 }), (e: Error) => e instanceof MsgpackBudgetError && /deeper than 16/.test(e.message));
  assert.throws(() => scanMsgpack(Buffer.alloc(0), BUDGETS.ipam), /truncated/);
  // Found by fuzzing: fixext4 of msgpackr's type 0x62 ("bundled strings") made msgpackr read
  // past the value; extension types are now refused unless a budget allows them.
  const ext = Buffer.from([0xd6, 0x62, 0, 0, 0, 0]);
  assert.throws(() => scanMsgpack(ext, BUDGETS.control), /extension type \(byte 0xd6 at offset 0\) not accepted/);
  assert.throws(() => decodeMsg(ext), /extension type/);
  assert.equal(scanMsgpack(ext, { maxElements: 10, maxDepth: 4, allowExt: true }), 1);
});

test('after auth: frames are bounded per message type (only gossip may exceed 4 KiB)', () => {
  const bye = pack({ t: 'bye', reason: 'x', pad: Buffer.alloc(5000) });
  assert.ok(bye.length > MAX_SMALL_FRAME_BYTES);
  assert.throws(() => decodeBody(bye), /"bye" frame of \d+ bytes exceeds its 4096-byte limit/);
  const gossip = pack({ t: 'gossip', channel: 'ipam', kind: 'full', src: A, payload: Buffer.alloc(5000) });
  assert.equal(decodeBody(gossip).t, 'gossip');
});

test('nicknames: control characters, C1, bidi controls and lone surrogates are refused in intro and topology gossip', () => {
  for (const bad of [EVIL, 'a\nb', 'a\u009bb', 'a\u202eb', 'a\ud800', 'x'.repeat(256)]) {
    assert.equal(isValidNickname(bad), false, JSON.stringify(bad));
    assert.throws(() => validateControlMessage({ t: 'intro', version: 1, name: A, nickname: bad, uid: 1, udpPort: 6783 }), /nickname/);
    const t = new Topology({ name: '02:00:00:00:00:01', nickname: 'self', uid: 1 });
    assert.throws(() => t.merge([{ name: A, nickname: bad, uid: 1, version: 1, connections: [] }]), TopologyError);
  }
  for (const good of ['', 'host-a', 'Grüße 🌍', 'x'.repeat(255)]) assert.equal(isValidNickname(good), true, good);
  const e = (() => { try { validateControlMessage({ t: 'intro', version: 1, name: A, nickname: EVIL, uid: 1, udpPort: 6783 }); } catch (err) { return err as Error; } return undefined; })();
  assert.ok(e && !/[\x00-\x1f]/.test(e.message), 'the error message itself carries no raw control characters');
});

test('CLI output escapes terminal controls but keeps newlines and tabs', () => {
  assert.equal(escapeTerminal(`peer(${EVIL})\n\tx`), 'peer(\\x1b]0;x\\x07\\x1b[2J)\n\tx');
  assert.equal(escapeTerminal('a\u202eb\u009b'), 'a\\u{202e}b\\x9b');
  assert.equal(renderTemplate('{{.N}}', { N: EVIL }), '\\x1b]0;x\\x07\\x1b[2J');
});

test('HalfOpenLimiter: per-source and total caps, slots come back on release', () => {
  const l = new HalfOpenLimiter({ perSource: 2, total: 3 });
  assert.equal(l.tryAcquire('10.0.0.1'), undefined);
  assert.equal(l.tryAcquire('10.0.0.1'), undefined);
  assert.match(l.tryAcquire('10.0.0.1')!, /from 10\.0\.0\.1 \(limit 2\)/);
  assert.equal(l.tryAcquire('10.0.0.2'), undefined);
  assert.match(l.tryAcquire('10.0.0.3')!, /in total \(limit 3\)/);
  l.release('10.0.0.1');
  l.release('10.0.0.9'); // not held: ignored
  assert.equal(l.total, 2);
  assert.equal(l.tryAcquire('10.0.0.3'), undefined);
});

test('FailureLog: first failure per source logged at once, the rest aggregated per 60 s window, memory bounded', () => {
  const lines: string[] = [];
  const f = new FailureLog((l) => lines.push(l));
  for (let i = 0; i < 1000; i++) f.failed('10.0.0.66', 'bad hello', 1000 + i);
  f.failed('10.0.0.7', 'password mismatch', 2000);
  assert.deepEqual(lines, [
    'connection from 10.0.0.66 failed before authentication: bad hello',
    'connection from 10.0.0.7 failed before authentication: password mismatch',
  ]);
  f.flush(61_000);
  assert.equal(lines[2], '1000 failed handshakes from 10.0.0.66 in the last 60 s (last: bad hello)');
  assert.equal(lines.length, 3, 'a source with a single failure gets no summary line');
  const many: string[] = [];
  const g = new FailureLog((l) => many.push(l));
  for (let i = 0; i < 5000; i++) g.failed(`10.1.${i >> 8}.${i & 255}`, 'x', 0);
  assert.equal(many.length, 1024);
  g.flush(60_000);
  assert.equal(many.at(-1), '3976 failed handshakes from other sources in the last 60 s (too many sources to list)');
});
