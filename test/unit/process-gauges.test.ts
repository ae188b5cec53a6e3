/**
 * The process gauges the soak samples (router/api/observability.ts watchEventLoop):
 * memory by kind, major garbage collections and the live-heap estimate after one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Registry } from 'prom-client';
import { watchEventLoop } from '../../router/api/observability.js';

function value(text: string, name: string): number {
  const m = new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} ([0-9.eE+-]+)$`, 'm').exec(text);
  assert.ok(m, `${name} in the metrics`);
  return Number(m[1]);
}

test('memory by kind, major GCs and the heap after the last one are exported', async () => {
  const reg = new Registry();
  const w = watchEventLoop(reg);
  try {
    const before = await reg.metrics();
    for (const k of ['rss', 'heap_total', 'heap_used', 'external', 'array_buffers']) assert.ok(value(before, `tsweave_memory_bytes{kind="${k}"}`) > 0, k);
    const n0 = value(before, 'tsweave_gc_major_total');
    // Force a major collection (gc() exposed for this process only).
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    // The observer runs after the collection, on a later turn.
    let after = '';
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = await reg.metrics();
      if (value(after, 'tsweave_gc_major_total') > n0) break;
    }
    assert.ok(value(after, 'tsweave_gc_major_total') >= n0 + 1, 'the major collection was counted');
    const live = value(after, 'tsweave_heap_after_major_gc_bytes');
    assert.ok(live > 0 && live <= process.memoryUsage().heapTotal, `live-heap estimate ${live} in (0, heapTotal]`);
  } finally {
    w.stop();
  }
});

test('event-loop delay: a blocked loop shows in max and p99, an idle one reads near 0 (the timer interval is not counted)', async () => {
  const reg = new Registry();
  const w = watchEventLoop(reg, 1000);
  const q = async (k: string): Promise<number> => value(await reg.metrics(), `tsweave_event_loop_delay_seconds{quantile="${k}"}`);
  try {
    assert.equal(await q('1'), 0, 'nothing measured before the first scrape');
    await new Promise((r) => setTimeout(r, 200));
    const until = Date.now() + 300;
    while (Date.now() < until) { /* block the event loop for 300 ms */ }
    // Wait until the window that holds the block has closed (1 s windows from the first scrape).
    let max = 0;
    for (let i = 0; i < 30 && max === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      max = await q('1');
    }
    assert.ok(max >= 0.2 && max < 1, `max ${max} s reflects the 300 ms block`);
    const p50 = await q('0.5');
    assert.ok(p50 < 0.008, `p50 ${p50} s: an idle loop is about on time once the 50 ms interval is taken off`);
  } finally {
    w.stop();
  }
});
