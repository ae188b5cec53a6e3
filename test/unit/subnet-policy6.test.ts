import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SubnetPolicy, type PolicyEndpoint } from '../../router/policy/subnet-policy.js';
import { renderRuleset, renderPortDelta, usablePorts, prefixBits } from '../../router/policy/bridge-filter.js';
import { parseIpv6, parseRange6 } from '../../ipam/ipv6.js';

// ---- frame builders (by hand: Ethernet II, IPv6 per RFC 8200, ND per RFC 4861) ----
const mac = (m: string): Buffer => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));
function eth(dst: string, src: string, payload: Buffer, type = 0x86dd): Buffer {
  const h = Buffer.alloc(14);
  mac(dst).copy(h, 0);
  mac(src).copy(h, 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}
function ip6(src: string, dst: string, nh: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = nh;
  h[7] = 255;
  parseIpv6(src)!.copy(h, 8);
  parseIpv6(dst)!.copy(h, 24);
  return Buffer.concat([h, payload]);
}
const udp = (src: string, dst: string): Buffer => ip6(src, dst, 17, Buffer.alloc(16));
const icmp = (src: string, dst: string, type: number, body = Buffer.alloc(4)): Buffer => ip6(src, dst, 58, Buffer.concat([Buffer.from([type, 0, 0, 0]), body]));
/** NS (135) / NA (136) for `target` with an optional link-layer address option (type 1 source, 2 target). */
function nd(type: 135 | 136, src: string, dst: string, target: string, lla?: string, optType = type === 135 ? 1 : 2): Buffer {
  const body = Buffer.alloc(20);
  parseIpv6(target)!.copy(body, 4);
  const opt = lla ? Buffer.concat([Buffer.from([optType, 1]), mac(lla)]) : Buffer.alloc(0);
  return icmp(src, dst, type, Buffer.concat([body, opt]));
}
/** The solicited-node multicast address and MAC of an address (RFC 4291 §2.7.1). */
function solicited(a: string): { ip: string; mac: string } {
  const b = parseIpv6(a)!;
  const h = (x: number): string => x.toString(16).padStart(2, '0');
  return { ip: `ff02::1:ff${h(b[13])}:${h(b[14])}${h(b[15])}`, mac: `33:33:ff:${h(b[13])}:${h(b[14])}:${h(b[15])}` };
}

const R6 = parseRange6('fd00:77::/64');
const A: PolicyEndpoint = { id: 'a', cidrs: ['10.32.1.5/24'], mac: '02:00:00:00:00:0a' };
const B: PolicyEndpoint = { id: 'b', cidrs: ['10.32.2.6/24'], mac: '02:00:00:00:00:0b' };
const C: PolicyEndpoint = { id: 'c', cidrs: ['10.32.1.7/24'], mac: '02:00:00:00:00:0c' };
const REMOTE = '02:00:00:00:00:99';
const g = (v4: string): string => `fd00:77::${v4}`;
const ll = (v4: string): string => `fe80::${v4}`;

const policy = new SubnetPolicy([A, B, C], { range6: R6.bytes });
const cap = (f: Buffer): string | undefined => policy.checkCaptured(f, 0, f.length);
const del = (f: Buffer): string | undefined => policy.checkDelivered(f, 0, f.length);

describe('IPv6 captured (sent by a local endpoint)', () => {
  test('within the group: global and link-local unicast, multicast, RS', () => {
    assert.equal(cap(eth(C.mac, A.mac, udp(g('10.32.1.5'), g('10.32.1.7')))), undefined);
    assert.equal(cap(eth(REMOTE, A.mac, udp(g('10.32.1.5'), g('10.32.1.9')))), undefined, 'a remote member of the subnet');
    assert.equal(cap(eth(C.mac, A.mac, udp(ll('10.32.1.5'), ll('10.32.1.7')))), undefined);
    assert.equal(cap(eth('33:33:00:00:00:01', A.mac, udp(ll('10.32.1.5'), 'ff02::1'))), undefined);
    assert.equal(cap(eth('33:33:00:00:00:02', A.mac, icmp(ll('10.32.1.5'), 'ff02::2', 133))), undefined);
  });

  test('to another group, or outside the overlay, is isolation', () => {
    assert.equal(cap(eth(B.mac, A.mac, udp(g('10.32.1.5'), g('10.32.2.6')))), 'isolation');
    assert.equal(cap(eth(B.mac, A.mac, udp(ll('10.32.1.5'), ll('10.32.2.6')))), 'isolation');
    assert.equal(cap(eth(REMOTE, A.mac, udp(g('10.32.1.5'), '2001:db8::1'))), 'isolation');
    assert.equal(cap(eth(REMOTE, A.mac, udp(g('10.32.1.5'), 'fe80::200:ff:fe00:1'))), 'isolation');
  });

  test('spoofed sources: another endpoint\'s address, an unassigned one, an EUI-64 link-local, outside range6, an unknown MAC', () => {
    assert.equal(cap(eth(C.mac, A.mac, udp(g('10.32.1.7'), g('10.32.1.5')))), 'spoof');
    assert.equal(cap(eth(C.mac, A.mac, udp(ll('10.32.1.7'), ll('10.32.1.5')))), 'spoof');
    assert.equal(cap(eth(C.mac, A.mac, udp(g('10.32.1.66'), g('10.32.1.7')))), 'spoof');
    assert.equal(cap(eth(C.mac, A.mac, udp('fe80::ff:fe00:a', ll('10.32.1.7')))), 'spoof');
    assert.equal(cap(eth(C.mac, A.mac, udp('fd00:78::a20:105', g('10.32.1.7')))), 'spoof');
    assert.equal(cap(eth(C.mac, REMOTE, udp(g('10.32.1.5'), g('10.32.1.7')))), 'spoof');
    assert.equal(cap(eth(C.mac, A.mac, udp('::', g('10.32.1.7')))), 'spoof', ':: only for DAD');
  });

  test('Neighbour Solicitation: target in the sender\'s group, source link-layer option its MAC', () => {
    const s = solicited(g('10.32.1.7'));
    assert.equal(cap(eth(s.mac, A.mac, nd(135, g('10.32.1.5'), s.ip, g('10.32.1.7'), A.mac))), undefined);
    assert.equal(cap(eth(s.mac, A.mac, nd(135, ll('10.32.1.5'), s.ip, ll('10.32.1.7')))), undefined, 'link-local, no option');
    const sb = solicited(g('10.32.2.6'));
    assert.equal(cap(eth(sb.mac, A.mac, nd(135, g('10.32.1.5'), sb.ip, g('10.32.2.6'), A.mac))), 'isolation', 'another group\'s target');
    assert.equal(cap(eth(s.mac, A.mac, nd(135, g('10.32.1.5'), s.ip, g('10.32.1.7'), C.mac))), 'spoof', 'someone else\'s MAC in the option');
    assert.equal(cap(eth(s.mac, A.mac, nd(135, g('10.32.1.5'), s.ip, '2001:db8::7', A.mac))), 'isolation', 'a target outside the overlay');
  });

  test('Neighbour Advertisement: only for its own address, target link-layer option its MAC', () => {
    assert.equal(cap(eth(C.mac, A.mac, nd(136, g('10.32.1.5'), g('10.32.1.7'), g('10.32.1.5'), A.mac))), undefined);
    assert.equal(cap(eth('33:33:00:00:00:01', A.mac, nd(136, ll('10.32.1.5'), 'ff02::1', ll('10.32.1.5'), A.mac))), undefined, 'unsolicited, link-local');
    assert.equal(cap(eth(C.mac, A.mac, nd(136, g('10.32.1.5'), g('10.32.1.7'), g('10.32.1.7'), A.mac))), 'spoof', 'a group member\'s address');
    assert.equal(cap(eth('33:33:00:00:00:01', A.mac, nd(136, g('10.32.1.5'), 'ff02::1', g('10.32.2.6'), A.mac))), 'spoof', 'another group\'s address');
    assert.equal(cap(eth(C.mac, A.mac, nd(136, g('10.32.1.5'), g('10.32.1.7'), g('10.32.1.5'), B.mac))), 'spoof', 'someone else\'s MAC');
    assert.equal(cap(eth(C.mac, A.mac, nd(136, g('10.32.1.5'), g('10.32.1.7'), '2001:db8::5', A.mac))), 'spoof');
  });

  test('Router Advertisements and Redirects are spoof; fragmented ND is isolation; truncated ND malformed', () => {
    assert.equal(cap(eth('33:33:00:00:00:01', A.mac, icmp(ll('10.32.1.5'), 'ff02::1', 134, Buffer.alloc(12)))), 'spoof');
    assert.equal(cap(eth(C.mac, A.mac, icmp(ll('10.32.1.5'), ll('10.32.1.7'), 137, Buffer.alloc(36)))), 'spoof');
    const s = solicited(g('10.32.1.7'));
    const whole = nd(135, g('10.32.1.5'), s.ip, g('10.32.1.7'));
    const frag = Buffer.concat([whole.subarray(0, 40), Buffer.from([58, 0, 0, 0, 0, 0, 0, 1]), whole.subarray(40)]);
    frag[6] = 44;
    frag.writeUInt16BE(whole.length - 40 + 8, 4);
    assert.equal(cap(eth(s.mac, A.mac, frag)), 'isolation', 'RFC 6980');
    assert.equal(cap(eth(s.mac, A.mac, icmp(g('10.32.1.5'), s.ip, 135, Buffer.alloc(10)))), 'malformed', 'shorter than the NS body');
    const zeroOpt = icmp(g('10.32.1.5'), s.ip, 135, Buffer.concat([Buffer.alloc(4), parseIpv6(g('10.32.1.7'))!, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0])]));
    assert.equal(cap(eth(s.mac, A.mac, zeroOpt)), 'malformed', 'an option of length 0');
  });

  test('Duplicate Address Detection from :: only for its own address', () => {
    const s = solicited(g('10.32.1.5'));
    assert.equal(cap(eth(s.mac, A.mac, nd(135, '::', s.ip, g('10.32.1.5')))), undefined);
    assert.equal(cap(eth(s.mac, A.mac, nd(135, '::', s.ip, ll('10.32.1.5')))), undefined);
    assert.equal(cap(eth(s.mac, A.mac, nd(135, '::', s.ip, g('10.32.1.7')))), 'spoof', 'probing a neighbour\'s address');
    assert.equal(cap(eth(s.mac, A.mac, icmp('::', 'ff02::16', 143, Buffer.alloc(4)))), 'spoof', 'other messages from ::');
  });

  test('without --ipalloc-range6 every IPv6 frame is isolation', () => {
    const p4 = new SubnetPolicy([A, B, C]);
    assert.equal(p4.checkCaptured(...args(eth(C.mac, A.mac, udp(g('10.32.1.5'), g('10.32.1.7'))))), 'isolation');
    assert.equal(p4.checkDelivered(...args(eth(A.mac, REMOTE, udp(g('10.32.1.9'), g('10.32.1.5'))))), 'isolation');
  });
});

function args(f: Buffer): [Buffer, number, number] {
  return [f, 0, f.length];
}

describe('IPv6 delivered (from a peer to a local endpoint)', () => {
  test('unicast from the group to an endpoint\'s global or link-local address', () => {
    assert.equal(del(eth(A.mac, REMOTE, udp(g('10.32.1.9'), g('10.32.1.5')))), undefined);
    assert.equal(del(eth(A.mac, REMOTE, udp(ll('10.32.1.9'), ll('10.32.1.5')))), undefined);
    assert.equal(del(eth(A.mac, REMOTE, udp(ll('10.32.1.9'), 'ff02::1'))), undefined, 'multicast IPv6 to a unicast MAC');
  });

  test('from another group, to another address of the subnet, to an unknown MAC, from outside the overlay', () => {
    assert.equal(del(eth(A.mac, REMOTE, udp(g('10.32.2.9'), g('10.32.1.5')))), 'isolation');
    assert.equal(del(eth(A.mac, REMOTE, udp(g('10.32.1.9'), g('10.32.1.7')))), 'isolation', 'C\'s address to A\'s MAC');
    assert.equal(del(eth(REMOTE, REMOTE, udp(g('10.32.1.9'), g('10.32.1.5')))), 'not-local');
    assert.equal(del(eth(A.mac, REMOTE, udp('2001:db8::9', g('10.32.1.5')))), 'isolation');
    assert.equal(del(eth(A.mac, REMOTE, udp('fe80::ff:fe00:99', ll('10.32.1.5')))), 'isolation', 'an EUI-64 link-local source');
  });

  test('multicast ND follows the group: a solicitation for a group member passes, for another group\'s address not', () => {
    const s = solicited(g('10.32.1.5'));
    assert.equal(del(eth(s.mac, REMOTE, nd(135, g('10.32.1.9'), s.ip, g('10.32.1.5'), REMOTE))), undefined);
    const sb = solicited(g('10.32.2.6'));
    assert.equal(del(eth(sb.mac, REMOTE, nd(135, g('10.32.1.9'), sb.ip, g('10.32.2.6'), REMOTE))), 'isolation');
    assert.equal(del(eth('33:33:00:00:00:01', REMOTE, udp(ll('10.32.3.9'), 'ff02::1'))), 'isolation', 'no local endpoint in 10.32.3.0/24');
    assert.equal(del(eth(s.mac, REMOTE, nd(135, '::', s.ip, g('10.32.1.9')))), undefined, 'DAD from a group member');
    assert.equal(del(eth(s.mac, REMOTE, nd(135, '::', s.ip, g('10.32.3.9')))), 'isolation', 'DAD from elsewhere');
  });

  test('an advertisement for another group\'s address, an RA, or an option with another MAC is dropped', () => {
    assert.equal(del(eth(A.mac, REMOTE, nd(136, g('10.32.1.9'), g('10.32.1.5'), g('10.32.2.6'), REMOTE))), 'isolation');
    assert.equal(del(eth(A.mac, REMOTE, nd(136, g('10.32.1.9'), g('10.32.1.5'), g('10.32.1.9'), REMOTE))), undefined);
    assert.equal(del(eth(A.mac, REMOTE, nd(136, g('10.32.1.9'), g('10.32.1.5'), g('10.32.1.9'), A.mac))), 'spoof');
    assert.equal(del(eth('33:33:00:00:00:01', REMOTE, icmp(ll('10.32.1.9'), 'ff02::1', 134, Buffer.alloc(12)))), 'spoof');
  });

  test('random IPv6 frames never throw and never pass from outside the overlay', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 120 }), fc.boolean(), (b, asDelivered) => {
      const f = Buffer.from(b);
      if (f.length >= 14) f.writeUInt16BE(0x86dd, 12);
      const r = asDelivered ? policy.checkDelivered(f, 0, f.length) : policy.checkCaptured(f, 0, f.length);
      if (r === undefined) {
        // Passing needs an overlay source address (or :: for DAD).
        const src = f.subarray(22, 38);
        const ok = src.every((x) => x === 0) || src.subarray(0, 12).equals(R6.bytes.subarray(0, 12)) || src.subarray(0, 12).equals(Buffer.from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert.ok(ok);
      }
    }), { numRuns: 3000 });
  });
});

describe('bridge filters for IPv6 (nft ruleset)', () => {
  const ports = [{ port: 'vethwepl1234567', mac: A.mac, cidrs: A.cidrs }];

  test('prefixBits', () => {
    // Expected values computed independently (Python's ipaddress: int(addr) >> (128 - len)).
    assert.equal(prefixBits('fd00:77::a20:105', 128), '0xfd00007700000000000000000a200105');
    assert.equal(prefixBits('fd00:77::a20:100/120', 120), '0xfd00007700000000000000000a2001');
    assert.equal(prefixBits('fe80::a20:100/120', 108), '0xfe80000000000000000000000a2');
  });

  // Egress: a subnet's two source prefixes × its two prefixes and multicast, one rule each (no interval sets: bridge-filter.ts NO_INTERVAL_SETS).
  const SRC_DST = ['fd00:77::a20:100/120', 'fe80::a20:100/120'].flatMap((src) => ['fd00:77::a20:100/120', 'fe80::a20:100/120', 'ff00::/8'].map((dst) => [src, dst]));

  test('with range6: ingress anti-spoofing and egress per-subnet rules on the derived addresses', () => {
    const { script, skipped } = renderRuleset(ports, [], 'weave', undefined, R6);
    assert.deepEqual(skipped, []);
    for (const line of [
      'icmpv6 type { nd-router-advert, nd-redirect } counter name "spoof" drop comment "spoof"',
      'ip6 saddr != { ::, fd00:77::a20:105, fe80::a20:105 } counter name "spoof" drop comment "spoof"',
      'ip6 saddr :: meta l4proto != ipv6-icmp counter name "spoof" drop comment "spoof"',
      'icmpv6 type nd-neighbor-advert @th,64,128 != { 0xfd00007700000000000000000a200105, 0xfe80000000000000000000000a200105 } counter name "spoof" drop comment "spoof"',
      'icmpv6 type nd-neighbor-solicit @th,192,8 1 @th,208,48 != 0x02000000000a counter name "spoof" drop comment "spoof"',
      'ether type ip6 accept',
      'icmpv6 type { nd-router-advert, nd-redirect } counter name "isolation" drop comment "isolation"',
      ...['fd00:77::a20:100/120', 'fe80::a20:100/120'].map((src) => `ip6 saddr ${src} icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } @th,64,120 != { 0xfd00007700000000000000000a2001, 0xfe80000000000000000000000a2001 } counter name "isolation" drop comment "isolation"`),
      ...SRC_DST.map(([src, dst]) => `ip6 saddr ${src} ip6 daddr ${dst} accept`),
    ]) assert.ok(script.includes(`    ${line}\n`), `missing: ${line}\n${script}`);
    // IPv6 rules sit before each chain's final drop.
    const inChain = script.slice(script.indexOf('chain in_vethwepl1234567'), script.indexOf('chain out_vethwepl1234567'));
    assert.ok(inChain.indexOf('ether type ip6 accept') > 0);
    assert.ok(inChain.indexOf('ether type ip6 accept') < inChain.lastIndexOf('counter name "isolation" drop comment "isolation"'));
  });

  test('rule order: IPv6 data frames match within a few rules, after every anti-spoofing check that can apply to them', () => {
    const { script } = renderRuleset(ports, [], 'weave', undefined, R6);
    const inChain = script.slice(script.indexOf('chain in_vethwepl1234567'), script.indexOf('chain out_vethwepl1234567'));
    const at = (chain: string, line: string): number => {
      const i = chain.indexOf(`    ${line}\n`);
      assert.ok(i >= 0, `missing: ${line}\n${chain}`);
      return i;
    };
    // Ingress: the source check first; then the fast paths, for an own source (not "::"):
    // not ICMPv6, or ICMPv6 that is neither ND nor a Router Advertisement/Redirect; then the
    // RA/Redirect drop, the "::" checks and the ND checks; IPv6 before ARP.
    const source = at(inChain, 'ip6 saddr != { ::, fd00:77::a20:105, fe80::a20:105 } counter name "spoof" drop comment "spoof"');
    const nonIcmp = at(inChain, 'ip6 saddr != :: meta l4proto != ipv6-icmp accept');
    const nonNd = at(inChain, 'ip6 saddr != :: icmpv6 type != { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-redirect } accept');
    assert.ok(source < nonIcmp);
    assert.ok(nonIcmp < nonNd);
    for (const after of [
      'icmpv6 type { nd-router-advert, nd-redirect } counter name "spoof" drop comment "spoof"',
      'ip6 saddr :: meta l4proto != ipv6-icmp counter name "spoof" drop comment "spoof"',
      'ip6 saddr :: icmpv6 type != nd-neighbor-solicit counter name "spoof" drop comment "spoof"',
      'icmpv6 type nd-neighbor-solicit @th,192,8 1 @th,208,48 != 0x02000000000a counter name "spoof" drop comment "spoof"',
    ]) assert.ok(nonNd < at(inChain, after), after);
    // Nothing else accepts IPv6 before the ND checks: the old catch-all fast paths are gone.
    assert.ok(!inChain.includes('meta l4proto != ipv6-icmp ether type ip6 accept') && !inChain.includes('icmpv6 type != { nd-neighbor-solicit, nd-neighbor-advert } accept'), inChain);
    assert.ok(at(inChain, 'ether type ip6 accept') < at(inChain, 'arp htype != 1 counter name "spoof" drop comment "spoof"'));
    // Egress: IPv4 unicast first, then IPv6, then IPv4 broadcast/multicast and ARP.
    const outChain = script.slice(script.indexOf('chain out_vethwepl1234567'), script.indexOf('chain in_', script.indexOf('chain out_vethwepl1234567')));
    const v4 = at(outChain, 'ip saddr 10.32.1.0/24 ip daddr 10.32.1.0/24 accept');
    const v6 = at(outChain, 'ip6 saddr fd00:77::a20:100/120 ip6 daddr fd00:77::a20:100/120 accept');
    assert.ok(v4 < v6);
    assert.ok(v6 < at(outChain, 'ip saddr 10.32.1.0/24 ip daddr 255.255.255.255 accept'));
    // Within IPv6: each in-subnet pair's fast paths (not ICMPv6; ICMPv6 that is neither ND
    // nor RA/Redirect) come first, after IPv4 unicast and before the RA/Redirect drop and
    // the ND target checks, which then only ND, RA and Redirect reach.
    const raDrop = at(outChain, 'icmpv6 type { nd-router-advert, nd-redirect } counter name "isolation" drop comment "isolation"');
    for (const [src, dst] of SRC_DST) {
      const fast = [
        at(outChain, `ip6 saddr ${src} ip6 daddr ${dst} meta l4proto != ipv6-icmp accept`),
        at(outChain, `ip6 saddr ${src} ip6 daddr ${dst} icmpv6 type != { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-redirect } accept`),
      ];
      for (const f of fast) assert.ok(v4 < f && f < raDrop, `${src} → ${dst}`);
    }
    assert.ok(raDrop < at(outChain, 'ip6 saddr fd00:77::a20:100/120 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } @th,64,120 != { 0xfd00007700000000000000000a2001, 0xfe80000000000000000000000a2001 } counter name "isolation" drop comment "isolation"'));
  });

  test('no port chain holds an anonymous set with a prefix in it (nft would read every such set on each pod start)', () => {
    const many = [...ports, { port: 'vethwepl7654321', mac: '02:00:00:00:00:0b', cidrs: ['10.32.1.6/24', '10.32.2.6/24'] }];
    for (const r6 of [R6, undefined]) {
      const delta = renderPortDelta(new Map(), usablePorts(many, r6).usable);
      const sets = delta.match(/\{ [^{}\n]* \}/g) ?? [];
      assert.ok(sets.length > 0, delta);
      for (const x of sets) assert.ok(!x.includes('/'), `interval set in a port chain: ${x}`);
    }
  });

  test('the incremental update (renderPortDelta) carries a new port\'s IPv6 rules; a port whose IPv6 view changes is rewritten', () => {
    const { usable } = usablePorts(ports, R6);
    const delta = renderPortDelta(new Map(), usable);
    for (const line of [
      'ip6 saddr != { ::, fd00:77::a20:105, fe80::a20:105 } counter name "spoof" drop comment "spoof"',
      ...SRC_DST.map(([src, dst]) => `ip6 saddr ${src} ip6 daddr ${dst} accept`),
    ]) assert.ok(delta.includes(`    ${line}\n`), `missing: ${line}\n${delta}`);
    // Same port, same addresses: without range6 its key differs, so the chains are rewritten (IPv6 then dropped).
    const without = usablePorts(ports).usable;
    assert.notEqual(without[0].key, usable[0].key);
    const d2 = renderPortDelta(new Map([[usable[0].port, usable[0].key]]), without);
    assert.ok(d2.includes('flush chain bridge tsweave in_vethwepl1234567') && !/ip6 saddr/.test(d2), d2);
    assert.equal(renderPortDelta(new Map([[usable[0].port, usable[0].key]]), usable), '');
  });

  test('weave expose with range6: the host hears IPv6 only from its exposed subnets\' prefixes (global and link-local), then the drop', () => {
    const { script } = renderRuleset(ports, ['10.32.1.100/24', '10.32.3.1/24', 'bad'], 'weave', undefined, R6);
    const t6 = script.slice(script.indexOf('table ip6 tsweave {'));
    assert.ok(t6.includes('    iifname "weave" ip6 saddr { fd00:77::a20:100/120, fe80::a20:100/120, fd00:77::a20:300/120, fe80::a20:300/120 } accept comment "exposed subnets"\n    iifname "weave" counter drop comment "isolation"'), t6);
    // Not exposed (no host addresses): IPv6 to the host is dropped as before.
    const none = renderRuleset(ports, [], 'weave', undefined, R6).script;
    assert.ok(!none.includes('accept comment "exposed subnets"'), none);
  });

  test('without range6 no container port passes IPv6; the host never hears IPv6 from the bridge', () => {
    const { script } = renderRuleset(ports, ['10.32.1.100/24'], 'weave');
    assert.ok(!/ip6 saddr|ether type ip6|icmpv6/.test(script), script);
    assert.ok(script.includes('table ip6 tsweave {\n  chain input {\n    type filter hook input priority filter; policy accept;\n    iifname "weave" counter drop comment "isolation"'));
    assert.ok(script.startsWith('table bridge tsweave\ndelete table bridge tsweave\n'));
    assert.ok(script.includes('table ip6 tsweave\ndelete table ip6 tsweave\n'), 'replaced atomically like the others');
  });
});
