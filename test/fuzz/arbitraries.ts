/**
 * Shared pieces of the fuzz targets (test/fuzz/targets.ts, targets-services.ts): the
 * target shape, a structure-aware byte mutator and the "only these errors" check.
 */
import fc from 'fast-check';

/**
 * One decoder under test: an arbitrary of inputs and a check that throws only on a
 * real defect. `async` targets (a decoder behind a Promise, like the Docker plugin's
 * handlers) return a Promise from `check` and are run with fc.asyncProperty.
 */
export interface FuzzTarget {
  name: string;
  arb: fc.Arbitrary<unknown>;
  check(input: unknown): void | Promise<void>;
  async?: boolean;
}

/** Mutates valid bytes: flip bytes, truncate, append junk, or overwrite a 4-byte field with an extreme. */
export function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Buffer> {
  return fc.oneof(
    valid.map((b) => Buffer.from(b)),
    fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })).map(([b, flips]) => {
      const out = Buffer.from(b);
      for (const [i, v] of flips) if (out.length) out[i % out.length] = v;
      return out;
    }),
    fc.tuple(valid, fc.nat()).map(([b, n]) => Buffer.from(b.subarray(0, b.length ? n % b.length : 0))),
    fc.tuple(valid, fc.uint8Array({ maxLength: 64 })).map(([b, j]) => Buffer.concat([b, j])),
    fc.tuple(valid, fc.nat(), fc.constantFrom(0, 0xffffffff, 0x7fffffff, 0x10000, 0x800000)).map(([b, i, v]) => {
      const out = Buffer.from(b);
      if (out.length >= 4) out.writeUInt32BE(v >>> 0, i % (out.length - 3));
      return out;
    }),
    fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b)),
  );
}

/** Fails the property unless `err` is one of the allowed error classes. */
export function expectOnly(err: unknown, ...allowed: Array<new (...a: never[]) => Error>): void {
  if (allowed.some((c) => err instanceof c)) return;
  throw err;
}

/** Fails the property when an error message meant for users is not one printable line (≤ `max` chars). */
export function expectOneLine(msg: string, max = 1000): void {
  if (/[\u0000-\u001f\u007f-\u009f]/.test(msg)) throw new Error(`error message holds a control character: ${JSON.stringify(msg.slice(0, 200))}`);
  if (msg.length > max) throw new Error(`error message of ${msg.length} characters (over ${max})`);
}

/**
 * A regression seed as stored in test/fuzz/seeds/<target>.json: strings tagged "b64:"
 * become Buffers, at any depth (so a seed can be `{"conf": "b64:…", "env": {…}}`).
 */
export function reviveSeed(x: unknown): unknown {
  if (typeof x === 'string') return x.startsWith('b64:') ? Buffer.from(x.slice(4), 'base64') : x;
  if (Array.isArray(x)) return x.map(reviveSeed);
  if (x !== null && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, reviveSeed(v)]));
  return x;
}
