/**
 * --trusted-subnets matching (router/policy/cidr-match.ts): IPv4 and IPv6 CIDRs (issue
 * #21, peers on an IPv6 underlay), family mismatches never match, bad input is one line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContains, parseTrustedSubnets } from '../../router/policy/cidr-match.js';

test('IPv4 CIDRs match as before', () => {
  assert.equal(cidrContains('192.168.77.0/24', '192.168.77.2'), true);
  assert.equal(cidrContains('192.168.77.0/24', '192.168.78.2'), false);
  assert.equal(cidrContains('0.0.0.0/0', '8.8.8.8'), true);
  assert.equal(cidrContains('192.168.77.0/24', 'fd00::1'), false);
});

test('IPv6 CIDRs match on the prefix bits, including a partial byte; families never cross', () => {
  assert.equal(cidrContains('fd00:77::/64', 'fd00:77::2'), true);
  assert.equal(cidrContains('fd00:77::/64', 'fd00:77:0:1::2'), false);
  assert.equal(cidrContains('fd00:77::/63', 'fd00:77:0:1::2'), true);
  assert.equal(cidrContains('fd00:77::/63', 'fd00:77:0:2::2'), false);
  // /36: the ninth nibble is the boundary.
  assert.equal(cidrContains('2001:db8:1000::/36', '2001:db8:1fff::1'), true);
  assert.equal(cidrContains('2001:db8:1000::/36', '2001:db8:2000::1'), false);
  assert.equal(cidrContains('::/0', '2001:db8::1'), true);
  assert.equal(cidrContains('fd00:77::1/128', 'fd00:77::1'), true);
  assert.equal(cidrContains('fd00:77::1/128', 'fd00:77::2'), false);
  assert.equal(cidrContains('fd00:77::/64', '10.0.0.1'), false);
  assert.equal(cidrContains('fd00:77::/129', 'fd00:77::1'), false);
  assert.equal(cidrContains('fd00:zz::/64', 'fd00::1'), false);
});

test('parseTrustedSubnets takes IPv4 and IPv6, refuses bad entries with one line', () => {
  assert.deepEqual(parseTrustedSubnets(''), []);
  assert.deepEqual(parseTrustedSubnets('10.0.0.0/8, fd00:77::/64'), ['10.0.0.0/8', 'fd00:77::/64']);
  for (const bad of ['fd00:77::/129', 'fd00:77::', 'fd00:::1/64', '10.0.0.0/33', 'x/8', `${'a:'.repeat(40)}/64`]) {
    assert.throws(() => parseTrustedSubnets(bad), (e: Error) => /^(invalid CIDR|too many)/.test(e.message) && !e.message.includes('\n'), bad);
  }
  assert.throws(() => parseTrustedSubnets(Array(300).fill('10.0.0.0/8').join(',')), /too many trusted subnets \(300\)/);
});
