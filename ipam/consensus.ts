/**
 * Single-decree Paxos over gossip, deciding which peers seed the initial ring (pure).
 *
 * Design after Weave Net's ipam/paxos: instead of request/response messages, every node
 * keeps what it knows of every node's Paxos "claims" (promised proposal, accepted proposal
 * and value) and gossips that whole table. Only node n writes n's claims, and each node's
 * claims only grow in (promise, accepted) order, so merging tables is "keep the newer claims
 * per node" and tolerates loss, duplication and reordering; a stale table is just an old
 * message in classic Paxos (Lamport, "Paxos Made Simple"):
 *  - prepare: a proposer sets its own promise to a new proposal id (round, proposer);
 *  - promise: an acceptor that sees a higher promise anywhere adopts it;
 *  - accept: once a quorum shows promise == P, the proposer accepts P with the value of the
 *    highest proposal its promisers had accepted, or else its own value (the peers it knows);
 *    acceptors that promised P copy the proposer's value;
 *  - decide: any node that sees a quorum with accepted == P knows the value is chosen.
 * The value is the sorted list of participating peer names; Ring.seed() turns it into the ring.
 */

/** Malformed consensus gossip. */
export class ConsensusError extends Error {
  override name = 'ConsensusError';
}

/** A proposal number: ordered by round, then proposer name. */
export interface ProposalId {
  round: number;
  proposer: string;
}

/** One node's Paxos state as known to the gossip. */
export interface NodeClaims {
  promise: ProposalId | null;
  accepted: ProposalId | null;
  value: string[] | null;
}

/** The gossiped table: node name → its claims. */
export type PaxosKnowledge = Record<string, NodeClaims>;

/** Compare proposal ids (null is lowest). */
export function compareProposal(a: ProposalId | null, b: ProposalId | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1;
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  return a.proposer < b.proposer ? -1 : a.proposer > b.proposer ? 1 : 0;
}

function sameProposal(a: ProposalId | null, b: ProposalId | null): boolean {
  return compareProposal(a, b) === 0;
}

function newer(a: NodeClaims, b: NodeClaims): boolean {
  const c = compareProposal(a.promise, b.promise);
  return c > 0 || (c === 0 && compareProposal(a.accepted, b.accepted) > 0);
}

function cloneClaims(c: NodeClaims): NodeClaims {
  return {
    promise: c.promise ? { ...c.promise } : null,
    accepted: c.accepted ? { ...c.accepted } : null,
    value: c.value ? [...c.value] : null,
  };
}

/** Status for `weave status`: quorum needed, how many nodes take part, and the decision if any. */
export interface ConsensusStatus {
  quorum: number;
  /** Size of the configured consensus group N (quorum = floor(N/2)+1). */
  groupSize: number;
  known: number;
  knownPeers: string[];
  proposing: boolean;
  /** Whether any node has proposed yet (consensus is deferred until someone needs the ring). */
  active: boolean;
  decided?: string[];
}

export class Consensus {
  private knows = new Map<string, NodeClaims>();
  private proposing = false;
  private decision: string[] | undefined;
  readonly quorum: number;

  /**
   * @param self this peer's name
   * @param groupSize N, the number of peers expected in the initial group; a decision needs
   *   floor(N/2)+1 of them.
   * @param participate false for an observer: it learns decisions but neither accepts nor proposes.
   */
  constructor(
    readonly self: string,
    readonly groupSize: number,
    private readonly participate = true,
  ) {
    if (!Number.isInteger(groupSize) || groupSize < 1) throw new ConsensusError(`consensus group size must be a positive integer, got ${groupSize}`);
    this.quorum = Math.floor(groupSize / 2) + 1;
    if (participate) this.knows.set(self, { promise: null, accepted: null, value: null });
  }

  /** The whole table, to gossip (a deep copy). */
  knowledge(): PaxosKnowledge {
    const out: PaxosKnowledge = {};
    for (const [n, c] of this.knows) out[n] = cloneClaims(c);
    return out;
  }

  /** The decided list of peers, once known. */
  decided(): string[] | undefined {
    return this.decision ? [...this.decision] : undefined;
  }

  /**
   * The majority actually required: floor(N/2)+1, raised to a majority of the participants we know
   * of when more than N take part (as Weave's allocator raises its quorum), so that two groups of
   * a misconfigured cluster are less likely to decide two different rings.
   */
  effectiveQuorum(): number {
    return Math.max(this.quorum, Math.floor(this.knows.size / 2) + 1);
  }

  status(): ConsensusStatus {
    const s: ConsensusStatus = {
      quorum: this.effectiveQuorum(),
      groupSize: this.groupSize,
      known: this.knows.size,
      knownPeers: [...this.knows.keys()].sort(),
      proposing: this.proposing,
      active: [...this.knows.values()].some((c) => c.promise !== null),
    };
    if (this.decision) s.decided = [...this.decision];
    return s;
  }

  /**
   * Start (or restart, after a stall) proposing: a proposal id above every round seen.
   * Returns the table to broadcast, or undefined if there is nothing to do (decided, observer).
   */
  propose(): PaxosKnowledge | undefined {
    if (this.decision || !this.participate) return undefined;
    let maxRound = 0;
    for (const c of this.knows.values()) {
      if (c.promise) maxRound = Math.max(maxRound, c.promise.round);
      if (c.accepted) maxRound = Math.max(maxRound, c.accepted.round);
    }
    const mine = this.knows.get(this.self)!;
    mine.promise = { round: maxRound + 1, proposer: this.self };
    this.proposing = true;
    this.step();
    return this.knowledge();
  }

  /**
   * Merge a gossiped table and act on it. Returns the table to broadcast if our knowledge changed,
   * else undefined (so gossip stops once everyone agrees).
   * @throws ConsensusError if the table is malformed (nothing is changed then).
   */
  receive(table: unknown): PaxosKnowledge | undefined {
    const incoming = validateKnowledge(table);
    let changed = false;
    for (const [n, c] of Object.entries(incoming)) {
      if (n === this.self) continue; // only we write our own claims
      const cur = this.knows.get(n);
      if (!cur || newer(c, cur)) {
        this.knows.set(n, cloneClaims(c));
        changed = true;
      }
    }
    if (this.step()) changed = true;
    return changed ? this.knowledge() : undefined;
  }

  /** Restore our own claims after a restart (they must never go backwards). */
  restore(table: unknown): void {
    const mine = validateKnowledge(table)[this.self];
    if (mine && this.participate) this.knows.set(this.self, cloneClaims(mine));
    this.receive(table);
  }

  /** Apply the acceptor, proposer and learner rules until nothing changes. Returns whether our claims changed. */
  private step(): boolean {
    let changed = false;
    for (let guard = 0; guard < 4; guard++) {
      let progressed = false;
      if (this.participate) {
        const mine = this.knows.get(this.self)!;
        // Acceptor: promise the highest proposal seen anywhere.
        let highest: ProposalId | null = null;
        for (const c of this.knows.values()) if (compareProposal(c.promise, highest) > 0) highest = c.promise;
        if (compareProposal(highest, mine.promise) > 0) {
          mine.promise = { ...highest! };
          if (highest!.proposer !== this.self) this.proposing = false;
          progressed = true;
        }
        const p = mine.promise;
        if (p && !sameProposal(mine.accepted, p)) {
          if (p.proposer === this.self) {
            // Proposer: a quorum promised p → accept p with the value Paxos obliges us to use.
            let promisers = 0;
            let best: NodeClaims | undefined;
            for (const c of this.knows.values()) {
              if (!sameProposal(c.promise, p)) continue;
              promisers++;
              if (c.accepted && c.value && (!best || compareProposal(c.accepted, best.accepted) > 0)) best = c;
            }
            if (promisers >= this.effectiveQuorum()) {
              mine.accepted = { ...p };
              mine.value = best ? [...best.value!] : [...this.knows.keys()].sort();
              progressed = true;
            }
          } else {
            // Acceptor: the proposer of p has entered its accept phase → accept its value.
            const prop = this.knows.get(p.proposer);
            if (prop && sameProposal(prop.accepted, p) && prop.value) {
              mine.accepted = { ...p };
              mine.value = [...prop.value];
              progressed = true;
            }
          }
        }
      }
      // Learner: a quorum accepted the same proposal.
      if (!this.decision) {
        const counts = new Map<string, { n: number; value: string[] }>();
        for (const c of this.knows.values()) {
          if (!c.accepted || !c.value) continue;
          const key = `${c.accepted.round}/${c.accepted.proposer}`;
          const e = counts.get(key) ?? { n: 0, value: c.value };
          e.n++;
          counts.set(key, e);
          if (e.n >= this.effectiveQuorum()) {
            this.decision = [...e.value];
            this.proposing = false;
            break;
          }
        }
      }
      if (!progressed) break;
      changed = true;
    }
    return changed;
  }
}

const NAME_MAX = 255;

function validateProposal(x: unknown): ProposalId | null {
  if (x === null || x === undefined) return null;
  if (typeof x !== 'object') throw new ConsensusError('malformed consensus gossip: bad proposal id');
  const { round, proposer } = x as Record<string, unknown>;
  if (typeof round !== 'number' || !Number.isSafeInteger(round) || round < 0 || typeof proposer !== 'string' || proposer.length === 0 || proposer.length > NAME_MAX) {
    throw new ConsensusError('malformed consensus gossip: bad proposal id');
  }
  return { round, proposer };
}

/**
 * Validate a gossiped table (from msgpack) into PaxosKnowledge.
 * @throws ConsensusError describing the first problem.
 */
export function validateKnowledge(x: unknown): PaxosKnowledge {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new ConsensusError('malformed consensus gossip: not a table');
  const out: PaxosKnowledge = {};
  const entries = Object.entries(x as Record<string, unknown>);
  if (entries.length > 10000) throw new ConsensusError('malformed consensus gossip: too many nodes');
  for (const [n, c] of entries) {
    if (n.length === 0 || n.length > NAME_MAX || typeof c !== 'object' || c === null) throw new ConsensusError('malformed consensus gossip: bad node entry');
    const o = c as Record<string, unknown>;
    const promise = validateProposal(o.promise);
    const accepted = validateProposal(o.accepted);
    let value: string[] | null = null;
    if (o.value !== null && o.value !== undefined) {
      if (!Array.isArray(o.value) || o.value.length === 0 || !o.value.every((v) => typeof v === 'string' && v.length > 0 && v.length <= NAME_MAX)) {
        throw new ConsensusError('malformed consensus gossip: bad value');
      }
      value = [...(o.value as string[])];
    }
    if ((accepted === null) !== (value === null)) throw new ConsensusError('malformed consensus gossip: accepted proposal without value');
    if (compareProposal(accepted, promise) > 0) throw new ConsensusError('malformed consensus gossip: accepted above promise');
    out[n] = { promise, accepted, value };
  }
  return out;
}
