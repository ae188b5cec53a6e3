/**
 * The router daemon (`weaver`), started by `weave launch` (detached, or in the
 * foreground with --no-detach). Sets up the host (bridge, TAP), starts the router,
 * IPAM, the HTTP API, and stops cleanly on SIGTERM/SIGINT, leaving the bridge and
 * attached containers in place (as Weave does) so they reconnect on the next launch.
 */
import { collectGarbage } from './heap.js';
import os from 'node:os';
import path from 'node:path';
import { promises as fsp, readFileSync } from 'node:fs';
import { Router } from '../router.js';
import { Tap } from '../overlay/tap.js';
import { ensureBridge, setupTap, TAP_NAME, resetLinks } from '../host/netdev.js';
import { parsePeerName, randomPeerName } from '../mesh/peer-name.js';
import { ApiServer, ApiError, stringList, stringField } from '../api/server.js';
import { Endpoints } from '../host/endpoints.js';
import { writeFileAtomic } from '../host/state-file.js';
import { passwordKey as derivePasswordKey } from '../crypto/keys.js';
import { setupIpam, type IpamGlue } from './ipam.js';
import { Isolation } from '../policy/isolation.js';
import { startProxy, defaultWeavewaitPath } from '../../proxy/proxy.js';
import type { ProxyAttacher } from '../../proxy/types.js';
import { setupObservability } from '../api/observability.js';
import { startFastdp } from '../overlay/fastdp.js';
import type { Report } from '../api/report.js';

/** Everything `weave launch` decides; passed to the daemon as JSON in WEAVER_CONFIG. */
export interface LaunchConfig {
  stateDir: string;
  name?: string;
  nickname: string;
  port: number;
  mtu: number;
  connLimit: number;
  discovery: boolean;
  peers: string[];
  trustedSubnets: string[];
  ipallocRange: string;
  ipallocDefaultSubnet?: string;
  ipallocInit?: string;
  /** Number of peers named at launch (consensus quorum default: that + 1). */
  initialPeerCount: number;
  dockerHost: string;
  proxy: boolean;
  proxyListen: string[];
  noDefaultIpalloc: boolean;
  metricsAddr: string;
  apiAddr: string;
  logLevel: string;
  fastdp: boolean;
}

export function statePaths(stateDir: string) {
  return {
    pid: path.join(stateDir, 'weaver.pid'),
    log: path.join(stateDir, 'weaver.log'),
    sock: path.join(stateDir, 'weaver.sock'),
    name: path.join(stateDir, 'peer-name'),
    targets: path.join(stateDir, 'targets.json'),
  };
}

const LEVELS: Record<string, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** One JSON line per event (structured log), level-filtered. */
export function makeLogger(level: string): (line: string, lvl?: string) => void {
  const min = LEVELS[level] ?? 20;
  return (line, lvl = 'info') => {
    if ((LEVELS[lvl] ?? 20) < min) return;
    process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg: line }) + '\n');
  };
}

async function loadPeerName(cfg: LaunchConfig, file: string): Promise<string> {
  if (cfg.name) {
    const n = parsePeerName(cfg.name);
    await writeFileAtomic(file, n + '\n', 0o644);
    return n;
  }
  try {
    return parsePeerName(readFileSync(file, 'utf8').trim());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`peer name file ${file} is corrupted (${(err as Error).message}): fix it, pass --name, or run weave reset`);
  }
  const n = randomPeerName();
  await writeFileAtomic(file, n + '\n', 0o644);
  return n;
}

/** Read the password the launcher piped to our stdin (bounded: 64 KiB, 10 s). */
function readPasswordFromStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const t = setTimeout(() => reject(new Error('no password arrived on stdin within 10 s')), 10_000);
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 65536) chunks.push(c);
    });
    process.stdin.on('end', () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    process.stdin.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

export async function runDaemon(cfg: LaunchConfig, password = ''): Promise<void> {
  const log = makeLogger(cfg.logLevel);
  const paths = statePaths(cfg.stateDir);
  await fsp.mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
  const name = await loadPeerName(cfg, paths.name);

  if (process.env.WEAVER_PASSWORD_STDIN === '1') password = await readPasswordFromStdin();
  delete process.env.WEAVER_PASSWORD_STDIN;
  // [sec-wire] per-network scrypt salt: IPAM range + optional WEAVE_NETWORK_NAME (docs/SECURITY.md)
  const pwKey = password ? await derivePasswordKey(password, { ipamRange: cfg.ipallocRange, name: process.env.WEAVE_NETWORK_NAME ?? '' }) : undefined;

  // Remembered targets: `weave launch` with no peers reconnects to the last set.
  let peers = cfg.peers;
  if (!peers.length) {
    try {
      peers = JSON.parse(await fsp.readFile(paths.targets, 'utf8')) as string[];
    } catch { /* none yet */ }
  }

  await ensureBridge(cfg.mtu);
  const endpoints = new Endpoints(cfg.stateDir, cfg.mtu, cfg.dockerHost, log);
  await endpoints.load();
  const isolation = new Isolation(log);
  // The router does not exist yet: the policy is handed over once it does.
  let applyPolicy = (): void => undefined;
  const syncIsolation = async (): Promise<void> => {
    await isolation.sync(endpoints.list());
    applyPolicy();
  };
  endpoints.onChange = syncIsolation;
  // Filters first, so the router never forwards a frame without its policy.
  await syncIsolation();

  // vnetHdr: writes of received TCP segments of one flow are merged into one super-frame
  // (GRO done by us), so the bridge and the container handle one packet instead of many.
  const tap = Tap.open(TAP_NAME, { vnetHdr: process.env.WEAVE_NO_TAP_OFFLOAD !== '1' });
  await setupTap(TAP_NAME, cfg.mtu);

  const router = new Router({
    name, nickname: cfg.nickname, port: cfg.port, mtu: cfg.mtu, connLimit: cfg.connLimit, discovery: cfg.discovery,
    peers, passwordKey: pwKey, trustedSubnets: cfg.trustedSubnets, ipamRange: cfg.ipallocRange, log,
  });
  router.policy = isolation.policy;
  applyPolicy = () => {
    router.policy = isolation.policy;
  };
  await router.start(tap);
  // [fastdp] Kernel VXLAN for unencrypted connections; with a password only trusted subnets qualify.
  if (cfg.fastdp && (!pwKey || cfg.trustedSubnets.length > 0)) router.fastdp = await startFastdp(router, { port: cfg.port, mtu: cfg.mtu });
  else if (cfg.fastdp) log('fastdp: off: every connection is encrypted (password set, no --trusted-subnets)');
  const saveTargets = (): Promise<void> => writeFileAtomic(paths.targets, JSON.stringify(router.targets.directAddresses()));
  await saveTargets();


  let ipam: IpamGlue | undefined;
  if (cfg.ipallocRange) {
    ipam = await setupIpam(router, cfg, log);
    endpoints.allocator = ipam.allocator;
  }

  const api = new ApiServer(log);
  let stopping = false;
  const shutdown = async (reason: string, code = 0): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log(`stopping: ${reason}`);
    const hard = setTimeout(() => process.exit(code), 5000);
    hard.unref();
    await proxy?.close().catch(() => undefined);
    await obs.close().catch(() => undefined);
    await api.close().catch(() => undefined);
    await ipam?.close().catch(() => undefined);
    await router.stop().catch(() => undefined);
    await fsp.unlink(paths.pid).catch(() => undefined);
    await fsp.unlink(paths.sock).catch(() => undefined);
    process.exit(code);
  };

  // Drops counted by the bridge filters (same-host isolation). Reading them runs nft,
  // and every child process forks this one: a fork stalls the event loop (and so the
  // data path) for milliseconds. So they are read only when a report is asked for,
  // at most every 5 s, in the background: a report never waits on nft and shows the
  // value read last.
  let bridgeDrops: Record<string, number> = {};
  let bridgeDropsAt = -Infinity;
  const refreshBridgeDrops = (): void => {
    if (Date.now() - bridgeDropsAt < 5000) return;
    bridgeDropsAt = Date.now();
    isolation.counters().then((c) => {
      bridgeDrops = Object.fromEntries(Object.entries(c).map(([k, v]) => [`bridge-${k}`, v]));
    }, () => undefined);
  };
  const fullReport = () => {
    refreshBridgeDrops();
    const r = router.report();
    r.Router.Drops = { ...r.Router.Drops, ...bridgeDrops };
    return { ...r, IPAM: ipam?.report(), Endpoints: endpoints.list().map((e) => ({ ID: e.id, MAC: e.mac, CIDRs: e.cidrs })) };
  };
  api.on('GET', '/report', async () => fullReport());
  api.on('GET', '/status', async () => fullReport());
  api.on('POST', '/connect', async ({ body }) => {
    const addrs = router.connect(stringList(body, 'peers'), Boolean((body as { replace?: boolean } | undefined)?.replace));
    await saveTargets();
    return { targets: addrs };
  });
  api.on('POST', '/forget', async ({ body }) => {
    router.forget(stringList(body, 'peers'));
    await saveTargets();
    return {};
  });
  api.on('POST', '/attach', async ({ body }) => {
    const e = await endpoints.attach(stringField(body, 'target'), stringList(body, 'specs'));
    await syncIsolation();
    router.emit('event', { type: 'endpoint-attached', id: e.id, cidrs: e.cidrs });
    return { id: e.id, cidrs: e.cidrs, mac: e.mac };
  });
  api.on('POST', '/detach', async ({ body }) => {
    const cidrs = await endpoints.detach(stringField(body, 'target'), stringList(body, 'specs'));
    await syncIsolation();
    router.emit('event', { type: 'endpoint-detached', id: stringField(body, 'target'), cidrs });
    return { cidrs };
  });
  api.on('GET', '/ps', async () => ({ endpoints: await endpoints.ps() }));
  api.on('POST', '/expose', async ({ body }) => {
    const cidrs = await endpoints.expose(stringList(body, 'specs'));
    await syncIsolation();
    return { cidrs };
  });
  api.on('POST', '/hide', async ({ body }) => {
    const cidrs = await endpoints.hide(stringList(body, 'specs'));
    await syncIsolation();
    return { cidrs };
  });
  api.on('GET', '/macs', async () => ({ macs: router.macEntries() }));
  api.on('POST', '/stop', async () => {
    setImmediate(() => void shutdown('weave stop'));
    return {};
  });
  api.on('POST', '/reset', async () => {
    if (ipam) await ipam.handOver().catch((err: Error) => log(`reset: could not hand over IPAM space: ${err.message}`, 'warn'));
    for (const e of endpoints.list()) await endpoints.detach(e.id, []).catch(() => undefined);
    setImmediate(() => void (async () => {
      await router.stop().catch(() => undefined);
      await isolation.removeAll().catch(() => undefined);
      await resetLinks().catch(() => undefined);
      await shutdown('weave reset');
    })());
    return {};
  });
  let proxy: { close(): Promise<void>; addresses: string[] } | undefined;
  if (cfg.proxy) {
    const attacher: ProxyAttacher = {
      attach: async (id, pid, specs) => {
        const e = await endpoints.attachNetns(id, `/proc/${pid}/ns/net`, specs);
        await syncIsolation();
        router.emit('event', { type: 'endpoint-attached', id, cidrs: e.cidrs });
        return e.cidrs;
      },
      release: async (id) => {
        await endpoints.release(id);
        await syncIsolation();
      },
    };
    try {
      proxy = await startProxy({ listen: cfg.proxyListen, dockerHost: cfg.dockerHost, attacher, noDefaultIpalloc: cfg.noDefaultIpalloc, weavewaitPath: defaultWeavewaitPath(), log });
      log(`proxy listening on ${proxy.addresses.join(', ')} for the Docker daemon at ${cfg.dockerHost}`);
    } catch (err) {
      log(`proxy not started: ${(err as Error).message}`, 'warn');
    }
  }
  api.on('GET', '/proxy', async () => {
    if (!proxy) throw new ApiError(404, 'the Docker API proxy is not running');
    return { addresses: proxy.addresses };
  });
  if (ipam) ipam.registerRoutes(api, endpoints);
  else api.on('GET', '/ip/*', async () => { throw new ApiError(404, 'IPAM is disabled (launched with --ipalloc-range "")'); });

  await api.listenUnix(paths.sock);
  const [apiHost, apiPort] = splitHostPort(cfg.apiAddr, 6784);
  const tcpApi = await api.listenTcp(apiHost, apiPort);
  const obs = await setupObservability({ router, api, tcpServer: tcpApi, report: fullReport as () => Report, ipam, endpoints, metricsAddr: cfg.metricsAddr, log });
  await writeFileAtomic(paths.pid, String(process.pid), 0o644);

  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('uncaughtException', (err) => {
    log(`internal error (please report): ${err.stack ?? err.message}`, 'error');
  });
  log(`router ${name}(${cfg.nickname}) started on port ${cfg.port}, mtu ${cfg.mtu}, encryption ${pwKey ? 'enabled' : 'disabled'}, api ${paths.sock}`);
  // Collect startup's garbage now rather than in a compacting pause under traffic (heap.ts).
  setTimeout(collectGarbage, 200).unref();
}

export function splitHostPort(addr: string, defPort: number): [string, number] {
  const i = addr.lastIndexOf(':');
  if (i < 0) return [addr || '127.0.0.1', defPort];
  return [addr.slice(0, i) || '127.0.0.1', Number(addr.slice(i + 1)) || defPort];
}

export function defaultNickname(): string {
  return os.hostname();
}

// Entry point when spawned by `weave launch`.
if (process.argv[1] && /weaver\.js$/.test(process.argv[1])) {
  const raw = process.env.WEAVER_CONFIG;
  if (!raw) {
    process.stderr.write('weaver is started by `weave launch`\n');
    process.exit(2);
  }
  delete process.env.WEAVER_CONFIG;
  runDaemon(JSON.parse(raw) as LaunchConfig).catch((err: Error) => {
    process.stderr.write(`weaver: ${err.message}\n`);
    process.exit(1);
  });
}
