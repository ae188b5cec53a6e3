/**
 * Router life cycle end to end. Readiness: GET /status (on the router's unix socket)
 * answers 503 with the reason while IPAM has no ring, and `weave status` shows it;
 * once two peers reach consensus both answer 200; an observer is ready at once.
 * Reset: a peer that owns IPAM space and can reach nobody refuses `weave reset`
 * unless --force, which says what it abandoned.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Testbed, canRunE2E, until, sh, type Host } from './lib/testbed.js';

function systemdAnalyze(): string | undefined {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'systemd-analyze not installed (apt-get install systemd)';
  }
}
const skip = canRunE2E() ?? systemdAnalyze();
if (skip && process.env.CI === 'true') test('readiness e2e prerequisites', () => assert.fail(`cannot run: ${skip}`));

function getStatus(h: Host): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: path.join(h.stateDir, 'weaver.sock'), path: '/status', method: 'GET', timeout: 10_000 }, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (t += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(t) }));
    });
    req.on('timeout', () => req.destroy(new Error('GET /status timed out')));
    req.on('error', reject);
    req.end();
  });
}

describe('life cycle: readiness, reset --force', { skip, timeout: 300_000 }, () => {
  const bed = new Testbed('lc');
  let h1: Host, h2: Host, h3: Host;
  before(async () => {
    [h1, h2, h3] = await bed.up(3);
  });
  after(async () => bed.destroy());

  test('503 with the IPAM reason until consensus, then 200; an observer is ready at once', async () => {
    await h1.launch(['--ipalloc-init', 'consensus=2']);
    const s = await getStatus(h1);
    assert.equal(s.status, 503);
    assert.match(s.body.error, /^not ready: IPAM: idle .*run weave prime/);
    assert.match(await h1.mustWeave(['status']), /Readiness: not ready: IPAM: idle/);
    await h2.launch(['--ipalloc-init', 'consensus=2', h1.ip]);
    await h1.mustWeave(['prime'], { timeoutMs: 60_000 });
    for (const h of [h1, h2]) {
      await until(`${h.nickname} ready`, async () => (await getStatus(h)).status === 200, 30_000);
      const ok = await getStatus(h);
      assert.deepEqual(ok.body.Readiness, { Ready: true, Reason: 'ready' });
      assert.match(await h.mustWeave(['status']), /Readiness: ready/);
    }
    await h3.launch(['--ipalloc-init', 'observer', h1.ip]);
    assert.equal((await getStatus(h3)).status, 200);
  });

  test('a missing bridge makes the router not ready', async () => {
    await h3.exec(['ip', 'link', 'del', 'weave']);
    const s = await getStatus(h3);
    assert.equal(s.status, 503);
    assert.match(s.body.error, /bridge weave is missing/);
  });

  test('weave reset refuses to abandon IPAM space without --force, and --force says what it abandoned', async () => {
    await h2.mustWeave(['stop']);
    await h3.mustWeave(['stop']);
    await until('h1 alone', async () => !(await h1.mustWeave(['status', 'connections'])).includes('established'), 30_000);
    const r = await h1.weave(['reset']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^weave: \d+ addresses of the IPAM range 10\.32\.0\.0\/12 owned by .*\(h1\): no reachable peer can take it over; run weave reset --force to abandon it\n$/);
    assert.equal((await h1.weave(['status'])).code, 0, 'the router still runs after a refused reset');
    const f = await h1.weave(['reset', '--force']);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stderr, /abandoned \d+ addresses .*: reclaim it with weave rmpeer /);
    assert.notEqual((await h1.exec(['ip', 'link', 'show', 'dev', 'weave'])).code, 0, 'bridge removed');
  });

  test('setup-service writes a unit systemd-analyze verify accepts, from the recorded launch without the password', async () => {
    await h1.launch(['--password', 'hunter2-secret', '--ipalloc-init', 'observer']);
    const recorded = fs.readFileSync(path.join(h1.stateDir, 'launch-args.json'), 'utf8');
    assert.doesNotMatch(recorded, /hunter2/);
    assert.deepEqual(JSON.parse(recorded).args, ['--nickname', 'h1', '--ipalloc-init', 'observer']);
    const unit = path.join(bed.dir, 'weave.service');
    assert.equal((await h1.mustWeave(['setup-service', '--output', unit])).trim(), unit);
    const text = fs.readFileSync(unit, 'utf8');
    assert.match(text, /"launch" "--no-detach" "--nickname" "h1" "--ipalloc-init" "observer"/);
    assert.match(text, new RegExp(`Environment="WEAVE_STATE_DIR=${h1.stateDir}"`));
    const v = await sh('systemd-analyze', ['verify', unit], { timeoutMs: 60_000 });
    assert.equal(v.code, 0, v.stderr);
    // The check can fail: a unit whose ExecStart binary does not exist is refused.
    const broken = path.join(bed.dir, 'broken.service');
    fs.writeFileSync(broken, text.replace(/^ExecStart="[^"]+"/m, 'ExecStart="/nonexistent/tsw-node"'));
    assert.notEqual((await sh('systemd-analyze', ['verify', broken], { timeoutMs: 60_000 })).code, 0);
    await h1.mustWeave(['reset', '--force']);
    assert.equal(fs.existsSync(path.join(h1.stateDir, 'launch-args.json')), false, 'reset forgets the recorded launch');
  });
});
