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
 * Queries re-check `topology.adjacencyGeneration` (which moves only when the routing
 * graph does, kept incrementally by Topology) and recompute lazily, so callers never
 * see stale routes; the check is one integer comparison. The router itself recomputes
 * on a coalescing timer after topology changes (router.ts), so the data path finds
 * the tables ready; see also `gossipNeighbours` (the topology-gossip tree).
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
  /** Adjacency generation the caches below belong to. */
  private adjGen = -1;
  private selfTree: Tree | undefined;
  private unicastHop: Map<PeerName, PeerName> | undefined;
  private unicastHopNum = new Map<number, number>();
  private broadcastCache = new Map<PeerName, PeerName[]>();
  private broadcastNumCache = new Map<number, number[]>();
  private gossipTree: PeerName[] | undefined;
  /** Unicast tables computed so far (each is one BFS from self), for reports and tests. */
  recomputes = 0;

  constructor(topology: Topology) {
    this.topology = topology;
  }

  /** Drops every cache if the routing graph (symmetric established adjacency) changed. O(1) otherwise. */
  private ensure(): void {
    const g = this.topology.adjacencyGeneration;
    if (g === this.adjGen) return;
    this.adjGen = g;
    this.selfTree = undefined;
    this.unicastHop = undefined;
    this.broadcastCache = new Map();
    this.broadcastNumCache = new Map();
    this.gossipTree = undefined;
  }

  /**
   * Makes the unicast tables current (one BFS from self, O(peers + connections)) if
   * the routing graph changed since the last call; a no-op otherwise. Only the
   * symmetric established adjacency matters: version bumps that leave it alone cost nothing.
   */
  recalculate(): void {
    this.ensure();
    if (this.unicastHop !== undefined) return;
    this.recomputes++;
    const self = this.topology.selfName;
    const tree = this.treeOfSelf();
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

  private treeOfSelf(): Tree {
    this.ensure();
    return (this.selfTree ??= this.bfs(this.topology.selfName));
  }

  /** Next hop from self towards `dest`; `self` for self; undefined if unreachable. */
  unicast(dest: PeerName): PeerName | undefined {
    this.recalculate();
    return this.unicastHop!.get(dest);
  }

  /** `unicast` on numeric peer names, for the data path. */
  unicastNum(dest: number): number | undefined {
    this.recalculate();
    return this.unicastHopNum.get(dest);
  }

  /**
   * Neighbours to which self forwards a broadcast that originated at `source`: self's
   * children in the BFS tree rooted at `source`. [] if `source` is unknown or not in
   * self's component. The returned array is cached and frozen (shared by later calls
   * until the routing graph changes); the first call per source after a change costs
   * one BFS.
   */
  broadcast(source: PeerName): PeerName[] {
    this.ensure();
    let r = this.broadcastCache.get(source);
    if (r === undefined) {
      r = this.topology.has(source) ? this.childrenOfSelf(source) : NO_PEERS;
      this.broadcastCache.set(source, r);
    }
    return r;
  }

  /** `broadcast` on numeric peer names, for the data path (cached, frozen). */
  broadcastNum(source: number): number[] {
    this.ensure();
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

  /**
   * Self's neighbours in the mesh's topology-gossip tree: the BFS tree (ascending
   * names, as every route here) rooted at the smallest peer name of self's component,
   * so every peer holding the same table picks the same tree whatever the change's
   * origin. Flooding a change over this one spanning tree reaches the component with
   * one message per peer (issue #20); the parent comes first, then the children.
   * Cached per routing graph (two BFS after a change). [] when self has no neighbours.
   */
  gossipNeighbours(): readonly PeerName[] {
    this.ensure();
    if (this.gossipTree === undefined) {
      const t = this.topology;
      const self = t.selfName;
      // The smallest name in the table is usually in our component: try it first.
      let root = self;
      for (const n of t.names()) if (n < root && t.neighbourRow(n).length > 0) root = n;
      let parents = this.parentsFrom(root, self);
      if (!parents.has(self)) {
        // Not in our component (a partition): the smallest name we reach is the root.
        const mine = this.parentsFrom(self, undefined);
        root = self;
        for (const n of mine.keys()) if (n < root) root = n;
        parents = root === self ? mine : this.parentsFrom(root, self);
      }
      const out: PeerName[] = [];
      const parent = parents.get(self);
      if (parent !== undefined && parent !== self) out.push(parent);
      for (const m of t.neighbourRow(self)) if (parents.get(m) === self) out.push(m);
      this.gossipTree = Object.freeze(out) as PeerName[];
    }
    return this.gossipTree;
  }

  /**
   * BFS parents (root maps to itself) from `root`, ascending names; with `focus`, it
   * stops as soon as `focus` and all its neighbours have their parents (all that
   * `gossipNeighbours` needs), so on average it walks half the graph.
   */
  private parentsFrom(root: PeerName, focus: PeerName | undefined): Map<PeerName, PeerName> {
    const t = this.topology;
    const parent = new Map<PeerName, PeerName>([[root, root]]);
    let left = -1;
    if (focus !== undefined) {
      const row = t.neighbourRow(focus);
      left = row.length + 1 - (parent.has(focus) ? 1 : 0);
      for (const m of row) if (m === root) left--;
    }
    const queue: PeerName[] = [root];
    for (let i = 0; i < queue.length && left !== 0; i++) {
      const n = queue[i]!;
      for (const m of t.neighbourRow(n)) {
        if (parent.has(m)) continue;
        parent.set(m, n);
        queue.push(m);
        if (focus !== undefined && (m === focus || t.neighbourRow(focus).includes(m)) && --left === 0) break;
      }
    }
    return parent;
  }

  /** Every reachable destination (self included, mapped to self) → next hop, keys sorted. */
  unicastAll(): Record<PeerName, PeerName> {
    this.recalculate();
    const out: Record<PeerName, PeerName> = {};
    for (const d of [...this.unicastHop!.keys()].sort()) out[d] = this.unicastHop!.get(d)!;
    return out;
  }

  /** For every source reachable from self (self included): the broadcast next hops. Keys sorted. */
  broadcastAll(): Record<PeerName, PeerName[]> {
    this.recalculate();
    const out: Record<PeerName, PeerName[]> = {};
    for (const s of [...this.unicastHop!.keys()].sort()) out[s] = [...this.broadcast(s)];
    return out;
  }

  private childrenOfSelf(source: PeerName): PeerName[] {
    const tree = source === this.topology.selfName ? this.treeOfSelf() : this.bfs(source);
    const kids = tree.children.get(this.topology.selfName);
    return kids === undefined ? NO_PEERS : (Object.freeze([...kids]) as PeerName[]);
  }

  /** Breadth-first search from `root`, neighbours in ascending name order (the topology's sorted rows). */
  private bfs(root: PeerName): Tree {
    const parent = new Map<PeerName, PeerName>();
    const children = new Map<PeerName, PeerName[]>();
    const order: PeerName[] = [root];
    const seen = new Set<PeerName>([root]);
    const t = this.topology;
    for (let i = 0; i < order.length; i++) {
      const n = order[i]!;
      let k: PeerName[] | undefined;
      for (const m of t.neighbourRow(n)) {
        if (seen.has(m)) continue;
        seen.add(m);
        parent.set(m, n);
        order.push(m);
        if (k === undefined) children.set(n, (k = []));
        k.push(m);
      }
    }
    return { children, order, parent };
  }
}
