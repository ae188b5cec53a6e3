import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayWindow } from '../../router/crypto/replay-window.js';
import { mulberry32 as prng } from '../lib/prng.js';


/** Reference model: the documented acceptance rule over a Set of everything accepted. */
class ModelWindow {
  private seen = new Set<number>();
  highest = -1;
  constructor(readonly size: number) {}
  check(seq: number): boolean {
    if (!Number.isSafeInteger(seq) || seq < 0) return false;
    if (seq > this.highest) return true;
    if (seq + this.size <= this.highest) return false;
    return !this.seen.has(seq);
  }
  update(seq: number): boolean {
    if (!this.check(seq)) return false;
    this.seen.add(seq);
    if (seq > this.highest) this.highest = seq;
    return true;
  }
}

test('in-order sequence numbers are all accepted, each exactly once', () => {
  const w = new ReplayWindow();
  assert.equal(w.highest, -1);
  for (let s = 0; s < 5000; s++) {
    assert.equal(w.check(s), true, `check ${s}`);
    assert.equal(w.update(s), true, `update ${s}`);
    assert.equal(w.highest, s);
    assert.equal(w.update(s), false, `duplicate ${s}`);
  }
});

test('check() does not change state', () => {
  const w = new ReplayWindow(64);
  assert.equal(w.check(10), true);
  assert.equal(w.check(10), true);
  assert.equal(w.highest, -1);
  w.update(10);
  assert.equal(w.check(10), false);
  assert.equal(w.check(9), true);
  assert.equal(w.check(9), true);
  assert.equal(w.highest, 10);
});

test('out of order within the window is accepted once; duplicates rejected', () => {
  const w = new ReplayWindow(2048);
  assert.equal(w.size, 2016);
  assert.equal(w.update(3000), true);
  assert.equal(w.update(2999), true);
  assert.equal(w.update(1500), true);
  // 985 = 3000 - 2015 is the oldest number still inside the window.
  assert.equal(w.update(985), true);
  assert.equal(w.update(2999), false);
  assert.equal(w.update(1500), false);
  assert.equal(w.update(985), false);
  assert.equal(w.update(3000), false);
  assert.equal(w.highest, 3000);
});

test('too old: exactly `size` behind highest is rejected, one less is accepted', () => {
  for (const bits of [64, 128, 2048]) {
    const w = new ReplayWindow(bits);
    const size = bits - 32;
    const top = 10 * bits + 7;
    w.update(top);
    assert.equal(w.check(top - size), false, `bits ${bits}: top-size`);
    assert.equal(w.update(top - size), false);
    assert.equal(w.check(top - size + 1), true, `bits ${bits}: top-size+1`);
    assert.equal(w.update(top - size + 1), true);
    assert.equal(w.update(0), false);
  }
});

test('large jumps forget the old window; numbers past 2^32 and near 2^53 work', () => {
  const w = new ReplayWindow(128);
  for (let s = 0; s < 100; s++) w.update(s);
  const big = 2 ** 40 + 5;
  assert.equal(w.update(big), true);
  assert.equal(w.update(99), false, 'old after the jump');
  assert.equal(w.update(big - 1), true, 'just below the jump is new');
  assert.equal(w.update(big - 96), false, 'size=96 behind is too old');
  assert.equal(w.update(big - 95), true);
  // Crossing the 2^32 boundary of the wire's low word and the ring's wrap.
  const w2 = new ReplayWindow(64);
  const base = 2 ** 32 - 40;
  for (let s = base; s < base + 200; s += 2) assert.equal(w2.update(s), true, `even ${s}`);
  for (let s = base + 200 - 31; s < base + 200; s += 2) assert.equal(w2.update(s), true, `odd ${s}`);
  for (let s = base + 200 - 31; s < base + 200; s++) assert.equal(w2.update(s), false, `dup ${s}`);
  // Near the top of the safe range: block numbers exceed 2^31, so & would be wrong.
  const w3 = new ReplayWindow(64);
  const top = Number.MAX_SAFE_INTEGER;
  assert.equal(w3.update(top - 40), true);
  assert.equal(w3.update(top), true);
  assert.equal(w3.update(top - 5), true);
  assert.equal(w3.update(top - 5), false);
  assert.equal(w3.update(top - 40), false, 'now too old');
  assert.equal(w3.update(top - 31), true);
  assert.equal(w3.highest, top);
});

test('rejects sequence numbers that are not non-negative safe integers', () => {
  const w = new ReplayWindow(64);
  for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53, -0.5]) {
    assert.equal(w.check(bad), false, String(bad));
    assert.equal(w.update(bad), false, String(bad));
  }
  assert.equal(w.highest, -1);
});

test('constructor validates the bitmap size', () => {
  for (const bad of [0, 32, 63, 100, 2048.5, -64, 2 ** 25]) {
    assert.throws(() => new ReplayWindow(bad), RangeError, String(bad));
  }
  assert.equal(new ReplayWindow(64).size, 32);
});

test('reset() forgets everything', () => {
  const w = new ReplayWindow(64);
  w.update(5);
  w.update(500);
  w.reset();
  assert.equal(w.highest, -1);
  assert.equal(w.update(5), true);
  assert.equal(w.update(4), true);
});

test('exhaustive model check: every sequence of 4 numbers from 0..47 (64-bit window)', () => {
  const N = 48;
  let cases = 0;
  const w = new ReplayWindow(64);
  for (let a = 0; a < N; a++) for (let b = 0; b < N; b++) for (let c = 0; c < N; c++) for (let d = 0; d < N; d += 3) {
    w.reset();
    const m = new ModelWindow(32);
    for (const s of [a, b, c, d]) {
      const expect = m.check(s);
      if (w.check(s) !== expect || w.update(s) !== m.update(s)) {
        assert.fail(`diverged on sequence ${[a, b, c, d]} at ${s}: expected ${expect}`);
      }
    }
    cases++;
  }
  assert.equal(cases, N * N * N * 16);
});

test('randomised model check: reorder, duplicates and jumps (seeded)', () => {
  for (const [bits, seed] of [[64, 1], [128, 2], [256, 3], [2048, 4]] as const) {
    const rnd = prng(seed);
    const w = new ReplayWindow(bits);
    const m = new ModelWindow(bits - 32);
    let cursor = 0;
    let accepted = 0;
    for (let i = 0; i < 20000; i++) {
      const r = rnd();
      let s: number;
      if (r < 0.5) s = cursor++;
      else if (r < 0.8) s = Math.max(0, cursor - Math.floor(rnd() * bits * 1.5));
      else if (r < 0.95) s = cursor + Math.floor(rnd() * bits * 2);
      else s = cursor += Math.floor(rnd() * 2 ** 36);
      const expect = m.update(s);
      assert.equal(w.update(s), expect, `bits ${bits} seed ${seed} step ${i} seq ${s}`);
      if (expect) accepted++;
      assert.equal(w.highest, m.highest);
    }
    assert.ok(accepted > 5000 && accepted < 20000, `accepted ${accepted}`);
  }
});
