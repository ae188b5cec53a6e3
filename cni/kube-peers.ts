/**
 * weave-kube's peer logic: which peers a node's router should connect to, and whose
 * IPAM space to reclaim when a node leaves the cluster (Weave's "stranded range"
 * problem, weave#2797/#3600).
 *
 * As in Weave's kube-utils, a ConfigMap (`weave-net` in kube-system, annotation
 * `kube-peers.weave.works/peers`) records which router peer name runs on which node.
 * Every router adds itself on start. On each pass, a node that sees an entry for a
 * node no longer in the node list removes that entry with a compare-and-swap update
 * (resourceVersion) — only the node whose update wins calls `rmpeer` for it, so a dead
 * peer's space is taken over exactly once.
 *
 * Pure: the Kubernetes API and the router are injected (KubeApi, RouterOps), so the
 * logic is unit-tested with fakes; cni/kube-launch.ts wires the real ones.
 */

/** A node as the peer logic needs it. */
export interface KubeNode {
  name: string;
  /** InternalIP (or ExternalIP when there is none); undefined when the node has neither. */
  address?: string;
}

/** One entry of the peer list: router peer name ("aa:bb:cc:dd:ee:ff") on a node. */
export interface PeerEntry {
  peerName: string;
  nodeName: string;
}

export interface PeerList {
  peers: PeerEntry[];
  /** Opaque version for compare-and-swap (the ConfigMap's resourceVersion). */
  version: string;
}

/** The Kubernetes side, as the logic needs it. */
export interface KubeApi {
  listNodes(): Promise<KubeNode[]>;
  /** The stored list (empty, version '' when the ConfigMap does not exist yet). */
  getPeerList(): Promise<PeerList>;
  /**
   * Store `peers` if the stored version is still `version`; resolve false on a
   * conflict (someone else updated first), reject on other errors.
   */
  putPeerList(peers: PeerEntry[], version: string): Promise<boolean>;
}

/** The router side. */
export interface RouterOps {
  /** Replace the router's connection targets (`weave connect --replace`). */
  connect(addresses: string[]): Promise<void>;
  /** Take over a dead peer's IPAM space (`weave rmpeer`). */
  rmpeer(peerName: string): Promise<void>;
}

/** Largest cluster the logic accepts (bounds memory and the peer list size). */
export const MAX_NODES = 5000;

/**
 * Parse KUBE_PEERS ("10.0.0.1 10.0.0.2,10.0.0.3"): addresses separated by spaces or
 * commas; each an IPv4 address or host name (≤ 253 chars). Throws a one-line Error.
 */
export function parseKubePeers(s: string): string[] {
  const out = s.split(/[\s,]+/).filter(Boolean);
  if (out.length > MAX_NODES) throw new Error(`KUBE_PEERS lists ${out.length} peers, more than ${MAX_NODES}`);
  for (const p of out) if (!/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(p)) throw new Error(`KUBE_PEERS entry "${p.slice(0, 64)}" is not an address or host name`);
  return out;
}

/**
 * The addresses to connect to: every node's address but our own, sorted, unique.
 * @param self our node's name (NODE_NAME from the downward API)
 */
export function peerAddresses(nodes: KubeNode[], self: string): string[] {
  if (nodes.length > MAX_NODES) throw new Error(`the cluster lists ${nodes.length} nodes, more than ${MAX_NODES}`);
  return [...new Set(nodes.filter((n) => n.name !== self && n.address).map((n) => n.address!))].sort();
}

/** The list with our entry in it (replacing an old peer name for our node). */
export function withSelf(list: PeerEntry[], self: PeerEntry): PeerEntry[] {
  return [...list.filter((e) => e.nodeName !== self.nodeName && e.peerName !== self.peerName), self];
}

/** Entries whose node is no longer in the cluster (never our own). */
export function stranded(list: PeerEntry[], nodes: KubeNode[], selfPeer: string): PeerEntry[] {
  const live = new Set(nodes.map((n) => n.name));
  return list.filter((e) => !live.has(e.nodeName) && e.peerName !== selfPeer);
}

/** Register our peer name (retries CAS conflicts, at most `tries` times). */
export async function registerSelf(api: KubeApi, self: PeerEntry, tries = 10): Promise<void> {
  for (let i = 0; i < tries; i++) {
    const cur = await api.getPeerList();
    if (cur.peers.some((e) => e.nodeName === self.nodeName && e.peerName === self.peerName)) return;
    if (await api.putPeerList(withSelf(cur.peers, self), cur.version)) return;
  }
  throw new Error(`could not record peer ${self.peerName} for node ${self.nodeName} in the peer list after ${tries} conflicting updates`);
}

/**
 * One pass: connect to the current nodes, and reclaim the space of every peer whose
 * node is gone — only for the entries this node won the right to remove.
 * @returns what it did: the addresses set and the peers reclaimed
 */
export async function reconcile(api: KubeApi, router: RouterOps, self: PeerEntry, log: (msg: string) => void = () => undefined): Promise<{ addresses: string[]; reclaimed: string[] }> {
  const nodes = await api.listNodes();
  const addresses = peerAddresses(nodes, self.nodeName);
  await router.connect(addresses);
  const reclaimed: string[] = [];
  for (const gone of stranded((await api.getPeerList()).peers, nodes, self.peerName)) {
    // Remove the entry first (CAS); whoever wins reclaims, so it happens exactly once.
    const cur = await api.getPeerList();
    if (!cur.peers.some((e) => e.peerName === gone.peerName)) continue;
    const won = await api.putPeerList(cur.peers.filter((e) => e.peerName !== gone.peerName), cur.version);
    if (!won) continue; // another node took it; the next pass sees the new list
    try {
      await router.rmpeer(gone.peerName);
      reclaimed.push(gone.peerName);
      log(`reclaimed the IPAM space of peer ${gone.peerName} (node ${gone.nodeName} left the cluster)`);
    } catch (err) {
      // Put the entry back so a later pass (here or elsewhere) tries again.
      log(`rmpeer ${gone.peerName} failed: ${(err as Error).message}; will retry`);
      const again = await api.getPeerList();
      await api.putPeerList([...again.peers, gone], again.version).catch(() => false);
    }
  }
  return { addresses, reclaimed };
}
