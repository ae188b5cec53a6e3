import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { IdleGcPolicy, MAX_CODE_DROPS, collectGarbage, dropCodePages, trimNativeHeap, type IdleGcOptions } from '../../router/daemon/heap.js';

const opts: IdleGcOptions = { checkMs: 5_000, minIntervalMs: 60_000, growthBytes: 4 << 20 }; // fixed here, not the defaults
const MiB = 1 << 20;

test('idle GC: collects once the data path was quiet for a whole check and the heap grew', () => {
  const p = new IdleGcPolicy(0, 10 * MiB, opts);
  // The first check has nothing to compare with: never "quiet".
  assert.equal(p.check(65_000, 7, 20 * MiB), false);
  assert.equal(p.check(70_000, 7, 20 * MiB), true);
});

test('idle GC: never while frames move, however much the heap grew', () => {
  const p = new IdleGcPolicy(0, 10 * MiB, opts);
  let frames = 0;
  for (let t = 65_000; t < 600_000; t += 5_000) assert.equal(p.check(t, (frames += 3), 200 * MiB), false, `at ${t}`);
  // Traffic stops: the next check after a whole quiet interval collects.
  assert.equal(p.check(605_000, frames, 200 * MiB), true);
});

test('idle GC: not sooner than minIntervalMs after the last collection', () => {
  const p = new IdleGcPolicy(0, 10 * MiB, opts);
  p.check(5_000, 1, 30 * MiB);
  assert.equal(p.check(10_000, 1, 30 * MiB), false, 'startup collection 10 s ago');
  assert.equal(p.check(60_000, 1, 30 * MiB), true);
  p.collected(60_000, 11 * MiB);
  assert.equal(p.check(65_000, 1, 30 * MiB), false);
  assert.equal(p.check(115_000, 1, 30 * MiB), false);
  assert.equal(p.check(120_000, 1, 30 * MiB), true);
});

test('idle GC: not when the heap did not grow by growthBytes over what the last collection left', () => {
  const p = new IdleGcPolicy(0, 10 * MiB, opts);
  p.check(100_000, 1, 10 * MiB + opts.growthBytes - 1);
  assert.equal(p.check(105_000, 1, 10 * MiB + opts.growthBytes - 1), false);
  assert.equal(p.check(110_000, 1, 10 * MiB + opts.growthBytes), true);
  p.collected(110_000, 12 * MiB);
  assert.equal(p.check(200_000, 1, 12 * MiB + opts.growthBytes - 1), false, 'baseline moved to what the collection left');
});

test('idle GC: start-up pages are dropped at the first quiet check and after the first collection, never more', () => {
  assert.equal(MAX_CODE_DROPS, 2);
  const p = new IdleGcPolicy(0, 10 * MiB, opts);
  p.check(5_000, 1, 10 * MiB);
  assert.equal(p.takeCodeDrop(), false, 'the first check has nothing to compare with: not quiet');
  p.check(10_000, 2, 10 * MiB);
  assert.equal(p.takeCodeDrop(), false, 'frames moved');
  p.check(15_000, 2, 10 * MiB);
  assert.equal(p.takeCodeDrop(), true, 'first quiet check');
  assert.equal(p.takeCodeDrop(), false, 'used up');
  p.check(20_000, 2, 10 * MiB);
  assert.equal(p.takeCodeDrop(), false, 'nothing new since');
  p.collected(70_000, 12 * MiB);
  p.check(75_000, 3, 12 * MiB);
  assert.equal(p.takeCodeDrop(), false, 'after a collection, still only when quiet');
  p.check(80_000, 3, 12 * MiB);
  assert.equal(p.takeCodeDrop(), true, 'after the first collection');
  p.collected(150_000, 12 * MiB);
  p.check(155_000, 3, 12 * MiB);
  assert.equal(p.takeCodeDrop(), false, `only ${MAX_CODE_DROPS} drops in a router's life`);
});

test('collectGarbage runs a full collection in this process', () => {
  assert.equal(collectGarbage(), true);
  assert.equal(collectGarbage(), true, 'a second call reuses the gc function');
});

test('trimNativeHeap hands freed malloc pages in the middle of the heap back to the kernel', async () => {
  // 48 MiB of 4 KiB backing stores (malloc'd, below the mmap threshold), then one kept
  // after them so that the freed ones are not at the top of the heap (where free()
  // would give them back by itself).
  let blocks: Buffer[] | undefined = [];
  for (let i = 0; i < 12_288; i++) blocks.push(Buffer.allocUnsafeSlow(4096).fill(1));
  const keep = Buffer.allocUnsafeSlow(4096).fill(2);
  blocks = undefined;
  assert.equal(collectGarbage(), true);
  await sleep(300); // V8 frees backing stores on its sweeper
  const before = process.memoryUsage.rss();
  assert.equal(trimNativeHeap(), true, 'malloc_trim released nothing: is build/Release/heap.node built?');
  const after = process.memoryUsage.rss();
  assert.ok(before - after >= 16 * MiB, `RSS ${(before / MiB).toFixed(1)} → ${(after / MiB).toFixed(1)} MiB: expected ≥ 16 MiB released`);
  assert.equal(keep[0], 2);
});

/** Resident file-backed memory of this process (bytes), from /proc/self/status RssFile. */
function rssFile(): number {
  const m = /^RssFile:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  assert.ok(m, 'no RssFile line in /proc/self/status');
  return Number(m[1]) * 1024;
}

test('dropCodePages unmaps resident read-only file pages, and the code they held still runs', () => {
  // Touch a spread of node's code and read-only data first (hashing, JSON, URL parsing).
  const digest = (): string => createHash('sha256').update(JSON.stringify({ u: new URL('http://h/p?q=1').search })).digest('hex');
  const want = digest();
  const before = rssFile();
  const r = dropCodePages();
  assert.ok(r, 'dropCodePages returned null: is build/Release/heap.node built?');
  const after = rssFile();
  assert.ok(r.ranges > 0 && r.skipped === 0, `looked at ${r.ranges} mappings, skipped ${r.skipped}`);
  assert.ok(r.bytes >= 4 * MiB, `advised only ${(r.bytes / MiB).toFixed(1)} MiB`);
  assert.ok(before - after >= 4 * MiB, `RssFile ${(before / MiB).toFixed(1)} → ${(after / MiB).toFixed(1)} MiB: expected ≥ 4 MiB unmapped`);
  // The dropped pages come back from the page cache on use, unchanged.
  assert.equal(digest(), want);
  assert.equal(collectGarbage(), true);
  assert.equal(dropCodePages()?.skipped, 0, 'a second call works as well');
  assert.equal(digest(), want);
});
