/**
 * Sample data for the observability tests: a 3-peer mesh seen from h1.
 * h1 -> h2 (sleeve, mtu 1376), h3 -> h1 (fastdp, encrypted, mtu 1410), h2 -> h3
 * established only on h2's side, and a failed attempt to 192.168.77.9.
 */

import { EventEmitter } from 'node:events';
import type { Report, RouterEvent } from '../../router/api/report.js';

export const H1 = '8a:00:00:00:00:01';
export const H2 = '3e:00:00:00:00:02';
export const H3 = '5c:00:00:00:00:03';
export const H4 = '9d:00:00:00:00:04';

export function sampleReport(): Report {
  return {
    Version: '0.1.0',
    Router: {
      Name: H1,
      NickName: 'h1',
      Port: 6783,
      Protocol: 'tsweave',
      ProtocolMinVersion: 1,
      ProtocolMaxVersion: 2,
      Encryption: false,
      TrustedSubnets: [],
      PeerDiscovery: true,
      ConnLimit: 100,
      MTU: 1376,
      Peers: [
        {
          Name: H1, NickName: 'h1', UID: 1, Version: 5,
          Connections: [
            { Name: H2, NickName: 'h2', Address: '192.168.77.2:6783', Outbound: true, Established: true },
            { Name: H3, NickName: 'h3', Address: '192.168.77.3:45678', Outbound: false, Established: true },
          ],
        },
        {
          Name: H2, NickName: 'h2', UID: 2, Version: 4,
          Connections: [
            { Name: H1, NickName: 'h1', Address: '192.168.77.1:51000', Outbound: false, Established: true },
            { Name: H3, NickName: 'h3', Address: '192.168.77.3:6783', Outbound: true, Established: true },
          ],
        },
        {
          Name: H3, NickName: 'h3', UID: 3, Version: 3,
          Connections: [
            { Name: H1, NickName: 'h1', Address: '192.168.77.1:6783', Outbound: true, Established: true },
            { Name: H2, NickName: 'h2', Address: '192.168.77.2:40000', Outbound: false, Established: false },
          ],
        },
      ],
      Connections: [
        { Address: '192.168.77.2:6783', Outbound: true, State: 'established', Info: `sleeve ${H2}(h2)`, Name: H2, NickName: 'h2', Path: 'sleeve', Encrypted: false, MTU: 1376 },
        { Address: '192.168.77.3:45678', Outbound: false, State: 'established', Info: `fastdp ${H3}(h3)`, Name: H3, NickName: 'h3', Path: 'fastdp', Encrypted: true, MTU: 1410 },
        { Address: '192.168.77.9:6783', Outbound: true, State: 'failed', Info: 'dial tcp 192.168.77.9:6783: connect: connection refused' },
      ],
      Targets: ['192.168.77.2', '192.168.77.9'],
      TargetStates: [],
      UnicastRoutes: {},
      BroadcastRoutes: {},
      MACs: 4,
      Drops: {},
      Traffic: {},
    },
    IPAM: {
      Range: '10.32.0.0/12',
      DefaultSubnet: '10.32.0.0/12',
      Status: 'ready',
      Entries: [],
      PendingAllocates: 1,
      Owned: [
        { Peer: H2, NickName: 'h2', Addresses: 349525, Percent: (349525 * 100) / 1048576, Reachable: true },
        { Peer: H1, NickName: 'h1', Addresses: 349525, Percent: (349525 * 100) / 1048576, Reachable: true },
        { Peer: H3, NickName: 'h3', Addresses: 349526, Percent: (349526 * 100) / 1048576, Reachable: false },
      ],
    },
    Endpoints: [
      { ID: 'c0ffee000001', MAC: '02:00:00:00:00:01', CIDRs: ['10.32.0.1/12'] },
      { ID: 'netns:/run/netns/x', MAC: '02:00:00:00:00:02', CIDRs: ['10.32.0.2/12'] },
    ],
  };
}

/** A router stand-in: report() returns `current`, emit() sends a RouterEvent. */
export class FakeSource extends EventEmitter {
  current: Report;
  reportCalls = 0;
  failReport: Error | null = null;
  constructor(r: Report = sampleReport()) {
    super();
    this.current = r;
  }
  report(): Report {
    this.reportCalls++;
    if (this.failReport) throw this.failReport;
    return this.current;
  }
  send(e: RouterEvent): void {
    this.emit('event', e);
  }
}

/** Small deterministic PRNG (mulberry32) for property-style tests. */
export { mulberry32 as prng } from '../lib/prng.js';
