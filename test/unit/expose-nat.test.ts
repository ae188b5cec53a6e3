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
