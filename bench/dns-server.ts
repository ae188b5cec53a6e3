/**
 * The weaveDNS server alone, for bench/dns-bench.sh: a DnsRegistry with NAMES names
 * (name-0.weave.local … → 10.40.x.y) behind a DnsServer, as the subsystem wires them
 * (reachable-origin and isolation checks included, with the host as the asker), on
 * ADDR:53, forwarding to the resolv.conf given. Prints "ready" when listening; runs
 * until SIGTERM.
 *
 * usage: node dist/bench/dns-server.js ADDR RESOLV_CONF NAMES
 */
import { DnsRegistry } from '../dns/registry.js';
import { DnsServer } from '../dns/server.js';

const [addr = '127.0.0.1', resolvConf = '/etc/resolv.conf', n = '100'] = process.argv.slice(2);
const self = 'aa:00:00:00:00:01';
const reg = new DnsRegistry(self, Date.now);
for (let i = 0; i < Number(n); i++) reg.add(`c${i}`, `10.40.${i >> 8}.${i & 255}`, `name-${i}.weave.local.`);
const alive = new Set([self]);
const originAlive = (o: string): boolean => alive.has(o);
const source = {
  domain: 'weave.local.', ttl: 1,
  lookup: (q: string) => reg.lookup(q, { originAlive, rng: Math.random }),
  reverse: (a: string) => reg.reverse(a, { originAlive }),
};
const server = new DnsServer({
  host: addr, port: 53, resolvConf,
  // One source for the host asker, as the subsystem caches one per asking address.
  names: () => source,
});
await server.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
