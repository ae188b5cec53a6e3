/**
 * `weave status ipam` / `weave report` for one allocator (pure): the ring's spans
 * with their owners' nicknames, each peer's share, and the one-line state — ready,
 * idle, awaiting consensus (quorum, known), waiting for the ring (observer), all
 * ranges owned by unreachable peers (use rmpeer), or a ring conflict. After Weave's
 * `weave status ipam`.
 */
import { formatCidr, formatIp, type Cidr } from './cidr.js';
import type { Consensus } from './consensus.js';
import type { Ring } from './ring.js';
import type { Space } from './space.js';
import type { IpamInit, IpamStatus } from './allocator-types.js';

/** Everything the status is computed from. */
export interface StatusInput {
  self: string;
  range: Cidr;
  defaultSubnet: Cidr;
  ring: Ring;
  space: Space;
  init: IpamInit;
  consensus: Consensus | undefined;
  /** Consensus has been started (paxos-step.ts). */
  consensusRunning: boolean;
  /** Waiting allocations and claims (not primes). */
  pendingAllocates: number;
  conflict: string | undefined;
  /** Peer names the mesh knows (self included by the caller or not). */
  knownNames: Set<string>;
  reachable: Set<string>;
  nickname(name: string): string;
}

/** Build the status snapshot. */
export function ipamStatus(i: StatusInput): IpamStatus {
  const { ring, range, reachable } = i;
  const spans = ring.spans();
  const base = {
    range: formatCidr(range),
    defaultSubnet: formatCidr(i.defaultSubnet),
    entries: spans.map((s) => ({
      token: formatIp(s.token),
      size: s.end - s.token,
      peer: s.peer,
      nickname: i.nickname(s.peer),
      version: s.version,
      isKnownPeer: i.knownNames.has(s.peer),
    })),
    pendingAllocates: i.pendingAllocates,
    owned: [] as IpamStatus['owned'],
  };
  const perPeer = new Map<string, number>();
  for (const s of spans) perPeer.set(s.peer, (perPeer.get(s.peer) ?? 0) + (s.end - s.token));
  for (const [peer, n] of [...perPeer].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    base.owned.push({ peer, nickname: i.nickname(peer), addresses: n, percent: (100 * n) / range.size, reachable: reachable.has(peer) });
  }
  const out: IpamStatus = { ...base, status: 'ready', message: 'ready' };
  if (i.conflict) out.conflict = i.conflict;
  if (ring.isEmpty()) {
    if (i.init.mode === 'observer') {
      out.status = 'waiting for ring';
      out.message = 'waiting for the ring from other peers (observer)';
    } else if (i.init.mode === 'consensus') {
      const cs = i.consensus!.status();
      // "known" counts participants we can reach now: those are the ones that can make a quorum.
      const known = cs.knownPeers.filter((p) => reachable.has(p)).length;
      out.quorum = cs.quorum;
      out.known = known;
      out.knownPeers = cs.knownPeers;
      if (i.consensusRunning || cs.active) {
        out.status = 'awaiting consensus';
        out.message = `awaiting consensus (quorum ${cs.quorum}, known ${known})`;
      } else {
        out.status = 'idle';
        out.message = `idle (consensus deferred until the first allocation or weave prime; quorum ${cs.quorum})`;
      }
    } else {
      out.status = 'idle';
      out.message = 'idle';
    }
    return out;
  }
  const ownFree = i.space.freeCount(range.start, range.start + range.size);
  if (ownFree === 0 && ring.peers().every((p) => p === i.self || !reachable.has(p))) {
    const others = ring.peers().filter((p) => p !== i.self);
    if (others.length > 0) {
      out.status = 'all ranges owned by unreachable peers';
      out.message = 'all ranges owned by unreachable peers - use weave rmpeer';
    }
  }
  if (i.conflict && out.status === 'ready') {
    out.status = 'ring conflict';
    out.message = `ready, but ${i.conflict}`;
  }
  return out;
}
