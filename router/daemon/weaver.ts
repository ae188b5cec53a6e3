/**
 * The router daemon (`weaver`), started by `weave launch` (detached, or in the
 * foreground with --no-detach). Sets up the host (bridge, TAP, isolation filters),
 * starts the router, then the subsystems in order (IPAM, …, observability last; see
 * subsystem.ts), the HTTP API and the Docker proxy, and stops cleanly on
 * SIGTERM/SIGINT, leaving the bridge and attached containers in place (as Weave
 * does) so they reconnect on the next launch.
 */
import { collectGarbage, startIdleGc } from './heap.js';
import { installClockHook } from './clock-hook.js';
import os from 'node:os';
import { promises as fsp, readFileSync, writeSync, closeSync } from 'node:fs';
import { Router } from '../router.js';
import { Tap } from '../overlay/tap.js';
import { ensureBridge, setupTap, TAP_NAME, resetLinks, BRIDGE, hostIpv6Off, ip } from '../host/netdev.js';
import { parseRange6 } from '../../ipam/ipv6.js';
import { readiness, linksFromProcNetDev } from '../api/readiness.js';
import { resetCheck } from './reset-check.js';
import { parsePeerName, randomPeerName } from '../mesh/peer-name.js';
import { ApiServer, ApiError, stringList, stringField, optionalString } from '../api/server.js';
import { Endpoints, EXPOSE_ID } from '../host/endpoints.js';
import { writeFileAtomic, loadTargets, makeStateDir } from '../host/state-file.js';
import { acquireRouterLock } from '../host/router-lock.js';
import { passwordKey as derivePasswordKey } from '../crypto/keys.js';
import { ipamSubsystem } from './ipam.js';
import { Isolation } from '../policy/isolation.js';
import type { ProxyAttacher } from '../../proxy/types.js';
import { observabilitySubsystem } from '../api/observability.js';
import { dnsSubsystem } from '../../dns/subsystem.js';
import { dnsBridgeAddress, dnsSettings } from '../../dns/config.js';
import { exposeNatSubsystem, type ExposeNatSubsystem } from '../nat/subsystem.js';
import { startFastdp } from '../overlay/fastdp.js';
import type { Report } from '../api/report.js';
import { Registry } from '../api/prom.js';
import { statePaths, splitHostPort, parseLaunchMessage, type LaunchConfig, type LaunchMessage } from './config.js';
import { makeLogger } from './log.js';
import { cniSubsystem } from '../../cni/router-side.js';
import { StartupPhases } from './startup-phases.js';
import type { EndpointChange, Subsystem, SubsystemContext } from './subsystem.js';

export type { LaunchConfig } from './config.js';

/**
 * The subsystems, in start order (closed in reverse). Observability comes last so
 * that its page, events and metrics see every other section.
 */
async function subsystems(cfg: LaunchConfig): Promise<Subsystem[]> {
  // [scale, issue #20] the Docker plugin (and zod) is loaded only when it is on.
  const plugin = cfg.plugin === false ? [] : [(await import('../../plugin/subsystem.js')).pluginSubsystem()];
  return [ipamSubsystem(), dnsSubsystem(), cniSubsystem(), ...plugin, exposeNatSubsystem(), observabilitySubsystem()];
}

async function loadPeerName(cfg: LaunchConfig, file: string): Promise<string> {
  if (cfg.name) {
    const n = parsePeerName(cfg.name);
    await writeFileAtomic(file, n + '\n', 0o600);
    return n;
  }
  try {
    return parsePeerName(readFileSync(file, 'utf8').trim());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`peer name file ${file} is corrupted (${(err as Error).message}): fix it, pass --name, or run weave reset`);
  }
  const n = randomPeerName();
  await writeFileAtomic(file, n + '\n', 0o600);
  return n;
}

/** Largest launch message accepted on stdin (bytes). */
const MAX_LAUNCH_MESSAGE = 1 << 20;
/** How long a router started ahead of `weave launch`'s checks waits for them (ms). */
const LAUNCH_MESSAGE_TIMEOUT_MS = 60_000;

/**
 * [scale, issue #20] Reads the launch message `weave launch` pipes to our stdin once its
 * checks pass (bounded: 1 MiB, 60 s). The router was started before them, so node's boot
 * and module loading overlap the launcher's own work.
 * @returns undefined if stdin closed empty (the launch was abandoned)
 */
function readLaunchMessage(): Promise<LaunchMessage | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const t = setTimeout(() => reject(new Error(`no launch configuration arrived on stdin within ${LAUNCH_MESSAGE_TIMEOUT_MS / 1000} s (weave launch stuck or killed?)`)), LAUNCH_MESSAGE_TIMEOUT_MS);
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_LAUNCH_MESSAGE) {
        clearTimeout(t);
        reject(new Error(`the launch message on stdin is over ${MAX_LAUNCH_MESSAGE} bytes`));
        process.stdin.destroy();
        return;
      }
      chunks.push(c);
    });
    process.stdin.on('end', () => {
      clearTimeout(t);
      try {
        resolve(parseLaunchMessage(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        reject(err as Error);
      }
    });
    process.stdin.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

/**
 * Runs the router until it is stopped.
 * @param phases start-up timing begun by the caller (default: from here; "load" is process
 *   start to here, node's boot and module loading)
 */
export async function runDaemon(cfg: LaunchConfig, password = '', phases = new StartupPhases()): Promise<void> {
  // Detached or `--no-detach` (systemd): the inspector stays closed either way.
  closeSigusr1Inspector();
  const log = makeLogger(cfg.logLevel);
  // [scale, issue #20] Where `weave launch`'s wait goes: wall ms per start-up phase, logged
  // once at ready.
  const paths = statePaths(cfg.stateDir);
  await makeStateDir(cfg.stateDir);
  // Root only, whatever it was created with: it holds the API socket, identity and IPAM state.
  await fsp.chmod(cfg.stateDir, 0o700);
  // [reliability] One router per state dir, decided by a lock, not a PID (router/host/router-lock.ts).
  await acquireRouterLock(cfg.stateDir);
  const name = await loadPeerName(cfg, paths.name);

  // [sec-wire] per-network scrypt salt: IPAM range + optional WEAVE_NETWORK_NAME (docs/SECURITY.md)
  const pwKey = password ? await derivePasswordKey(password, { ipamRange: cfg.ipallocRange, name: process.env.WEAVE_NETWORK_NAME ?? '' }) : undefined;

  // Remembered targets: `weave launch` with no peers reconnects to the last set.
  // [reliability] Read (and check) targets.json even when peers are given, so a corrupt
  // one is refused, kept as it is, rather than overwritten.
  const remembered = await loadTargets(paths.targets);
  const peers = cfg.peers.length ? cfg.peers : remembered;
  phases.mark('state');

  await ensureBridge(cfg.mtu);
  // [IPv6] --ipalloc-range6 (issue #21): derived addresses, and IPv6 under the isolation policy.
  const range6 = cfg.ipallocRange6 ? parseRange6(cfg.ipallocRange6) : undefined;
  if (range6) {
    // The host is not on the IPv6 overlay; every container's group-addressed ND and MLD
    // is flooded (no snooping), as ARP broadcasts are.
    await hostIpv6Off(BRIDGE);
    await ip('link', 'set', 'dev', BRIDGE, 'type', 'bridge', 'mcast_snooping', '0').catch((err: Error) => log(`IPv6: cannot turn multicast snooping off on ${BRIDGE}: ${err.message}`, 'warn'));
    log(`IPv6: containers get addresses in ${range6.prefix} derived from their IPv4 ones`);
  }
  const endpoints = new Endpoints(cfg.stateDir, cfg.mtu, cfg.dockerHost, log);
  endpoints.range6 = range6;
  await endpoints.load();
  await endpoints.restoreExpose6().catch((err: Error) => log(`IPv6: cannot give the exposed host its IPv6 addresses back: ${err.message}`, 'warn'));
  // [dns] the bridge filters let local containers reach the DNS server's address.
  const dnsAddr = dnsBridgeAddress(cfg);
  const isolation = new Isolation(log, { dns: dnsAddr ? { address: dnsAddr, port: dnsSettings(cfg).port } : undefined, range6 });
  // The router does not exist yet: the policy is handed over once it does.
  let applyPolicy = (): void => undefined;
  const syncIsolation = async (): Promise<void> => {
    await isolation.sync(endpoints.list());
    applyPolicy();
  };
  endpoints.onChange = syncIsolation;
  phases.mark('bridge');
  // Filters first, so the router never forwards a frame without its policy.
  await syncIsolation();
  phases.mark('isolation');

  // vnetHdr: writes of received TCP segments of one flow are merged into one super-frame
  // (GRO done by us), so the bridge and the container handle one packet instead of many.
  const tap = Tap.open(TAP_NAME, { vnetHdr: process.env.WEAVE_NO_TAP_OFFLOAD !== '1' });
  await setupTap(TAP_NAME, cfg.mtu);
  if (range6) await hostIpv6Off(TAP_NAME);

  const router = new Router({
    name, nickname: cfg.nickname, port: cfg.port, mtu: cfg.mtu, connLimit: cfg.connLimit, discovery: cfg.discovery,
    peers, passwordKey: pwKey, trustedSubnets: cfg.trustedSubnets, ipamRange: cfg.ipallocRange, ...(range6 ? { ipamRange6: range6.prefix } : {}), log,
  });
  router.policy = isolation.policy;
  applyPolicy = () => {
    router.policy = isolation.policy;
  };
  phases.mark('tap');
  // Dials wait until start-up is done (router.startDialing() below, after ready).
  await router.start(tap, { dial: false });
  phases.mark('router');
  // [fastdp] Kernel VXLAN for unencrypted connections; with a password only trusted subnets qualify.
  if (cfg.fastdp && (!pwKey || cfg.trustedSubnets.length > 0)) router.fastdp = await startFastdp(router, { port: cfg.port, mtu: cfg.mtu });
  else if (cfg.fastdp) log('fastdp: off: every connection is encrypted (password set, no --trusted-subnets)');
  const saveTargets = (): Promise<void> => writeFileAtomic(paths.targets, JSON.stringify(router.targets.directAddresses()));
  await saveTargets();
  phases.mark('fastdp');

  const api = new ApiServer(log);
  api.insecure = cfg.apiInsecure === true;
  if (api.insecure) log('--api-insecure: the TCP API serves every route to anyone who can reach it (no authentication)', 'warn');
  const started: Subsystem[] = [];
  let stopping = false;
  const shutdown = async (reason: string, code = 0): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log(`stopping: ${reason}`);
    const hard = setTimeout(() => process.exit(code), 5000);
    hard.unref();
    await proxy?.close().catch(() => undefined);
    for (const sub of [...started].reverse()) await sub.close().catch(() => undefined);
    await api.close().catch(() => undefined);
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
    const sections: Record<string, unknown> = {};
    for (const sub of started) if (sub.reportKey && sub.report) sections[sub.reportKey] = sub.report();
    const ipamStatus = (sections.IPAM as { Status?: string } | undefined)?.Status;
    let links = new Set<string>();
    try {
      links = linksFromProcNetDev(readFileSync('/proc/self/net/dev', 'utf8'));
    } catch { /* no /proc: reported as missing links */ }
    const Readiness = readiness({ ipamStatus, observer: cfg.ipallocInit === 'observer', links, bridge: BRIDGE, tap: TAP_NAME });
    return { ...r, ...sections, Readiness, API: { Insecure: api.insecure, Refused: { ...api.refused } }, Endpoints: endpoints.list().map((e) => ({ ID: e.id, MAC: e.mac, CIDRs: e.cidrs, ...(e.name ? { Name: e.name } : {}) })) } as Report;
  };
  // Every subsystem hears of endpoint changes; one failing is logged, never fatal.
  const announce = (what: 'endpointAttached' | 'endpointDetached', change: EndpointChange): void => {
    for (const sub of started) {
      const hook = sub[what];
      if (!hook) continue;
      Promise.resolve().then(() => hook.call(sub, change)).catch((err: Error) => log(`${sub.name}: ${what}: ${err.message}`, 'warn'));
    }
  };
  api.on('GET', '/report', async () => fullReport());
  // Readiness (router/api/readiness.ts): 503 with the reason until ready.
  api.on('GET', '/status', async () => {
    const r = fullReport();
    if (r.Readiness && !r.Readiness.Ready) throw new ApiError(503, `not ready: ${r.Readiness.Reason}`);
    return r;
  });
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
    const name = optionalString(body, 'name');
    const e = await endpoints.attach(stringField(body, 'target'), stringList(body, 'specs'), { name });
    await syncIsolation();
    router.emit('event', { type: 'endpoint-attached', id: e.id, cidrs: e.cidrs });
    // endpoints.attach put containerRoutes (weaveDNS's address) on ethwe (netdev.attachVeth).
    announce('endpointAttached', { endpoint: e, name: e.name, routesInstalled: true });
    return { id: e.id, cidrs: e.cidrs, mac: e.mac, ...(range6 ? { cidrs6: endpoints.cidrs6(e.cidrs) } : {}) };
  });
  api.on('POST', '/detach', async ({ body }) => {
    const target = stringField(body, 'target');
    // The resolved id, not the typed target: a container typed by name is keyed by its id
    // in every subsystem (DNS tombstones its entries by it).
    const { id, cidrs } = await endpoints.detachEndpoint(target, stringList(body, 'specs'));
    await syncIsolation();
    router.emit('event', { type: 'endpoint-detached', id, cidrs });
    announce('endpointDetached', { endpoint: { id, cidrs, mac: '' } });
    return { cidrs };
  });
  api.on('GET', '/ps', async () => ({ endpoints: (await endpoints.ps()).map((e) => (range6 && e.id !== EXPOSE_ID ? { ...e, cidrs6: endpoints.cidrs6(e.cidrs) } : e)) }));
  // [expose NAT] Weave's WEAVE nat chain follows expose/hide (router/nat/).
  const nat = () => started.find((x) => x.name === 'expose-nat') as ExposeNatSubsystem | undefined;
  api.on('POST', '/expose', async ({ body }) => {
    const cidrs = await endpoints.expose(stringList(body, 'specs'));
    await syncIsolation();
    await nat()?.exposed(cidrs, (body as { noMasq?: unknown } | undefined)?.noMasq === true);
    // [IPv6] with range6 the derived IPv6 addresses too (`weave expose` prints both).
    return range6 ? { cidrs, cidrs6: endpoints.cidrs6(cidrs) } : { cidrs };
  });
  api.on('POST', '/hide', async ({ body }) => {
    const cidrs = await endpoints.hide(stringList(body, 'specs'));
    await syncIsolation();
    await nat()?.hidden(cidrs);
    return range6 ? { cidrs, cidrs6: endpoints.cidrs6(cidrs) } : { cidrs };
  });
  api.on('GET', '/macs', async () => ({ macs: router.macEntries() }));
  api.on('POST', '/stop', async () => {
    setImmediate(() => void shutdown('weave stop'));
    return {};
  });
  api.on('POST', '/reset', async ({ body }) => {
    // IPAM space can be handed over only to a reachable peer; without one, refuse
    // unless forced, and then say what is abandoned (router/daemon/reset-check.ts).
    const force = Boolean((body as { force?: unknown } | undefined)?.force);
    const check = resetCheck(fullReport());
    if (check.abandons && !force) throw new ApiError(409, `${check.abandons}: no reachable peer can take it over; run weave reset --force to abandon it`);
    for (const sub of started) {
      await sub.reset?.({ force }).catch((err: Error) => {
        // [reliability] a subsystem may refuse (IPAM: the heir does not answer); nothing is removed yet.
        if (err instanceof ApiError) throw err;
        log(`reset: ${sub.name}: ${err.message}`, 'warn');
      });
    }
    for (const e of endpoints.list()) await endpoints.detach(e.id, []).catch(() => undefined);
    setImmediate(() => void (async () => {
      await router.stop().catch(() => undefined);
      await isolation.removeAll().catch(() => undefined);
      await resetLinks().catch(() => undefined);
      await shutdown('weave reset');
    })());
    return check.abandons ? { abandoned: `${check.abandons}: reclaim it with weave rmpeer ${check.peer} on another peer` } : {};
  });
  let proxy: { close(): Promise<void>; addresses: string[]; tls?: 'tls' | 'verify' } | undefined;
  if (cfg.proxy) {
    const attacher: ProxyAttacher = {
      attach: async (id, pid, specs, extras) => {
        const e = await endpoints.attachNetns(id, `/proc/${pid}/ns/net`, specs, { name: extras?.name });
        await syncIsolation();
        router.emit('event', { type: 'endpoint-attached', id, cidrs: e.cidrs });
        announce('endpointAttached', { endpoint: e, name: e.name, routesInstalled: true });
        return e.cidrs;
      },
      release: async (id) => {
        await endpoints.release(id);
        await syncIsolation();
        announce('endpointDetached', { endpoint: { id, cidrs: [], mac: '' } });
      },
      // [dns] a dead container's names are tombstoned (it keeps its addresses until destroyed).
      died: async (id) => announce('endpointDetached', { endpoint: { id, cidrs: [], mac: '' } }),
    };
    try {
      const dns = dnsSettings(cfg);
      // Loaded only when the proxy runs ([scale, issue #20]: an idle router without it loads less).
      const { startProxy, defaultWeavewaitPath } = await import('../../proxy/proxy.js');
      proxy = await startProxy({
        listen: cfg.proxyListen, dockerHost: cfg.dockerHost, attacher, noDefaultIpalloc: cfg.noDefaultIpalloc, weavewaitPath: defaultWeavewaitPath(), log, insecureTcp: cfg.proxyInsecureTcp === true, ...(cfg.proxyTls ? { tls: cfg.proxyTls } : {}),
        dns: dns.enabled ? { server: dns.address, domain: dns.domain } : undefined,
      });
      log(`proxy listening on ${proxy.addresses.join(', ')} for the Docker daemon at ${cfg.dockerHost}`);
    } catch (err) {
      log(`proxy not started: ${(err as Error).message}`, 'warn');
    }
  }
  api.on('GET', '/proxy', async () => {
    if (!proxy) throw new ApiError(404, 'the Docker API proxy is not running');
    return { addresses: proxy.addresses, ...(proxy.tls ? { tls: proxy.tls } : {}) };
  });

  await api.listenUnix(paths.sock);
  const [apiHost, apiPort] = splitHostPort(cfg.apiAddr, 6784);
  await api.listenTcp(apiHost, apiPort);
  phases.mark('api');

  const ctx: SubsystemContext = {
    cfg, stateDir: cfg.stateDir, router, api, endpoints, log,
    metrics: new Registry(),
    registerChannel: (n, h) => router.registerChannel(n, h),
    report: fullReport,
    get: <T extends Subsystem>(n: string) => started.find((x) => x.name === n) as T | undefined,
    announce: (what, change) => {
      router.emit('event', { type: what === 'endpointAttached' ? 'endpoint-attached' : 'endpoint-detached', id: change.endpoint.id, cidrs: change.endpoint.cidrs });
      announce(what, change);
    },
    endpointChanged: (what, change) => {
      router.emit('event', { type: `endpoint-${what}`, id: change.endpoint.id, cidrs: change.endpoint.cidrs });
      announce(what === 'attached' ? 'endpointAttached' : 'endpointDetached', change);
    },
  };
  for (const sub of await subsystems(cfg)) {
    await sub.start(ctx);
    started.push(sub);
    phases.mark(sub.name);
  }
  // Until here the API answered 503 "starting" (so `weave launch` waits for IPAM too).
  api.ready = true;

  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('uncaughtException', (err) => {
    log(`internal error (please report): ${err.stack ?? err.message}`, 'error');
  });
  log(`router ${name}(${cfg.nickname}) started on port ${cfg.port}, mtu ${cfg.mtu}, encryption ${pwKey ? 'enabled' : 'disabled'}, api ${paths.sock}`);
  log(`start-up: ${phases.summary()}`);
  signalReady(name);
  // [scale, issue #20] Only now dial the peers: joining a big mesh means a handshake, a
  // full exchange and route work per peer, which would otherwise run in between the
  // start-up steps above and stretch `weave launch` (measured: 1–1.7 s of a 3–4 s launch).
  router.startDialing();
  // Collect startup's garbage now rather than in a compacting pause under traffic, then
  // collect again only while the data path is quiet and the heap grew (heap.ts).
  setTimeout(() => {
    collectGarbage();
    startIdleGc(() => {
      const t = router.forwarder.sleeveTraffic();
      return t.framesIn + t.framesOut;
    }, undefined, (freed, ms) => log(`heap: idle collection freed ${(freed / 1048576).toFixed(1)} MiB in ${ms.toFixed(1)} ms`, 'debug'));
  }, 200).unref();
}

/**
 * Tells `weave launch` that the API serves: writes `ready NAME\n` to the descriptor named
 * by WEAVER_READY_FD (a pipe the launcher made; ≥ 3) and closes it. Without it (foreground
 * runs, supervisors) nothing is written. A launcher that went away is not an error.
 */
function signalReady(name: string): void {
  const fd = Number(process.env.WEAVER_READY_FD);
  delete process.env.WEAVER_READY_FD;
  if (!Number.isInteger(fd) || fd < 3) return;
  try {
    writeSync(fd, `ready ${name}\n`);
  } catch { /* the launcher is gone (EPIPE) */ }
  try {
    closeSync(fd);
  } catch { /* already closed */ }
}

export function defaultNickname(): string {
  return os.hostname();
}

/**
 * [security] Node opens its inspector (a debugger that runs any code it is sent) on
 * 127.0.0.1:9229 when the process gets SIGUSR1. For a root router in the host's network
 * namespace that would hand root to every local user who can reach loopback, and SIGUSR1
 * is what many daemons take for "reopen the logs". A listener of our own takes the signal
 * instead (libuv replaces Node's handler). WEAVER_ALLOW_INSPECTOR=1 keeps Node's
 * behaviour, for profiling a router on a test host.
 */
export function closeSigusr1Inspector(env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): boolean {
  if (env.WEAVER_ALLOW_INSPECTOR === '1') return false;
  process.on('SIGUSR1', () => log('weaver: SIGUSR1 ignored (the Node.js inspector stays closed; set WEAVER_ALLOW_INSPECTOR=1 at launch to allow it)'));
  return true;
}

// Entry point when spawned by `weave launch` (cli/weave.ts prestartRouter).
if (process.argv[1] && /weaver\.js$/.test(process.argv[1])) {
  // "load": node's boot and this bundle's loading; "launcher": waiting for weave launch's checks.
  const phases = new StartupPhases();
  if (process.env.WEAVER_CONFIG_STDIN !== '1') {
    process.stderr.write('weaver is started by `weave launch`\n');
    process.exit(2);
  }
  delete process.env.WEAVER_CONFIG_STDIN;
  // [reliability] test hook: wall-clock jumps without touching the machine clock (clock-hook.ts).
  installClockHook();
  readLaunchMessage().then((m) => {
    // Stdin closed empty: the launcher's checks failed. Nothing was touched.
    if (m === undefined) process.exit(0);
    phases.mark('launcher');
    return runDaemon(m.config, m.password, phases);
  }).catch((err: Error) => {
    process.stderr.write(`weaver: ${err.message}\n`);
    process.exit(1);
  });
}
