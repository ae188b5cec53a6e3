/**
 * State files (router/host/state-file.ts, endpoints.json checks in router/host/endpoints.ts,
 * ipam/persist.ts save failures): failed writes leave the old file and no temporary file;
 * corrupt files are refused with one line naming the path and left byte for byte.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic, loadTargets, readStateFile, makeStateDir, makeDirs, StateFileError, MAX_STATE_FILE_BYTES } from '../../router/host/state-file.js';
import { validateEndpoints, Endpoints } from '../../router/host/endpoints.js';
import { FilePersistence, IpamPersistenceError } from '../../ipam/persist.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'tsweave-state-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('writeFileAtomic replaces the file; a failed rename leaves the old target and no temporary file', async () => {
  const f = path.join(dir, 'a.json');
  await writeFileAtomic(f, '[1]');
  assert.equal(readFileSync(f, 'utf8'), '[1]');
  const d = path.join(dir, 'isdir');
  mkdirSync(d);
  writeFileSync(path.join(d, 'keep'), 'x');
  await assert.rejects(writeFileAtomic(d, 'new'), (e: Error) => e instanceof StateFileError && e.message.startsWith(`cannot save ${d}: `) && !e.message.includes('\n'));
  assert.deepEqual(readdirSync(d), ['keep']);
  assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.tmp')), []);
  await assert.rejects(writeFileAtomic(path.join(dir, 'missing', 'x.json'), '1'), /cannot save .*missing\/x\.json: ENOENT/);
});

test('writeFileAtomic: concurrent writes of one file land in call order, each whole, with no temporary file left', async () => {
  const f = path.join(dir, 'race.json');
  // 50 writes started in the same tick (same millisecond): before, they shared a
  // temporary name and an older content could be renamed over a newer one.
  const writes = Array.from({ length: 50 }, (_, i) => writeFileAtomic(f, JSON.stringify({ i, pad: 'x'.repeat(i * 100) })));
  await Promise.all(writes);
  assert.deepEqual(JSON.parse(readFileSync(f, 'utf8')), { i: 49, pad: 'x'.repeat(4900) });
  assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.tmp')), []);
  // A failed write in the chain does not block later ones.
  const bad = path.join(dir, 'badrace');
  mkdirSync(bad);
  const r1 = writeFileAtomic(bad, 'no');
  await assert.rejects(r1, StateFileError);
  const ok = path.join(dir, 'after.json');
  await writeFileAtomic(ok, '1');
  assert.equal(readFileSync(ok, 'utf8'), '1');
});

test('loadTargets: missing is [], valid list loads, corrupt is refused naming the path and kept byte for byte', async () => {
  const f = path.join(dir, 'targets.json');
  assert.deepEqual(await loadTargets(f), []);
  writeFileSync(f, '["192.168.99.2:6783"]');
  assert.deepEqual(await loadTargets(f), ['192.168.99.2:6783']);
  for (const junk of ['["192.168.99.2:67', '{"a":1}', '[1,2]', '[""]', Buffer.from([0xff, 0x00, 0x5b])]) {
    writeFileSync(f, junk);
    const before = readFileSync(f);
    await assert.rejects(loadTargets(f), (e: Error) => e instanceof StateFileError && e.message.startsWith(`connection targets file ${f} is corrupted (`) && e.message.endsWith('move it aside or run weave reset') && !e.message.includes('\n'));
    assert.deepEqual(readFileSync(f), before);
  }
});

test('readStateFile refuses an oversized file without reading it all', async () => {
  const f = path.join(dir, 'big.json');
  writeFileSync(f, Buffer.alloc(MAX_STATE_FILE_BYTES + 1, 0x20));
  await assert.rejects(readStateFile(f, 'endpoint table'), /endpoint table .*big\.json is corrupted \(16777217 bytes/);
  rmSync(f);
});

test('endpoints.json: valid loads; truncated, wrong shape, duplicate ids or bad cidrs are refused and kept', async () => {
  const f = path.join(dir, 'endpoints.json');
  const good = [{ id: 'netns:/var/run/netns/c1', netns: '/var/run/netns/c1', cidrs: ['10.32.0.1/12'], mac: 'aa:bb:cc:dd:ee:ff' }];
  assert.deepEqual(validateEndpoints(JSON.stringify(good), f), good);
  // A name (DNS) and a CNI pod's interface name survive a restart.
  const named = [{ ...good[0], name: 'db', ifname: 'eth0' }];
  assert.deepEqual(validateEndpoints(JSON.stringify(named), f), named);
  const text = JSON.stringify(good, null, 1);
  const cases = [text.slice(0, text.length / 2), '{}', '[null]', JSON.stringify([...good, ...good]), JSON.stringify([{ ...good[0], cidrs: ['10.32.0.1'] }]), JSON.stringify([{ ...good[0], id: 5 }]),
    JSON.stringify([{ ...good[0], name: 7 }]), JSON.stringify([{ ...good[0], ifname: 'eth0; rm -rf /' }]), JSON.stringify([{ ...good[0], ifname: 'a'.repeat(16) }])];
  for (const c of cases) {
    assert.throws(() => validateEndpoints(c, f), (e: Error) => e instanceof StateFileError && e.message.startsWith(`endpoint table ${f} is corrupted (`) && !e.message.includes('\n'), c);
  }
  writeFileSync(f, cases[0]);
  const eps = new Endpoints(dir, 1376, 'unix:///nonexistent', () => undefined);
  await assert.rejects(eps.load(), /endpoint table .* is corrupted \(not valid JSON/);
  assert.equal(readFileSync(f, 'utf8'), cases[0]);
  writeFileSync(f, JSON.stringify(good));
  const ok = new Endpoints(dir, 1376, 'unix:///nonexistent', () => undefined);
  await ok.load();
  assert.deepEqual(ok.list(), good);
});

test('ipam FilePersistence: a failed save names the path, keeps the old file and leaves no .tmp', async () => {
  const sub = path.join(dir, 'ipam');
  mkdirSync(sub);
  const f = path.join(sub, 'ipam.json');
  const p = new FilePersistence(f);
  const state = { version: 1 as const, peer: 'aa:bb:cc:dd:ee:ff', range: '10.32.0.0/12', ring: null, allocations: [], paxos: null };
  await p.save(state);
  const before = readFileSync(f);
  // Make the rename fail: the temporary name is taken by a non-empty directory.
  mkdirSync(`${f}.tmp`);
  writeFileSync(path.join(`${f}.tmp`, 'x'), '');
  await assert.rejects(p.save({ ...state, allocations: [{ owner: 'c', addr: '10.32.0.1/12' }] }), (e: Error) => e instanceof IpamPersistenceError && e.message.startsWith(`cannot save IPAM data to ${f}: `) && !e.message.includes('\n'));
  assert.deepEqual(readFileSync(f), before);
  rmSync(`${f}.tmp`, { recursive: true });
  await p.save(state);
  assert.deepEqual(readdirSync(sub), ['ipam.json']);
});

test('makeStateDir creates missing components with mode 0700, keeps existing ones, and fails in one line where mkdir -p would hang', async () => {
  const d = path.join(dir, 'state', 'a', 'b');
  await makeStateDir(d);
  assert.equal(statSync(d).mode & 0o777, 0o700 & ~process.umask());
  await makeStateDir(d); // exists: nothing to do
  writeFileSync(path.join(dir, 'plain'), 'x');
  await assert.rejects(makeStateDir(path.join(dir, 'plain', 'sub')), (e: Error) => e instanceof StateFileError && /not a directory/.test(e.message));
  // Node 20's recursive mkdir never returns here (every mkdir under /proc answers ENOENT).
  const t0 = Date.now();
  await assert.rejects(makeStateDir('/proc/tsweave-no-such/weave'), (e: Error) => e instanceof StateFileError && e.message.includes('/proc/tsweave-no-such') && !e.message.includes('\n'));
  assert.ok(Date.now() - t0 < 5_000);
});

test('makeDirs (weave setup-cni\'s --conf-dir / --bin-dir): given mode, and the error names what the directory is for', async () => {
  const d = path.join(dir, 'cni', 'net.d');
  await makeDirs(d, 0o755, 'CNI config directory');
  assert.equal(statSync(d).mode & 0o777, 0o755 & ~process.umask());
  await assert.rejects(makeDirs('/proc/tsweave-no-such/net.d', 0o755, 'CNI config directory'),
    (e: Error) => e instanceof StateFileError && /^cannot create the CNI config directory \/proc\/tsweave-no-such\/net\.d: /.test(e.message) && !e.message.includes('\n'));
});
