import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatConnections, formatIpam, formatPeers, formatStatus, formatTargets } from '../../cli/format.js';
import { H1, H2, H3, sampleReport } from './obs-fixtures.js';

test('formatStatus: Weave layout for the sample mesh', () => {
  const expected = [
    '        Version: 0.1.0',
    '',
    '        Service: router',
    '       Protocol: tsweave 1..2',
    '           Name: 8a:00:00:00:00:01(h1)',
    '     Encryption: disabled',
    '  PeerDiscovery: enabled',
    '        Targets: 2',
    '    Connections: 3 (2 established, 1 failed)',
    '          Peers: 3 (with 5 established, 1 pending connections)',
    ' TrustedSubnets: none',
    '',
    '        Service: ipam',
    '         Status: ready',
    '          Range: 10.32.0.0/12',
    '  DefaultSubnet: 10.32.0.0/12',
    '',
  ].join('\n');
  assert.equal(formatStatus(sampleReport()), expected);
});

test('formatStatus: single protocol version, no connections, encryption, trusted subnets, no IPAM', () => {
  const r = sampleReport();
  r.Router.ProtocolMinVersion = 2;
  r.Router.Encryption = true;
  r.Router.PeerDiscovery = false;
  r.Router.TrustedSubnets = ['10.0.0.0/8', '192.168.0.0/16'];
  r.Router.Connections = [];
  r.Router.Targets = [];
  r.Router.Peers = [{ Name: H1, NickName: 'h1', UID: 1, Version: 1, Connections: [] }];
  delete r.IPAM;
  assert.equal(formatStatus(r), [
    '        Version: 0.1.0',
    '',
    '        Service: router',
    '       Protocol: tsweave 2',
    '           Name: 8a:00:00:00:00:01(h1)',
    '     Encryption: enabled',
    '  PeerDiscovery: disabled',
    '        Targets: 0',
    '    Connections: 0',
    '          Peers: 1',
    ' TrustedSubnets: 10.0.0.0/8, 192.168.0.0/16',
    '',
  ].join('\n'));
});

test('formatStatus: states follow Weave order, unknown states after them', () => {
  const r = sampleReport();
  const c = (State: string) => ({ Address: '1.2.3.4:6783', Outbound: true, State, Info: '' });
  r.Router.Connections = [c('connecting'), c('weird'), c('retrying'), c('pending'), c('connecting')];
  assert.match(formatStatus(r), /\n {4}Connections: 5 \(1 pending, 1 retrying, 2 connecting, 1 weird\)\n/);
});

test('formatConnections: direction, padded address and state, info, attributes', () => {
  assert.equal(formatConnections(sampleReport()),
    '-> 192.168.77.2:6783     established sleeve 3e:00:00:00:00:02(h2) mtu=1376\n' +
    '<- 192.168.77.3:45678    established fastdp 5c:00:00:00:00:03(h3) encrypted mtu=1410\n' +
    '-> 192.168.77.9:6783     failed      dial tcp 192.168.77.9:6783: connect: connection refused\n');
});

test('formatConnections: attributes already in Info are not repeated; empty list is empty', () => {
  const r = sampleReport();
  r.Router.Connections = [{ Address: '[fd00::1]:6783', Outbound: false, State: 'established', Info: 'sleeve x(y) mtu=1400 encrypted', Encrypted: true, MTU: 1400 }];
  assert.equal(formatConnections(r), '<- [fd00::1]:6783        established sleeve x(y) mtu=1400 encrypted\n');
  r.Router.Connections = [];
  assert.equal(formatConnections(r), '');
});

test('formatPeers: tree of peers and their connections', () => {
  assert.equal(formatPeers(sampleReport()),
    '8a:00:00:00:00:01(h1)\n' +
    '   -> 192.168.77.2:6783     3e:00:00:00:00:02(h2)                 established\n' +
    '   <- 192.168.77.3:45678    5c:00:00:00:00:03(h3)                 established\n' +
    '3e:00:00:00:00:02(h2)\n' +
    '   <- 192.168.77.1:51000    8a:00:00:00:00:01(h1)                 established\n' +
    '   -> 192.168.77.3:6783     5c:00:00:00:00:03(h3)                 established\n' +
    '5c:00:00:00:00:03(h3)\n' +
    '   -> 192.168.77.1:6783     8a:00:00:00:00:01(h1)                 established\n' +
    '   <- 192.168.77.2:40000    3e:00:00:00:00:02(h2)                 pending\n');
});

test('formatTargets: one per line', () => {
  assert.equal(formatTargets(sampleReport()), '192.168.77.2\n192.168.77.9\n');
  const flagged = sampleReport();
  flagged.Router.TargetStates = [{ Address: '192.168.77.9', State: 'retrying', Unresolved: 'ENOTFOUND\u001b[2J' }];
  assert.equal(formatTargets(flagged), '192.168.77.2\n192.168.77.9 unresolved: ENOTFOUND\\x1b[2J\n');
  const r = sampleReport();
  r.Router.Targets = [];
  assert.equal(formatTargets(r), '');
});

test('formatIpam: own line first with active count, unreachable marked', () => {
  assert.equal(formatIpam(sampleReport()),
    '8a:00:00:00:00:01(h1)                   349525 IPs (33.3% of total) (2 active)\n' +
    '3e:00:00:00:00:02(h2)                   349525 IPs (33.3% of total)\n' +
    '5c:00:00:00:00:03(h3)                   349526 IPs (33.3% of total) - unreachable!\n');
});

test('formatIpam: Go %04.1f percentages, ActiveIPs field preferred, no IPAM is empty', () => {
  const r = sampleReport();
  r.IPAM!.Owned = [
    { Peer: H1, NickName: 'h1', Addresses: 52429, Percent: 5, Reachable: true },
    { Peer: H2, NickName: 'h2', Addresses: 1048576, Percent: 100, Reachable: true },
    { Peer: H3, NickName: '', Addresses: 0, Percent: 0, Reachable: true },
  ];
  (r.IPAM as unknown as { ActiveIPs: number }).ActiveIPs = 7;
  assert.equal(formatIpam(r),
    '8a:00:00:00:00:01(h1)                    52429 IPs (05.0% of total) (7 active)\n' +
    '3e:00:00:00:00:02(h2)                  1048576 IPs (100.0% of total)\n' +
    '5c:00:00:00:00:03()                          0 IPs (00.0% of total)\n');
  delete r.IPAM;
  assert.equal(formatIpam(r), '');
});
