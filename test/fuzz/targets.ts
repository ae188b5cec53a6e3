/**
 * Fuzz targets: every decoder that takes bytes (or decoded JSON) from outside, each
 * with a structure-aware fast-check arbitrary (valid messages, then mutated: bytes
 * flipped, truncated, extended, length fields forced to extremes) and a property that
 * the decoder either returns a result or throws its own documented error type — never
 * another exception, a hang, or output outside its contract.
 *
 * Used by test/unit/fuzz-decoders.test.ts (a short run inside `npm test`) and by
 * test/fuzz/run.ts (`npm run fuzz -- --runs N | --seconds S`).
 */
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import {
  FrameDecoder, ProtocolError, decodeBody, encodeFrame, isValidNickname, unpackBounded, type ControlMessage,
} from '../../router/mesh/protocol.js';
import { BUDGETS, MsgpackBudgetError, scanMsgpack } from '../../router/mesh/msgpack-budget.js';
import { Topology, TopologyError } from '../../router/mesh/topology.js';
import { IpamMessageError, decodeMsg, encodeMsg } from '../../ipam/messages.js';
import { Ring, RingError } from '../../ipam/ring.js';
import {
  DatagramType, encodeHeartbeat, encodePmtuAck, encodePmtuProbe, forEachFrame, parseHeader, parseHeartbeat,
  parsePmtuAck, parsePmtuProbe,
} from '../../router/overlay/sleeve-codec.js';
import { Opener, Sealer, AEAD_OVERHEAD } from '../../router/crypto/aead.js';
import { encodeHeartbeatPacket, parseHeartbeat as parseFastdpHeartbeat, HEARTBEAT_BYTES as FDP_HB_BYTES } from '../../router/overlay/fastdp-codec.js';
import { SubnetPolicy } from '../../router/policy/subnet-policy.js';
import { fragmentIPv4, icmpFragNeeded, ipv4DontFragment } from '../../router/overlay/ethernet.js';
import {
  CreateBodyError, parseDockerAddress, parseJsonKeepingNumbers, parseWeaveCidr, planCreate, routeRequest,
} from '../../proxy/intercept.js';
import { ApiError, stringField, stringList } from '../../router/api/server.js';
import { expectOnly, mutated, type FuzzTarget } from './arbitraries.js';
import { SERVICE_TARGETS } from './targets-services.js';

export type { FuzzTarget } from './arbitraries.js';

const PEER_A = '8a:2b:3c:4d:5e:6f';
const PEER_B = '02:00:00:00:00:01';


const peerName = fc.constantFrom(PEER_A, PEER_B, '00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff');
const anyValue = fc.anything({ maxDepth: 3, withBigInt: false, withTypedArray: true });

const controlMessage: fc.Arbitrary<ControlMessage> = fc.oneof(
  fc.record({ t: fc.constant('hello' as const), proto: fc.constant('tsweave' as const), minVersion: fc.integer({ min: 1, max: 3 }), maxVersion: fc.integer({ min: 1, max: 3 }), encrypted: fc.boolean() }),
  fc.record({ t: fc.constant('intro' as const), version: fc.integer({ min: 1, max: 3 }), name: peerName, nickname: fc.string({ maxLength: 300 }), uid: fc.nat(), udpPort: fc.integer({ min: 0, max: 70000 }) }),
  fc.constant({ t: 'hb' as const }),
  fc.record({ t: fc.constant('keys' as const), material: fc.uint8Array({ minLength: 30, maxLength: 34 }) }),
  fc.record({ t: fc.constant('gossip' as const), channel: fc.constantFrom('topology', 'ipam', ''), kind: fc.constantFrom('full' as const, 'update' as const, 'unicast' as const), src: peerName, payload: fc.uint8Array({ maxLength: 200 }) }),
  fc.record({ t: fc.constant('bye' as const), reason: fc.string({ maxLength: 100 }) }),
) as fc.Arbitrary<ControlMessage>;

/** msgpack of a valid control message, or of anything at all. */
const controlBody = mutated(fc.oneof(controlMessage.map((m) => pack(m)), anyValue.map((v) => pack(v))));

function checkControlFrame(input: unknown): void {
  const body = input as Buffer;
  let msg: ControlMessage;
  try {
    msg = decodeBody(body);
  } catch (err) {
    return expectOnly(err, ProtocolError);
  }
  if (msg.t === 'intro' && !isValidNickname(msg.nickname)) throw new Error('intro with an invalid nickname accepted');
  // A decoded message re-encodes and decodes to itself.
  const again = new FrameDecoder().push(encodeFrame(msg));
  if (again.length !== 1 || again[0]!.t !== msg.t) throw new Error('re-encoded message did not round-trip');
}

function checkFrameStream(input: unknown): void {
  const d = new FrameDecoder(4096);
  try {
    for (const chunk of input as Buffer[]) d.push(chunk);
  } catch (err) {
    return expectOnly(err, ProtocolError);
  }
  if (d.buffered > 4096 + 4 + 600) throw new Error(`decoder buffers ${d.buffered} bytes past the pre-auth limit`);
}

const topologyEntry = fc.record({
  name: peerName, nickname: fc.string({ maxLength: 20 }), uid: fc.nat(), version: fc.integer({ min: 0, max: 5 }),
  connections: fc.array(fc.record({ name: peerName, address: fc.constantFrom('10.0.0.1:6783', ''), outbound: fc.boolean(), established: fc.boolean() }), { maxLength: 3 }),
});

function checkTopology(input: unknown): void {
  const t = new Topology({ name: PEER_B, nickname: 'self', uid: 1 });
  try {
    t.merge(unpackBounded(input as Buffer, BUDGETS.topology, 'topology gossip'));
  } catch (err) {
    return expectOnly(err, TopologyError, ProtocolError);
  }
  for (const p of t.peers()) if (!isValidNickname(p.nickname)) throw new Error('topology accepted an invalid nickname');
}

function checkScan(input: unknown): void {
  const b = input as Buffer;
  let n: number;
  try {
    n = scanMsgpack(b, { maxElements: 10_000, maxDepth: 16 });
  } catch (err) {
    return expectOnly(err, MsgpackBudgetError);
  }
  if (n < 1 || n > 10_000) throw new Error(`scan counted ${n} elements`);
  // What the scan accepts, msgpackr decodes or refuses with an ordinary Error for a
  // semantic reason (an extension type it does not know, a map key that is a map): never
  // a RangeError (allocation, stack) and never because the bytes ran out.
  try {
    unpack(b);
  } catch (err) {
    if (err instanceof RangeError || /unexpected end|out of range|past the end/i.test((err as Error).message)) throw err;
  }
}

const ipamMsg = fc.oneof(
  fc.record({ v: fc.constant(1 as const), t: fc.constant('req' as const), id: fc.nat(), lo: fc.nat(), hi: fc.nat(), addr: fc.option(fc.nat(), { nil: undefined }) }),
  fc.record({ v: fc.constant(1 as const), t: fc.constant('resp' as const), id: fc.nat(), ok: fc.boolean(), reason: fc.option(fc.string(), { nil: undefined }) }),
  fc.record({ v: fc.constant(1 as const), t: fc.constant('gossip' as const), ring: fc.option(anyValue, { nil: undefined }) }),
);

function checkIpam(input: unknown): void {
  try {
    decodeMsg(input as Buffer);
  } catch (err) {
    expectOnly(err, IpamMessageError, MsgpackBudgetError);
  }
}

/** Valid rings (2–3 owners, some donations, nicknames) as msgpack, mutated at the byte level or as plain fields. */
const ringPlain = fc.tuple(
  fc.uniqueArray(peerName, { minLength: 1, maxLength: 3 }),
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 4096 })), { maxLength: 3 }),
  fc.array(fc.oneof(fc.constantFrom('h1', '', 'x'.repeat(256), '\x1b]0;x\x07'), fc.string({ maxLength: 12 })), { maxLength: 3 }),
).map(([peers, gifts, nicks]) => {
  const r = Ring.seed(0x0a200000, 1 << 20, peers);
  for (const [at, n] of gifts) {
    const owner = r.owner(0x0a200000 + (at % (1 << 20)))!;
    const to = peers.find((p) => p !== owner);
    try { if (to) r.give(owner, 0x0a200000 + (at % (1 << 20)), n, to); } catch { /* not all the owner's: skip */ }
  }
  peers.forEach((p, i) => r.setNickname(p, nicks[i] ?? ''));
  const plain = r.toPlain() as unknown as Record<string, unknown>;
  // Sometimes an arbitrary nickname table, bypassing setNickname's checks.
  if (nicks.length === 3 && nicks[2] === '') plain.k = nicks;
  return pack(plain);
});

function checkIpamRing(input: unknown): void {
  let r: Ring;
  try {
    r = Ring.fromPlain(unpackBounded(input as Buffer, BUDGETS.ipam, 'ring'));
  } catch (err) {
    return expectOnly(err, RingError, ProtocolError);
  }
  r.checkInvariants();
  for (const p of r.peers()) {
    const n = r.nickname(p);
    if (n !== undefined && (n === '' || !isValidNickname(n))) throw new Error(`ring kept nickname ${JSON.stringify(n)}`);
  }
  const again = Ring.fromPlain(r.toPlain());
  if (!again.equals(r) || r.peers().some((p) => again.nickname(p) !== r.nickname(p))) throw new Error('ring did not round-trip');
  const mine = Ring.seed(0x0a200000, 1 << 20, [PEER_A, PEER_B]);
  try {
    mine.merge(r, PEER_B);
  } catch (err) {
    return expectOnly(err, RingError);
  }
  mine.checkInvariants();
}

const sleeveDatagram = mutated(fc.oneof(
  fc.tuple(fc.nat({ max: 2 ** 32 }), fc.nat({ max: 2 ** 32 }), fc.nat({ max: 2 ** 32 - 1 })).map(([a, b, c]) => encodeHeartbeat(a, b, c)),
  fc.tuple(fc.nat({ max: 2 ** 32 }), fc.nat({ max: 0xffff }), fc.integer({ min: 12, max: 1500 })).map(([a, id, n]) => encodePmtuProbe(a, id, n)),
  fc.tuple(fc.nat({ max: 2 ** 32 }), fc.nat({ max: 0xffff }), fc.integer({ min: 12, max: 1500 })).map(([a, id, n]) => encodePmtuAck(a, id, n)),
  fc.uint8Array({ minLength: 8, maxLength: 400 }).map((b) => { const o = Buffer.from(b); o[0] = 0x54; o[1] = DatagramType.FRAMES; return o; }),
));

function checkSleevePlain(input: unknown): void {
  const b = input as Buffer;
  parseHeader(b); parseHeartbeat(b); parsePmtuProbe(b); parsePmtuAck(b);
  let seen = 0;
  forEachFrame(b, Math.min(8, b.length), b.length, (_d, _s, buf, start, end) => {
    if (start < 0 || end > buf.length || end - start < 14) throw new Error(`frame [${start}, ${end}) outside the datagram`);
    seen++;
  });
  if (seen > b.length) throw new Error('more frames than bytes');
}

const KEY = Buffer.alloc(32, 7);
const sealedDatagram = mutated(fc.uint8Array({ maxLength: 300 }).map((p) => {
  const s = new Sealer(KEY);
  const out = Buffer.alloc(8 + p.length + AEAD_OVERHEAD + 64);
  const header = Buffer.from([0x54, DatagramType.FRAMES, 0, 0, 0, 0, 0, 1]);
  const n = s.seal(header, Buffer.from(p), 0, p.length, out);
  return out.subarray(0, n);
}));

function checkSleeveSealed(input: unknown): void {
  const b = input as Buffer;
  const o = new Opener(KEY);
  const out = Buffer.alloc(b.length + 16);
  const n = o.open(b, 0, b.length, out);
  if (!Number.isInteger(n) || n > b.length) throw new Error(`open returned ${n}`);
}

const fastdpHb = mutated(fc.record({ sender: fc.nat({ max: 2 ** 32 }), receiver: fc.nat({ max: 2 ** 32 }), counter: fc.nat(), flags: fc.nat({ max: 255 }) })
  .map((hb) => { try { return encodeHeartbeatPacket(hb as never, 6784); } catch { return Buffer.alloc(FDP_HB_BYTES); } }));

function checkFastdp(input: unknown): void {
  const b = input as Buffer;
  parseFastdpHeartbeat(b);
  if (b.length > 36) parseFastdpHeartbeat(b.subarray(36));
}

const POLICY = new SubnetPolicy([
  { id: 'a', cidrs: ['10.32.0.1/12'], mac: '02:00:00:00:00:0a' },
  { id: 'b', cidrs: ['10.2.0.1/24', '10.3.0.1/24'], mac: '02:00:00:00:00:0b' },
]);
/** Ethernet frames: ARP/IPv4/other ethertypes with plausible headers, then mutated. */
const ethFrame = mutated(fc.tuple(
  fc.constantFrom(0x0800, 0x0806, 0x86dd, 0x8100),
  fc.constantFrom(0x45, 0x46, 0x4f, 0x40, 0x55),
  fc.uint8Array({ minLength: 0, maxLength: 120 }),
  fc.constantFrom(Buffer.from([2, 0, 0, 0, 0, 0x0a]), Buffer.from([2, 0, 0, 0, 0, 0x0b]), Buffer.alloc(6, 0xff)),
).map(([type, vihl, rest, mac]) => {
  const f = Buffer.alloc(14 + 20 + rest.length);
  mac.copy(f, 0); mac.copy(f, 6);
  f.writeUInt16BE(type, 12);
  f[14] = vihl;
  f.writeUInt16BE(20 + rest.length, 16);
  Buffer.from(rest).copy(f, 34);
  return f;
}));

function checkEthernet(input: unknown): void {
  const f = input as Buffer;
  POLICY.checkCaptured(f, 0, f.length);
  POLICY.checkDelivered(f, 0, f.length);
  ipv4DontFragment(f, 0, f.length);
  const frags = fragmentIPv4(f, 0, f.length, 68 + (f.length % 200));
  if (frags) for (const g of frags) if (g.length > 14 + 68 + 200) throw new Error(`fragment of ${g.length} bytes over the MTU`);
  icmpFragNeeded(f, 0, f.length, 576);
}

const proxyInput = fc.record({
  method: fc.constantFrom('GET', 'POST', 'DELETE', undefined, 'X'),
  url: fc.oneof(fc.constantFrom('/containers/create', '/v1.41/containers/x/start', '/containers/%E0%A4%A/start', '/exec/x/start'), fc.webPath(), fc.string()),
  cidr: fc.oneof(fc.constantFrom('net:10.2.0.0/24', 'ip:10.2.1.1/24 net:default', 'net:default', ''), fc.string({ maxLength: 80 })),
  json: fc.oneof(fc.json({ maxDepth: 3 }), fc.string({ maxLength: 200 }), fc.constant('{"Env":["WEAVE_CIDR=net:10.2.0.0/24"],"Image":"x","HostConfig":{"NetworkMode":"bridge"}}')),
  addr: fc.oneof(fc.constantFrom('unix:///var/run/weave.sock', 'tcp://0.0.0.0:12375', 'tcp://[::1]:1', 'tcp://x:99999'), fc.string({ maxLength: 40 })),
});

function checkProxy(input: unknown): void {
  const i = input as { method: string | undefined; url: string; cidr: string; json: string; addr: string };
  routeRequest(i.method, i.url);
  try { parseWeaveCidr(i.cidr); } catch (err) { expectOnly(err, Error); }
  try { parseDockerAddress(i.addr); } catch (err) { expectOnly(err, Error); }
  let body: unknown;
  try {
    body = parseJsonKeepingNumbers(i.json);
  } catch (err) {
    if (!(err instanceof SyntaxError) && !(err instanceof Error)) throw err;
    return;
  }
  try {
    planCreate(body, null, { noDefaultIpalloc: false, weavewaitPath: '/w/weavewait' });
  } catch (err) {
    if (err instanceof CreateBodyError || (err as Error).name === 'WeaveCidrError') return;
    throw err;
  }
}

function checkApiBody(input: unknown): void {
  const body = input as unknown;
  for (const f of ['peers', 'addrs', 'x']) {
    try {
      const l = stringList(body, f);
      if (!Array.isArray(l) || l.some((x) => typeof x !== 'string')) throw new Error('stringList returned a non-string');
    } catch (err) { expectOnly(err, ApiError); }
    try {
      if (typeof stringField(body, f) !== 'string') throw new Error('stringField returned a non-string');
    } catch (err) { expectOnly(err, ApiError); }
  }
}

/** All targets, by name. */
export const TARGETS: FuzzTarget[] = [
  { name: 'control-frame', arb: controlBody, check: checkControlFrame },
  { name: 'frame-stream', arb: fc.array(mutated(controlMessage.map((m) => encodeFrame(m))), { maxLength: 6 }), check: checkFrameStream },
  { name: 'msgpack-scan', arb: mutated(anyValue.map((v) => pack(v))), check: checkScan },
  { name: 'topology-gossip', arb: mutated(fc.array(topologyEntry, { maxLength: 4 }).map((e) => pack(e))), check: checkTopology },
  { name: 'ipam-message', arb: mutated(ipamMsg.map((m) => encodeMsg(m as never))), check: checkIpam },
  { name: 'ipam-ring', arb: mutated(ringPlain), check: checkIpamRing },
  { name: 'sleeve-plain', arb: sleeveDatagram, check: checkSleevePlain },
  { name: 'sleeve-sealed', arb: sealedDatagram, check: checkSleeveSealed },
  { name: 'fastdp-heartbeat', arb: fastdpHb, check: checkFastdp },
  { name: 'ethernet-policy', arb: ethFrame, check: checkEthernet },
  { name: 'proxy-request', arb: proxyInput, check: checkProxy },
  { name: 'api-body', arb: fc.oneof(fc.json({ maxDepth: 3 }).map((j) => JSON.parse(j) as unknown), anyValue), check: checkApiBody },
  ...SERVICE_TARGETS,
];
