import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TargetTable, normaliseAddress, resolutionFailure, discoveredDialAt, DISCOVERED_DIAL_DELAY_MS, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS, ALIVE_MAX_BACKOFF_MS } from '../../router/mesh/connection-maker.js';

test('normaliseAddress adds the default port and rejects junk', () => {
  assert.equal(normaliseAddress('10.0.0.1', 6783), '10.0.0.1:6783');
  assert.equal(normaliseAddress('host.example:7000', 6783), 'host.example:7000');
  assert.throws(() => normaliseAddress('a b', 6783), /invalid peer address/);
  assert.throws(() => normaliseAddress('h:0', 6783), /invalid port/);
  assert.throws(() => normaliseAddress('h:70000', 6783), /invalid port/);
  assert.throws(() => normaliseAddress('', 6783), /empty/);
});

test('a failing target backs off exponentially up to the cap, with jitter inside ±25%', () => {
  const t = new TargetTable(6783);
  const a = t.add('10.0.0.1', true, 0);
  let now = 0;
  let prevBase = 0;
  for (let i = 1; i <= 12; i++) {
    const due = t.due(now, () => false);
    assert.deepEqual(due.map((x) => x.address), [a], `attempt ${i} is due`);
    assert.deepEqual(t.due(now, () => false), [], 'not dialled twice while connecting');
    t.failed(a, 'refused', now, () => 0.5);
    const base = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** (i - 1));
    assert.equal(t.get(a)!.nextAttempt - now, base);
    assert.ok(base >= prevBase);
    prevBase = base;
    assert.deepEqual(t.due(now + base - 1, () => false), [], 'not before the backoff');
    now += base;
  }
  assert.equal(prevBase, MAX_BACKOFF_MS);
  t.failed(a, 'x', now, () => 0);
  assert.equal(t.get(a)!.nextAttempt - now, MAX_BACKOFF_MS * 0.75);
  t.failed(a, 'x', now, () => 0.9999);
  assert.ok(t.get(a)!.nextAttempt - now < MAX_BACKOFF_MS * 1.25);
});

test('a target found to be ourselves is never retried; connected ones are not dialled', () => {
  const t = new TargetTable(6783);
  const a = t.add('10.0.0.1', true, 0);
  const b = t.add('10.0.0.2:7000', true, 0);
  t.due(0, () => false);
  t.markSelf(a);
  t.failed(a, 'cannot connect to ourself', 0);
  assert.equal(t.get(a)!.state, 'self');
  assert.deepEqual(t.due(10 ** 9, (x) => x === b), [], 'connecting: not dialled again');
  t.succeeded(b);
  assert.deepEqual(t.due(10 ** 9, (x) => x === b), []);
  assert.equal(t.get(b)!.state, 'connected');
  // The connection goes away: it is dialled again soon, without a failure counted.
  assert.deepEqual(t.due(10 ** 9, () => false), []);
  assert.deepEqual(t.due(10 ** 9 + INITIAL_BACKOFF_MS, () => false).map((x) => x.address), [b]);
  assert.equal(t.get(b)!.attempt, 0);
});

test('discovered targets are pruned, direct ones kept; forget removes', () => {
  const t = new TargetTable(6783);
  t.add('10.0.0.1', true, 0);
  t.add('10.0.0.2', false, 0);
  t.prune(() => false);
  assert.deepEqual(t.list().map((x) => x.address), ['10.0.0.1:6783']);
  assert.deepEqual(t.directAddresses(), ['10.0.0.1:6783']);
  assert.equal(t.forget('10.0.0.1'), true);
  assert.equal(t.forget('10.0.0.1'), false);
  assert.deepEqual(t.list(), []);
});

test('the discovered-dial budget bounds outbound dials to discovered peers, never direct ones', () => {
  const t = new TargetTable(6783);
  t.add('10.0.0.9', true, 0);
  for (let i = 1; i <= 5; i++) t.add(`10.0.0.${i}`, false, 0);
  const first = t.due(0, () => false, 2).map((x) => x.address);
  assert.deepEqual(first, ['10.0.0.1:6783', '10.0.0.2:6783', '10.0.0.9:6783'], 'the direct target plus the first two discovered, in address order');
  assert.deepEqual(t.due(0, () => false, 2), [], 'dials in flight use up the budget');
  t.succeeded('10.0.0.1:6783');
  t.succeeded('10.0.0.2:6783');
  const connected = new Set(['10.0.0.1:6783', '10.0.0.2:6783']);
  assert.deepEqual(t.due(0, (a) => connected.has(a), 0), [], 'no budget: discovered peers wait');
  assert.deepEqual(t.due(0, (a) => connected.has(a), 1).map((x) => x.address), ['10.0.0.3:6783']);
  assert.equal(t.get('10.0.0.4:6783')!.state, 'waiting', 'a target left out keeps waiting, not failing');
  assert.equal(t.get('10.0.0.4:6783')!.attempt, 0);
});

test('a name that does not resolve stays a target, flagged unresolved until it resolves', () => {
  const t = new TargetTable(6783);
  const a = t.add('peer-b.example', true, 0);
  assert.equal(resolutionFailure(Object.assign(new Error('getaddrinfo ENOTFOUND peer-b.example'), { code: 'ENOTFOUND', syscall: 'getaddrinfo' })), 'ENOTFOUND');
  assert.equal(resolutionFailure(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED', syscall: 'connect' })), undefined);
  t.due(0, () => false);
  t.failed(a, 'getaddrinfo ENOTFOUND peer-b.example', 0, () => 0.5, 'ENOTFOUND');
  assert.equal(t.get(a)!.unresolved, 'ENOTFOUND');
  assert.deepEqual(t.directAddresses(), [a], 'kept: it may resolve later');
  t.due(10_000, () => false);
  t.failed(a, 'connect ECONNREFUSED', 10_000, () => 0.5, undefined);
  assert.equal(t.get(a)!.unresolved, undefined, 'resolved now (refused is a reachability problem)');
  t.failed(a, 'x', 20_000, () => 0.5, 'EAI_AGAIN');
  t.succeeded(a);
  assert.equal(t.get(a)!.unresolved, undefined);
});

test('nextDue: now while connecting, the earliest retry while retrying, Infinity when all are connected (adaptive tick)', () => {
  const t = new TargetTable(6783);
  assert.equal(t.nextDue(0), Infinity, 'no targets: no work');
  const a = t.add('10.0.0.1', true, 0);
  const b = t.add('10.0.0.2', false, 0);
  assert.equal(t.nextDue(0), 0, 'waiting targets are due now');
  t.due(0, () => false);
  assert.equal(t.nextDue(0), 0, 'connecting: look again soon');
  t.failed(a, 'refused', 0, () => 0.5);
  t.succeeded(b);
  assert.equal(t.nextDue(0), INITIAL_BACKOFF_MS, 'the retry time of the failed one');
  t.due(INITIAL_BACKOFF_MS, (x) => x === b);
  t.succeeded(a);
  assert.equal(t.nextDue(5_000), Infinity, 'all connected');
});

test('hastenAlive: an unreached target whose peer is alive through others is redialled within ALIVE_MAX_BACKOFF_MS', () => {
  const t = new TargetTable(6783);
  const a = t.add('10.0.0.1', true, 0);
  const b = t.add('10.0.0.2', true, 0);
  const c = t.add('10.0.0.3', true, 0);
  let now = 0;
  // Back all three off to the cap: a and b never reached (dial timeouts), c answered and refused us.
  for (let i = 0; i < 8; i++) {
    for (const x of t.due(now, () => false)) t.failed(x.address, x.address === c ? 'connection limit (30) reached' : 'connect timed out after 5 s', now, () => 0.5, undefined, x.address !== c);
    now += MAX_BACKOFF_MS;
  }
  now -= MAX_BACKOFF_MS;
  for (const x of [a, b, c]) assert.equal(t.get(x)!.nextAttempt - now, MAX_BACKOFF_MS, `${x} backed off to the cap`);
  const asked: string[] = [];
  const n = t.hastenAlive(now, (x) => {
    asked.push(x);
    return x === a || x === c;
  }, () => 0.5);
  assert.equal(n, 1, 'only a: b is not known alive, c answered (its backoff stands)');
  assert.deepEqual(asked, [a, b], 'c is not asked about: it was reached');
  assert.equal(t.get(a)!.nextAttempt - now, ALIVE_MAX_BACKOFF_MS);
  assert.equal(t.get(b)!.nextAttempt - now, MAX_BACKOFF_MS);
  assert.equal(t.get(c)!.nextAttempt - now, MAX_BACKOFF_MS);
  assert.deepEqual(t.due(now + ALIVE_MAX_BACKOFF_MS - 1, () => false), []);
  assert.deepEqual(t.due(now + ALIVE_MAX_BACKOFF_MS, () => false).map((x) => x.address), [a]);
  // Jitter stays inside ±25 % and never pushes an attempt later than it was.
  t.failed(a, 'connect timed out after 5 s', now, () => 0.5, undefined, true);
  t.hastenAlive(now, () => true, () => 0);
  assert.equal(t.get(a)!.nextAttempt - now, ALIVE_MAX_BACKOFF_MS * 0.75);
  t.hastenAlive(now, () => true, () => 0.9999);
  assert.equal(t.get(a)!.nextAttempt - now, ALIVE_MAX_BACKOFF_MS * 0.75, 'not pushed later');
  t.failed(a, 'connect timed out after 5 s', now, () => 0.5, undefined, true);
  t.hastenAlive(now, () => true, () => 0.9999);
  assert.ok(t.get(a)!.nextAttempt - now < ALIVE_MAX_BACKOFF_MS * 1.25);
});

test('hastenAlive leaves early attempts, other states and reached peers alone; success clears unreached', () => {
  const t = new TargetTable(6783);
  const a = t.add('10.0.0.1', true, 0);
  t.due(0, () => false);
  t.failed(a, 'connect ECONNREFUSED', 0, () => 0.5, undefined, true); // attempt 1: 1 s
  let called = 0;
  assert.equal(t.hastenAlive(0, () => (++called, true)), 0);
  assert.equal(called, 0, 'a 1 s backoff is already short: alive() is not asked');
  assert.equal(t.get(a)!.nextAttempt, INITIAL_BACKOFF_MS);
  t.due(INITIAL_BACKOFF_MS, () => false);
  assert.equal(t.get(a)!.state, 'connecting');
  assert.equal(t.hastenAlive(10 ** 6, () => true), 0, 'connecting: untouched');
  t.succeeded(a);
  assert.equal(t.get(a)!.unreached, undefined);
  // A closed connection (handshake failure, heartbeat timeout) is not `unreached`: full backoff.
  for (let i = 0; i < 6; i++) t.failed(a, 'handshake did not complete within 10 s', 0, () => 0.5);
  assert.equal(t.get(a)!.nextAttempt, MAX_BACKOFF_MS);
  assert.equal(t.hastenAlive(0, () => true), 0);
  assert.equal(t.get(a)!.nextAttempt, MAX_BACKOFF_MS);
});

test('a clock stepped back does not freeze a retrying target (chaos seed 7005: h1 and h5 never redialled each other)', () => {
  const t = new TargetTable(6783);
  const a = t.add('10.0.0.5', true, 0);
  const day = 86_400_000;
  // The connection fails while the router's clock reads one day ahead, then the clock steps back.
  for (let i = 0; i < 6; i++) {
    for (const x of t.due(day + i * 40_000, () => false)) t.failed(x.address, 'connect timed out after 5 s', day + i * 40_000, () => 0.5);
  }
  assert.ok(t.get(a)!.nextAttempt > day, 'next attempt on the stepped clock');
  assert.ok(t.nextDue(1_000) <= 1_000 + MAX_BACKOFF_MS * 1.25, 'the next tick is not a day away');
  assert.deepEqual(t.due(1_000, () => false).map((x) => x.address), [a], 'dialled at once after the step back');
  // A normal backoff is untouched: not due early.
  t.failed(a, 'connect timed out after 5 s', 1_000, () => 0.5);
  assert.deepEqual(t.due(1_001, () => false), []);
});

test('discoveredDialAt: the lower peer name dials a discovered peer at once, the higher one holds back', () => {
  const lo = '02:00:00:00:00:05';
  const hi = '02:00:00:00:00:1e';
  assert.equal(discoveredDialAt(lo, hi, 1000), 1000);
  assert.equal(discoveredDialAt(hi, lo, 1000), 1000 + DISCOVERED_DIAL_DELAY_MS);
  // The held-back target is not due before then, and is dialled after it unless connected meanwhile.
  const t = new TargetTable(6783);
  t.add('10.0.0.5', false, discoveredDialAt(hi, lo, 1000));
  assert.deepEqual(t.due(1000, () => false), []);
  assert.equal(t.nextDue(1000), 1000 + DISCOVERED_DIAL_DELAY_MS);
  assert.deepEqual(t.due(1000 + DISCOVERED_DIAL_DELAY_MS, () => true), [], 'the lower name connected first');
  const t2 = new TargetTable(6783);
  t2.add('10.0.0.5', false, discoveredDialAt(hi, lo, 1000));
  assert.deepEqual(t2.due(1000 + DISCOVERED_DIAL_DELAY_MS, () => false).map((x) => x.address), ['10.0.0.5:6783']);
});
