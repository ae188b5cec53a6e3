/**
 * The Docker plugin's pure handlers (plugin/protocol.ts) against an in-memory world:
 * an address book standing in for IPAM (refuses double allocation), a link table and
 * an endpoint table, so each test checks what a call did, not only what it answered.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { PluginCore, PluginError, networkOf, poolOwner, gatewayOwner, type PluginBackend, type PluginState } from '../../plugin/protocol.js';
import { parsePluginState, guestVethName, allocateInPool } from '../../plugin/subsystem.js';
import { Allocator, type GossipChannel } from '../../ipam/allocator.js';
import { MemoryPersistence } from '../../ipam/persist.js';
import type { AddressAllocator } from '../../router/host/endpoints.js';

const toNum = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const toAddr = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/** A small, honest model of the world: addresses are unique, links exist or not. */
class World implements PluginBackend {
  held = new Map<string, string>(); // addr -> owner
  links = new Map<string, string>(); // endpoint -> mac
  table = new Map<string, { cidr: string; mac: string }>();
  saved: PluginState | undefined;
  saves = 0;
  macs = 0;
  ipamOn = true;
  ipam() {
    return this.ipamOn ? { range: '10.32.0.0/12', defaultSubnet: '10.32.0.0/12' } : undefined;
  }
  inRange(cidr: string): boolean {
    const n = toNum(cidr.split('/')[0]);
    return n >= toNum('10.32.0.0') && n < toNum('10.48.0.0');
  }
  async allocate(owner: string, subnet: string): Promise<string> {
    const [net, len] = subnet.split('/');
    const size = 2 ** (32 - Number(len));
    for (let i = 1; i < size - 1; i++) {
      const a = toAddr(toNum(net) + i);
      if (!this.held.has(a)) {
        this.held.set(a, owner);
        return `${a}/${len}`;
      }
    }
    throw new Error(`subnet ${subnet} is full`);
  }
  async claim(owner: string, cidr: string): Promise<void> {
    const a = cidr.split('/')[0];
    const h = this.held.get(a);
    if (h && h !== owner) throw new Error(`${a} is in use by ${h}`);
    this.held.set(a, owner);
  }
  async free(owner: string, addr: string): Promise<number> {
    if (this.held.get(addr) !== owner) return 0;
    this.held.delete(addr);
    return 1;
  }
  address6?: (cidr4: string) => string | undefined;
  settleLinkLocal?: (endpointId: string, sandbox: string, mac: string, cidr4: string) => void;
  newMac(): string {
    this.macs++;
    return `02:00:00:00:00:${this.macs.toString(16).padStart(2, '0')}`;
  }
  async createVeth(id: string, mac: string): Promise<string> {
    this.links.set(id, mac);
    return `peer-${id}`;
  }
  async deleteVeth(id: string): Promise<void> {
    this.links.delete(id);
  }
  async recordEndpoint(id: string, cidr: string, mac: string): Promise<void> {
    if (this.links.has(id)) throw new Error('filters must be in place before the link exists');
    this.table.set(id, { cidr, mac });
  }
  async forgetEndpoint(id: string): Promise<void> {
    this.table.delete(id);
  }
  async save(s: PluginState): Promise<void> {
    this.saved = s;
    this.saves++;
  }
  dns: string | undefined = undefined;
  dnsRoute(): string | undefined {
    return this.dns;
  }
}

const rejectsWith = (p: Promise<unknown>, re: RegExp) => assert.rejects(p, (e: Error) => {
  assert.match(e.message, re);
  assert.doesNotMatch(e.message, /\n/);
  return true;
});

describe('plugin protocol', () => {
  test('Activate and capabilities', async () => {
    const c = new PluginCore(new World());
    assert.deepEqual(await c.handle('/Plugin.Activate', {}), { Implements: ['NetworkDriver', 'IpamDriver'] });
    assert.deepEqual(await c.handle('/NetworkDriver.GetCapabilities', {}), { Scope: 'local' });
    assert.deepEqual(await c.handle('/IpamDriver.GetCapabilities', null), { RequiresMACAddress: false, RequiresRequestReplay: false });
    const spaces = await c.handle('/IpamDriver.GetDefaultAddressSpaces', {});
    assert.equal(typeof spaces.LocalDefaultAddressSpace, 'string');
  });

  test('RequestPool: default range, a subnet inside it, refusals', async () => {
    const c = new PluginCore(new World());
    assert.deepEqual(await c.handle('/IpamDriver.RequestPool', { AddressSpace: 'weavelocal' }), { PoolID: '10.32.0.0/12', Pool: '10.32.0.0/12', Data: {} });
    assert.equal((await c.handle('/IpamDriver.RequestPool', { Pool: '10.32.5.0/24' })).PoolID, '10.32.5.0/24');
    await rejectsWith(c.handle('/IpamDriver.RequestPool', { Pool: '192.168.1.0/24' }), /outside the IPAM range 10\.32\.0\.0\/12/);
    await rejectsWith(c.handle('/IpamDriver.RequestPool', { Pool: '10.32.5.1/24' }), /host bits set: did you mean 10\.32\.5\.0\/24/);
    await rejectsWith(c.handle('/IpamDriver.RequestPool', { Pool: '10.32.5.0/24', V6: true }), /IPv6/);
    await rejectsWith(c.handle('/IpamDriver.RequestPool', { Pool: '10.32.5.0/24', SubPool: '10.32.5.0/25' }), /--ip-range/);
    await rejectsWith(c.handle('/IpamDriver.RequestPool', { Pool: '999.1.1.0/24' }), /bad subnet/);
    const w = new World();
    w.ipamOn = false;
    await rejectsWith(new PluginCore(w).handle('/IpamDriver.RequestPool', {}), /IPAM is disabled/);
  });

  test('RequestAddress allocates from the pool, claims a static address, keeps the gateway apart; ReleaseAddress frees', async () => {
    const w = new World();
    const c = new PluginCore(w);
    const gw = await c.handle('/IpamDriver.RequestAddress', { PoolID: '10.32.5.0/24', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    assert.equal(gw.Address, '10.32.5.1/24');
    assert.equal(w.held.get('10.32.5.1'), gatewayOwner('10.32.5.0/24'));
    const a = await c.handle('/IpamDriver.RequestAddress', { PoolID: '10.32.5.0/24' });
    assert.equal(a.Address, '10.32.5.2/24');
    assert.equal(w.held.get('10.32.5.2'), poolOwner('10.32.5.0/24'));
    const s = await c.handle('/IpamDriver.RequestAddress', { PoolID: '10.32.5.0/24', Address: '10.32.5.77' });
    assert.equal(s.Address, '10.32.5.77/24');
    // Someone else (the proxy) holds .78: the plugin must not hand it out again.
    w.held.set('10.32.5.78', 'some-container');
    await rejectsWith(c.handle('/IpamDriver.RequestAddress', { PoolID: '10.32.5.0/24', Address: '10.32.5.78' }), /in use/);
    await rejectsWith(c.handle('/IpamDriver.RequestAddress', { PoolID: '10.32.5.0/24', Address: '10.32.6.1' }), /not in the pool/);
    await rejectsWith(c.handle('/IpamDriver.RequestAddress', { PoolID: 'nonsense' }), /unknown pool/);
    await c.handle('/IpamDriver.ReleaseAddress', { PoolID: '10.32.5.0/24', Address: '10.32.5.2' });
    await c.handle('/IpamDriver.ReleaseAddress', { PoolID: '10.32.5.0/24', Address: '10.32.5.1' });
    assert.equal(w.held.has('10.32.5.2'), false);
    assert.equal(w.held.has('10.32.5.1'), false);
    assert.equal(w.held.get('10.32.5.78'), 'some-container', 'another owner\'s address is never freed');
    await c.handle('/IpamDriver.ReleaseAddress', { PoolID: '10.32.5.0/24', Address: '10.32.5.78' });
    assert.equal(w.held.get('10.32.5.78'), 'some-container');
    assert.deepEqual(await c.handle('/IpamDriver.ReleasePool', { PoolID: '10.32.5.0/24' }), {});
  });

  test('endpoint life: create (MAC chosen), join (filters before link), leave, delete; repeats are harmless', async () => {
    const w = new World();
    const c = new PluginCore(w);
    await c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'n1', IPv4Data: [{ AddressSpace: 'weavelocal', Pool: '10.32.0.0/12', Gateway: '10.32.0.1/12' }], Options: {} });
    assert.deepEqual(w.saved?.networks.n1, { pools: ['10.32.0.0/12'] });
    const ce = await c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: 'e1', Interface: { Address: '10.32.0.2/12', AddressIPv6: '', MacAddress: '' } });
    assert.deepEqual(ce, { Interface: { MacAddress: '02:00:00:00:00:01' } });
    // Docker chose a MAC: the answer must not set one.
    assert.deepEqual(await c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: 'e2', Interface: { Address: '10.32.0.3/12', MacAddress: '02:42:0A:20:00:03' } }), {});
    const j = await c.handle('/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: 'e1', SandboxKey: '/var/run/docker/netns/abc', Options: {} });
    assert.deepEqual(j.InterfaceName, { SrcName: 'peer-e1', DstPrefix: 'ethwe' });
    assert.deepEqual(w.table.get('e1'), { cidr: '10.32.0.2/12', mac: '02:00:00:00:00:01' });
    assert.equal(w.links.get('e1'), '02:00:00:00:00:01');
    assert.deepEqual(await c.handle('/NetworkDriver.EndpointOperInfo', { NetworkID: 'n1', EndpointID: 'e1' }), { Value: { Address: '10.32.0.2/12', MacAddress: '02:00:00:00:00:01' } });
    await c.handle('/NetworkDriver.Leave', { NetworkID: 'n1', EndpointID: 'e1' });
    assert.equal(w.links.has('e1'), false);
    assert.equal(w.table.has('e1'), false);
    await c.handle('/NetworkDriver.Leave', { NetworkID: 'n1', EndpointID: 'e1' });
    await c.handle('/NetworkDriver.DeleteEndpoint', { NetworkID: 'n1', EndpointID: 'e1' });
    await c.handle('/NetworkDriver.DeleteEndpoint', { NetworkID: 'n1', EndpointID: 'e1' });
    assert.equal(w.saved?.endpoints.e1, undefined);
    assert.ok(w.saved?.endpoints.e2);
    await rejectsWith(c.handle('/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: 'e1' }), /unknown endpoint e1/);
    await c.handle('/NetworkDriver.DeleteNetwork', { NetworkID: 'n1' });
    await c.handle('/NetworkDriver.DeleteNetwork', { NetworkID: 'n1' });
    assert.deepEqual(w.saved?.networks, {});
  });

  test('Join gives the DNS server\'s on-link route once per container (SandboxKey); Leave hands it on; none with DNS off', async () => {
    const w = new World();
    w.dns = '169.254.53.53/32';
    const c = new PluginCore(w);
    await c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'n1', IPv4Data: [{ Pool: '10.32.0.0/12' }] });
    await c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'n5', IPv4Data: [{ Pool: '10.32.5.0/24' }] });
    for (const [id, addr, net] of [['e1', '10.32.0.2/12', 'n1'], ['e2', '10.32.5.2/24', 'n5'], ['e3', '10.32.0.3/12', 'n1']]) {
      await c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: net, EndpointID: id, Interface: { Address: addr } });
    }
    const route = [{ Destination: '169.254.53.53/32', RouteType: 1 }];
    const j1 = await c.handle('/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: 'e1', SandboxKey: '/var/run/docker/netns/A' });
    assert.deepEqual(j1.StaticRoutes, route);
    // The same container joins a second network: the route exists already (a second one would clash).
    const j2 = await c.handle('/NetworkDriver.Join', { NetworkID: 'n5', EndpointID: 'e2', SandboxKey: '/var/run/docker/netns/A' });
    assert.equal(j2.StaticRoutes, undefined);
    // Another container gets its own.
    assert.deepEqual((await c.handle('/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: 'e3', SandboxKey: '/var/run/docker/netns/B' })).StaticRoutes, route);
    // The state records who holds the route (a restarted router keeps knowing).
    assert.equal(parsePluginState(JSON.stringify(w.saved)).state.endpoints.e1.dnsSandbox, '/var/run/docker/netns/A');
    // e1 leaves A; e2 joining again (disconnect/connect) now carries the route.
    await c.handle('/NetworkDriver.Leave', { NetworkID: 'n1', EndpointID: 'e1' });
    await c.handle('/NetworkDriver.Leave', { NetworkID: 'n5', EndpointID: 'e2' });
    assert.deepEqual((await c.handle('/NetworkDriver.Join', { NetworkID: 'n5', EndpointID: 'e2', SandboxKey: '/var/run/docker/netns/A' })).StaticRoutes, route);
    // DNS off, or no SandboxKey: no route.
    w.dns = undefined;
    await c.handle('/NetworkDriver.Leave', { NetworkID: 'n1', EndpointID: 'e3' });
    assert.equal((await c.handle('/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: 'e3', SandboxKey: '/var/run/docker/netns/B' })).StaticRoutes, undefined);
    w.dns = '169.254.53.53/32';
    await c.handle('/NetworkDriver.Leave', { NetworkID: 'n1', EndpointID: 'e3' });
    assert.equal((await c.handle('/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: 'e3' })).StaticRoutes, undefined);
  });

  test('with --ipalloc-range6, CreateEndpoint answers the derived AddressIPv6 (with or without a MAC of ours); without it, none', async () => {
    const w = new World();
    w.address6 = (cidr4: string) => (cidr4 === '10.32.0.2/12' ? 'fd00:77::a20:2/108' : cidr4 === '10.32.0.3/12' ? 'fd00:77::a20:3/108' : undefined);
    const c = new PluginCore(w);
    await c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'n1', IPv4Data: [{ Pool: '10.32.0.0/12' }] });
    assert.deepEqual(await c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: 'e1', Interface: { Address: '10.32.0.2/12', AddressIPv6: '' } }),
      { Interface: { MacAddress: '02:00:00:00:00:01', AddressIPv6: 'fd00:77::a20:2/108' } });
    assert.deepEqual(await c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: 'e2', Interface: { Address: '10.32.0.3/12', MacAddress: '02:42:0a:20:00:03' } }),
      { Interface: { AddressIPv6: 'fd00:77::a20:3/108' } });
    // Docker giving IPv6 itself (a network made with --ipv6) is refused: the address must be the derived one.
    await rejectsWith(c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: 'e3', Interface: { Address: '10.32.0.4/12', AddressIPv6: 'fd00:77::a20:4/108' } }), /without --ipv6/);
    assert.equal(w.saved?.endpoints.e3, undefined);
    w.address6 = () => undefined;
    assert.deepEqual(await c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: 'e4', Interface: { Address: '10.32.0.5/12', MacAddress: '02:42:0a:20:00:05' } }), {});
  });

  test('with --ipalloc-range6, Join asks for the overlay link-local on the moved interface (endpoint, SandboxKey, MAC, IPv4 CIDR); after the link exists', async () => {
    const w = new World();
    const asked: string[][] = [];
    w.settleLinkLocal = (id, sandbox, mac, cidr4) => {
      assert.ok(w.links.has(id), 'the veth exists before its link-local is settled');
      asked.push([id, sandbox, mac, cidr4]);
    };
    const c = new PluginCore(w);
    await c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'n1', IPv4Data: [{ Pool: '10.32.0.0/12' }] });
    await c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: 'e1', Interface: { Address: '10.32.0.2/12' } });
    await c.handle('/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: 'e1', SandboxKey: '/var/run/docker/netns/abc' });
    assert.deepEqual(asked, [['e1', '/var/run/docker/netns/abc', '02:00:00:00:00:01', '10.32.0.2/12']]);
  });

  test('state survives a restart: a new core on the saved state joins an endpoint created before', async () => {
    const w = new World();
    const c = new PluginCore(w);
    await c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'n1', IPv4Data: [{ Pool: '10.32.5.0/24' }] });
    await c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: 'e1', Interface: { Address: '10.32.5.2/24' } });
    const again = new PluginCore(w, parsePluginState(JSON.stringify(w.saved)).state);
    const j = await again.handle('/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: 'e1' });
    assert.equal((j.InterfaceName as { SrcName: string }).SrcName, 'peer-e1');
  });

  test('hostile requests get one-line errors and change nothing', async () => {
    const w = new World();
    const c = new PluginCore(w);
    await rejectsWith(c.handle('/Plugin.Nope', {}), /unknown plugin call/);
    await rejectsWith(c.handle('/NetworkDriver.CreateNetwork', []), /must be a JSON object/);
    await rejectsWith(c.handle('/NetworkDriver.CreateNetwork', 'x'), /must be a JSON object/);
    await rejectsWith(c.handle('/NetworkDriver.CreateNetwork', {}), /NetworkID/);
    await rejectsWith(c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'n', IPv4Data: [{ Pool: '10.32.0.0/12\nx' }] }), /IPv4Data\.0\.Pool/);
    await rejectsWith(c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n', EndpointID: '../../x', Interface: { Address: '10.32.0.2/12' } }), /EndpointID/);
    await rejectsWith(c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n', EndpointID: 'e', Interface: {} }), /no IPv4 address/);
    await rejectsWith(c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n', EndpointID: 'e', Interface: { Address: '10.32.0.2/12', MacAddress: 'zz' } }), /bad MAC/);
    await rejectsWith(c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n', EndpointID: 'e', Interface: { Address: '10.32.0.2/12', AddressIPv6: 'fd00::1/64' } }), /IPv6/);
    await rejectsWith(c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'n', IPv6Data: [{}] }), /IPv6/);
    await rejectsWith(c.handle('/NetworkDriver.AllocateNetwork', {}), /local-scope/);
    await rejectsWith(c.handle('/IpamDriver.RequestAddress', { PoolID: 5 }), /PoolID/);
    await rejectsWith(c.handle('/NetworkDriver.Join', { NetworkID: 'n', EndpointID: 'x'.repeat(200) }), /EndpointID/);
    assert.equal(w.saves, 0);
    assert.equal(w.held.size, 0);
    assert.ok((await c.handle('/NetworkDriver.Join', { NetworkID: 'n', EndpointID: 'e' }).catch((e: Error) => e)) instanceof PluginError);
  });

  test('the number of networks and endpoints is bounded', async () => {
    const w = new World();
    const c = new PluginCore(w, { networks: Object.fromEntries(Array.from({ length: 1024 }, (_, i) => [`n${i}`, { pools: [] }])), endpoints: {} });
    await rejectsWith(c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'one-more' }), /already has 1024/);
    // Re-creating a known one is still fine.
    assert.deepEqual(await c.handle('/NetworkDriver.CreateNetwork', { NetworkID: 'n5' }), {});
  });

  test('networkOf, guestVethName, parsePluginState', () => {
    assert.equal(networkOf('10.32.5.77/24'), '10.32.5.0/24');
    assert.equal(networkOf('10.47.255.255/12'), '10.32.0.0/12');
    assert.match(guestVethName('abc'), /^vethwepg[0-9a-f]{7}$/);
    assert.equal(parsePluginState('{').problem, 'not JSON');
    assert.match(parsePluginState('{"networks": [], "endpoints": {}}').problem ?? '', /bad shape at networks/);
    assert.deepEqual(parsePluginState('{"networks": {"n": {"pools": ["10.32.0.0/12"]}}, "endpoints": {}}'), { state: { networks: { n: { pools: ['10.32.0.0/12'] } }, endpoints: {} } });
  });
});

describe('plugin protocol under random input', () => {
  test('2000 random bodies on every call: each answers an object or a one-line error, and state stays well-formed', async () => {
    // Small deterministic PRNG (mulberry32) so a failure reproduces.
    let seed = 0x5eed;
    const rnd = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
    const atoms = [null, true, 0, -1, 1e300, '', 'n1', 'e1', '10.32.0.2/12', '10.32.5.0/24', '10.32.5.7', '0.0.0.0/0', '999.1.1.1/33', 'x'.repeat(300), '\n', [], {}, { __proto__: { x: 1 } }];
    const keys = ['NetworkID', 'EndpointID', 'PoolID', 'Pool', 'Address', 'Interface', 'Options', 'IPv4Data', 'V6', 'SubPool', 'MacAddress', 'RequestAddressType', '__proto__', 'constructor'];
    const value = (depth: number): unknown => {
      const r = rnd();
      if (depth > 2 || r < 0.5) return pick(atoms);
      if (r < 0.75) return Array.from({ length: Math.floor(rnd() * 3) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [pick(keys), value(depth + 1)]));
    };
    const paths = ['/Plugin.Activate', '/NetworkDriver.CreateNetwork', '/NetworkDriver.DeleteNetwork', '/NetworkDriver.CreateEndpoint', '/NetworkDriver.DeleteEndpoint',
      '/NetworkDriver.Join', '/NetworkDriver.Leave', '/NetworkDriver.EndpointOperInfo', '/IpamDriver.RequestPool', '/IpamDriver.RequestAddress', '/IpamDriver.ReleaseAddress', '/Nope'];
    const w = new World();
    const c = new PluginCore(w);
    let answered = 0;
    let refused = 0;
    for (let i = 0; i < 2000; i++) {
      const body = rnd() < 0.8 ? Object.fromEntries(Array.from({ length: Math.floor(rnd() * 5) }, () => [pick(keys), value(0)])) : value(0);
      try {
        const out = await c.handle(pick(paths), body);
        assert.equal(typeof out, 'object');
        answered++;
      } catch (err) {
        assert.ok(err instanceof Error);
        assert.doesNotMatch(err.message, /\n/, `multi-line error: ${err.message}`);
        refused++;
      }
    }
    assert.ok(answered > 0 && refused > 0, `answered ${answered}, refused ${refused}`);
    const s = parsePluginState(JSON.stringify(c.snapshot()));
    assert.equal(s.problem, undefined, 'state still decodes');
  });
});

test('reserved object keys are refused as ids (no prototype games with the state)', async () => {
  const w = new World();
  const c = new PluginCore(w);
  for (const id of ['__proto__', 'constructor', 'toString']) {
    await assert.rejects(c.handle('/NetworkDriver.CreateEndpoint', { NetworkID: 'n', EndpointID: id, Interface: { Address: '10.32.0.2/12' } }), /EndpointID: want a Docker id, not a reserved name/);
    await assert.rejects(c.handle('/NetworkDriver.Join', { NetworkID: 'n', EndpointID: id }), /EndpointID/);
  }
  assert.equal(w.saves, 0);
});

// Regression (#22, found as docker-plugin e2e "running containers stay connected" failing
// after the router restart): the World above models IPAM as "unique addresses", but the real
// allocator hands an owner back the address it already holds in a subnet, and the plugin has
// one owner per pool, so two running containers on one host got the same address.
test('RequestAddress on the real allocator: every container of one pool gets its own address; releasing one keeps the others', async () => {
  const channel: GossipChannel = { selfName: 'aa:00:00:00:00:01', broadcast: () => undefined, unicast: () => undefined, knownPeers: () => [] };
  const a = new Allocator({
    range: '10.32.0.0/12',
    init: { mode: 'seed', peers: ['aa:00:00:00:00:01'] },
    channel,
    persistence: new MemoryPersistence(),
    now: () => 0,
    setTimer: (ms, fn) => {
      const t = setTimeout(fn, ms);
      return { cancel: () => clearTimeout(t) };
    },
  });
  await a.start();
  // As router/daemon/ipam.ts adapts it.
  const adapter: AddressAllocator = {
    allocate: (owner, subnet, opts) => a.allocate(owner, subnet, { another: opts?.another }),
    claim: (owner, cidr) => a.claim(owner, cidr),
    free: (owner, addr) => a.free(owner, addr),
    lookup: (owner) => a.lookup(owner),
    inRange: (cidr) => a.covers(cidr.split('/')[0]),
  };
  const w = new World();
  w.allocate = (owner, subnet) => allocateInPool(adapter, owner, subnet, '10.32.0.0/12');
  w.free = (owner, addr) => a.free(owner, addr);
  const c = new PluginCore(w);
  const got: string[] = [];
  for (const pool of ['10.32.0.0/12', '10.32.0.0/12', '10.32.0.0/12', '10.32.7.0/24', '10.32.7.0/24']) {
    got.push(String((await c.handle('/IpamDriver.RequestAddress', { PoolID: pool })).Address));
  }
  assert.deepEqual(got, ['10.32.0.1/12', '10.32.0.2/12', '10.32.0.3/12', '10.32.7.1/24', '10.32.7.2/24']);
  await c.handle('/IpamDriver.ReleaseAddress', { PoolID: '10.32.0.0/12', Address: '10.32.0.2' });
  assert.deepEqual(a.lookup(poolOwner('10.32.0.0/12')), ['10.32.0.1/12', '10.32.0.3/12']);
  assert.equal((await c.handle('/IpamDriver.RequestAddress', { PoolID: '10.32.0.0/12' })).Address, '10.32.0.2/12', 'the freed one is the lowest free again');
  a.close();
});
