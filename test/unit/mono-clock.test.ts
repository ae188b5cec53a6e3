/**
 * Durations in the data path and the control connections run on a monotonic clock
 * (router/mesh/mono-clock.ts). Regression for chaos seed 7410: the test clock hook stepped
 * a router's wall clock forward by an hour, and because the sleeve measured "no UDP traffic
 * for 35 s" with Date.now(), every connection of that router closed at once; a real NTP
 * step does the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { monoNow } from '../../router/mesh/mono-clock.js';

test('monoNow: starts near the wall clock, ignores a stepped Date.now, never goes back', () => {
  const realNow = Date.now;
  const a = monoNow();
  assert.ok(Math.abs(a - realNow()) < 60_000, 'reads like epoch ms at process start');
  try {
    Date.now = () => realNow() + 3_600_000;
    const b = monoNow();
    assert.ok(b >= a && b - a < 1_000, `a +1 h wall-clock step moved monoNow by ${b - a} ms`);
    Date.now = () => realNow() - 86_400_000;
    const c = monoNow();
    assert.ok(c >= b && c - b < 1_000, `a -1 day wall-clock step moved monoNow by ${c - b} ms`);
  } finally {
    Date.now = realNow;
  }
});

test('liveness and heartbeat code measures durations with monoNow, not Date.now', () => {
  // dist/test/unit → repository root (the compiled sources sit under dist/).
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  for (const f of ['router/overlay/sleeve.js', 'router/overlay/fastdp.js', 'router/overlay/forwarder.js', 'router/mesh/connection.js', 'router/mesh/gossip.js']) {
    const src = readFileSync(path.join(root, f), 'utf8');
    assert.doesNotMatch(src, /Date\.now\(\)/, `${f} uses Date.now() (a wall-clock step would expire or freeze its timeouts)`);
    assert.match(src, /monoNow\(\)/, `${f} no longer uses monoNow()`);
  }
});
