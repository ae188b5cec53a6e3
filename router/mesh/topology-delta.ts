/**
 * Topology entry deltas (issue #20; pure: no sockets, timers or files).
 *
 * A peer's entry lists all its connections, so in a mesh of N peers one new peer
 * changes N entries of about N connections each, and gossiping whole entries costs
 * O(N²) bytes per receiver per join. Almost every such change adds, removes or flips
 * one connection. A delta names the version it applies to (`base`) and carries only
 * the connections that differ, so a receiver that holds exactly that version rebuilds
 * the new one from it; any other receiver asks for the whole entry instead (gossip.ts,
 * `{w: [names]}`). weaveworks/mesh always sends whole peer entries; this is the same
 * table, only a cheaper way to move a version along a connection that is known to
 * hold its predecessor.
 *
 * Wire form (msgpack), one delta: `[name, uid, base, version, removed, upserted]`
 *  - `name`, `uid`: the entry's owner and incarnation (as in a whole entry);
 *  - `base` < `version`: the version it applies to, and the version it makes;
 *  - `removed`: `[[peerName, address], …]`, connections of `base` that are gone;
 *  - `upserted`: connection maps (`{name, address, outbound, established}`, as in a
 *    whole entry) that are new or changed, keyed by (name, address).
 * The rebuilt entry is validated by `Topology.merge` exactly like a received whole
 * entry, so a delta can produce nothing a whole entry could not.
 */
import { pack } from 'msgpackr';
import { isPeerName, type PeerName } from './peer-name.js';
import { MAX_ADDRESS_LENGTH, MAX_PEER_CONNECTIONS, TopologyError, type ConnectionSummary, type PeerInfo } from './topology.js';

/** A decoded delta (shapes checked; the connections are checked when the result is merged). */
export interface EntryDelta {
  name: PeerName;
  uid: number;
  base: number;
  version: number;
  removed: Array<[PeerName, string]>;
  upserted: Array<Record<string, unknown>>;
}

/** Key of a connection within one entry: (peer name, address); NUL cannot occur in a valid address. */
function key(name: string, address: string): string {
  return `${name}\0${address}`;
}

function bad(what: string): never {
  throw new TopologyError(`bad topology delta: ${what}`);
}

function isCount(x: unknown, min: number): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= min;
}

/**
 * The connections that differ between two versions of one peer's entry.
 * @returns undefined when a delta would not be worth it (other owner or incarnation,
 *   not newer, or more than half of `cur`'s connections differ); else the delta.
 */
export function diffEntries(prev: PeerInfo, cur: PeerInfo): EntryDelta | undefined {
  if (prev.name !== cur.name || prev.uid !== cur.uid || prev.version >= cur.version || prev.nickname !== cur.nickname) return undefined;
  const old = new Map<string, ConnectionSummary>();
  for (const c of prev.connections) old.set(key(c.name, c.address), c);
  const upserted: Array<Record<string, unknown>> = [];
  const limit = Math.max(4, cur.connections.length >> 1);
  for (const c of cur.connections) {
    const k = key(c.name, c.address);
    const o = old.get(k);
    old.delete(k);
    if (o !== undefined && o.outbound === c.outbound && o.established === c.established) continue;
    upserted.push({ name: c.name, address: c.address, outbound: c.outbound, established: c.established });
    if (upserted.length > limit) return undefined;
  }
  if (upserted.length + old.size > limit) return undefined;
  const removed: Array<[PeerName, string]> = [...old.values()].map((c) => [c.name, c.address]);
  return { name: cur.name, uid: cur.uid, base: prev.version, version: cur.version, removed, upserted };
}

/** Encoded delta from `prev` to `cur` (weakly cached per `cur`, which is frozen), or undefined (see diffEntries). */
const ENCODED = new WeakMap<PeerInfo, { base: PeerInfo; bytes: Buffer | undefined }>();
export function encodeDelta(prev: PeerInfo, cur: PeerInfo): Buffer | undefined {
  const hit = ENCODED.get(cur);
  if (hit !== undefined && hit.base === prev) return hit.bytes;
  const d = diffEntries(prev, cur);
  let bytes: Buffer | undefined;
  if (d !== undefined) {
    // A copy of its own: pack's result is a view of msgpackr's shared output buffer.
    const p = pack([d.name, d.uid, d.base, d.version, d.removed, d.upserted]);
    bytes = Buffer.allocUnsafeSlow(p.length);
    p.copy(bytes);
  }
  ENCODED.set(cur, { base: prev, bytes });
  return bytes;
}

/**
 * Checks the shape of one received delta.
 * @throws TopologyError naming what is wrong
 */
export function decodeDelta(x: unknown): EntryDelta {
  if (!Array.isArray(x) || x.length !== 6) bad('must be an array of 6 items');
  const [name, uid, base, version, removed, upserted] = x as unknown[];
  if (!isPeerName(name)) bad(`name ${JSON.stringify(String(name).slice(0, 40))} is not a lowercase peer name`);
  if (!isCount(uid, 0)) bad(`uid of ${name} is not a non-negative safe integer`);
  if (!isCount(base, 1) || !isCount(version, 2) || version <= base) bad(`versions of ${name} must be safe integers with 1 ≤ base < version`);
  if (!Array.isArray(removed) || removed.length > MAX_PEER_CONNECTIONS) bad(`removed of ${name} must be an array of at most ${MAX_PEER_CONNECTIONS}`);
  if (!Array.isArray(upserted) || upserted.length > MAX_PEER_CONNECTIONS) bad(`upserted of ${name} must be an array of at most ${MAX_PEER_CONNECTIONS}`);
  for (const r of removed) {
    if (!Array.isArray(r) || r.length !== 2 || !isPeerName(r[0]) || typeof r[1] !== 'string' || r[1].length > MAX_ADDRESS_LENGTH) {
      bad(`a removed connection of ${name} must be [peer name, address of at most ${MAX_ADDRESS_LENGTH} characters]`);
    }
  }
  for (const u of upserted) {
    if (typeof u !== 'object' || u === null || Array.isArray(u) || typeof (u as { name?: unknown }).name !== 'string' || typeof (u as { address?: unknown }).address !== 'string') {
      bad(`an upserted connection of ${name} must be a map with a name and an address`);
    }
  }
  return { name, uid, base, version, removed: removed as Array<[PeerName, string]>, upserted: upserted as Array<Record<string, unknown>> };
}

/**
 * The entry `d` makes from `base` (which must be `d.base` of the same owner and
 * incarnation), as a plain map for `Topology.merge` to validate.
 * @throws TopologyError if `base` is not the version `d` applies to
 */
export function applyDelta(base: PeerInfo, d: EntryDelta): Record<string, unknown> {
  if (base.name !== d.name || base.uid !== d.uid || base.version !== d.base) bad(`${d.name}: base ${d.base} is not the held version ${base.version}`);
  const conns = new Map<string, unknown>();
  for (const c of base.connections) conns.set(key(c.name, c.address), c);
  for (const [n, a] of d.removed) conns.delete(key(n, a));
  for (const u of d.upserted) conns.set(key(u.name as string, u.address as string), u);
  return { name: d.name, nickname: base.nickname, uid: d.uid, version: d.version, connections: [...conns.values()] };
}
