import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Report, RouterEvent } from '../../router/api/report.js';
import { applyEvent } from '../../router/api/ui/model.js';
import { H1, H2, H3, H4, prng, sampleReport } from './obs-fixtures.js';

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
    Object.freeze(v);
  }
  return v;
}

const frozen = (): Report => deepFreeze(sampleReport());

test('applyEvent: snapshot replaces; deltas before any snapshot are ignored', () => {
  const r = sampleReport();
  assert.equal(applyEvent(null, { type: 'snapshot', report: r }), r);
  assert.equal(applyEvent(null, { type: 'peer-joined', peer: H4, nickname: 'h4' }), null);
  const other = sampleReport();
  other.Router.NickName = 'x';
  assert.equal(applyEvent(frozen(), { type: 'snapshot', report: other }), other);
});

test('applyEvent: peer joined / left, without mutating the input', () => {
  const r0 = frozen();
  const r1 = applyEvent(r0, { type: 'peer-joined', peer: H4, nickname: 'h4' })!;
  assert.deepEqual(r1.Router.Peers.map((p) => p.Name), [H1, H2, H3, H4]);
  assert.equal(r0.Router.Peers.length, 3);
  // Joining twice does not duplicate.
  assert.equal(applyEvent(r1, { type: 'peer-joined', peer: H4, nickname: 'h4' })!.Router.Peers.length, 4);
  const r2 = applyEvent(r1, { type: 'peer-left', peer: H3, nickname: 'h3' })!;
  assert.deepEqual(r2.Router.Peers.map((p) => p.Name), [H1, H2, H4]);
  for (const p of r2.Router.Peers) assert.ok(!p.Connections.some((c) => c.Name === H3), `edge to h3 left on ${p.NickName}`);
  assert.equal(r1.Router.Peers.length, 4);
});

test('applyEvent: connection upsert, mirror into own peer entry, and close', () => {
  const r0 = frozen();
  const ev: RouterEvent = { type: 'connection', address: '192.168.77.4:6783', peer: H4, nickname: 'h4', state: 'pending', info: 'pending' };
  const r1 = applyEvent(r0, ev)!;
  assert.equal(r1.Router.Connections.length, 4);
  const self1 = r1.Router.Peers.find((p) => p.Name === H1)!;
  assert.deepEqual(self1.Connections.find((c) => c.Name === H4), { Name: H4, NickName: 'h4', Address: '192.168.77.4:6783', Outbound: true, Established: false });
  const r2 = applyEvent(r1, { ...ev, state: 'established', path: 'sleeve', mtu: 1376, encrypted: false, info: 'sleeve' })!;
  const c = r2.Router.Connections.find((x) => x.Address === '192.168.77.4:6783')!;
  assert.equal(c.State, 'established');
  assert.equal(c.Path, 'sleeve');
  assert.equal(c.MTU, 1376);
  assert.equal(r2.Router.Connections.length, 4);
  assert.equal(r2.Router.Peers.find((p) => p.Name === H1)!.Connections.filter((x) => x.Name === H4).length, 1);
  assert.equal(r2.Router.Peers.find((p) => p.Name === H1)!.Connections.find((x) => x.Name === H4)!.Established, true);
  // Inbound flag kept from the previous state when the event does not say.
  const r3 = applyEvent(r0, { type: 'connection', address: '192.168.77.3:45678', state: 'retrying', info: 'timeout' })!;
  const c3 = r3.Router.Connections.find((x) => x.Address === '192.168.77.3:45678')!;
  assert.equal(c3.Outbound, false);
  assert.equal(c3.Name, H3);
  assert.equal(r3.Router.Peers[0].Connections.find((x) => x.Name === H3)!.Established, false);
  const r4 = applyEvent(r2, { type: 'connection', address: '192.168.77.4:6783', peer: H4, state: 'closed', info: '' })!;
  assert.equal(r4.Router.Connections.length, 3);
  assert.ok(!r4.Router.Peers[0].Connections.some((x) => x.Name === H4));
  // An attempt with no peer yet touches only the connection list.
  const r5 = applyEvent(r0, { type: 'connection', address: '10.9.9.9:6783', state: 'connecting', info: '' })!;
  assert.equal(r5.Router.Peers, r0.Router.Peers);
});

test('applyEvent: ipam and endpoints', () => {
  const r0 = frozen();
  const owned = [{ Peer: H1, NickName: 'h1', Addresses: 10, Percent: 100, Reachable: true }];
  const r1 = applyEvent(r0, { type: 'ipam', status: 'waiting', owned })!;
  assert.equal(r1.IPAM!.Status, 'waiting');
  assert.deepEqual(r1.IPAM!.Owned, owned);
  const noIpam = sampleReport();
  delete noIpam.IPAM;
  assert.equal(applyEvent(noIpam, { type: 'ipam', status: 'x', owned })!.IPAM, undefined);
  const r2 = applyEvent(r0, { type: 'endpoint-attached', id: 'abc', cidrs: ['10.32.0.9/12'] })!;
  assert.deepEqual(r2.Endpoints.map((e) => e.ID), ['c0ffee000001', 'netns:/run/netns/x', 'abc']);
  const r3 = applyEvent(r2, { type: 'endpoint-attached', id: 'c0ffee000001', cidrs: ['10.32.0.7/12'] })!;
  assert.equal(r3.Endpoints.length, 3);
  assert.equal(r3.Endpoints.find((e) => e.ID === 'c0ffee000001')!.MAC, '02:00:00:00:00:01');
  assert.deepEqual(r3.Endpoints.find((e) => e.ID === 'c0ffee000001')!.CIDRs, ['10.32.0.7/12']);
  const r4 = applyEvent(r3, { type: 'endpoint-detached', id: 'abc', cidrs: [] })!;
  assert.deepEqual(r4.Endpoints.map((e) => e.ID), ['netns:/run/netns/x', 'c0ffee000001']);
});

test('applyEvent: unknown event types leave the report as is', () => {
  const r0 = frozen();
  assert.equal(applyEvent(r0, { type: 'from-the-future' } as unknown as RouterEvent), r0);
});

test('applyEvent: random event sequences keep peers unique and own-peer edges in step with connections', () => {
  const rand = prng(8);
  const names = [H2, H3, H4, '11:00:00:00:00:05'];
  for (let run = 0; run < 200; run++) {
    let r: Report = sampleReport();
    for (let i = 0; i < 30; i++) {
      const peer = names[Math.floor(rand() * names.length)];
      const k = rand();
      let ev: RouterEvent;
      if (k < 0.25) ev = { type: 'peer-joined', peer, nickname: 'n' };
      else if (k < 0.4) ev = { type: 'peer-left', peer, nickname: 'n' };
      else {
        const state = ['connecting', 'pending', 'established', 'failed', 'closed'][Math.floor(rand() * 5)];
        ev = { type: 'connection', address: `${peer}:6783`, peer, nickname: 'n', state, info: '' };
      }
      r = applyEvent(r, ev)!;
      const seen = new Set(r.Router.Peers.map((p) => p.Name));
      assert.equal(seen.size, r.Router.Peers.length);
      const addrs = r.Router.Connections.map((c) => c.Address);
      assert.equal(new Set(addrs).size, addrs.length);
      const self = r.Router.Peers.find((p) => p.Name === H1)!;
      const edgeNames = self.Connections.map((c) => c.Name);
      assert.equal(new Set(edgeNames).size, edgeNames.length);
    }
  }
});
