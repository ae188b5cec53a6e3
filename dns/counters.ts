/**
 * weaveDNS's counters across threads: the server (in a worker thread, dns/threaded.ts)
 * counts queries, drops and upstream failures into a SharedArrayBuffer; the owner of the
 * metrics (the `dns` subsystem on the main thread) reads them when /metrics is scraped.
 * Pure: no sockets, timers or files.
 *
 * Each distinct counter key gets a slot (a BigInt64 cell, incremented with Atomics.add,
 * so the reader never sees a torn value). The writer announces a new slot once
 * (`onSlot(slot, key)`; the threaded server posts it to the main thread). Keys are
 * bounded per kind, so hostile query types cannot grow the label set without bound:
 * at most {@link MAX_QUERY_KEYS} (type, result) pairs for queries (issue #14's 256-label
 * cap; the rest count as type "other", result "other"), {@link MAX_REASON_KEYS} reasons
 * each for drops and upstream failures (the rest count as reason "other").
 */

/** Counter kinds: queries by (type, result), drops by reason, upstream failures by reason. */
export type CounterKind = 'query' | 'dropped' | 'upstream';

/** Most (type, result) pairs counted separately, the "other/other" pair included. */
export const MAX_QUERY_KEYS = 256;
/** Most reasons counted separately per kind (drops, upstream failures), "other" included. */
export const MAX_REASON_KEYS = 32;
/** Slots in the shared buffer. */
export const COUNTER_SLOTS = MAX_QUERY_KEYS + 2 * MAX_REASON_KEYS;

/** A counter value: kind and labels (query: [type, result]; others: [reason]). */
export interface CounterValue {
  kind: CounterKind;
  labels: string[];
  n: number;
}

/** The shared memory the counters live in (COUNTER_SLOTS BigInt64 cells). */
export function counterBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(COUNTER_SLOTS * 8);
}

const keyOf = (kind: CounterKind, labels: readonly string[]): string => `${kind}\0${labels.join('\0')}`;

/** The writing side (one writer per buffer). */
export class CounterWriter {
  private readonly cells: BigInt64Array;
  private readonly slots = new Map<string, number>();
  private readonly used: Record<CounterKind, number> = { query: 0, dropped: 0, upstream: 0 };
  private next = 0;

  /** @param onSlot told once per new slot, before its first increment is visible to matter */
  constructor(buf: SharedArrayBuffer, private readonly onSlot: (slot: number, key: string) => void) {
    this.cells = new BigInt64Array(buf);
  }

  /** Count one query answered: qtype ("A") and result ("NOERROR", "forwarded", …). */
  query(qtype: string, result: string): void {
    Atomics.add(this.cells, this.slot('query', [qtype, result]), 1n);
  }

  /** Count one dropped query, by reason. */
  dropped(reason: string): void {
    Atomics.add(this.cells, this.slot('dropped', [reason]), 1n);
  }

  /** Count one upstream failure, by reason. */
  upstream(reason: string): void {
    Atomics.add(this.cells, this.slot('upstream', [reason]), 1n);
  }

  private slot(kind: CounterKind, labels: string[]): number {
    const key = keyOf(kind, labels);
    const s = this.slots.get(key);
    if (s !== undefined) return s;
    const cap = kind === 'query' ? MAX_QUERY_KEYS : MAX_REASON_KEYS;
    // The last key of each kind is its overflow ("other"), so it is always available.
    const over = kind === 'query' ? ['other', 'other'] : ['other'];
    const k = this.used[kind] < cap - 1 || labels.join('\0') === over.join('\0') ? key : keyOf(kind, over);
    const have = this.slots.get(k);
    if (have !== undefined) return have;
    const slot = this.next++;
    this.used[kind]++;
    this.slots.set(k, slot);
    this.onSlot(slot, k);
    return slot;
  }
}

/** The reading side: learns slots from the writer's announcements, reads them at any time. */
export class CounterReader {
  private readonly cells: BigInt64Array;
  private readonly known = new Map<number, { kind: CounterKind; labels: string[] }>();

  constructor(buf: SharedArrayBuffer) {
    this.cells = new BigInt64Array(buf);
  }

  /** Record a slot announced by the writer; ignores out-of-range slots and malformed keys. */
  learn(slot: number, key: string): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.cells.length) return;
    const [kind, ...labels] = key.split('\0');
    if (kind !== 'query' && kind !== 'dropped' && kind !== 'upstream') return;
    this.known.set(slot, { kind, labels });
  }

  /** Every known counter with its current value. */
  read(): CounterValue[] {
    return [...this.known].map(([slot, k]) => ({ ...k, n: Number(Atomics.load(this.cells, slot)) }));
  }

  /** The value of one counter (0 when never counted). */
  get(kind: CounterKind, ...labels: string[]): number {
    const key = labels.join('\0');
    let n = 0;
    for (const [slot, k] of this.known) if (k.kind === kind && k.labels.join('\0') === key) n += Number(Atomics.load(this.cells, slot));
    return n;
  }
}
