/**
 * Reliability: disk faults under a live router, end to end as root.
 *
 * h1's state dir is a 4 MiB tmpfs mounted on the testbed's temp dir (unmounted in
 * `after`). Full: a filler file takes every free block. Read-only: a read-only bind
 * mount over the state dir inside the router's own mount namespace (nsenter; made by
 * `ip netns exec`, gone with the router), removed again. In both, the router keeps
 * forwarding (c1 ↔ c2 ping), refuses the new attach with one line naming a file in the
 * state dir, leaves valid JSON and no temporary files, gives the refused container no
 * address, and attaches again once the disk is back. Then a truncated ipam.json /
 * endpoints.json / targets.json each make `weave launch` fail with one line naming the
 * file, which is kept byte for byte.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Testbed, canRunE2E, must, sh, until, type Host, type Container } from './lib/testbed.js';

const missing = canRunE2E();
if (missing && process.env.CI === 'true') test(`reliability-disk prerequisites: ${missing}`, () => assert.fail(`cannot run: ${missing}`));

const STATE_FILES = ['ipam.json', 'endpoints.json', 'targets.json'];

describe('disk faults under a live router', { skip: missing, timeout: 300_000 }, () => {
  const bed = new Testbed('rd');
  let h1: Host, h2: Host;
  let c1: Container, c2: Container;
  let mounted = false;

  before(async () => {
    [h1, h2] = await bed.up(2);
    await must('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tsweave-e2e-state', h1.stateDir]);
    mounted = true;
    await h1.launch(['--no-proxy', '--no-fastdp', h2.ip]);
    await h2.launch(['--no-proxy', '--no-fastdp', h1.ip]);
    await h1.mustWeave(['prime'], { timeoutMs: 90_000 });
    c1 = await h1.container('c1', []);
    c2 = await h2.container('c2', []);
    await c1.mustPing(c2.ips[0].split('/')[0], {}, 'c1 -> c2 before any fault');
  });
  after(async () => {
    await bed.destroy().catch(() => undefined);
    if (mounted) await sh('umount', ['-l', h1.stateDir]);
    rmSync(bed.dir, { recursive: true, force: true });
  });

  /** The fault-time checks shared by "full" and "read-only". */
  async function refusedButForwarding(name: string, what: string, diag: (m: string) => void): Promise<void> {
    const ns = `${bed.prefix}${name}`;
    await must('ip', ['netns', 'add', ns]);
    bed.namespaces.push(ns);
    const r = await h1.weave(['attach', `netns:/var/run/netns/${ns}`], { timeoutMs: 60_000 });
    assert.notEqual(r.code, 0, `${what}: attach must be refused`);
    const msg = r.stderr.trim();
    diag(`${what}: weave attach said: ${msg}`);
    assert.equal(msg.split('\n').length, 1, `${what}: one line, got: ${msg}`);
    assert.ok(msg.includes(h1.stateDir), `${what}: message names the state dir path: ${msg}`);
    assert.doesNotMatch(msg, /\bat .*\.js:\d+/, `${what}: no stack trace`);
    const addrs = (await sh('ip', ['-n', ns, '-4', '-o', 'addr', 'show'])).stdout;
    assert.doesNotMatch(addrs, /10\.3[2-9]\.|10\.4[0-7]\./, `${what}: the refused container got no overlay address`);
    await c1.mustPing(c2.ips[0].split('/')[0], {}, `c1 -> c2 while ${what}`);
    await c2.mustPing(c1.ips[0].split('/')[0], {}, `c2 -> c1 while ${what}`);
    for (const f of STATE_FILES) JSON.parse(readFileSync(path.join(h1.stateDir, f), 'utf8'));
    assert.deepEqual(readdirSync(h1.stateDir).filter((n) => n.endsWith('.tmp')), [], `${what}: no temporary files left`);
    assert.equal((await h1.weave(['status'])).code, 0, `${what}: router still answers`);
  }

  async function attachesAgain(name: string, what: string): Promise<void> {
    const c = await h1.container(name, []);
    assert.equal(c.ips.length, 1, `${what}: attach works again`);
    await c.mustPing(c2.ips[0].split('/')[0], {}, `${name} -> c2 after ${what}`);
  }

  test('disk full: allocation refused naming the path, forwarding goes on, recovers when space is freed', async (t) => {
    const filler = path.join(h1.stateDir, 'filler');
    await sh('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k', 'count=1000'], { timeoutMs: 30_000 });
    const df = (await must('df', ['-k', '--output=avail', h1.stateDir])).trim().split('\n').pop();
    assert.equal(Number(df), 0, 'the state dir is full');
    await refusedButForwarding('full1', 'disk full', (m) => t.diagnostic(m));
    rmSync(filler);
    await attachesAgain('full2', 'disk full');
  });

  test('state dir read-only: allocation refused naming the path, forwarding goes on, recovers when writable', async (t) => {
    const pid = h1.pid()!;
    const inRouter = (args: string[]) => must('nsenter', [`--mount=/proc/${pid}/ns/mnt`, ...args]);
    await inRouter(['mount', '--bind', h1.stateDir, h1.stateDir]);
    try {
      await inRouter(['mount', '-o', 'remount,bind,ro', h1.stateDir]);
      await refusedButForwarding('ro1', 'read-only', (m) => t.diagnostic(m));
    } finally {
      await inRouter(['umount', h1.stateDir]);
    }
    await attachesAgain('ro2', 'read-only');
  });

  test('a truncated ipam.json, endpoints.json or targets.json: launch refused naming it, file kept byte for byte', async (t) => {
    await h1.mustWeave(['stop']);
    for (const f of STATE_FILES) {
      const file = path.join(h1.stateDir, f);
      const good = readFileSync(file);
      const torn = good.subarray(0, Math.max(1, Math.floor(good.length / 2)));
      writeFileSync(file, torn);
      const r = await h1.weave(['launch', '--no-proxy', '--no-fastdp', '--nickname', 'h1', h2.ip]);
      assert.notEqual(r.code, 0, `${f}: launch must be refused`);
      const msg = r.stderr.trim();
      t.diagnostic(`${f} torn: weave launch said: ${msg}`);
      assert.equal(msg.split('\n').length, 1, `${f}: one line, got: ${msg}`);
      assert.ok(msg.includes(file) && /corrupted/.test(msg), `${f}: message names ${file}: ${msg}`);
      assert.deepEqual(readFileSync(file), torn, `${f}: kept byte for byte`);
      writeFileSync(file, good);
    }
    await h1.launch(['--no-proxy', '--no-fastdp', h2.ip]);
    await until('h1 and h2 connected again', async () => ((await h1.report()).Router.Connections ?? []).some((c: { State: string }) => c.State === 'established'), 30_000, 500);
    await c1.mustPing(c2.ips[0].split('/')[0], {}, 'c1 -> c2 after the restart');
  });
});
