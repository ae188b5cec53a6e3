/**
 * Readiness: whether this router can take containers now. `GET /status` answers 503
 * with the reason until it is (a Kubernetes readiness probe or a script waits on it,
 * as on Weave Net's /status), and `weave status` shows the same line.
 *
 * Ready means: the data path is up (the `weave` bridge and the router's TAP exist in
 * the router's network namespace) and IPAM can allocate — its ring exists (consensus
 * reached, seeded, or received), or IPAM is disabled, or the router is an observer
 * (it owns no space and needs none to be ready). Pure: the caller gathers the inputs.
 */

export interface Readiness {
  Ready: boolean;
  /** "ready", or why not, one line (e.g. "IPAM: awaiting consensus (quorum 2, known 1)"). */
  Reason: string;
}

export interface ReadinessInput {
  /** IPAM's status line from the report (`IPAM.Status`), or undefined when IPAM is disabled. */
  ipamStatus: string | undefined;
  /** Launched with --ipalloc-init observer. */
  observer: boolean;
  /** Network interface names present in the router's namespace (from /proc/net/dev). */
  links: Set<string>;
  bridge: string;
  tap: string;
}

/** Decide readiness; the first unmet condition is the reason. */
export function readiness(i: ReadinessInput): Readiness {
  if (!i.links.has(i.bridge)) return { Ready: false, Reason: `data path: bridge ${i.bridge} is missing (weave reset? relaunch the router)` };
  if (!i.links.has(i.tap)) return { Ready: false, Reason: `data path: the router's TAP ${i.tap} is missing (relaunch the router)` };
  if (i.ipamStatus !== undefined && i.ipamStatus !== 'ready' && !i.observer) {
    const hint = /^idle/.test(i.ipamStatus) ? ': run weave prime (or allocate an address) to start consensus' : '';
    return { Ready: false, Reason: `IPAM: ${i.ipamStatus}${hint}` };
  }
  return { Ready: true, Reason: 'ready' };
}

/** Interface names from the text of /proc/net/dev ("  weave: 123 ..." lines). */
export function linksFromProcNetDev(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n').slice(2)) {
    const m = /^\s*([^:\s]+):/.exec(line);
    if (m) out.add(m[1]);
  }
  return out;
}
