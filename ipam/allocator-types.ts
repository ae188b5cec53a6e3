/**
 * Shapes shared by the IPAM allocator's parts (allocator.ts, paxos-step.ts,
 * allocator-persist.ts, allocator-status.ts): its options, its status, its errors
 * and its waiting operations.
 */
import type { Persistence } from './persist.js';

/** Provided by the router's mesh; the mesh knows nothing about IPAM. */
export interface GossipChannel {
  /** Our peer name "aa:bb:cc:dd:ee:ff". */
  readonly selfName: string;
  /** Send to all peers (a gossip update). */
  broadcast(payload: Uint8Array): void;
  /** Send to one peer. */
  unicast(dst: string, payload: Uint8Array): void;
  /** Peers the mesh knows about (self may be absent); `reachable` = there is a route to it now. */
  knownPeers(): Array<{ name: string; nickname: string; reachable: boolean }>;
}

/**
 * How the first ring comes to exist:
 *  - consensus: Paxos among the peers; `quorum` is N of `--ipalloc-init consensus=N`, the size of the
 *    initial group; a decision needs floor(N/2)+1 of them. Deferred until the first allocation or prime().
 *  - seed: the ring is split among exactly these peer names, without talking to anyone.
 *  - observer: never takes part in consensus and starts with no space; asks others for space.
 */
export type IpamInit = { mode: 'consensus'; quorum: number } | { mode: 'seed'; peers: string[] } | { mode: 'observer' };

export interface Timer {
  cancel(): void;
}

export interface AllocatorOptions {
  /** The IPAM range, e.g. "10.32.0.0/12" (a network CIDR of at least 4 addresses). */
  range: string;
  /** Subnet used when allocate() is given none; defaults to the range. Must lie inside the range. */
  defaultSubnet?: string;
  init: IpamInit;
  channel: GossipChannel;
  persistence: Persistence;
  /** Nickname for a peer name (for status and rmpeer); falls back to channel.knownPeers(). */
  nicknameOf?(name: string): string;
  /** Milliseconds on any monotonic clock. */
  now(): number;
  setTimer(ms: number, fn: () => void): Timer;
  /** Log sink for dropped gossip, conflicts and the like; default: none. */
  log?(msg: string): void;
  /** How long to wait for a donor's reply before asking the next peer (ms, default 3000). */
  requestTimeoutMs?: number;
  /** Paxos re-broadcast / re-propose interval (ms, default 2000, plus a per-peer stagger of up to the same). */
  paxosRetryMs?: number;
}

/** Status of the allocator as shown by `weave status ipam`, `weave status` and `weave report`. */
export interface IpamStatus {
  range: string;
  defaultSubnet: string;
  status: 'ready' | 'idle' | 'awaiting consensus' | 'waiting for ring' | 'all ranges owned by unreachable peers' | 'ring conflict';
  /** One line for humans, e.g. "awaiting consensus (quorum 2, known 1)". */
  message: string;
  /** Consensus majority needed and peers taking part so far (consensus mode, before the ring exists). */
  quorum?: number;
  known?: number;
  knownPeers?: string[];
  /** The last ring conflict seen, if any. */
  conflict?: string;
  entries: Array<{ token: string; size: number; peer: string; nickname: string; version: number; isKnownPeer: boolean }>;
  pendingAllocates: number;
  owned: Array<{ peer: string; nickname: string; addresses: number; percent: number; reachable: boolean }>;
}
export type StatusSnapshot = IpamStatus;

/** A request the allocator refuses or cannot complete; the message is one line for the user. */
export class IpamError extends Error {
  override name = 'IpamError';
}

export type PendingKind = 'alloc' | 'claim' | 'prime';

export interface PendingOp {
  kind: PendingKind;
  owner: string;
  /** Allocatable bounds [lo, hi): the subnet minus its network and broadcast addresses. */
  lo: number;
  hi: number;
  prefix: number;
  subnet: string;
  addr?: number;
  resolve(v: string | undefined): void;
  reject(e: Error): void;
  asked: Set<string>;
  requests: number;
  inflight?: number;
  lastReason?: string;
  onProgress?: (s: IpamStatus) => void;
  lastProgress?: string;
  cleanup: Array<() => void>;
}

export interface InflightRequest {
  op: PendingOp;
  donor: string;
  timer: Timer;
}

/** At most this many space requests per waiting operation before it fails. */
export const MAX_REQUESTS_PER_OP = 64;

