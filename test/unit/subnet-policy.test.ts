import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { SubnetPolicy, parseCidr, parseMac, prefixMask, type PolicyEndpoint } from '../../router/policy/subnet-policy.js';
import { chainId, renderPortDelta, renderRuleset, splitCidr, sumCounters, tablesIn, usablePorts } from '../../router/policy/bridge-filter.js';
import { mulberry32 } from '../lib/prng.js';

// ---------- frame builders (by hand: Ethernet II, IPv4 per RFC 791, ARP per RFC 826) ----------

function macBytes(m: string): Buffer {
  return Buffer.from(m.split(':').map((x) => parseInt(x, 16)));
}
function ipBytes(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}
function eth(dst: string, src: string, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(14);
  macBytes(dst).copy(h, 0);
  macBytes(src).copy(h, 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}
function ipv4(src: string, dst: string, opts: { vihl?: number; proto?: number; payload?: number } = {}): Buffer {
  const h = Buffer.alloc(20 + (opts.payload ?? 8));
  h[0] = opts.vihl ?? 0x45;
  h.writeUInt16BE(h.length, 2);
  h[8] = 64;
  h[9] = opts.proto ?? 1;
  ipBytes(src).copy(h, 12);
  ipBytes(dst).copy(h, 16);
  return h;
}
function arp(op: number, sha: string, spa: string, tha: string, tpa: string, shape = [0, 1, 8, 0, 6, 4]): Buffer {
  const a = Buffer.alloc(28);
  Buffer.from(shape).copy(a, 0);
  a.writeUInt16BE(op, 6);
  macBytes(sha).copy(a, 8);
  ipBytes(spa).copy(a, 14);
  macBytes(tha).copy(a, 18);
  ipBytes(tpa).copy(a, 24);
  return a;
}
const BCAST = 'ff:ff:ff:ff:ff:ff';
const ZERO_MAC = '00:00:00:00:00:00';
const ipFrame = (dmac: string, smac: string, src: string, dst: string): Buffer => eth(dmac, smac, 0x0800, ipv4(src, dst));
const arpFrame = (dmac: string, smac: string, op: number, sha: string, spa: string, tha: string, tpa: string): Buffer =>
  eth(dmac, smac, 0x0806, Buffer.concat([arp(op, sha, spa, tha, tpa), Buffer.alloc(18)]));

// ---------- the table used by the hand-written cases ----------

const A = { id: 'a', mac: '02:00:00:00:00:0a', cidrs: ['10.32.1.5/24'] };
const B = { id: 'b', mac: '02:00:00:00:00:0b', cidrs: ['10.32.2.6/24'] };
const D = { id: 'd', mac: '02:00:00:00:00:0d', cidrs: ['10.32.1.7/24', '10.32.2.7/24'] };
const H = { id: 'weave:expose', mac: '02:00:00:00:00:0e', cidrs: ['10.32.1.100/24'] };
const REMOTE = '02:00:00:00:00:99';
const policy = new SubnetPolicy([A, B, D, H]);

const cap = (f: Buffer): string | undefined => policy.checkCaptured(f, 0, f.length);
const del = (f: Buffer): string | undefined => policy.checkDelivered(f, 0, f.length);

describe('parsing helpers', () => {
  test('parseCidr gives int32 address, network and mask', () => {
    assert.deepEqual(parseCidr('10.32.1.5/24'), { addr: 0x0a200105, net: 0x0a200100, mask: -256, len: 24 });
    assert.deepEqual(parseCidr('192.168.1.1/32'), { addr: 0xc0a80101 | 0, net: 0xc0a80101 | 0, mask: -1, len: 32 });
    assert.equal(parseCidr('1.2.3.4/0')!.net, 0);
    for (const bad of ['10.32.1.5', '10.32.1.256/24', '10.32.1.5/33', ' 10.32.1.5/24', '10.32.1/24', '']) assert.equal(parseCidr(bad), undefined, bad);
  });
  test('prefixMask for the edge lengths', () => {
    assert.equal(prefixMask(0), 0);
    assert.equal(prefixMask(1), 0x80000000 | 0);
    assert.equal(prefixMask(32), -1);
    assert.equal(prefixMask(12) >>> 0, 0xfff00000);
  });
  test('parseMac splits into 16 + 32 bits', () => {
    assert.deepEqual(parseMac('ff:ee:dd:cc:bb:aa'), { hi: 0xffee, lo: 0xddccbbaa | 0 });
    for (const bad of ['', 'ff:ee:dd:cc:bb', 'ff-ee-dd-cc-bb-aa', 'gg:ee:dd:cc:bb:aa']) assert.equal(parseMac(bad), undefined, bad);
  });
});

describe('checkCaptured: a local endpoint sends towards remote peers', () => {
  test('IPv4 inside its subnet passes, including subnet broadcast, limited broadcast and multicast', () => {
    assert.equal(cap(ipFrame(REMOTE, A.mac, '10.32.1.5', '10.32.1.9')), undefined);
    assert.equal(cap(ipFrame(BCAST, A.mac, '10.32.1.5', '10.32.1.255')), undefined);
    assert.equal(cap(ipFrame(BCAST, A.mac, '10.32.1.5', '255.255.255.255')), undefined);
    assert.equal(cap(ipFrame('01:00:5e:00:00:fb', A.mac, '10.32.1.5', '224.0.0.251')), undefined);
    assert.equal(cap(ipFrame(REMOTE, A.mac, '10.32.1.5', '239.255.255.250')), undefined);
  });
  test('IPv4 to another subnet is isolation', () => {
    assert.equal(cap(ipFrame(REMOTE, A.mac, '10.32.1.5', '10.32.2.6')), 'isolation');
    assert.equal(cap(ipFrame(REMOTE, A.mac, '10.32.1.5', '10.32.0.1')), 'isolation');
    assert.equal(cap(ipFrame(BCAST, A.mac, '10.32.1.5', '10.32.2.255')), 'isolation');
    assert.equal(cap(ipFrame(REMOTE, A.mac, '10.32.1.5', '8.8.8.8')), 'isolation');
  });
  test('a source address that is not the sender\'s is spoof (added address, other MAC, unknown)', () => {
    assert.equal(cap(ipFrame(REMOTE, A.mac, '10.32.2.5', '10.32.2.6')), 'spoof', 'address A added to its ethwe');
    assert.equal(cap(ipFrame(REMOTE, A.mac, '10.32.2.6', '10.32.2.9')), 'spoof', 'B\'s address from A\'s MAC');
    assert.equal(cap(ipFrame(REMOTE, B.mac, '10.32.1.5', '10.32.1.9')), 'spoof', 'A\'s address from B\'s MAC');
    assert.equal(cap(ipFrame(REMOTE, '02:00:00:00:00:77', '10.32.1.5', '10.32.1.9')), 'spoof', 'unknown MAC');
    assert.equal(cap(ipFrame(BCAST, A.mac, '0.0.0.0', '255.255.255.255')), 'spoof', 'DHCP-style source');
  });
  test('a dual-subnet endpoint reaches both subnets, each from its address there', () => {
    assert.equal(cap(ipFrame(REMOTE, D.mac, '10.32.1.7', '10.32.1.9')), undefined);
    assert.equal(cap(ipFrame(REMOTE, D.mac, '10.32.2.7', '10.32.2.9')), undefined);
    // The frame must stay inside one subnet: a receiver in 10.32.1.0/24 only knows the source.
    assert.equal(cap(ipFrame(REMOTE, D.mac, '10.32.2.7', '10.32.1.9')), 'isolation');
  });
  test('the exposed host is an endpoint like the others', () => {
    assert.equal(cap(ipFrame(REMOTE, H.mac, '10.32.1.100', '10.32.1.9')), undefined);
    assert.equal(cap(ipFrame(REMOTE, H.mac, '10.32.1.100', '10.32.2.9')), 'isolation');
  });
  test('ARP requests, replies and gratuitous ARP inside the subnet pass', () => {
    assert.equal(cap(arpFrame(BCAST, A.mac, 1, A.mac, '10.32.1.5', ZERO_MAC, '10.32.1.9')), undefined);
    assert.equal(cap(arpFrame(REMOTE, A.mac, 2, A.mac, '10.32.1.5', REMOTE, '10.32.1.9')), undefined);
    assert.equal(cap(arpFrame(BCAST, A.mac, 1, A.mac, '10.32.1.5', ZERO_MAC, '10.32.1.5')), undefined);
  });
  test('ARP for another subnet is isolation; forged sender is spoof', () => {
    assert.equal(cap(arpFrame(BCAST, A.mac, 1, A.mac, '10.32.1.5', ZERO_MAC, '10.32.2.6')), 'isolation');
    assert.equal(cap(arpFrame(BCAST, A.mac, 1, A.mac, '10.32.1.5', ZERO_MAC, '255.255.255.255')), 'isolation', 'no group exception for ARP targets');
    assert.equal(cap(arpFrame(BCAST, A.mac, 1, A.mac, '10.32.2.5', ZERO_MAC, '10.32.2.6')), 'spoof');
    assert.equal(cap(arpFrame(BCAST, A.mac, 2, B.mac, '10.32.1.5', ZERO_MAC, '10.32.1.9')), 'spoof', 'sender hw address not the frame source');
    assert.equal(cap(arpFrame(BCAST, A.mac, 2, A.mac, '10.32.2.6', ZERO_MAC, '10.32.2.9')), 'spoof', 'poisoning B\'s address');
  });
  test('ARP probe (sender 0.0.0.0): target must be in the sender\'s subnets', () => {
    assert.equal(cap(arpFrame(BCAST, A.mac, 1, A.mac, '0.0.0.0', ZERO_MAC, '10.32.1.5')), undefined);
    assert.equal(cap(arpFrame(BCAST, A.mac, 1, A.mac, '0.0.0.0', ZERO_MAC, '10.32.2.5')), 'isolation');
    assert.equal(cap(arpFrame(BCAST, D.mac, 1, D.mac, '0.0.0.0', ZERO_MAC, '10.32.2.5')), undefined);
    assert.equal(cap(arpFrame(BCAST, '02:00:00:00:00:77', 1, '02:00:00:00:00:77', '0.0.0.0', ZERO_MAC, '10.32.1.5')), 'spoof');
  });
  test('other EtherTypes are isolation (IPv6, VLAN tag, LLDP)', () => {
    for (const t of [0x86dd, 0x8100, 0x88cc, 0x0000, 0xffff]) assert.equal(cap(eth(REMOTE, A.mac, t, ipv4('10.32.1.5', '10.32.1.9'))), 'isolation', t.toString(16));
  });
  test('truncated or malformed headers are malformed', () => {
    const f = ipFrame(REMOTE, A.mac, '10.32.1.5', '10.32.1.9');
    assert.equal(policy.checkCaptured(f, 0, 13), 'malformed');
    assert.equal(policy.checkCaptured(f, 0, 33), 'malformed');
    assert.equal(policy.checkCaptured(f, 0, 34), undefined, 'a bare IPv4 header is enough to decide');
    assert.equal(cap(eth(REMOTE, A.mac, 0x0800, ipv4('10.32.1.5', '10.32.1.9', { vihl: 0x65 }))), 'malformed', 'version 6 in an IPv4 frame');
    assert.equal(cap(eth(REMOTE, A.mac, 0x0800, ipv4('10.32.1.5', '10.32.1.9', { vihl: 0x44 }))), 'malformed', 'IHL < 5');
    const a = arpFrame(BCAST, A.mac, 1, A.mac, '10.32.1.5', ZERO_MAC, '10.32.1.9');
    assert.equal(policy.checkCaptured(a, 0, 41), 'malformed');
    const odd = eth(BCAST, A.mac, 0x0806, arp(1, A.mac, '10.32.1.5', ZERO_MAC, '10.32.1.9', [0, 1, 8, 0, 8, 4]));
    assert.equal(cap(odd), 'malformed', 'hlen 8');
    assert.equal(policy.checkCaptured(f, 0, f.length + 1), 'malformed', 'range past the buffer');
  });
  test('works on a frame in the middle of a larger buffer (TAP batch slab)', () => {
    const f = ipFrame(REMOTE, A.mac, '10.32.1.5', '10.32.2.6');
    const slab = Buffer.concat([Buffer.alloc(37, 0xff), f, Buffer.alloc(11, 0xff)]);
    assert.equal(policy.checkCaptured(slab, 37, 37 + f.length), 'isolation');
    const ok = ipFrame(REMOTE, A.mac, '10.32.1.5', '10.32.1.6');
    const slab2 = Buffer.concat([Buffer.alloc(5), ok, Buffer.alloc(3)]);
    assert.equal(policy.checkCaptured(slab2, 5, 5 + ok.length), undefined);
  });
});

describe('checkDelivered: a frame from a peer about to reach the bridge', () => {
  test('unicast to a local endpoint from its subnet passes; from another subnet is isolation', () => {
    assert.equal(del(ipFrame(A.mac, REMOTE, '10.32.1.9', '10.32.1.5')), undefined);
    assert.equal(del(ipFrame(A.mac, REMOTE, '10.32.2.9', '10.32.1.5')), 'isolation');
    assert.equal(del(ipFrame(B.mac, REMOTE, '10.32.1.9', '10.32.2.6')), 'isolation');
    assert.equal(del(ipFrame(B.mac, REMOTE, '10.32.2.9', '10.32.2.6')), undefined);
  });
  test('unicast MAC with an IP that is not that endpoint\'s address in the source subnet is isolation', () => {
    assert.equal(del(ipFrame(A.mac, REMOTE, '10.32.1.9', '10.32.1.6')), 'isolation', 'other host in the subnet');
    assert.equal(del(ipFrame(D.mac, REMOTE, '10.32.2.9', '10.32.1.7')), 'isolation', 'D\'s address in the other subnet');
    assert.equal(del(ipFrame(D.mac, REMOTE, '10.32.2.9', '10.32.2.7')), undefined);
    assert.equal(del(ipFrame(D.mac, REMOTE, '10.32.1.9', '10.32.1.7')), undefined);
    assert.equal(del(ipFrame(A.mac, REMOTE, '10.32.1.9', '10.32.1.255')), undefined, 'subnet broadcast');
    assert.equal(del(ipFrame(A.mac, REMOTE, '10.32.1.9', '224.0.0.1')), undefined, 'multicast');
  });
  test('unicast to a MAC that is not local is not-local (the bridge would flood it)', () => {
    assert.equal(del(ipFrame('02:00:00:00:00:77', REMOTE, '10.32.1.9', '10.32.1.5')), 'not-local');
  });
  test('broadcast and multicast pass only if some local endpoint shares the subnet', () => {
    assert.equal(del(ipFrame(BCAST, REMOTE, '10.32.1.9', '255.255.255.255')), undefined);
    assert.equal(del(ipFrame(BCAST, REMOTE, '10.32.2.9', '10.32.2.255')), undefined);
    assert.equal(del(ipFrame('01:00:5e:00:00:fb', REMOTE, '10.32.2.9', '224.0.0.251')), undefined);
    assert.equal(del(ipFrame(BCAST, REMOTE, '10.32.3.9', '255.255.255.255')), 'isolation');
    assert.equal(del(ipFrame('01:00:5e:00:00:fb', REMOTE, '10.32.3.9', '224.0.0.251')), 'isolation');
    assert.equal(del(ipFrame(BCAST, REMOTE, '10.32.1.9', '10.32.2.6')), 'isolation', 'source and destination in different subnets');
  });
  test('ARP: broadcast request in a local subnet passes; cross-subnet or foreign is isolation', () => {
    assert.equal(del(arpFrame(BCAST, REMOTE, 1, REMOTE, '10.32.1.9', ZERO_MAC, '10.32.1.5')), undefined);
    assert.equal(del(arpFrame(BCAST, REMOTE, 1, REMOTE, '10.32.1.9', ZERO_MAC, '10.32.1.200')), undefined, 'for an address on another host');
    assert.equal(del(arpFrame(BCAST, REMOTE, 1, REMOTE, '10.32.1.9', ZERO_MAC, '10.32.2.6')), 'isolation');
    assert.equal(del(arpFrame(BCAST, REMOTE, 1, REMOTE, '10.32.3.9', ZERO_MAC, '10.32.3.1')), 'isolation');
  });
  test('ARP: unicast reply to the requester passes only in its subnet and for its address', () => {
    assert.equal(del(arpFrame(A.mac, REMOTE, 2, REMOTE, '10.32.1.9', A.mac, '10.32.1.5')), undefined);
    assert.equal(del(arpFrame(A.mac, REMOTE, 2, REMOTE, '10.32.2.9', A.mac, '10.32.1.5')), 'isolation');
    assert.equal(del(arpFrame(A.mac, REMOTE, 2, REMOTE, '10.32.1.9', A.mac, '10.32.1.255')), 'isolation', 'no broadcast target for ARP');
  });
  test('ARP probe (sender 0.0.0.0) is placed by its target', () => {
    assert.equal(del(arpFrame(BCAST, REMOTE, 1, REMOTE, '0.0.0.0', ZERO_MAC, '10.32.2.50')), undefined);
    assert.equal(del(arpFrame(BCAST, REMOTE, 1, REMOTE, '0.0.0.0', ZERO_MAC, '10.32.3.50')), 'isolation');
  });
  test('the exposed host receives from its exposed subnet only', () => {
    assert.equal(del(ipFrame(H.mac, REMOTE, '10.32.1.9', '10.32.1.100')), undefined);
    assert.equal(del(ipFrame(H.mac, REMOTE, '10.32.2.9', '10.32.1.100')), 'isolation');
  });
  test('other EtherTypes and malformed frames', () => {
    assert.equal(del(eth(A.mac, REMOTE, 0x86dd, Buffer.alloc(40))), 'isolation');
    assert.equal(del(Buffer.alloc(10)), 'malformed');
    const f = ipFrame(A.mac, REMOTE, '10.32.1.9', '10.32.1.5');
    assert.equal(policy.checkDelivered(f, 0, 30), 'malformed');
    assert.equal(del(eth(A.mac, REMOTE, 0x0806, arp(2, REMOTE, '10.32.1.9', A.mac, '10.32.1.5', [0, 6, 8, 0, 6, 4]))), 'malformed', 'htype 6');
  });
});

describe('table edge cases', () => {
  test('an empty table lets nothing through', () => {
    const p = new SubnetPolicy([]);
    assert.equal(p.endpointCount, 0);
    const f = ipFrame(BCAST, A.mac, '10.32.1.5', '255.255.255.255');
    assert.equal(p.checkCaptured(f, 0, f.length), 'spoof');
    assert.equal(p.checkDelivered(f, 0, f.length), 'isolation');
    const u = ipFrame(A.mac, REMOTE, '10.32.1.9', '10.32.1.5');
    assert.equal(p.checkDelivered(u, 0, u.length), 'not-local');
  });
  test('bad entries are skipped with a one-line problem, the rest still works', () => {
    const p = new SubnetPolicy([
      { id: 'x', mac: 'not-a-mac', cidrs: ['10.32.1.5/24'] },
      { id: 'y', mac: '02:00:00:00:00:0a', cidrs: ['10.32.1.5', '10.32.1.5/24'] },
      { id: 'z', mac: '', cidrs: [] },
      { id: 'w', mac: '02:00:00:00:00:0c', cidrs: [] },
    ] as PolicyEndpoint[]);
    assert.equal(p.endpointCount, 1);
    assert.equal(p.problems.length, 3);
    for (const l of p.problems) assert.doesNotMatch(l, /\n/);
    assert.match(p.problems[0], /endpoint x: MAC "not-a-mac"/);
    assert.match(p.problems[1], /endpoint y: address "10\.32\.1\.5" /);
    const f = ipFrame(REMOTE, A.mac, '10.32.1.5', '10.32.1.9');
    assert.equal(p.checkCaptured(f, 0, f.length), undefined);
  });
  test('/32 and /0 subnets', () => {
    const p = new SubnetPolicy([
      { id: 'lone', mac: '02:00:00:00:00:01', cidrs: ['10.1.1.1/32'] },
      { id: 'all', mac: '02:00:00:00:00:02', cidrs: ['10.2.2.2/0'] },
    ]);
    const c = (f: Buffer): string | undefined => p.checkCaptured(f, 0, f.length);
    assert.equal(c(ipFrame(REMOTE, '02:00:00:00:00:01', '10.1.1.1', '10.1.1.2')), 'isolation');
    assert.equal(c(ipFrame(BCAST, '02:00:00:00:00:01', '10.1.1.1', '255.255.255.255')), undefined);
    assert.equal(c(ipFrame(REMOTE, '02:00:00:00:00:02', '10.2.2.2', '200.1.1.1')), undefined);
    const d = ipFrame('02:00:00:00:00:02', REMOTE, '1.2.3.4', '10.2.2.2');
    assert.equal(p.checkDelivered(d, 0, d.length), undefined);
  });
  test('two endpoints sharing a MAC or an address: each is judged on its own bindings', () => {
    const p = new SubnetPolicy([
      { id: 'p', mac: '02:00:00:00:00:01', cidrs: ['10.32.1.5/24'] },
      { id: 'q', mac: '02:00:00:00:00:01', cidrs: ['10.32.2.5/24'] },
      { id: 'r', mac: '02:00:00:00:00:03', cidrs: ['10.32.1.5/24'] },
      // Same low 32 bits as p, different high 16.
      { id: 's', mac: '12:34:00:00:00:01', cidrs: ['10.32.3.5/24'] },
    ]);
    const c = (f: Buffer): string | undefined => p.checkCaptured(f, 0, f.length);
    const d = (f: Buffer): string | undefined => p.checkDelivered(f, 0, f.length);
    assert.equal(c(ipFrame(REMOTE, '02:00:00:00:00:03', '10.32.1.5', '10.32.1.9')), undefined);
    assert.equal(c(ipFrame(REMOTE, '12:34:00:00:00:01', '10.32.3.5', '10.32.3.9')), undefined);
    assert.equal(c(ipFrame(REMOTE, '12:34:00:00:00:01', '10.32.1.5', '10.32.1.9')), 'spoof');
    assert.equal(d(ipFrame('02:00:00:00:00:01', REMOTE, '10.32.2.9', '10.32.2.5')), undefined, 'second endpoint with that MAC');
    assert.equal(d(ipFrame('12:34:00:00:00:01', REMOTE, '10.32.2.9', '10.32.2.5')), 'isolation');
    assert.equal(c(arpFrame(BCAST, '02:00:00:00:00:01', 1, '02:00:00:00:00:01', '0.0.0.0', ZERO_MAC, '10.32.2.77')), undefined);
  });
});

// ---------- property test against a reference written with strings ----------


/** 32-character bit string of a dotted quad. */
const bits = (a: string): string => a.split('.').map((o) => Number(o).toString(2).padStart(8, '0')).join('');
const dotted = (hex: string): string => [0, 2, 4, 6].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.');
const inCidr = (a: string, cidr: string): boolean => {
  const [base, len] = cidr.split('/');
  return bits(a).slice(0, Number(len)) === bits(base).slice(0, Number(len));
};
const bcastOf = (cidr: string): string => {
  const [base, len] = cidr.split('/');
  const b = bits(base).slice(0, Number(len)).padEnd(32, '1');
  return [0, 8, 16, 24].map((i) => parseInt(b.slice(i, i + 8), 2)).join('.');
};
const isGroupAddr = (a: string): boolean => a === '255.255.255.255' || bits(a).startsWith('1110');

interface Parsed { kind: 'malformed' | 'other' | 'ip' | 'arp'; dmac: string; smac: string; src: string; dst: string; sha: string }

function refParse(hex: string): Parsed {
  const n = hex.length / 2;
  const p: Parsed = { kind: 'other', dmac: hex.slice(0, 12), smac: hex.slice(12, 24), src: '', dst: '', sha: '' };
  if (n < 14) return { ...p, kind: 'malformed' };
  const type = hex.slice(24, 28);
  if (type === '0800') {
    if (n < 34 || hex[28] !== '4' || parseInt(hex[29], 16) < 5) return { ...p, kind: 'malformed' };
    return { ...p, kind: 'ip', src: dotted(hex.slice(52, 60)), dst: dotted(hex.slice(60, 68)) };
  }
  if (type === '0806') {
    if (n < 42 || hex.slice(28, 40) !== '000108000604') return { ...p, kind: 'malformed' };
    return { ...p, kind: 'arp', sha: hex.slice(44, 56), src: dotted(hex.slice(56, 64)), dst: dotted(hex.slice(76, 84)) };
  }
  return p;
}

const macHex = (m: string): string => m.replaceAll(':', '').toLowerCase();

function refCaptured(table: PolicyEndpoint[], hex: string): string | undefined {
  const f = refParse(hex);
  if (f.kind === 'malformed') return 'malformed';
  if (f.kind === 'other') return 'isolation';
  if (f.kind === 'arp' && f.sha !== f.smac) return 'spoof';
  if (f.kind === 'arp' && f.src === '0.0.0.0') {
    const mine = table.filter((e) => macHex(e.mac) === f.smac);
    if (!mine.length) return 'spoof';
    return mine.some((e) => e.cidrs.some((c) => inCidr(f.dst, c))) ? undefined : 'isolation';
  }
  const owners = table.flatMap((e) => e.cidrs.filter((c) => c.split('/')[0] === f.src).map((c) => ({ e, c })));
  const legit = owners.filter((o) => macHex(o.e.mac) === f.smac);
  if (!legit.length) return 'spoof';
  return legit.some((o) => inCidr(f.dst, o.c) || (f.kind === 'ip' && isGroupAddr(f.dst))) ? undefined : 'isolation';
}

function refDelivered(table: PolicyEndpoint[], hex: string): string | undefined {
  const f = refParse(hex);
  if (f.kind === 'malformed') return 'malformed';
  if (f.kind === 'other') return 'isolation';
  const key = f.kind === 'arp' && f.src === '0.0.0.0' ? f.dst : f.src;
  const ip = f.kind === 'ip';
  if (parseInt(f.dmac.slice(0, 2), 16) % 2 === 1) {
    return table.some((e) => e.cidrs.some((c) => inCidr(key, c) && (inCidr(f.dst, c) || (ip && isGroupAddr(f.dst))))) ? undefined : 'isolation';
  }
  const mine = table.filter((e) => macHex(e.mac) === f.dmac);
  if (!mine.length) return 'not-local';
  return mine.some((e) => e.cidrs.some((c) => inCidr(key, c) && (f.dst === c.split('/')[0] || (ip && (f.dst === bcastOf(c) || isGroupAddr(f.dst)))))) ? undefined : 'isolation';
}

describe('property: SubnetPolicy agrees with a string-math reference', () => {
  test('random tables × random frames (seeded)', () => {
    const rnd = mulberry32(0x5eed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
    const int = (n: number): number => Math.floor(rnd() * n);
    const randIp = (): string => [int(256), int(256), int(256), int(256)].join('.');
    const randMac = (): string => Array.from({ length: 6 }, () => int(256).toString(16).padStart(2, '0')).join(':');
    const subnets = ['10.32.1.0/24', '10.32.2.0/24', '10.32.0.0/16', '10.32.1.0/30', '192.168.200.0/24', '10.40.0.0/12', '172.16.5.4/31', '10.32.3.3/32'];
    const inSubnet = (s: string): string => {
      const [base, len] = s.split('/');
      const b = bits(base).slice(0, Number(len)) + Array.from({ length: 32 - Number(len) }, () => (rnd() < 0.5 ? '0' : '1')).join('');
      return [0, 8, 16, 24].map((i) => parseInt(b.slice(i, i + 8), 2)).join('.');
    };
    const outcomes: Record<string, number> = {};
    let frames = 0;
    for (let t = 0; t < 300; t++) {
      const macs = Array.from({ length: 1 + int(5) }, randMac);
      const table: PolicyEndpoint[] = Array.from({ length: int(6) }, (_, i) => ({
        id: `e${i}`,
        mac: rnd() < 0.1 ? macs[0] : pick(macs),
        cidrs: Array.from({ length: 1 + int(3) }, () => {
          const s = pick(subnets);
          return `${inSubnet(s)}/${s.split('/')[1]}`;
        }),
      }));
      // Sometimes two endpoints share an address.
      if (table.length > 1 && rnd() < 0.2) table[1].cidrs.push(table[0].cidrs[0]);
      const p = new SubnetPolicy(table);
      const addrs = table.flatMap((e) => e.cidrs.map((c) => c.split('/')[0]));
      const ipPool = (): string => {
        const r = rnd();
        if (r < 0.35 && addrs.length) return pick(addrs);
        if (r < 0.7) return inSubnet(pick(subnets));
        if (r < 0.75) return '255.255.255.255';
        if (r < 0.8) return `${224 + int(16)}.0.0.${int(256)}`;
        if (r < 0.85) return '0.0.0.0';
        if (r < 0.9 && table.length) return bcastOf(pick(pick(table).cidrs));
        return randIp();
      };
      const macPool = (): string => {
        const r = rnd();
        if (r < 0.6 && table.length) return pick(table).mac;
        if (r < 0.75) return BCAST;
        if (r < 0.8) return '01:00:5e:00:00:01';
        return randMac();
      };
      for (let k = 0; k < 120; k++) {
        const smac = macPool();
        const dmac = macPool();
        const r = rnd();
        let f: Buffer;
        if (r < 0.45) {
          f = eth(dmac, smac, 0x0800, ipv4(ipPool(), ipPool(), { vihl: rnd() < 0.05 ? int(256) : 0x45 }));
        } else if (r < 0.9) {
          const shape = rnd() < 0.05 ? [0, int(3), 8, int(2), 6 + int(2), 4] : [0, 1, 8, 0, 6, 4];
          f = eth(dmac, smac, 0x0806, arp(1 + int(2), rnd() < 0.9 ? smac : macPool(), ipPool(), macPool(), ipPool(), shape));
        } else {
          f = eth(dmac, smac, pick([0x86dd, 0x8100, int(65536)]), Buffer.alloc(int(60)));
        }
        if (rnd() < 0.08) f = f.subarray(0, int(f.length + 1));
        // Place the frame inside a slab with garbage around it, as the TAP batch does.
        const pre = int(9);
        const slab = Buffer.concat([Buffer.alloc(pre, int(256)), f, Buffer.alloc(int(9), int(256))]);
        const hex = f.toString('hex');
        const gotC = p.checkCaptured(slab, pre, pre + f.length);
        const gotD = p.checkDelivered(slab, pre, pre + f.length);
        const wantC = refCaptured(table, hex);
        const wantD = refDelivered(table, hex);
        if (gotC !== wantC || gotD !== wantD) {
          assert.fail(`table ${JSON.stringify(table)}\nframe ${hex}\ncaptured: got ${gotC} want ${wantC}; delivered: got ${gotD} want ${wantD}`);
        }
        outcomes[`c:${gotC}`] = (outcomes[`c:${gotC}`] ?? 0) + 1;
        outcomes[`d:${gotD}`] = (outcomes[`d:${gotD}`] ?? 0) + 1;
        frames++;
      }
    }
    // The generator must reach every outcome, or the comparison proves little.
    for (const k of ['c:undefined', 'c:spoof', 'c:isolation', 'c:malformed', 'd:undefined', 'd:isolation', 'd:not-local', 'd:malformed']) {
      assert.ok((outcomes[k] ?? 0) > 50, `outcome ${k} seen only ${outcomes[k] ?? 0} times in ${frames}`);
    }
  });

  test('random bytes and random ranges never throw', () => {
    const rnd = mulberry32(42);
    const p = new SubnetPolicy([A, B, D, H]);
    const reasons = new Set([undefined, 'spoof', 'isolation', 'malformed', 'not-local']);
    for (let i = 0; i < 20_000; i++) {
      const buf = Buffer.alloc(Math.floor(rnd() * 80));
      for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(rnd() * 256);
      // Bias towards the two EtherTypes we parse.
      if (buf.length > 13 && rnd() < 0.6) buf.writeUInt16BE(rnd() < 0.5 ? 0x0800 : 0x0806, 12);
      const s = Math.floor(rnd() * (buf.length + 2)) - 1;
      const e = s + Math.floor(rnd() * (buf.length + 2));
      assert.ok(reasons.has(p.checkCaptured(buf, s, e)));
      assert.ok(reasons.has(p.checkDelivered(buf, s, e)));
    }
  });
});

describe('per-frame cost', () => {
  test('a million checks take well under a few seconds (no per-frame allocation)', () => {
    const eps: PolicyEndpoint[] = Array.from({ length: 200 }, (_, i) => ({ id: `e${i}`, mac: `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, cidrs: [`10.32.${i % 4}.${i + 2 > 254 ? 254 : i + 2}/24`] }));
    const p = new SubnetPolicy(eps);
    const f = ipFrame('02:00:00:00:00:05', '02:00:00:00:00:04', '10.32.0.6', '10.32.0.9');
    const g = ipFrame('02:00:00:00:00:04', REMOTE, '10.32.0.9', '10.32.0.6');
    assert.equal(p.checkCaptured(f, 0, f.length), undefined);
    assert.equal(p.checkDelivered(g, 0, g.length), undefined);
    global.gc?.();
    const heap0 = process.memoryUsage().heapUsed;
    const t0 = process.hrtime.bigint();
    let drops = 0;
    for (let i = 0; i < 1_000_000; i++) {
      if (p.checkCaptured(f, 0, f.length) !== undefined) drops++;
      if (p.checkDelivered(g, 0, g.length) !== undefined) drops++;
    }
    const ns = Number(process.hrtime.bigint() - t0) / 2e6;
    const grew = process.memoryUsage().heapUsed - heap0;
    console.log(`subnet policy: ${ns.toFixed(1)} ns per check, heap grew ${(grew / 1024).toFixed(0)} KiB over 2M checks`);
    assert.equal(drops, 0);
    assert.ok(ns < 2000, `${ns} ns per check`);
  });
});

// ---------- the bridge rules renderer (pure part of bridge-filter.ts) ----------

describe('bridge-filter renderRuleset', () => {
  test('splitCidr gives the address and its network', () => {
    assert.deepEqual(splitCidr('10.32.1.5/24'), { addr: '10.32.1.5', subnet: '10.32.1.0/24' });
    assert.deepEqual(splitCidr('10.47.255.1/12'), { addr: '10.47.255.1', subnet: '10.32.0.0/12' });
    assert.deepEqual(splitCidr('192.168.1.77/32'), { addr: '192.168.1.77', subnet: '192.168.1.77/32' });
    assert.deepEqual(splitCidr('200.1.1.1/0'), { addr: '200.1.1.1', subnet: '0.0.0.0/0' });
    assert.equal(splitCidr('10.32.1.5'), undefined);
    assert.equal(splitCidr('10.32.1.500/24'), undefined);
  });
  test('one ingress and one egress chain per port, host chain from exposed subnets, catch-alls', () => {
    const { script, skipped } = renderRuleset([
      { port: 'vethwepl1111111', mac: '02:00:00:00:00:0A', cidrs: ['10.32.1.5/24', '10.32.2.5/24'] },
      { port: 'vethwepl2222222', mac: '02:00:00:00:00:0b', cidrs: ['10.32.2.6/24'] },
    ], ['10.32.1.100/24'], 'weave');
    assert.deepEqual(skipped, []);
    assert.match(script, /^table bridge tsweave\ndelete table bridge tsweave\ntable ip tsweave\ndelete table ip tsweave\ntable arp tsweave\ndelete table arp tsweave\ntable ip6 tsweave\ndelete table ip6 tsweave\ntable bridge tsweave \{\n {2}counter spoof \{ \}\n {2}counter isolation \{ \}\n/);
    const body = (name: string, from = 0): string => {
      const i = script.indexOf(`  chain ${name} {\n`, from);
      assert.ok(i >= 0, `chain ${name} present`);
      return script.slice(i, script.indexOf('\n  }\n', i));
    };
    assert.match(body('in_vethwepl1111111'), /ether saddr != 02:00:00:00:00:0a counter name "spoof" drop comment "spoof"/, 'MAC lower-cased');
    assert.match(body('in_vethwepl1111111'), /ip saddr != \{ 10\.32\.1\.5, 10\.32\.2\.5 \} counter name "spoof" drop comment "spoof"/);
    assert.match(body('in_vethwepl1111111'), /arp saddr ip != \{ 0\.0\.0\.0, 10\.32\.1\.5, 10\.32\.2\.5 \} counter name "spoof" drop comment "spoof"/);
    assert.match(body('in_vethwepl1111111'), /counter name "isolation" drop comment "isolation"$/, 'other EtherTypes last');
    // Egress: one set of rules per subnet, source and destination in the same subnet.
    assert.match(body('out_vethwepl1111111'), /ip saddr 10\.32\.1\.0\/24 ip daddr 10\.32\.1\.0\/24 accept/);
    assert.match(body('out_vethwepl1111111'), /ip saddr 10\.32\.2\.0\/24 ip daddr 10\.32\.2\.0\/24 accept/);
    assert.doesNotMatch(body('out_vethwepl1111111'), /ip saddr 10\.32\.1\.0\/24 ip daddr 10\.32\.2/);
    assert.match(body('out_vethwepl1111111'), /ip saddr 10\.32\.2\.0\/24 ip daddr 255\.255\.255\.255 accept\n {4}ip saddr 10\.32\.2\.0\/24 ip daddr 224\.0\.0\.0\/4 accept/);
    assert.match(body('out_vethwepl2222222'), /arp saddr ip 10\.32\.2\.0\/24 arp daddr ip 10\.32\.2\.0\/24 accept/);
    assert.match(body('out_vethwepl2222222'), /arp saddr ip 0\.0\.0\.0 arp daddr ip 10\.32\.2\.0\/24 accept/);
    assert.doesNotMatch(body('out_vethwepl2222222'), /10\.32\.1\./);
    assert.match(body('out_vethwepl2222222'), /counter name "isolation" drop comment "isolation"$/);
    // Ports reach their chains through the named maps.
    assert.match(script, /map in_ports \{\n {4}type ifname : verdict\n {4}elements = \{ "vethwepl1111111" : jump in_vethwepl1111111, "vethwepl2222222" : jump in_vethwepl2222222 \}/);
    assert.match(script, /map out_ports \{\n {4}type ifname : verdict\n {4}elements = \{ "vethwepl1111111" : jump out_vethwepl1111111, "vethwepl2222222" : jump out_vethwepl2222222 \}/);
    assert.match(script, /iifname vmap @in_ports\n {4}iifname "vethwepl\*" counter drop comment "spoof"/);
    assert.equal(script.match(/oifname vmap @out_ports\n {4}oifname "vethwepl\*" counter drop comment "isolation"/g)?.length, 2, 'forward and output');
    // Host input: ip and arp tables hooked on the bridge device, exposed subnet only.
    const ipTable = script.indexOf('table ip tsweave {');
    const arpTable = script.indexOf('table arp tsweave {');
    assert.ok(ipTable > 0 && arpTable > ipTable);
    assert.match(body('host_in', ipTable), /^[^]*ip saddr 10\.32\.1\.0\/24 ip daddr 10\.32\.1\.0\/24 accept[^]*counter drop comment "isolation"$/);
    assert.doesNotMatch(body('host_in', ipTable), /10\.32\.2\.|arp /);
    assert.match(body('host_in', arpTable), /arp saddr ip 10\.32\.1\.0\/24 arp daddr ip 10\.32\.1\.0\/24 accept/);
    assert.doesNotMatch(body('host_in', arpTable), /10\.32\.2\.|\n\s*ip /);
    assert.equal(script.match(/iifname "weave" jump host_in/g)?.length, 2);
    assert.doesNotMatch(script.slice(0, ipTable), /host_in|hook input/, 'nothing on the bridge family input hook');
    // Braces balance (a cheap syntax sanity check; the e2e test feeds it to nft).
    assert.equal(script.split('{').length, script.split('}').length);
  });
  test('no endpoints and nothing exposed: only catch-alls, and host chains that drop', async () => {
    const { script } = renderRuleset([], [], 'weave');
    assert.doesNotMatch(script, /elements|chain (in|out)_/);
    // The maps exist, empty, so ports can be added to them later (renderPortDelta).
    assert.match(script, /map in_ports \{\n {4}type ifname : verdict\n {2}\}/);
    assert.equal(script.match(/chain host_in \{\n\s*#[^\n]*\n\s*counter drop comment "isolation"\n\s*\}/g)?.length, 2);
  });
  test('entries that are unsafe in a script are skipped and named, never interpolated', () => {
    const { script, skipped } = renderRuleset([
      { port: 'veth"; flush ruleset', mac: '02:00:00:00:00:01', cidrs: ['10.32.1.5/24'] },
      { port: 'vethwepl3333333', mac: '02:00:00:00:00:01; drop', cidrs: ['10.32.1.5/24'] },
      { port: 'vethwepl4444444', mac: '02:00:00:00:00:04', cidrs: ['10.32.1.5/24 accept'] },
      { port: 'vethwepl5555555', mac: '02:00:00:00:00:05', cidrs: [] },
      { port: 'vethwepl6666666', mac: '02:00:00:00:00:06', cidrs: ['10.32.1.6/24'] },
      { port: 'vethwepl6666666', mac: '02:00:00:00:00:07', cidrs: ['10.32.1.7/24'] },
    ], ['bad'], 'weave');
    assert.equal(skipped.length, 6);
    assert.doesNotMatch(script, /flush|; drop|accept"|02:00:00:00:00:07/);
    assert.match(script, /vethwepl6666666/);
    assert.throws(() => renderRuleset([], [], 'weave"x'), /bad bridge name/);
  });
  test('sumCounters adds packets per rule comment from nft -j output', () => {
    const json = JSON.stringify({ nftables: [
      { metainfo: { version: '1.0.6' } },
      { table: { family: 'bridge', name: 'tsweave' } },
      { rule: { comment: 'spoof', expr: [{ match: {} }, { counter: { packets: 3, bytes: 180 } }, { drop: null }] } },
      { rule: { comment: 'spoof', expr: [{ counter: { packets: 4, bytes: 240 } }, { drop: null }] } },
      { rule: { comment: 'isolation', expr: [{ counter: { packets: 5, bytes: 300 } }] } },
      { rule: { expr: [{ counter: { packets: 100, bytes: 1 } }] } },
    ] });
    assert.deepEqual(sumCounters(json), { spoof: 7, isolation: 5 });
    assert.throws(() => sumCounters('nope'), /not JSON/);
  });
  test('sumCounters adds named counter objects by name, and not the rules that count into them', () => {
    const json = JSON.stringify({ nftables: [
      { counter: { family: 'bridge', name: 'spoof', table: 'tsweave', packets: 9, bytes: 540 } },
      { counter: { family: 'bridge', name: 'isolation', table: 'tsweave', packets: 2, bytes: 120 } },
      { rule: { comment: 'spoof', expr: [{ match: {} }, { counter: 'spoof' }, { drop: null }] } },
      { rule: { comment: 'isolation', expr: [{ counter: { packets: 1, bytes: 60 } }, { drop: null }] } },
    ] });
    assert.deepEqual(sumCounters(json), { spoof: 9, isolation: 3 });
  });
  test('chainId keeps port names apart: letters and digits as they are, the rest escaped', () => {
    assert.equal(chainId('vethwepl1a2b3c4'), 'vethwepl1a2b3c4');
    assert.equal(chainId('veth.x-y_z'), 'veth_2ex_2dy_5fz');
    assert.notEqual(chainId('a_2e'), chainId('a.'));
  });
  test('renderPortDelta changes only the ports that came, went or changed', () => {
    const p1 = { port: 'vethwepl1111111', mac: '02:00:00:00:00:01', cidrs: ['10.32.1.5/24'] };
    const p2 = { port: 'vethwepl2222222', mac: '02:00:00:00:00:02', cidrs: ['10.32.1.6/24'] };
    const p3 = { port: 'vethwepl3333333', mac: '02:00:00:00:00:03', cidrs: ['10.32.2.7/24'] };
    const { ports } = renderRuleset([p1, p2], [], 'weave');
    const prev = new Map(ports.map((p) => [p.port, p.key]));
    assert.equal(renderPortDelta(prev, usablePorts([p1, p2]).usable), '', 'nothing changed: nothing to do');
    // p1 goes, p2 gets another address, p3 comes.
    const d = renderPortDelta(prev, usablePorts([{ ...p2, cidrs: ['10.32.1.9/24'] }, p3]).usable);
    const lines = d.trim().split('\n');
    assert.deepEqual(lines.slice(0, 6), [
      'delete element bridge tsweave in_ports { "vethwepl1111111" }',
      'delete element bridge tsweave out_ports { "vethwepl1111111" }',
      'flush chain bridge tsweave in_vethwepl1111111',
      'delete chain bridge tsweave in_vethwepl1111111',
      'flush chain bridge tsweave out_vethwepl1111111',
      'delete chain bridge tsweave out_vethwepl1111111',
    ]);
    for (const [port, ip] of [['vethwepl2222222', '10\\.32\\.1\\.9'], ['vethwepl3333333', '10\\.32\\.2\\.7']]) {
      // The chains are emptied before they are filled, so a changed port keeps no old rule.
      assert.match(d, new RegExp(`add chain bridge tsweave in_${port}\nflush chain bridge tsweave in_${port}\nadd chain bridge tsweave out_${port}\nflush chain bridge tsweave out_${port}\ntable bridge tsweave \\{\n  chain in_${port} \\{`));
      assert.match(d, new RegExp(`ip saddr != \\{ ${ip} \\} counter name "spoof" drop comment "spoof"`));
      assert.match(d, new RegExp(`add element bridge tsweave in_ports \\{ "${port}" : jump in_${port} \\}\nadd element bridge tsweave out_ports \\{ "${port}" : jump out_${port} \\}`));
    }
    assert.doesNotMatch(d, /10\.32\.1\.6|delete table|hook/, 'the old address and the rest of the ruleset untouched');
    assert.equal(d.split('{').length, d.split('}').length);
    // Unsafe entries never reach a delta either.
    assert.equal(renderPortDelta(new Map(), usablePorts([{ port: 'x"; flush ruleset', mac: '02:00:00:00:00:01', cidrs: ['10.32.1.5/24'] }]).usable), '');
  });
});

test('tablesIn: a no-op sync notices our tables were deleted behind our back (all four families needed)', () => {
  const all = 'table bridge tsweave\ntable ip tsweave\ntable arp tsweave\ntable ip6 tsweave\ntable inet other\n';
  assert.equal(tablesIn(all), true);
  assert.equal(tablesIn(all.replace('table ip6 tsweave\n', '')), false);
  assert.equal(tablesIn('table bridge tsweave2\ntable ip tsweave\ntable arp tsweave\ntable ip6 tsweave\n'), false);
  assert.equal(tablesIn(''), false);
});
