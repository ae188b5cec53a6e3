/**
 * Deterministic routing over the gossiped topology, after weaveworks/mesh's routes.
 *
 * The graph has an edge between two peers iff each lists an established connection
 * to the other (Topology.neighbours). All routes come from one breadth-first search
 * that visits neighbours in ascending peer-name order, so the tree depends only on
 * the topology and the root: every peer holding the same table computes the same
 * trees, which is what makes broadcast forwarding loop- and duplicate-free.
 *
 * - Unicast: the BFS tree rooted at self gives, for each reachable peer, the first
 *   hop of a shortest path.
 * - Broadcast from `source`: the BFS tree rooted at `source`; each peer forwards to
 *   its own children in that tree. Since all peers agree on the tree, a broadcast
 *   reaches every peer of the source's component exactly once (mesh computes the
 *   same per-source trees).
 *
 * Queries re-check `topology.generation` and recompute lazily, so callers never see
 * stale routes; the check is one integer comparison.
 */
import { numToPeerName, peerNameToNum, type PeerName } from './peer-name.js';
import type { Topology } from './topology.js';

const NO_PEERS = Object.freeze([]) as unknown as PeerName[];
const NO_NUMS = Object.freeze([]) as unknown as number[];

interface Tree {
  /** Children per node, in visit order. Only nodes with children appear. */
  children: Map<PeerName, PeerName[]>;
  order: PeerName[];
  parent: Map<PeerName, PeerName>;
}

export class Routes {
  private readonly topology: Topology;
  private gen = -1;
  /** Symmetric established adjacency, each list sorted by name. */
  private adj = new Map<PeerName, PeerName[]>();
  private unicastHop = new Map<PeerName, PeerName>();
  private unicastHopNum = new Map<number, number>();
  private broadcastCache = new Map<PeerName, PeerName[]>();
  private broadcastNumCache = new Map<number, number[]>();

  constructor(topology: Topology) {
    this.topology = topology;
  }

  /** Rebuilds the graph and unicast routes if the topology changed since the last call. */
  recalculate(): void {
    const g = this.topology.generation;
    if (g === this.gen) return;
    this.gen = g;
    const adj = new Map<PeerName, PeerName[]>();
    for (const n of this.topology.names()) adj.set(n, this.topology.neighbours(n));
    this.adj = adj;
    this.broadcastCache = new Map();
    this.broadcastNumCache = new Map();

    const self = this.topology.selfName;
    const tree = this.bfs(self);
    const hop = new Map<PeerName, PeerName>([[self, self]]);
    // BFS order guarantees a node's parent already has its hop.
    for (const n of tree.order) {
      if (n === self) continue;
      const parent = tree.parent.get(n)!;
      hop.set(n, parent === self ? n : hop.get(parent)!);
    }
    this.unicastHop = hop;
    const hopNum = new Map<number, number>();
    for (const [d, h] of hop) hopNum.set(peerNameToNum(d), peerNameToNum(h));
    this.unicastHopNum = hopNum;
  }

  /** Next hop from self towards `dest`; `self` for self; undefined if unreachable. */
  unicast(dest: PeerName): PeerName | undefined {
    this.recalculate();
    return this.unicastHop.get(dest);
  }

  /** `unicast` on numeric peer names, for the data path. */
  unicastNum(dest: number): number | undefined {
    this.recalculate();
    return this.unicastHopNum.get(dest);
  }

  /**
   * Neighbours to which self forwards a broadcast that originated at `source`: self's
   * children in the BFS tree rooted at `source`. [] if `source` is unknown or not in
   * self's component. The returned array is cached and frozen (shared by later calls).
   */
  broadcast(source: PeerName): PeerName[] {
    this.recalculate();
    let r = this.broadcastCache.get(source);
    if (r === undefined) {
      r = this.adj.has(source) ? this.childrenOfSelf(source) : NO_PEERS;
      this.broadcastCache.set(source, r);
    }
    return r;
  }

  /** `broadcast` on numeric peer names, for the data path (cached, frozen). */
  broadcastNum(source: number): number[] {
    this.recalculate();
    let r = this.broadcastNumCache.get(source);
    if (r === undefined) {
      let name: PeerName;
      try {
        name = numToPeerName(source);
      } catch {
        return NO_NUMS;
      }
      r = Object.freeze(this.broadcast(name).map(peerNameToNum)) as number[];
      this.broadcastNumCache.set(source, r);
    }
    return r;
  }

  /** Every reachable destination (self included, mapped to self) → next hop, keys sorted. */
  unicastAll(): Record<PeerName, PeerName> {
    this.recalculate();
    const out: Record<PeerName, PeerName> = {};
    for (const d of [...this.unicastHop.keys()].sort()) out[d] = this.unicastHop.get(d)!;
    return out;
  }

  /** For every source reachable from self (self included): the broadcast next hops. Keys sorted. */
  broadcastAll(): Record<PeerName, PeerName[]> {
    this.recalculate();
    const out: Record<PeerName, PeerName[]> = {};
    for (const s of [...this.unicastHop.keys()].sort()) out[s] = [...this.broadcast(s)];
    return out;
  }

  private childrenOfSelf(source: PeerName): PeerName[] {
    const tree = this.bfs(source);
    const kids = tree.children.get(this.topology.selfName);
    return kids === undefined ? NO_PEERS : (Object.freeze(kids) as PeerName[]);
  }

  /** Breadth-first search from `root`, neighbours in ascending name order. */
  private bfs(root: PeerName): Tree {
    const parent = new Map<PeerName, PeerName>();
    const children = new Map<PeerName, PeerName[]>();
    const order: PeerName[] = [root];
    const seen = new Set<PeerName>([root]);
    for (let i = 0; i < order.length; i++) {
      const n = order[i]!;
      for (const m of this.adj.get(n) ?? NO_PEERS) {
        if (seen.has(m)) continue;
        seen.add(m);
        parent.set(m, n);
        order.push(m);
        let k = children.get(n);
        if (k === undefined) children.set(n, (k = []));
        k.push(m);
      }
    }
    return { children, order, parent };
  }
}
