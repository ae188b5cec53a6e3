/**
 * Payloads of the 'ipam' gossip channel (pure): msgpack maps, validated on decode.
 *
 *  - gossip (broadcast update or periodic full state): { v: 1, t: 'gossip', ring?: RingPlain, paxos?: PaxosKnowledge, handover?: heir }
 *      handover (sent by a peer in `weave reset` after giving all its space to `heir`): the
 *      sender's name is retired for good; see Allocator.reclaimRetired
 *  - space request (unicast to a donor):  { v: 1, t: 'req', id, lo, hi, addr? }
 *      "give me free space inside [lo, hi)", or with addr: "give me that exact address"
 *  - space reply (unicast to the requester): { v: 1, t: 'resp', id, ok, reason?, ring? }
 *      ok = a donation was made (the ring in the reply contains it); reason says why not.
 * Our own format, shaped after the messages Weave's allocator exchanges (gossip of ring + paxos,
 * unicast "space request" answered by a ring update).
 */
import { Packr, Unpackr } from 'msgpackr';
import { BUDGETS, scanMsgpack } from '../router/mesh/msgpack-budget.js';
import type { RingPlain } from './ring.js';
import type { PaxosKnowledge } from './consensus.js';

/** A payload that is not a valid IPAM message. */
export class IpamMessageError extends Error {
  override name = 'IpamMessageError';
}

export interface GossipMsg {
  v: 1;
  t: 'gossip';
  ring?: RingPlain;
  paxos?: PaxosKnowledge;
  /**
   * Set by a peer leaving with `weave reset`: it has given all its space to this peer (the
   * heir) and will never allocate again. A peer of an older version ignores the field.
   */
  handover?: string;
}
export interface SpaceRequestMsg {
  v: 1;
  t: 'req';
  id: number;
  lo: number;
  hi: number;
  addr?: number;
  /**
   * A probe (reliability, `weave reset`): "answer with your ring, give nothing". The
   * answer is a `resp` with ok false, reason "probe" and the ring. A peer of an older
   * version ignores the flag and treats it as a request for [lo, hi).
   */
  probe?: boolean;
}
export interface SpaceReplyMsg {
  v: 1;
  t: 'resp';
  id: number;
  ok: boolean;
  reason?: string;
  ring?: RingPlain;
}
export type IpamMsg = GossipMsg | SpaceRequestMsg | SpaceReplyMsg;

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

/** msgpack bytes of a message; undefined optional fields are dropped. */
export function encodeMsg(m: IpamMsg): Uint8Array {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) if (v !== undefined) o[k] = v;
  return packr.pack(o);
}

function uint(x: unknown, what: string, max = 2 ** 32): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0 || x > max) throw new IpamMessageError(`malformed IPAM message: bad ${what}`);
  return x;
}

/**
 * Decode and shape-check a payload. Ring and paxos contents are checked later by Ring.fromPlain and
 * Consensus.receive; here only their presence and outer type.
 * @throws IpamMessageError on anything else.
 */
export function decodeMsg(bytes: Uint8Array): IpamMsg {
  let o: unknown;
  try {
    scanMsgpack(bytes, BUDGETS.ipam); // bounded element count and depth before any object is built
    o = unpackr.unpack(bytes);
  } catch (e) {
    throw new IpamMessageError(`malformed IPAM message: not msgpack (${(e as Error).message})`);
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new IpamMessageError('malformed IPAM message: not a map');
  const m = o as Record<string, unknown>;
  if (m.v !== 1) throw new IpamMessageError(`unsupported IPAM message version ${String(m.v)}`);
  switch (m.t) {
    case 'gossip': {
      const out: GossipMsg = { v: 1, t: 'gossip' };
      if (m.ring !== undefined) {
        if (typeof m.ring !== 'object' || m.ring === null) throw new IpamMessageError('malformed IPAM message: bad ring');
        out.ring = m.ring as RingPlain;
      }
      if (m.paxos !== undefined) {
        if (typeof m.paxos !== 'object' || m.paxos === null) throw new IpamMessageError('malformed IPAM message: bad paxos');
        out.paxos = m.paxos as PaxosKnowledge;
      }
      if (m.handover !== undefined) {
        if (typeof m.handover !== 'string' || m.handover.length < 1 || m.handover.length > 64) throw new IpamMessageError('malformed IPAM message: bad handover');
        out.handover = m.handover;
      }
      return out;
    }
    case 'req': {
      const out: SpaceRequestMsg = { v: 1, t: 'req', id: uint(m.id, 'id', 2 ** 53), lo: uint(m.lo, 'lo'), hi: uint(m.hi, 'hi') };
      if (out.lo >= out.hi) throw new IpamMessageError('malformed IPAM message: empty request range');
      if (m.addr !== undefined) out.addr = uint(m.addr, 'addr', 2 ** 32 - 1);
      if (m.probe !== undefined) {
        if (m.probe !== true) throw new IpamMessageError('malformed IPAM message: bad probe');
        out.probe = true;
      }
      return out;
    }
    case 'resp': {
      if (typeof m.ok !== 'boolean') throw new IpamMessageError('malformed IPAM message: bad ok');
      const out: SpaceReplyMsg = { v: 1, t: 'resp', id: uint(m.id, 'id', 2 ** 53), ok: m.ok };
      if (m.reason !== undefined) {
        if (typeof m.reason !== 'string') throw new IpamMessageError('malformed IPAM message: bad reason');
        out.reason = m.reason.slice(0, 500);
      }
      if (m.ring !== undefined) {
        if (typeof m.ring !== 'object' || m.ring === null) throw new IpamMessageError('malformed IPAM message: bad ring');
        out.ring = m.ring as RingPlain;
      }
      return out;
    }
    default:
      throw new IpamMessageError(`malformed IPAM message: unknown type ${JSON.stringify(String(m.t)).slice(0, 40)}`);
  }
}
