import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Allocator, type GossipChannel } from '../../ipam/allocator.js';
import { FilePersistence, IpamPersistenceError, type PersistedIpam } from '../../ipam/persist.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'tsweave-ipam-'));
  dirs.push(d);
  return d;
}

const SELF = 'aa:00:00:00:00:01';

function allocator(path: string, range = '10.32.0.0/12'): Allocator {
  const channel: GossipChannel = { selfName: SELF, broadcast: () => undefined, unicast: () => undefined, knownPeers: () => [] };
  return new Allocator({
    range,
    init: { mode: 'seed', peers: [SELF] },
    channel,
    persistence: new FilePersistence(path),
    now: () => 0,
    setTimer: (ms, fn) => {
      const t = setTimeout(fn, ms);
      return { cancel: () => clearTimeout(t) };
    },
  });
}

test('state survives a restart through the file; writes are atomic (no temp file left)', async () => {
  const dir = await tmp();
  const path = join(dir, 'ipam.json');
  const a = allocator(path);
  await a.start();
  const x = await a.allocate('c1');
  const y = await a.allocate('c2', '10.33.0.0/24');
  a.close();
  assert.deepEqual(await readdir(dir), ['ipam.json']);
  const saved = JSON.parse(await readFile(path, 'utf8')) as PersistedIpam;
  assert.equal(saved.peer, SELF);
  assert.equal(saved.range, '10.32.0.0/12');
  const b = allocator(path);
  await b.start();
  assert.deepEqual(b.lookup('c1'), [x]);
  assert.deepEqual(b.lookup('c2'), [y]);
  assert.equal(await b.allocate('c3'), '10.32.0.2/12', 'restored allocations are not handed out again');
  b.close();
});

test('missing file: load() gives undefined', async () => {
  const dir = await tmp();
  assert.equal(await new FilePersistence(join(dir, 'none.json')).load(), undefined);
});

test('a corrupted file is refused with a clear error and kept as it was', async () => {
  const dir = await tmp();
  const cases: Array<[string, RegExp]> = [
    ['{"version":1,"peer":"aa:00:00:00:00:01","ran', /not valid JSON/],
    ['[]', /not an object/],
    ['{"version":7}', /unknown version 7/],
    [JSON.stringify({ version: 1, peer: SELF, range: '10.32.0.0/12', ring: { s: 1, n: 2, p: [], e: [9] }, allocations: [], paxos: null }), /malformed ring/],
    [JSON.stringify({ version: 1, peer: SELF, range: '10.32.0.0/12', ring: null, allocations: [{ owner: 'c', addr: 'x/12' }], paxos: null }), /invalid CIDR/],
  ];
  for (const [i, [text, why]] of cases.entries()) {
    const path = join(dir, `ipam${i}.json`);
    await writeFile(path, text);
    const a = allocator(path);
    await assert.rejects(a.start(), (e: unknown) => {
      assert.ok(e instanceof IpamPersistenceError, String(e));
      assert.match(e.message, new RegExp(`^IPAM data in ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is corrupted \\(.*\\): move it aside or run weave reset$`));
      assert.match(e.message, why);
      return true;
    });
    assert.equal(await readFile(path, 'utf8'), text, 'file kept');
    await assert.rejects(a.allocate('c'), IpamPersistenceError, 'no allocation over a corrupted file');
    assert.equal(await readFile(path, 'utf8'), text, 'never overwritten');
  }
  const fp = new FilePersistence(join(dir, 'ipam0.json'));
  await assert.rejects(fp.load(), IpamPersistenceError);
  await assert.rejects(fp.save({ version: 1, peer: SELF, range: '10.32.0.0/12', ring: null, allocations: [], paxos: null }), /is corrupted/);
});

test('state of another peer or another range is refused', async () => {
  const dir = await tmp();
  const path = join(dir, 'ipam.json');
  const a = allocator(path);
  await a.start();
  await a.allocate('c');
  a.close();
  const other = allocator(path, '10.40.0.0/16');
  await assert.rejects(other.start(), { message: /created for range 10.32.0.0\/12 but the IPAM range is 10.40.0.0\/16/ });
  const text = await readFile(path, 'utf8');
  await writeFile(path, text.replace(SELF, 'bb:00:00:00:00:09'));
  await assert.rejects(allocator(path).start(), { message: /belongs to peer bb:00:00:00:00:09 but this peer is aa:00:00:00:00:01/ });
});

test('remove() deletes the file and tolerates its absence', async () => {
  const dir = await tmp();
  const fp = new FilePersistence(join(dir, 'ipam.json'));
  await fp.save({ version: 1, peer: SELF, range: '10.32.0.0/12', ring: null, allocations: [], paxos: null });
  assert.ok((await fp.load()) !== undefined);
  await fp.remove();
  await fp.remove();
  assert.equal(await fp.load(), undefined);
});
