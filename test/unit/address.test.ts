import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  canonicalIp, formatIpv6, ipFamily, joinHostPort, parseIpv6, parsePeerAddress, sourcePrefix, splitListenAddress,
} from '../../router/mesh/address.js';
import { normaliseAddress, TargetTable } from '../../router/mesh/connection-maker.js';
import { checkListenAddress, splitHostPort } from '../../router/daemon/config.js';
import { HalfOpenLimiter } from '../../router/mesh/admission.js';
import {
  IP_UDP_OVERHEAD, IP6_UDP_OVERHEAD, MIN_DATAGRAM, MIN_DATAGRAM6, SleevePeer, datagramFor, ipUdpOverhead, minDatagram,
} from '../../router/overlay/sleeve.js';
import { VXLAN_OVERHEAD, VXLAN6_OVERHEAD, encodeHeartbeatPacket, ipv4ToNum, HB6_DEVICE_IP, HB6_SOURCE_IP, HB_DEVICE_IP, vxlanOverhead } from '../../router/overlay/fastdp-codec.js';

test('normaliseAddress: IPv6 in brackets, bare IPv6 with the default port, canonical text', () => {
  assert.equal(normaliseAddress('[2001:db8::2]:6783', 6783), '[2001:db8::2]:6783');
  assert.equal(normaliseAddress('[2001:db8::2]:7000', 6783), '[2001:db8::2]:7000');
  assert.equal(normaliseAddress('fd00:77::2', 6783), '[fd00:77::2]:6783');
  assert.equal(normaliseAddress('[fd00:77::2]', 6783), '[fd00:77::2]:6783');
  // A bare literal ending in what looks like a port is still one address (no brackets, no port).
  assert.equal(normaliseAddress('fd00::2:6783', 6783), '[fd00::2:6783]:6783');
  assert.equal(normaliseAddress('[2001:DB8:0:0:0:0:0:2]:6783', 6783), '[2001:db8::2]:6783');
  assert.equal(normaliseAddress('[::ffff:192.168.1.2]:6783', 6783), '192.168.1.2:6783');
  assert.equal(normaliseAddress(' 10.0.0.1 ', 6783), '10.0.0.1:6783');
  assert.equal(normaliseAddress('host.example:7000', 6783), 'host.example:7000');
  assert.equal(normaliseAddress('[::1]:1', 6783), '[::1]:1');
});

test('normaliseAddress: invalid IPv6 literals are one-line errors', () => {
  for (const bad of ['[fd00::zz]:6783', 'fd00:::1', '[fd00::1', 'fd00::1]', '[fd00::1]x', '[fd00::1]:', '[host.example]:6783', '[1.2.3.4]:6783', '1:2:3:4:5:6:7:8:9', '[]:6783', '[fd00::1]:6783:1']) {
    assert.throws(() => normaliseAddress(bad, 6783), (e: Error) => /^invalid (port in )?peer address/.test(e.message) && !e.message.includes('\n'), bad);
  }
  for (const bad of ['[fd00::1]:0', '[fd00::1]:65536', '[fd00::1]:99999']) assert.throws(() => normaliseAddress(bad, 6783), /invalid port/, bad);
  assert.throws(() => normaliseAddress('fe80::1%eth0', 6783), /IPv6 zones/);
  assert.throws(() => normaliseAddress('[fe80::1%eth0]:6783', 6783), /IPv6 zones/);
  assert.throws(() => normaliseAddress('[fd00::\x1b[2J]', 6783), (e: Error) => !/\x1b/.test(e.message));
});

test('target table: equal IPv6 addresses written differently are one target', () => {
  const t = new TargetTable(6783);
  const a = t.add('[2001:db8:0::2]:6783', true, 0);
  const b = t.add('2001:db8::2', true, 0);
  assert.equal(a, b);
  assert.deepEqual(t.directAddresses(), ['[2001:db8::2]:6783']);
  assert.equal(t.forget('[2001:0db8::0002]'), true);
  assert.deepEqual(t.directAddresses(), []);
});

test('parsePeerAddress gives the host without brackets and its family', () => {
  assert.deepEqual(parsePeerAddress('[fd00:77::2]:6783', 1), { host: 'fd00:77::2', port: 6783, family: 6 });
  assert.deepEqual(parsePeerAddress('10.1.2.3', 6783), { host: '10.1.2.3', port: 6783, family: 4 });
  assert.deepEqual(parsePeerAddress('peer-1:6000', 6783), { host: 'peer-1', port: 6000, family: 0 });
});

test('canonicalIp / formatIpv6 follow RFC 5952 (like inet_ntop)', () => {
  const cases: Array<[string, string]> = [
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group is not compressed
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['FD00:77::A', 'fd00:77::a'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], // the longest run
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:201'],
    ['1.02.3.4', undefined as unknown as string],
  ];
  for (const [i, o] of cases) assert.equal(canonicalIp(i), o, i);
  assert.equal(ipFamily('fd00::1'), 6);
  assert.equal(ipFamily('::ffff:1.2.3.4'), 4);
  assert.equal(ipFamily('peer'), 0);
  assert.equal(formatIpv6(parseIpv6('::ffff:1.2.3.4')!), '::ffff:1.2.3.4');
});

test('IPv6 text → bytes → text is stable, and agrees with the URL parser on the address', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
    const t = formatIpv6(b);
    assert.deepEqual(parseIpv6(t), b);
    assert.equal(formatIpv6(parseIpv6(t.toUpperCase())!), t);
    // WHATWG URL serialises IPv6 hosts with the same compression rule (no dotted tail).
    if (!t.startsWith('::ffff:')) assert.equal(new URL(`http://[${t}]/`).hostname, `[${t}]`);
  }), { numRuns: 500 });
});

test('joinHostPort brackets IPv6 only', () => {
  assert.equal(joinHostPort('fd00::1', 6783), '[fd00::1]:6783');
  assert.equal(joinHostPort('10.0.0.1', 6783), '10.0.0.1:6783');
  assert.equal(joinHostPort('peer', 1), 'peer:1');
});

test('listen addresses (--api-addr, --metrics-addr) accept [v6]:port', () => {
  assert.deepEqual(splitHostPort('[::1]:6784', 1), ['::1', 6784]);
  assert.deepEqual(splitHostPort('127.0.0.1:7000', 1), ['127.0.0.1', 7000]);
  assert.deepEqual(splitHostPort(':7000', 1), ['127.0.0.1', 7000]);
  assert.deepEqual(splitHostPort('::1', 6784), ['::1', 6784]);
  assert.deepEqual(splitHostPort('[::]:x', 6782), ['::', 6782]);
  assert.deepEqual(splitListenAddress('[::]:', 5, '0.0.0.0'), ['::', 5]);
  assert.equal(checkListenAddress('--api-addr', '[::1]:6784', false), null);
  assert.equal(checkListenAddress('--api-addr', '::1', false), null);
  assert.match(checkListenAddress('--api-addr', '[2001:db8::1]:6784', false) ?? '', /not a loopback address/);
});

test('admission counts IPv6 sources per /64 as well as per address', () => {
  assert.equal(sourcePrefix('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
  assert.equal(sourcePrefix('2001:db8:1:2::1'), sourcePrefix('2001:db8:1:2:ffff::9'));
  assert.notEqual(sourcePrefix('2001:db8:1:2::1'), sourcePrefix('2001:db8:1:3::1'));
  assert.equal(sourcePrefix('::ffff:10.0.0.1'), undefined);
  assert.equal(sourcePrefix('10.0.0.1'), undefined);
  // The router's two limiters (router.ts acquireHalfOpen): an attacker rotating through a
  // /64 is stopped by the prefix limit, a neighbour in another /64 is not.
  const prefix = new HalfOpenLimiter({ perSource: 32, total: 256 });
  let admitted = 0;
  for (let i = 1; i <= 100; i++) if (prefix.tryAcquire(sourcePrefix(`2001:db8:1:2::${i.toString(16)}`)!) === undefined) admitted++;
  assert.equal(admitted, 32);
  assert.equal(prefix.tryAcquire(sourcePrefix('2001:db8:1:3::1')!), undefined);
});

test('sleeve overhead per underlay family: 28 bytes over IPv4, 48 over IPv6', () => {
  assert.equal(IP6_UDP_OVERHEAD - IP_UDP_OVERHEAD, 20);
  assert.equal(ipUdpOverhead(4), 28);
  assert.equal(ipUdpOverhead(6), 48);
  assert.equal(minDatagram(4), MIN_DATAGRAM);
  assert.equal(minDatagram(6), MIN_DATAGRAM6);
  assert.equal(MIN_DATAGRAM6, 1232);
  const p6 = new SleevePeer('aa:00:00:00:00:01', 1, 'fd00:77::1', 6783, datagramFor(1376, true), true);
  const p4 = new SleevePeer('aa:00:00:00:00:02', 2, '10.0.0.1', 6783, datagramFor(1376, true), true);
  assert.equal(p6.family, 6);
  assert.equal(p6.addr, -1, 'an IPv6 peer has no address key until the sleeve adds it');
  assert.equal(p4.family, 4);
  assert.equal(p4.addr, ipv4ToNum('10.0.0.1'));
  // The default overlay MTU (1376) fits a 1500-byte underlay on every path: sleeve
  // plaintext or encrypted, and VXLAN, over IPv4 and IPv6.
  for (const fam of [4, 6] as const) {
    for (const enc of [false, true]) assert.ok(datagramFor(1376, enc) + ipUdpOverhead(fam) <= 1500, `sleeve IPv${fam} encrypted=${enc}`);
    assert.ok(1376 + 14 + vxlanOverhead(fam) - 14 <= 1500, `VXLAN IPv${fam}`);
  }
  assert.equal(datagramFor(1376, true) + IP6_UDP_OVERHEAD, 1492);
});

test('fastdp: VXLAN overhead 70 over IPv6; IPv6 heartbeats carry the IPv6 device pair', () => {
  assert.equal(VXLAN_OVERHEAD, 50);
  assert.equal(VXLAN6_OVERHEAD, 70);
  const hb = { sender: 1, receiver: 2, seq: 7, heard: true, mtu: 1376 };
  const v4 = encodeHeartbeatPacket(hb, 6785);
  const v6 = encodeHeartbeatPacket(hb, 6785, 6);
  const ip = 8 + 14;
  assert.equal(v4.readUInt32BE(ip + 16), ipv4ToNum(HB_DEVICE_IP));
  assert.equal(v6.readUInt32BE(ip + 12), ipv4ToNum(HB6_SOURCE_IP));
  assert.equal(v6.readUInt32BE(ip + 16), ipv4ToNum(HB6_DEVICE_IP));
  assert.equal(v6.length, v4.length);
  assert.notEqual(HB6_DEVICE_IP, HB_DEVICE_IP);
});
