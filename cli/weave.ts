#!/usr/bin/env -S node --no-memory-reducer --max-semi-space-size=2 --interrupt-budget=540000
/**
 * `weave`: Weave Net's command line, for tsweave. Every verb but `launch` (which
 * starts the daemon) and `env`/`config` is one request to the router's HTTP API.
 * Errors are one line on stderr and exit code 1.
 */
import { Command } from 'commander';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { promises as fsp, openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { call, CliError, stateDir, isRunning } from './client.js';
import { isRouterRunning, waitForRouterExit, RouterRunningError, processExiting } from '../router/host/router-lock.js';
import { formatConnections, formatIpam, formatPeers, formatStatus, formatTargets, exposedLine } from './format.js';
import { renderTemplate } from './template.js';
import { withSpinner } from './spinner.js';
import type { Report } from '../router/api/report.js';
import { checkListenAddress, type LaunchConfig } from '../router/daemon/config.js';
import { parseLogLevel } from '../router/daemon/log-level.js';
import { passwordWeakness } from './password.js';
import { formatDns, terminalSafe } from '../dns/format.js';
import type { ReportDns } from '../dns/subsystem.js';

const VERSION = '0.1.0';
const DEFAULT_MTU = 1376;
const here = path.dirname(fileURLToPath(import.meta.url));
/**
 * The router daemon `weave launch` starts: the one-file bundle of router/daemon/weaver.js
 * and its imports (scripts/bundle.mjs, made by `npm run build`), which loads in about
 * half the CPU time of the ~150 separate modules (issue #20: launches on a busy host).
 */
const WEAVER_JS = path.join(here, '..', 'bundle', 'weaver.js');
/**
 * V8 flags the router runs with (the shebang above gives the same to `weave launch
 * --no-detach`): no memory reducer, whose idle-time compactions of the heap paused the
 * event loop — and so the data path — for 6–18 ms each, some seconds after start and
 * after every full collection (router/daemon/heap.ts collects startup's garbage instead,
 * and later garbage only while the data path is quiet); a young generation of at most
 * 2 MiB per semi-space (V8's default grows to 16 MiB, resident in every idle router:
 * [scale, issue #20]); the router's hot path lives in the addons and allocates little.
 * An interrupt budget 8x V8's default (67,584): a function is optimised by TurboFan only
 * after ~8x as much work in the interpreter and baseline code. The control plane's
 * functions run a few hundred times per peer joining and were being optimised (and
 * de-optimised) through every join wave: at 30 routers TurboFan was 20 % of an existing
 * router's CPU during joins and ~2 s of compile-thread time per router. Truly hot paths
 * (DNS answers, JavaScript frames) still reach TurboFan, a little later. [scale, issue #20]
 * bench:scale --real 30, interleaved pairs: RSS median 81.3/81.0 -> 77.3/77.0 MiB (before the
 * bundle), 79.1/79.5 -> 75.3/76.0 (with it); DNS answers q/s -3 % (still 1.7x dnsmasq).
 */
const ROUTER_NODE_FLAGS = ['--no-memory-reducer', '--max-semi-space-size=2', '--interrupt-budget=540000'];

/**
 * glibc malloc arenas for the router (MALLOC_ARENA_MAX, mallopt(3)) unless the user set
 * it: glibc's default on 64-bit is 8 per core, and each libuv/V8 thread that allocates
 * gets its own, which stay resident. [scale, issue #20] 2 arenas: 6 idle routers'
 * private memory 41.6-41.8 -> 33.8-36.7 MiB (bench:scale --real 6, two A/B pairs, same
 * load); the data path allocates in its addons' own buffers, not per frame.
 */
const ROUTER_MALLOC_ARENAS = '2';

function out(s: string): void {
  process.stdout.write(s.endsWith('\n') || s === '' ? s : s + '\n');
}

function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new CliError(`weave ${what} needs root (it changes network interfaces)`);
}

function intOpt(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new CliError(`invalid ${name} "${v}": want an integer from ${min} to ${max}`);
    return n;
  };
}

/** --log-level: Weave's levels, "warning" accepted as an alias of "warn". */
function logLevelOpt(v: string): string {
  try {
    return parseLogLevel(v);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, stepMs = 100): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return cond();
}

/** `weave launch`'s wait for the router's readiness, seconds: WEAVE_LAUNCH_TIMEOUT (1 … 3600), default 120. */
function launchTimeoutS(): number {
  const v = process.env.WEAVE_LAUNCH_TIMEOUT;
  return v === undefined || v === '' ? 120 : intOpt('WEAVE_LAUNCH_TIMEOUT', 1, 3600)(v);
}

type ReadyOutcome = { kind: 'ready'; name: string } | { kind: 'exited'; code: number } | { kind: 'timeout' };

/**
 * Waits for the router's readiness line `ready NAME\n` on its fd 3 (at most 256 bytes
 * are read), its exit, or the timeout. If fd 3 closes without the line while the router
 * runs, falls back to asking the API until the timeout.
 */
function waitReady(child: ChildProcess, timeoutMs: number): Promise<ReadyOutcome> {
  const end = Date.now() + timeoutMs;
  const pipe = child.stdio[3] as Readable | null;
  return new Promise((resolve) => {
    let text = '';
    let done = false;
    const finish = (o: ReadyOutcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.off('exit', onExit);
      pipe?.destroy();
      resolve(o);
    };
    const onExit = (code: number | null): void => finish({ kind: 'exited', code: code ?? 1 });
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    child.on('exit', onExit);
    pipe?.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      const m = /^ready (\S{1,64})\n/.exec(text);
      if (m) finish({ kind: 'ready', name: m[1]! });
      else if (text.length > 256 || (text.includes('\n') && !text.startsWith('ready '))) pipe.destroy();
    });
    pipe?.on('error', () => undefined);
    pipe?.on('close', () => {
      if (done) return;
      // No readiness line (an older daemon, or fd 3 lost): ask the API instead.
      void waitFor(async () => done || await isRunning(), Math.max(0, end - Date.now()), 100).then(async (up) => {
        if (!up || done) return finish({ kind: 'timeout' });
        finish({ kind: 'ready', name: (await call<Report>('GET', '/report').catch(() => undefined))?.Router.Name ?? '' });
      });
    });
  });
}

/** A router process started ahead of `weave launch`'s checks, waiting for its configuration. */
interface PrestartedRouter {
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Sends the configuration (and password) and closes the router's stdin: it starts now. */
  start(cfg: LaunchConfig, password: string): void;
}

/**
 * [scale, issue #20] Starts the router process before `weave launch` checks its options
 * and the state dir: node's boot and the bundle's loading (a quarter of a quiet launch,
 * half of one on a busy host) then overlap this process's own work. The router waits on
 * its stdin for one JSON message {config, password} (router/daemon/weaver.ts), touching
 * nothing before it; if this process exits without sending it (a check failed), the
 * router is killed here, and would see EOF on its stdin and exit anyway.
 * Creates the state dir (weaver.log is the router's stdout and stderr).
 * @throws CliError when the state dir cannot be made or the log cannot be opened
 */
async function prestartRouter(dir: string): Promise<PrestartedRouter> {
  const logFile = path.join(dir, 'weaver.log');
  let fd: number;
  try {
    await (await import('../router/host/state-file.js')).makeStateDir(dir);
    fd = openSync(logFile, 'a', 0o600);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  // WEAVER_NODE_ARGS: extra node flags for the daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p".
  const nodeArgs = (process.env.WEAVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // The password reaches the daemon through the pipe on its stdin, never argv or its
  // environment, so neither `ps` nor /proc/PID/environ shows it.
  const env: NodeJS.ProcessEnv = { MALLOC_ARENA_MAX: ROUTER_MALLOC_ARENAS, ...process.env, WEAVER_READY_FD: '3', WEAVER_CONFIG_STDIN: '1' };
  delete env.WEAVE_PASSWORD;
  // The router says "ready NAME" on fd 3 once its API serves (router/daemon/weaver.ts
  // signalReady): no polling, and no fixed wait that fails on a loaded machine.
  const child = spawn(process.execPath, [...ROUTER_NODE_FLAGS, ...nodeArgs, WEAVER_JS], { detached: true, stdio: ['pipe', fd, fd, 'pipe'], env });
  closeSync(fd);
  child.stdin!.on('error', () => undefined);
  let sent = false;
  const abandon = (): void => {
    if (sent) return;
    try {
      child.kill('SIGKILL');
    } catch { /* gone already */ }
  };
  process.once('exit', abandon);
  return {
    child,
    logFile,
    start(cfg, password) {
      sent = true;
      process.off('exit', abandon);
      child.stdin!.end(JSON.stringify({ config: cfg, password }));
    },
  };
}

/** isRouterRunning, with its errors (flock(1) missing) as one-line CLI errors. */
async function routerLockState(dir: string): Promise<{ running: boolean; pid?: number }> {
  try {
    return await isRouterRunning(dir);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}

async function tailLog(file: string, lines = 5): Promise<string> {
  try {
    const t = await fsp.readFile(file, 'utf8');
    return t.trim().split('\n').slice(-lines).map((l) => {
      try {
        return (JSON.parse(l) as { msg: string }).msg;
      } catch {
        return l;
      }
    }).join('\n');
  } catch {
    return '';
  }
}

const program = new Command('weave');
program.description('tsweave: a Weave-Net-style overlay network for containers').version(VERSION, '-V, --version', 'print the version (same as weave version)').showHelpAfterError(false);
program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
program.exitOverride();

program.command('launch')
  .description('start the router (and IPAM, proxy) on this host, connecting to PEERs')
  .argument('[peers...]', 'peers to connect to: host[:port]')
  .option('--name <mac>', 'peer name (default: persisted, or random)')
  .option('--nickname <name>', 'nickname shown in status', os.hostname())
  .option('--port <port>', 'TCP/UDP port for the mesh', intOpt('port', 1, 65535), 6783)
  .option('--mtu <bytes>', 'overlay MTU (default 1376, or WEAVE_MTU)', intOpt('MTU', 576, 65000))
  .option('--conn-limit <n>', 'connection limit', intOpt('connection limit', 0, 10000), 200)
  .option('--no-discovery', 'do not connect to peers learned from gossip')
  .option('--password <password>', 'network password (prefer WEAVE_PASSWORD or --password-file)')
  .option('--password-file <path>', 'read the network password from a file')
  .option('--trusted-subnets <cidrs>', 'comma-separated IPv4 or IPv6 CIDRs whose data traffic is not encrypted', '')
  .option('--ipalloc-range <cidr>', 'IPAM range ("" disables IPAM)', '10.32.0.0/12')
  .option('--ipalloc-default-subnet <cidr>', 'default subnet (default: the range)')
  .option('--ipalloc-init <mode>', 'consensus[=N] | seed=NAME,... | observer')
  .option('--ipalloc-range6 <prefix>', 'IPv6 prefix (≤ /96, e.g. a ULA fd00:77::/64): containers also get PREFIX + their IPv4 address (off by default)')
  .option('--no-proxy', 'do not start the Docker API proxy')
  .option('-H <addr...>', 'proxy listen address(es): unix://PATH or tcp://HOST:PORT')
  .option('--no-default-ipalloc', 'proxy: attach only containers that set WEAVE_CIDR')
  .option('--proxy-insecure-tcp', 'DANGEROUS: allow a non-loopback -H tcp:// proxy address (the Docker API) without --tlsverify')
  .option('--tls', 'proxy: serve -H tcp:// addresses over TLS (--tlscert, --tlskey); encryption only')
  .option('--tlsverify', 'proxy: TLS and require client certificates signed by --tlscacert (allows a non-loopback -H tcp://)')
  .option('--tlscacert <file>', 'proxy: PEM CA certificate for client certificates (--tlsverify)')
  .option('--tlscert <file>', 'proxy: PEM server certificate')
  .option('--tlskey <file>', 'proxy: PEM private key of --tlscert')
  .option('--metrics-addr <addr>', 'Prometheus metrics address', '127.0.0.1:6782')
  .option('--api-addr <addr>', 'read-only HTTP API address (every route is on the unix socket)', '127.0.0.1:6784')
  .option('--api-insecure', 'DANGEROUS: serve every API route over TCP to anyone who can reach it, and allow non-loopback --api-addr/--metrics-addr')
  .option('--log-level <level>', 'debug | info | warn (or warning) | error', logLevelOpt, 'info')
  .option('--no-fastdp', 'never use the kernel fast datapath')
  .option('--no-dns', 'do not start weaveDNS')
  .option('--dns-domain <domain>', 'weaveDNS domain', 'weave.local.')
  .option('--dns-ttl <seconds>', 'TTL of weaveDNS answers', intOpt('DNS TTL', 0, 86400), 1)
  .option('--dns-listen-address <addr>', 'weaveDNS address[:port] (link-local: put on the bridge and routed from containers)', '169.254.53.53:53')
  .option('--dns-isolation <on|off>', 'answer a container only with addresses in subnets it shares (off: Weave\'s answer-everything)', 'on')
  .option('--no-detach', 'run in the foreground')
  .option('--no-plugin', 'do not serve the Docker network plugin (weavemesh) nor create the network weave')
  .option('--plugin-socket <path>', 'Docker plugin socket (default /run/docker/plugins/weavemesh.sock; STATE_DIR/plugins/weavemesh.sock with a non-default WEAVE_STATE_DIR)')
  .action(async (peers: string[], o: Record<string, unknown>) => {
    requireRoot('launch');
    if (o.detach !== false && !existsSync(WEAVER_JS)) throw new CliError(`the router bundle ${WEAVER_JS} is missing: run \`npm run build\` in ${path.resolve(here, '..', '..')}`);
    if (o.password !== undefined && o.detach === false) {
      throw new CliError('--password with --no-detach would keep the password in this process\'s command line for its life (any user can read it with ps): use WEAVE_PASSWORD or --password-file');
    }
    for (const [flag, key] of [['--api-addr', 'apiAddr'], ['--metrics-addr', 'metricsAddr']] as const) {
      const why = checkListenAddress(flag, o[key] as string, o.apiInsecure === true);
      if (why) throw new CliError(why);
    }
    const dir = stateDir();
    // The router boots while the checks below run; it starts only once they pass.
    const early = o.detach === false ? undefined : await prestartRouter(dir);
    const envMtu = process.env.WEAVE_MTU ? intOpt('WEAVE_MTU', 576, 65000)(process.env.WEAVE_MTU) : undefined;
    let password = (o.password as string | undefined) ?? process.env.WEAVE_PASSWORD ?? '';
    if (o.passwordFile) {
      try {
        password = readFileSync(o.passwordFile as string, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        throw new CliError(`cannot read password file ${o.passwordFile as string}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    if (password) {
      const weak = passwordWeakness(password);
      if (weak) throw new CliError(weak);
    }
    const proxyDefault = dir === '/var/lib/weave' ? 'unix:///var/run/weave/weave.sock' : `unix://${path.join(dir, 'weave.sock')}`;
    const cfg: LaunchConfig = {
      stateDir: dir,
      name: o.name as string | undefined,
      nickname: o.nickname as string,
      port: o.port as number,
      mtu: (o.mtu as number | undefined) ?? envMtu ?? DEFAULT_MTU,
      connLimit: o.connLimit as number,
      discovery: o.discovery as boolean,
      peers,
      trustedSubnets: (o.trustedSubnets as string).split(',').map((s) => s.trim()).filter(Boolean),
      ipallocRange: o.ipallocRange as string,
      ipallocDefaultSubnet: o.ipallocDefaultSubnet as string | undefined,
      ipallocInit: o.ipallocInit as string | undefined,
      ...(o.ipallocRange6 ? { ipallocRange6: o.ipallocRange6 as string } : {}),
      initialPeerCount: peers.length,
      dockerHost: process.env.DOCKER_HOST || 'unix:///var/run/docker.sock',
      proxy: o.proxy as boolean,
      proxyListen: (o.H as string[] | undefined) ?? [proxyDefault],
      proxyInsecureTcp: o.proxyInsecureTcp === true,
      proxyTls: proxyTlsFiles(o),
      noDefaultIpalloc: o.defaultIpalloc === false,
      metricsAddr: o.metricsAddr as string,
      apiAddr: o.apiAddr as string,
      apiInsecure: o.apiInsecure === true,
      logLevel: o.logLevel as string,
      fastdp: o.fastdp as boolean && !process.env.WEAVE_NO_FASTDP,
      dns: o.dns as boolean,
      dnsDomain: o.dnsDomain as string,
      dnsTtl: o.dnsTtl as number,
      dnsListenAddress: o.dnsListenAddress as string,
      dnsIsolation: o.dnsIsolation !== 'off',
      // [plugin] dockerd looks in /run/docker/plugins: only there (or where the user
      // says) is the network `weave` created, so test routers never touch a dockerd.
      plugin: o.plugin as boolean,
      pluginSocket: (o.pluginSocket as string | undefined) ?? (dir === '/var/lib/weave' ? '/run/docker/plugins/weavemesh.sock' : path.join(dir, 'plugins', 'weavemesh.sock')),
      pluginNetwork: o.plugin as boolean && (o.pluginSocket !== undefined || dir === '/var/lib/weave'),
    };
    // Fail fast on bad input, before anything is started.
    const { parsePeerName } = await import('../router/mesh/peer-name.js');
    const { normaliseAddress } = await import('../router/mesh/connection-maker.js');
    const { parseCidrList, parseTrustedSubnets } = await import('../router/policy/cidr-match.js');
    try {
      if (cfg.name) parsePeerName(cfg.name);
      for (const p of peers) normaliseAddress(p, cfg.port);
      parseTrustedSubnets(cfg.trustedSubnets.join(','));
      if (cfg.ipallocRange) parseCidrList(cfg.ipallocRange);
      if (cfg.ipallocDefaultSubnet) parseCidrList(cfg.ipallocDefaultSubnet);
      if (cfg.ipallocRange6) cfg.ipallocRange6 = (await import('../ipam/ipv6.js')).parseRange6(cfg.ipallocRange6).prefix;
      if (cfg.proxy) {
        const { parseDockerAddress, exposedTcpAddress } = await import('../proxy/intercept.js');
        const tlsMode = cfg.proxyTls ? (cfg.proxyTls.verify ? 'verify' : 'tls') : undefined;
        for (const a of cfg.proxyListen) {
          const why = exposedTcpAddress(parseDockerAddress(a), cfg.proxyInsecureTcp === true, tlsMode);
          if (why) throw new Error(why.replace(/^proxy: /, ''));
        }
        if (cfg.proxyTls) {
          if (!cfg.proxyListen.some((a) => parseDockerAddress(a).kind === 'tcp')) throw new Error('--tls/--tlsverify apply to -H tcp:// addresses, and none was given');
          // Fail here, not in the daemon's log: the router reads the files again at start.
          (await import('../proxy/tls.js')).loadProxyTls(cfg.proxyTls);
        }
      }
      if (!['on', 'off'].includes(o.dnsIsolation as string)) throw new Error(`invalid --dns-isolation "${o.dnsIsolation as string}": want on or off`);
      (await import('../dns/config.js')).dnsSettings(cfg);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    // Liveness by identity (router/host/router-lock.ts): a dead, zombie or recycled PID
    // in weaver.pid does not block a launch; only a router holding the lock does.
    let held = await routerLockState(dir);
    // A router killed a moment ago (kill -9, then launch at once) holds the lock until the
    // kernel has closed its descriptors: wait for that, never for a live router.
    if (held.running && held.pid !== undefined && processExiting(held.pid)) {
      await waitForRouterExit(dir, 5_000);
      held = await routerLockState(dir);
    }
    if (held.running || await isRunning()) throw new CliError(new RouterRunningError(held.pid).message);
    if (early === undefined) {
      try {
        await (await import('../router/host/state-file.js')).makeStateDir(dir);
      } catch (err) {
        throw new CliError((err as Error).message);
      }
    }
    // Restart at boot: record the launch's arguments (never the password) for setup-service.
    {
      const { launchArgsToRecord } = await import('./service.js');
      const { writeFileAtomic } = await import('../router/host/state-file.js');
      const at = process.argv.indexOf('launch', 2);
      const { args } = launchArgsToRecord(at >= 0 ? process.argv.slice(at + 1) : peers);
      await writeFileAtomic(path.join(dir, 'launch-args.json'), JSON.stringify({ args, stateDir: path.resolve(dir), dockerHost: process.env.DOCKER_HOST || undefined }), 0o600);
    }
    if (early === undefined) {
      // Foreground: become the daemon (used by benchmarks and supervisors).
      delete process.env.WEAVE_PASSWORD;
      const { runDaemon } = await import('../router/daemon/weaver.js');
      await runDaemon(cfg, password);
      return;
    }
    const { child, logFile } = early;
    early.start(cfg, password);
    const timeoutS = launchTimeoutS();
    const outcome = await withSpinner('waiting for the router to start', waitReady(child, timeoutS * 1000));
    child.unref();
    if (outcome.kind !== 'ready') {
      const why = outcome.kind === 'exited' ? await tailLog(logFile, 1) : '';
      throw new CliError(why ? why.replace(/^weaver: /, '')
        : outcome.kind === 'exited' ? `the router exited during start-up (code ${outcome.code}): see ${logFile}`
          : `the router did not report ready within ${timeoutS} s (set WEAVE_LAUNCH_TIMEOUT=SECONDS to wait longer; it is still starting, or stuck): see ${logFile}`);
    }
    out(outcome.name);
    process.stderr.write(`router log: ${logFile}\n`);
  });

/**
 * The proxy's TLS files from launch's options: --tls or --tlsverify need --tlscert and
 * --tlskey (and --tlsverify --tlscacert); a file flag without either is a mistake.
 * Paths are made absolute (the daemon reads them). Undefined without TLS.
 * @throws CliError with one line
 */
function proxyTlsFiles(o: Record<string, unknown>): LaunchConfig['proxyTls'] {
  const on = o.tls === true || o.tlsverify === true;
  const files = { caFile: o.tlscacert as string | undefined, certFile: o.tlscert as string | undefined, keyFile: o.tlskey as string | undefined };
  if (!on) {
    const given = Object.entries({ '--tlscacert': files.caFile, '--tlscert': files.certFile, '--tlskey': files.keyFile }).find(([, v]) => v !== undefined);
    if (given) throw new CliError(`${given[0]} needs --tls or --tlsverify`);
    return undefined;
  }
  if (files.certFile === undefined || files.keyFile === undefined) throw new CliError(`${o.tlsverify === true ? '--tlsverify' : '--tls'} needs --tlscert and --tlskey (PEM files)`);
  if (o.tlsverify === true && files.caFile === undefined) throw new CliError('--tlsverify needs --tlscacert: the CA that signs the client certificates allowed to use the proxy');
  return {
    verify: o.tlsverify === true,
    ...(files.caFile !== undefined ? { caFile: path.resolve(files.caFile) } : {}),
    certFile: path.resolve(files.certFile),
    keyFile: path.resolve(files.keyFile),
  };
}

program.command('stop').description('stop the router; attached containers keep their interfaces').action(async () => {
  const { pid } = await routerLockState(stateDir());
  await call('POST', '/stop');
  if (!(await waitForRouterExit(stateDir(), 10_000))) throw new CliError(`router${pid ? ` (pid ${pid})` : ''} did not stop within 10 s: see ${path.join(stateDir(), 'weaver.log')}`);
});

program.command('reset').description('stop the router and remove the bridge, every link it made and its persisted data')
  .option('--force', 'also when the router cannot hand over its IPAM space')
  .action(async (o: { force?: boolean }) => {
    requireRoot('reset');
    if (await isRunning()) {
      try {
        const r = await call<{ abandoned?: string }>('POST', '/reset', { force: Boolean(o.force) }, { timeoutMs: 30_000 });
        if (r.abandoned) process.stderr.write(`weave reset --force: abandoned ${r.abandoned}\n`);
      } catch (err) {
        // Without --force a refusal stops here; with it, a router that cannot answer is
        // killed and cleaned up after below.
        if (!o.force) throw err;
        process.stderr.write(`weave reset --force: the router did not reset (${(err as Error).message}); cleaning up without it\n`);
        const { pid } = await routerLockState(stateDir());
        if (pid !== undefined) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch { /* gone */ }
        }
      }
      await waitForRouterExit(stateDir(), 10_000);
    } else if (existsSync(path.join(stateDir(), 'ipam.json'))) {
      process.stderr.write('weave reset: the router is not running, so its IPAM space (ipam.json) is abandoned: reclaim it with weave rmpeer on another peer\n');
    }
    const { resetLinks } = await import('../router/host/netdev.js');
    const { Isolation } = await import('../router/policy/isolation.js');
    await new Isolation(() => undefined).removeAll();
    // [expose NAT] the WEAVE chain's table too (also when the router was not running).
    const { renderNat } = await import('../router/nat/expose-nat.js');
    const { applyRuleset } = await import('../router/policy/bridge-filter.js');
    await applyRuleset(renderNat([], 'weave', [])).catch(() => undefined);
    await resetLinks();
    // [dns] the policy rule and table for the DNS address's answers (dns/reach.ts).
    await (await import('../dns/reach.js')).removeHost((await import('../dns/config.js')).DEFAULT_DNS_ADDRESS);
    const dir = stateDir();
    for (const f of ['peer-name', 'targets.json', 'endpoints.json', 'ipam.json', 'plugin.json', 'launch-args.json', 'expose-nat.json', 'weaver.pid', 'weaver.sock', 'weave.sock']) {
      await fsp.rm(path.join(dir, f), { force: true });
    }
  });

program.command('setup-service').description('write a systemd unit that relaunches the router at boot with the last launch\'s arguments')
  .option('--output <file>', 'where to write the unit', '/etc/systemd/system/weave.service')
  .action(async (o: { output: string }) => {
    const { parseRecordedLaunch, renderUnit } = await import('./service.js');
    const { writeFileAtomic } = await import('../router/host/state-file.js');
    const file = path.join(stateDir(), 'launch-args.json');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      throw new CliError(`no recorded launch in ${file}: run weave launch first`);
    }
    try {
      const unit = renderUnit({ node: process.execPath, nodeFlags: ROUTER_NODE_FLAGS, weaveJs: path.resolve(here, 'weave.js'), launch: parseRecordedLaunch(text, file) });
      await writeFileAtomic(path.resolve(o.output), unit, 0o644);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    out(path.resolve(o.output));
    process.stderr.write('enable it with: systemctl daemon-reload && systemctl enable weave\n');
  });

program.command('status').description('show the router status: [targets|connections|peers|ipam|dns]')
  .argument('[sub]', 'targets | connections | peers | ipam | dns')
  .option('--watch', 'redraw on every change until Ctrl-C')
  .action(async (sub: string | undefined, o: { watch?: boolean }) => {
    const render = (r: Report): string => {
      switch (sub) {
        case undefined: return formatStatus(r);
        case 'targets': return formatTargets(r);
        case 'connections': return formatConnections(r);
        case 'peers': return formatPeers(r);
        case 'ipam': return formatIpam(r);
        case 'dns': return formatDns((r as Report & { DNS?: ReportDns }).DNS);
        default: throw new CliError(`unknown status section "${sub}": want targets, connections, peers, ipam or dns`);
      }
    };
    if (o.watch) {
      const { watchStatus } = await import('./watch.js');
      const { WebSocket } = await import('ws');
      const { apiSocket } = await import('./client.js');
      await watchStatus({ connect: () => new WebSocket(`ws+unix://${apiSocket()}:/events`), out: process.stdout, render });
      return;
    }
    out(render(await call<Report>('GET', '/report')));
  });

program.command('report').description('print the router state as JSON')
  .option('-f, --format <template>', 'Go-template-style format, e.g. {{.Router.Name}}')
  .action(async (o: { format?: string }) => {
    const r = await call<Report>('GET', '/report');
    out(o.format ? renderTemplate(o.format, r) : JSON.stringify(r, null, 4));
  });

program.command('connect').description('connect to more peers').argument('<peers...>')
  .option('--replace', 'replace the current targets')
  .action(async (peers: string[], o: { replace?: boolean }) => {
    await call('POST', '/connect', { peers, replace: Boolean(o.replace) });
  });

program.command('forget').description('stop trying to connect to peers').argument('<peers...>').action(async (peers: string[]) => {
  await call('POST', '/forget', { peers });
});

program.command('attach').description('attach a container or namespace: [ADDR...] TARGET (ADDR = ip:CIDR | net:CIDR | net:default)')
  .argument('<args...>')
  // -h is Weave's --hostname here, so help is --help only.
  .helpOption('--help', 'display help for command')
  .option('--name <name>', 'name to register in weaveDNS (NAME.weave.local)')
  .option('-h, --hostname <fqdn>', 'weaveDNS name (same as --name)')
  .action(async (args: string[], o: { name?: string; hostname?: string }) => {
    const target = args[args.length - 1];
    const specs = args.slice(0, -1);
    const name = o.hostname ?? o.name;
    const res = await withSpinner(`attaching ${target}`, call<{ cidrs: string[] }>('POST', '/attach', { target, specs, ...(name ? { name } : {}) }, { timeoutMs: 120_000 }));
    out(res.cidrs.map((c) => c.split('/')[0]).join(' '));
  });

program.command('detach').description('detach: [ADDR...] TARGET').argument('<args...>').action(async (args: string[]) => {
  const target = args[args.length - 1];
  const res = await call<{ cidrs: string[] }>('POST', '/detach', { target, specs: args.slice(0, -1) });
  out(res.cidrs.map((c) => c.split('/')[0]).join(' '));
});

program.command('ps').description('list attached containers: <id> <mac> <cidr>... (IPv4, then IPv6 with --ipalloc-range6)').argument('[targets...]').action(async (targets: string[]) => {
  const res = await call<{ endpoints: Array<{ id: string; mac: string; cidrs: string[]; cidrs6?: string[] }> }>('GET', '/ps');
  for (const e of res.endpoints) {
    if (targets.length && !targets.some((t) => e.id === t || e.id.startsWith(t))) continue;
    const id = /^[0-9a-f]{64}$/.test(e.id) ? e.id.slice(0, 12) : e.id;
    out([id, e.mac, ...e.cidrs, ...(Array.isArray(e.cidrs6) ? e.cidrs6 : [])].map(terminalSafe).join(' '));
  }
});

program.command('expose').description('give the host an address on the weave network: [ADDR...]').argument('[specs...]')
  .option('--no-masq', 'do not masquerade (no NAT rules in the WEAVE chain for these subnets)')
  .action(async (specs: string[], o: { masq?: boolean }) => {
  const res = await call<{ cidrs: string[]; cidrs6?: unknown }>('POST', '/expose', { specs, ...(o.masq === false ? { noMasq: true } : {}) }, { timeoutMs: 120_000 });
  out(exposedLine(res));
});

program.command('hide').description('remove the host addresses added by expose: [ADDR...]').argument('[specs...]').action(async (specs: string[]) => {
  const res = await call<{ cidrs: string[]; cidrs6?: unknown }>('POST', '/hide', { specs });
  out(exposedLine(res));
});

program.command('prime').description('wait until IPAM has a ring (consensus reached)').action(async () => {
  let progress = 'waiting for IPAM consensus';
  const tick = setInterval(() => {
    call<Report>('GET', '/report', undefined, { timeoutMs: 2000 }).then((r) => {
      if (r.IPAM) progress = `waiting for IPAM: ${r.IPAM.Status}`;
    }, () => undefined);
  }, 1000);
  tick.unref();
  try {
    await withSpinner(() => progress, call('POST', '/ipam/prime', undefined, { timeoutMs: 24 * 3600_000 }));
  } finally {
    clearInterval(tick);
  }
});

program.command('rmpeer').description('take over the address space of a dead peer').argument('<peers...>').action(async (peers: string[]) => {
  for (const p of peers) {
    const res = await call<{ message: string }>('DELETE', `/peer/${encodeURIComponent(p)}`);
    out(res.message);
  }
});

program.command('env').description('print the DOCKER_HOST setting that points docker at the weave proxy')
  .option('--restore', 'print the line that restores the previous DOCKER_HOST')
  .action(async (o: { restore?: boolean }) => {
    if (o.restore) {
      if (!process.env.ORIG_DOCKER_HOST && process.env.ORIG_DOCKER_HOST !== '') throw new CliError('Nothing to restore. This is most likely because there was no preceding invocation of \'eval $(weave env)\' in this shell.');
      out(`export DOCKER_HOST=${process.env.ORIG_DOCKER_HOST}`);
      return;
    }
    const p = await proxyAddress();
    if (!p) return;
    // With --tlsverify the docker client must verify too (its certificates: DOCKER_CERT_PATH, default ~/.docker).
    out(`export DOCKER_HOST=${p.addr}${p.tls === 'verify' && p.addr.startsWith('tcp:') ? ' DOCKER_TLS_VERIFY=1' : ''} ORIG_DOCKER_HOST=${process.env.DOCKER_HOST ?? ''}`);
  });

program.command('config').description('print the docker -H option for the weave proxy').action(async () => {
  const p = await proxyAddress();
  if (p) out(`${p.tls && p.addr.startsWith('tcp:') ? `--${p.tls === 'verify' ? 'tlsverify' : 'tls'} ` : ''}-H=${p.addr}`);
});

/** The proxy's first listen address, and whether its tcp listeners use TLS ('verify': client certificates). */
async function proxyAddress(): Promise<{ addr: string; tls?: 'tls' | 'verify' } | undefined> {
  try {
    const r = await call<{ addresses: string[]; tls?: 'tls' | 'verify' }>('GET', '/proxy', undefined, { timeoutMs: 3000 });
    return r.addresses[0] === undefined ? undefined : { addr: r.addresses[0], tls: r.tls };
  } catch {
    return undefined;
  }
}

// ---- weaveDNS (Weave's verbs) ----
/** Split Weave's `[IP...] TARGET` arguments. */
function ipsAndTarget(args: string[]): { ips: string[]; target: string } {
  if (!args.length) throw new CliError('missing TARGET (a container, netns:PATH or pid:PID)');
  return { ips: args.slice(0, -1).map((a) => a.replace(/\/\d+$/, '')), target: args[args.length - 1] };
}

program.command('dns-add').description('register names in weaveDNS: [IP...] TARGET [-h FQDN] (default: TARGET\'s addresses and name)')
  .argument('<args...>')
  .helpOption('--help', 'display help for command')
  .option('-h, --hostname <fqdn>', 'the name to register')
  .action(async (args: string[], o: { hostname?: string }) => {
    await call('POST', '/dns/add', { ...ipsAndTarget(args), ...(o.hostname ? { hostname: o.hostname } : {}) });
  });

program.command('dns-remove').description('remove names from weaveDNS: [IP...] TARGET [-h FQDN]')
  .argument('<args...>')
  .helpOption('--help', 'display help for command')
  .option('-h, --hostname <fqdn>', 'only this name')
  .action(async (args: string[], o: { hostname?: string }) => {
    await call('POST', '/dns/remove', { ...ipsAndTarget(args), ...(o.hostname ? { hostname: o.hostname } : {}) });
  });

program.command('dns-lookup').description('print the addresses weaveDNS has for NAME').argument('<name>').action(async (name: string) => {
  const r = await call<{ addresses: string[] }>('GET', `/dns/lookup/${encodeURIComponent(name)}`);
  out(r.addresses.map(terminalSafe).join('\n'));
});

program.command('dns-args').description('print the docker run options that point a container at weaveDNS').action(async () => {
  const { dnsSettings } = await import('../dns/config.js');
  let addr = dnsSettings({}).address;
  let domain = dnsSettings({}).domain;
  try {
    const d = await call<ReportDns>('GET', '/dns', undefined, { timeoutMs: 3000 });
    addr = d.Address.replace(/:\d+$/, '');
    domain = d.Domain;
  } catch { /* router not running or DNS off: the defaults */ }
  out(`--dns=${terminalSafe(addr)} --dns-search=${terminalSafe(domain)}`);
});

program.command('setup-cni').description('install the weave-net CNI plugin and its conflist (atomically)')
  .option('--conf-dir <dir>', 'where the conflist goes', '/etc/cni/net.d')
  .option('--bin-dir <dir>', 'where the plugins go', '/opt/cni/bin')
  .option('--cni-version <v>', 'cniVersion of the conflist', '1.0.0')
  .option('--subnet <net:CIDR>', 'allocate pods in this subnet instead of the default one')
  .option('--network-name <name>', 'network name (podman --network NAME)', 'weave')
  .option('--no-portmap', 'leave the portmap plugin out of the chain')
  .action(async (o: { confDir: string; binDir: string; cniVersion: string; subnet?: string; portmap: boolean; networkName: string }) => {
    const { installCni } = await import('../cni/install.js');
    const { makeDirs } = await import('../router/host/state-file.js');
    await makeDirs(o.confDir, 0o755, 'CNI config directory');
    await makeDirs(o.binDir, 0o755, 'CNI plugin directory');
    const files = await installCni({ confDir: path.resolve(o.confDir), binDir: path.resolve(o.binDir), stateDir: path.resolve(stateDir()), cniVersion: o.cniVersion, subnet: o.subnet, portmap: o.portmap, name: o.networkName });
    out(`installed ${files.join(', ')}`);
  });

program.command('version').description('print the version').action(() => {
  out(`weave ${VERSION}`);
});

/** Control characters shown as \xNN, for echoing user input on a terminal. */
function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

async function main(): Promise<void> {
  // An unknown verb is an error even when followed by -h/--help (which commander
  // would otherwise answer with the help text and exit 0).
  const verb = process.argv[2];
  if (verb !== undefined && !verb.startsWith('-') && !program.commands.some((c) => c.name() === verb || c.aliases().includes(verb))) {
    process.stderr.write(`weave: unknown command '${printable(verb.slice(0, 100))}' (see weave --help)\n`);
    process.exit(1);
  }
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') process.exit(0);
    if (e.code?.startsWith('commander.')) process.exit(e.exitCode ?? 1);
    process.stderr.write(`weave: ${(e.message ?? String(err)).split('\n')[0]}\n`);
    process.exit(err instanceof CliError ? err.exitCode : 1);
  }
}

void main();
