/**
 * Fuzz targets of the services around the router that decode outside input:
 *  - `dns-query`: weaveDNS's answerQuery on any query bytes (UDP and TCP limits), and
 *    servfail; every answer must decode, echo the id and fit its size limit;
 *  - `dns-gossip`: the `dns` gossip channel's payload (bounded msgpack → entries →
 *    registry merge); merging the same entries twice changes nothing;
 *  - `plugin-request`: the Docker plugin's PluginCore.handle with any path and body,
 *    a sequence of calls against one core (so Join follows CreateEndpoint), against an
 *    in-memory backend; only one-line PluginErrors (or the backend's) may come out;
 *  - `cni-conf`: the CNI plugin's conf on stdin (parseConf) and CNI_* environment
 *    (parseEnv, parseArgs), and what is built from them (chooseSubnet, buildResult,
 *    errorJson).
 * Same contract as targets.ts: a check throws only on a real defect.
 */
import fc from 'fast-check';
import { pack } from 'msgpackr';
import * as dnsPacket from 'dns-packet';
import { answerQuery, decodeQuery, servfail, udpLimit, type NameSource } from '../../dns/answer.js';
import { DnsRegistry, DnsRegistryError, checkEntry, decodeGossip, entriesToWire } from '../../dns/registry.js';
import { PluginCore, PluginError, MAX_ENDPOINTS, MAX_NETWORKS, type PluginBackend, type PluginState } from '../../plugin/protocol.js';
import {
  CniError, SUPPORTED_VERSIONS, buildResult, chooseSubnet, errorJson, parseConf, parseEnv, parseSubnet, podName,
} from '../../cni/spec.js';
import { expectOneLine, expectOnly, mutated, type FuzzTarget } from './arbitraries.js';

const SELF = '02:00:00:00:00:01';
const OTHER = '8a:2b:3c:4d:5e:6f';
const anyValue = fc.anything({ maxDepth: 3, withBigInt: false, withTypedArray: true });

// ---- DNS queries -------------------------------------------------------------

/** A registry with a few names, one with 60 addresses (so UDP answers get truncated). */
function dnsNames(): NameSource {
  const r = new DnsRegistry(SELF, () => 1000);
  r.add('c1', '10.32.0.1', 'db.weave.local.');
  r.add('c2', '10.32.0.2', 'db.weave.local.');
  r.add('c3', '10.32.0.3', `${'x'.repeat(63)}.weave.local.`);
  for (let i = 0; i < 60; i++) r.add(`m${i}`, `10.33.0.${i}`, 'many.weave.local.');
  return { domain: 'weave.local.', ttl: 1, lookup: (n) => r.lookup(n), reverse: (a) => r.reverse(a) };
}
const NAMES = dnsNames();

const OPCODES: Record<string, number> = { QUERY: 0, IQUERY: 1, STATUS: 2, NOTIFY: 4, UPDATE: 5 };
const qname = fc.oneof(
  fc.constantFrom('db.weave.local', 'DB.Weave.LOCAL.', 'many.weave.local', 'weave.local', 'nosuch.weave.local', '1.0.32.10.in-addr.arpa',
    '5.0.33.10.in-addr.arpa', '999.0.32.10.in-addr.arpa', 'example.com', `${'x'.repeat(63)}.weave.local`),
  fc.domain(),
  fc.string({ maxLength: 80 }),
);
const dnsQuery = fc.record({
  id: fc.nat({ max: 0xffff }),
  rd: fc.boolean(),
  qr: fc.boolean(),
  opcode: fc.constantFrom('QUERY', 'QUERY', 'QUERY', 'IQUERY', 'STATUS', 'NOTIFY', 'UPDATE'),
  questions: fc.array(fc.record({
    name: qname,
    type: fc.constantFrom('A', 'AAAA', 'PTR', 'ANY', 'MX', 'TXT', 'SRV', 'CNAME'),
    class: fc.constantFrom('IN', 'IN', 'CH', 'ANY'),
  }), { maxLength: 3 }),
  edns: fc.option(fc.constantFrom(0, 511, 512, 1232, 4096, 65535), { nil: undefined }),
}).map((q) => {
  try {
    return dnsPacket.encode({
      type: q.qr ? 'response' : 'query', id: q.id,
      flags: (OPCODES[q.opcode]! << 11) | (q.rd ? dnsPacket.RECURSION_DESIRED : 0),
      questions: q.questions as dnsPacket.Question[],
      additionals: q.edns !== undefined ? [{ type: 'OPT', name: '.', udpPayloadSize: q.edns, flags: 0 } as dnsPacket.Answer] : [],
    });
  } catch {
    return Buffer.alloc(12); // a name dns-packet will not encode: an empty header instead
  }
});

function checkDnsQuery(input: unknown): void {
  const b = input as Buffer;
  for (const transport of ['udp', 'tcp'] as const) {
    const out = answerQuery(b, NAMES, transport);
    if (out.kind !== 'answer') continue;
    const limit = transport === 'udp' ? udpLimit(decodeQuery(b)!) : 65535;
    if (out.response.length > limit) throw new Error(`${transport} answer of ${out.response.length} bytes over the ${limit}-byte limit`);
    const r = dnsPacket.decode(out.response);
    if (r.id !== b.readUInt16BE(0)) throw new Error(`answer id ${r.id} does not echo the query's ${b.readUInt16BE(0)}`);
    if (r.type !== 'response') throw new Error('answer is not a response');
    if (out.truncated !== r.flag_tc) throw new Error('truncated flag disagrees with TC');
  }
  const sf = servfail(b);
  if (sf !== undefined && (dnsPacket.decode(sf) as { rcode?: string }).rcode !== 'SERVFAIL') throw new Error('servfail() did not build a SERVFAIL');
}

// ---- DNS gossip ----------------------------------------------------------------

const dnsEntry = fc.tuple(
  fc.oneof(fc.hexaString({ minLength: 1, maxLength: 64 }), fc.string({ maxLength: 300 })),
  fc.oneof(fc.constantFrom(SELF, OTHER), fc.string({ maxLength: 20 })),
  fc.oneof(fc.constantFrom('10.32.0.1', '10.32.0.2', '255.255.255.255', '0.0.0.0', '10.32.0.256', '01.2.3.4'), fc.ipV4(), fc.string({ maxLength: 20 })),
  fc.oneof(fc.constantFrom('db.weave.local.', 'DB.weave.local.', 'db.weave.local', 'a..b.', '.'), fc.domain().map((d) => `${d}.`), fc.string({ maxLength: 300 })),
  fc.oneof(fc.nat(5), fc.constantFrom(-1, 2 ** 53, 1.5)),
  fc.oneof(fc.constant(0), fc.nat(), fc.constantFrom(-1, 2 ** 53)),
);
const dnsGossip = mutated(fc.oneof(
  fc.array(dnsEntry, { maxLength: 6 }).map((es) => pack(es)),
  anyValue.map((v) => pack(v)),
));

function checkDnsGossip(input: unknown): void {
  let es;
  try {
    es = decodeGossip(input as Buffer);
  } catch (err) {
    expectOnly(err, DnsRegistryError);
    return expectOneLine((err as Error).message);
  }
  for (const w of entriesToWire(es)) checkEntry(w); // what was accepted is valid again
  const reg = new DnsRegistry(SELF, () => 5000);
  reg.add('own', '10.32.0.9', 'db.weave.local.');
  reg.merge(es);
  const again = reg.merge(es);
  if (again.changed.length || again.reissued.length) throw new Error('merging the same entries twice changed the registry');
  for (const e of reg.all()) checkEntry(entriesToWire([e])[0]);
  reg.lookup('db.weave.local.');
  for (const e of es) reg.reverse(e.addr);
}

// ---- Docker plugin -----------------------------------------------------------

class BackendError extends Error {
  override name = 'BackendError';
}
const toNum = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const toAddr = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/** An in-memory world: unique addresses in 10.32.0.0/12, links and an endpoint table. */
class FakeBackend implements PluginBackend {
  held = new Map<string, string>();
  links = new Set<string>();
  macs = 0;
  constructor(private readonly ipamOn: boolean) {}
  ipam() {
    return this.ipamOn ? { range: '10.32.0.0/12', defaultSubnet: '10.32.0.0/12' } : undefined;
  }
  inRange(cidr: string): boolean {
    const n = toNum(cidr.split('/')[0]!);
    return n >= toNum('10.32.0.0') && n < toNum('10.48.0.0');
  }
  async allocate(owner: string, subnet: string): Promise<string> {
    const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(subnet);
    if (!m) throw new BackendError(`allocate: bad subnet ${JSON.stringify(subnet)}`);
    const size = 2 ** (32 - Number(m[2]));
    for (let i = 1; i < Math.min(size - 1, 64); i++) {
      const a = toAddr(toNum(m[1]!) + i);
      if (!this.held.has(a)) {
        this.held.set(a, owner);
        return `${a}/${m[2]}`;
      }
    }
    throw new BackendError(`subnet ${subnet} is full`);
  }
  async claim(owner: string, cidr: string): Promise<void> {
    const a = cidr.split('/')[0]!;
    const h = this.held.get(a);
    if (h !== undefined && h !== owner) throw new BackendError(`${a} is in use`);
    this.held.set(a, owner);
  }
  async free(owner: string, addr: string): Promise<number> {
    if (this.held.get(addr) !== owner) return 0;
    this.held.delete(addr);
    return 1;
  }
  newMac(): string {
    this.macs++;
    return `02:00:00:00:${(this.macs >> 8).toString(16).padStart(2, '0')}:${(this.macs & 255).toString(16).padStart(2, '0')}`;
  }
  async createVeth(id: string): Promise<string> {
    this.links.add(id);
    return `vethwepg${id.slice(0, 7)}`;
  }
  async deleteVeth(id: string): Promise<void> {
    this.links.delete(id);
  }
  async recordEndpoint(): Promise<void> {}
  async forgetEndpoint(): Promise<void> {}
  async save(s: PluginState): Promise<void> {
    JSON.stringify(s);
  }
}

const PLUGIN_PATHS = [
  '/Plugin.Activate', '/NetworkDriver.GetCapabilities', '/NetworkDriver.CreateNetwork', '/NetworkDriver.DeleteNetwork',
  '/NetworkDriver.CreateEndpoint', '/NetworkDriver.DeleteEndpoint', '/NetworkDriver.EndpointOperInfo', '/NetworkDriver.Join',
  '/NetworkDriver.Leave', '/NetworkDriver.DiscoverNew', '/NetworkDriver.AllocateNetwork', '/IpamDriver.GetCapabilities',
  '/IpamDriver.GetDefaultAddressSpaces', '/IpamDriver.RequestPool', '/IpamDriver.ReleasePool', '/IpamDriver.RequestAddress',
  '/IpamDriver.ReleaseAddress',
];
const pid = fc.oneof(fc.constantFrom('n1', 'e1', 'e2', '__proto__', 'constructor', 'toString', 'a'.repeat(129)), fc.string({ maxLength: 20 }));
const pcidr = fc.oneof(
  fc.constantFrom('10.32.5.0/24', '10.32.5.7/24', '10.32.0.0/12', '192.168.0.0/16', '999.1.1.0/24', '10.32.5.0/33', '0.0.0.0/0', '10.32.5.1/32', '10.32.5.2'),
  fc.string({ maxLength: 24 }),
);
const pluginBody = fc.oneof(
  fc.record({
    NetworkID: pid, EndpointID: pid, PoolID: pcidr, Pool: pcidr, SubPool: fc.constantFrom(undefined, '', '10.32.5.0/25'),
    Address: pcidr, V6: fc.boolean(), SandboxKey: fc.string({ maxLength: 20 }),
    Options: fc.oneof(fc.constant(undefined), fc.constant(null), fc.constant({ RequestAddressType: 'com.docker.network.gateway' }), fc.dictionary(fc.string({ maxLength: 8 }), anyValue, { maxKeys: 3 })),
    Interface: fc.option(fc.record({ Address: pcidr, MacAddress: fc.constantFrom(undefined, '', '02:42:0a:20:00:03', 'zz', '02:42:0A:20:00:03') }, { requiredKeys: [] }), { nil: undefined }),
    IPv4Data: fc.option(fc.array(fc.record({ Pool: pcidr, Gateway: fc.constantFrom(undefined, '10.32.5.1/24'), AddressSpace: fc.constantFrom(undefined, 'weavelocal') }, { requiredKeys: [] }), { maxLength: 3 }), { nil: undefined }),
    IPv6Data: fc.constantFrom(undefined, [], [{ Pool: 'fd00::/64' }]),
  }, { requiredKeys: [] }),
  anyValue,
  fc.constant(null),
  fc.constant(undefined),
);
const pluginCalls = fc.record({
  ipam: fc.boolean(),
  calls: fc.array(fc.tuple(fc.oneof(fc.constantFrom(...PLUGIN_PATHS), fc.string({ maxLength: 40 }).map((s) => `/${s}`)), pluginBody), { minLength: 1, maxLength: 6 }),
});

async function checkPlugin(input: unknown): Promise<void> {
  const { ipam, calls } = input as { ipam: boolean; calls: Array<[string, unknown]> };
  const core = new PluginCore(new FakeBackend(ipam));
  for (const [p, body] of calls) {
    try {
      const r = await core.handle(p, body);
      if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new Error(`${p} answered a non-object`);
      JSON.stringify(r);
    } catch (err) {
      expectOnly(err, PluginError, BackendError);
      expectOneLine((err as Error).message);
    }
  }
  const s = core.snapshot();
  if (Object.keys(s.networks).length > MAX_NETWORKS || Object.keys(s.endpoints).length > MAX_ENDPOINTS) throw new Error('plugin state over its bounds');
  for (const [id, e] of Object.entries(s.endpoints)) {
    if (!/^[A-Za-z0-9_.-]{1,128}$/.test(id)) throw new Error(`endpoint id ${JSON.stringify(id)} kept`);
    if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(e.cidr) || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(e.mac)) throw new Error(`endpoint ${id} kept a bad address or MAC`);
  }
}

// ---- CNI -----------------------------------------------------------------------

const confBytes = fc.record({
  cniVersion: fc.oneof(fc.constantFrom(...SUPPORTED_VERSIONS, '0.2.0', '', '9.9.9'), fc.string({ maxLength: 20 })),
  name: fc.oneof(fc.constantFrom('weave', 'my-net.1', '-x', ''), fc.string({ maxLength: 20 })),
  type: fc.constantFrom('weave-net', 'weave-ipam', ''),
  hairpinMode: fc.oneof(fc.boolean(), fc.constant('yes')),
  subnet: fc.oneof(fc.constantFrom('net:10.40.0.0/16', '10.40.0.0/16', 'net:010.40.0.0/16', 'net:999.0.0.0/8', '10.40.0.0/40'), fc.string({ maxLength: 20 })),
  stateDir: fc.constantFrom('/var/lib/weave', 'relative', '/'),
  defaultRoute: fc.boolean(),
  ipam: fc.oneof(fc.record({ type: fc.constantFrom('weave-ipam', 'host-local') }), anyValue),
  dns: fc.oneof(fc.record({ nameservers: fc.array(fc.string({ maxLength: 16 }), { maxLength: 3 }), domain: fc.string({ maxLength: 10 }) }, { requiredKeys: [] }), anyValue),
  prevResult: anyValue,
  runtimeConfig: anyValue,
}, { requiredKeys: [] }).map((o) => Buffer.from(JSON.stringify(o) ?? 'null'));

const cniEnv = fc.record({
  CNI_COMMAND: fc.constantFrom('ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC', 'add', '', 'X'),
  CNI_CONTAINERID: fc.oneof(fc.constantFrom('abc123', 'a'.repeat(256), '-x', ''), fc.string({ maxLength: 30 })),
  CNI_NETNS: fc.oneof(fc.constantFrom('/var/run/netns/x', 'relative', '/x\0y', ''), fc.string({ maxLength: 30 })),
  CNI_IFNAME: fc.oneof(fc.constantFrom('eth0', 'ethwe', '.', '..', 'a'.repeat(16), 'a/b'), fc.string({ maxLength: 20 })),
  CNI_ARGS: fc.oneof(
    fc.constantFrom('K8S_POD_NAME=web;K8S_POD_NAMESPACE=default', 'WEAVE_CIDR=net:10.40.1.0/24', 'WEAVE_CIDR=bad', 'IgnoreUnknown=1;x', ';;;', '=v', '__proto__=x'),
    fc.array(fc.tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 })), { maxLength: 70 }).map((kv) => kv.map(([k, v]) => `${k}=${v}`).join(';')),
    fc.string({ maxLength: 200 }),
  ),
  CNI_PATH: fc.string({ maxLength: 40 }),
}, { requiredKeys: [] });

function checkCni(input: unknown): void {
  const { conf: b, env: e } = input as { conf: Buffer; env: Record<string, string | undefined> };
  const fail = (err: unknown): void => {
    expectOnly(err, CniError);
    expectOneLine((err as Error).message);
    JSON.stringify(errorJson(err));
  };
  let conf;
  try {
    conf = parseConf(b);
  } catch (err) {
    fail(err);
  }
  if (conf) {
    if (!(SUPPORTED_VERSIONS as readonly string[]).includes(conf.cniVersion)) throw new Error(`cniVersion ${conf.cniVersion} accepted`);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(conf.name)) throw new Error(`name ${JSON.stringify(conf.name)} accepted`);
    if (conf.subnet !== undefined && parseSubnet(conf.subnet, 'subnet') !== conf.subnet) throw new Error(`subnet ${conf.subnet} not canonical`);
    if (typeof conf.hairpinMode !== 'boolean' || typeof conf.defaultRoute !== 'boolean') throw new Error('conf defaults not filled');
  }
  let env;
  try {
    env = parseEnv(e);
  } catch (err) {
    fail(err);
  }
  if (env) {
    const name = podName(env.args);
    if (name !== undefined && !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) throw new Error(`pod name ${JSON.stringify(name)} accepted`);
    // CNI_ARGS like "__proto__=x" must not reach Object.prototype (parseArgs keeps a null-prototype map).
    if (Object.keys(Object.prototype).length || ({} as Record<string, unknown>).x !== undefined) throw new Error('CNI_ARGS polluted Object.prototype');
    if (['ADD', 'DEL', 'CHECK'].includes(env.command) && Object.getPrototypeOf(env.args) !== null) throw new Error('CNI_ARGS parsed into an object with a prototype');
  }
  if (conf && env) {
    try {
      chooseSubnet(conf, env);
    } catch (err) {
      fail(err);
    }
    JSON.stringify(buildResult(conf, env, { cidrs: ['10.32.0.3/12'], mac: '02:00:00:00:00:03', hostVeth: 'vethwepl1', gateway: '10.32.0.1' }));
  }
}

/** The services' targets, appended to TARGETS in targets.ts. */
export const SERVICE_TARGETS: FuzzTarget[] = [
  { name: 'dns-query', arb: mutated(dnsQuery), check: checkDnsQuery },
  { name: 'dns-gossip', arb: dnsGossip, check: checkDnsGossip },
  { name: 'plugin-request', arb: pluginCalls, check: checkPlugin, async: true },
  { name: 'cni-conf', arb: fc.record({ conf: mutated(confBytes), env: cniEnv }), check: checkCni },
];
