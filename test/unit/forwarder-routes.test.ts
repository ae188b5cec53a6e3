/**
 * Issue #20: the forwarder's frame handlers never rebuild routes inline; the router
 * does it on a coalescing timer (Forwarder.recalcRoutes), and frames in between use
 * the last tables.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Topology } from '../../router/mesh/topology.js';
import { Routes } from '../../router/mesh/routes.js';
import { Forwarder } from '../../router/overlay/forwarder.js';
import { numToPeerName } from '../../router/mesh/peer-name.js';
import type { Sleeve, SleevePeer } from '../../router/overlay/sleeve.js';

test('a topology change does not make the next received datagram recompute routes', () => {
  const self = numToPeerName(1);
  const topology = new Topology({ name: self, nickname: 'a', uid: 1 });
  const routes = new Routes(topology);
  const sleeve = { batchSize: 1, flush() {}, clearFlows() {}, flowStats() { return { frames: 0, bytes: 0, flows: 0 }; }, enqueue() {} } as unknown as Sleeve;
  const f = new Forwarder({ selfName: self, topology, routes, sleeve, sleevePeers: new Map(), flowCache: false });
  f.recalcRoutes();
  const before = routes.recomputes;
  // Routing graph changes: we and peer 2 list each other, established.
  topology.setLocalConnections([{ name: numToPeerName(2), address: 'x:1', outbound: true, established: true }]);
  topology.merge([{ name: numToPeerName(2), nickname: 'b', uid: 2, version: 2, connections: [{ name: self, address: 'y:1', outbound: false, established: true }] }]);
  const peer = { opener: undefined, addr: 0 } as unknown as SleevePeer;
  for (let i = 0; i < 5; i++) f.onFrames(peer, Buffer.alloc(3), 0, 3);
  assert.equal(routes.recomputes, before, 'the frame handler recomputed routes');
  assert.equal(f.routeStats.recomputes, 1);
  assert.equal(f.drops.malformed, 5, 'the datagrams were handled');
  f.recalcRoutes();
  assert.equal(routes.recomputes, before + 1);
  assert.equal(routes.unicast(numToPeerName(2)), numToPeerName(2));
});
