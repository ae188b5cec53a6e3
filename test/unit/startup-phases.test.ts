import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StartupPhases } from '../../router/daemon/startup-phases.js';

test('StartupPhases: "load" runs from the process start, then each phase from the previous mark', () => {
  const times = [700.4, 760, 1000.6, 1001];
  let i = 0;
  const p = new StartupPhases(() => times[i++]!);
  p.mark('state');
  p.mark('fastdp');
  p.mark('api');
  assert.equal(p.summary(), '1001 ms since the process started (load 700, state 60, fastdp 241, api 0)');
});

test('StartupPhases: with only "load" the total is the load time', () => {
  const p = new StartupPhases(() => 42);
  assert.equal(p.summary(), '42 ms since the process started (load 42)');
});
