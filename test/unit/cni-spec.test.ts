/**
 * The weave-net CNI plugin's pure core (cni/spec.ts, cni/install.ts): conf parsing
 * for every cniVersion we answer, environment validation, results per version, error
 * JSON with the spec's codes, and the installed conflist/wrapper.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CniCode, CniError, buildIpamResult, buildResult, chooseSubnet, errorJson, parseArgs, parseConf, parseEnv, parseSubnet, podName, replyDns, routerError, versionResult,
  MAX_CONF_BYTES, SUPPORTED_VERSIONS,
} from '../../cni/spec.js';
import { gatewayFor, goneEndpoints } from '../../cni/router-side.js';
import { conflist, shQuote, wrapper } from '../../cni/install.js';

const enc = (o: unknown): Uint8Array => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o));
const code = (fn: () => unknown): number => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CniError, `not a CniError: ${String(err)}`);
    assert.ok(!err.message.includes('\n'));
    return err.code;
  }
  assert.fail('did not throw');
};

const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc123', CNI_NETNS: '/run/netns/cni-1', CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0', CNI_PATH: '/opt/cni/bin:/usr/lib/cni' };

test('parseConf accepts every supported cniVersion and fills defaults', () => {
  for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    const c = parseConf(enc({ cniVersion: v, name: 'weave', type: 'weave-net' }));
    assert.equal(c.cniVersion, v);
    assert.equal(c.hairpinMode, false);
    assert.equal(c.defaultRoute, true);
  }
  const c = parseConf(enc({ cniVersion: '0.4.0', name: 'weave', type: 'weave-net', hairpinMode: true, subnet: 'net:10.40.0.0/16', stateDir: '/var/lib/weave', prevResult: { cniVersion: '0.4.0' } }));
  assert.equal(c.subnet, '10.40.0.0/16');
  assert.equal(c.hairpinMode, true);
});

test('parseConf refuses bad input with the spec codes', () => {
  assert.equal(code(() => parseConf(enc('{not json'))), CniCode.DecodeFailure);
  assert.equal(code(() => parseConf(new Uint8Array(MAX_CONF_BYTES + 1))), CniCode.DecodeFailure);
  assert.equal(code(() => parseConf(enc({ cniVersion: '0.2.0', name: 'weave', type: 'weave-net' }))), CniCode.IncompatibleVersion);
  assert.equal(code(() => parseConf(enc({ name: 'weave', type: 'weave-net' }))), CniCode.InvalidConfig);
  assert.equal(code(() => parseConf(enc({ cniVersion: '1.0.0', name: '../x', type: 'weave-net' }))), CniCode.InvalidConfig);
  assert.equal(code(() => parseConf(enc({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net', hairpinMode: 'yes' }))), CniCode.InvalidConfig);
  assert.equal(code(() => parseConf(enc({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net', subnet: 'net:10.1.2.300/16' }))), CniCode.InvalidConfig);
  assert.equal(code(() => parseConf(enc({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net', stateDir: 'relative' }))), CniCode.InvalidConfig);
  assert.equal(code(() => parseConf(enc([1, 2]))), CniCode.InvalidConfig);
});

test('parseConf checks every known field, nested ones too, and names the field; unknown fields pass', () => {
  const base = { cniVersion: '1.0.0', name: 'weave', type: 'weave-net' };
  const msg = (o: unknown): string => {
    try {
      parseConf(enc(o));
    } catch (err) {
      assert.equal((err as CniError).code, CniCode.InvalidConfig);
      return (err as Error).message;
    }
    return assert.fail(`accepted ${JSON.stringify(o)}`);
  };
  assert.equal(msg(null), 'invalid network configuration: conf must be an object');
  assert.equal(msg({ ...base, type: undefined }), "invalid network configuration: conf must have required property 'type'");
  assert.equal(msg({ ...base, cniVersion: 1 }), 'invalid network configuration: /cniVersion must be a string');
  assert.equal(msg({ ...base, name: '' }), 'invalid network configuration: /name must not be empty');
  assert.equal(msg({ ...base, name: 'x'.repeat(129) }), 'invalid network configuration: /name must be at most 128 characters');
  assert.match(msg({ ...base, name: 'a b' }), /^invalid network configuration: \/name must be letters, digits/);
  assert.equal(msg({ ...base, defaultRoute: 1 }), 'invalid network configuration: /defaultRoute must be true or false');
  assert.equal(msg({ ...base, stateDir: 'x'.repeat(1025) }), 'invalid network configuration: /stateDir must be at most 1024 characters');
  assert.equal(msg({ ...base, ipam: [] }), 'invalid network configuration: /ipam must be an object');
  assert.equal(msg({ ...base, ipam: { type: 7 } }), 'invalid network configuration: /ipam/type must be a string');
  assert.equal(msg({ ...base, dns: { nameservers: '1.1.1.1' } }), 'invalid network configuration: /dns/nameservers must be an array');
  assert.equal(msg({ ...base, dns: { nameservers: Array(17).fill('1.1.1.1') } }), 'invalid network configuration: /dns/nameservers must have at most 16 items');
  assert.equal(msg({ ...base, dns: { search: ['ok', 5] } }), 'invalid network configuration: /dns/search/1 must be a string');
  assert.equal(msg({ ...base, dns: { domain: 'd'.repeat(254) } }), 'invalid network configuration: /dns/domain must be at most 253 characters');
  assert.equal(msg({ ...base, prevResult: 'x' }), 'invalid network configuration: /prevResult must be an object');
  assert.equal(msg({ ...base, runtimeConfig: null }), 'invalid network configuration: /runtimeConfig must be an object');
  // What other plugins or runtimes put in a conflist entry is not ours to refuse.
  const c = parseConf(enc({ ...base, capabilities: { portMappings: true }, args: { cni: {} }, dns: { nameservers: ['10.0.0.10'], search: ['svc.cluster.local'], options: ['ndots:5'], domain: 'cluster.local' } }));
  assert.deepEqual(c.dns?.nameservers, ['10.0.0.10']);
});

test('parseEnv reads CNI_* and validates each variable', () => {
  const e = parseEnv(env);
  assert.deepEqual({ ...e, args: { ...e.args } }, { command: 'ADD', containerId: 'abc123', netns: '/run/netns/cni-1', ifname: 'eth0', args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'web-0' }, path: ['/opt/cni/bin', '/usr/lib/cni'] });
  assert.equal(parseEnv({ CNI_COMMAND: 'VERSION' }).command, 'VERSION');
  // DEL without a netns (it is gone) is fine.
  assert.equal(parseEnv({ ...env, CNI_COMMAND: 'DEL', CNI_NETNS: '' }).netns, '');
  assert.equal(code(() => parseEnv({ ...env, CNI_COMMAND: 'FOO' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseEnv({ ...env, CNI_CONTAINERID: '' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseEnv({ ...env, CNI_CONTAINERID: '-abc' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseEnv({ ...env, CNI_CONTAINERID: 'a;rm -rf /' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseEnv({ ...env, CNI_IFNAME: 'a-very-long-interface' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseEnv({ ...env, CNI_IFNAME: 'eth/0' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseEnv({ ...env, CNI_IFNAME: '..' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseEnv({ ...env, CNI_NETNS: 'relative/ns' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseEnv({ ...env, CNI_NETNS: '' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseEnv({ ...env, CNI_ARGS: 'novalue' })), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseArgs('a=1;'.repeat(65))), CniCode.InvalidEnvironment);
  assert.equal(code(() => parseArgs('x'.repeat(5000))), CniCode.InvalidEnvironment);
});

test('fuzz finding: values echoed in errors have their control characters escaped (one line, no terminal escapes)', () => {
  const msg = (f: () => unknown): string => {
    try {
      f();
    } catch (err) {
      return (err as Error).message;
    }
    return '';
  };
  const ctl = /[\u0000-\u001f\u007f-\u009f]/;
  const m1 = msg(() => parseConf(Buffer.from(JSON.stringify({ cniVersion: '\u007f\u009b2J', name: 'n', type: 'weave-net' }))));
  assert.match(m1, /^cniVersion "\\u007f\\u009b2J" is not supported/);
  for (const m of [m1, msg(() => parseEnv({ CNI_COMMAND: 'X\u001b]0;t\u0007' })), msg(() => parseArgs('a\nb')), msg(() => parseSubnet('net:\r10.0.0.0/8', 'subnet'))]) {
    assert.ok(m !== '' && !ctl.test(m), JSON.stringify(m));
  }
});

test('podName takes K8S_POD_NAME (lower-cased) only when it is a DNS label', () => {
  assert.equal(podName({ K8S_POD_NAME: 'web-0' }), 'web-0');
  // podman 4 passes the container's name, which may have capitals.
  assert.equal(podName({ IgnoreUnknown: '1', K8S_POD_NAME: 'Web-0' }), 'web-0');
  assert.equal(podName({ K8S_POD_NAME: 'Web_0' }), undefined);
  assert.equal(podName({ K8S_POD_NAME: '-web' }), undefined);
  assert.equal(podName({ K8S_POD_NAME: 'x'.repeat(64) }), undefined);
  assert.equal(podName({}), undefined);
});

test('chooseSubnet: WEAVE_CIDR in CNI_ARGS beats the conf subnet', () => {
  const conf = parseConf(enc({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net', subnet: '10.40.0.0/16' }));
  assert.equal(chooseSubnet(conf, parseEnv(env)), '10.40.0.0/16');
  assert.equal(chooseSubnet(conf, parseEnv({ ...env, CNI_ARGS: 'WEAVE_CIDR=net:10.41.0.0/16' })), '10.41.0.0/16');
  assert.equal(code(() => chooseSubnet(conf, parseEnv({ ...env, CNI_ARGS: 'WEAVE_CIDR=bogus' }))), CniCode.InvalidConfig);
});

test('buildResult follows the shape of each version', () => {
  const reply = { cidrs: ['10.32.0.3/12'], mac: '02:00:00:00:00:01', hostVeth: 'vethwepl1234567', gateway: '10.32.0.1' };
  for (const v of SUPPORTED_VERSIONS) {
    const conf = parseConf(enc({ cniVersion: v, name: 'weave', type: 'weave-net' }));
    const r = buildResult(conf, parseEnv(env), reply);
    assert.equal(r.cniVersion, v);
    assert.deepEqual(r.interfaces, [{ name: 'vethwepl1234567' }, { name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/run/netns/cni-1' }]);
    const want: Record<string, unknown> = { address: '10.32.0.3/12', gateway: '10.32.0.1', interface: 1 };
    if (v.startsWith('0.')) want.version = '4';
    assert.deepEqual(r.ips, [want]);
    assert.deepEqual(r.routes, [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }]);
  }
  const noGw = buildResult(parseConf(enc({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net' })), parseEnv(env), { ...reply, gateway: undefined });
  assert.deepEqual(noGw.routes, []);
  assert.equal(noGw.ips?.[0].gateway, undefined);
  // dns: the conf's if it has one, else weaveDNS's from the router, else empty.
  const weaveDns = { nameservers: ['169.254.53.53'], search: ['weave.local'] };
  assert.deepEqual(noGw.dns, {});
  const c1 = parseConf(enc({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net' }));
  assert.deepEqual(buildResult(c1, parseEnv(env), { ...reply, dns: weaveDns }).dns, weaveDns);
  const c2 = parseConf(enc({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net', dns: { nameservers: ['10.0.0.10'] } }));
  assert.deepEqual(buildResult(c2, parseEnv(env), { ...reply, dns: weaveDns }).dns, { nameservers: ['10.0.0.10'] });
  assert.deepEqual(replyDns({ nameservers: ['169.254.53.53'] }), { nameservers: ['169.254.53.53'] });
  for (const bad of [undefined, 'x', { nameservers: 'x' }, { nameservers: [1] }, { nameservers: ['a'], search: [{}] }, { nameservers: Array(17).fill('a') }]) assert.equal(replyDns(bad), undefined, JSON.stringify(bad));
  const ipam = buildIpamResult(parseConf(enc({ cniVersion: '0.4.0', name: 'weave', type: 'bridge' })), ['10.32.0.9/12']);
  assert.deepEqual(ipam.ips, [{ version: '4', address: '10.32.0.9/12' }]);
});

test('errorJson gives {cniVersion, code, msg, details} on one line, never a stack', () => {
  assert.deepEqual(errorJson(new CniError(11, 'tsweave router is not running on this node', 'no router listens on /x'), '0.4.0'), { cniVersion: '0.4.0', code: 11, msg: 'tsweave router is not running on this node', details: 'no router listens on /x' });
  const e = errorJson(new TypeError('boom\n    at foo (x.js:1:1)'));
  assert.equal(e.code, CniCode.IoFailure);
  assert.ok(!JSON.stringify(e).includes('at foo'));
  assert.deepEqual(versionResult('1.0.0'), { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

test('routerError: IPAM trouble is the IPAM error, 503 is try-again-later', () => {
  assert.equal(routerError(400, 'range 10.32.0.0/28 is full: no free address').code, CniCode.IpamFailure);
  assert.equal(routerError(503, 'IPAM is waiting for consensus').code, CniCode.TryAgainLater);
  assert.equal(routerError(503, 'the router is starting').code, CniCode.TryAgainLater);
  assert.equal(routerError(409, 'container x is attached in another network namespace').code, CniCode.RouterFailure);
});

test('gatewayFor picks the expose address in the same subnet only', () => {
  const expose = { id: 'weave:expose', cidrs: ['10.32.0.1/12', '10.40.0.1/16'], mac: '' };
  assert.equal(gatewayFor('10.32.0.7/12', expose), '10.32.0.1');
  assert.equal(gatewayFor('10.40.3.7/16', expose), '10.40.0.1');
  assert.equal(gatewayFor('10.50.0.7/16', expose), undefined);
  assert.equal(gatewayFor('10.32.0.7/12', undefined), undefined);
});

test('conflist and wrapper: Weave-compatible conf, quoted exec', () => {
  const c = conflist({ stateDir: '/var/lib/weave', cniVersion: '0.4.0' }) as { name: string; cniVersion: string; plugins: Array<Record<string, unknown>> };
  assert.equal(c.name, 'weave');
  assert.equal(c.plugins[0].type, 'weave-net');
  assert.equal(c.plugins[0].hairpinMode, true);
  assert.equal(c.plugins[1].type, 'portmap');
  // The conflist's plugin entry, with name/cniVersion as a runtime injects them, parses.
  assert.equal(parseConf(enc({ ...c.plugins[0], name: c.name, cniVersion: c.cniVersion })).stateDir, '/var/lib/weave');
  assert.equal(shQuote("it's"), `'it'\\''s'`);
  assert.equal(wrapper('/usr/bin/node', '/x y/weave-net.js', ['--ipam']), `#!/bin/sh\n# Installed by weave setup-cni: the tsweave CNI plugin.\nexec '/usr/bin/node' '/x y/weave-net.js' '--ipam' "$@"\n`);
});

test('goneEndpoints: CNI pods (with an ifname) whose netns file is gone, nothing else', () => {
  const e = (id: string, netns: string | undefined, ifname?: string) => ({ id, cidrs: ['10.32.0.5/24'], mac: '02:00:00:00:00:01', ...(netns ? { netns } : {}), ...(ifname ? { ifname } : {}) });
  const list = [
    e('pod-alive', '/run/netns/cni-a', 'eth0'),
    e('pod-gone', '/run/netns/cni-b', 'eth0'),
    e('attached', '/run/netns/cni-c'), // weave attach: not the CNI's to reclaim
    e('plugin', undefined), // Docker plugin: no netns
    e('weave:expose', undefined),
  ];
  const exists = (p: string): boolean => p === '/run/netns/cni-a';
  assert.deepEqual(goneEndpoints(list, exists).map((x) => x.id), ['pod-gone']);
  assert.deepEqual(goneEndpoints(list, () => true), []);
});
