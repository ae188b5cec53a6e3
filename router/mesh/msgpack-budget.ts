/**
 * Bounded pre-scan of untrusted MessagePack bytes, run before msgpackr decodes them.
 *
 * msgpackr has no option limiting how many objects one input may create: a 1 MiB
 * buffer of `0x80` bytes (fixmap with 0 entries, msgpack spec "map format family")
 * would become a million objects, and an array header declaring 2^32 elements makes
 * it try to allocate them. This walker reads only the type bytes and length fields
 * defined by the msgpack specification (https://github.com/msgpack/msgpack/blob/master/spec.md,
 * "Formats"), never allocates per element, and stops as soon as a budget is spent:
 *
 *  - elements: every value counts 1 (a map entry is two values: key and value);
 *  - depth: arrays/maps nested deeper than `maxDepth` are refused;
 *  - every declared str/bin/ext length and every array/map count must fit in the
 *    bytes that are left (each element takes at least one byte);
 *  - extension types (ext 8/16/32, fixext 1..16) are refused unless `allowExt`: none of
 *    our formats uses them, and msgpackr gives several (0x62 bundled strings, records,
 *    typed arrays, RegExp, Error, Set …) meanings that would hand the validators objects
 *    of unexpected classes or make the decoder read beyond the value (found by fuzzing);
 *    the one exception is d4 00 00, msgpackr's encoding of `undefined` (an absent field);
 *  - the input must be exactly one value with no trailing bytes.
 *
 * Cost: O(bytes scanned) with no allocation beyond a depth-sized stack, so a 1 MiB
 * input is rejected or accepted in about a millisecond.
 */

/** Raised when the bytes are not one msgpack value within the budget. */
export class MsgpackBudgetError extends Error {
  override name = 'MsgpackBudgetError';
}

export interface MsgpackBudget {
  /** Largest number of values (scalars + containers; a map entry counts 2). */
  maxElements: number;
  /** Deepest array/map nesting (the top-level container is depth 1). */
  maxDepth: number;
  /** Accept extension types (default false: refused). */
  allowExt?: boolean;
}

/**
 * Walks `buf` as one msgpack value and returns the number of values it holds.
 * @throws MsgpackBudgetError saying which limit was hit (element count, depth,
 *   a declared length past the end, a reserved type byte 0xc1, trailing bytes).
 */
export function scanMsgpack(buf: Uint8Array, budget: MsgpackBudget): number {
  const { maxElements, maxDepth } = budget;
  const allowExt = budget.allowExt === true;
  const n = buf.length;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  // remaining[d] = values still to read in the container open at depth d (d = 0 is the top level).
  const remaining: number[] = [1];
  let pos = 0;
  let elements = 0;
  const need = (k: number): void => {
    if (pos + k > n) throw new MsgpackBudgetError(`truncated msgpack: needs ${k} more bytes at offset ${pos}, ${n - pos} left`);
  };
  const skip = (len: number): void => {
    if (len > n - pos) throw new MsgpackBudgetError(`msgpack length ${len} at offset ${pos} runs past the end (${n - pos} bytes left)`);
    pos += len;
  };
  const open = (count: number, perEntry: number): void => {
    const values = count * perEntry;
    if (values > n - pos) throw new MsgpackBudgetError(`msgpack container declares ${count} entries but only ${n - pos} bytes are left`);
    if (elements + values > maxElements) throw new MsgpackBudgetError(`msgpack value holds more than ${maxElements} elements`);
    if (values === 0) return;
    if (remaining.length > maxDepth) throw new MsgpackBudgetError(`msgpack nesting deeper than ${maxDepth}`);
    remaining.push(values);
  };
  while (remaining.length > 0) {
    if (remaining[remaining.length - 1] === 0) {
      remaining.pop();
      continue;
    }
    remaining[remaining.length - 1]!--;
    if (++elements > maxElements) throw new MsgpackBudgetError(`msgpack value holds more than ${maxElements} elements`);
    need(1);
    const b = buf[pos++]!;
    if (b <= 0x7f || b >= 0xe0) continue; // positive / negative fixint
    if (b <= 0x8f) { open(b & 0x0f, 2); continue; } // fixmap
    if (b <= 0x9f) { open(b & 0x0f, 1); continue; } // fixarray
    if (b <= 0xbf) { skip(b & 0x1f); continue; } // fixstr
    if (b === 0xd4 && pos + 2 <= n && buf[pos] === 0 && buf[pos + 1] === 0) { pos += 2; continue; } // msgpackr's `undefined` (fixext1 type 0, data 0)
    if (!allowExt && ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8))) {
      throw new MsgpackBudgetError(`msgpack extension type (byte 0x${b.toString(16)} at offset ${pos - 1}) not accepted here`);
    }
    switch (b) {
      case 0xc0: case 0xc2: case 0xc3: break; // nil, false, true
      case 0xc1: throw new MsgpackBudgetError(`reserved msgpack type byte 0xc1 at offset ${pos - 1}`);
      case 0xc4: case 0xd9: need(1); pos += 1; skip(buf[pos - 1]!); break; // bin8, str8
      case 0xc5: case 0xda: need(2); pos += 2; skip(view.getUint16(pos - 2)); break; // bin16, str16
      case 0xc6: case 0xdb: need(4); pos += 4; skip(view.getUint32(pos - 4)); break; // bin32, str32
      case 0xc7: need(2); pos += 2; skip(buf[pos - 2]!); break; // ext8: len, type
      case 0xc8: need(3); pos += 3; skip(view.getUint16(pos - 3)); break; // ext16
      case 0xc9: need(5); pos += 5; skip(view.getUint32(pos - 5)); break; // ext32
      case 0xca: skip(4); break; // float32
      case 0xcb: skip(8); break; // float64
      case 0xcc: case 0xd0: skip(1); break; // uint8, int8
      case 0xcd: case 0xd1: skip(2); break;
      case 0xce: case 0xd2: skip(4); break;
      case 0xcf: case 0xd3: skip(8); break;
      case 0xd4: skip(2); break; // fixext1: type + 1
      case 0xd5: skip(3); break;
      case 0xd6: skip(5); break;
      case 0xd7: skip(9); break;
      case 0xd8: skip(17); break;
      case 0xdc: need(2); pos += 2; open(view.getUint16(pos - 2), 1); break; // array16
      case 0xdd: need(4); pos += 4; open(view.getUint32(pos - 4), 1); break; // array32
      case 0xde: need(2); pos += 2; open(view.getUint16(pos - 2), 2); break; // map16
      case 0xdf: need(4); pos += 4; open(view.getUint32(pos - 4), 2); break; // map32
      default: throw new MsgpackBudgetError(`unknown msgpack type byte 0x${b.toString(16)}`);
    }
  }
  if (pos !== n) throw new MsgpackBudgetError(`${n - pos} trailing bytes after the msgpack value`);
  return elements;
}

/** Budgets used for the inputs we decode (see docs/SECURITY.md, "Pre-authentication limits"). */
export const BUDGETS = {
  /** A control frame: a flat map of ≤ 8 known fields; room for unknown extra fields. */
  control: { maxElements: 256, maxDepth: 4 },
  /** A topology gossip payload: ~6 values per connection and ~8 per peer; 1000 peers × 30 connections fits. */
  topology: { maxElements: 262_144, maxDepth: 8 },
  /** An IPAM gossip payload: ring entries (~5 values each) plus paxos state. */
  ipam: { maxElements: 262_144, maxDepth: 8 },
  /** A weaveDNS gossip payload: a list of ≤ 100,000 entries of 6 scalars (dns/registry.ts). */
  dns: { maxElements: 1 + 100_000 * 7, maxDepth: 2 },
} as const satisfies Record<string, MsgpackBudget>;
