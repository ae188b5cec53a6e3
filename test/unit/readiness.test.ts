/** Readiness decision (router/api/readiness.ts): first unmet condition wins, observer and disabled IPAM are ready. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readiness, linksFromProcNetDev } from '../../router/api/readiness.js';

const up = new Set(['lo', 'weave', 'vethwe-tap']);
const base = { observer: false, links: up, bridge: 'weave', tap: 'vethwe-tap' };

test('ready when the data path is up and the IPAM ring exists (or IPAM is off)', () => {
  assert.deepEqual(readiness({ ...base, ipamStatus: 'ready' }), { Ready: true, Reason: 'ready' });
  assert.equal(readiness({ ...base, ipamStatus: undefined }).Ready, true);
});

test('not ready while IPAM waits; idle says how to start consensus; an observer is ready', () => {
  const a = readiness({ ...base, ipamStatus: 'awaiting consensus (quorum 2, known 1)' });
  assert.deepEqual(a, { Ready: false, Reason: 'IPAM: awaiting consensus (quorum 2, known 1)' });
  assert.match(readiness({ ...base, ipamStatus: 'idle (consensus deferred until the first allocation or weave prime; quorum 2)' }).Reason, /run weave prime/);
  assert.equal(readiness({ ...base, observer: true, ipamStatus: 'waiting for the ring from other peers (observer)' }).Ready, true);
});

test('a missing bridge or TAP is the reason, before IPAM', () => {
  assert.match(readiness({ ...base, links: new Set(['lo', 'vethwe-tap']), ipamStatus: 'idle' }).Reason, /bridge weave is missing/);
  assert.match(readiness({ ...base, links: new Set(['lo', 'weave']), ipamStatus: 'ready' }).Reason, /TAP vethwe-tap is missing/);
});

test('linksFromProcNetDev reads interface names', () => {
  const text = 'Inter-|   Receive\n face |bytes packets\n    lo: 1 2 3\n weave: 0 0\nvethwe-tap: 5 6\n';
  assert.deepEqual([...linksFromProcNetDev(text)].sort(), ['lo', 'vethwe-tap', 'weave']);
});
