/**
 * weaveDNS's pure glue: settings from the launch configuration (dns/config.ts), the
 * bridge rules for the DNS address (router/policy/bridge-filter.ts `dns`), the proxy's
 * create rewrite and name choice (proxy/intercept.ts applyDns, dnsNameOf), subnet
 * membership for isolation, and the `status dns` table's escaping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dnsSettings, parseListenAddress, dnsBridgeAddress } from '../../dns/config.js';
import { renderRuleset } from '../../router/policy/bridge-filter.js';
import { applyDns, dnsNameOf, planCreate, planStart } from '../../proxy/intercept.js';
import { inSubnetOf } from '../../dns/subsystem.js';
import { formatDns, terminalSafe } from '../../dns/format.js';

test('settings: defaults, flags, bad values rejected with the flag named', () => {
  const d = dnsSettings({});
  assert.deepEqual(d, { enabled: true, address: '169.254.53.53', port: 53, domain: 'weave.local.', ttl: 1, isolation: true, onBridge: true });
  assert.equal(dnsSettings({ dns: false }).enabled, false);
  assert.deepEqual(parseListenAddress('127.0.0.1:5353'), { address: '127.0.0.1', port: 5353 });
  assert.throws(() => parseListenAddress('localhost:53'), /--dns-listen-address/);
  assert.throws(() => parseListenAddress('1.2.3.4:70000'), /--dns-listen-address/);
  assert.throws(() => dnsSettings({ dnsDomain: 'a..b' }), /--dns-domain/);
  assert.throws(() => dnsSettings({ dnsTtl: -1 }), /--dns-ttl/);
  assert.equal(dnsBridgeAddress({ dnsListenAddress: '127.0.0.1:53' }), undefined, 'not link-local: not on the bridge');
  assert.equal(dnsBridgeAddress({ dns: false }), undefined);
});

test('bridge rules: DNS port open on the DNS address from local ports only; nothing without dns', () => {
  const ports = [{ port: 'vethwepl1234567', mac: '02:00:00:00:00:01', cidrs: ['10.32.0.5/12'] }];
  const without = renderRuleset(ports, [], 'weave').script;
  assert.doesNotMatch(without, /169\.254\.53\.53/);
  const { script } = renderRuleset(ports, [], 'weave', { address: '169.254.53.53', port: 53 });
  for (const rule of [
    'iifname "weave" ip daddr 169.254.53.53 udp dport 53 accept',
    'iifname "weave" ip daddr 169.254.53.53 tcp dport 53 accept',
    'iifname "weave" arp daddr ip 169.254.53.53 accept',
    'ip saddr 169.254.53.53 udp sport 53 accept',
    'arp saddr ip 169.254.53.53 arp operation reply accept',
    'ether daddr != ff:ff:ff:ff:ff:ff arp saddr ip 169.254.53.53 arp operation request accept',
    'iifname != "vethwepl*" ip daddr 169.254.53.53 counter drop comment "isolation"',
  ]) assert.ok(script.includes(rule), rule);
  // Answers are allowed only in the output hook (the host's own frames), not in forward.
  const forward = script.split('chain forward {')[1].split('}')[0];
  assert.doesNotMatch(forward, /169\.254/);
  assert.throws(() => renderRuleset(ports, [], 'weave', { address: '1.2.3.4; flush ruleset', port: 53 }), /bad DNS address/);
});

test('proxy: Dns/DnsSearch unless set; hostname from --name unless -h; names within the domain only', () => {
  const dns = { server: '169.254.53.53', domain: 'weave.local.' };
  const out = applyDns({ Image: 'x', HostConfig: { Binds: [] } }, 'db', dns);
  assert.deepEqual((out.HostConfig as Record<string, unknown>).Dns, ['169.254.53.53']);
  assert.deepEqual((out.HostConfig as Record<string, unknown>).DnsSearch, ['weave.local.']);
  assert.equal(out.Hostname, 'db');
  assert.equal(out.Domainname, 'weave.local');
  const own = applyDns({ Hostname: 'mine', HostConfig: { Dns: ['192.0.2.1'], DnsSearch: ['corp'] } }, 'db', dns);
  assert.deepEqual((own.HostConfig as Record<string, unknown>).Dns, ['192.0.2.1']);
  assert.deepEqual((own.HostConfig as Record<string, unknown>).DnsSearch, ['corp']);
  assert.equal(own.Hostname, 'mine');
  assert.equal(applyDns({}, 'bad_name!', dns).Hostname, undefined);
  const plan = planCreate({ Image: 'x', Cmd: ['sleep', '1'] }, null, { noDefaultIpalloc: false, weavewaitPath: '/w', dns, name: 'db' });
  assert.equal(plan.action, 'inject');
  assert.equal((plan as { body: Record<string, unknown> }).body.Hostname, 'db');
  assert.equal(dnsNameOf({ Config: { Hostname: 'db', Domainname: 'weave.local' } }, 'weave.local.'), 'db.weave.local.');
  assert.equal(dnsNameOf({ Config: { Hostname: 'DB.Weave.Local' } }, 'weave.local.'), 'db.weave.local.');
  assert.equal(dnsNameOf({ Config: { Hostname: '3f2a1b4c5d6e' } }, 'weave.local.'), undefined, "Docker's default hostname is not registered");
  assert.equal(dnsNameOf({ Config: { Hostname: 'x', Domainname: 'example.com' } }, 'weave.local.'), undefined);
  const start = planStart({ Id: 'abc', State: { Running: true, Pid: 5 }, Mounts: [{ Destination: '/w/w' }], Config: { Hostname: 'db', Domainname: 'weave.local' } }, 'weave.local.');
  assert.deepEqual(start, { action: 'attach', id: 'abc', pid: 5, specs: [], name: 'db.weave.local.' });
});

test('isolation: subnet membership', () => {
  assert.ok(inSubnetOf('10.32.2.7', '10.32.2.5/24'));
  assert.ok(!inSubnetOf('10.32.1.7', '10.32.2.5/24'));
  assert.ok(inSubnetOf('10.40.0.1', '10.32.0.1/12'));
  assert.ok(!inSubnetOf('junk', '10.32.0.1/12'));
});

test('status dns: live entries only, escaped for the terminal', () => {
  assert.equal(terminalSafe('a\u001b[2Jb'), 'a\\x1b[2Jb');
  const t = formatDns({ Domain: 'weave.local.', Address: '', TTL: 1, Isolation: true, Upstream: [], Thread: 'main', Entries: [
    { Hostname: 'db.weave.local.', Address: '10.32.0.1', ContainerID: 'a'.repeat(64), Origin: 'aa:00:00:00:00:01', Version: 0, Tombstone: 0 },
    { Hostname: 'old.weave.local.', Address: '10.32.0.2', ContainerID: 'x\u0007', Origin: 'aa:00:00:00:00:01', Version: 1, Tombstone: 5 },
  ] });
  assert.equal(t, `db.weave.local       10.32.0.1       ${'a'.repeat(12)} aa:00:00:00:00:01`);
});
