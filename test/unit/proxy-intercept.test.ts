import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  attachDecision,
  effectiveCommand,
  formatDockerAddress,
  hasWeavewait,
  mergeEnv,
  parseDockerAddress,
  parseJsonKeepingNumbers,
  parseWeaveCidr,
  planCreate,
  planStart,
  routeRequest,
  stringifyJsonKeepingNumbers,
  CreateBodyError,
} from '../../proxy/intercept.js';
import { ProxyAddressError, WeaveCidrError } from '../../proxy/types.js';

const OPTS = { noDefaultIpalloc: false, weavewaitPath: '/opt/ww' };

test('parseDockerAddress: unix, tcp, IPv6, bare path and errors', () => {
  assert.deepEqual(parseDockerAddress('unix:///var/run/docker.sock'), { kind: 'unix', path: '/var/run/docker.sock' });
  assert.deepEqual(parseDockerAddress('/run/x.sock'), { kind: 'unix', path: '/run/x.sock' });
  assert.deepEqual(parseDockerAddress('tcp://127.0.0.1:12375'), { kind: 'tcp', host: '127.0.0.1', port: 12375 });
  assert.deepEqual(parseDockerAddress('tcp://:2375'), { kind: 'tcp', host: '0.0.0.0', port: 2375 });
  assert.deepEqual(parseDockerAddress('tcp://[::1]:0'), { kind: 'tcp', host: '::1', port: 0 });
  assert.equal(formatDockerAddress({ kind: 'tcp', host: '::1', port: 5 }), 'tcp://[::1]:5');
  for (const bad of ['unix://relative', 'tcp://host', 'tcp://h:99999', 'http://x:1', '', 'tcp://h:p']) {
    assert.throws(() => parseDockerAddress(bad), ProxyAddressError, bad);
  }
});

test('routeRequest: only POST create/start/restart are intercepted, with or without version prefix', () => {
  assert.deepEqual(routeRequest('POST', '/v1.41/containers/create?name=a'), { kind: 'create' });
  assert.deepEqual(routeRequest('POST', '/containers/create'), { kind: 'create' });
  assert.deepEqual(routeRequest('POST', '/v1.24/containers/abc/start'), { kind: 'start', container: 'abc' });
  assert.deepEqual(routeRequest('POST', '/containers/my%20c/restart?t=3'), { kind: 'restart', container: 'my c' });
  assert.deepEqual(routeRequest('GET', '/containers/create'), { kind: 'forward' });
  assert.deepEqual(routeRequest('POST', '/containers/abc/stop'), { kind: 'forward' });
  assert.deepEqual(routeRequest('POST', '/containers/a/b/start'), { kind: 'forward' });
  assert.deepEqual(routeRequest('POST', '/x/containers/create'), { kind: 'forward' });
  assert.deepEqual(routeRequest('POST', '/containers/%E0%A4%A/start'), { kind: 'forward' }); // bad escape
  assert.deepEqual(routeRequest(undefined, undefined), { kind: 'forward' });
});

test('parseWeaveCidr: Weave syntax, none, empty and errors', () => {
  assert.deepEqual(parseWeaveCidr('net:10.32.2.0/24'), ['net:10.32.2.0/24']);
  assert.deepEqual(parseWeaveCidr('  ip:10.32.0.9/12   net:default 10.2.1.1/24 '), ['ip:10.32.0.9/12', 'net:default', '10.2.1.1/24']);
  assert.equal(parseWeaveCidr('none'), null);
  assert.equal(parseWeaveCidr(' none '), null);
  assert.deepEqual(parseWeaveCidr(''), []);
  for (const bad of ['bogus', 'net:10.0.0.0', 'ip:300.1.1.1/8', '10.0.0.1/33', 'none net:default', 'net:', 'ip:a.b.c.d/8']) {
    assert.throws(() => parseWeaveCidr(bad), WeaveCidrError, bad);
  }
});

test('attachDecision: default, none, --no-default-ipalloc, last entry wins', () => {
  assert.deepEqual(attachDecision(['A=1'], false), { attach: true, specs: [] });
  assert.equal(attachDecision(['A=1'], true).attach, false);
  assert.equal(attachDecision(undefined, true).attach, false);
  assert.deepEqual(attachDecision(['WEAVE_CIDR=net:10.1.0.0/16'], true), { attach: true, specs: ['net:10.1.0.0/16'] });
  assert.equal(attachDecision(['WEAVE_CIDR=none'], false).attach, false);
  assert.equal(attachDecision(['WEAVE_CIDR='], true).attach, false);
  assert.deepEqual(attachDecision(['WEAVE_CIDR='], false), { attach: true, specs: [] });
  assert.deepEqual(attachDecision(['WEAVE_CIDR=none', 'WEAVE_CIDR=10.0.0.1/8'], false), { attach: true, specs: ['10.0.0.1/8'] });
  assert.deepEqual(attachDecision(['WEAVE_CIDRX=none', 7, null], false), { attach: true, specs: [] });
});

test('mergeEnv: request entries override the image by key', () => {
  assert.deepEqual(mergeEnv(['PATH=/bin', 'WEAVE_CIDR=none'], ['WEAVE_CIDR=net:default', 'X=1']), [
    'PATH=/bin',
    'WEAVE_CIDR=net:default',
    'X=1',
  ]);
  assert.deepEqual(mergeEnv(null, 'junk'), []);
});

test("effectiveCommand follows Docker's merge of request and image ENTRYPOINT/CMD", () => {
  const img = { Entrypoint: ['/bin/ip'], Cmd: ['addr'] };
  // nothing given: image's both
  assert.deepEqual(effectiveCommand(undefined, undefined, img), { entrypoint: ['/bin/ip'], cmd: ['addr'] });
  // CMD given: image entrypoint + request cmd
  assert.deepEqual(effectiveCommand(null, ['link'], img), { entrypoint: ['/bin/ip'], cmd: ['link'] });
  // ENTRYPOINT given: image CMD dropped
  assert.deepEqual(effectiveCommand(['/bin/cat'], null, img), { entrypoint: ['/bin/cat'], cmd: [] });
  assert.deepEqual(effectiveCommand('/bin/cat', ['x'], img), { entrypoint: ['/bin/cat'], cmd: ['x'] });
  // --entrypoint "" clears the image's entrypoint but keeps its CMD when none given
  assert.deepEqual(effectiveCommand([''], null, img), { entrypoint: [], cmd: ['addr'] });
  assert.deepEqual(effectiveCommand([], ['sh'], img), { entrypoint: [], cmd: ['sh'] });
  // empty request CMD falls back to the image's
  assert.deepEqual(effectiveCommand(null, [], img), { entrypoint: ['/bin/ip'], cmd: ['addr'] });
  assert.deepEqual(effectiveCommand(null, 'echo hi', null), { entrypoint: [], cmd: ['echo hi'] });
  assert.throws(() => effectiveCommand([1], null, null), CreateBodyError);
});

test('planCreate injects /w/w, keeps the argv and adds a read-only bind', () => {
  const body = { Image: 'bb', Cmd: ['ip', 'addr'], Env: ['A=1'], HostConfig: { Binds: ['/a:/b'], AutoRemove: true }, Labels: { x: 'y' } };
  const p = planCreate(body, { Entrypoint: null, Cmd: ['sh'] }, OPTS);
  assert.equal(p.action, 'inject');
  if (p.action !== 'inject') return;
  assert.deepEqual(p.body.Entrypoint, ['/w/w']);
  assert.deepEqual(p.body.Cmd, ['ip', 'addr']);
  assert.deepEqual(p.command, ['ip', 'addr']);
  assert.deepEqual((p.body.HostConfig as { Binds: string[] }).Binds, ['/a:/b', '/opt/ww:/w/w:ro']);
  assert.equal((p.body.HostConfig as { AutoRemove: boolean }).AutoRemove, true);
  assert.deepEqual(p.body.Labels, { x: 'y' });
  assert.deepEqual(p.specs, []);
  // the input is not mutated
  assert.deepEqual(body.HostConfig.Binds, ['/a:/b']);
  assert.equal((body as Record<string, unknown>).Entrypoint, undefined);
});

test('planCreate uses the image command and entrypoint when the request has none', () => {
  const p = planCreate({ Image: 'x' }, { Entrypoint: ['/bin/ip'], Cmd: ['addr', 'show'] }, OPTS);
  assert.equal(p.action, 'inject');
  if (p.action !== 'inject') return;
  assert.deepEqual(p.body.Entrypoint, ['/w/w', '/bin/ip']);
  assert.deepEqual(p.body.Cmd, ['addr', 'show']);
  assert.deepEqual((p.body.HostConfig as { Binds: string[] }).Binds, ['/opt/ww:/w/w:ro']);
});

test('planCreate skips host/container networking, none, no-default-ipalloc, no command; image env counts', () => {
  assert.equal(planCreate({ Cmd: ['x'], HostConfig: { NetworkMode: 'host' } }, null, OPTS).action, 'skip');
  assert.equal(planCreate({ Cmd: ['x'], HostConfig: { NetworkMode: 'container:abc' } }, null, OPTS).action, 'skip');
  assert.equal(planCreate({ Cmd: ['x'], HostConfig: { NetworkMode: 'none' } }, null, OPTS).action, 'inject');
  assert.equal(planCreate({ Cmd: ['x'], Env: ['WEAVE_CIDR=none'] }, null, OPTS).action, 'skip');
  assert.equal(planCreate({ Cmd: ['x'] }, null, { ...OPTS, noDefaultIpalloc: true }).action, 'skip');
  assert.equal(planCreate({ Cmd: ['x'], Env: ['WEAVE_CIDR=net:default'] }, null, { ...OPTS, noDefaultIpalloc: true }).action, 'inject');
  assert.equal(planCreate({ Image: 'x' }, { Cmd: null }, OPTS).action, 'skip');
  // WEAVE_CIDR from the image, overridden by the request
  assert.equal(planCreate({ Cmd: ['x'] }, { Env: ['WEAVE_CIDR=none'] }, OPTS).action, 'skip');
  const p = planCreate({ Cmd: ['x'], Env: ['WEAVE_CIDR=ip:10.0.0.5/8'] }, { Env: ['WEAVE_CIDR=none'] }, OPTS);
  assert.equal(p.action === 'inject' && p.specs.join(), 'ip:10.0.0.5/8');
});

test('planCreate does not wrap twice and rejects what it cannot rewrite', () => {
  const p = planCreate({ Image: 'c' }, { Entrypoint: ['/w/w', '/bin/ip'], Cmd: ['addr'] }, OPTS);
  assert.equal(p.action === 'inject' && JSON.stringify(p.body.Entrypoint), '["/w/w","/bin/ip"]');
  const q = planCreate({ Cmd: ['x'], HostConfig: { Binds: ['/elsewhere/ww:/w/w:ro'] } }, null, OPTS);
  assert.equal(q.action === 'inject' && (q.body.HostConfig as { Binds: string[] }).Binds.length, 1);
  assert.throws(() => planCreate([], null, OPTS), CreateBodyError);
  assert.throws(() => planCreate(null, null, OPTS), CreateBodyError);
  assert.throws(() => planCreate({ Cmd: ['x'], HostConfig: 'h' }, null, OPTS), CreateBodyError);
  assert.throws(() => planCreate({ Cmd: ['x'], HostConfig: { Binds: 'a:b' } }, null, OPTS), CreateBodyError);
  assert.throws(() => planCreate({ Cmd: ['x'], Env: ['WEAVE_CIDR=bogus'] }, null, OPTS), WeaveCidrError);
});

test('planStart attaches only running weavewait containers, honouring WEAVE_CIDR', () => {
  const base = {
    Id: 'abc',
    State: { Running: true, Pid: 42 },
    Config: { Env: ['WEAVE_CIDR=net:10.2.0.0/16'] },
    HostConfig: { NetworkMode: 'default', Binds: ['/opt/ww:/w/w:ro'] },
  };
  assert.deepEqual(planStart(base), { action: 'attach', id: 'abc', pid: 42, specs: ['net:10.2.0.0/16'] });
  assert.equal(planStart({ ...base, HostConfig: { Binds: [] } }).action, 'skip');
  assert.equal(planStart({ ...base, HostConfig: {}, Mounts: [{ Destination: '/w/w' }] }).action, 'attach');
  assert.equal(planStart({ ...base, State: { Running: false, Pid: 0 } }).action, 'skip');
  assert.equal(planStart({ ...base, State: { Running: true, Pid: 1.5 } }).action, 'skip');
  assert.equal(planStart({ ...base, Config: { Env: ['WEAVE_CIDR=none'] } }).action, 'skip');
  assert.equal(planStart({ ...base, HostConfig: { ...base.HostConfig, NetworkMode: 'host' } }).action, 'skip');
  assert.equal(planStart({ ...base, Id: undefined }).action, 'skip');
  assert.deepEqual(planStart({ ...base, Config: null }), { action: 'attach', id: 'abc', pid: 42, specs: [] });
  assert.equal(hasWeavewait({ Mounts: [null, 3, { Destination: '/w' }] }), false);
  assert.equal(hasWeavewait({ HostConfig: { Binds: ['/x:/w/w'] } }), true);
});

test('JSON round trip keeps integers beyond 2^53 exact and leaves strings alone', () => {
  const text = '{"Memory":9223372036854775807,"Neg":-9223372036854775808,"Small":12,"F":0.5,"S":"12345678901234567890","E":"a\\"9999999999999999999"}';
  const v = parseJsonKeepingNumbers(text) as Record<string, unknown>;
  assert.equal(v.Small, 12);
  assert.equal(v.S, '12345678901234567890');
  assert.equal(stringifyJsonKeepingNumbers(v), text);
  // safe 16-digit integers stay plain numbers
  assert.equal((parseJsonKeepingNumbers('[1234567890123456]') as number[])[0], 1234567890123456);
  assert.throws(() => parseJsonKeepingNumbers('{bad'), SyntaxError);
});

test('JSON round trip: seeded random documents survive unchanged', () => {
  let seed = 0x2545f491;
  const rnd = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const gen = (depth: number): string => {
    const r = rnd();
    if (depth > 3 || r < 0.3) {
      const k = Math.floor(rnd() * 5);
      if (k === 0) return String(Math.floor(rnd() * 1e6) - 5e5);
      if (k === 1) return (rnd() < 0.5 ? '-' : '') + '9' + String(Math.floor(rnd() * 1e9)).padStart(9, '0') + '123456789';
      if (k === 2) return JSON.stringify(`s"\\${Math.floor(rnd() * 1e20)}`);
      if (k === 3) return rnd() < 0.5 ? 'true' : 'null';
      return '0.25';
    }
    if (r < 0.65) return `[${Array.from({ length: Math.floor(rnd() * 4) }, () => gen(depth + 1)).join(',')}]`;
    return `{${Array.from({ length: Math.floor(rnd() * 4) }, (_, i) => `"k${i}":${gen(depth + 1)}`).join(',')}}`;
  };
  for (let i = 0; i < 300; i++) {
    const doc = gen(0);
    assert.equal(stringifyJsonKeepingNumbers(parseJsonKeepingNumbers(doc)), doc);
  }
});
