/**
 * Keeping a `Report` current from the `/events` stream: the first message is a
 * snapshot, later ones are deltas (see RouterEvent in ../report.ts).
 *
 * `applyEvent` is pure and self-contained on purpose: the live page embeds its
 * compiled source (`applyEvent.toString()`) so the browser and `weave status
 * --watch` apply deltas with the same code. Therefore it must not reference
 * anything outside its own body (no imports, no module-level helpers).
 */

import type { Report, RouterEvent } from '../report.js';

/**
 * Returns a new Report with one event applied; `report` is not modified.
 *
 * - `snapshot` replaces everything.
 * - `peer-joined` adds a peer with no known connections (the next snapshot
 *   fills them in); `peer-left` removes the peer and every edge pointing at it.
 * - `connection` upserts this router's connection by remote address and mirrors
 *   it into this router's own entry in `Router.Peers` (edges of the graph).
 *   A state of `closed` (or `removed`) deletes the connection.
 * - `ipam` replaces IPAM status and per-peer ownership.
 * - `endpoint-attached` / `endpoint-detached` upsert / remove by id.
 * Events of an unknown type leave the report unchanged, so a newer daemon can
 * add event types without breaking older pages or CLIs. With no snapshot yet
 * (`report` null) only a snapshot produces a report.
 */
export function applyEvent(report: Report | null, ev: RouterEvent): Report | null {
  if (ev.type === 'snapshot') return ev.report;
  if (report === null) return null;
  const r: Report = { ...report, Router: { ...report.Router } };
  const router = r.Router;
  switch (ev.type) {
    case 'peer-joined': {
      if (!router.Peers.some((p) => p.Name === ev.peer)) {
        router.Peers = router.Peers.concat([{ Name: ev.peer, NickName: ev.nickname, UID: 0, Version: 0, Connections: [] }]);
      }
      return r;
    }
    case 'peer-left': {
      router.Peers = router.Peers.filter((p) => p.Name !== ev.peer).map((p) =>
        p.Connections.some((c) => c.Name === ev.peer)
          ? { ...p, Connections: p.Connections.filter((c) => c.Name !== ev.peer) }
          : p,
      );
      return r;
    }
    case 'connection': {
      const gone = ev.state === 'closed' || ev.state === 'removed';
      const prev = router.Connections.find((c) => c.Address === ev.address);
      // The event type may later carry `outbound`; until then keep what we knew.
      const outboundField = (ev as { outbound?: unknown }).outbound;
      const outbound = typeof outboundField === 'boolean' ? outboundField : prev ? prev.Outbound : true;
      const others = router.Connections.filter((c) => c.Address !== ev.address);
      if (gone) {
        router.Connections = others;
      } else {
        router.Connections = others.concat([{
          Address: ev.address,
          Outbound: outbound,
          State: ev.state,
          Info: ev.info,
          Name: ev.peer !== undefined ? ev.peer : prev ? prev.Name : undefined,
          NickName: ev.nickname !== undefined ? ev.nickname : prev ? prev.NickName : undefined,
          Path: ev.path,
          Encrypted: ev.encrypted,
          MTU: ev.mtu,
        }]);
      }
      const remote = ev.peer !== undefined ? ev.peer : prev ? prev.Name : undefined;
      if (remote !== undefined) {
        router.Peers = router.Peers.map((p) => {
          if (p.Name !== router.Name) return p;
          const rest = p.Connections.filter((c) => c.Name !== remote);
          if (gone) return { ...p, Connections: rest };
          return {
            ...p,
            Connections: rest.concat([{
              Name: remote,
              NickName: ev.nickname !== undefined ? ev.nickname : prev && prev.NickName !== undefined ? prev.NickName : '',
              Address: ev.address,
              Outbound: outbound,
              Established: ev.state === 'established',
            }]),
          };
        });
      }
      return r;
    }
    case 'ipam': {
      if (r.IPAM) r.IPAM = { ...r.IPAM, Status: ev.status, Owned: ev.owned };
      return r;
    }
    case 'endpoint-attached': {
      const prev = r.Endpoints.find((e) => e.ID === ev.id);
      r.Endpoints = r.Endpoints.filter((e) => e.ID !== ev.id).concat([{ ID: ev.id, MAC: prev ? prev.MAC : '', CIDRs: ev.cidrs.slice(), ...(prev && prev.Name ? { Name: prev.Name } : {}) }]);
      return r;
    }
    case 'endpoint-detached': {
      r.Endpoints = r.Endpoints.filter((e) => e.ID !== ev.id);
      return r;
    }
    default:
      return report;
  }
}
