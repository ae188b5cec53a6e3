/**
 * weave-kube's peer logic (cni/kube-peers.ts) against a fake Kubernetes API with a
 * compare-and-swap ConfigMap, and fake routers: peers follow the node list, and a
 * departed node's IPAM space is reclaimed exactly once even when every node races.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseKubePeers, peerAddresses, reconcile, registerSelf, stranded, withSelf, type KubeApi, type KubeNode, type PeerEntry, type RouterOps } from '../../cni/kube-peers.js';

class FakeCluster {
  nodes: KubeNode[] = [];
  stored: PeerEntry[] = [];
  version = 0;
  conflicts = 0;
  /** A KubeApi view; `beforePut` lets a test interleave another node's update. */
  api(beforePut?: () => Promise<void>): KubeApi {
    return {
      listNodes: async () => this.nodes.map((n) => ({ ...n })),
      getPeerList: async () => ({ peers: this.stored.map((e) => ({ ...e })), version: this.version ? String(this.version) : '' }),
      putPeerList: async (peers, version) => {
        await beforePut?.();
        if (version !== (this.version ? String(this.version) : '')) {
          this.conflicts++;
          return false;
        }
        this.stored = peers.map((e) => ({ ...e }));
        this.version++;
        return true;
      },
    };
  }
}

function fakeRouter(): RouterOps & { targets: string[]; rmpeers: string[] } {
  const r = {
    targets: [] as string[],
    rmpeers: [] as string[],
    connect: async (a: string[]) => void (r.targets = a),
    rmpeer: async (p: string) => void r.rmpeers.push(p),
  };
  return r;
}

test('parseKubePeers splits on spaces and commas and refuses junk', () => {
  assert.deepEqual(parseKubePeers(' 10.0.0.1,10.0.0.2  node-3.example '), ['10.0.0.1', '10.0.0.2', 'node-3.example']);
  assert.deepEqual(parseKubePeers(''), []);
  assert.throws(() => parseKubePeers('10.0.0.1;rm -rf /'), /not an address/);
});

test('peerAddresses: every other node with an address, sorted, unique', () => {
  const nodes = [{ name: 'n2', address: '10.0.0.2' }, { name: 'n1', address: '10.0.0.1' }, { name: 'n3' }, { name: 'n4', address: '10.0.0.2' }];
  assert.deepEqual(peerAddresses(nodes, 'n1'), ['10.0.0.2']);
  assert.deepEqual(peerAddresses(nodes, 'nx'), ['10.0.0.1', '10.0.0.2']);
});

test('withSelf replaces our node\'s old peer name; stranded never names us', () => {
  const l = [{ peerName: 'aa', nodeName: 'n1' }, { peerName: 'bb', nodeName: 'n2' }];
  assert.deepEqual(withSelf(l, { peerName: 'cc', nodeName: 'n1' }), [{ peerName: 'bb', nodeName: 'n2' }, { peerName: 'cc', nodeName: 'n1' }]);
  assert.deepEqual(stranded(l, [{ name: 'n1' }], 'aa'), [{ peerName: 'bb', nodeName: 'n2' }]);
  assert.deepEqual(stranded(l, [], 'aa'), [{ peerName: 'bb', nodeName: 'n2' }]);
});

test('three nodes register, connect to each other, and a removed node is reclaimed exactly once', async () => {
  const c = new FakeCluster();
  c.nodes = [{ name: 'n1', address: '10.0.0.1' }, { name: 'n2', address: '10.0.0.2' }, { name: 'n3', address: '10.0.0.3' }];
  const selves = [{ peerName: 'p1', nodeName: 'n1' }, { peerName: 'p2', nodeName: 'n2' }, { peerName: 'p3', nodeName: 'n3' }];
  // Registration races: each node's put is preceded by another's, so CAS conflicts happen and are retried.
  await Promise.all(selves.map((s) => registerSelf(c.api(), s)));
  assert.deepEqual(c.stored.map((e) => e.peerName).sort(), ['p1', 'p2', 'p3']);
  const routers = selves.map(() => fakeRouter());
  for (let i = 0; i < 3; i++) {
    const r = await reconcile(c.api(), routers[i], selves[i]);
    assert.deepEqual(r.reclaimed, []);
  }
  assert.deepEqual(routers[0].targets, ['10.0.0.2', '10.0.0.3']);

  // n3 leaves; n1 and n2 reconcile concurrently, with n2's put landing between n1's read and put.
  c.nodes = c.nodes.filter((n) => n.name !== 'n3');
  let interleaved = false;
  const racer = c.api(async () => {
    if (interleaved) return;
    interleaved = true;
    await reconcile(c.api(), routers[1], selves[1]);
  });
  await reconcile(racer, routers[0], selves[0]);
  await reconcile(c.api(), routers[1], selves[1]);
  const all = [...routers[0].rmpeers, ...routers[1].rmpeers];
  assert.deepEqual(all, ['p3'], `p3 reclaimed once in total, got ${JSON.stringify(all)}`);
  assert.ok(c.conflicts >= 1, 'the race did produce a CAS conflict');
  assert.deepEqual(c.stored.map((e) => e.peerName).sort(), ['p1', 'p2']);
  assert.deepEqual(routers[0].targets, ['10.0.0.2']);
});

test('a failed rmpeer puts the entry back so a later pass retries', async () => {
  const c = new FakeCluster();
  c.nodes = [{ name: 'n1', address: '10.0.0.1' }];
  c.stored = [{ peerName: 'p1', nodeName: 'n1' }, { peerName: 'p9', nodeName: 'n9' }];
  c.version = 1;
  const failing: RouterOps = { connect: async () => undefined, rmpeer: async () => { throw new Error('IPAM is not ready'); } };
  const logs: string[] = [];
  const r = await reconcile(c.api(), failing, { peerName: 'p1', nodeName: 'n1' }, (m) => logs.push(m));
  assert.deepEqual(r.reclaimed, []);
  assert.ok(c.stored.some((e) => e.peerName === 'p9'));
  assert.match(logs.join('\n'), /will retry/);
  const ok = fakeRouter();
  assert.deepEqual((await reconcile(c.api(), ok, { peerName: 'p1', nodeName: 'n1' })).reclaimed, ['p9']);
});
