/**
 * router/overlay/flow-cache.ts: the egress template must be exactly the bytes the sleeve's
 * own packer writes before a frame's length (so a frame forwarded by the addon and one
 * sent by the router are the same datagram), and the environment switch.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EGRESS_TEMPLATE_BYTES, FLOW_BATCH_MAX, egressTemplate, flowCacheEnabled } from '../../router/overlay/flow-cache.js';
import { FramePacker, forEachFrame, HEADER_BYTES } from '../../router/overlay/sleeve-codec.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { xorshift32 as prng } from '../lib/prng.js';

describe('egressTemplate', () => {
  it('equals the first 20 bytes FramePacker writes for one frame, for random peers', () => {
    const r = prng(9);
    const p48 = (): number => (r() % 0x10000) * 0x100000000 + r();
    for (let i = 0; i < 500; i++) {
      const sender = p48(), origin = p48(), dst = p48();
      const frame = Buffer.alloc(60 + (r() % 1000), i & 0xff);
      const buf = Buffer.alloc(2048);
      const packer = new FramePacker(2048);
      packer.begin(buf, 2048, sender);
      assert.ok(packer.add(origin, dst, frame, 0, frame.length));
      const t = egressTemplate(sender, origin, dst);
      assert.equal(t.length, EGRESS_TEMPLATE_BYTES);
      assert.deepEqual(t, buf.subarray(0, EGRESS_TEMPLATE_BYTES));
      // What the addon appends: the 2-byte length, then the frame; the result parses back.
      const d = Buffer.concat([t, Buffer.from([frame.length >> 8, frame.length & 0xff]), frame]);
      assert.equal(d.length, packer.length);
      const seen: Array<[number, number, number]> = [];
      assert.ok(forEachFrame(d, HEADER_BYTES, d.length, (s, ds, b, st, en) => seen.push([s, ds, en - st])));
      assert.deepEqual(seen, [[origin, dst, frame.length]]);
    }
  });

  it('writes into a caller buffer without allocating', () => {
    const out = Buffer.alloc(EGRESS_TEMPLATE_BYTES, 0xff);
    assert.equal(egressTemplate(1, 2, 3, out), out);
    assert.deepEqual([...out.subarray(0, 2)], [0x54, 1]);
  });
});

describe('flow cache settings', () => {
  it('is on unless WEAVE_NO_FLOW_CACHE=1', () => {
    assert.equal(flowCacheEnabled({}), true);
    assert.equal(flowCacheEnabled({ WEAVE_NO_FLOW_CACHE: '0' }), true);
    assert.equal(flowCacheEnabled({ WEAVE_NO_FLOW_CACHE: '1' }), false);
  });

  it('FLOW_BATCH_MAX mirrors kFastBatchMax in the addons', () => {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const header = readFileSync(path.join(here, '..', '..', '..', 'router', 'overlay', 'native', 'flow-cache.h'), 'utf8');
    assert.equal(Number(/kFastBatchMax = (\d+);/.exec(header)?.[1]), FLOW_BATCH_MAX);
  });
});
