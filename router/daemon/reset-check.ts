/**
 * What `weave reset` would abandon. A peer hands its IPAM ranges to a reachable peer
 * when it resets (Weave's shutdown hand-over); with no established connection there
 * is nobody to take them, so the addresses stay owned by a peer that no longer exists
 * until another peer runs `weave rmpeer`. Pure: reads a report.
 */
import type { Report } from '../api/report.js';

/**
 * @returns `abandons`: "N addresses of the IPAM range owned by PEER" when this peer
 *   owns space and has no established connection, else undefined; `peer`: our name.
 */
export function resetCheck(r: Report): { abandons?: string; peer: string } {
  const self = r.Router.Name;
  const owned = r.IPAM?.Owned.find((o) => o.Peer === self)?.Addresses ?? 0;
  const reachable = r.Router.Connections.some((c) => c.State === 'established');
  if (owned === 0 || reachable) return { peer: self };
  return { abandons: `${owned} addresses of the IPAM range ${r.IPAM?.Range ?? ''} owned by ${self}(${r.Router.NickName})`, peer: self };
}
