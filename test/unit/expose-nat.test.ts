/** Expose NAT rendering (router/nat/expose-nat.ts) and what reset would abandon (router/daemon/reset-check.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderNat, masqueradedSubnets, subnetOf, NAT_TABLE } from '../../router/nat/expose-nat.js';
import { resetCheck } from '../../router/daemon/reset-check.js';
import type { Report } from '../../router/api/report.js';

test('subnetOf normalises an exposed address to its subnet; refuses garbage', () => {
  assert.equal(subnetOf('10.32.0.1/12'), '10.32.0.0/12');
  assert.equal(subnetOf('10.32.5.77/24'), '10.32.5.0/24');
  assert.throws(() => subnetOf('10.32.0.1'));
  assert.throws(() => subnetOf('10.32.0.1/12; flush ruleset'));
});

test('renderNat: the WEAVE chain with three rules per subnet, in our own table only', () => {
  const s = renderNat(['10.32.0.1/12', '10.32.0.9/12', '10.40.5.1/24'], 'weave');
  const lines = s.trim().split('\n');
  assert.deepEqual(lines.slice(0, 2), [`table ip ${NAT_TABLE} {}`, `delete table ip ${NAT_TABLE}`]);
  assert.match(s, /type nat hook postrouting priority srcnat; policy accept;/);
  assert.equal(lines.filter((l) => l.includes('masquerade')).length, 4, 'two subnets (duplicates merged), two masquerades each');
  assert.match(s, /ip saddr != 10\.32\.0\.0\/12 ip daddr 10\.32\.0\.0\/12 oifname "weave" masquerade /);
  assert.match(s, /ip saddr 10\.32\.0\.0\/12 ip daddr != 10\.32\.0\.0\/12 oifname != "weave" masquerade fully-random /);
  assert.match(s, /ip saddr 10\.40\.5\.0\/24 ip daddr 224\.0\.0\.0\/4 return/);
  assert.doesNotMatch(s, /flush ruleset|table ip tsweave \{|table ip nat/);
  assert.deepEqual(renderNat([], 'weave').trim().split('\n'), [`table ip ${NAT_TABLE} {}`, `delete table ip ${NAT_TABLE}`]);
  assert.throws(() => renderNat([], 'we ave"'));
});

test('masqueradedSubnets leaves out --no-masq subnets', () => {
  assert.deepEqual(masqueradedSubnets(['10.32.0.1/12', '10.40.5.1/24'], ['10.40.5.0/24']), ['10.32.0.0/12']);
  assert.deepEqual(masqueradedSubnets([], ['10.40.5.0/24']), []);
});

const report = (owned: number, established: boolean): Report => ({
  Version: 'x',
  Router: { Name: 'aa:bb:cc:dd:ee:ff', NickName: 'h1', Connections: established ? [{ State: 'established' }] : [{ State: 'retrying' }] },
  IPAM: { Range: '10.32.0.0/12', Owned: [{ Peer: 'aa:bb:cc:dd:ee:ff', Addresses: owned }] },
  Endpoints: [],
} as unknown as Report);

test('resetCheck: only a peer that owns space and reaches nobody abandons it', () => {
  assert.deepEqual(resetCheck(report(0, false)), { peer: 'aa:bb:cc:dd:ee:ff' });
  assert.deepEqual(resetCheck(report(512, true)), { peer: 'aa:bb:cc:dd:ee:ff' });
  assert.equal(resetCheck(report(512, false)).abandons, '512 addresses of the IPAM range 10.32.0.0/12 owned by aa:bb:cc:dd:ee:ff(h1)');
});

test('[IPv6] renderNat with subnets6: the same rules for the IPv6 twins in ip6 tsweave-nat; IPv4-only output unchanged', async () => {
  const v4only = renderNat(['10.32.0.1/12'], 'weave');
  assert.doesNotMatch(v4only, /ip6/, 'without range6 no ip6 table is touched');
  const s = renderNat(['10.32.0.1/12'], 'weave', ['fd00:77:0:0::a20:0/108', 'fd00:77::a20:0/108']);
  assert.ok(s.startsWith(v4only.trim()), 'the IPv4 table first, as before');
  assert.match(s, new RegExp(`table ip6 ${NAT_TABLE} \\{\\}\\ndelete table ip6 ${NAT_TABLE}\\ntable ip6 ${NAT_TABLE} \\{`));
  assert.equal(s.split('\n').filter((l) => l.includes('ip6 saddr') && l.includes('masquerade')).length, 2, 'duplicates (two spellings) merged');
  assert.match(s, /ip6 saddr fd00:77::a20:0\/108 ip6 daddr ff00::\/8 return/);
  assert.match(s, /ip6 saddr != fd00:77::a20:0\/108 ip6 daddr fd00:77::a20:0\/108 oifname "weave" masquerade /);
  assert.match(s, /ip6 saddr fd00:77::a20:0\/108 ip6 daddr != fd00:77::a20:0\/108 oifname != "weave" masquerade fully-random /);
  // hide/reset with range6: both tables deleted, none defined.
  assert.deepEqual(renderNat([], 'weave', []).trim().split('\n'), [`table ip ${NAT_TABLE} {}`, `delete table ip ${NAT_TABLE}`, `table ip6 ${NAT_TABLE} {}`, `delete table ip6 ${NAT_TABLE}`]);
  assert.throws(() => renderNat([], 'weave', ['fd00::/64; flush ruleset']), /bad IPv6 subnet/);
  assert.throws(() => renderNat([], 'weave', ['10.0.0.0/8']), /bad IPv6 subnet/);
  const { exposedLine } = await import('../../cli/format.js');
  assert.equal(exposedLine({ cidrs: ['10.32.1.100/24'] }), '10.32.1.100', 'IPv4-only output unchanged');
  assert.equal(exposedLine({ cidrs: ['10.32.1.100/24', '10.40.0.1/24'], cidrs6: ['fd00:77::a20:164/120', 'fd00:77::a28:1/120'] }), '10.32.1.100 10.40.0.1 fd00:77::a20:164 fd00:77::a28:1');
  assert.equal(exposedLine({ cidrs: ['10.1.1.1/8\x1b[2J'], cidrs6: [3] }), '10.1.1.1');
  assert.equal(exposedLine({ cidrs: [] }), '');
});
