import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { withSpinner } from '../../cli/spinner.js';

/** A promise settled by the test itself, so no assertion races a real sleep. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

/** Poll `cond` every 5 ms for at most 5 s (bounded); throws with `what` when it never holds. */
async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await sleep(5);
  if (!cond()) throw new Error(`timed out after 5 s waiting for ${what}`);
}

function stream(isTTY: boolean) {
  const writes: string[] = [];
  return { isTTY, writes, write(s: string) { writes.push(s); return true; } };
}

test('spinner: silent when the stream is not a TTY', async () => {
  const s = stream(false);
  assert.equal(await withSpinner('waiting for router', sleep(40).then(() => 42), s, { intervalMs: 5, delayMs: 0 }), 42);
  assert.deepEqual(s.writes, []);
});

test('spinner: draws frames with the awaited thing, then erases the line', async () => {
  const s = stream(true);
  let n = 0;
  const done = deferred<string>();
  const p = withSpinner(() => `waiting for consensus (${++n})`, done.promise, s, { intervalMs: 10, delayMs: 0 });
  await waitFor(() => s.writes.length >= 3, 'three spinner frames');
  done.resolve('ok');
  const v = await p;
  assert.equal(v, 'ok');
  assert.ok(s.writes.length >= 3, `only ${s.writes.length} writes`);
  assert.match(s.writes[0], /^\r\x1b\[K[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] waiting for consensus \(1\)$/);
  assert.match(s.writes[1], /waiting for consensus \(2\)$/);
  assert.notEqual(s.writes[0].slice(4, 5), s.writes[1].slice(4, 5), 'frame advances');
  assert.equal(s.writes.at(-1), '\r\x1b[K');
});

test('spinner: elapsed seconds from the injected clock; nothing drawn before the delay', async () => {
  const s = stream(true);
  let t = 0;
  const done = deferred<void>();
  const p = withSpinner('waiting', done.promise, s, { intervalMs: 10, delayMs: 500, now: () => t });
  await sleep(30);
  assert.equal(s.writes.length, 0, 'nothing before the injected clock passes the delay');
  t = 2500;
  await waitFor(() => s.writes.some((w) => w.endsWith('waiting (2s)')), 'a frame showing 2 s elapsed');
  done.resolve();
  await p;
  assert.equal(s.writes.at(-1), '\r\x1b[K');
});

test('spinner: a quick promise draws nothing and writes no erase', async () => {
  const s = stream(true);
  await withSpinner('x', Promise.resolve(1), s, { intervalMs: 10, delayMs: 150 });
  assert.deepEqual(s.writes, []);
});

test('spinner: rejection propagates and the line is erased', async () => {
  const s = stream(true);
  await assert.rejects(withSpinner('attach', sleep(40).then(() => { throw new Error('no IPAM'); }), s, { intervalMs: 5, delayMs: 0 }), /no IPAM/);
  assert.equal(s.writes.at(-1), '\r\x1b[K');
});

test('spinner: a throwing label does not break the wait', async () => {
  const s = stream(true);
  await withSpinner(() => { throw new Error('bad label'); }, sleep(30), s, { intervalMs: 5, delayMs: 0 });
  assert.ok(s.writes.some((w) => w.includes('(bad label)')));
});
