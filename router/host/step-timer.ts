/**
 * Per-request step timings (the CNI ADD breakdown of `npm run bench:cni`). A request
 * runs inside `timeSteps()`; code on its path calls `mark('step')` after each step,
 * which records the milliseconds since the previous mark. The record follows the
 * request through awaits (AsyncLocalStorage), so shared code (netdev, endpoints) needs
 * no extra parameter; outside a timed request `mark` does nothing and costs one lookup.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/** Steps in order, each `[name, milliseconds since the previous mark]`. */
export type Steps = Array<[string, number]>;

interface Rec { last: bigint; steps: Steps }

const store = new AsyncLocalStorage<Rec>();

/** Run `fn` with step timing on; resolves to its value and the steps marked inside. */
export async function timeSteps<T>(fn: () => Promise<T>): Promise<{ value: T; steps: Steps }> {
  const rec: Rec = { last: process.hrtime.bigint(), steps: [] };
  const value = await store.run(rec, fn);
  return { value, steps: rec.steps };
}

/** Close the current step under `name` (no-op outside timeSteps). Repeated names add up. */
export function mark(name: string): void {
  const rec = store.getStore();
  if (!rec) return;
  const now = process.hrtime.bigint();
  const ms = Number(now - rec.last) / 1e6;
  rec.last = now;
  const same = rec.steps.find((s) => s[0] === name);
  if (same) same[1] += ms;
  else rec.steps.push([name, ms]);
}
