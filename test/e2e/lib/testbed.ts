/**
 * Hosts as network namespaces on one machine, for end-to-end tests.
 *
 *   [<p>ul] bridge ul0 ── veth ── [<p>h1] eth0 192.168.99.1/24 ── weave router ── bridge weave ── [<p>c1] ethwe
 *                     ── veth ── [<p>h2] eth0 192.168.99.2/24 ...
 *
 * With an IPv6 underlay (Testbed.up(n, { underlay: 'ipv6' }), or per host, e.g.
 * ['dual', 'ipv6', 'ipv4']), a host's eth0 gets fd00:77::I/64 (added `nodad`, with
 * accept_dad=0, so it is usable at once) and no IPv4 address ('ipv6'), both ('dual'),
 * or only IPv4 ('ipv4', the default). IPv6 is enabled on eth0 (and lo) only; every
 * other interface of the host keeps it disabled as before. Hosts of different
 * families share the switch but cannot reach each other (no address in common).
 *
 * The underlay namespace joins the hosts with a bridge; no namespace gets a default
 * route and nothing is connected to the root namespace, so test traffic cannot leave.
 * Every namespace (and with it every link, router socket and iptables rule inside it),
 * process and state directory is removed by destroy(), which tests call in `after`
 * hooks so it also runs when a test fails.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WEAVE_JS = path.resolve(here, '..', '..', '..', 'cli', 'weave.js');

export interface Result { code: number; stdout: string; stderr: string }

/** Run a command (no shell) with a timeout; never throws. */
export function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    // A child may exit without reading its stdin (the CNI plugin answers VERSION at once): no EPIPE throw.
    child.stdin?.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export async function must(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  const r = await sh(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export function canRunE2E(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync('/dev/net/tun')) return 'needs /dev/net/tun';
  for (const bin of ['ip', 'ping', 'nsenter']) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      return `needs ${bin}`;
    }
  }
  return undefined;
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Poll until fn() is truthy or the deadline passes; returns the last value. */
export async function until<T>(what: string, fn: () => Promise<T>, timeoutMs: number, stepMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  let v = await fn();
  while (!v && Date.now() < end) {
    await sleep(stepMs);
    v = await fn();
  }
  if (!v) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
  return v;
}

/** Which addresses a host's underlay interface gets (see the module comment). */
export type UnderlayFamily = 'ipv4' | 'ipv6' | 'dual';

/** Options of Testbed.up. */
export interface TestbedOptions {
  /** Underlay family of every host, or of host i at index i − 1 (missing: 'ipv4'). Default 'ipv4'. */
  underlay?: UnderlayFamily | UnderlayFamily[];
}

export class Host {
  readonly stateDir: string;
  /** Underlay IPv4 address (undefined on an IPv6-only host). */
  ip4: string | undefined;
  /** Underlay IPv6 address (fd00:77::I), if the host has one. */
  ip6: string | undefined;
  /**
   * @param ip the host's primary underlay address: IPv4 if it has one, else IPv6
   */
  constructor(readonly bed: Testbed, readonly index: number, readonly ns: string, readonly ip: string) {
    this.stateDir = path.join(bed.dir, `h${index}`);
    mkdirSync(this.stateDir, { recursive: true });
  }

  get nickname(): string {
    return `h${this.index}`;
  }

  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    const e: NodeJS.ProcessEnv = { ...process.env, WEAVE_STATE_DIR: this.stateDir, ...extra };
    delete e.WEAVE_PASSWORD;
    delete e.WEAVE_MTU;
    return { ...e, ...extra };
  }

  /** Run `weave ARGS` inside this host's namespace. */
  weave(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Result> {
    return sh('ip', ['netns', 'exec', this.ns, process.execPath, WEAVE_JS, ...args], { env: this.env(opts.env), timeoutMs: opts.timeoutMs ?? 60_000 });
  }

  async mustWeave(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.weave(args, opts);
    if (r.code !== 0) throw new Error(`weave ${args.join(' ')} on ${this.nickname} failed: ${r.stderr.trim()}\n--- log tail ---\n${this.logTail()}`);
    return r.stdout;
  }

  launch(args: string[] = [], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
    return this.mustWeave(['launch', '--nickname', this.nickname, ...args], opts);
  }

  exec(args: string[], timeoutMs = 60_000): Promise<Result> {
    return sh('ip', ['netns', 'exec', this.ns, ...args], { timeoutMs });
  }

  async report(): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
    return JSON.parse(await this.mustWeave(['report']));
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(path.join(this.stateDir, 'weaver.log'), 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** A text snapshot of this host's router for failure messages (never throws). */
  async diagnose(): Promise<string> {
    const out: string[] = [`--- ${this.nickname} ---`];
    try {
      const r = await this.report();
      const R = r.Router;
      out.push(`connections: ${JSON.stringify(R.Connections)}`);
      out.push(`peers: ${JSON.stringify(R.Peers)}`);
      out.push(`routes: unicast ${JSON.stringify(R.UnicastRoutes)} broadcast ${JSON.stringify(R.BroadcastRoutes)}`);
      out.push(`drops: ${JSON.stringify(R.Drops)}`);
      out.push(`traffic: ${JSON.stringify(R.Traffic)}`);
      out.push(`MACs: ${JSON.stringify(R.MACs ?? R.MACCache ?? null)}`);
      out.push(`flow cache: ${JSON.stringify(R.FlowCache ?? null)}`);
    } catch (err) {
      out.push(`report failed: ${(err as Error).message.split('\n')[0]}`);
    }
    out.push(`bridge fdb: ${(await this.exec(['bridge', 'fdb', 'show', 'br', 'weave'])).stdout.trim().split('\n').filter((l) => !/permanent/.test(l)).join(' | ')}`);
    out.push(`log tail:\n${this.logTail(40)}`);
    return out.join('\n');
  }

  pid(): number | undefined {
    try {
      return Number(readFileSync(path.join(this.stateDir, 'weaver.pid'), 'utf8'));
    } catch {
      return undefined;
    }
  }

  /** A "container": a network namespace attached to this host's weave network. */
  async container(name: string, specs: string[]): Promise<Container> {
    const ns = `${this.bed.prefix}${name}`;
    await must('ip', ['netns', 'add', ns]);
    this.bed.namespaces.push(ns);
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    const out = await this.mustWeave(['attach', ...specs, `netns:/var/run/netns/${ns}`], { timeoutMs: 120_000 });
    return new Container(this, name, ns, out.trim().split(/\s+/).filter(Boolean));
  }
}

export class Container {
  constructor(readonly host: Host, readonly name: string, readonly ns: string, readonly ips: string[]) {}

  exec(args: string[], timeoutMs = 60_000): Promise<Result> {
    return sh('ip', ['netns', 'exec', this.ns, ...args], { timeoutMs });
  }

  /**
   * Like ping(), but a failure throws an error that carries what every router of the
   * testbed saw at that moment (connections, peers, routes, drops, traffic, MAC cache
   * size, log tails), so a failure in CI can be explained after the fact.
   * @param what a label for the message, e.g. "c1 -> c3 relayed"
   */
  async mustPing(ip: string, opts: { size?: number; tries?: number; timeoutS?: number } = {}, what = ''): Promise<void> {
    if (await this.ping(ip, opts)) return;
    const parts: string[] = [`${what ? what + ': ' : ''}${this.name} (${this.ips.join(' ')}) cannot ping ${ip}${opts.size ? ` with ${opts.size} bytes` : ''}`];
    for (const h of this.host.bed.hosts) if (h) parts.push(await h.diagnose());
    parts.push(`--- ${this.name} neighbours ---\n${(await this.exec(['ip', 'neigh'])).stdout.trim()}`);
    throw new Error(parts.join('\n'));
  }

  /** Ping once per try until one answer comes back (bounded). */
  async ping(ip: string, opts: { size?: number; tries?: number; timeoutS?: number } = {}): Promise<boolean> {
    const tries = opts.tries ?? 10;
    for (let i = 0; i < tries; i++) {
      const r = await this.exec(['ping', '-c', '1', '-W', String(opts.timeoutS ?? 1), ...(opts.size ? ['-s', String(opts.size)] : []), ip], 15_000);
      if (r.code === 0) return true;
    }
    return false;
  }
}

export class Testbed {
  readonly prefix: string;
  readonly dir: string;
  readonly namespaces: string[] = [];
  readonly hosts: Host[] = [];
  private readonly underlay: string;
  private readonly bgProcs: Array<{ kill(sig?: NodeJS.Signals): void }> = [];

  constructor(tag: string) {
    this.prefix = `tsw${tag}${process.pid % 10000}-`;
    this.dir = `/tmp/tsweave-e2e-${tag}-${process.pid}`;
    this.underlay = `${this.prefix}ul`;
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
  }

  /** Create the underlay and `n` hosts (192.168.99.1.. and/or fd00:77::1.. on one switch). */
  async up(n: number, opts: TestbedOptions = {}): Promise<Host[]> {
    await must('ip', ['netns', 'add', this.underlay]);
    this.namespaces.push(this.underlay);
    const u = opts.underlay;
    const v6 = u !== undefined && (Array.isArray(u) ? u : [u]).some((f) => f !== 'ipv4');
    // With IPv6: no multicast snooping, so neighbour discovery does not depend on MLD reports.
    await must('ip', ['-n', this.underlay, 'link', 'add', 'ul0', 'type', 'bridge', ...(v6 ? ['mcast_snooping', '0'] : [])]);
    await must('ip', ['-n', this.underlay, 'link', 'set', 'ul0', 'up']);
    for (let i = 1; i <= n; i++) await this.addHost(i, (Array.isArray(u) ? u[i - 1] : u) ?? 'ipv4');
    return this.hosts;
  }

  async addHost(i: number, family: UnderlayFamily = 'ipv4'): Promise<Host> {
    const ns = `${this.prefix}h${i}`;
    await must('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    const ul = `${this.prefix}ul`;
    // Create the pair inside the underlay namespace so nothing touches the root namespace.
    await must('ip', ['-n', ul, 'link', 'add', `ulh${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await must('ip', ['-n', ul, 'link', 'set', `ulh${i}`, 'master', 'ul0', 'up']);
    const ip4 = family === 'ipv6' ? undefined : `192.168.99.${i}`;
    const ip6 = family === 'ipv4' ? undefined : `fd00:77::${i.toString(16)}`;
    if (ip4) await must('ip', ['-n', ns, 'addr', 'add', `${ip4}/24`, 'dev', 'eth0']);
    for (const k of ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']) await sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', k]);
    if (ip6) {
      // IPv6 on the underlay link (and lo) only; no duplicate address detection wait.
      for (const k of ['net.ipv6.conf.eth0.disable_ipv6=0', 'net.ipv6.conf.eth0.accept_dad=0', 'net.ipv6.conf.lo.disable_ipv6=0']) {
        await must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', k]);
      }
      await must('ip', ['-n', ns, 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
    }
    await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const ip = (ip4 ?? ip6)!;
    // Bridged container traffic must not go through the host's iptables (br_netfilter).
    for (const k of ['net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0', 'net.bridge.bridge-nf-call-arptables=0']) await sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', k]);
    const h = new Host(this, i, ns, ip);
    h.ip4 = ip4;
    h.ip6 = ip6;
    this.hosts[i - 1] = h;
    return h;
  }

  /** Start a background process (iperf3 server...) that destroy() kills. */
  background(args: string[]): void {
    const p = spawn(args[0], args.slice(1), { stdio: 'ignore' });
    this.bgProcs.push(p);
  }

  /** Kill routers, delete namespaces (and everything inside them) and state. Idempotent. */
  async destroy(): Promise<void> {
    for (const p of this.bgProcs) p.kill('SIGKILL');
    for (const h of this.hosts) {
      if (!h) continue;
      const pid = h.pid();
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch { /* gone */ }
      }
    }
    // Any process still inside our namespaces (iperf3, nc) goes too.
    for (const ns of this.namespaces) {
      const r = await sh('ip', ['netns', 'pids', ns], { timeoutMs: 5000 });
      for (const pid of r.stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch { /* gone */ }
      }
    }
    for (const ns of [...this.namespaces].reverse()) await sh('ip', ['netns', 'del', ns], { timeoutMs: 10_000 });
    this.namespaces.length = 0;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
