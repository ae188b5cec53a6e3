import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import {
  parseIpv6, formatIpv6, parseRange6, derive6, derive6Cidr, linkLocal6Cidr, subnet6, endpointAddrs6, v4OfDerived,
  specToV4, ip6ArpaName, addressOfIp6Arpa, Ipv6Error,
} from '../../ipam/ipv6.js';
import { parseSpecs, EndpointError } from '../../router/host/endpoints.js';

/** The WHATWG URL parser's IPv6 serialisation (RFC 5952 compression): an independent oracle. */
const whatwg = (s: string): string => new URL(`http://[${s}]/`).hostname.slice(1, -1);

describe('IPv6 text (RFC 4291 in, RFC 5952 out)', () => {
  test('known forms', () => {
    const cases: Array<[string, string]> = [
      ['::', '::'], ['::1', '::1'], ['1::', '1::'], ['fd00:77::a20:105', 'fd00:77::a20:105'],
      ['FD00:0077:0000:0000:0000:0000:0A20:0105', 'fd00:77::a20:105'], ['fe80::10.32.1.5', 'fe80::a20:105'],
      ['::ffff:1.2.3.4', '::ffff:102:304'], ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
      ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'], ['1:0:3:4:5:6:7:8', '1:0:3:4:5:6:7:8'], ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
    ];
    for (const [i, o] of cases) assert.equal(formatIpv6(parseIpv6(i)!), o, i);
  });

  test('malformed text is undefined', () => {
    for (const s of ['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '12345::', 'g::', '1.2.3.4', '::1.2.3', '::1.2.3.256',
      'fe80::1%eth0', '::/64', ' ::1', ':1::', '1:2:3:4:5:6:7::8', 'x'.repeat(46)]) {
      assert.equal(parseIpv6(s), undefined, JSON.stringify(s));
    }
  });

  test('random addresses: format agrees with WHATWG URL and parse inverts it', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 8 }), (b, at, zeros) => {
      const bytes = Buffer.from(b);
      bytes.fill(0, 2 * at, Math.min(16, 2 * (at + zeros)));
      const s = formatIpv6(bytes);
      assert.equal(s, whatwg(s));
      assert.ok(net.isIPv6(s));
      assert.deepEqual(parseIpv6(s), bytes);
    }), { numRuns: 500 });
  });
});

describe('--ipalloc-range6', () => {
  test('a ULA /64 and /96 are accepted and normalised', () => {
    assert.deepEqual({ ...parseRange6('fd00:77::/64'), bytes: undefined }, { prefix: 'fd00:77::/64', len: 64, bytes: undefined });
    assert.equal(parseRange6('FD00:0077:0:0:1:2::/96').prefix, 'fd00:77::1:2:0:0/96');
    assert.equal(parseRange6('2001:db8::/48').prefix, '2001:db8::/48');
  });

  test('refused with one line: not a prefix, too long/short, host bits, multicast, link-local, ::/8', () => {
    for (const [s, re] of [
      ['fd00:77::', /want an IPv6 prefix/], ['10.0.0.0/8', /want an IPv6 prefix/], ['fd00::/97', /1\.\.96|8\.\.96/], ['fd00::/4', /8\.\.96/],
      ['fd00::1/64', /bits are set past \/64/], ['ff02::/16', /not a unicast/], ['fe80::/64', /not a unicast/], ['::ffff:0:0/96', /not a unicast/],
    ] as const) {
      assert.throws(() => parseRange6(s), (e: Error) => e instanceof Ipv6Error && re.test(e.message) && !e.message.includes('\n'), s);
    }
  });
});

describe('derivation (range6 prefix + IPv4 in the low 32 bits)', () => {
  const r = parseRange6('fd00:77::/64');
  test('global, link-local, subnet', () => {
    assert.equal(derive6(r, '10.32.1.5'), 'fd00:77::a20:105');
    assert.equal(derive6Cidr(r, '10.32.1.5/24'), 'fd00:77::a20:105/120');
    assert.equal(derive6Cidr(r, '10.32.0.1/12'), 'fd00:77::a20:1/108');
    assert.equal(linkLocal6Cidr('10.32.1.5/24'), 'fe80::a20:105/64');
    assert.equal(subnet6(r, '10.32.1.0/24'), 'fd00:77::a20:100/120');
    assert.equal(subnet6(r, '10.32.1.77/24'), 'fd00:77::a20:100/120', 'network bits only');
    assert.equal(derive6Cidr(parseRange6('fd00:1:2:3:4:5::/96'), '192.168.0.1/16'), 'fd00:1:2:3:4:5:c0a8:1/112');
    assert.deepEqual(endpointAddrs6(r, ['10.32.1.5/24', '10.40.0.9/16']), {
      global: ['fd00:77::a20:105/120', 'fd00:77::a28:9/112'], linkLocal: ['fe80::a20:105/64', 'fe80::a28:9/64'],
    });
  });

  test('distinct IPv4 addresses give distinct IPv6 addresses, and v4OfDerived inverts both forms', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (a, b) => {
      const s = (n: number): string => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
      assert.equal(derive6(r, s(a)) === derive6(r, s(b)), a === b);
      assert.equal(v4OfDerived(r, derive6(r, s(a))), s(a));
      assert.equal(v4OfDerived(r, linkLocal6Cidr(`${s(a)}/32`).split('/')[0]), s(a));
    }), { numRuns: 300 });
  });

  test('addresses outside the range or with bits between the prefix and the IPv4 part are not derived', () => {
    assert.equal(v4OfDerived(r, 'fd00:78::a20:105'), undefined);
    assert.equal(v4OfDerived(r, 'fd00:77::1:a20:105'), undefined);
    assert.equal(v4OfDerived(r, 'fe80::200:ff:fe00:1'), undefined, 'an EUI-64 link-local');
    assert.equal(v4OfDerived(undefined, 'fd00:77::a20:105'), undefined);
    assert.equal(v4OfDerived(undefined, 'fe80::a20:105'), '10.32.1.5');
  });
});

describe('IPv6 address specs (WEAVE_CIDR, attach)', () => {
  const r = parseRange6('fd00:77::/64');
  test('derived forms map to their IPv4 spec', () => {
    assert.equal(specToV4(r, 'ip:fd00:77::a20:105/120'), 'ip:10.32.1.5/24');
    assert.equal(specToV4(r, 'net:fd00:77::a20:100/120'), 'net:10.32.1.0/24');
    assert.equal(specToV4(r, 'fd00:77::10.32.1.5/120'), '10.32.1.5/24');
    assert.equal(specToV4(r, 'ip:10.32.1.5/24'), 'ip:10.32.1.5/24', 'IPv4 unchanged');
    assert.equal(specToV4(undefined, 'net:default'), 'net:default');
    assert.deepEqual(parseSpecs(['net:fd00:77::a20:100/120', 'ip:fd00:77::a20:205/120'], r), [{ kind: 'net', cidr: '10.32.1.0/24' }, { kind: 'ip', cidr: '10.32.2.5/24' }]);
  });

  test('anything else is one line', () => {
    for (const [s, rr, re] of [
      ['ip:fd00:77::a20:105/120', undefined, /needs the router launched with --ipalloc-range6/],
      ['ip:fd00:77::a20:105', r, /needs a prefix length/],
      ['ip:fd00:78::a20:105/120', r, /not of the form fd00:77::<IPv4>/],
      ['ip:fd00:77::1:a20:105/120', r, /not of the form/],
      ['ip:fe80::a20:105/64', r, /not of the form/],
      ['net:fd00:77::/64', r, /not of the form/],
    ] as const) {
      assert.throws(() => specToV4(rr, s), (e: Error) => e instanceof Ipv6Error && re.test(e.message) && !e.message.includes('\n'), s);
    }
    assert.throws(() => parseSpecs(['ip:fd00:78::1/120'], r), EndpointError);
  });
});

describe('ip6.arpa (RFC 3596 §2.5)', () => {
  test('name and back', () => {
    assert.equal(ip6ArpaName('fd00:77::a20:105'), '5.0.1.0.0.2.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.0.0.0.0.d.f.ip6.arpa.');
    assert.equal(addressOfIp6Arpa('5.0.1.0.0.2.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.0.0.0.0.d.f.ip6.arpa'), 'fd00:77::a20:105');
    assert.equal(addressOfIp6Arpa('5.0.1.0.0.2.A.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.0.0.0.0.D.F.IP6.ARPA.'), 'fd00:77::a20:105');
    assert.equal(addressOfIp6Arpa('0.1.0.0.2.a.0.ip6.arpa.'), undefined, 'not 32 nibbles');
    assert.equal(addressOfIp6Arpa('5.0.1.0.0.2.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.0.0.0.0.d.g.ip6.arpa.'), undefined);
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
      const a = formatIpv6(b);
      assert.equal(addressOfIp6Arpa(ip6ArpaName(a)!), a);
    }), { numRuns: 200 });
  });
});
